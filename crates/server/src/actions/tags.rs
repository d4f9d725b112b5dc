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

/// `ListTagResources`: the tags of the named (or all) resources, 50 a page.
pub(super) fn list(call: &Call) -> Result<Reply> {
    let (kind, ids) = resources(call, false)?;
    let filter = parse(call.params, "Tag")?;
    let paging = Paging::after_token(call.params, Some(TAG_PAGE))?;
    call.read(|tx| {
        let all = tx.list_tags(kind, &ids, &filter)?;
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
