//! The ECS actions: parameters parsed into typed commands, run on the control plane, answered
//! in ECS response shapes (lists wrapped as `{"SecurityGroups":{"SecurityGroup":[...]}}`,
//! empty fields as `""`).

use control::{ClientToken, CreateGroup, Ctx, GroupFilter, GroupRecord, Revoke, RuleRecord, Tx};
use model::{Direction, GroupType, NetworkType, NicType, Peer, PermissionFields, SecurityGroupId};
use serde_json::{json, Value};

use crate::wire::{ApiError, Object, Params};
use crate::AppState;
use policy::Evaluator as _;

/// Runs one action for an authenticated caller.
pub fn dispatch(state: &AppState, ctx: &Ctx, action: &str, p: &Params) -> Result<Value, ApiError> {
    match action {
        "DescribeRegions" => Ok(describe_regions(state)),
        "CreateSecurityGroup" => create_security_group(state, ctx, p),
        "DeleteSecurityGroup" => {
            let id = group_id(p)?;
            mutate(state, ctx, action, p, |tx| tx.delete_group(&id))
        }
        "DescribeSecurityGroups" => describe_security_groups(state, ctx, p),
        "DescribeSecurityGroupAttribute" => describe_security_group_attribute(state, ctx, p),
        "ModifySecurityGroupAttribute" => {
            let id = group_id(p)?;
            let name = p
                .opt("SecurityGroupName")
                .map(|n| model::validate_group_name(&n))
                .transpose()?;
            let description = p
                .opt("Description")
                .map(|d| model::validate_group_description(&d))
                .transpose()?;
            mutate(state, ctx, action, p, |tx| {
                tx.modify_group(&id, name, description)
            })
        }
        "ModifySecurityGroupPolicy" => {
            let id = group_id(p)?;
            let policy = p
                .parsed("InnerAccessPolicy")?
                .ok_or(model::ModelError::Missing("InnerAccessPolicy"))?;
            mutate(state, ctx, action, p, |tx| {
                tx.set_inner_access_policy(&id, policy)
            })
        }
        "AuthorizeSecurityGroup" => authorize(state, ctx, action, p, Direction::Ingress),
        "AuthorizeSecurityGroupEgress" => authorize(state, ctx, action, p, Direction::Egress),
        "RevokeSecurityGroup" => revoke(state, ctx, action, p, Direction::Ingress),
        "RevokeSecurityGroupEgress" => revoke(state, ctx, action, p, Direction::Egress),
        "ModifySecurityGroupRule" | "ModifySecurityGroupEgressRule" => {
            let direction = if action == "ModifySecurityGroupRule" {
                Direction::Ingress
            } else {
                Direction::Egress
            };
            let id = group_id(p)?;
            let rule: model::SecurityGroupRuleId = p.required("SecurityGroupRuleId")?.parse()?;
            let changes = read_fields(&|k| p.opt(k), direction);
            mutate(state, ctx, action, p, |tx| {
                tx.modify_rule(&id, direction, &rule, &changes)
            })
        }
        "DescribeSecurityGroupReferences" => describe_references(state, ctx, p),
        "DescribeSecurityGroupAudit" => describe_audit(state, ctx, p),
        "DescribeInstanceExposure" => describe_exposure(state, ctx, p),
        "PreviewSecurityGroupChange" => preview(state, ctx, p),
        "TagResources" | "UntagResources" | "ListTagResources" => tag_action(state, ctx, action, p),
        _ => crate::instances::dispatch(state, ctx, action, p).unwrap_or_else(|| {
            Err(ApiError::new(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            ))
        }),
    }
}

fn group_id(p: &Params) -> Result<SecurityGroupId, ApiError> {
    Ok(p.required("SecurityGroupId")?.parse()?)
}

/// Parameters that belong to the transport, not to the request, for ClientToken fingerprints.
pub(crate) const TRANSPORT: [&str; 9] = [
    "Signature",
    "SignatureNonce",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureType",
    "Timestamp",
    "AccessKeyId",
    "Format",
    "ClientToken",
];

/// Runs a mutating command: `DryRun=true` validates it in a transaction that is rolled back;
/// a `ClientToken` makes a retry return the first answer.
pub(crate) fn mutate(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
    p: &Params,
    f: impl FnOnce(&Tx) -> control::Result<()>,
) -> Result<Value, ApiError> {
    mutate_with(state, ctx, action, p, |tx| f(tx).map(|()| json!({})))
}

pub(crate) fn mutate_with(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
    p: &Params,
    f: impl FnOnce(&Tx) -> control::Result<Value>,
) -> Result<Value, ApiError> {
    if let Some(slot) = p.preview() {
        let after = state.control.dry_run(ctx, |tx| {
            f(tx)?;
            tx.region_snapshot()
        })?;
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(after);
        return Ok(json!({}));
    }
    if p.flag("DryRun")? {
        state.control.dry_run(ctx, f)?;
        return Err(ApiError::new(
            400,
            "DryRunOperation",
            "Request validation has been passed with DryRun flag set.",
        ));
    }
    let token = p.opt("ClientToken").map(|token| ClientToken {
        token,
        fingerprint: std::iter::once(action.to_string())
            .chain(
                p.all()
                    .iter()
                    .filter(|(k, _)| !TRANSPORT.contains(&k.as_str()))
                    .map(|(k, v)| format!("{k}={v}")),
            )
            .collect::<Vec<_>>()
            .join("&"),
    });
    Ok(state.control.write(ctx, token.as_ref(), f)?)
}

fn describe_regions(state: &AppState) -> Value {
    let regions: Vec<Value> = state
        .regions
        .iter()
        .map(
            |r| json!({"RegionId": r, "LocalName": r, "RegionEndpoint": "", "Status": "available"}),
        )
        .collect();
    json!({"Regions": {"Region": regions}})
}

fn tags(p: &Params, prefix: &str) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let mut out = Vec::new();
    for t in p.objects(prefix) {
        let key = t
            .opt("Key")
            .ok_or(model::ModelError::Missing("Tag.N.Key"))?;
        if key.len() > 128
            || key.starts_with("aliyun")
            || key.starts_with("acs:")
            || key.contains("://")
        {
            return Err(ApiError::new(
                400,
                "InvalidTagKey.Malformed",
                format!("The specified tag key \"{key}\" is not valid."),
            ));
        }
        let value = t.opt("Value");
        if value
            .as_ref()
            .is_some_and(|v| v.len() > 128 || v.contains("://"))
        {
            return Err(ApiError::new(
                400,
                "InvalidTagValue.Malformed",
                "The specified tag value is not valid.",
            ));
        }
        out.push((key, value));
    }
    if out.len() > 20 {
        return Err(ApiError::new(
            400,
            "InvalidTagCount",
            "A resource can carry at most 20 tags.",
        ));
    }
    Ok(out)
}

fn create_security_group(state: &AppState, ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
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
        tags: tags(p, "Tag")?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
    };
    mutate_with(state, ctx, "CreateSecurityGroup", p, |tx| {
        let id = tx.create_group(req)?;
        Ok(json!({"SecurityGroupId": id.to_string()}))
    })
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
        "ResourceGroupId": "",
        "ServiceManaged": false,
        "RuleCount": rules.len(),
        "GroupToGroupRuleCount": group_rules,
        "EcsCount": members,
        "AvailableInstanceAmount": match g.group_type { GroupType::Normal => 2000usize, GroupType::Enterprise => 65536 }
            .saturating_sub(members),
        "Tags": {"Tag": tags},
    })
}

/// Pagination: `MaxResults` + `NextToken` (the offset of the next page, as a string), or
/// the legacy `PageNumber` + `PageSize`.
pub(crate) enum Paging {
    Token { start: usize, max: usize },
    Pages { number: usize, size: usize },
}

impl Paging {
    pub(crate) fn parse(p: &Params) -> Result<Paging, ApiError> {
        if let Some(max) = p.number("MaxResults", 1, 100)? {
            let start = match p.opt("NextToken") {
                None => 0,
                Some(t) => t
                    .parse::<usize>()
                    .map_err(|_| ApiError::invalid_parameter("NextToken", &t))?,
            };
            return Ok(Paging::Token {
                start,
                max: max as usize,
            });
        }
        let number = p.number("PageNumber", 1, u32::MAX as u64)?.unwrap_or(1) as usize;
        let size = p.number("PageSize", 1, 100)?.unwrap_or(10) as usize;
        Ok(Paging::Pages { number, size })
    }

    /// The slice of `total` items to show, and the paging fields of the response.
    pub(crate) fn window(&self, total: usize) -> (usize, usize, Value) {
        match *self {
            Paging::Token { start, max } => {
                let end = (start + max).min(total);
                let next = if end < total {
                    end.to_string()
                } else {
                    String::new()
                };
                (
                    start.min(total),
                    end,
                    json!({"NextToken": next, "TotalCount": total}),
                )
            }
            Paging::Pages { number, size } => {
                let start = ((number - 1) * size).min(total);
                let end = (start + size).min(total);
                (
                    start,
                    end,
                    json!({"PageNumber": number, "PageSize": size, "TotalCount": total}),
                )
            }
        }
    }
}

fn describe_security_groups(state: &AppState, ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let mut ids: Option<Vec<SecurityGroupId>> = None;
    if let Some(list) = p.opt("SecurityGroupIds") {
        let parsed: Vec<String> = serde_json::from_str(&list)
            .map_err(|_| ApiError::invalid_parameter("SecurityGroupIds", &list))?;
        if parsed.len() > 100 {
            return Err(ApiError::invalid_parameter("SecurityGroupIds", &list));
        }
        ids = Some(parsed.iter().map(|s| s.parse()).collect::<Result<_, _>>()?);
    }
    if let Some(one) = p.parsed::<SecurityGroupId>("SecurityGroupId")? {
        ids.get_or_insert_with(Vec::new).push(one);
    }
    let filter = GroupFilter {
        ids,
        vpc_id: p.parsed("VpcId")?,
        name: p.opt("SecurityGroupName"),
        group_type: p.parsed("SecurityGroupType")?,
        network: match p.opt("NetworkType").as_deref() {
            None => None,
            Some("vpc") => Some(NetworkType::Vpc),
            Some("classic") => Some(NetworkType::Classic),
            Some(other) => return Err(ApiError::invalid_parameter("NetworkType", other)),
        },
        tags: tags(p, "Tag")?,
    };
    let paging = Paging::parse(p)?;
    let value = state.control.read(ctx, |tx| {
        let groups = tx.find_groups(&filter)?;
        let (start, end, mut meta) = paging.window(groups.len());
        let mut items = Vec::new();
        for g in &groups[start..end] {
            items.push(group_json(g, &tx.rules(g)?, tx.members(&g.id)?));
        }
        meta["RegionId"] = json!(ctx.region);
        meta["SecurityGroups"] = json!({"SecurityGroup": items});
        Ok(meta)
    })?;
    Ok(value)
}

fn permission_json(tx: &Tx, r: &RuleRecord) -> Value {
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

fn describe_security_group_attribute(
    state: &AppState,
    ctx: &Ctx,
    p: &Params,
) -> Result<Value, ApiError> {
    let id = group_id(p)?;
    let direction = match p
        .opt("Direction")
        .map(|d| d.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("all") => None,
        Some("ingress") => Some(Direction::Ingress),
        Some("egress") => Some(Direction::Egress),
        Some(other) => return Err(ApiError::invalid_parameter("Direction", other)),
    };
    let nic: Option<NicType> = p.parsed("NicType")?;
    let max = p.number("MaxResults", 10, 1000)?;
    let start = match p.opt("NextToken") {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_parameter("NextToken", &t))?,
    };
    state
        .control
        .read(ctx, |tx| {
            let g = tx.group(&id)?;
            let rules: Vec<RuleRecord> = tx
                .rules(&g)?
                .into_iter()
                .filter(|r| direction.is_none_or(|d| r.permission.direction == d))
                .filter(|r| nic.is_none_or(|n| r.permission.nic_type == n))
                .collect();
            let end = max.map_or(rules.len(), |m| (start + m as usize).min(rules.len()));
            let next = if end < rules.len() {
                end.to_string()
            } else {
                String::new()
            };
            let permissions: Vec<Value> = rules[start.min(end)..end]
                .iter()
                .map(|r| permission_json(tx, r))
                .collect();
            Ok(json!({
                "RegionId": ctx.region,
                "SecurityGroupId": g.id.to_string(),
                "SecurityGroupName": g.name,
                "Description": g.description,
                "VpcId": g.vpc_id.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                "InnerAccessPolicy": g.inner_access_policy.as_wire(),
                "NextToken": next,
                "Permissions": {"Permission": permissions},
            }))
        })
        .map_err(ApiError::from)
}

/// The `Permissions.N.*` entries, or the deprecated flat fields as one rule; both together
/// are refused, as ECS does.
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

fn permission_fields(p: &Params, direction: Direction) -> Result<Vec<PermissionFields>, ApiError> {
    let read = |o: &dyn Fn(&str) -> Option<String>| read_fields(o, direction);
    let objects: Vec<Object> = p.objects("Permissions");
    let flat = read(&|k| p.opt(k));
    let flat_given = flat != PermissionFields::default();
    match (objects.is_empty(), flat_given) {
        (false, true) => Err(control::ControlError::PermissionsConflict.into()),
        (true, true) => Ok(vec![flat]),
        (true, false) => Ok(vec![]),
        (false, false) => {
            if objects.len() > 100 {
                return Err(ApiError::invalid_parameter(
                    "Permissions",
                    &objects.len().to_string(),
                ));
            }
            Ok(objects.iter().map(|o| read(&|k| o.opt(k))).collect())
        }
    }
}

fn authorize(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
    p: &Params,
    direction: Direction,
) -> Result<Value, ApiError> {
    let id = group_id(p)?;
    let rules = permission_fields(p, direction)?;
    if rules.is_empty() {
        return Err(model::ModelError::Missing("IpProtocol").into());
    }
    mutate(state, ctx, action, p, |tx| {
        tx.authorize(&id, direction, &rules)
    })
}

fn revoke(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
    p: &Params,
    direction: Direction,
) -> Result<Value, ApiError> {
    let id = group_id(p)?;
    let ids = p.list("SecurityGroupRuleId");
    let rules = permission_fields(p, direction)?;
    let what = match (ids.is_empty(), rules.is_empty()) {
        (false, false) => return Err(control::ControlError::PermissionsConflict.into()),
        (false, true) => {
            if ids.len() > 100 {
                return Err(ApiError::invalid_parameter(
                    "SecurityGroupRuleId",
                    &ids.len().to_string(),
                ));
            }
            let mut parsed = Vec::new();
            for i in &ids {
                let rid = i.parse()?;
                if parsed.contains(&rid) {
                    return Err(ApiError::new(
                        400,
                        "InvalidParam.SecurityGroupRuleIdRepeated",
                        "The specified SecurityGroupRuleId is repeated.",
                    ));
                }
                parsed.push(rid);
            }
            Revoke::ByIds(parsed)
        }
        (true, false) => Revoke::ByFields(rules),
        (true, true) => return Err(model::ModelError::Missing("SecurityGroupRuleId").into()),
    };
    mutate(state, ctx, action, p, |tx| tx.revoke(&id, direction, &what))
}

fn describe_references(state: &AppState, ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let ids = p.list("SecurityGroupId");
    if ids.is_empty() {
        return Err(model::ModelError::Missing("SecurityGroupId").into());
    }
    if ids.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "SecurityGroupId",
            &ids.len().to_string(),
        ));
    }
    let ids: Vec<SecurityGroupId> = ids.iter().map(|i| i.parse()).collect::<Result<_, _>>()?;
    let value = state.control.read(ctx, |tx| {
        let mut out = Vec::new();
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
    })?;
    Ok(value)
}

fn tag_action(state: &AppState, ctx: &Ctx, action: &str, p: &Params) -> Result<Value, ApiError> {
    let kind_name = p.required("ResourceType")?;
    let kind = control::TaggedType::parse(&kind_name).ok_or_else(|| {
        ApiError::new(
            400,
            "InvalidResourceType.NotSupported",
            format!("The specified ResourceType \"{kind_name}\" is not supported."),
        )
    })?;
    let ids = p.list("ResourceId");
    if ids.len() > 50 {
        return Err(ApiError::invalid_parameter(
            "ResourceId",
            &ids.len().to_string(),
        ));
    }
    if ids.is_empty() && action != "ListTagResources" {
        return Err(model::ModelError::Missing("ResourceId").into());
    }
    match action {
        "TagResources" => {
            let given = tags(p, "Tag")?;
            if given.is_empty() {
                return Err(model::ModelError::Missing("Tag.N.Key").into());
            }
            let mut keys: Vec<&String> = given.iter().map(|(k, _)| k).collect();
            keys.sort();
            keys.dedup();
            if keys.len() != given.len() {
                return Err(ApiError::new(
                    400,
                    "InvalidTagKey.Duplicate",
                    "The specified tag keys are repeated.",
                ));
            }
            let given: Vec<(String, String)> = given
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect();
            mutate(state, ctx, action, p, |tx| tx.tag(kind, &ids, &given))
        }
        "UntagResources" => {
            let keys = p.list("TagKey");
            let all = p.flag("All")?;
            mutate(state, ctx, action, p, |tx| tx.untag(kind, &ids, &keys, all))
        }
        _ => {
            let filter = tags(p, "Tag")?;
            let start = match p.opt("NextToken") {
                None => 0,
                Some(t) => t
                    .parse::<usize>()
                    .map_err(|_| ApiError::invalid_parameter("NextToken", &t))?,
            };
            let value = state.control.read(ctx, |tx| {
                let all = tx.list_tags(kind, &ids, &filter)?;
                let end = (start + 50).min(all.len());
                let page: Vec<Value> = all[start.min(end)..end]
                    .iter()
                    .map(|(id, k, v)| json!({"ResourceId": id, "ResourceType": kind.as_wire(), "TagKey": k, "TagValue": v}))
                    .collect();
                let next = if end < all.len() { end.to_string() } else { String::new() };
                Ok(json!({"NextToken": next, "TagResources": {"TagResource": page}}))
            })?;
            Ok(value)
        }
    }
}

/// The findings as the `DescribeSecurityGroupAudit` response body (and `stockade audit
/// --format json`).
pub fn audit_json(findings: &[policy::audit::Finding]) -> Value {
    let items: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "Check": f.check,
                "Severity": f.severity.as_str(),
                "SecurityGroupId": f.group.to_string(),
                "SecurityGroupRuleId": f.rule.as_ref().map(ToString::to_string).unwrap_or_default(),
                "Message": f.message,
                "Recommendation": f.fix,
            })
        })
        .collect();
    json!({"TotalCount": items.len(), "Findings": {"Finding": items}})
}

/// Stockade's `DescribeSecurityGroupAudit`: the audit of the caller's groups in the region
/// (`SecurityGroupId.N` narrows it; `RiskyPorts` is a comma-separated list).
fn describe_audit(state: &AppState, ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let only: Vec<SecurityGroupId> = p
        .list("SecurityGroupId")
        .iter()
        .map(|g| g.parse())
        .collect::<Result<_, _>>()?;
    let mut config = policy::audit::AuditConfig::default();
    for leave in p.objects("PlannedLeave") {
        let instance = leave
            .opt("InstanceId")
            .ok_or(model::ModelError::Missing("PlannedLeave.N.InstanceId"))?;
        let group = leave
            .opt("SecurityGroupId")
            .ok_or(model::ModelError::Missing("PlannedLeave.N.SecurityGroupId"))?;
        config
            .planned_leaves
            .push((instance.parse()?, group.parse()?));
    }
    if let Some(list) = p.opt("RiskyPorts") {
        config.risky_ports = list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u16>()
                    .map_err(|_| ApiError::invalid_parameter("RiskyPorts", &list))
            })
            .collect::<Result<_, _>>()?;
    }
    let (snapshot, mine) = state.control.read(ctx, |tx| {
        for g in &only {
            tx.group(g)?;
        }
        let mine = tx.find_groups(&GroupFilter::default())?;
        Ok((tx.region_snapshot()?, mine))
    })?;
    config.labels = mine
        .iter()
        .map(|g| {
            let label = policy::audit::GroupLabel {
                name: g.name.clone(),
                description: g.description.clone(),
                tags: g.tags.len(),
            };
            (g.id.clone(), label)
        })
        .collect();
    let mine: Vec<SecurityGroupId> = mine.into_iter().map(|g| g.id).collect();
    let engine_state = policy::State::from_snapshot(&snapshot)
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))?;
    let findings: Vec<policy::audit::Finding> = policy::audit::audit(&engine_state, &config)
        .into_iter()
        .filter(|f| mine.contains(&f.group) && (only.is_empty() || only.contains(&f.group)))
        .collect();
    Ok(audit_json(&findings))
}

/// An exposure as the `DescribeInstanceExposure` response body (and `stockade exposure
/// --format json`): per accepted (protocol, ports, sources) part, what accepts it and which
/// instances have addresses in the sources.
pub fn exposure_json(
    instance: &model::InstanceId,
    exposed: &[policy::exposure::Exposed],
    evaluator: &impl policy::Evaluator,
) -> Result<Value, policy::PolicyError> {
    let mut items = Vec::with_capacity(exposed.len());
    for e in exposed {
        let (group, rule) = match &e.decided_by {
            policy::DecidedBy::Rule { group, rule, .. } => (group.to_string(), rule.to_string()),
            policy::DecidedBy::InnerAccessPolicy(g) => (g.to_string(), String::new()),
            _ => Default::default(),
        };
        let reaching: Vec<String> = policy::exposure::reaching_instances(evaluator, instance, e)?
            .iter()
            .map(ToString::to_string)
            .collect();
        items.push(json!({
            "IpProtocol": protocol_name(e.protocol),
            "PortRange": port_range_wire(e.protocol, e.ports),
            "SourceCidrIps": {"SourceCidrIp": e.sources.iter().map(ToString::to_string).collect::<Vec<_>>()},
            "DecidedBy": e.decided_by.as_wire(),
            "SecurityGroupId": group,
            "SecurityGroupRuleId": rule,
            "SourceInstances": {"InstanceId": reaching},
        }));
    }
    Ok(json!({"InstanceId": instance.to_string(), "Exposures": {"Exposure": items}}))
}

/// Stockade's `DescribeInstanceExposure`: every inbound IPv4 flow one of the caller's
/// instances accepts (`NicType` internet for a classic instance's public interface).
fn describe_exposure(state: &AppState, ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let id: model::InstanceId = p.required("InstanceId")?.parse()?;
    let nic: NicType = p.parsed("NicType")?.unwrap_or(NicType::Intranet);
    state.control.read(ctx, |tx| tx.instance(&id).map(|_| ()))?;
    // The same compiled engine DescribeFlowVerdict uses, rebuilt only when the policy moved.
    let engine = crate::instances::compiled(state, ctx)?;
    let exposed = policy::exposure::exposure(engine.as_ref(), &id, nic)?;
    Ok(exposure_json(&id, &exposed, engine.as_ref())?)
}

/// The commands a preview can run.
const PREVIEWABLE: [&str; 11] = [
    "AuthorizeSecurityGroup",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroup",
    "RevokeSecurityGroupEgress",
    "ModifySecurityGroupRule",
    "ModifySecurityGroupEgressRule",
    "JoinSecurityGroup",
    "LeaveSecurityGroup",
    "ModifySecurityGroupPolicy",
    "ModifyInstanceAttribute",
    "DeleteSecurityGroup",
];

/// Stockade's `PreviewSecurityGroupChange`: `ChangeAction` names a command, the other
/// parameters are that command's. The command is validated and run in a transaction that is
/// rolled back; the answer lists, for each of the caller's instances, the flows (direction,
/// protocol, ports, peers) whose verdict it would flip. Nothing is applied.
fn preview(state: &AppState, ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let change = p.required("ChangeAction")?;
    if !PREVIEWABLE.contains(&change.as_str()) {
        return Err(ApiError::invalid_parameter("ChangeAction", &change));
    }
    let mut command = p.clone();
    command.insert("Action", &change);
    let slot = command.enable_preview();
    let before = state.control.read(ctx, |tx| tx.region_snapshot())?;
    dispatch(state, ctx, &change, &command)?;
    let after = slot
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| {
            ApiError::new(
                500,
                "InternalError",
                "The request processing has failed due to some unknown error.",
            )
        })?;
    let engine = |s: &policy::Snapshot| {
        policy::Engine::new(s).map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
    };
    let (was, will) = (engine(&before)?, engine(&after)?);
    let mine: Vec<model::InstanceId> = state.control.read(ctx, |tx| {
        Ok(tx.instances()?.into_iter().map(|i| i.id).collect())
    })?;
    let mut items = Vec::new();
    for id in &mine {
        for direction in [Direction::Ingress, Direction::Egress] {
            let flips = policy::exposure::changes(&was, &will, id, NicType::Intranet, direction)?;
            for c in flips {
                let peers_in: Vec<String> = will
                    .state()
                    .instances()
                    .filter(|i| {
                        &i.id != id
                            && i.intranet_addresses()
                                .any(|a| c.peers.iter().any(|n| n.contains(&a)))
                    })
                    .map(|i| i.id.to_string())
                    .collect();
                items.push(json!({
                    "InstanceId": id.to_string(),
                    "Direction": if direction == Direction::Ingress { "Ingress" } else { "Egress" },
                    "Effect": if c.allowed { "Allowed" } else { "Denied" },
                    "IpProtocol": protocol_name(c.protocol),
                    "PortRange": port_range_wire(c.protocol, c.ports),
                    "PeerCidrIps": {"PeerCidrIp": c.peers.iter().map(ToString::to_string).collect::<Vec<_>>()},
                    "PeerInstances": {"InstanceId": peers_in},
                }));
            }
        }
    }
    Ok(json!({"TotalCount": items.len(), "Changes": {"Change": items}}))
}

/// `-1/-1` for protocols without ports, `start/end` otherwise.
pub fn port_range_wire(protocol: u8, (lo, hi): (u16, u16)) -> String {
    if matches!(protocol, 6 | 17) {
        format!("{lo}/{hi}")
    } else {
        "-1/-1".to_string()
    }
}

/// The wire name of a probed protocol (50 stands for every protocol ECS cannot name).
pub fn protocol_name(n: u8) -> &'static str {
    match n {
        6 => "TCP",
        17 => "UDP",
        1 => "ICMP",
        58 => "ICMPv6",
        47 => "GRE",
        _ => "OTHER",
    }
}
