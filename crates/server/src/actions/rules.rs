//! Security group rules: authorize, revoke and modify, in both directions, and the rule
//! as `DescribeSecurityGroupAttribute` shows it.

use control::limits::RULES_PER_REQUEST;
use control::{ControlError, Revoke, RuleRecord, Tx};
use model::{Direction, ModelError, PermissionFields, SecurityGroupId, SecurityGroupRuleId};
use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::{Result, ServerError};
use crate::wire::{Object, Params};

/// One rule as `DescribeSecurityGroupAttribute` lists it.
pub(super) fn permission_json(tx: &Tx, r: &RuleRecord) -> Value {
    let p = &r.permission;
    let f = p.to_fields();
    let s = |v: Option<String>| v.unwrap_or_default();
    let name_of = |g: &Option<String>| {
        g.as_ref()
            .and_then(|id| id.parse().ok())
            .and_then(|id| tx.group(&id).ok())
            .map(|g| g.name)
            .unwrap_or_default()
    };
    let (source_group, dest_group) = match p.direction {
        Direction::Ingress => (f.group_id.clone(), None),
        Direction::Egress => (None, f.group_id.clone()),
    };
    let (owner_account, owner_id) = (
        s(f.group_owner_account.clone()),
        s(f.group_owner_id.clone()),
    );
    let (source_pl, dest_pl) = match p.direction {
        Direction::Ingress => (f.prefix_list_id.clone(), None),
        Direction::Egress => (None, f.prefix_list_id.clone()),
    };
    json!({
        "SecurityGroupRuleId": p.id.to_string(),
        "Direction": p.direction.as_wire(),
        "Policy": p.policy.as_wire(),
        "Priority": p.priority.to_string(),
        "IpProtocol": p.protocol.ip_protocol().as_wire(),
        "PortRange": p.protocol.port_range_wire(),
        "PortRangeListId": "",
        "PortRangeListName": "",
        "SourcePortRange": p.protocol.source_port_range_wire(),
        "NicType": p.nic_type.as_wire(),
        "Description": p.description,
        "CreateTime": r.created_at,
        "SourceCidrIp": s(f.source_cidr_ip),
        "Ipv6SourceCidrIp": s(f.ipv6_source_cidr_ip),
        "SourceGroupId": s(source_group.clone()),
        "SourceGroupName": name_of(&source_group),
        "SourceGroupOwnerAccount": if p.direction == Direction::Ingress { owner_account.clone() } else { String::new() },
        "SourceGroupOwnerId": if p.direction == Direction::Ingress { owner_id.clone() } else { String::new() },
        "SourcePrefixListId": s(source_pl),
        "SourcePrefixListName": "",
        "DestCidrIp": s(f.dest_cidr_ip),
        "Ipv6DestCidrIp": s(f.ipv6_dest_cidr_ip),
        "DestGroupId": s(dest_group.clone()),
        "DestGroupName": name_of(&dest_group),
        "DestGroupOwnerAccount": if p.direction == Direction::Egress { owner_account } else { String::new() },
        "DestGroupOwnerId": if p.direction == Direction::Egress { owner_id } else { String::new() },
        "DestPrefixListId": s(dest_pl),
        "DestPrefixListName": "",
    })
}

/// One rule's fields as named on the wire, read through `o` (flat parameters, or one
/// `Permissions.N` object). The peer-group fields are `Source*` on ingress, `Dest*` on egress.
fn read_fields(o: &dyn Fn(&str) -> Option<String>, direction: Direction) -> PermissionFields {
    let peer = |ingress_name: &str, egress_name: &str| match direction {
        Direction::Ingress => o(ingress_name),
        Direction::Egress => o(egress_name),
    };
    PermissionFields {
        policy: o("Policy"),
        priority: o("Priority"),
        ip_protocol: o("IpProtocol"),
        port_range: o("PortRange"),
        source_port_range: o("SourcePortRange"),
        source_cidr_ip: o("SourceCidrIp"),
        ipv6_source_cidr_ip: o("Ipv6SourceCidrIp"),
        dest_cidr_ip: o("DestCidrIp"),
        ipv6_dest_cidr_ip: o("Ipv6DestCidrIp"),
        group_id: peer("SourceGroupId", "DestGroupId"),
        group_owner_account: peer("SourceGroupOwnerAccount", "DestGroupOwnerAccount"),
        group_owner_id: peer("SourceGroupOwnerId", "DestGroupOwnerId"),
        prefix_list_id: peer("SourcePrefixListId", "DestPrefixListId"),
        nic_type: o("NicType"),
        description: o("Description"),
    }
}

/// The `Permissions.N.*` entries, or the deprecated flat fields as one rule; both together
/// are refused, as ECS does.
fn permission_fields(p: &Params, direction: Direction) -> Result<Vec<PermissionFields>> {
    let read = |o: &dyn Fn(&str) -> Option<String>| read_fields(o, direction);
    let objects: Vec<Object> = p.objects("Permissions");
    let flat = read(&|k| p.opt(k));
    let flat_given = flat != PermissionFields::default();
    match (objects.is_empty(), flat_given) {
        (false, true) => Err(ControlError::PermissionsConflict.into()),
        (true, true) => Ok(vec![flat]),
        (true, false) => Ok(vec![]),
        (false, false) => {
            if objects.len() > RULES_PER_REQUEST {
                return Err(ServerError::invalid(
                    "Permissions",
                    objects.len().to_string(),
                ));
            }
            Ok(objects.iter().map(|o| read(&|k| o.opt(k))).collect())
        }
    }
}

/// `AuthorizeSecurityGroup(Egress)`.
pub(super) fn authorize(call: &Call, direction: Direction) -> Result<Reply> {
    let id: SecurityGroupId = call.params.typed("SecurityGroupId")?;
    let rules = permission_fields(call.params, direction)?;
    if rules.is_empty() {
        return Err(ModelError::Missing("IpProtocol").into());
    }
    call.command(|tx| tx.authorize(&id, direction, &rules))
}

/// `RevokeSecurityGroup(Egress)`: by `SecurityGroupRuleId.N` or by fields, not both.
pub(super) fn revoke(call: &Call, direction: Direction) -> Result<Reply> {
    let p = call.params;
    let id: SecurityGroupId = p.typed("SecurityGroupId")?;
    let ids = p.list("SecurityGroupRuleId");
    let rules = permission_fields(p, direction)?;
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
    let rule: SecurityGroupRuleId = p.typed("SecurityGroupRuleId")?;
    let changes = read_fields(&|k| p.opt(k), direction);
    call.command(|tx| tx.modify_rule(&id, direction, &rule, &changes))
}
