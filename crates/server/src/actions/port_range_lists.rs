//! Port range lists: create, describe (lists, one list's entries, the groups using it),
//! modify entries and attributes, delete; their tags are `tags`'s
//! (`ResourceType=portrangelist`).
//!
//! Unlike the older prefix-list actions, these answer arrays bare (`"Entries": [...]`, not
//! `{"Entry": [...]}`), as the SDK models of this newer API decode them.

use control::limits::PORT_RANGE_LIST_ENTRIES;
use control::{CreatePortRangeList, PortRangeListRecord, TaggedType};
use model::{ModelError, PortRange, PortRangeListId, ResourceGroupId};
use serde_json::{json, Value};

use super::{tags, Call, Reply};
use crate::error::Result;
use crate::paging::Paging;
use crate::wire::Params;

/// Longest entry description ECS accepts.
const ENTRY_DESCRIPTION: usize = 32;

/// `PortRangeListName`: the rules of a group name (2 to 128 characters, starting with a
/// letter).
fn name(p: &Params) -> Result<Option<String>> {
    Ok(p.opt("PortRangeListName")
        .map(|n| model::validate_group_name(&n))
        .transpose()?)
}

fn description(p: &Params) -> Result<Option<String>> {
    Ok(p.opt("Description")
        .map(|d| model::validate_group_description(&d))
        .transpose()?)
}

/// `PREFIX.N.PortRange` (and `PREFIX.N.Description`) objects.
fn entries(p: &Params, prefix: &str) -> Result<Vec<(PortRange, String)>> {
    p.objects(prefix)
        .iter()
        .map(|e| {
            let range: PortRange = e
                .opt("PortRange")
                .ok_or(ModelError::Missing("Entry.N.PortRange"))?
                .parse()?;
            let description = e.opt("Description").unwrap_or_default();
            Ok((
                range,
                model::validate_description(&description, ENTRY_DESCRIPTION)?,
            ))
        })
        .collect()
}

/// `CreatePortRangeList`.
pub(super) fn create(call: &Call) -> Result<Reply> {
    let p = call.params;
    let req = CreatePortRangeList {
        name: name(p)?.ok_or(ModelError::Missing("PortRangeListName"))?,
        description: description(p)?.unwrap_or_default(),
        max_entries: p
            .number("MaxEntries", 1, PORT_RANGE_LIST_ENTRIES as u64)?
            .ok_or(ModelError::Missing("MaxEntries"))? as usize,
        resource_group_id: p.parsed("ResourceGroupId")?,
        entries: entries(p, "Entry")?,
    };
    let tags = tags::parse_to_set(p, "Tag")?;
    call.command_with(|tx| {
        let id = tx.create_port_range_list(&req)?;
        if !tags.is_empty() {
            tx.tag(TaggedType::PortRangeList, &[id.to_string()], &tags)?;
        }
        Ok(json!({"PortRangeListId": id.to_string()}))
    })
}

/// `ModifyPortRangeList`.
pub(super) fn modify(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: PortRangeListId = p.typed("PortRangeListId")?;
    let (name, description) = (name(p)?, description(p)?);
    let add = entries(p, "AddEntry")?;
    let remove: Vec<PortRange> = entries(p, "RemoveEntry")?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    call.command(|tx| tx.modify_port_range_list(&id, name, description, &add, &remove))
}

/// `DeletePortRangeList`.
pub(super) fn delete(call: &Call) -> Result<Reply> {
    let id: PortRangeListId = call.params.typed("PortRangeListId")?;
    call.command(|tx| tx.delete_port_range_list(&id))
}

/// `DescribePortRangeLists`: the caller's lists, filtered and paged by
/// `MaxResults`/`NextToken`.
pub(super) fn describe(call: &Call) -> Result<Reply> {
    let p = call.params;
    let ids: Vec<PortRangeListId> = p.typed_list("PortRangeListId")?;
    let name = p.opt("PortRangeListName");
    let resource_group: Option<ResourceGroupId> = p.parsed("ResourceGroupId")?;
    let wanted = tags::parse(p, "Tag")?;
    let max = p.number("MaxResults", 1, 100)?.unwrap_or(10);
    let paging = Paging::after_token(p, Some(max))?;
    call.read(|tx| {
        let mut all = Vec::new();
        for l in tx.port_range_lists()? {
            let tags = tx.resource_tags(TaggedType::PortRangeList, l.id.as_str())?;
            let keep = (ids.is_empty() || ids.contains(&l.id))
                && name.as_ref().is_none_or(|n| &l.name == n)
                && resource_group
                    .as_ref()
                    .is_none_or(|r| l.resource_group_id.as_ref() == Some(r))
                && tags::matches(&wanted, &tags);
            if keep {
                all.push(summary(&l, &tags));
            }
        }
        let window = paging.window(all.len());
        Ok(json!({
            "NextToken": window.next_token,
            "PortRangeLists": all[window.range.clone()],
        }))
    })
}

fn summary(l: &PortRangeListRecord, tags: &[(String, String)]) -> Value {
    json!({
        "PortRangeListId": l.id.to_string(),
        "PortRangeListName": l.name,
        "Description": l.description,
        "MaxEntries": l.max_entries,
        "AssociationCount": l.associations.len(),
        "CreationTime": l.created_at,
        "ResourceGroupId": l.resource_group_id.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        "Tags": tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>(),
    })
}

/// `DescribePortRangeListEntries`: one list's entries.
pub(super) fn describe_entries(call: &Call) -> Result<Reply> {
    let id: PortRangeListId = call.params.typed("PortRangeListId")?;
    call.read(|tx| {
        let l = tx.port_range_list(&id)?;
        Ok(json!({
            "Entries": l.entries.iter().map(|(r, d)| json!({"PortRange": r.to_string(), "Description": d})).collect::<Vec<_>>(),
        }))
    })
}

/// `DescribePortRangeListAssociations`: the groups whose rules use the list.
pub(super) fn describe_associations(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: PortRangeListId = p.typed("PortRangeListId")?;
    let max = p.number("MaxResults", 1, 100)?.unwrap_or(10);
    let paging = Paging::after_token(p, Some(max))?;
    call.read(|tx| {
        let l = tx.port_range_list(&id)?;
        let window = paging.window(l.associations.len());
        let page: Vec<Value> = l.associations[window.range.clone()]
            .iter()
            .map(|g| json!({"ResourceId": g.to_string(), "ResourceType": "SecurityGroup"}))
            .collect();
        Ok(json!({
            "NextToken": window.next_token,
            "PortRangeListAssociations": page,
        }))
    })
}
