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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use model::{Instance, MemberId};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::{document, Cut, GroupPolicy, Share, Snapshot};

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

/// One item of a region hashed: where it sits in the snapshot's list, the hash of its text,
/// and (groups) the hash of its text without rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hashed {
    at: usize,
    full: u64,
    bare: u64,
}

/// Keys of items, per list.
pub type ItemKeys = [HashSet<String>; 5];

/// The items of a region's policy a change may have touched, by key: what
/// [`RegionHashes::refreshed`] hashes again (an item named here need not have changed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirty {
    /// Groups (`sg-...`).
    pub groups: HashSet<String>,
    /// Members (instances and secondary interfaces).
    pub members: HashSet<String>,
    /// Prefix lists.
    pub prefix_lists: HashSet<String>,
    /// Port range lists.
    pub port_range_lists: HashSet<String>,
}

/// Each item of a region's policy hashed once at one revision, for every host's delta, and
/// which items differ from the revision hashed before it. (Maps keyed by resource ids use the
/// fast unkeyed hasher: ids are made by the server, not chosen by tenants; what tenants write
/// is hashed with the keyed one.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionHashes {
    items: [FxHashMap<String, Hashed>; 5],
    since: Option<(u64, ItemKeys)>,
}

impl RegionHashes {
    /// Hashes every item of `snapshot` (a region's policy) as the document writes it.
    pub fn new(snapshot: &Snapshot, hasher: &impl BuildHasher) -> RegionHashes {
        let texts = ItemTexts::new(snapshot);
        let mut hashes = RegionHashes::default();
        for (n, list) in texts.items.iter().enumerate() {
            for (at, (key, text)) in list.iter().enumerate() {
                let full = hasher.hash_one(&**text);
                let bare = match n {
                    GROUPS => hasher.hash_one(&*texts.bare_groups[at]),
                    _ => full,
                };
                hashes.items[n].insert(key.clone(), Hashed { at, full, bare });
            }
        }
        hashes
    }

    /// The hashes of `snapshot`, a region's policy made from the one these hashes were made
    /// of by replacing, adding or removing the items `dirty` names: only those are written
    /// and hashed again (a write of one tenant costs the feed what it touched, not the
    /// region), the others keep their hashes at their new positions.
    pub fn refreshed(
        &self,
        snapshot: &Snapshot,
        dirty: &Dirty,
        hasher: &impl BuildHasher,
    ) -> RegionHashes {
        let mut out = RegionHashes::default();
        let text = |v: Value| v.to_string();
        let mut put = |n: usize,
                       at: usize,
                       key: &str,
                       dirty: &HashSet<String>,
                       make: &mut dyn FnMut() -> (u64, u64)| {
            let hashed = match self.items[n].get(key) {
                Some(h) if !dirty.contains(key) => Hashed { at, ..*h },
                _ => {
                    let (full, bare) = make();
                    Hashed { at, full, bare }
                }
            };
            out.items[n].insert(key.to_string(), hashed);
        };
        for (at, g) in snapshot.groups.iter().enumerate() {
            put(GROUPS, at, g.group.id.as_str(), &dirty.groups, &mut || {
                let bare = GroupPolicy {
                    group: g.group.clone(),
                    permissions: Default::default(),
                };
                (
                    hasher.hash_one(text(document::group_value(g)).as_str()),
                    hasher.hash_one(text(document::group_value(&bare)).as_str()),
                )
            });
        }
        let same = |v: Value| {
            let h = hasher.hash_one(text(v).as_str());
            (h, h)
        };
        for (at, i) in snapshot.instances.iter().enumerate() {
            put(MEMBERS, at, i.id.as_str(), &dirty.members, &mut || {
                same(document::instance_value(i))
            });
        }
        for (at, l) in snapshot.prefix_lists.iter().enumerate() {
            put(
                PREFIX_LISTS,
                at,
                l.id.as_str(),
                &dirty.prefix_lists,
                &mut || same(document::prefix_list_value(l)),
            );
        }
        for (at, l) in snapshot.port_range_lists.iter().enumerate() {
            put(
                PORT_LISTS,
                at,
                l.id.as_str(),
                &dirty.port_range_lists,
                &mut || same(document::port_range_list_value(l)),
            );
        }
        out
    }

    /// Notes which items differ from `previous`, the hashes of revision `revision`.
    pub fn after(mut self, revision: u64, previous: &RegionHashes) -> RegionHashes {
        let mut changed = ItemKeys::default();
        for (n, (now, before)) in self.items.iter().zip(&previous.items).enumerate() {
            let differs = |a: &Hashed, b: Option<&Hashed>| {
                b.is_none_or(|b| (a.full, a.bare) != (b.full, b.bare))
            };
            changed[n].extend(
                now.iter()
                    .filter(|(k, h)| differs(h, before.get(*k)))
                    .map(|(k, _)| k.clone()),
            );
            changed[n].extend(before.keys().filter(|k| !now.contains_key(*k)).cloned());
        }
        self.since = Some((revision, changed));
        self
    }

    /// The revision hashed before this one and the items that differ from it, if known.
    pub fn since(&self) -> Option<(u64, &ItemKeys)> {
        self.since.as_ref().map(|(r, keys)| (*r, keys))
    }

    /// The cut of a host whose local members are `local`, found through this index.
    pub fn cut(&self, snapshot: &Snapshot, local: &BTreeSet<MemberId>) -> Cut {
        let at = |n: usize, key: &str| self.items[n].get(key).map(|h| h.at);
        Cut::new(
            local.clone(),
            local
                .iter()
                .filter_map(|m| at(MEMBERS, m.as_str()))
                .filter_map(|i| snapshot.instances.get(i)),
            |g| at(GROUPS, g.as_str()).and_then(|i| snapshot.groups.get(i)),
        )
    }

    /// Member `id` of `snapshot` (the snapshot these hashes were made of).
    pub fn member<'s>(&self, snapshot: &'s Snapshot, id: &MemberId) -> Option<&'s Instance> {
        let at = self.items[MEMBERS].get(id.as_str())?.at;
        snapshot.instances.get(at)
    }

    fn hashed(&self, n: usize, key: &str) -> Option<Hashed> {
        self.items[n].get(key).copied()
    }
}

/// Every item of a region's policy as the document writes it, at its position in the
/// snapshot's list: its key and text, and (groups) the text without rules that a host whose
/// rules only reference the group holds.
#[derive(Debug, Default)]
struct ItemTexts {
    items: [Vec<(String, Arc<str>)>; 5],
    bare_groups: Vec<Arc<str>>,
}

impl ItemTexts {
    fn new(snapshot: &Snapshot) -> ItemTexts {
        let text = |v: Value| Arc::<str>::from(v.to_string());
        let mut texts = ItemTexts::default();
        for g in &snapshot.groups {
            let key = g.group.id.as_str().to_string();
            texts.items[GROUPS].push((key, text(document::group_value(g))));
            let bare = GroupPolicy {
                group: g.group.clone(),
                permissions: Default::default(),
            };
            texts.bare_groups.push(text(document::group_value(&bare)));
        }
        for i in &snapshot.instances {
            let key = i.id.as_str().to_string();
            texts.items[MEMBERS].push((key, text(document::instance_value(i))));
        }
        for l in &snapshot.prefix_lists {
            let key = l.id.as_str().to_string();
            texts.items[PREFIX_LISTS].push((key, text(document::prefix_list_value(l))));
        }
        for l in &snapshot.port_range_lists {
            let key = l.id.as_str().to_string();
            texts.items[PORT_LISTS].push((key, text(document::port_range_list_value(l))));
        }
        texts
    }
}

/// A region's items at one revision as whole answers write them. Why: a thousand hosts
/// starting at once each ask for a share of thousands of items that are, item by item, the
/// same texts; each is written once here and copied into every answer that holds it.
#[derive(Debug, Default)]
pub struct Texts {
    items: ItemTexts,
    /// Members listed with only some of their groups (those a host's cut keeps), by position
    /// and which of the member's groups are kept; made on first use.
    trimmed: Mutex<FxHashMap<(usize, u64), Arc<str>>>,
}

impl Texts {
    /// The texts of every item of `snapshot`, a region's policy.
    pub fn new(snapshot: &Snapshot) -> Texts {
        Texts {
            items: ItemTexts::new(snapshot),
            trimmed: Mutex::default(),
        }
    }

    /// Writes the fields of a whole answer, `"NetworkInterfaces":[...],"Policy":{...}`, for
    /// the share `cut` makes of `snapshot` (the snapshot these texts were made of) and the
    /// host's `interfaces`: the text of [`whole`] for the same share, items in the same order.
    pub fn write_whole(
        &self,
        out: &mut String,
        snapshot: &Snapshot,
        cut: &Cut,
        interfaces: &[Value],
    ) {
        let texts = &self.items;
        out.push_str("\"NetworkInterfaces\":");
        out.push_str(&Value::from(interfaces.to_vec()).to_string());
        out.push_str(",\"Policy\":{");
        let groups = snapshot
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| cut.keeps_group(&g.group.id))
            .map(|(at, g)| match cut.owns(&g.group.id) {
                true => &*texts.items[GROUPS][at].1,
                false => &*texts.bare_groups[at],
            });
        push_list(out, GROUPS, groups);
        out.push(',');
        let mut trimmed = self.trimmed.lock().unwrap_or_else(|e| e.into_inner());
        let members = snapshot
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| cut.keeps_member(i))
            .map(|(at, i)| {
                // Which of its groups the share lists names the member's text exactly (a
                // member has at most a few groups; past 64 it is written each time).
                let kept = i
                    .security_groups
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| cut.groups_of(i).any(|k| k == *g))
                    .fold(0u64, |mask, (n, _)| {
                        mask | 1u64.checked_shl(n as u32).unwrap_or(0)
                    });
                if kept.count_ones() as usize == i.security_groups.len() {
                    return Arc::clone(&texts.items[MEMBERS][at].1);
                }
                let write = || Arc::from(document::instance_value(&cut.member(i)).to_string());
                if i.security_groups.len() > 64 {
                    return write();
                }
                Arc::clone(trimmed.entry((at, kept)).or_insert_with(write))
            })
            .collect::<Vec<_>>();
        drop(trimmed);
        push_list(out, MEMBERS, members.iter().map(|t| &**t));
        out.push(',');
        let prefix_lists = snapshot
            .prefix_lists
            .iter()
            .enumerate()
            .filter(|(_, l)| cut.keeps_prefix_list(&l.id))
            .map(|(at, _)| &*texts.items[PREFIX_LISTS][at].1);
        push_list(out, PREFIX_LISTS, prefix_lists);
        out.push(',');
        let port_lists = snapshot
            .port_range_lists
            .iter()
            .enumerate()
            .filter(|(_, l)| cut.keeps_port_range_list(&l.id))
            .map(|(at, _)| &*texts.items[PORT_LISTS][at].1);
        push_list(out, PORT_LISTS, port_lists);
        out.push('}');
    }
}

/// Writes list `n` of [`LISTS`] as a JSON field holding `items`, texts already written.
fn push_list<'t>(out: &mut String, n: usize, items: impl Iterator<Item = &'t str>) {
    out.push('"');
    out.push_str(LISTS[n].1);
    out.push_str("\":[");
    for (k, item) in items.enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
}

/// A member's hash in a share: its region hash and the groups the share lists it with.
fn member_hash(of_region: u64, cut: &Cut, i: &Instance, hasher: &impl BuildHasher) -> u64 {
    let mut h = hasher.build_hasher();
    of_region.hash(&mut h);
    for g in cut.groups_of(i) {
        g.as_str().hash(&mut h);
    }
    h.finish()
}

/// What a host's digest moved by: per list, the keys of items added or changed and of those
/// removed, and how many the list holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    changed: ItemKeys,
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

    /// The `Delta` object of these changes against revision `base`: the changed items of the
    /// share `cut` makes of `snapshot` (found through `region`, its hashes) and of
    /// `interfaces` (the host's interface items) written out, the removed keys, and the
    /// counts (a check for the agent).
    pub fn to_value(
        &self,
        base: u64,
        snapshot: &Snapshot,
        region: &RegionHashes,
        cut: &Cut,
        interfaces: &[Value],
    ) -> Value {
        let at = |n: usize| -> Vec<usize> {
            let mut at: Vec<usize> = self.changed[n]
                .iter()
                .filter_map(|k| region.hashed(n, k).map(|h| h.at))
                .collect();
            at.sort_unstable();
            at
        };
        let picked = Snapshot {
            groups: at(GROUPS)
                .into_iter()
                .map(|i| cut.group(&snapshot.groups[i]))
                .collect(),
            instances: at(MEMBERS)
                .into_iter()
                .map(|i| cut.member(&snapshot.instances[i]))
                .collect(),
            prefix_lists: at(PREFIX_LISTS)
                .into_iter()
                .map(|i| snapshot.prefix_lists[i].clone())
                .collect(),
            port_range_lists: at(PORT_LISTS)
                .into_iter()
                .map(|i| snapshot.port_range_lists[i].clone())
                .collect(),
        };
        let interfaces: Vec<&Value> = interfaces
            .iter()
            .filter(|i| {
                key_of(i, LISTS[INTERFACES].2).is_ok_and(|k| self.changed[INTERFACES].contains(&k))
            })
            .collect();
        let mut doc =
            json!({"NetworkInterfaces": interfaces, "Policy": document::to_value(&picked)});
        let (mut changed, mut removed, mut counts) = (Map::new(), Map::new(), Map::new());
        for (n, (place, name, _)) in LISTS.iter().enumerate() {
            // Moved out of the document just written, not copied.
            let items = match place {
                Place::Top => doc[*name].take(),
                Place::Policy => doc["Policy"][*name].take(),
            };
            if items.as_array().is_some_and(|a| !a.is_empty()) {
                changed.insert((*name).into(), items);
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
/// hash, and the cut that made the share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    lists: [FxHashMap<String, u64>; 5],
    cut: Option<Cut>,
}

impl Digest {
    /// Items held, over all lists (what a digest costs in memory is about this many keys).
    pub fn len(&self) -> usize {
        self.lists.iter().map(FxHashMap::len).sum()
    }

    /// Whether no list holds anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings the digest to a host's `share` of the region hashed in `region`, and to its
    /// `interfaces` (the answer's interface items); returns what moved. A pass of lookups
    /// over the whole share.
    pub fn update(
        &mut self,
        share: &Share<'_>,
        interfaces: &[Value],
        region: &RegionHashes,
        hasher: &impl BuildHasher,
    ) -> Changes {
        let mut changes = Changes::default();
        self.interfaces(interfaces, hasher, &mut changes);
        let cut = &share.cut;
        let hashed = |n: usize, key: &str| {
            region.hashed(n, key).unwrap_or(Hashed {
                at: 0,
                full: 0,
                bare: 0,
            })
        };
        let groups = share.groups.iter().map(|(g, own)| {
            let (key, h) = (g.group.id.as_str(), hashed(GROUPS, g.group.id.as_str()));
            (GROUPS, key, if *own { h.full } else { h.bare })
        });
        let members = share.instances.iter().map(|i| {
            let of_region = hashed(MEMBERS, i.id.as_str()).full;
            (
                MEMBERS,
                i.id.as_str(),
                member_hash(of_region, cut, i, hasher),
            )
        });
        let prefix_lists = share.prefix_lists.iter().map(|l| {
            let key = l.id.as_str();
            (PREFIX_LISTS, key, hashed(PREFIX_LISTS, key).full)
        });
        let port_lists = share.port_range_lists.iter().map(|l| {
            let key = l.id.as_str();
            (PORT_LISTS, key, hashed(PORT_LISTS, key).full)
        });
        let mut keys: [Vec<&str>; 5] = Default::default();
        for (n, key, h) in groups.chain(members).chain(prefix_lists).chain(port_lists) {
            keys[n].push(key);
            self.note(n, key, h, &mut changes);
        }
        for (n, keys) in keys.iter().enumerate().skip(1) {
            // Keys the share no longer has: only looked for when the list holds more than
            // the share (the common change removes nothing).
            if self.lists[n].len() > keys.len() {
                let now: HashSet<&str> = keys.iter().copied().collect();
                let gone: Vec<String> = self.lists[n]
                    .keys()
                    .filter(|k| !now.contains(k.as_str()))
                    .cloned()
                    .collect();
                self.forget(n, gone, &mut changes);
            }
        }
        self.count(&mut changes);
        self.cut = Some(cut.clone());
        changes
    }

    /// [`Digest::update`] for a host whose cut is still `cut` and whose items can only have
    /// moved where the region's did (`changed`, the items that differ between the digest's
    /// revision and now): a pass over those alone. `None` when the cut differs from the
    /// digest's (then only the whole pass can tell what moved).
    pub fn update_changed(
        &mut self,
        cut: &Cut,
        snapshot: &Snapshot,
        region: &RegionHashes,
        changed: &ItemKeys,
        interfaces: &[Value],
        hasher: &impl BuildHasher,
    ) -> Option<Changes> {
        if self.cut.as_ref() != Some(cut) {
            return None;
        }
        let mut changes = Changes::default();
        self.interfaces(interfaces, hasher, &mut changes);
        for (n, keys) in changed.iter().enumerate().skip(GROUPS) {
            let mut gone = Vec::new();
            for key in keys {
                let now = region.hashed(n, key).and_then(|h| match n {
                    GROUPS => {
                        let g = &snapshot.groups[h.at].group.id;
                        cut.keeps_group(g)
                            .then(|| if cut.owns(g) { h.full } else { h.bare })
                    }
                    MEMBERS => {
                        let i = &snapshot.instances[h.at];
                        cut.keeps_member(i)
                            .then(|| member_hash(h.full, cut, i, hasher))
                    }
                    PREFIX_LISTS => cut
                        .keeps_prefix_list(&snapshot.prefix_lists[h.at].id)
                        .then_some(h.full),
                    _ => cut
                        .keeps_port_range_list(&snapshot.port_range_lists[h.at].id)
                        .then_some(h.full),
                });
                match now {
                    Some(h) => self.note(n, key, h, &mut changes),
                    None if self.lists[n].contains_key(key.as_str()) => gone.push(key.clone()),
                    None => {}
                }
            }
            self.forget(n, gone, &mut changes);
        }
        self.count(&mut changes);
        Some(changes)
    }

    /// The host's interface items: few, so always compared whole.
    fn interfaces(
        &mut self,
        interfaces: &[Value],
        hasher: &impl BuildHasher,
        changes: &mut Changes,
    ) {
        let mut keys = HashSet::with_capacity(interfaces.len());
        for item in interfaces {
            let key = key_of(item, LISTS[INTERFACES].2).unwrap_or_default();
            self.note(INTERFACES, &key, hash(item, hasher), changes);
            keys.insert(key);
        }
        let gone: Vec<String> = self.lists[INTERFACES]
            .keys()
            .filter(|k| !keys.contains(*k))
            .cloned()
            .collect();
        self.forget(INTERFACES, gone, changes);
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

    /// Drops items of list `n` the share no longer holds, noting them removed.
    fn forget(&mut self, n: usize, mut gone: Vec<String>, changes: &mut Changes) {
        gone.sort();
        for k in &gone {
            self.lists[n].remove(k);
        }
        changes.removed[n].extend(gone);
    }

    fn count(&self, changes: &mut Changes) {
        for (count, list) in changes.counts.iter_mut().zip(&self.lists) {
            *count = list.len();
        }
    }
}

fn hash(item: &Value, hasher: &impl BuildHasher) -> u64 {
    // Items are written by one function with their fields in one order, so equal items
    // have equal texts.
    hasher.hash_one(item.to_string())
}

/// A list of an answer, its items as the server wrote them.
type RawList = Vec<Box<RawValue>>;

/// The policy lists of an answer (or of a delta's changes), items unread.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawLists {
    network_interfaces: RawList,
    security_groups: RawList,
    instances: RawList,
    prefix_lists: RawList,
    port_range_lists: RawList,
}

impl RawLists {
    /// The lists in [`LISTS`] order.
    fn into_array(self) -> [RawList; 5] {
        [
            self.network_interfaces,
            self.security_groups,
            self.instances,
            self.prefix_lists,
            self.port_range_lists,
        ]
    }
}

/// A feed answer as read: `Policy` holds the share's lists, `Delta` (instead) the changes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAnswer {
    #[serde(default)]
    revision: Option<u64>,
    #[serde(default)]
    network_interfaces: RawList,
    #[serde(default)]
    policy: RawLists,
    #[serde(default)]
    delta: Option<Delta>,
}

/// The fields that name an item, read from its text (the rest is skipped unread).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ItemNames {
    network_interface_id: Option<String>,
    instance_id: Option<String>,
    security_group_id: Option<String>,
    prefix_list_id: Option<String>,
    port_range_list_id: Option<String>,
}

impl ItemNames {
    fn take(&mut self, field: &str) -> Option<String> {
        match field {
            "NetworkInterfaceId" => self.network_interface_id.take(),
            "InstanceId" => self.instance_id.take(),
            "SecurityGroupId" => self.security_group_id.take(),
            "PrefixListId" => self.prefix_list_id.take(),
            _ => self.port_range_list_id.take(),
        }
    }
}

/// The key of an item of list `n`, from its text.
fn raw_key(item: &RawValue, n: usize) -> Result<String, DeltaError> {
    let fields = LISTS[n].2;
    let mut names: ItemNames = serde_json::from_str(item.get())
        .map_err(|e| DeltaError::Malformed(format!("a {} item: {e}", LISTS[n].1)))?;
    fields
        .iter()
        .find_map(|f| names.take(f).filter(|k| !k.is_empty()))
        .ok_or_else(|| DeltaError::Malformed(format!("an item without a text {}", fields[0])))
}

/// A `Delta` object as read, its changed items unread.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Delta {
    base: u64,
    #[serde(default)]
    changed: RawLists,
    #[serde(default)]
    removed: BTreeMap<String, Vec<String>>,
    counts: BTreeMap<String, u64>,
}

impl Delta {
    /// Reads a `Delta` object's text.
    pub fn parse(text: &str) -> Result<Delta, DeltaError> {
        serde_json::from_str(text).map_err(|e| DeltaError::Malformed(format!("a delta: {e}")))
    }
}

/// What a feed answer carries: the whole share, or what changed since a revision.
#[derive(Debug)]
pub enum Answer {
    /// The whole share, as items.
    Whole(Items),
    /// The changes since `Delta`'s base.
    Delta(Delta),
}

/// Reads a feed answer's text once: its `Revision` and what it carries.
pub fn read_answer(body: &[u8]) -> Result<(u64, Answer), DeltaError> {
    let raw: RawAnswer = serde_json::from_slice(body)
        .map_err(|e| DeltaError::Malformed(format!("a feed answer: {e}")))?;
    let revision = raw
        .revision
        .ok_or_else(|| DeltaError::Malformed("an answer without Revision".into()))?;
    let answer = match raw.delta {
        Some(delta) => Answer::Delta(delta),
        None => Answer::Whole(Items::from_raw(raw.network_interfaces, raw.policy)?),
    };
    Ok((revision, answer))
}

/// The keys of the items a delta removed or changed, by list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched([BTreeSet<String>; 5]);

impl Touched {
    /// The members (`MemberId`s, the keys of `Instances` items) removed or changed, when the
    /// delta touched nothing else: the usual membership change, which the agent applies
    /// to what it holds instead of reading the share again.
    pub fn members_only(&self) -> Option<&BTreeSet<String>> {
        let others = self
            .0
            .iter()
            .enumerate()
            .any(|(n, keys)| n != MEMBERS && !keys.is_empty());
        (!others).then_some(&self.0[MEMBERS])
    }
}

/// What the agent keeps of its share: every item by list and key, as the text the server
/// wrote (a fraction of the memory of parsed values, and what the document parser reads).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Items {
    lists: [BTreeMap<String, Box<str>>; 5],
}

impl Items {
    /// The items of a whole answer's text.
    pub fn of(answer: &[u8]) -> Result<Items, DeltaError> {
        let raw: RawAnswer = serde_json::from_slice(answer)
            .map_err(|e| DeltaError::Malformed(format!("a feed answer: {e}")))?;
        if raw.delta.is_some() {
            return Err(DeltaError::Malformed("a delta, not a whole share".into()));
        }
        Items::from_raw(raw.network_interfaces, raw.policy)
    }

    fn from_raw(interfaces: RawList, policy: RawLists) -> Result<Items, DeltaError> {
        let mut lists = policy.into_array();
        lists[INTERFACES] = interfaces;
        let mut items = Items::default();
        for (n, (list, out)) in lists.into_iter().zip(&mut items.lists).enumerate() {
            for item in list {
                out.insert(raw_key(&item, n)?, item.get().into());
            }
        }
        Ok(items)
    }

    /// The text of the member (an `Instances` item) of key `id`, if held.
    pub fn member(&self, id: &str) -> Option<&str> {
        self.lists[MEMBERS].get(id).map(|t| &**t)
    }

    /// Applies a `Delta` made against revision `held`; returns the keys it touched. On an
    /// error the items are left unusable: the caller drops them and asks for the whole
    /// share.
    pub fn apply(&mut self, delta: Delta, held: u64) -> Result<Touched, DeltaError> {
        if delta.base != held {
            return Err(DeltaError::WrongBase {
                base: delta.base,
                held,
            });
        }
        let changed = delta.changed.into_array();
        let mut touched = Touched::default();
        for ((n, list), items) in changed.into_iter().enumerate().zip(&mut self.lists) {
            let name = LISTS[n].1;
            for key in delta.removed.get(name).into_iter().flatten() {
                items.remove(key);
                touched.0[n].insert(key.clone());
            }
            for item in list {
                let key = raw_key(&item, n)?;
                touched.0[n].insert(key.clone());
                items.insert(key, item.get().into());
            }
            let want = *delta
                .counts
                .get(name)
                .ok_or_else(|| DeltaError::Malformed(format!("a delta without {name}'s count")))?;
            if items.len() as u64 != want {
                return Err(DeltaError::Count {
                    list: name,
                    got: items.len(),
                    want: want as usize,
                });
            }
        }
        Ok(touched)
    }

    /// The text of the answer these items make, items ordered by key: `NetworkInterfaces`
    /// and `Policy`.
    pub fn to_answer(&self) -> String {
        let mut out = String::from("{");
        for (n, ((place, _, _), items)) in LISTS.iter().zip(&self.lists).enumerate() {
            match (n, place) {
                (_, Place::Top) => {}
                (GROUPS, _) => out.push_str(",\"Policy\":{"),
                _ => out.push(','),
            }
            push_list(&mut out, n, items.values().map(|t| &**t));
        }
        out.push_str("}}");
        out
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
        let items = |v: Value| Items::of(v.to_string().as_bytes()).unwrap();
        let delta = || Delta::parse(&delta.to_string()).unwrap();
        let mut held = items(groups(&["sg-a"]));
        assert_eq!(
            held.clone().apply(delta(), 4),
            Err(DeltaError::WrongBase { base: 3, held: 4 })
        );
        let touched = held.apply(delta(), 3).unwrap();
        assert_eq!(touched.members_only(), None);
        let answer: Value = serde_json::from_str(&held.to_answer()).unwrap();
        assert_eq!(answer["Policy"]["SecurityGroups"][0]["Rules"], 2);
        // Items held that the server's digest did not have: the count says so.
        let mut other = items(groups(&["sg-a", "sg-z"]));
        assert!(matches!(
            other.apply(delta(), 3),
            Err(DeltaError::Count {
                list: "SecurityGroups",
                got: 2,
                want: 1
            })
        ));
    }
}
