//! Deltas of the agent feed: what changed in a host's share between two revisions, item by
//! item, so that a change costs bytes in proportion to itself rather than to the share.
//!
//! A feed answer (see `server::agents`) holds five keyed lists: the host's
//! `NetworkInterfaces` and the policy document's `SecurityGroups`, `Instances`,
//! `PrefixLists` and `PortRangeLists`. An item is one group with all its rules, one member,
//! one list with its entries: small next to a share of thousands, and the unit a change
//! touches. The server remembers, per host, a [`Digest`] of the last answer (each item's key
//! and a hash of its text) and answers a poll after that revision with the items whose hash
//! differs and the keys that are gone; the agent keeps the items themselves ([`Items`]) and
//! applies the delta. Why hashes on the server: a thousand hosts' digests are a few
//! megabytes where their documents would be gigabytes. The hasher is seeded at random per
//! server process, so a tenant cannot craft a rule whose text collides with another's to
//! hide a change.
//!
//! Both sides order items by key, so the document an agent rebuilds from deltas is the one
//! it would rebuild from a full answer at the same revision, byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use serde_json::{json, Map, Value};
use thiserror::Error;

/// The keyed lists: where each sits in an answer (at the top, or in `Policy`) and the fields
/// whose values, joined by `/`, name an item. A list of fields lives here and nowhere else.
const LISTS: [(Place, &str, &[&str]); 5] = [
    (Place::Top, "NetworkInterfaces", &["NetworkInterfaceId"]),
    (Place::Policy, "SecurityGroups", &["SecurityGroupId"]),
    (
        Place::Policy,
        "Instances",
        &["InstanceId", "NetworkInterfaceId"],
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
    let parts: Option<Vec<&str>> = fields
        .iter()
        .map(|f| match &item[*f] {
            Value::Null => Some(""),
            v => v.as_str(),
        })
        .collect();
    parts
        .map(|p| p.join("/"))
        .ok_or_else(|| DeltaError::Malformed(format!("an item without a text {}", fields[0])))
}

/// What the server remembers of an answer: per list, each item's key and hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    lists: [HashMap<String, u64>; 5],
}

impl Digest {
    /// The digest of a full answer, hashed with `hasher`'s keys.
    pub fn of(answer: &Value, hasher: &impl BuildHasher) -> Result<Digest, DeltaError> {
        let mut digest = Digest::default();
        for ((place, name, fields), out) in LISTS.iter().zip(&mut digest.lists) {
            for item in list_of(answer, *place, name)? {
                out.insert(key_of(item, fields)?, hash(item, hasher));
            }
        }
        Ok(digest)
    }

    /// Items held, over all lists (what a digest costs in memory is about this many keys).
    pub fn len(&self) -> usize {
        self.lists.iter().map(HashMap::len).sum()
    }

    /// Whether no list holds anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `Delta` object that turns the answer this digest was made of (at revision `base`)
    /// into `answer`: per list the items added or changed, the keys removed, and the new
    /// count (a check for the agent).
    pub fn delta(
        &self,
        answer: &Value,
        base: u64,
        hasher: &impl BuildHasher,
    ) -> Result<Value, DeltaError> {
        let (mut changed, mut removed, mut counts) = (Map::new(), Map::new(), Map::new());
        for ((place, name, fields), old) in LISTS.iter().zip(&self.lists) {
            let items = list_of(answer, *place, name)?;
            let mut seen = std::collections::HashSet::with_capacity(items.len());
            let mut new_items = Vec::new();
            for item in items {
                let key = key_of(item, fields)?;
                if old.get(&key) != Some(&hash(item, hasher)) {
                    new_items.push(item.clone());
                }
                seen.insert(key);
            }
            let mut gone: Vec<&String> = old.keys().filter(|k| !seen.contains(*k)).collect();
            gone.sort();
            if !new_items.is_empty() {
                changed.insert((*name).into(), Value::Array(new_items));
            }
            if !gone.is_empty() {
                removed.insert((*name).into(), json!(gone));
            }
            counts.insert((*name).into(), json!(items.len()));
        }
        Ok(json!({
            "Base": base,
            "Changed": changed,
            "Removed": removed,
            "Counts": counts,
        }))
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
    use std::hash::RandomState;

    fn answer(groups: &[(&str, u32)], interfaces: &[&str]) -> Value {
        json!({
            "Revision": 1,
            "NetworkInterfaces": interfaces.iter().map(|n| json!({"NetworkInterfaceId": n})).collect::<Vec<_>>(),
            "Policy": {
                "SecurityGroups": groups.iter().map(|(g, rules)| json!({"SecurityGroupId": g, "Rules": rules})).collect::<Vec<_>>(),
                "Instances": [{"InstanceId": "i-1", "NetworkInterfaceId": ""}, {"InstanceId": "i-1", "NetworkInterfaceId": "eni-2"}],
            }
        })
    }

    #[test]
    fn a_delta_carries_only_what_changed_and_rebuilds_the_new_answer() {
        let hasher = RandomState::new();
        let old = answer(&[("sg-a", 1), ("sg-b", 2), ("sg-c", 3)], &["eni-1"]);
        let new = answer(
            &[("sg-c", 3), ("sg-a", 9), ("sg-d", 4)],
            &["eni-1", "eni-3"],
        );
        let digest = Digest::of(&old, &hasher).unwrap();
        assert_eq!(digest.len(), 6);
        let delta = digest.delta(&new, 7, &hasher).unwrap();
        assert_eq!(
            delta["Changed"]["SecurityGroups"],
            json!([{"SecurityGroupId": "sg-a", "Rules": 9}, {"SecurityGroupId": "sg-d", "Rules": 4}])
        );
        assert_eq!(delta["Removed"]["SecurityGroups"], json!(["sg-b"]));
        assert_eq!(
            delta["Changed"]["NetworkInterfaces"],
            json!([{"NetworkInterfaceId": "eni-3"}])
        );
        assert!(delta["Changed"]["Instances"].is_null(), "{delta}");

        let mut items = Items::of(&old).unwrap();
        items.apply(&delta, 7).unwrap();
        assert_eq!(items, Items::of(&new).unwrap());
        assert_eq!(items.to_answer(), Items::of(&new).unwrap().to_answer());
    }

    #[test]
    fn a_delta_against_another_revision_or_miscounted_is_refused() {
        let hasher = RandomState::new();
        let old = answer(&[("sg-a", 1)], &[]);
        let new = answer(&[("sg-a", 2)], &[]);
        let delta = Digest::of(&old, &hasher)
            .unwrap()
            .delta(&new, 3, &hasher)
            .unwrap();
        assert_eq!(
            Items::of(&old).unwrap().apply(&delta, 4),
            Err(DeltaError::WrongBase { base: 3, held: 4 })
        );
        // Held items that the server's digest did not have (another base): the count says so.
        let mut other = Items::of(&answer(&[("sg-a", 1), ("sg-z", 1)], &[])).unwrap();
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
