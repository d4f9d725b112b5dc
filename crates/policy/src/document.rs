//! The JSON policy document: a [`Snapshot`] written in the ECS API's own vocabulary. It is
//! the file `stockade explain`, `audit` and `reach` read, and the form in which the agent feed
//! carries a host's policy, so one parser validates both.
//!
//! Field names and values are those of the ECS API (`SecurityGroupId`, `IpProtocol`,
//! `PortRange` as `"22/22"`, `SourceGroupId`, ...), so a file can be written by hand from
//! what `DescribeSecurityGroupAttribute` and `DescribeInstances` return, and every rule is
//! validated by the same parser, with the same ECS error codes, as an API request. The format
//! is documented in `docs/reference.md` ("Policy files"); `examples/policy.json` is a complete
//! example.

use std::collections::{BTreeMap, HashSet};

use model::{
    AccountId, Direction, GroupType, InnerAccessPolicy, Instance, PermissionFields, SecurityGroup,
};
use model::{EcsError as _, SecurityGroupId};
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

use crate::audit::GroupLabel;
use crate::{GroupPolicy, PortRangeList, PrefixList, Snapshot};

/// Why a document was refused: where (the group, rule or instance) and what, with the ECS
/// error code when a wire value was invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct DocumentError(String);

impl DocumentError {
    /// Prefixes the message with where the error was found.
    fn within(self, place: impl std::fmt::Display) -> DocumentError {
        DocumentError(format!("{place}: {}", self.0))
    }
}

type Result<T> = std::result::Result<T, DocumentError>;

macro_rules! bail {
    ($($t:tt)*) => { return Err(DocumentError(format!($($t)*))) };
}

/// The account that owns resources which name none.
const DEFAULT_OWNER: u64 = 1;

/// A string, or a number written without quotes (`"Priority": 1`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Text {
    Str(String),
    Num(serde_json::Number),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::Str(s) => s,
            Text::Num(n) => n.to_string(),
        }
    }
}

fn text(t: Option<Text>) -> Option<String> {
    t.map(Text::into_string)
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    security_groups: Vec<GroupFile>,
    #[serde(default)]
    instances: Vec<InstanceFile>,
    #[serde(default)]
    prefix_lists: Vec<PrefixListFile>,
    #[serde(default)]
    port_range_lists: Vec<PortRangeListFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct GroupFile {
    security_group_id: String,
    #[serde(default)]
    security_group_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    security_group_type: Option<String>,
    #[serde(default)]
    vpc_id: Option<String>,
    #[serde(default)]
    inner_access_policy: Option<String>,
    #[serde(default)]
    owner_id: Option<Text>,
    #[serde(default)]
    permissions: Vec<PermissionFile>,
}

/// One rule: `SecurityGroupRuleId`, `Direction` (`ingress`, the default, or `egress`) and
/// the rule fields by their wire names ([`PermissionFields::WIRE_NAMES`]).
type PermissionFile = BTreeMap<String, Option<Text>>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct InstanceFile {
    instance_id: String,
    /// Set for a secondary network interface attached to `instance_id`; absent for the
    /// instance itself (its primary interface is implied).
    #[serde(default)]
    network_interface_id: Option<String>,
    #[serde(default)]
    vpc_id: Option<String>,
    private_ip_address: String,
    /// The interface's secondary private addresses.
    #[serde(default)]
    secondary_private_ip_addresses: Vec<String>,
    /// The interface's IPv4 prefixes (`a.b.c.d/28`).
    #[serde(default)]
    ipv4_prefixes: Vec<String>,
    #[serde(default)]
    ipv6_address: Option<String>,
    #[serde(default)]
    public_ip_address: Option<String>,
    /// `false` for an interface that forwards for others (anti-spoofing off); `true` when
    /// absent.
    #[serde(default)]
    source_dest_check: Option<bool>,
    #[serde(default)]
    owner_id: Option<Text>,
    security_group_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PrefixListFile {
    prefix_list_id: String,
    entries: Vec<String>,
}

/// A port range list: entries as `PortRange` writes them (`80/80`, `8000/8999`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PortRangeListFile {
    port_range_list_id: String,
    entries: Vec<String>,
}

/// Empty strings mean "not set", as in ECS responses.
fn set(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Wraps a model error with its ECS code, the way an API client would see it.
fn ecs(e: model::ModelError) -> DocumentError {
    DocumentError(format!("{}: {}", e.code(), e))
}

fn owner(t: Option<Text>) -> Result<AccountId> {
    match text(t) {
        Some(s) => s.parse().map_err(ecs),
        None => Ok(AccountId::new(DEFAULT_OWNER)),
    }
}

/// Parses and validates a policy file into a snapshot.
pub fn parse(json: &str) -> Result<Snapshot> {
    Ok(parse_with_labels(json)?.0)
}

/// Parses one item of a policy file's `Instances` (a member: an instance or a secondary
/// interface), as a feed delta carries it.
pub fn parse_instance_item(json: &str) -> Result<Instance> {
    let file: InstanceFile = serde_json::from_str(json)
        .map_err(|e| DocumentError(format!("not a valid instance: {e}")))?;
    parse_instance(file)
}

/// Parses a policy file into a snapshot and the groups' names and descriptions (for the
/// audit's label check).
pub fn parse_with_labels(json: &str) -> Result<(Snapshot, BTreeMap<SecurityGroupId, GroupLabel>)> {
    let file: PolicyFile = serde_json::from_str(json)
        .map_err(|e| DocumentError(format!("not a valid policy document: {e}")))?;
    let mut rule_ids = HashSet::new();
    let mut groups = Vec::new();
    let mut labels = BTreeMap::new();
    for g in file.security_groups {
        let id = g.security_group_id.clone();
        let label = GroupLabel {
            name: g.security_group_name.clone().unwrap_or_default(),
            description: g.description.clone().unwrap_or_default(),
            tags: 0,
        };
        let group =
            parse_group(g, &mut rule_ids).map_err(|e| e.within(format!("security group {id}")))?;
        labels.insert(group.group.id.clone(), label);
        groups.push(group);
    }
    let instances = file
        .instances
        .into_iter()
        .map(|i| {
            let id = i.instance_id.clone();
            parse_instance(i).map_err(|e| e.within(format!("instance {id}")))
        })
        .collect::<Result<_>>()?;
    let prefix_lists = file
        .prefix_lists
        .into_iter()
        .map(|l| {
            let cidrs = l
                .entries
                .iter()
                .map(|c| {
                    c.parse().map_err(|_| {
                        DocumentError(format!("prefix list {}: bad CIDR {c}", l.prefix_list_id))
                    })
                })
                .collect::<Result<_>>()?;
            Ok(PrefixList {
                id: l.prefix_list_id.parse().map_err(ecs)?,
                cidrs,
            })
        })
        .collect::<Result<_>>()?;
    let port_range_lists = file
        .port_range_lists
        .into_iter()
        .map(|l| {
            let within =
                |e| DocumentError(format!("port range list {}: {e}", l.port_range_list_id));
            Ok(PortRangeList {
                ranges: l
                    .entries
                    .iter()
                    .map(|r| r.parse().map_err(|e| within(ecs(e))))
                    .collect::<Result<_>>()?,
                id: l.port_range_list_id.parse().map_err(ecs)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((
        Snapshot {
            groups,
            instances,
            prefix_lists,
            port_range_lists,
        },
        labels,
    ))
}

fn parse_group(g: GroupFile, rule_ids: &mut HashSet<String>) -> Result<GroupPolicy> {
    if let Some(name) = set(&g.security_group_name) {
        model::validate_group_name(name).map_err(ecs)?;
    }
    if let Some(d) = set(&g.description) {
        model::validate_group_description(d).map_err(ecs)?;
    }
    let group = SecurityGroup {
        id: g.security_group_id.parse().map_err(ecs)?,
        owner: owner(g.owner_id)?,
        group_type: set(&g.security_group_type)
            .map_or(Ok(GroupType::Normal), str::parse)
            .map_err(ecs)?,
        vpc_id: set(&g.vpc_id).map(str::parse).transpose().map_err(ecs)?,
        inner_access_policy: set(&g.inner_access_policy)
            .map_or(Ok(InnerAccessPolicy::Accept), str::parse)
            .map_err(ecs)?,
    };
    let mut permissions = Vec::new();
    for (n, mut p) in g.permissions.into_iter().enumerate() {
        let id = match text(p.remove("SecurityGroupRuleId").flatten()).filter(|s| !s.is_empty()) {
            Some(id) => id,
            None => format!("sgr-{}r{}", &group.id.as_str()[3..], n + 1),
        };
        if !rule_ids.insert(id.clone()) {
            bail!("rule {id} appears twice");
        }
        let permission =
            parse_permission(p, &id, &group).map_err(|e| e.within(format!("rule {id}")))?;
        permissions.push(permission);
    }
    Ok(GroupPolicy {
        group,
        permissions: permissions.into(),
    })
}

fn parse_permission(
    mut p: PermissionFile,
    id: &str,
    group: &SecurityGroup,
) -> Result<model::Permission> {
    let direction = text(p.remove("Direction").flatten());
    let direction = match set(&direction).map(str::to_ascii_lowercase).as_deref() {
        None | Some("ingress") => Direction::Ingress,
        Some("egress") => Direction::Egress,
        Some(other) => bail!("Direction must be ingress or egress, not {other}"),
    };
    let fields = PermissionFields::read(direction, |name| text(p.remove(name).flatten()));
    // The other direction's peer fields (`DestGroupId` on an ingress rule) are ignored.
    if let Some(unknown) = p
        .keys()
        .find(|k| !PermissionFields::WIRE_NAMES.contains(&k.as_str()))
    {
        bail!("unknown rule field {unknown}");
    }
    fields
        .parse(id.parse().map_err(ecs)?, direction, group.network())
        .map_err(ecs)
}

fn parse_instance(i: InstanceFile) -> Result<Instance> {
    fn ip<T: std::str::FromStr>(s: &str) -> Result<T> {
        s.parse()
            .map_err(|_| DocumentError(format!("bad address {s}")))
    }
    let instance: model::InstanceId = i.instance_id.parse().map_err(ecs)?;
    let (id, attached_to) = match set(&i.network_interface_id) {
        None => (model::MemberId::Instance(instance), None),
        Some(n) => (
            model::MemberId::Interface(n.parse().map_err(ecs)?),
            Some(instance),
        ),
    };
    Ok(Instance {
        id,
        attached_to,
        owner: owner(i.owner_id)?,
        vpc_id: set(&i.vpc_id).map(str::parse).transpose().map_err(ecs)?,
        private_ip: ip(&i.private_ip_address)?,
        secondary_ips: i
            .secondary_private_ip_addresses
            .iter()
            .map(|a| ip(a))
            .collect::<Result<_>>()?,
        ipv4_prefixes: i
            .ipv4_prefixes
            .iter()
            .map(|p| p.parse().map_err(ecs))
            .collect::<Result<_>>()?,
        ipv6: set(&i.ipv6_address).map(ip).transpose()?,
        public_ip: set(&i.public_ip_address).map(ip).transpose()?,
        source_dest_check: i.source_dest_check.unwrap_or(true),
        security_groups: i
            .security_group_ids
            .iter()
            .map(|g| g.parse().map_err(ecs))
            .collect::<Result<_>>()?,
    })
}

/// Writes a snapshot as a policy document that [`parse`] reads back to the same snapshot
/// (rule ids, creation order and group order kept).
pub fn to_value(snapshot: &Snapshot) -> Value {
    json!({
        "SecurityGroups": snapshot.groups.iter().map(group_value).collect::<Vec<_>>(),
        "Instances": snapshot.instances.iter().map(instance_value).collect::<Vec<_>>(),
        "PrefixLists": snapshot.prefix_lists.iter().map(prefix_list_value).collect::<Vec<_>>(),
        "PortRangeLists": snapshot
            .port_range_lists
            .iter()
            .map(port_range_list_value)
            .collect::<Vec<_>>(),
    })
}

/// One item of `SecurityGroups`: a group with its rules.
pub fn group_value(g: &GroupPolicy) -> Value {
    let permissions: Vec<Value> = g
        .permissions
        .iter()
        .map(|p| {
            let mut v = serde_json::Map::new();
            v.insert("SecurityGroupRuleId".into(), json!(p.id.as_str()));
            v.insert("Direction".into(), json!(p.direction.as_wire()));
            p.to_fields().write(p.direction, |name, value| {
                if let Some(value) = value {
                    v.insert(name.into(), json!(value));
                }
            });
            Value::Object(v)
        })
        .collect();
    json!({
        "SecurityGroupId": g.group.id.as_str(),
        "SecurityGroupType": g.group.group_type.as_wire(),
        "VpcId": g.group.vpc_id.as_ref().map(|v| v.as_str()).unwrap_or_default(),
        "InnerAccessPolicy": g.group.inner_access_policy.as_wire(),
        "OwnerId": g.group.owner.get().to_string(),
        "Permissions": permissions,
    })
}

/// One item of `Instances`: a member (an instance, or a secondary interface) and its groups.
pub fn instance_value(i: &Instance) -> Value {
    let (instance, interface) = match (&i.id, &i.attached_to) {
        (model::MemberId::Interface(n), Some(at)) => (at.as_str(), Some(n.as_str())),
        (id, _) => (id.as_str(), None),
    };
    let mut v = serde_json::Map::new();
    v.insert("InstanceId".into(), json!(instance));
    // Unset fields are left out (the parser reads them as unset): a host's share lists
    // every member of the groups it references, thousands of them, so this is most of
    // what the feed sends and the agent parses.
    let mut optional = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            v.insert(name.into(), json!(value));
        }
    };
    optional("NetworkInterfaceId", interface.map(str::to_string));
    optional("VpcId", i.vpc_id.as_ref().map(|v| v.as_str().to_string()));
    optional("PrivateIpAddress", Some(i.private_ip.to_string()));
    optional("Ipv6Address", i.ipv6.map(|a| a.to_string()));
    optional("PublicIpAddress", i.public_ip.map(|a| a.to_string()));
    if !i.secondary_ips.is_empty() {
        v.insert(
            "SecondaryPrivateIpAddresses".into(),
            json!(i
                .secondary_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()),
        );
    }
    if !i.ipv4_prefixes.is_empty() {
        v.insert(
            "Ipv4Prefixes".into(),
            json!(i
                .ipv4_prefixes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()),
        );
    }
    if !i.source_dest_check {
        v.insert("SourceDestCheck".into(), json!(false));
    }
    v.insert("OwnerId".into(), json!(i.owner.get().to_string()));
    v.insert(
        "SecurityGroupIds".into(),
        json!(i
            .security_groups
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()),
    );
    Value::Object(v)
}

/// One item of `PrefixLists`.
pub fn prefix_list_value(l: &PrefixList) -> Value {
    json!({
        "PrefixListId": l.id.as_str(),
        "Entries": l.cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// One item of `PortRangeLists`.
pub fn port_range_list_value(l: &PortRangeList) -> Value {
    json!({
        "PortRangeListId": l.id.as_str(),
        "Entries": l.ranges.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}
