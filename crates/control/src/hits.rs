//! Rule hit counts: what the hosts' agents counted in the kernel (see the agent's `hits`),
//! summed per rule and per group's implicit decision, and read back by the owner of the
//! group.
//!
//! Counts are not policy: recording them moves no revision (agents are not woken, caches
//! stay), and an agent's report of a rule that is gone is dropped.

use std::collections::BTreeMap;

use model::{SecurityGroupId, SecurityGroupRuleId};

use crate::sql::{args, Db};
use crate::{now, Control, Result, Tx};

/// A decision no rule made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImplicitDecision {
    /// A group's intra-group accept (`InnerAccessPolicy`).
    InnerAccessPolicy,
    /// No rule matched an inbound flow: dropped.
    DefaultIngress,
    /// No rule matched an outbound flow: passed (dropped for an advanced group).
    DefaultEgress,
}

impl ImplicitDecision {
    /// Every one, in answer order.
    pub const ALL: [ImplicitDecision; 3] = [
        ImplicitDecision::InnerAccessPolicy,
        ImplicitDecision::DefaultIngress,
        ImplicitDecision::DefaultEgress,
    ];

    /// Its wire name.
    pub fn as_wire(self) -> &'static str {
        match self {
            ImplicitDecision::InnerAccessPolicy => "InnerAccessPolicy",
            ImplicitDecision::DefaultIngress => "DefaultIngress",
            ImplicitDecision::DefaultEgress => "DefaultEgress",
        }
    }

    /// The decision named `s`.
    pub fn parse(s: &str) -> Option<ImplicitDecision> {
        Self::ALL.into_iter().find(|d| d.as_wire() == s)
    }
}

/// What a counted decision was made by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HitSubject {
    /// A rule.
    Rule(SecurityGroupRuleId),
    /// An implicit decision of an interface's group list (a default is the list's, so it
    /// counts in each of its groups; an intra-group accept names its one group).
    Implicit(Vec<SecurityGroupId>, ImplicitDecision),
}

/// Decisions one host counted since its last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Who decided.
    pub subject: HitSubject,
    /// Flows decided (their first packets).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// When the first was counted (Unix seconds).
    pub first: u64,
    /// When the last was.
    pub last: u64,
}

/// A subject's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HitCount {
    /// Flows decided.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// `FirstHitTime` (ISO 8601, UTC).
    pub first_hit: String,
    /// `LastHitTime`.
    pub last_hit: String,
}

/// One group's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupHits {
    /// When the region began counting (ISO 8601), if it has.
    pub since: Option<String>,
    /// By rule id.
    pub rules: BTreeMap<SecurityGroupRuleId, HitCount>,
    /// By implicit decision.
    pub implicit: BTreeMap<ImplicitDecision, HitCount>,
}

fn iso(unix: u64) -> String {
    chrono::DateTime::from_timestamp(unix as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Control {
    /// Adds a host's counted decisions to the region's totals, and notes that the region
    /// counts from now if it did not already. Rules and groups the region does not hold
    /// (revoked or deleted since) are dropped.
    pub fn record_hits(&self, region: &str, hits: &[Hit]) -> Result<()> {
        // Most reports carry no hits: once the region counts, they cost no transaction (a
        // write per report would be a write per host per change).
        let counting = || self.counting.lock().unwrap_or_else(|e| e.into_inner());
        if hits.is_empty() && counting().contains(region) {
            return Ok(());
        }
        self.with_write(true, |db| {
            db.execute(
                "INSERT INTO hit_counting (region, since) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                args![region, now()],
            )?;
            for hit in hits {
                match &hit.subject {
                    HitSubject::Rule(rule) => {
                        let group = db.query_opt(
                            "SELECT p.group_id FROM permissions p
                             JOIN security_groups g ON g.id = p.group_id
                             WHERE p.id = ?1 AND g.region = ?2",
                            args![rule.as_str(), region],
                        )?;
                        if let Some(group) = group {
                            add(db, region, rule.as_str(), &group.text(0)?, hit)?;
                        }
                    }
                    HitSubject::Implicit(groups, decision) => {
                        for g in groups {
                            let known = db
                                .query_one(
                                    "SELECT EXISTS(SELECT 1 FROM security_groups
                                     WHERE id = ?1 AND region = ?2)",
                                    args![g.as_str(), region],
                                )?
                                .flag(0)?;
                            if known {
                                add(db, region, decision.as_wire(), g.as_str(), hit)?;
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
        counting().insert(region.to_string());
        Ok(())
    }
}

/// Adds one count to a subject's totals in a group.
fn add(db: &dyn Db, region: &str, subject: &str, group: &str, hit: &Hit) -> Result<()> {
    db.execute(
        "INSERT INTO rule_hits (region, subject, group_id, packets, bytes, first_hit, last_hit)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (region, subject, group_id) DO UPDATE SET
             packets = rule_hits.packets + excluded.packets,
             bytes = rule_hits.bytes + excluded.bytes,
             first_hit = CASE WHEN excluded.first_hit < rule_hits.first_hit
                              THEN excluded.first_hit ELSE rule_hits.first_hit END,
             last_hit = CASE WHEN excluded.last_hit > rule_hits.last_hit
                             THEN excluded.last_hit ELSE rule_hits.last_hit END",
        args![
            region,
            subject,
            group,
            hit.packets as i64,
            hit.bytes as i64,
            iso(hit.first),
            iso(hit.last)
        ],
    )?;
    Ok(())
}

/// Seconds from an ISO 8601 time to now (0 for one in the future or unreadable).
fn age(iso: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(iso)
        .map(|t| (chrono::Utc::now().timestamp() - t.timestamp()).max(0) as u64)
        .unwrap_or(0)
}

impl Tx<'_> {
    /// What `unused-rule` reads of the caller's rules in the region (`None` while the
    /// region has not begun counting): how long each rule's decisions have been counted,
    /// and since when it decided none.
    pub fn rule_usage(&self, window: u64) -> Result<Option<policy::audit::RuleUsage>> {
        let Some(since) = self
            .db
            .query_opt(
                "SELECT since FROM hit_counting WHERE region = ?1",
                args![&self.ctx.region],
            )?
            .map(|r| r.text(0))
            .transpose()?
        else {
            return Ok(None);
        };
        let counting = age(&since);
        let mut rules = BTreeMap::new();
        for r in self.db.query(
            "SELECT p.id, p.created_at, h.last_hit FROM permissions p
             JOIN security_groups g ON g.id = p.group_id
             LEFT JOIN rule_hits h ON h.subject = p.id AND h.group_id = p.group_id
                                   AND h.region = g.region
             WHERE g.account_id = ?1 AND g.region = ?2",
            args![self.ctx.account.get() as i64, &self.ctx.region],
        )? {
            let observed = counting.min(age(&r.text(1)?));
            let since_hit = r.opt_text(2)?.map(|t| age(&t));
            rules.insert(r.parsed(0)?, (observed, since_hit));
        }
        // Each group's decisions without a rule: its latest implicit hit.
        let mut groups = BTreeMap::new();
        for r in self.db.query(
            "SELECT g.id, g.created_at, MAX(h.last_hit) FROM security_groups g
             LEFT JOIN rule_hits h ON h.group_id = g.id AND h.region = g.region
                                   AND h.subject IN ('InnerAccessPolicy', 'DefaultIngress', 'DefaultEgress')
             WHERE g.account_id = ?1 AND g.region = ?2
             GROUP BY g.id, g.created_at",
            args![self.ctx.account.get() as i64, &self.ctx.region],
        )? {
            let observed = counting.min(age(&r.text(1)?));
            let since_hit = r.opt_text(2)?.map(|t| age(&t));
            groups.insert(r.parsed(0)?, (observed, since_hit));
        }
        Ok(Some(policy::audit::RuleUsage {
            window,
            rules,
            groups,
        }))
    }

    /// The counts of one of the caller's groups (another's is not found).
    pub fn rule_hits(&self, group: &SecurityGroupId) -> Result<GroupHits> {
        self.group(group)?;
        let mut out = GroupHits {
            since: self
                .db
                .query_opt(
                    "SELECT since FROM hit_counting WHERE region = ?1",
                    args![&self.ctx.region],
                )?
                .map(|r| r.text(0))
                .transpose()?,
            ..GroupHits::default()
        };
        for r in self.db.query(
            "SELECT subject, packets, bytes, first_hit, last_hit FROM rule_hits
             WHERE group_id = ?1 AND region = ?2",
            args![group.as_str(), &self.ctx.region],
        )? {
            let count = HitCount {
                packets: r.int(1)? as u64,
                bytes: r.int(2)? as u64,
                first_hit: r.text(3)?,
                last_hit: r.text(4)?,
            };
            let subject = r.text(0)?;
            match ImplicitDecision::parse(&subject) {
                Some(d) => {
                    out.implicit.insert(d, count);
                }
                None => {
                    if let Ok(rule) = subject.parse() {
                        out.rules.insert(rule, count);
                    }
                }
            }
        }
        Ok(out)
    }
}
