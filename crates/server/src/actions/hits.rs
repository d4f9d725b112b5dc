//! `DescribeSecurityGroupRuleHits` (Stockade's own action, `Version=2014-05-26`): how many
//! flows each rule of one of the caller's groups decided on real packets, summed over the
//! hosts' kernels, and when it first and last did; and the group's implicit decisions.

use control::{ControlError, HitCount, ImplicitDecision};
use model::{SecurityGroupId, SecurityGroupRuleId};
use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::Result;

/// A count as answered: `NewFlows` and `Packets` are the same number (only a flow's first
/// packet reaches the rules; each retry of a refused flow is one), kept apart so that the
/// fields mean what the cloud's do.
fn count(c: Option<&HitCount>) -> Value {
    let c = c.cloned().unwrap_or_default();
    json!({
        "NewFlows": c.packets,
        "Packets": c.packets,
        "Bytes": c.bytes,
        "FirstHitTime": c.first_hit,
        "LastHitTime": c.last_hit,
    })
}

/// `RegionId`, `SecurityGroupId`, optional `SecurityGroupRuleId.N` (rules of the group;
/// another is `InvalidSecurityGroupRuleId.NotFound`). Every rule asked for is answered, with
/// zeros and empty times when it never decided a flow.
pub(super) fn describe(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: SecurityGroupId = p.typed("SecurityGroupId")?;
    let only: Vec<SecurityGroupRuleId> = p.typed_list("SecurityGroupRuleId")?;
    call.read(|tx| {
        let group = tx.group(&id)?;
        let rules = tx.rules(&group)?;
        if let Some(missing) = only
            .iter()
            .find(|r| !rules.iter().any(|x| &x.permission.id == *r))
        {
            return Err(ControlError::RuleNotFound(missing.clone()));
        }
        let hits = tx.rule_hits(&id)?;
        let rule_hits: Vec<Value> = rules
            .iter()
            .filter(|r| only.is_empty() || only.contains(&r.permission.id))
            .map(|r| {
                let p = &r.permission;
                let mut v = json!({
                    "SecurityGroupRuleId": p.id.as_str(),
                    "Direction": p.direction.as_wire(),
                    "Policy": p.policy.as_wire(),
                    "Priority": p.priority.get(),
                    "CreateTime": r.created_at,
                });
                super::extend(&mut v, count(hits.rules.get(&p.id)));
                v
            })
            .collect();
        let implicit: Vec<Value> = ImplicitDecision::ALL
            .iter()
            .map(|d| {
                let mut v = json!({"Decision": d.as_wire()});
                super::extend(&mut v, count(hits.implicit.get(d)));
                v
            })
            .collect();
        Ok(json!({
            "SecurityGroupId": id.as_str(),
            "CountingSince": hits.since.unwrap_or_default(),
            "RuleHits": {"RuleHit": rule_hits},
            "ImplicitHits": {"ImplicitHit": implicit},
        }))
    })
}
