//! The compiled evaluator: per policy set (an ordered list of groups that some instances
//! share), one classifier per direction × interface × address family, kept up to date
//! incrementally.
//!
//! Instances with the same group list share one policy set, so a fleet of thousands of
//! instances usually compiles a few hundred sets. Group references are resolved at lookup
//! through an address → groups index, so a member joining or leaving a group updates that
//! index only (plus the joining instance's own set). Rule changes touch only the sets that
//! contain the rule's group, and within them only the classifier leaves the rule overlaps.

mod classifier;

use std::net::IpAddr;

use model::{
    Direction, NicType, Peer, Permission, Policy, Priority, SecurityGroupId, SecurityGroupRuleId,
};
use rustc_hash::FxHashMap;

use crate::flow::{Decider, Decision, Evaluator, Packet, StageQuery};
use crate::state::{Change, PolicyError, Snapshot, State};
use classifier::{Classifier, Entry, Hit, Key, BATCH, DIMS, NO_GROUP};

/// The fast evaluator. Answers exactly as [`crate::Reference`] does.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    state: State,
    group_index: FxHashMap<SecurityGroupId, u32>,
    /// Intranet address → indices of the groups of the instances holding it.
    address_groups: FxHashMap<IpAddr, Vec<u32>>,
    sets: Vec<Option<PolicySet>>,
    free_sets: Vec<u32>,
    set_by_groups: FxHashMap<Vec<SecurityGroupId>, u32>,
    instance_set: FxHashMap<model::MemberId, u32>,
}

/// What the compiled rules of a policy set remember about each rule, to name it in answers.
/// Its priority and policy are not kept: the classifier's answer carries them in the
/// precedence (see [`precedence`]).
#[derive(Debug, Clone)]
struct RuleMeta {
    group: SecurityGroupId,
    rule: SecurityGroupRuleId,
    table: usize,
}

#[derive(Debug, Clone, Default)]
struct Tables {
    v4: Classifier<u32>,
    v6: Classifier<u128>,
}

#[derive(Debug, Clone)]
struct PolicySet {
    groups: Vec<SecurityGroupId>,
    /// Interned indices of `groups`, for the intra-group default.
    group_indices: Vec<u32>,
    /// Per group of `groups`: whether its effective `InnerAccessPolicy` is `Accept`.
    inner_accept: Vec<bool>,
    /// Whether the groups are enterprise groups (they never mix with basic ones).
    enterprise: bool,
    instances: usize,
    /// Indexed by [`table_index`].
    tables: [Tables; 4],
    /// By slot. A freed slot (listed in `free_rules`) keeps its last rule until it is
    /// reused: the classifiers hold live slots only, so an answer borrows its rule's names
    /// by address, without reading this vector (whose entries are cold in a large set:
    /// reading them cost ipc2_10k 13 % of its lookup time).
    rules: Vec<RuleMeta>,
    free_rules: Vec<u32>,
    slot_of: FxHashMap<SecurityGroupRuleId, u32>,
}

fn table_index(direction: Direction, nic: NicType) -> usize {
    (direction == Direction::Egress) as usize * 2 + (nic == NicType::Internet) as usize
}

/// Precedence within a set: priority, then drop before accept, then the group's position in
/// the instance's list, then creation order. Smaller decides first.
fn precedence(p: &Permission, position: usize, seq: u64) -> u64 {
    precedence_of(p.priority, p.policy, position, seq)
}

fn precedence_of(priority: Priority, policy: Policy, position: usize, seq: u64) -> u64 {
    (u64::from(priority.get()) << 56)
        | (u64::from(policy == Policy::Accept) << PRECEDENCE_ACCEPT)
        | ((position as u64 & 0x7f) << 48)
        | (seq & 0xffff_ffff_ffff)
}

/// The bit of a precedence set for `Accept` rules.
const PRECEDENCE_ACCEPT: u32 = 55;

/// The priority and policy a precedence was made from.
fn priority_and_policy(prec: u64) -> (Priority, Policy) {
    let priority = Priority::new((prec >> 56) as u8).expect("made from a priority");
    let policy = match prec >> PRECEDENCE_ACCEPT & 1 {
        1 => Policy::Accept,
        _ => Policy::Drop,
    };
    (priority, policy)
}

impl Engine {
    /// Compiles a snapshot.
    pub fn new(snapshot: &Snapshot) -> Result<Engine, PolicyError> {
        let state = State::from_snapshot(snapshot)?;
        let mut engine = Engine {
            state,
            ..Engine::default()
        };
        let instances: Vec<_> = engine.state.instances().cloned().collect();
        for i in &instances {
            engine.index_instance(i, true);
        }
        Ok(engine)
    }

    /// Applies one change to the state and the compiled structures, or changes nothing.
    pub fn apply(&mut self, change: &Change) -> Result<(), PolicyError> {
        let before = match change {
            Change::Join(i, _) | Change::Leave(i, _) | Change::RemoveInstance(i) => {
                Some(self.state.instance(i)?.clone())
            }
            _ => None,
        };
        self.state.apply(change)?;
        match change {
            Change::AddGroup(g) => {
                self.intern(&g.id);
            }
            Change::RemoveGroup(_) => {}
            Change::SetInnerAccessPolicy(g, _) => {
                for set in self.sets_with(g) {
                    self.refresh_defaults(set);
                }
            }
            Change::AddPermission(g, p) | Change::ReplacePermission(g, p) => {
                let (seq, _) = self
                    .state
                    .group(g)?
                    .rule(&p.id)
                    .expect("the state just stored the rule");
                for set in self.sets_with(g) {
                    self.set_remove_rule(set, &p.id);
                    self.set_add_rule(set, g, p, seq);
                }
            }
            Change::RemovePermission(g, rule) => {
                for set in self.sets_with(g) {
                    self.set_remove_rule(set, rule);
                }
            }
            Change::AddInstance(i) => {
                let i = self.state.instance(&i.id)?.clone();
                self.index_instance(&i, true);
            }
            Change::RemoveInstance(_) => {
                self.index_instance(&before.expect("read before"), false);
            }
            Change::Join(id, _) | Change::Leave(id, _) => {
                self.index_instance(&before.expect("read before"), false);
                let after = self.state.instance(id)?.clone();
                self.index_instance(&after, true);
            }
            Change::SetPrefixList(_) | Change::SetPortRangeList(_) => {
                // Rare: recompile every set rather than track which rules use the list.
                for set in 0..self.sets.len() {
                    if self.sets[set].is_some() {
                        self.compile_set(set as u32);
                    }
                }
            }
        }
        Ok(())
    }

    fn intern(&mut self, g: &SecurityGroupId) -> u32 {
        let next = self.group_index.len() as u32;
        *self.group_index.entry(g.clone()).or_insert(next)
    }

    /// Adds (or removes) an instance's addresses to the group index and its reference to
    /// the policy set of its group list.
    fn index_instance(&mut self, i: &model::Instance, add: bool) {
        let groups: Vec<u32> = i.security_groups.iter().map(|g| self.intern(g)).collect();
        for a in i.intranet_addresses() {
            let entry = self.address_groups.entry(a).or_default();
            for g in &groups {
                if add {
                    entry.push(*g);
                } else if let Some(at) = entry.iter().position(|x| x == g) {
                    entry.swap_remove(at);
                }
            }
            if entry.is_empty() {
                self.address_groups.remove(&a);
            }
        }
        if add {
            let set = self.acquire_set(&i.security_groups);
            self.instance_set.insert(i.id.clone(), set);
        } else if let Some(set) = self.instance_set.remove(&i.id) {
            self.release_set(set);
        }
    }

    fn acquire_set(&mut self, groups: &[SecurityGroupId]) -> u32 {
        if let Some(&set) = self.set_by_groups.get(groups) {
            self.sets[set as usize]
                .as_mut()
                .expect("live set")
                .instances += 1;
            return set;
        }
        let set = PolicySet {
            groups: groups.to_vec(),
            group_indices: Vec::new(),
            inner_accept: Vec::new(),
            enterprise: false,
            instances: 1,
            tables: Default::default(),
            rules: Vec::new(),
            free_rules: Vec::new(),
            slot_of: FxHashMap::default(),
        };
        let id = match self.free_sets.pop() {
            Some(id) => {
                self.sets[id as usize] = Some(set);
                id
            }
            None => {
                self.sets.push(Some(set));
                (self.sets.len() - 1) as u32
            }
        };
        self.set_by_groups.insert(groups.to_vec(), id);
        self.compile_set(id);
        id
    }

    fn release_set(&mut self, id: u32) {
        let set = self.sets[id as usize].as_mut().expect("live set");
        set.instances -= 1;
        if set.instances == 0 {
            let set = self.sets[id as usize].take().expect("live set");
            self.set_by_groups.remove(&set.groups);
            self.free_sets.push(id);
        }
    }

    fn sets_with(&self, g: &SecurityGroupId) -> Vec<u32> {
        self.sets
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.groups.contains(g)))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Recomputes what a set's defaults depend on: group kinds and intra-group policies.
    fn refresh_defaults(&mut self, id: u32) {
        let groups = self.sets[id as usize]
            .as_ref()
            .expect("live set")
            .groups
            .clone();
        let indices: Vec<u32> = groups.iter().map(|g| self.intern(g)).collect();
        let entries: Vec<_> = groups.iter().map(|g| self.state.group(g).ok()).collect();
        let enterprise = entries
            .iter()
            .flatten()
            .next()
            .is_some_and(|g| g.group.group_type == model::GroupType::Enterprise);
        let inner_accept = entries
            .iter()
            .map(|g| g.is_some_and(|g| g.group.inner_access() == model::InnerAccessPolicy::Accept))
            .collect();
        let set = self.sets[id as usize].as_mut().expect("live set");
        set.group_indices = indices;
        set.inner_accept = inner_accept;
        set.enterprise = enterprise;
    }

    /// Builds a set's classifiers from scratch from the state.
    fn compile_set(&mut self, id: u32) {
        self.refresh_defaults(id);
        let groups = self.sets[id as usize]
            .as_ref()
            .expect("live set")
            .groups
            .clone();
        let referenced: Vec<SecurityGroupId> = groups
            .iter()
            .filter_map(|g| self.state.group(g).ok())
            .flat_map(|g| g.rules())
            .filter_map(|(_, p)| match &p.peer {
                Peer::Group(g) => Some(g.id.clone()),
                _ => None,
            })
            .collect();
        for g in &referenced {
            self.intern(g);
        }
        let set = self.sets[id as usize].as_mut().expect("live set");
        set.rules.clear();
        set.free_rules.clear();
        set.slot_of.clear();
        let mut v4: [Vec<Entry<u32>>; 4] = Default::default();
        let mut v6: [Vec<Entry<u128>>; 4] = Default::default();
        for (position, g) in set.groups.iter().enumerate() {
            let Ok(group) = self.state.group(g) else {
                continue;
            };
            for (seq, p) in group.rules() {
                let table = table_index(p.direction, p.nic_type);
                let slot = set.rules.len() as u32;
                set.rules.push(RuleMeta {
                    group: g.clone(),
                    rule: p.id.clone(),
                    table,
                });
                set.slot_of.insert(p.id.clone(), slot);
                let prec = precedence(p, position, seq);
                let group_ref = |g: &SecurityGroupId| self.group_index.get(g).copied();
                v4[table].extend(entries::<u32>(&self.state, p, prec, slot, group_ref));
                v6[table].extend(entries::<u128>(&self.state, p, prec, slot, group_ref));
            }
        }
        for (t, (e4, e6)) in set.tables.iter_mut().zip(v4.into_iter().zip(v6)) {
            t.v4 = Classifier::build(e4);
            t.v6 = Classifier::build(e6);
        }
    }

    fn set_add_rule(&mut self, id: u32, g: &SecurityGroupId, p: &Permission, seq: u64) {
        let group_ref = self.intern_peer(p);
        let set = self.sets[id as usize].as_mut().expect("live set");
        let Some(position) = set.groups.iter().position(|x| x == g) else {
            return;
        };
        let table = table_index(p.direction, p.nic_type);
        let meta = RuleMeta {
            group: g.clone(),
            rule: p.id.clone(),
            table,
        };
        let slot = match set.free_rules.pop() {
            Some(slot) => {
                set.rules[slot as usize] = meta;
                slot
            }
            None => {
                set.rules.push(meta);
                (set.rules.len() - 1) as u32
            }
        };
        set.slot_of.insert(p.id.clone(), slot);
        let prec = precedence(p, position, seq);
        let lookup = |_: &SecurityGroupId| group_ref;
        set.tables[table]
            .v4
            .insert(&entries::<u32>(&self.state, p, prec, slot, lookup));
        set.tables[table]
            .v6
            .insert(&entries::<u128>(&self.state, p, prec, slot, lookup));
    }

    fn intern_peer(&mut self, p: &Permission) -> Option<u32> {
        match &p.peer {
            Peer::Group(g) => Some(self.intern(&g.id)),
            _ => None,
        }
    }

    fn set_remove_rule(&mut self, id: u32, rule: &SecurityGroupRuleId) {
        let set = self.sets[id as usize].as_mut().expect("live set");
        let Some(slot) = set.slot_of.remove(rule) else {
            return;
        };
        let table = set.rules[slot as usize].table;
        set.tables[table].v4.remove(slot);
        set.tables[table].v6.remove(slot);
        set.free_rules.push(slot);
    }

    fn in_group(&self, addr: IpAddr, group: u32) -> bool {
        self.address_groups
            .get(&addr)
            .is_some_and(|gs| gs.contains(&group))
    }

    /// Bytes held by the compiled classifiers (not the state they were compiled from).
    pub fn memory_bytes(&self) -> usize {
        self.sets
            .iter()
            .flatten()
            .flat_map(|s| s.tables.iter())
            .map(|t| t.v4.memory_bytes() + t.v6.memory_bytes())
            .sum()
    }

    /// Number of distinct policy sets compiled (instances sharing a group list share one).
    pub fn policy_sets(&self) -> usize {
        self.sets.iter().flatten().count()
    }

    /// Tree shape of the IPv4 ingress intranet classifier of an instance's set (nodes,
    /// leaves, longest leaf, depth), for benchmark reports.
    pub fn ingress_shape(&self, instance: &model::MemberId) -> Option<(usize, usize, usize, u32)> {
        let set = self.sets[*self.instance_set.get(instance)? as usize].as_ref()?;
        Some(
            set.tables[table_index(Direction::Ingress, NicType::Intranet)]
                .v4
                .shape(),
        )
    }
}

/// The boxes of one rule in one address family's key space (none when the rule's addresses
/// are all of the other family).
fn entries<K: AddressKey>(
    state: &State,
    p: &Permission,
    prec: u64,
    id: u32,
    group_index: impl Fn(&SecurityGroupId) -> Option<u32>,
) -> Vec<Entry<K>> {
    let (proto_lo, proto_hi) = match p.protocol.ip_protocol().number() {
        Some(n) => (K::from_u16(u16::from(n)), K::from_u16(u16::from(n))),
        None => (K::from_u16(0), K::from_u16(255)),
    };
    let full_ports = (K::from_u16(0), K::from_u16(u16::MAX));
    let ports = p.protocol.ports();
    // One box per destination range (a port list's entries; an empty list matches nothing).
    let dports: Vec<(K, K)> = match state.destination_ports(p) {
        None => vec![full_ports],
        Some(ranges) => ranges
            .iter()
            .map(|r| (K::from_u16(r.start()), K::from_u16(r.end())))
            .collect(),
    };
    let sport = ports.and_then(|p| p.source).map_or(full_ports, |s| {
        (K::from_u16(s.start()), K::from_u16(s.end()))
    });
    let local = match p.local {
        None => (K::default(), K::MAX),
        Some(net) => match K::bounds(&net) {
            Some(b) => b,
            None => return Vec::new(),
        },
    };
    let peers: Vec<((K, K), u32)> = match &p.peer {
        Peer::Cidr(net) => K::bounds(net).map(|b| (b, NO_GROUP)).into_iter().collect(),
        Peer::Group(g) => match group_index(&g.id) {
            Some(gi) => vec![((K::default(), K::MAX), gi)],
            None => Vec::new(),
        },
        Peer::PrefixList(list) => state
            .prefix_list(list)
            .iter()
            .filter_map(K::bounds)
            .map(|b| (b, NO_GROUP))
            .collect(),
    };
    peers
        .iter()
        .flat_map(|&(peer, group)| {
            dports.iter().map(move |&dport| Entry {
                lo: [proto_lo, dport.0, sport.0, peer.0, local.0],
                hi: [proto_hi, dport.1, sport.1, peer.1, local.1],
                prec,
                id,
                group,
            })
        })
        .collect()
}

/// A key type that can also hold the addresses of one family.
trait AddressKey: Key {
    /// First and last address of a block of this family.
    fn bounds(net: &ipnet::IpNet) -> Option<(Self, Self)>;
}

impl AddressKey for u32 {
    fn bounds(net: &ipnet::IpNet) -> Option<(u32, u32)> {
        match net {
            ipnet::IpNet::V4(n) => Some((n.network().into(), n.broadcast().into())),
            ipnet::IpNet::V6(_) => None,
        }
    }
}

impl AddressKey for u128 {
    fn bounds(net: &ipnet::IpNet) -> Option<(u128, u128)> {
        match net {
            ipnet::IpNet::V6(n) => Some((n.network().into(), n.broadcast().into())),
            ipnet::IpNet::V4(_) => None,
        }
    }
}

impl Evaluator for Engine {
    fn state(&self) -> &State {
        &self.state
    }

    fn decide<'a>(&'a self, q: &StageQuery<'_>) -> Result<Decision<'a>, PolicyError> {
        self.stage(q.instance, q.direction, q.nic_type)?
            .decide(&q.packet)
    }
}

/// One instance's compiled rules for one direction and interface type, resolved once: what
/// a firewall holds per interface. Judging many packets of one stage through it skips the
/// instance lookup that [`Evaluator::decide`] makes per query.
#[derive(Debug, Clone, Copy)]
pub struct Stage<'a> {
    engine: &'a Engine,
    set: &'a PolicySet,
    tables: &'a Tables,
    direction: Direction,
    nic_type: NicType,
}

impl Engine {
    /// The compiled rules that judge packets of `instance` in one direction through one
    /// interface type.
    pub fn stage(
        &self,
        instance: &model::MemberId,
        direction: Direction,
        nic_type: NicType,
    ) -> Result<Stage<'_>, PolicyError> {
        let set = self
            .instance_set
            .get(instance)
            .and_then(|s| self.sets[*s as usize].as_ref())
            .ok_or_else(|| PolicyError::UnknownInstance(instance.clone()))?;
        Ok(Stage {
            engine: self,
            set,
            tables: &set.tables[table_index(direction, nic_type)],
            direction,
            nic_type,
        })
    }
}

impl<'a> Stage<'a> {
    /// The verdict on one packet and what decided it, exactly as [`Evaluator::decide`].
    pub fn decide(&self, p: &Packet) -> Result<Decision<'a>, PolicyError> {
        let (engine, tables) = (self.engine, self.tables);
        let in_group = |g| engine.in_group(p.peer, g);
        let hit = match (p.peer, p.local) {
            (IpAddr::V4(peer), IpAddr::V4(local)) => {
                tables.v4.lookup_v4(&v4_key(p, peer, local), in_group)
            }
            (IpAddr::V6(peer), IpAddr::V6(local)) => {
                let (proto, dport, sport) =
                    (u16::from(p.protocol), p.destination_port, p.source_port);
                let key: [u128; DIMS] = [
                    proto.into(),
                    dport.into(),
                    sport.into(),
                    peer.into(),
                    local.into(),
                ];
                tables.v6.lookup(&key, in_group)
            }
            _ => return Err(PolicyError::FamilyMismatch),
        };
        Ok(self.conclude(hit, p))
    }

    /// Verdicts on many packets, appended to `out` in their order, each exactly as
    /// [`Stage::decide`] gives it. Runs of eight IPv4 packets are judged together, their
    /// tree walks overlapped in memory (what bulk questions want: a trace, the tracked
    /// flows of a host); anything else is judged one by one. On an error nothing is added
    /// past the packet that failed.
    pub fn decide_all(
        &self,
        packets: &[Packet],
        out: &mut Vec<Decision<'a>>,
    ) -> Result<(), PolicyError> {
        let engine = self.engine;
        let mut batches = packets.chunks_exact(BATCH);
        for batch in &mut batches {
            let mut keys = [[0u32; DIMS]; BATCH];
            let all_v4 = batch
                .iter()
                .zip(&mut keys)
                .all(|(p, key)| match (p.peer, p.local) {
                    (IpAddr::V4(peer), IpAddr::V4(local)) => {
                        *key = v4_key(p, peer, local);
                        true
                    }
                    _ => false,
                });
            if !all_v4 {
                for p in batch {
                    out.push(self.decide(p)?);
                }
                continue;
            }
            let mut hits = [None; BATCH];
            self.tables.v4.lookup_batch_v4(
                &keys,
                |k, g| engine.in_group(batch[k].peer, g),
                &mut hits,
            );
            out.extend(batch.iter().zip(hits).map(|(p, hit)| self.conclude(hit, p)));
        }
        for p in batches.remainder() {
            out.push(self.decide(p)?);
        }
        Ok(())
    }

    /// The decision once the classifier has answered (`hit`: the deciding rule's slot and
    /// precedence).
    #[inline]
    fn conclude(&self, hit: Option<Hit>, p: &Packet) -> Decision<'a> {
        let (engine, set) = (self.engine, self.set);
        if let Some(hit) = hit {
            let meta = &set.rules[hit.id as usize];
            let (priority, policy) = priority_and_policy(hit.prec);
            return Decision {
                verdict: policy,
                decided_by: Decider::Rule {
                    group: &meta.group,
                    rule: &meta.rule,
                    priority,
                    policy,
                },
            };
        }
        // No rule matched: the defaults (DESIGN.md §4 step 5), from what the set keeps.
        let (verdict, decided_by) = match self.direction {
            Direction::Egress if set.enterprise => (Policy::Drop, Decider::DefaultEgress),
            Direction::Egress => (Policy::Accept, Decider::DefaultEgress),
            Direction::Ingress => {
                let peer_groups = (!set.enterprise && self.nic_type == NicType::Intranet)
                    .then(|| engine.address_groups.get(&p.peer))
                    .flatten();
                let inner = peer_groups.and_then(|gs| {
                    (0..set.groups.len())
                        .find(|&k| set.inner_accept[k] && gs.contains(&set.group_indices[k]))
                });
                match inner {
                    Some(k) => (Policy::Accept, Decider::InnerAccessPolicy(&set.groups[k])),
                    None => (Policy::Drop, Decider::DefaultIngress),
                }
            }
        };
        Decision {
            verdict,
            decided_by,
        }
    }
}

/// The classifier key of an IPv4 packet.
#[inline]
fn v4_key(p: &Packet, peer: std::net::Ipv4Addr, local: std::net::Ipv4Addr) -> [u32; DIMS] {
    [
        p.protocol.into(),
        p.destination_port.into(),
        p.source_port.into(),
        peer.into(),
        local.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_precedence_gives_back_its_priority_and_policy() {
        for value in 1..=100 {
            let priority = Priority::new(value).unwrap();
            for policy in [Policy::Accept, Policy::Drop] {
                for (position, seq) in [(0, 0), (4, 1), (127, (1 << 48) - 1)] {
                    let prec = precedence_of(priority, policy, position, seq);
                    assert_eq!(priority_and_policy(prec), (priority, policy));
                }
            }
        }
        let drop = precedence_of(Priority::LOWEST, Policy::Drop, 127, 9);
        let accept = precedence_of(Priority::LOWEST, Policy::Accept, 0, 0);
        assert!(drop < accept, "drop decides before accept at one priority");
    }
}
