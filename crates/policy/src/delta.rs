//! Deltas of the agent feed: what changed in a host's share between two revisions, item by
//! item, so that a change costs bytes in proportion to itself rather than to the share.
//!
//! A feed answer (see `server::agents`) holds five keyed lists: the host's
//! `NetworkInterfaces` and the policy document's `SecurityGroups`, `Instances`,
//! `PrefixLists` and `PortRangeLists`. An item is one group with all its rules, one member,
//! one list with its entries: small next to a share of thousands, and the unit a change
//! touches. The server remembers, per host, a [`Digest`] of the last answer (each item's key
//! and a hash) and answers a poll after that revision with the items whose hash differs and
//! the keys that are gone; the agent keeps the items themselves ([`Items`]) and applies the
//! delta. Why hashes on the server: a thousand hosts' digests are a few megabytes where their
//! documents would be gigabytes. The hasher is seeded at random per server process, so a
//! tenant cannot craft a rule whose text collides with another's to hide a change.
//!
//! Why the server's work per host is small: an item's text is hashed once per revision for
//! the whole region ([`RegionHashes`]), and a host's hash of it only mixes in what the host's
//! cut changes (a group without its rules, a member with only the groups the host keeps),
//! so bringing a host's digest up to date is a pass of hash lookups over its share, and only
//! the items that changed are written out.
//!
//! Both sides order items by key, so the document an agent rebuilds from deltas is the one
//! it would rebuild from a full answer at the same revision, byte for byte.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;

use model::{MemberId, PortRangeListId, PrefixListId, SecurityGroupId};
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::{document, Share, Snapshot};

/// The keyed lists: where each sits in an answer (at the top, or in `Policy`) and the fields
/// whose first non-empty value names an item. A list of fields lives here and nowhere else.
const LISTS: [(Place, &str, &[&str]); 5] = [
    (Place::Top, "NetworkInterfaces", &["NetworkInterfaceId"]),
    (Place::Policy, "SecurityGroups", &["SecurityGroupId"]),
    // A member is named by its interface when it is one (a secondary interface), else by
    // its instance: its `MemberId`.
    (
        Place::Policy,
        "Instances",
        &["NetworkInterfaceId", "InstanceId"],
    ),
    (Place::Policy, "PrefixLists", &["PrefixListId"]),
    (Place::Policy, "PortRangeLists", &["PortRangeListId"]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Top,
    Policy,
}

/// Why a delta could not be applied; the agent then asks for the whole share again.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeltaError {
    /// A list or item is not where the format puts it.
    #[error("feed answer malformed: {0}")]
    Malformed(String),
    /// The delta was made against another revision than the one held.
    #[error("delta against revision {base}, but revision {held} is held")]
    WrongBase {
        /// The delta's base.
        base: u64,
        /// What the agent holds.
        held: u64,
    },
    /// After applying, a list does not hold as many items as the server counted.
    #[error("after the delta, {list} holds {got} items where the server has {want}")]
    Count {
        /// The list.
        list: &'static str,
        /// Items held.
        got: usize,
        /// Items the server counted.
        want: usize,
    },
}

fn list_of<'a>(answer: &'a Value, place: Place, name: &str) -> Result<&'a [Value], DeltaError> {
    let at = match place {
        Place::Top => answer,
        Place::Policy => &answer["Policy"],
    };
    match &at[name] {
        Value::Null => Ok(&[]),
        Value::Array(items) => Ok(items),
        _ => Err(DeltaError::Malformed(format!("{name} is not a list"))),
    }
}

fn key_of(item: &Value, fields: &[&str]) -> Result<String, DeltaError> {
    fields
        .iter()
        .find_map(|f| item[*f].as_str().filter(|k| !k.is_empty()))
        .map(str::to_string)
        .ok_or_else(|| DeltaError::Malformed(format!("an item without a text {}", fields[0])))
}

/// A whole answer's lists: the host's `interfaces` and its `share` of the policy.
pub fn whole(share: &Share<'_>, interfaces: &[Value]) -> Value {
    json!({
        "NetworkInterfaces": interfaces,
        "Policy": document::to_value(&share.to_snapshot()),
    })
}

/// Indexes of the lists in [`LISTS`].
const INTERFACES: usize = 0;
const GROUPS: usize = 1;
const MEMBERS: usize = 2;
const PREFIX_LISTS: usize = 3;
const PORT_LISTS: usize = 4;

/// Each item of a region's policy hashed once at one revision, for every host's delta.
#[derive(Debug, Clone, Default)]
pub struct RegionHashes {
    /// Per group: with its rules, and its attributes alone.
    groups: HashMap<SecurityGroupId, (u64, u64)>,
    members: HashMap<MemberId, u64>,
    prefix_lists: HashMap<PrefixListId, u64>,
    port_range_lists: HashMap<PortRangeListId, u64>,
}

impl RegionHashes {
    /// Hashes every item of `snapshot` (a region's policy) as the document writes it.
    pub fn new(snapshot: &Snapshot, hasher: &impl BuildHasher) -> RegionHashes {
        let doc = document::to_value(snapshot);
        let list = |name: &str| doc[name].as_array().cloned().unwrap_or_default();
        let mut hashes = RegionHashes::default();
        for (g, mut item) in snapshot.groups.iter().zip(list("SecurityGroups")) {
            let full = hash(&item, hasher);
            item["Permissions"] = json!([]);
            hashes
                .groups
                .insert(g.group.id.clone(), (full, hash(&item, hasher)));
        }
        for (i, item) in snapshot.instances.iter().zip(list("Instances")) {
            hashes.members.insert(i.id.clone(), hash(&item, hasher));
        }
        for (l, item) in snapshot.prefix_lists.iter().zip(list("PrefixLists")) {
            hashes
                .prefix_lists
                .insert(l.id.clone(), hash(&item, hasher));
        }
        for (l, item) in snapshot.port_range_lists.iter().zip(list("PortRangeLists")) {
            hashes
                .port_range_lists
                .insert(l.id.clone(), hash(&item, hasher));
        }
        hashes
    }
}

/// What a host's digest moved by: per list, the keys of items added or changed and of those
/// removed, and how many the list holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    changed: [HashSet<String>; 5],
    removed: [Vec<String>; 5],
    counts: [usize; 5],
}

impl Changes {
    /// Items added, changed or removed, over all lists.
    pub fn len(&self) -> usize {
        self.changed.iter().map(HashSet::len).sum::<usize>()
            + self.removed.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `Delta` object of these changes against revision `base`: the changed items of
    /// `share` (and of `interfaces`, the host's interface items) written out, the removed
    /// keys, and the counts (a check for the agent).
    pub fn to_value(&self, base: u64, share: &Share<'_>, interfaces: &[Value]) -> Value {
        let picked = share.pick(
            |g| self.changed[GROUPS].contains(g.as_str()),
            |m| self.changed[MEMBERS].contains(m.as_str()),
        );
        let doc = json!({
            "NetworkInterfaces": interfaces,
            "Policy": document::to_value(&picked),
        });
        let (mut changed, mut removed, mut counts) = (Map::new(), Map::new(), Map::new());
        for (n, (place, name, fields)) in LISTS.iter().enumerate() {
            let items: Vec<Value> = list_of(&doc, *place, name)
                .unwrap_or_default()
                .iter()
                .filter(|item| key_of(item, fields).is_ok_and(|k| self.changed[n].contains(&k)))
                .cloned()
                .collect();
            if !items.is_empty() {
                changed.insert((*name).into(), Value::Array(items));
            }
            if !self.removed[n].is_empty() {
                removed.insert((*name).into(), json!(self.removed[n]));
            }
            counts.insert((*name).into(), json!(self.counts[n]));
        }
        json!({
            "Base": base,
            "Changed": changed,
            "Removed": removed,
            "Counts": counts,
        })
    }
}

/// What the server remembers of the last answer to a host: per list, each item's key and
/// hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    lists: [HashMap<String, u64>; 5],
}

impl Digest {
    /// Items held, over all lists (what a digest costs in memory is about this many keys).
    pub fn len(&self) -> usize {
        self.lists.iter().map(HashMap::len).sum()
    }

    /// Whether no list holds anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings the digest to a host's `share` of the region hashed in `region`, and to its
    /// `interfaces` (the answer's interface items); returns what moved. A pass of lookups
    /// over the share: texts are written only for the host's interfaces, which are few.
    pub fn update(
        &mut self,
        share: &Share<'_>,
        interfaces: &[Value],
        region: &RegionHashes,
        hasher: &impl BuildHasher,
    ) -> Changes {
        let mut changes = Changes::default();
        let mut interface_keys = Vec::with_capacity(interfaces.len());
        for item in interfaces {
            let key = key_of(item, LISTS[INTERFACES].2).unwrap_or_default();
            let h = hash(item, hasher);
            interface_keys.push(key);
            self.note(
                INTERFACES,
                interface_keys.last().expect("just pushed"),
                h,
                &mut changes,
            );
        }
        let groups = share.groups.iter().map(|(g, own)| {
            let (full, bare) = region.groups.get(&g.group.id).copied().unwrap_or_default();
            (g.group.id.as_str(), if *own { full } else { bare })
        });
        let members = share.instances.iter().map(|i| {
            let mut kept = Vec::with_capacity(i.security_groups.len());
            kept.extend(share.groups_of(i).map(|g| g.as_str()));
            let of_region = region.members.get(&i.id).copied().unwrap_or_default();
            (i.id.as_str(), hasher.hash_one((of_region, kept)))
        });
        let prefix_lists = share.prefix_lists.iter().map(|l| {
            (
                l.id.as_str(),
                region.prefix_lists.get(&l.id).copied().unwrap_or_default(),
            )
        });
        let port_lists = share.port_range_lists.iter().map(|l| {
            (
                l.id.as_str(),
                region
                    .port_range_lists
                    .get(&l.id)
                    .copied()
                    .unwrap_or_default(),
            )
        });
        let mut keys: [Vec<&str>; 5] = Default::default();
        keys[INTERFACES] = interface_keys.iter().map(String::as_str).collect();
        for (n, items) in [
            (GROUPS, groups.collect::<Vec<_>>()),
            (MEMBERS, members.collect()),
            (PREFIX_LISTS, prefix_lists.collect()),
            (PORT_LISTS, port_lists.collect()),
        ] {
            for (key, h) in items {
                self.note(n, key, h, &mut changes);
                keys[n].push(key);
            }
        }
        for (n, keys) in keys.iter().enumerate() {
            changes.counts[n] = keys.len();
            // Keys the share no longer has: only looked for when the list holds more than
            // the share (the common change removes nothing).
            if self.lists[n].len() > keys.len() {
                let now: HashSet<&str> = keys.iter().copied().collect();
                let mut gone: Vec<String> = self.lists[n]
                    .keys()
                    .filter(|k| !now.contains(k.as_str()))
                    .cloned()
                    .collect();
                gone.sort();
                for k in &gone {
                    self.lists[n].remove(k);
                }
                changes.removed[n] = gone;
            }
        }
        changes
    }

    /// Records item `key` of list `n` at hash `h`, noting it changed if it did.
    fn note(&mut self, n: usize, key: &str, h: u64, changes: &mut Changes) {
        match self.lists[n].get_mut(key) {
            Some(held) if *held == h => {}
            Some(held) => {
                *held = h;
                changes.changed[n].insert(key.to_string());
            }
            None => {
                self.lists[n].insert(key.to_string(), h);
                changes.changed[n].insert(key.to_string());
            }
        }
    }
}

fn hash(item: &Value, hasher: &impl BuildHasher) -> u64 {
    // Items are written by one function with their fields in one order, so equal items
    // have equal texts.
    hasher.hash_one(item.to_string())
}

/// What the agent keeps of its share: every item by list and key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Items {
    lists: [BTreeMap<String, Value>; 5],
}

impl Items {
    /// The items of a full answer.
    pub fn of(answer: &Value) -> Result<Items, DeltaError> {
        let mut items = Items::default();
        for ((place, name, fields), out) in LISTS.iter().zip(&mut items.lists) {
            for item in list_of(answer, *place, name)? {
                out.insert(key_of(item, fields)?, item.clone());
            }
        }
        Ok(items)
    }

    /// Applies a `Delta` object made against revision `held`. On an error the items are
    /// left unusable: the caller drops them and asks for the whole share.
    pub fn apply(&mut self, delta: &Value, held: u64) -> Result<(), DeltaError> {
        let base = delta["Base"]
            .as_u64()
            .ok_or_else(|| DeltaError::Malformed("a delta without Base".into()))?;
        if base != held {
            return Err(DeltaError::WrongBase { base, held });
        }
        for ((_, name, fields), items) in LISTS.iter().zip(&mut self.lists) {
            if let Some(gone) = delta["Removed"][*name].as_array() {
                for key in gone {
                    let key = key
                        .as_str()
                        .ok_or_else(|| DeltaError::Malformed(format!("a {name} key")))?;
                    items.remove(key);
                }
            }
            if let Some(changed) = delta["Changed"][*name].as_array() {
                for item in changed {
                    items.insert(key_of(item, fields)?, item.clone());
                }
            }
            let want = delta["Counts"][*name]
                .as_u64()
                .ok_or_else(|| DeltaError::Malformed(format!("a delta without {name}'s count")))?;
            if items.len() as u64 != want {
                return Err(DeltaError::Count {
                    list: name,
                    got: items.len(),
                    want: want as usize,
                });
            }
        }
        Ok(())
    }

    /// The answer these items make, items ordered by key: `NetworkInterfaces` and `Policy`.
    pub fn to_answer(&self) -> Value {
        let (mut top, mut policy) = (Map::new(), Map::new());
        for ((place, name, _), items) in LISTS.iter().zip(&self.lists) {
            let list = Value::Array(items.values().cloned().collect());
            match place {
                Place::Top => top.insert((*name).into(), list),
                Place::Policy => policy.insert((*name).into(), list),
            };
        }
        top.insert("Policy".into(), Value::Object(policy));
        Value::Object(top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_against_another_revision_or_miscounted_is_refused() {
        let groups = |ids: &[&str]| json!({"Policy": {"SecurityGroups": ids.iter().map(|g| json!({"SecurityGroupId": g})).collect::<Vec<_>>()}});
        let delta = json!({
            "Base": 3,
            "Changed": {"SecurityGroups": [{"SecurityGroupId": "sg-a", "Rules": 2}]},
            "Removed": {},
            "Counts": {"NetworkInterfaces": 0, "SecurityGroups": 1, "Instances": 0, "PrefixLists": 0, "PortRangeLists": 0},
        });
        let mut held = Items::of(&groups(&["sg-a"])).unwrap();
        assert_eq!(
            held.clone().apply(&delta, 4),
            Err(DeltaError::WrongBase { base: 3, held: 4 })
        );
        held.apply(&delta, 3).unwrap();
        assert_eq!(held.to_answer()["Policy"]["SecurityGroups"][0]["Rules"], 2);
        // Items held that the server's digest did not have: the count says so.
        let mut other = Items::of(&groups(&["sg-a", "sg-z"])).unwrap();
        assert!(matches!(
            other.apply(&delta, 3),
            Err(DeltaError::Count {
                list: "SecurityGroups",
                got: 2,
                want: 1
            })
        ));
    }
}
