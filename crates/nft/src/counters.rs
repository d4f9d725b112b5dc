//! Hit counters: every statement of a linear policy chain that decides (a rule, an
//! intra-group accept, the default) counts what it decides into a named counter object of
//! the table, read back by the agent (`nft list counters`).
//!
//! Named objects rather than a statement's own `counter`: a chain rewritten by a change
//! keeps counting into the same objects (the rule did not change, its count goes on), and
//! one rule in several chains (instances of different group lists) counts once per
//! decision into one object, so the kernel sums per rule and the agent reads one short
//! listing. Only the first packet of a flow reaches a policy chain (established flows are
//! accepted before it), so a counter's packets are the flows it decided: a refused flow's
//! every retry counts, as each is a new attempt.
//!
//! Names: `h_<rule>` per rule, `hi_<group>` per group's intra-group accept, `hd_<chain>`
//! per chain's default (the default of an interface's group list is the list's, not one
//! group's). An id is written with `_` for `-`, which [`Counted::parse`] turns back.

use std::collections::BTreeMap;

use model::{Direction, NicType, SecurityGroupId, SecurityGroupRuleId};

/// The counter of a rule.
pub(crate) fn rule(id: &SecurityGroupRuleId) -> String {
    format!("h_{}", ident(id.as_str()))
}

/// The counter of a group's intra-group accept.
pub(crate) fn inner(group: &SecurityGroupId) -> String {
    format!("hi_{}", ident(group.as_str()))
}

/// The counter of a chain's default.
pub(crate) fn default(chain: &str) -> String {
    format!("hd_{chain}")
}

fn ident(id: &str) -> String {
    id.replace('-', "_")
}

/// `sgr_abc` → `sgr-abc` (ids have one `-`, after their prefix).
fn unident(s: &str) -> String {
    s.replacen('_', "-", 1)
}

/// What a counter counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counted {
    /// The flows a rule decided.
    Rule(SecurityGroupRuleId),
    /// The flows a group's intra-group accept admitted.
    Inner(SecurityGroupId),
    /// The flows that reached the end of a chain: dropped on ingress (and on egress of an
    /// advanced group's members), passed on egress otherwise.
    Default {
        /// The chain's direction.
        direction: Direction,
        /// The chain's interface type.
        nic: NicType,
        /// The group list whose chain it is, in order.
        groups: Vec<SecurityGroupId>,
    },
}

impl Counted {
    /// What the counter `name` counts; `None` for a name that is not a hit counter's.
    pub fn parse(name: &str) -> Option<Counted> {
        if let Some(rule) = name.strip_prefix("h_") {
            return unident(rule).parse().ok().map(Counted::Rule);
        }
        if let Some(group) = name.strip_prefix("hi_") {
            return unident(group).parse().ok().map(Counted::Inner);
        }
        let chain = name.strip_prefix("hd_")?;
        let (direction, rest) = match chain.split_at_checked(3)? {
            ("in_", rest) => (Direction::Ingress, rest),
            ("eg_", rest) => (Direction::Egress, rest),
            _ => return None,
        };
        let (nic, rest) = match rest.split_at_checked(1)? {
            ("i", rest) => (NicType::Intranet, rest),
            ("p", rest) => (NicType::Internet, rest),
            _ => return None,
        };
        // `_sg_a_sg_b`: pairs of prefix and body.
        let parts: Vec<&str> = rest.strip_prefix('_')?.split('_').collect();
        let groups = parts
            .chunks(2)
            .map(|pair| match pair {
                [prefix, body] => format!("{prefix}-{body}").parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<SecurityGroupId>>>()?;
        Some(Counted::Default {
            direction,
            nic,
            groups,
        })
    }
}

/// One counter's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterValue {
    /// Packets counted (each a flow's first).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The hit counters of an `nft list counters table …` listing, by name.
pub fn parse_counters(listing: &str) -> BTreeMap<String, CounterValue> {
    let mut out = BTreeMap::new();
    let mut current: Option<&str> = None;
    for line in listing.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("counter ")
            .and_then(|rest| rest.strip_suffix(" {"))
        {
            current = Some(name);
        } else if let (Some(name), Some(values)) = (current, line.strip_prefix("packets ")) {
            let mut words = values.split_whitespace();
            let packets = words.next().and_then(|p| p.parse().ok());
            let bytes = match (words.next(), words.next()) {
                (Some("bytes"), Some(b)) => b.parse().ok(),
                _ => None,
            };
            if let (Some(packets), Some(bytes)) = (packets, bytes) {
                out.insert(name.to_string(), CounterValue { packets, bytes });
            }
            current = None;
        } else if line == "}" {
            current = None;
        }
    }
    out
}

/// A table listing without the counters' values: what the drift check compares, which
/// packets must not change.
pub fn stateless(listing: &str) -> String {
    listing
        .lines()
        .filter(|l| !l.trim_start().starts_with("packets "))
        .fold(String::with_capacity(listing.len()), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        let r: SecurityGroupRuleId = "sgr-abc123".parse().unwrap();
        assert_eq!(Counted::parse(&rule(&r)), Some(Counted::Rule(r)));
        let g: SecurityGroupId = "sg-web1".parse().unwrap();
        assert_eq!(Counted::parse(&inner(&g)), Some(Counted::Inner(g.clone())));
        let db: SecurityGroupId = "sg-db2".parse().unwrap();
        assert_eq!(
            Counted::parse(&default("in_i_sg_web1_sg_db2")),
            Some(Counted::Default {
                direction: Direction::Ingress,
                nic: NicType::Intranet,
                groups: vec![g, db],
            })
        );
        assert_eq!(Counted::parse("hd_xx_i_sg_a"), None);
        assert_eq!(Counted::parse("hd_in_i_sg"), None);
        assert_eq!(Counted::parse("other"), None);
    }

    #[test]
    fn a_listing_gives_every_counter() {
        let listing = "table inet stockade {\n\tcounter h_sgr_a {\n\t\tpackets 3 bytes 180\n\t}\n\n\tcounter hd_in_i_sg_a {\n\t\tpackets 0 bytes 0\n\t}\n}\n";
        let got = parse_counters(listing);
        assert_eq!(
            got["h_sgr_a"],
            CounterValue {
                packets: 3,
                bytes: 180
            }
        );
        assert_eq!(got["hd_in_i_sg_a"], CounterValue::default());
        assert_eq!(got.len(), 2);
        assert!(!stateless(listing).contains("packets"));
        assert!(stateless(listing).contains("counter h_sgr_a {"));
    }
}
