//! Rule hit counts: the kernel's named counters (see `nft::counters`) read now and then,
//! turned into the decisions made since the last read, and kept until the server has them.
//!
//! The kernel's counters are totals since each was created; a full replacement of the
//! table (start, drift, a refused transaction) creates them anew, and a counter no chain
//! needs any more is deleted. So the counters are read before any transaction that
//! replaces the table or deletes a counter, the values read are remembered per counter,
//! and what is reported is the difference: a counter lower than remembered was created
//! anew since, and all it holds is new. The server adds what it is sent to its totals, so
//! they survive agent restarts and table replacements; a report not delivered stays
//! pending and is sent again with the next. A starting agent takes its first read as the
//! baseline: the counters a previous agent left were that agent's to report (what it
//! counted after its last report, at most one interval, is lost rather than counted twice).

use std::collections::BTreeMap;

use nft::counters::{Counted, CounterValue};
use serde_json::{json, Value};

/// Decisions counted but not yet delivered, for one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Flows decided (their first packets).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// When the first of them was seen (Unix seconds, the read that found it).
    pub first: u64,
    /// When the last was.
    pub last: u64,
}

/// The counters' last values and the decisions not yet delivered.
#[derive(Debug, Default)]
pub struct Hits {
    last: BTreeMap<String, CounterValue>,
    pending: BTreeMap<Counted, Pending>,
    /// A first read was taken (the baseline).
    started: bool,
}

impl Hits {
    /// Takes the values of a counter listing read at `now` (Unix seconds).
    pub fn read(&mut self, listing: &str, now: u64) {
        let baseline = !std::mem::replace(&mut self.started, true);
        for (name, value) in nft::counters::parse_counters(listing) {
            let Some(counted) = Counted::parse(&name) else {
                continue;
            };
            let before = self.last.insert(name, value).unwrap_or_default();
            if baseline {
                continue;
            }
            // Lower than before: created anew since, all of it is new.
            let (packets, bytes) = if value.packets >= before.packets {
                (
                    value.packets - before.packets,
                    value.bytes.saturating_sub(before.bytes),
                )
            } else {
                (value.packets, value.bytes)
            };
            if packets == 0 {
                continue;
            }
            let p = self.pending.entry(counted).or_insert(Pending {
                packets: 0,
                bytes: 0,
                first: now,
                last: now,
            });
            p.packets += packets;
            p.bytes += bytes;
            p.last = now;
        }
    }

    /// The table is about to be replaced whole: every counter starts again from zero.
    pub fn table_replaced(&mut self) {
        self.last.clear();
    }

    /// A counter was deleted (a later one of that name starts from zero).
    pub fn forget(&mut self, name: &str) {
        self.last.remove(name);
    }

    /// Whether decisions wait to be delivered.
    pub fn is_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The pending decisions as the status report carries them (`Hits`): by rule, by
    /// group's intra-group accept, by group list's default.
    pub fn report(&self) -> Vec<Value> {
        self.pending
            .iter()
            .map(|(counted, p)| {
                let mut v = match counted {
                    Counted::Rule(rule) => json!({"SecurityGroupRuleId": rule.as_str()}),
                    Counted::Inner(group) => json!({
                        "SecurityGroupIds": [group.as_str()],
                        "Decision": "InnerAccessPolicy",
                    }),
                    Counted::Default {
                        direction, groups, ..
                    } => json!({
                        "SecurityGroupIds": groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
                        "Decision": match direction {
                            model::Direction::Ingress => "DefaultIngress",
                            model::Direction::Egress => "DefaultEgress",
                        },
                    }),
                };
                v["Packets"] = json!(p.packets);
                v["Bytes"] = json!(p.bytes);
                v["FirstHit"] = json!(p.first);
                v["LastHit"] = json!(p.last);
                v
            })
            .collect()
    }

    /// The server has the pending decisions.
    pub fn delivered(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(values: &[(&str, u64)]) -> String {
        let mut s = String::from("table inet stockade {\n");
        for (name, packets) in values {
            s.push_str(&format!(
                "\tcounter {name} {{\n\t\tpackets {packets} bytes {}\n\t}}\n",
                packets * 60
            ));
        }
        s + "}\n"
    }

    #[test]
    fn reads_become_differences_and_survive_a_replacement() {
        let mut h = Hits::default();
        // A previous agent's counters: the baseline, not counted again.
        h.read(&listing(&[("h_sgr_a", 40)]), 90);
        assert!(!h.is_pending());
        h.table_replaced();
        h.read(&listing(&[("h_sgr_a", 3), ("hd_in_i_sg_x", 0)]), 100);
        h.read(&listing(&[("h_sgr_a", 5), ("hd_in_i_sg_x", 1)]), 110);
        let got = h.report();
        assert_eq!(got.len(), 2, "{got:?}");
        let rule = got
            .iter()
            .find(|v| v["SecurityGroupRuleId"] == "sgr-a")
            .unwrap();
        assert_eq!(
            (&rule["Packets"], &rule["FirstHit"], &rule["LastHit"]),
            (&json!(5), &json!(100), &json!(110))
        );
        h.delivered();
        assert!(!h.is_pending());
        // Replaced: the counters start from zero, and what they count is new.
        h.table_replaced();
        h.read(&listing(&[("h_sgr_a", 2)]), 120);
        assert_eq!(h.report()[0]["Packets"], 2);
        h.delivered();
        // Recreated without notice (a drift): lower than before, all of it new.
        h.read(&listing(&[("h_sgr_a", 1)]), 130);
        assert_eq!(h.report()[0]["Packets"], 1);
        let default = Hits::default().report();
        assert!(default.is_empty());
    }

    #[test]
    fn implicit_decisions_name_their_groups() {
        let mut h = Hits::default();
        h.read("", 0);
        h.read(&listing(&[("hd_in_i_sg_a_sg_b", 4), ("hi_sg_a", 2)]), 1);
        let got = h.report();
        assert!(got.contains(&json!({
            "SecurityGroupIds": ["sg-a", "sg-b"], "Decision": "DefaultIngress",
            "Packets": 4, "Bytes": 240, "FirstHit": 1, "LastHit": 1,
        })));
        assert!(got.contains(&json!({
            "SecurityGroupIds": ["sg-a"], "Decision": "InnerAccessPolicy",
            "Packets": 2, "Bytes": 120, "FirstHit": 1, "LastHit": 1,
        })));
    }
}
