//! Security group rules: authorize, revoke and modify, in both directions, and the rule
//! as `DescribeSecurityGroupAttribute` shows it.

use control::limits::RULES_PER_REQUEST;
use control::{ControlError, Revoke, RuleRecord, Tx};
use model::{
    Direction, ModelError, Peer, PermissionFields, RuleSpec, SecurityGroupId, SecurityGroupRuleId,
};
use serde_json::{json, Map, Value};

use super::{Call, Reply};
use crate::error::{Result, ServerError};
use crate::wire::{Object, Params};

/// One rule as `DescribeSecurityGroupAttribute` lists it: its wire fields, with those of
/// the other direction's peer (`Dest*` on ingress, `Source*` on egress) empty, and what
/// only responses carry.
pub(super) fn permission_json(tx: &Tx, r: &RuleRecord) -> Value {
    let p = &r.permission;
    let mut out = Map::new();
    for name in PermissionFields::WIRE_NAMES {
        out.insert(name.to_string(), json!(""));
    }
    p.to_fields().write(p.direction, |name, v| {
        out.insert(name.to_string(), json!(v.unwrap_or_default()));
    });
    let (group_name, list_name) = match &p.peer {
        Peer::Group(g) => (
            tx.group(&g.id).map(|g| g.name).unwrap_or_default(),
            String::new(),
        ),
        Peer::PrefixList(l) => (
            String::new(),
            tx.prefix_list(l).map(|l| l.name).unwrap_or_default(),
        ),
        Peer::Cidr(_) => (String::new(), String::new()),
    };
    let port_list_name = p
        .port_list
        .as_ref()
        .and_then(|l| tx.port_range_list(l).ok())
        .map(|l| l.name)
        .unwrap_or_default();
    let (group_name_field, list_name_field, other_group, other_list) = match p.direction {
        Direction::Ingress => (
            "SourceGroupName",
            "SourcePrefixListName",
            "DestGroupName",
            "DestPrefixListName",
        ),
        Direction::Egress => (
            "DestGroupName",
            "DestPrefixListName",
            "SourceGroupName",
            "SourcePrefixListName",
        ),
    };
    for (k, v) in [
        ("SecurityGroupRuleId", json!(p.id.to_string())),
        ("Direction", json!(p.direction.as_wire())),
        ("PortRangeListName", json!(port_list_name)),
        ("CreateTime", json!(r.created_at)),
        (group_name_field, json!(group_name)),
        (list_name_field, json!(list_name)),
        (other_group, json!("")),
        (other_list, json!("")),
    ] {
        out.insert(k.to_string(), v);
    }
    Value::Object(out)
}

/// The `Permissions.N.*` entries, or the deprecated flat fields as one rule, parsed; both
/// together are refused, as ECS does.
fn rule_specs(p: &Params, direction: Direction) -> Result<Vec<RuleSpec>> {
    let objects: Vec<Object> = p.objects("Permissions");
    let flat = PermissionFields::read(direction, |k| p.opt(k));
    let flat_given = flat != PermissionFields::default();
    let fields = match (objects.is_empty(), flat_given) {
        (false, true) => return Err(ControlError::PermissionsConflict.into()),
        (true, true) => vec![flat],
        (true, false) => vec![],
        (false, false) => {
            if objects.len() > RULES_PER_REQUEST {
                return Err(ServerError::invalid(
                    "Permissions",
                    objects.len().to_string(),
                ));
            }
            objects
                .iter()
                .map(|o| PermissionFields::read(direction, |k| o.opt(k)))
                .collect()
        }
    };
    Ok(fields
        .iter()
        .map(|f| f.spec(direction))
        .collect::<Result<_, _>>()?)
}

/// `AuthorizeSecurityGroup(Egress)`.
pub(super) fn authorize(call: &Call, direction: Direction) -> Result<Reply> {
    let id: SecurityGroupId = call.params.typed("SecurityGroupId")?;
    let rules = rule_specs(call.params, direction)?;
    if rules.is_empty() {
        return Err(ModelError::Missing("IpProtocol").into());
    }
    call.command(|tx| tx.authorize(&id, &rules))
}

/// `RevokeSecurityGroup(Egress)`: by `SecurityGroupRuleId.N` or by fields, not both.
pub(super) fn revoke(call: &Call, direction: Direction) -> Result<Reply> {
    let p = call.params;
    let id: SecurityGroupId = p.typed("SecurityGroupId")?;
    let ids = p.list("SecurityGroupRuleId");
    let rules = rule_specs(p, direction)?;
    let what = match (ids.is_empty(), rules.is_empty()) {
        (false, false) => return Err(ControlError::PermissionsConflict.into()),
        (false, true) => {
            if ids.len() > RULES_PER_REQUEST {
                return Err(ServerError::invalid(
                    "SecurityGroupRuleId",
                    ids.len().to_string(),
                ));
            }
            let mut parsed: Vec<SecurityGroupRuleId> = Vec::with_capacity(ids.len());
            for i in &ids {
                let rule = i.parse()?;
                if parsed.contains(&rule) {
                    return Err(ServerError::RuleIdRepeated);
                }
                parsed.push(rule);
            }
            Revoke::ByIds(parsed)
        }
        (true, false) => Revoke::ByFields(rules),
        (true, true) => return Err(ModelError::Missing("SecurityGroupRuleId").into()),
    };
    call.command(|tx| tx.revoke(&id, direction, &what))
}

/// `ModifySecurityGroup(Egress)Rule`: the given fields of one rule.
pub(super) fn modify(call: &Call, direction: Direction) -> Result<Reply> {
    let p = call.params;
    let id: SecurityGroupId = p.typed("SecurityGroupId")?;
    let changes = PermissionFields::read(direction, |k| p.opt(k));
    match p.parsed::<SecurityGroupRuleId>("SecurityGroupRuleId")? {
        Some(rule) => call.command(|tx| tx.modify_rule(&id, direction, &rule, &changes)),
        // The older form: the rule named by its fields, only its description changed.
        None => {
            let spec = changes.spec(direction)?;
            call.command(|tx| tx.modify_rule_by_fields(&id, &spec))
        }
    }
}
