//! The policy state both evaluators read: groups with their ordered rules, instances with
//! their ordered groups, prefix and port range lists, and the index from intranet addresses to instances.
//!
//! The state only checks structural consistency (ids exist, nothing twice). The ECS limits
//! and network constraints are the control plane's to enforce before a change reaches here,
//! so the engine can also evaluate policies that lift them (the 10K-rule benchmarks do).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use model::{
    InnerAccessPolicy, Instance, MemberId, Peer, Permission, PortRange, PortRangeListId,
    PrefixListId, SecurityGroup, SecurityGroupId, SecurityGroupRuleId,
};
use rustc_hash::FxHashMap;
use thiserror::Error;

/// A whole policy at one moment: what `build` starts from and what a snapshot file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Groups, each with its rules in creation order.
    pub groups: Vec<GroupPolicy>,
    /// Instances, each listing its groups in join order.
    pub instances: Vec<Instance>,
    /// Prefix lists that rules may reference.
    pub prefix_lists: Vec<PrefixList>,
    /// Port range lists that rules may reference.
    pub port_range_lists: Vec<PortRangeList>,
}

impl Snapshot {
    /// The part of the policy that judges the stages at `local` instances (a host's share,
    /// which the agent feed carries): their groups with rules; the groups those rules
    /// reference, without rules; every member of either, with its group list cut to them;
    /// and the prefix and port lists the rules use. Verdicts at a local instance are the same over
    /// the closure as over the whole snapshot (property-tested).
    pub fn closure(&self, local: &BTreeSet<MemberId>) -> Snapshot {
        self.share(local).to_snapshot()
    }

    /// The closure at `local`, borrowed: what [`Snapshot::closure`] copies, for a caller that
    /// needs only some of it (the feed's deltas hash every item but write out few).
    pub fn share(&self, local: &BTreeSet<MemberId>) -> Share<'_> {
        let cut = Cut::new(
            local.clone(),
            self.instances.iter().filter(|i| local.contains(&i.id)),
            |id| self.groups.iter().find(|g| g.group.id == *id),
        );
        Share {
            groups: self
                .groups
                .iter()
                .filter(|g| cut.keeps_group(&g.group.id))
                .map(|g| (g, cut.owns(&g.group.id)))
                .collect(),
            instances: self
                .instances
                .iter()
                .filter(|i| cut.keeps_member(i))
                .collect(),
            prefix_lists: self
                .prefix_lists
                .iter()
                .filter(|l| cut.prefix_lists.contains(&l.id))
                .collect(),
            port_range_lists: self
                .port_range_lists
                .iter()
                .filter(|l| cut.port_range_lists.contains(&l.id))
                .collect(),
            cut,
        }
    }
}

/// What decides which items a host's share holds: its local members, their groups (kept
/// with their rules), the groups those rules reference (kept without), and the lists the
/// rules name. Two shares with equal cuts hold an item alike whenever the item is alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cut {
    local: BTreeSet<MemberId>,
    own: BTreeSet<SecurityGroupId>,
    keep: BTreeSet<SecurityGroupId>,
    prefix_lists: BTreeSet<PrefixListId>,
    port_range_lists: BTreeSet<PortRangeListId>,
}

impl Cut {
    /// The cut at `local`, given its members as found (`local_instances`) and a way to find a
    /// group by id.
    pub fn new<'a>(
        local: BTreeSet<MemberId>,
        local_instances: impl Iterator<Item = &'a Instance>,
        group: impl Fn(&SecurityGroupId) -> Option<&'a GroupPolicy>,
    ) -> Cut {
        let own: BTreeSet<SecurityGroupId> = local_instances
            .flat_map(|i| i.security_groups.iter().cloned())
            .collect();
        let mut cut = Cut {
            keep: own.clone(),
            local,
            ..Cut::default()
        };
        for g in own.iter().filter_map(&group) {
            for p in g.permissions.iter() {
                cut.port_range_lists.extend(p.port_list.iter().cloned());
                match &p.peer {
                    Peer::Group(r) => {
                        cut.keep.insert(r.id.clone());
                    }
                    Peer::PrefixList(l) => {
                        cut.prefix_lists.insert(l.clone());
                    }
                    Peer::Cidr(_) => {}
                }
            }
        }
        cut.own = own;
        cut
    }

    /// Whether the share holds group `g` (with or without its rules).
    pub fn keeps_group(&self, g: &SecurityGroupId) -> bool {
        self.keep.contains(g)
    }

    /// Whether the share holds group `g` with its rules (a local member's group).
    pub fn owns(&self, g: &SecurityGroupId) -> bool {
        self.own.contains(g)
    }

    /// Whether the share holds member `i`: a local one, or a member of a kept group.
    pub fn keeps_member(&self, i: &Instance) -> bool {
        self.local.contains(&i.id) || i.security_groups.iter().any(|g| self.keep.contains(g))
    }

    /// Whether the share holds prefix list `l`.
    pub fn keeps_prefix_list(&self, l: &PrefixListId) -> bool {
        self.prefix_lists.contains(l)
    }

    /// Whether the share holds port range list `l`.
    pub fn keeps_port_range_list(&self, l: &PortRangeListId) -> bool {
        self.port_range_lists.contains(l)
    }

    /// The groups `i` is listed with in the share: all of a local member's, the kept ones of
    /// any other.
    pub fn groups_of<'i>(&'i self, i: &'i Instance) -> impl Iterator<Item = &'i SecurityGroupId> {
        let local = self.local.contains(&i.id);
        i.security_groups
            .iter()
            .filter(move |g| local || self.keep.contains(*g))
    }

    /// Member `i` as the share lists it.
    pub fn member(&self, i: &Instance) -> Instance {
        Instance {
            security_groups: self.groups_of(i).cloned().collect(),
            ..i.clone()
        }
    }

    /// Group `g` as the share holds it: with its rules when owned.
    pub fn group(&self, g: &GroupPolicy) -> GroupPolicy {
        GroupPolicy {
            group: g.group.clone(),
            permissions: if self.owns(&g.group.id) {
                g.permissions.clone()
            } else {
                Default::default()
            },
        }
    }
}

/// A host's share of a snapshot, borrowed from it (see [`Snapshot::closure`]).
#[derive(Debug, Clone)]
pub struct Share<'a> {
    /// The groups kept, in the snapshot's order, each with whether its rules come too (a
    /// group of a local instance) or only its attributes (a group those rules reference).
    pub groups: Vec<(&'a GroupPolicy, bool)>,
    /// The members of the groups kept, and the local instances.
    pub instances: Vec<&'a Instance>,
    /// The prefix lists the rules name.
    pub prefix_lists: Vec<&'a PrefixList>,
    /// The port range lists the rules name.
    pub port_range_lists: Vec<&'a PortRangeList>,
    /// What decided it.
    pub cut: Cut,
}

impl Share<'_> {
    /// The share as a snapshot of its own.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            groups: self.groups.iter().map(|(g, _)| self.cut.group(g)).collect(),
            instances: self.instances.iter().map(|i| self.cut.member(i)).collect(),
            prefix_lists: self.prefix_lists.iter().map(|&l| l.clone()).collect(),
            port_range_lists: self.port_range_lists.iter().map(|&l| l.clone()).collect(),
        }
    }
}

/// A group and its permissions, oldest first (creation order breaks priority ties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicy {
    /// The group's attributes.
    pub group: SecurityGroup,
    /// Its rules, both directions, in creation order. Shared: a region's policy at one
    /// revision is the one before with a few groups replaced (the agent feed keeps the last
    /// revisions), and a copy must not copy every rule of the region.
    pub permissions: std::sync::Arc<Vec<Permission>>,
}

/// A named set of CIDR blocks that rules can use as their peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixList {
    /// `pl-...`
    pub id: PrefixListId,
    /// The entries.
    pub cidrs: Vec<IpNet>,
}

/// A named set of destination port ranges that TCP and UDP rules can use as their ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRangeList {
    /// `prl-...`
    pub id: PortRangeListId,
    /// The entries.
    pub ranges: Vec<PortRange>,
}

/// One incremental change to the policy, as the control plane's change log records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new, empty group.
    AddGroup(SecurityGroup),
    /// A group is deleted; it must have no members.
    RemoveGroup(SecurityGroupId),
    /// `ModifySecurityGroupPolicy`.
    SetInnerAccessPolicy(SecurityGroupId, InnerAccessPolicy),
    /// A rule is authorised; it becomes the newest rule of its group.
    AddPermission(SecurityGroupId, Permission),
    /// A rule is revoked.
    RemovePermission(SecurityGroupId, SecurityGroupRuleId),
    /// `ModifySecurityGroupRule`: same id, new fields, creation order kept.
    ReplacePermission(SecurityGroupId, Permission),
    /// A new instance, with the groups it starts in (all must exist).
    AddInstance(Instance),
    /// An instance is deleted and leaves all its groups.
    RemoveInstance(MemberId),
    /// `JoinSecurityGroup`: the group is appended to the instance's list.
    Join(MemberId, SecurityGroupId),
    /// `LeaveSecurityGroup`.
    Leave(MemberId, SecurityGroupId),
    /// A prefix list is created or its entries replaced.
    SetPrefixList(PrefixList),
    /// A port range list is created or its entries replaced.
    SetPortRangeList(PortRangeList),
}

/// The policy layer's error: a change or a question that does not fit the state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// The group does not exist.
    #[error("The specified SecurityGroupId \"{0}\" does not exist.")]
    UnknownGroup(SecurityGroupId),
    /// The instance does not exist.
    #[error("The specified InstanceId \"{0}\" does not exist.")]
    UnknownInstance(MemberId),
    /// The rule does not exist in that group.
    #[error("The specified SecurityGroupRuleId \"{0}\" does not exist.")]
    UnknownRule(SecurityGroupRuleId),
    /// A group id is used twice.
    #[error("The security group \"{0}\" already exists.")]
    DuplicateGroup(SecurityGroupId),
    /// An instance id is used twice.
    #[error("The instance \"{0}\" already exists.")]
    DuplicateInstance(MemberId),
    /// A rule id is used twice in one group.
    #[error("The security group rule \"{0}\" already exists.")]
    DuplicateRule(SecurityGroupRuleId),
    /// The instance is already in the group.
    #[error("The specified instance already exists in the specified security group.")]
    AlreadyMember,
    /// The instance is not in the group.
    #[error("The specified instance is not in the specified security group.")]
    NotMember,
    /// The group still has members.
    #[error("There is still instance(s) in the specified security group.")]
    GroupInUse,
    /// A flow names no instance; security groups only judge traffic at instances.
    #[error("At least one side of the flow must be an instance.")]
    NoInstanceInFlow,
    /// A flow's endpoint has no address of the flow's family or interface.
    #[error("The instance \"{0}\" has no {1} address.")]
    NoAddress(MemberId, &'static str),
    /// A flow mixes IPv4 and IPv6 addresses.
    #[error("The source and destination addresses are of different IP versions.")]
    FamilyMismatch,
}

impl model::EcsError for PolicyError {
    fn code(&self) -> std::borrow::Cow<'static, str> {
        match self {
            PolicyError::UnknownGroup(_) => "InvalidSecurityGroupId.NotFound",
            PolicyError::UnknownInstance(_) => "InvalidInstanceId.NotFound",
            PolicyError::UnknownRule(_) => "InvalidSecurityGroupRuleId.NotFound",
            PolicyError::DuplicateGroup(_) => "InvalidSecurityGroupId.Duplicate",
            PolicyError::DuplicateInstance(_) => "InvalidInstanceId.Duplicate",
            PolicyError::DuplicateRule(_) => "InvalidParam.DuplicatePermissions",
            PolicyError::AlreadyMember => "InvalidInstanceId.AlreadyExists",
            PolicyError::NotMember => "InvalidSecurityGroupAssociation.NotFound",
            PolicyError::GroupInUse => "DependencyViolation",
            PolicyError::NoInstanceInFlow
            | PolicyError::NoAddress(..)
            | PolicyError::FamilyMismatch => "InvalidParameter",
        }
        .into()
    }

    fn http_status(&self) -> u16 {
        match self {
            PolicyError::UnknownGroup(_)
            | PolicyError::UnknownInstance(_)
            | PolicyError::UnknownRule(_) => 404,
            PolicyError::AlreadyMember | PolicyError::GroupInUse => 403,
            PolicyError::DuplicateGroup(_)
            | PolicyError::DuplicateInstance(_)
            | PolicyError::DuplicateRule(_)
            | PolicyError::NotMember
            | PolicyError::NoInstanceInFlow
            | PolicyError::NoAddress(..)
            | PolicyError::FamilyMismatch => 400,
        }
    }
}

/// A group inside the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// The group's attributes.
    pub group: SecurityGroup,
    /// Rules by creation sequence number (smaller is older): ordered iteration, and
    /// logarithmic add and revoke even in 10,000-rule groups.
    rules: BTreeMap<u64, Permission>,
    /// Rule id → its sequence number.
    seq_of: FxHashMap<SecurityGroupRuleId, u64>,
    /// Current members.
    pub members: BTreeSet<MemberId>,
}

impl GroupEntry {
    /// The rules, oldest first, each with its creation sequence number (which orders rules
    /// across the whole state).
    pub fn rules(&self) -> impl Iterator<Item = (u64, &Permission)> {
        self.rules.iter().map(|(seq, p)| (*seq, p))
    }

    /// A rule by id, with its sequence number.
    pub fn rule(&self, id: &SecurityGroupRuleId) -> Option<(u64, &Permission)> {
        let seq = *self.seq_of.get(id)?;
        self.rules.get(&seq).map(|p| (seq, p))
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the group has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The current policy, kept consistent under [`Change`]s.
#[derive(Debug, Clone, Default)]
pub struct State {
    groups: FxHashMap<SecurityGroupId, GroupEntry>,
    instances: FxHashMap<MemberId, Instance>,
    prefix_lists: FxHashMap<PrefixListId, Vec<IpNet>>,
    port_lists: FxHashMap<PortRangeListId, Vec<PortRange>>,
    by_address: FxHashMap<IpAddr, Vec<MemberId>>,
    next_seq: u64,
}

impl State {
    /// The rules that judge one direction on one interface for an instance in `groups`, in
    /// the order DESIGN.md §4 evaluates them: priority (1 first), drop before accept, the
    /// group's position in the list, then creation order. The first match decides; the
    /// reference evaluator scans this list and the agent renders it into nftables.
    pub fn ordered_permissions<'a>(
        &'a self,
        groups: &'a [SecurityGroupId],
        direction: model::Direction,
        nic_type: model::NicType,
    ) -> Result<Vec<(&'a SecurityGroupId, &'a Permission)>, PolicyError> {
        let mut rules = Vec::new();
        for (position, group_id) in groups.iter().enumerate() {
            let group = self.group(group_id)?;
            for (seq, p) in group.rules() {
                if p.direction == direction && p.nic_type == nic_type {
                    rules.push((position, seq, group_id, p));
                }
            }
        }
        rules.sort_by_key(|(position, seq, _, p)| {
            (model::precedence(p.priority, p.policy), *position, *seq)
        });
        Ok(rules.into_iter().map(|(_, _, g, p)| (g, p)).collect())
    }

    /// Builds the state of a snapshot, checking that every id it uses exists.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<State, PolicyError> {
        let mut state = State::default();
        for list in &snapshot.prefix_lists {
            state.apply(&Change::SetPrefixList(list.clone()))?;
        }
        for list in &snapshot.port_range_lists {
            state.apply(&Change::SetPortRangeList(list.clone()))?;
        }
        for g in &snapshot.groups {
            state.apply(&Change::AddGroup(g.group.clone()))?;
            for p in g.permissions.iter() {
                state.apply(&Change::AddPermission(g.group.id.clone(), p.clone()))?;
            }
        }
        for i in &snapshot.instances {
            state.apply(&Change::AddInstance(i.clone()))?;
        }
        Ok(state)
    }

    /// Applies one change, or changes nothing and says why.
    pub fn apply(&mut self, change: &Change) -> Result<(), PolicyError> {
        match change {
            Change::AddGroup(g) => {
                if self.groups.contains_key(&g.id) {
                    return Err(PolicyError::DuplicateGroup(g.id.clone()));
                }
                let entry = GroupEntry {
                    group: g.clone(),
                    rules: BTreeMap::new(),
                    seq_of: FxHashMap::default(),
                    members: BTreeSet::new(),
                };
                self.groups.insert(g.id.clone(), entry);
            }
            Change::RemoveGroup(id) => {
                if !self.group(id)?.members.is_empty() {
                    return Err(PolicyError::GroupInUse);
                }
                self.groups.remove(id);
            }
            Change::SetInnerAccessPolicy(id, policy) => {
                self.group_mut(id)?.group.inner_access_policy = *policy;
            }
            Change::AddPermission(id, p) => {
                let seq = self.next_seq;
                let group = self.group_mut(id)?;
                if group.seq_of.contains_key(&p.id) {
                    return Err(PolicyError::DuplicateRule(p.id.clone()));
                }
                group.seq_of.insert(p.id.clone(), seq);
                group.rules.insert(seq, p.clone());
                self.next_seq += 1;
            }
            Change::RemovePermission(id, rule) => {
                let group = self.group_mut(id)?;
                let seq = group
                    .seq_of
                    .remove(rule)
                    .ok_or_else(|| PolicyError::UnknownRule(rule.clone()))?;
                group.rules.remove(&seq);
            }
            Change::ReplacePermission(id, p) => {
                let group = self.group_mut(id)?;
                let seq = *group
                    .seq_of
                    .get(&p.id)
                    .ok_or_else(|| PolicyError::UnknownRule(p.id.clone()))?;
                group.rules.insert(seq, p.clone());
            }
            Change::AddInstance(i) => {
                if self.instances.contains_key(&i.id) {
                    return Err(PolicyError::DuplicateInstance(i.id.clone()));
                }
                let mut seen = BTreeSet::new();
                for g in &i.security_groups {
                    self.group(g)?;
                    if !seen.insert(g) {
                        return Err(PolicyError::AlreadyMember);
                    }
                }
                for g in &i.security_groups {
                    self.group_mut(g)?.members.insert(i.id.clone());
                }
                for a in i.intranet_addresses() {
                    self.by_address.entry(a).or_default().push(i.id.clone());
                }
                self.instances.insert(i.id.clone(), i.clone());
            }
            Change::RemoveInstance(id) => {
                let i = self
                    .instances
                    .remove(id)
                    .ok_or_else(|| PolicyError::UnknownInstance(id.clone()))?;
                for g in &i.security_groups {
                    if let Some(entry) = self.groups.get_mut(g) {
                        entry.members.remove(id);
                    }
                }
                for a in i.intranet_addresses() {
                    if let Some(ids) = self.by_address.get_mut(&a) {
                        ids.retain(|x| x != id);
                        if ids.is_empty() {
                            self.by_address.remove(&a);
                        }
                    }
                }
            }
            Change::Join(iid, gid) => {
                self.group(gid)?;
                let i = self.instance(iid)?;
                if i.security_groups.contains(gid) {
                    return Err(PolicyError::AlreadyMember);
                }
                self.instances
                    .get_mut(iid)
                    .expect("checked")
                    .security_groups
                    .push(gid.clone());
                self.group_mut(gid)?.members.insert(iid.clone());
            }
            Change::Leave(iid, gid) => {
                self.group(gid)?;
                let i = self.instance(iid)?;
                let at = i
                    .security_groups
                    .iter()
                    .position(|g| g == gid)
                    .ok_or(PolicyError::NotMember)?;
                self.instances
                    .get_mut(iid)
                    .expect("checked")
                    .security_groups
                    .remove(at);
                self.group_mut(gid)?.members.remove(iid);
            }
            Change::SetPrefixList(list) => {
                self.prefix_lists
                    .insert(list.id.clone(), list.cidrs.clone());
            }
            Change::SetPortRangeList(list) => {
                self.port_lists.insert(list.id.clone(), list.ranges.clone());
            }
        }
        Ok(())
    }

    /// A group by id.
    pub fn group(&self, id: &SecurityGroupId) -> Result<&GroupEntry, PolicyError> {
        self.groups
            .get(id)
            .ok_or_else(|| PolicyError::UnknownGroup(id.clone()))
    }

    fn group_mut(&mut self, id: &SecurityGroupId) -> Result<&mut GroupEntry, PolicyError> {
        self.groups
            .get_mut(id)
            .ok_or_else(|| PolicyError::UnknownGroup(id.clone()))
    }

    /// An instance by id.
    pub fn instance(&self, id: &MemberId) -> Result<&Instance, PolicyError> {
        self.instances
            .get(id)
            .ok_or_else(|| PolicyError::UnknownInstance(id.clone()))
    }

    /// Every group, in no particular order.
    pub fn groups(&self) -> impl Iterator<Item = &GroupEntry> {
        self.groups.values()
    }

    /// Every instance, in no particular order.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values()
    }

    /// The ids of every prefix list.
    pub fn prefix_list_ids(&self) -> impl Iterator<Item = &PrefixListId> {
        self.prefix_lists.keys()
    }

    /// The entries of a prefix list (empty when it does not exist: it then matches nothing).
    pub fn prefix_list(&self, id: &PrefixListId) -> &[IpNet] {
        self.prefix_lists.get(id).map_or(&[], Vec::as_slice)
    }

    /// The ids of every port range list.
    pub fn port_list_ids(&self) -> impl Iterator<Item = &PortRangeListId> {
        self.port_lists.keys()
    }

    /// The entries of a port range list (empty when it does not exist: it then matches
    /// nothing).
    pub fn port_list(&self, id: &PortRangeListId) -> &[PortRange] {
        self.port_lists.get(id).map_or(&[], Vec::as_slice)
    }

    /// The destination port ranges a rule admits: its `PortRange`, or its port list's
    /// entries; `None` for protocols without ports. Every reader of a rule's ports goes
    /// through here, so none can take a list rule's placeholder range for its ports.
    pub fn destination_ports(&self, p: &Permission) -> Option<Vec<PortRange>> {
        let ports = p.protocol.ports()?;
        Some(match &p.port_list {
            Some(list) => self.port_list(list).to_vec(),
            None => vec![ports.destination],
        })
    }

    /// Whether a rule's protocol and ports admit a packet (ports are read for TCP and UDP
    /// rules only; callers pass 0 for other packets).
    pub fn protocol_matches(&self, p: &Permission, protocol: u8, sport: u16, dport: u16) -> bool {
        p.protocol.matches(protocol, sport, dport)
            && p.port_list
                .as_ref()
                .is_none_or(|l| self.port_list(l).iter().any(|r| r.contains(dport)))
    }

    /// The instances whose intranet addresses include `addr`.
    pub fn instances_at(&self, addr: IpAddr) -> &[MemberId] {
        self.by_address.get(&addr).map_or(&[], Vec::as_slice)
    }

    /// Whether `addr` is an intranet address of a current member of `group`: what a group
    /// reference matches.
    pub fn address_in_group(&self, addr: IpAddr, group: &SecurityGroupId) -> bool {
        self.instances_at(addr).iter().any(|i| {
            self.instances
                .get(i)
                .is_some_and(|i| i.security_groups.contains(group))
        })
    }

    /// Whether a rule's peer admits `addr`.
    pub fn peer_contains(&self, permission: &Permission, addr: IpAddr) -> bool {
        match &permission.peer {
            Peer::Cidr(net) => net.contains(&addr),
            Peer::Group(g) => self.address_in_group(addr, &g.id),
            Peer::PrefixList(id) => self.prefix_list(id).iter().any(|n| n.contains(&addr)),
        }
    }

    /// Re-creates a snapshot of the current state (groups and instances sorted by id).
    pub fn to_snapshot(&self) -> Snapshot {
        let mut groups: Vec<GroupPolicy> = self
            .groups
            .values()
            .map(|g| GroupPolicy {
                group: g.group.clone(),
                permissions: std::sync::Arc::new(g.rules.values().cloned().collect()),
            })
            .collect();
        groups.sort_by(|a, b| a.group.id.cmp(&b.group.id));
        let mut instances: Vec<Instance> = self.instances.values().cloned().collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        let mut prefix_lists: Vec<PrefixList> = self
            .prefix_lists
            .iter()
            .map(|(id, cidrs)| PrefixList {
                id: id.clone(),
                cidrs: cidrs.clone(),
            })
            .collect();
        prefix_lists.sort_by(|a, b| a.id.cmp(&b.id));
        let mut port_range_lists: Vec<PortRangeList> = self
            .port_lists
            .iter()
            .map(|(id, ranges)| PortRangeList {
                id: id.clone(),
                ranges: ranges.clone(),
            })
            .collect();
        port_range_lists.sort_by(|a, b| a.id.cmp(&b.id));
        Snapshot {
            groups,
            instances,
            prefix_lists,
            port_range_lists,
        }
    }
}
