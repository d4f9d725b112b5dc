//! Security groups: create, describe, modify, delete, and who references them.

use control::limits::{group_members, GROUP_IDS_PER_REQUEST, REFERENCE_QUERIES_PER_REQUEST};
use control::{CreateGroup, GroupFilter, GroupRecord, RuleRecord};
use model::{Direction, GroupType, ModelError, NetworkType, NicType, Peer, SecurityGroupId};
use serde_json::{json, Value};

use super::{rules, tags, Call, Reply};
use crate::error::{Result, ServerError};
use crate::paging::Paging;

/// `CreateSecurityGroup`.
pub(super) fn create(call: &Call) -> Result<Reply> {
    let p = call.params;
    let req = CreateGroup {
        name: p
            .opt("SecurityGroupName")
            .map(|n| model::validate_group_name(&n))
            .transpose()?
            .unwrap_or_default(),
        description: p
            .opt("Description")
            .map(|d| model::validate_group_description(&d))
            .transpose()?
            .unwrap_or_default(),
        group_type: p
            .parsed::<GroupType>("SecurityGroupType")?
            .unwrap_or_default(),
        vpc_id: p.parsed("VpcId")?,
        tags: tags::parse_to_set(p, "Tag")?,
        resource_group_id: p.parsed("ResourceGroupId")?,
    };
    call.command_with(|tx| {
        let id = tx.create_group(req)?;
        Ok(json!({"SecurityGroupId": id.to_string()}))
    })
}

/// `DeleteSecurityGroup`.
pub(super) fn delete(call: &Call) -> Result<Reply> {
    let id: SecurityGroupId = call.params.typed("SecurityGroupId")?;
    call.command(|tx| tx.delete_group(&id))
}

/// `ModifySecurityGroupAttribute`: name and description.
pub(super) fn modify_attribute(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: SecurityGroupId = p.typed("SecurityGroupId")?;
    let name = p
        .opt("SecurityGroupName")
        .map(|n| model::validate_group_name(&n))
        .transpose()?;
    let description = p
        .opt("Description")
        .map(|d| model::validate_group_description(&d))
        .transpose()?;
    call.command(|tx| tx.modify_group(&id, name, description))
}

/// `ModifySecurityGroupPolicy`: the `InnerAccessPolicy`.
pub(super) fn modify_policy(call: &Call) -> Result<Reply> {
    let id: SecurityGroupId = call.params.typed("SecurityGroupId")?;
    let policy = call.params.typed("InnerAccessPolicy")?;
    call.command(|tx| tx.set_inner_access_policy(&id, policy))
}

fn group_json(g: &GroupRecord, rules: &[RuleRecord], members: usize) -> Value {
    let tags: Vec<Value> = g
        .tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    let group_rules = rules
        .iter()
        .filter(|r| matches!(r.permission.peer, Peer::Group(_)))
        .count();
    json!({
        "SecurityGroupId": g.id.to_string(),
        "SecurityGroupName": g.name,
        "Description": g.description,
        "SecurityGroupType": g.group_type.as_wire(),
        "VpcId": g.vpc_id.as_ref().map(|v| v.to_string()).unwrap_or_default(),
        "CreationTime": g.created_at,
        "ResourceGroupId": g.resource_group_id.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        "ServiceManaged": false,
        "ServiceID": 0,
        "RuleCount": rules.len(),
        "GroupToGroupRuleCount": group_rules,
        "EcsCount": members,
        "AvailableInstanceAmount": group_members(g.group_type).saturating_sub(members),
        "Tags": {"Tag": tags},
    })
}

/// `DescribeSecurityGroups`: the caller's groups in the region, filtered and paged.
pub(super) fn describe(call: &Call) -> Result<Reply> {
    let p = call.params;
    let mut ids: Option<Vec<SecurityGroupId>> = None;
    if let Some(list) = p.opt("SecurityGroupIds") {
        let parsed: Vec<String> = match serde_json::from_str::<Vec<String>>(&list) {
            Ok(v) if v.len() <= GROUP_IDS_PER_REQUEST => v,
            _ => return Err(ServerError::invalid("SecurityGroupIds", list)),
        };
        ids = Some(parsed.iter().map(|s| s.parse()).collect::<Result<_, _>>()?);
    }
    if let Some(one) = p.parsed::<SecurityGroupId>("SecurityGroupId")? {
        ids.get_or_insert_with(Vec::new).push(one);
    }
    let filter = GroupFilter {
        ids,
        vpc_id: p.parsed("VpcId")?,
        name: p.opt("SecurityGroupName"),
        fuzzy: p.flag("FuzzyQuery")?,
        group_type: p.parsed("SecurityGroupType")?,
        network: match p.opt("NetworkType").as_deref() {
            None => None,
            Some("vpc") => Some(NetworkType::Vpc),
            Some("classic") => Some(NetworkType::Classic),
            Some(other) => return Err(ServerError::invalid("NetworkType", other)),
        },
        tags: tags::parse(p, "Tag")?,
        resource_group_id: p.parsed("ResourceGroupId")?,
    };
    // No group here is managed by a cloud service: asking only for managed ones finds none.
    let managed_only = p.flag("ServiceManaged")?;
    let paging = Paging::parse(p)?;
    call.read(|tx| {
        let groups = if managed_only {
            Vec::new()
        } else {
            tx.find_groups(&filter)?
        };
        let window = paging.window(groups.len());
        let mut items = Vec::with_capacity(window.range.len());
        for g in &groups[window.range.clone()] {
            items.push(group_json(g, &tx.rules(g)?, tx.members(&g.id)?));
        }
        let mut body = paging.fields(&window, groups.len());
        body["RegionId"] = json!(call.ctx.region);
        body["SecurityGroups"] = json!({"SecurityGroup": items});
        Ok(body)
    })
}

/// `DescribeSecurityGroupAttribute`: a group and its rules, by direction and NicType.
pub(super) fn describe_attribute(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: SecurityGroupId = p.typed("SecurityGroupId")?;
    let direction = match p
        .opt("Direction")
        .map(|d| d.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("all") => None,
        Some("ingress") => Some(Direction::Ingress),
        Some("egress") => Some(Direction::Egress),
        Some(other) => return Err(ServerError::invalid("Direction", other)),
    };
    let nic: Option<NicType> = p.parsed("NicType")?;
    // `Attribute=snapshotPolicyIds` asks for the snapshot policies associated with the
    // group: there are no disks here, so none, and the answer always says so (the SDKs'
    // model has the field either way).
    if let Some(other) = p.opt("Attribute").filter(|a| a != "snapshotPolicyIds") {
        return Err(ServerError::invalid("Attribute", other));
    }
    let (min, max) = control::limits::RULE_PAGE;
    let paging = Paging::after_token(p, p.number("MaxResults", min, max)?)?;
    call.read(|tx| {
        let g = tx.group(&id)?;
        let rules: Vec<RuleRecord> = tx
            .rules(&g)?
            .into_iter()
            .filter(|r| direction.is_none_or(|d| r.permission.direction == d))
            .filter(|r| nic.is_none_or(|n| r.permission.nic_type == n))
            .collect();
        let window = paging.window(rules.len());
        let permissions: Vec<Value> = rules[window.range.clone()]
            .iter()
            .map(|r| rules::permission_json(tx, r))
            .collect();
        Ok(json!({
            "RegionId": call.ctx.region,
            "SecurityGroupId": g.id.to_string(),
            "SecurityGroupName": g.name,
            "Description": g.description,
            "VpcId": g.vpc_id.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            "InnerAccessPolicy": g.inner_access_policy.as_wire(),
            "NextToken": window.next_token,
            "Permissions": {"Permission": permissions},
            "SnapshotPolicyIds": {"SnapshotPolicyId": []},
        }))
    })
}

/// `DescribeSecurityGroupReferences`: the groups whose rules name each given group.
pub(super) fn describe_references(call: &Call) -> Result<Reply> {
    let ids: Vec<SecurityGroupId> = call.params.typed_list("SecurityGroupId")?;
    if ids.is_empty() {
        return Err(ModelError::Missing("SecurityGroupId").into());
    }
    if ids.len() > REFERENCE_QUERIES_PER_REQUEST {
        return Err(ServerError::invalid(
            "SecurityGroupId",
            ids.len().to_string(),
        ));
    }
    call.read(|tx| {
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            let referencing: Vec<Value> = tx
                .references(id)?
                .into_iter()
                .map(|(g, owner)| json!({"SecurityGroupId": g.to_string(), "AliUid": owner.to_string()}))
                .collect();
            out.push(json!({
                "SecurityGroupId": id.to_string(),
                "ReferencingSecurityGroups": {"ReferencingSecurityGroup": referencing},
            }));
        }
        Ok(json!({"SecurityGroupReferences": {"SecurityGroupReference": out}}))
    })
}
