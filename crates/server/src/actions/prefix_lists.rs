//! Prefix lists: create, describe (lists, one list's entries, the groups using it), modify
//! entries and attributes, delete; their tags are `tags`'s (`ResourceType=prefixlist`).

use control::{AddressFamily, CreatePrefixList, PrefixListRecord, TaggedType};
use ipnet::IpNet;
use model::{ModelError, PrefixListId};
use serde_json::{json, Value};

use super::{tags, Call, Reply};
use crate::error::{Result, ServerError};
use crate::paging::Paging;
use crate::wire::Params;

/// `PrefixListName`: the rules of a group name (2 to 128 characters, starting with a letter).
fn name(p: &Params) -> Result<Option<String>> {
    Ok(p.opt("PrefixListName")
        .map(|n| model::validate_group_name(&n))
        .transpose()?)
}

fn description(p: &Params) -> Result<Option<String>> {
    Ok(p.opt("Description")
        .map(|d| model::validate_group_description(&d))
        .transpose()?)
}

/// `PREFIX.N.Cidr` (and `PREFIX.N.Description`) objects.
fn entries(p: &Params, prefix: &str) -> Result<Vec<(IpNet, String)>> {
    p.objects(prefix)
        .iter()
        .map(|e| {
            let cidr = e.opt("Cidr").ok_or(ModelError::Missing("Entry.N.Cidr"))?;
            let net: IpNet = cidr
                .parse()
                .map_err(|_| ServerError::invalid("Entry.N.Cidr", cidr))?;
            Ok((net, e.opt("Description").unwrap_or_default()))
        })
        .collect()
}

fn family(p: &Params) -> Result<Option<AddressFamily>> {
    match p.opt("AddressFamily") {
        None => Ok(None),
        Some(f) => AddressFamily::parse(&f)
            .map(Some)
            .ok_or_else(|| ModelError::InvalidParameter("AddressFamily", f).into()),
    }
}

/// `CreatePrefixList`.
pub(super) fn create(call: &Call) -> Result<Reply> {
    let p = call.params;
    let req = CreatePrefixList {
        name: name(p)?.ok_or(ModelError::Missing("PrefixListName"))?,
        description: description(p)?.unwrap_or_default(),
        family: family(p)?.ok_or(ModelError::Missing("AddressFamily"))?,
        max_entries: p
            .number("MaxEntries", 1, control::limits::PREFIX_LIST_ENTRIES as u64)?
            .ok_or(ModelError::Missing("MaxEntries"))? as usize,
        entries: entries(p, "Entry")?,
    };
    let tags = tags::parse_to_set(p, "Tag")?;
    call.command_with(|tx| {
        let id = tx.create_prefix_list(&req)?;
        if !tags.is_empty() {
            tx.tag(TaggedType::PrefixList, &[id.to_string()], &tags)?;
        }
        Ok(json!({"PrefixListId": id.to_string()}))
    })
}

/// `ModifyPrefixList`.
pub(super) fn modify(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: PrefixListId = p.typed("PrefixListId")?;
    let (name, description) = (name(p)?, description(p)?);
    let add = entries(p, "AddEntry")?;
    let remove: Vec<IpNet> = entries(p, "RemoveEntry")?
        .into_iter()
        .map(|(net, _)| net)
        .collect();
    call.command(|tx| tx.modify_prefix_list(&id, name, description, &add, &remove))
}

/// `DeletePrefixList`.
pub(super) fn delete(call: &Call) -> Result<Reply> {
    let id: PrefixListId = call.params.typed("PrefixListId")?;
    call.command(|tx| tx.delete_prefix_list(&id))
}

/// `DescribePrefixLists`: the caller's lists, filtered and paged by `MaxResults`/`NextToken`.
pub(super) fn describe(call: &Call) -> Result<Reply> {
    let p = call.params;
    let ids: Vec<PrefixListId> = p.typed_list("PrefixListId")?;
    let name = p.opt("PrefixListName");
    let family = family(p)?;
    let wanted = tags::parse(p, "Tag")?;
    let max = p.number("MaxResults", 1, 100)?.unwrap_or(10);
    let paging = Paging::after_token(p, Some(max))?;
    call.read(|tx| {
        let mut all = Vec::new();
        for l in tx.prefix_lists()? {
            let tags = tx.resource_tags(TaggedType::PrefixList, l.id.as_str())?;
            let keep = (ids.is_empty() || ids.contains(&l.id))
                && name.as_ref().is_none_or(|n| &l.name == n)
                && family.is_none_or(|f| l.family == f)
                && tags::matches(&wanted, &tags);
            if keep {
                all.push(summary(&l, &tags));
            }
        }
        let window = paging.window(all.len());
        Ok(json!({
            "NextToken": window.next_token,
            "PrefixLists": {"PrefixList": all[window.range.clone()]},
        }))
    })
}

fn summary(l: &PrefixListRecord, tags: &[(String, String)]) -> Value {
    json!({
        "PrefixListId": l.id.to_string(),
        "PrefixListName": l.name,
        "Description": l.description,
        "AddressFamily": l.family.as_wire(),
        "MaxEntries": l.max_entries,
        "AssociationCount": l.associations.len(),
        "CreationTime": l.created_at,
        "ResourceGroupId": "",
        "Tags": {"Tag": tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>()},
    })
}

/// `DescribePrefixListAttributes`: one list with its entries.
pub(super) fn describe_attributes(call: &Call) -> Result<Reply> {
    let id: PrefixListId = call.params.typed("PrefixListId")?;
    call.read(|tx| {
        let l = tx.prefix_list(&id)?;
        Ok(json!({
            "PrefixListId": l.id.to_string(),
            "PrefixListName": l.name,
            "Description": l.description,
            "AddressFamily": l.family.as_wire(),
            "MaxEntries": l.max_entries,
            "CreationTime": l.created_at,
            "Entries": {"Entry": l.entries.iter().map(|(net, d)| json!({"Cidr": net.to_string(), "Description": d})).collect::<Vec<_>>()},
        }))
    })
}

/// `DescribePrefixListAssociations`: the groups whose rules use the list.
pub(super) fn describe_associations(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: PrefixListId = p.typed("PrefixListId")?;
    let max = p.number("MaxResults", 1, 100)?.unwrap_or(10);
    let paging = Paging::after_token(p, Some(max))?;
    call.read(|tx| {
        let l = tx.prefix_list(&id)?;
        let window = paging.window(l.associations.len());
        let page: Vec<Value> = l.associations[window.range.clone()]
            .iter()
            .map(|g| json!({"ResourceId": g.to_string(), "ResourceType": "securitygroup"}))
            .collect();
        Ok(json!({
            "NextToken": window.next_token,
            "PrefixListAssociations": {"PrefixListAssociation": page},
        }))
    })
}
