//! `TagResources`, `UntagResources`, `ListTagResources`, and the `Tag.N` parameters other
//! actions take (filters, tags at creation).

use control::limits::{RESOURCES_PER_TAG_REQUEST, TAGS_PER_RESOURCE, TAG_LENGTH, TAG_PAGE};
use control::{ControlError, TaggedType};
use model::ModelError;
use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::{Result, ServerError};
use crate::paging::Paging;
use crate::wire::Params;

/// Tag keys no request may use: ECS reserves `aliyun` and `acs:`; Stockade reserves
/// `stockade:` the same way (its placement was once the `stockade:host` tag, which any tenant
/// could set; placement is now the operator's, and the prefix stays refused so that no tag
/// can look like it means something to the data plane).
const RESERVED_TAG_PREFIXES: [&str; 3] = ["aliyun", "acs:", "stockade:"];

/// The `prefix.N.Key` / `prefix.N.Value` pairs, validated as ECS validates tags (a key
/// without a value is `None`: as a filter it matches any value).
pub(super) fn parse(p: &Params, prefix: &str) -> Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for t in p.objects(prefix) {
        let key = t.opt("Key").ok_or(ModelError::Missing("Tag.N.Key"))?;
        if key.len() > TAG_LENGTH
            || RESERVED_TAG_PREFIXES.iter().any(|p| key.starts_with(p))
            || key.contains("://")
        {
            return Err(ServerError::TagKeyMalformed(key));
        }
        let value = t.opt("Value");
        if value
            .as_ref()
            .is_some_and(|v| v.len() > TAG_LENGTH || v.contains("://"))
        {
            return Err(ServerError::TagValueMalformed);
        }
        out.push((key, value));
    }
    if out.len() > TAGS_PER_RESOURCE {
        return Err(ControlError::TagLimit.into());
    }
    Ok(out)
}

pub(super) use control::tags_match as matches;

/// Tags to set: the pairs with absent values as empty ones.
pub(super) fn parse_to_set(p: &Params, prefix: &str) -> Result<Vec<(String, String)>> {
    Ok(parse(p, prefix)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// `ResourceType` and `ResourceId.N` of a tag request.
fn resources(call: &Call, required: bool) -> Result<(TaggedType, Vec<String>)> {
    let p = call.params;
    let name = p.required("ResourceType")?;
    // Each product tags its own resources: ECS's groups, instances, interfaces and prefix
    // lists; the VPC product's VPCs and vSwitches.
    let kind = TaggedType::parse(&name)
        .filter(|k| {
            matches!(k, TaggedType::Vpc | TaggedType::VSwitch)
                == (call.action.product() == super::Product::Vpc)
        })
        .ok_or(ServerError::ResourceTypeNotSupported(name))?;
    let ids = p.list("ResourceId");
    if ids.len() > RESOURCES_PER_TAG_REQUEST {
        return Err(ServerError::invalid("ResourceId", ids.len().to_string()));
    }
    if ids.is_empty() && required {
        return Err(ModelError::Missing("ResourceId").into());
    }
    Ok((kind, ids))
}

/// `TagResources`: sets the tags on every resource, all or none.
pub(super) fn tag(call: &Call) -> Result<Reply> {
    let (kind, ids) = resources(call, true)?;
    let given = parse_to_set(call.params, "Tag")?;
    if given.is_empty() {
        return Err(ModelError::Missing("Tag.N.Key").into());
    }
    let mut keys: Vec<&String> = given.iter().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    if keys.len() != given.len() {
        return Err(ServerError::TagKeyDuplicate);
    }
    call.command(|tx| tx.tag(kind, &ids, &given))
}

/// `UntagResources`: removes the named keys (or `All`).
pub(super) fn untag(call: &Call) -> Result<Reply> {
    let (kind, ids) = resources(call, true)?;
    let keys = call.params.list("TagKey");
    let all = call.params.flag("All")?;
    call.command(|tx| tx.untag(kind, &ids, &keys, all))
}

/// `TagFilter.N.TagKey` with its `TagValues.M`: a resource passes when, for every filter,
/// it has the key with one of the values (any value when none is given).
fn tag_filters(p: &Params) -> Result<Vec<(String, Vec<String>)>> {
    p.objects("TagFilter")
        .iter()
        .map(|f| {
            let key = f
                .opt("TagKey")
                .ok_or(ModelError::Missing("TagFilter.N.TagKey"))?;
            Ok((key, f.list("TagValues")))
        })
        .collect()
}

/// `ListTagResources`: the tags of the named (or all) resources, 50 a page, narrowed by
/// `Tag.N` and `TagFilter.N`.
pub(super) fn list(call: &Call) -> Result<Reply> {
    let (kind, ids) = resources(call, false)?;
    let filter = parse(call.params, "Tag")?;
    let filters = tag_filters(call.params)?;
    let paging = Paging::after_token(call.params, Some(TAG_PAGE))?;
    call.read(|tx| {
        let mut all = tx.list_tags(kind, &ids, &filter)?;
        if !filters.is_empty() {
            let mut by_resource: std::collections::BTreeMap<&str, Vec<(&str, &str)>> =
                Default::default();
            for (id, k, v) in &all {
                by_resource.entry(id).or_default().push((k, v));
            }
            let kept: std::collections::BTreeSet<String> = by_resource
                .iter()
                .filter(|(_, tags)| {
                    filters.iter().all(|(key, values)| {
                        tags.iter().any(|(k, v)| {
                            k == key && (values.is_empty() || values.iter().any(|x| x == v))
                        })
                    })
                })
                .map(|(id, _)| id.to_string())
                .collect();
            all.retain(|(id, _, _)| kept.contains(id));
        }
        let window = paging.window(all.len());
        let page: Vec<Value> = all[window.range.clone()]
            .iter()
            .map(|(id, k, v)| {
                json!({"ResourceId": id, "ResourceType": kind.as_wire(), "TagKey": k, "TagValue": v})
            })
            .collect();
        Ok(json!({"NextToken": window.next_token, "TagResources": {"TagResource": page}}))
    })
}

/// The `ResourceType` and single `ResourceId` of the older tag actions (`AddTags`,
/// `RemoveTags`, `DescribeTags`), which name one resource of the ECS product.
fn old_resource(call: &Call, required: bool) -> Result<Option<(TaggedType, String)>> {
    let p = call.params;
    let id = p.opt("ResourceId");
    let Some(name) = p.opt("ResourceType") else {
        return match (required, id) {
            (false, None) => Ok(None),
            _ => Err(ModelError::Missing("ResourceType").into()),
        };
    };
    let kind = TaggedType::parse(&name)
        .filter(|k| OLD_TYPES.contains(k))
        .ok_or(ServerError::ResourceTypeNotSupported(name))?;
    match id {
        Some(id) => Ok(Some((kind, id))),
        None if required => Err(ModelError::Missing("ResourceId").into()),
        // A type without an id: every resource of the type.
        None => Ok(Some((kind, String::new()))),
    }
}

/// What the older tag actions reach: the types `DescribeTags` counts in `ResourceTypeCount`
/// that exist here (prefix lists came after those actions and have no count field).
const OLD_TYPES: [TaggedType; 3] = [
    TaggedType::Instance,
    TaggedType::SecurityGroup,
    TaggedType::Eni,
];

/// `AddTags`: `TagResources` for one resource.
pub(super) fn add(call: &Call) -> Result<Reply> {
    let (kind, id) = old_resource(call, true)?.expect("required");
    let given = parse_to_set(call.params, "Tag")?;
    if given.is_empty() {
        return Err(ModelError::Missing("Tag.N.Key").into());
    }
    call.command(|tx| tx.tag(kind, std::slice::from_ref(&id), &given))
}

/// `RemoveTags`: removes the given keys of one resource (a key given with a value only when
/// the resource's value is that one).
pub(super) fn remove(call: &Call) -> Result<Reply> {
    let (kind, id) = old_resource(call, true)?.expect("required");
    let wanted = parse(call.params, "Tag")?;
    if wanted.is_empty() {
        return Err(ModelError::Missing("Tag.N.Key").into());
    }
    call.command(|tx| {
        let keys: Vec<String> = tx
            .resource_tags(kind, &id)?
            .into_iter()
            .filter(|(k, v)| {
                wanted
                    .iter()
                    .any(|(wk, wv)| wk == k && wv.as_ref().is_none_or(|wv| wv == v))
            })
            .map(|(k, _)| k)
            .collect();
        tx.untag(kind, std::slice::from_ref(&id), &keys, false)
    })
}

/// `DescribeTags`: the distinct tags (key and value) of the caller's resources, with how
/// many resources of each type carry them; narrowed by `ResourceType`, `ResourceId` and
/// `Tag.N` (a pair is listed when it matches one of them), `PageNumber`/`PageSize` paged.
pub(super) fn describe(call: &Call) -> Result<Reply> {
    let only = old_resource(call, false)?;
    let wanted = parse(call.params, "Tag")?;
    let paging = Paging::parse(call.params)?;
    call.read(|tx| {
        let mut counts: std::collections::BTreeMap<(String, String), [usize; 3]> =
            Default::default();
        for (slot, kind) in OLD_TYPES.iter().enumerate() {
            let ids: Vec<String> = match &only {
                Some((k, _)) if k != kind => continue,
                Some((_, id)) if !id.is_empty() => vec![id.clone()],
                _ => Vec::new(),
            };
            for (_, k, v) in tx.list_tags(*kind, &ids, &[])? {
                let listed = wanted.is_empty()
                    || wanted
                        .iter()
                        .any(|(wk, wv)| *wk == k && wv.as_ref().is_none_or(|wv| *wv == v));
                if listed {
                    counts.entry((k, v)).or_default()[slot] += 1;
                }
            }
        }
        let all: Vec<Value> = counts
            .into_iter()
            .map(|((k, v), [instances, groups, enis])| {
                json!({
                    "TagKey": k,
                    "TagValue": v,
                    "ResourceTypeCount": {
                        "Instance": instances, "Securitygroup": groups, "Eni": enis,
                        "Disk": 0, "Image": 0, "Snapshot": 0, "Ddh": 0, "KeyPair": 0,
                        "LaunchTemplate": 0, "ReservedInstance": 0, "SnapshotPolicy": 0, "Volume": 0,
                    },
                })
            })
            .collect();
        let window = paging.window(all.len());
        let mut body = paging.fields(&window, all.len());
        body["Tags"] = json!({"Tag": all[window.range.clone()]});
        Ok(body)
    })
}

/// `JoinResourceGroup`: one security group or instance (`ResourceType` `securitygroup` or
/// `instance`) into the resource group `ResourceGroupId`.
pub(super) fn join_resource_group(call: &Call) -> Result<Reply> {
    let p = call.params;
    let group: model::ResourceGroupId = p.typed("ResourceGroupId")?;
    let kind = p.required("ResourceType")?;
    let resource = match TaggedType::parse(&kind) {
        Some(TaggedType::SecurityGroup) => control::Grouped::SecurityGroup(p.typed("ResourceId")?),
        Some(TaggedType::Instance) => control::Grouped::Instance(p.typed("ResourceId")?),
        _ => return Err(ServerError::ResourceTypeNotSupported(kind)),
    };
    call.command(|tx| tx.join_resource_group(&resource, &group))
}
