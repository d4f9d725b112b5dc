//! Tags on security groups, instances and network interfaces (`TagResources`, `UntagResources`,
//! `ListTagResources`).

use serde_json::json;

use crate::sql::args;
use crate::{ControlError, Result, Tx};

/// The resource types that carry tags here, by their wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaggedType {
    /// `securitygroup`.
    SecurityGroup,
    /// `instance`.
    Instance,
    /// `eni` (network interfaces).
    Eni,
    /// `prefixlist`.
    PrefixList,
    /// `portrangelist`.
    PortRangeList,
    /// `VPC` (the VPC product's tags).
    Vpc,
    /// `VSWITCH` (the VPC product's tags).
    VSwitch,
}

impl TaggedType {
    /// From `ResourceType` (case-insensitive).
    pub fn parse(s: &str) -> Option<TaggedType> {
        match s.to_ascii_lowercase().as_str() {
            "securitygroup" => Some(TaggedType::SecurityGroup),
            "instance" => Some(TaggedType::Instance),
            "eni" => Some(TaggedType::Eni),
            "prefixlist" => Some(TaggedType::PrefixList),
            "portrangelist" => Some(TaggedType::PortRangeList),
            "vpc" => Some(TaggedType::Vpc),
            "vswitch" => Some(TaggedType::VSwitch),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_wire(self) -> &'static str {
        match self {
            TaggedType::SecurityGroup => "securitygroup",
            TaggedType::Instance => "instance",
            TaggedType::Eni => "eni",
            TaggedType::PrefixList => "prefixlist",
            TaggedType::PortRangeList => "portrangelist",
            TaggedType::Vpc => "VPC",
            TaggedType::VSwitch => "VSWITCH",
        }
    }
}

/// Whether a resource's `tags` carry every wanted one (a wanted key without a value matches
/// any value): how every `Tag.N` filter selects.
pub fn tags_match(wanted: &[(String, Option<String>)], tags: &[(String, String)]) -> bool {
    wanted.iter().all(|(k, v)| {
        tags.iter()
            .any(|(tk, tv)| tk == k && v.as_ref().is_none_or(|v| v == tv))
    })
}

impl Tx<'_> {
    /// Checks that the caller owns the resource: a malformed or unknown id (or another
    /// account's) is `InvalidResourceId.NotFound`; a store failure stays one.
    fn check_resource(&self, kind: TaggedType, id: &str) -> Result<()> {
        let missing = || ControlError::ResourceNotFound(id.to_string());
        let found = match kind {
            TaggedType::SecurityGroup => match id.parse() {
                Ok(g) => self.group(&g).map(|_| ()),
                Err(_) => return Err(missing()),
            },
            TaggedType::Instance => match id.parse() {
                Ok(i) => self.instance(&i).map(|_| ()),
                Err(_) => return Err(missing()),
            },
            TaggedType::Eni => match id.parse() {
                Ok(n) => self.interface(&n).map(|_| ()),
                Err(_) => return Err(missing()),
            },
            TaggedType::PrefixList => match id.parse() {
                Ok(l) => self.prefix_list(&l).map(|_| ()),
                Err(_) => return Err(missing()),
            },
            TaggedType::PortRangeList => match id.parse() {
                Ok(l) => self.port_range_list(&l).map(|_| ()),
                Err(_) => return Err(missing()),
            },
            TaggedType::Vpc => match id.parse() {
                Ok(v) => self.vpc(&v).map(|_| ()),
                Err(_) => return Err(missing()),
            },
            TaggedType::VSwitch => match id.parse() {
                Ok(v) => self.vswitch(&v).map(|_| ()),
                Err(_) => return Err(missing()),
            },
        };
        match found {
            Err(
                ControlError::GroupNotFound(_)
                | ControlError::InstanceNotFound(_)
                | ControlError::NetworkInterfaceNotFound(_)
                | ControlError::PrefixListNotFound(_)
                | ControlError::PortRangeListNotFound(_)
                | ControlError::VpcNotFound(_)
                | ControlError::VSwitchNotFound(_),
            ) => Err(missing()),
            other => other,
        }
    }

    /// The tags of one resource, by key.
    pub fn resource_tags(&self, kind: TaggedType, id: &str) -> Result<Vec<(String, String)>> {
        self.db
            .query(
                "SELECT key, value FROM tags WHERE resource_type = ?1 AND resource_id = ?2 ORDER BY key",
                args![kind.as_wire(), id],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
    }

    /// `TagResources`: sets (or overwrites) the tags on every resource, all or none.
    pub fn tag(&self, kind: TaggedType, ids: &[String], tags: &[(String, String)]) -> Result<()> {
        for id in ids {
            self.check_resource(kind, id)?;
            for (k, v) in tags {
                self.db.execute(
                    "INSERT INTO tags (resource_type, resource_id, key, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (resource_type, resource_id, key) DO UPDATE SET value = excluded.value",
                    args![kind.as_wire(), id, k, v],
                )?;
            }
            if self.resource_tags(kind, id)?.len() > crate::limits::TAGS_PER_RESOURCE {
                return Err(ControlError::TagLimit);
            }
            self.log(
                "TagResources",
                id,
                json!({"Tags": tags.iter().map(|(k, _)| k).collect::<Vec<_>>()}),
            )?;
        }
        Ok(())
    }

    /// `UntagResources`: removes the keys (or every tag with `all`).
    pub fn untag(
        &self,
        kind: TaggedType,
        ids: &[String],
        keys: &[String],
        all: bool,
    ) -> Result<()> {
        for id in ids {
            self.check_resource(kind, id)?;
            if keys.is_empty() && all {
                self.db.execute(
                    "DELETE FROM tags WHERE resource_type = ?1 AND resource_id = ?2",
                    args![kind.as_wire(), id],
                )?;
            }
            for k in keys {
                self.db.execute(
                    "DELETE FROM tags WHERE resource_type = ?1 AND resource_id = ?2 AND key = ?3",
                    args![kind.as_wire(), id, k],
                )?;
            }
            self.log("UntagResources", id, json!({}))?;
        }
        Ok(())
    }

    /// `ListTagResources`: (resource id, key, value) of the given resources, or of every
    /// resource of the type carrying all the given tags.
    pub fn list_tags(
        &self,
        kind: TaggedType,
        ids: &[String],
        filter: &[(String, Option<String>)],
    ) -> Result<Vec<(String, String, String)>> {
        let resources: Vec<String> = if ids.is_empty() {
            match kind {
                TaggedType::SecurityGroup => self
                    .find_groups(&Default::default())?
                    .into_iter()
                    .map(|g| g.id.to_string())
                    .collect(),
                TaggedType::Instance => self
                    .instances()?
                    .into_iter()
                    .map(|i| i.id.to_string())
                    .collect(),
                TaggedType::Eni => self
                    .interfaces(&Default::default())?
                    .into_iter()
                    .map(|n| n.id.to_string())
                    .collect(),
                TaggedType::PrefixList => self
                    .prefix_lists()?
                    .into_iter()
                    .map(|l| l.id.to_string())
                    .collect(),
                TaggedType::PortRangeList => self
                    .port_range_lists()?
                    .into_iter()
                    .map(|l| l.id.to_string())
                    .collect(),
                TaggedType::Vpc => self
                    .vpcs(None)?
                    .into_iter()
                    .map(|v| v.id.to_string())
                    .collect(),
                TaggedType::VSwitch => self
                    .vswitches(None, None)?
                    .into_iter()
                    .map(|v| v.id.to_string())
                    .collect(),
            }
        } else {
            for id in ids {
                self.check_resource(kind, id)?;
            }
            ids.to_vec()
        };
        let mut out = Vec::new();
        for id in resources {
            let tags = self.resource_tags(kind, &id)?;
            if tags_match(filter, &tags) {
                out.extend(tags.into_iter().map(|(k, v)| (id.clone(), k, v)));
            }
        }
        Ok(out)
    }
}
