//! Keeping the nftables table equal to the rendering of the current policy.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use model::{MemberId, NicType, SecurityGroupId, VpcId};
use netfilter::Backend;
use nft::{render_as, render_reusing, Attachment, Rendering, Ruleset, Zones};
use policy::{Engine, GroupPolicy, State};

use crate::feed::HostPolicy;
use crate::AgentError;

/// The changes that turn instances `old` into `new`: every instance that differs is removed
/// and added again (its group list in its new order), removals first.
fn instance_changes(old: &[model::Instance], new: &[model::Instance]) -> Vec<policy::Change> {
    let before: HashMap<&MemberId, &model::Instance> = old.iter().map(|i| (&i.id, i)).collect();
    let after: HashMap<&MemberId, &model::Instance> = new.iter().map(|i| (&i.id, i)).collect();
    let removed = old
        .iter()
        .filter(|i| after.get(&i.id) != Some(i))
        .map(|i| policy::Change::RemoveInstance(i.id.clone()));
    let added = new
        .iter()
        .filter(|i| before.get(&i.id) != Some(i))
        .map(|i| policy::Change::AddInstance((*i).clone()));
    removed.chain(added).collect()
}

/// FNV-1a: a hash that is the same in every build, so a restarted agent gives a VPC the
/// zone it had (its tracked connections keep working).
fn stable_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Gives every VPC present a zone in 1..=65535 (0 is the classic network's): its hash's
/// slot, or the next free one; VPCs already here keep theirs, VPCs gone give theirs up.
fn allocate_zones(zones: &mut BTreeMap<VpcId, u16>, present: &BTreeSet<VpcId>) {
    zones.retain(|v, _| present.contains(v));
    for vpc in present {
        if zones.contains_key(vpc) {
            continue;
        }
        let used: BTreeSet<u16> = zones.values().copied().collect();
        let mut zone = (stable_hash(vpc.as_str()) % 65_535) as u16 + 1;
        while used.contains(&zone) {
            zone = zone % 65_535 + 1;
        }
        zones.insert(vpc.clone(), zone);
    }
}

/// The zone of each attached VPC device and overlay device (classic devices stay in 0).
fn zones(
    state: &State,
    attachments: &[Attachment],
    overlays: &[(String, VpcId)],
    allocated: &BTreeMap<VpcId, u16>,
) -> Zones {
    let mut out = Zones::default();
    let zone_of = |vpc: Option<&VpcId>| vpc.and_then(|v| allocated.get(v)).copied().unwrap_or(0);
    for a in attachments {
        if let (Ok(i), NicType::Intranet) = (state.instance(&a.instance), a.nic_type) {
            out.device(&a.interface, zone_of(i.vpc_id.as_ref()));
        }
    }
    for (device, vpc) in overlays {
        out.device(device, zone_of(Some(vpc)));
    }
    out
}

/// The policy and interfaces known, and what the table holds.
#[derive(Debug)]
pub struct Enforcer<B: Backend> {
    backend: B,
    policy: Option<(HostPolicy, State)>,
    /// The compiled engine over the policy, built on first use (only cutting connections
    /// needs it, and that happens after the transaction).
    engine: std::cell::OnceCell<Option<Engine>>,
    attachments: Vec<Attachment>,
    /// Devices labelled as interfaces' that none bound here explains: failed closed.
    unattributed: Vec<(String, String)>,
    /// Bound interfaces several devices claim (see `interfaces::Discovery::contested`).
    contested: Vec<(MemberId, NicType)>,
    /// VPC overlay devices, by the VPC they carry.
    overlays: Vec<(String, VpcId)>,
    /// The conntrack zone of each VPC on this host, kept while the VPC is here so that its
    /// tracked connections keep their zone.
    zones: BTreeMap<VpcId, u16>,
    /// What the table holds, when known (unknown at start and after drift).
    applied: Option<Ruleset>,
    /// The groups of the policy `applied` was rendered from: chains over groups that did
    /// not change since are reused, not rendered again.
    applied_groups: Vec<GroupPolicy>,
    /// Groups whose members changed since `applied` was rendered (`None`: unknown, all).
    dirty_members: Option<BTreeSet<SecurityGroupId>>,
    /// Whether, since `applied`, only members changed, none of them attached here: then
    /// only those groups' sets can differ, and the next sync renders nothing else.
    members_only: bool,
    /// The kernel's listing of the table right after our last transaction (taken later,
    /// when `generation` shows nothing was committed since), without counter values.
    fingerprint: Option<String>,
    /// Rule hit counts read from the kernel and not yet delivered.
    hits: crate::hits::Hits,
    /// The kernel's ruleset generation right after our last transaction, when the backend
    /// reads it.
    generation: Option<u32>,
    /// How chains are written.
    rendering: Rendering,
}

/// What one [`Enforcer::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A transaction was applied (false when the table already matched).
    pub applied: bool,
    /// It replaced the whole table (rather than a diff).
    pub full: bool,
    /// Instances failed closed, with the reason.
    pub failed: BTreeMap<MemberId, String>,
    /// From the start of the sync to the transaction being in force (rendering, diffing,
    /// applying; not the drift fingerprint taken afterwards).
    pub enforced_in: std::time::Duration,
}

impl<B: Backend> Enforcer<B> {
    /// An enforcer over a backend. Nothing is applied until a policy arrives, so whatever the
    /// table holds (a previous run's enforcement) stays in force meanwhile.
    pub fn new(backend: B) -> Enforcer<B> {
        Enforcer {
            backend,
            policy: None,
            engine: std::cell::OnceCell::new(),
            attachments: Vec::new(),
            unattributed: Vec::new(),
            contested: Vec::new(),
            overlays: Vec::new(),
            zones: BTreeMap::new(),
            applied: None,
            applied_groups: Vec::new(),
            dirty_members: None,
            members_only: false,
            fingerprint: None,
            hits: Default::default(),
            generation: None,
            rendering: Rendering::default(),
        }
    }

    /// Writes chains in `rendering` from the next transaction on (the next one replaces the
    /// whole table, so no chain of the other rendering stays behind).
    pub fn set_rendering(&mut self, rendering: Rendering) {
        if rendering != self.rendering {
            self.rendering = rendering;
            self.applied = None;
            self.members_only = false;
        }
    }

    /// The backend (tests inspect the fake).
    pub fn backend(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The ruleset the table holds, as far as the enforcer knows.
    pub fn applied(&self) -> Option<&Ruleset> {
        self.applied.as_ref()
    }

    /// The revision of the policy held, if any.
    pub fn revision(&self) -> Option<u64> {
        self.policy.as_ref().map(|(p, _)| p.revision)
    }

    /// The policy held.
    pub fn policy(&self) -> Option<&HostPolicy> {
        self.policy.as_ref().map(|(p, _)| p)
    }

    /// The interfaces known.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// The engine over the policy held.
    pub fn engine(&self) -> Option<&Engine> {
        let (policy, _) = self.policy.as_ref()?;
        self.engine
            .get_or_init(|| Engine::new(&policy.snapshot).ok())
            .as_ref()
    }

    /// Takes a new policy. An inconsistent one is refused and the previous one kept.
    ///
    /// When only instances changed (the usual membership change), the previous state is
    /// updated with those instances' changes instead of being rebuilt: a join in a
    /// 2,000-member group then costs a few set operations, not a new state of the host.
    pub fn set_policy(&mut self, policy: HostPolicy) -> Result<(), AgentError> {
        let invalid = |e: policy::PolicyError| AgentError::Policy(e.to_string());
        let state = match self.policy.take() {
            Some((old, mut state))
                if old.snapshot.groups == policy.snapshot.groups
                    && old.snapshot.prefix_lists == policy.snapshot.prefix_lists
                    && old.snapshot.port_range_lists == policy.snapshot.port_range_lists =>
            {
                let changes = instance_changes(&old.snapshot.instances, &policy.snapshot.instances);
                match self.apply_members(&mut state, &changes) {
                    Ok(()) => state,
                    Err(e) => {
                        // Half-applied: start again from the snapshots.
                        let fresh = State::from_snapshot(&policy.snapshot);
                        if fresh.is_err() {
                            let previous = State::from_snapshot(&old.snapshot).map_err(invalid)?;
                            self.policy = Some((old, previous));
                            return Err(invalid(e));
                        }
                        fresh.map_err(invalid)?
                    }
                }
            }
            previous => match State::from_snapshot(&policy.snapshot) {
                Ok(state) => {
                    self.dirty_members = None;
                    self.members_only = false;
                    state
                }
                Err(e) => {
                    self.policy = previous;
                    return Err(invalid(e));
                }
            },
        };
        self.policy = Some((policy, state));
        self.engine = std::cell::OnceCell::new();
        Ok(())
    }

    /// Takes a change of members alone, as a feed delta of `Instances` carries it: the
    /// members `removed`, and those `changed` (new or updated), the groups and lists as they
    /// were. The state is updated in place, without comparing or copying the rest of the
    /// policy. On an error the policy held stays as it was; the caller asks for the whole
    /// share.
    pub fn update_members(
        &mut self,
        revision: u64,
        removed: Vec<MemberId>,
        changed: Vec<model::Instance>,
    ) -> Result<(), AgentError> {
        let Some((mut policy, mut state)) = self.policy.take() else {
            return Err(AgentError::Policy(
                "a member change without a policy".into(),
            ));
        };
        let gone: BTreeSet<&MemberId> = removed
            .iter()
            .chain(changed.iter().map(|i| &i.id))
            .collect();
        let changes: Vec<policy::Change> = gone
            .iter()
            .filter(|id| state.instance(id).is_ok())
            .map(|id| policy::Change::RemoveInstance((*id).clone()))
            .chain(changed.iter().cloned().map(policy::Change::AddInstance))
            .collect();
        if let Err(e) = self.apply_members(&mut state, &changes) {
            // Half-applied: the policy held is rebuilt as it was.
            let previous = State::from_snapshot(&policy.snapshot);
            self.policy = previous.ok().map(|state| (policy, state));
            return Err(AgentError::Policy(e.to_string()));
        }
        policy.snapshot.instances.retain(|i| !gone.contains(&i.id));
        policy.snapshot.instances.extend(changed);
        policy.revision = revision;
        self.policy = Some((policy, state));
        self.engine = std::cell::OnceCell::new();
        Ok(())
    }

    /// Applies instance changes to `state`, noting the groups whose members they change and
    /// whether any instance attached here is among them. On an error the state is
    /// half-applied and nothing is known of what the table lacks.
    fn apply_members(
        &mut self,
        state: &mut State,
        changes: &[policy::Change],
    ) -> Result<(), policy::PolicyError> {
        let attached: HashSet<&MemberId> = self.attachments.iter().map(|a| &a.instance).collect();
        for c in changes {
            let (id, groups) = match c {
                policy::Change::AddInstance(i) => (&i.id, i.security_groups.clone()),
                policy::Change::RemoveInstance(id) => (
                    id,
                    state
                        .instance(id)
                        .map(|i| i.security_groups.clone())
                        .unwrap_or_default(),
                ),
                _ => continue,
            };
            if attached.contains(id) {
                self.members_only = false;
            }
            if let Some(dirty) = &mut self.dirty_members {
                dirty.extend(groups);
            }
        }
        let applied = changes.iter().try_for_each(|c| state.apply(c));
        if applied.is_err() {
            self.dirty_members = None;
            self.members_only = false;
        }
        applied
    }

    /// Takes the interfaces found; returns whether they changed.
    pub fn set_attachments(&mut self, attachments: Vec<Attachment>) -> bool {
        let changed = attachments != self.attachments;
        self.attachments = attachments;
        self.members_only &= !changed;
        changed
    }

    /// Takes the devices that claim an interface but cannot be attributed (see
    /// `interfaces::Discovery`); returns whether they changed.
    pub fn set_unattributed(&mut self, devices: Vec<(String, String)>) -> bool {
        let changed = devices != self.unattributed;
        self.unattributed = devices;
        self.members_only &= !changed;
        changed
    }

    /// Takes the bound interfaces several devices claim: their tracked connections are
    /// ended ([`Enforcer::contested_addresses`]).
    pub fn set_contested(&mut self, contested: Vec<(MemberId, NicType)>) {
        self.contested = contested;
    }

    /// Takes the VPC overlay devices found; returns whether they changed.
    pub fn set_overlays(&mut self, overlays: Vec<(String, VpcId)>) -> bool {
        let changed = overlays != self.overlays;
        self.overlays = overlays;
        self.members_only &= !changed;
        changed
    }

    /// The conntrack zone of each VPC with an interface or an overlay device here.
    pub fn zones(&self) -> &BTreeMap<VpcId, u16> {
        &self.zones
    }

    /// The devices failed closed because no bound interface explains them.
    pub fn unattributed(&self) -> &[(String, String)] {
        &self.unattributed
    }

    /// Local interface addresses (IPv4 and IPv6), in their zones → (instance, interface
    /// type), for judging tracked flows: the addresses of the interfaces whose devices are
    /// attached here.
    pub fn local_addresses(&self) -> HashMap<crate::conntrack::LocalAddress, (MemberId, NicType)> {
        let attached = self.attachments.iter().map(|a| (&a.instance, a.nic_type));
        self.addresses(attached)
            .map(|(local, member, nic)| (local, (member.clone(), nic)))
            .collect()
    }

    /// The addresses (in their zones) of the interfaces several devices claim: every flow
    /// to or from them is ended, whatever the policy says.
    pub fn contested_addresses(&self) -> HashSet<crate::conntrack::LocalAddress> {
        let contested = self.contested.iter().map(|(m, nic)| (m, *nic));
        self.addresses(contested).map(|(local, ..)| local).collect()
    }

    /// The addresses of interfaces, each in its zone.
    fn addresses<'a>(
        &'a self,
        interfaces: impl Iterator<Item = (&'a MemberId, NicType)> + 'a,
    ) -> impl Iterator<Item = (crate::conntrack::LocalAddress, &'a MemberId, NicType)> + 'a {
        let policy = self.policy.as_ref();
        interfaces.flat_map(move |(member, nic_type)| {
            let Some((p, state)) = policy else {
                return Vec::new();
            };
            let Some(i) = p.instances.iter().find(|i| &i.id == member) else {
                return Vec::new();
            };
            let modelled = state.instance(member).ok();
            let (addresses, zone): (Vec<IpAddr>, u16) = match nic_type {
                NicType::Intranet => {
                    let vpc = modelled.and_then(|i| i.vpc_id.clone());
                    let zone = vpc.and_then(|v| self.zones.get(&v).copied()).unwrap_or(0);
                    // The modelled member's addresses (prefixes included), else the
                    // policy item's primary one.
                    let addresses = match modelled {
                        Some(m) => m.intranet_addresses().collect(),
                        None => vec![IpAddr::V4(i.private_ip)],
                    };
                    (addresses, zone)
                }
                NicType::Internet => (i.public_ip.map(IpAddr::V4).into_iter().collect(), 0),
            };
            addresses
                .into_iter()
                .map(|address| ((zone, address), member, nic_type))
                .collect()
        })
    }

    /// Whether the table differs from what the last transaction left (a hand edit, a flush,
    /// another program). The next [`Enforcer::sync`] then replaces it whole.
    pub fn check_drift(&mut self) -> Result<bool, AgentError> {
        if self.applied.is_none() {
            return Ok(false);
        }
        if let Some(ours) = self.generation {
            let now = self.backend.generation()?;
            if now == Some(ours) {
                // Nothing committed since our transaction: the table is as it left it, and
                // its listing now is the one to compare later changes with.
                if self.fingerprint.is_none() {
                    self.fingerprint = Some(self.listing()?);
                }
                return Ok(false);
            }
            self.generation = now;
        }
        // Someone committed since (maybe to another table): the listing tells. Without one
        // taken in between, what the table should hold cannot be told from it: replaced.
        let drifted = self.fingerprint.is_none() || {
            let now = self.listing()?;
            self.fingerprint.as_ref() != Some(&now)
        };
        if drifted {
            self.applied = None;
            self.members_only = false;
        }
        Ok(drifted)
    }

    /// Makes the table match the policy and interfaces: a diff when the table's content is
    /// known, a full replacement otherwise; both one transaction. When the kernel refuses,
    /// the instances whose part it refuses are found (each checked alone) and failed closed,
    /// and the rest applied; if even that is refused, every instance here is failed closed.
    pub fn sync(&mut self) -> Result<Outcome, AgentError> {
        let start = std::time::Instant::now();
        if let Some(outcome) = self.sync_members(start)? {
            return Ok(outcome);
        }
        let Some((policy, state)) = &self.policy else {
            return Ok(Outcome::default());
        };
        // Chains over groups whose rules did not change since the last transaction, and sets
        // of groups whose members did not, are taken from it rather than rendered again.
        let same_groups = policy.snapshot.groups == self.applied_groups;
        let changed: BTreeSet<&SecurityGroupId> = if same_groups {
            BTreeSet::new()
        } else {
            let old: HashMap<&SecurityGroupId, &GroupPolicy> = self
                .applied_groups
                .iter()
                .map(|g| (&g.group.id, g))
                .collect();
            policy
                .snapshot
                .groups
                .iter()
                .filter(|g| old.get(&g.group.id) != Some(g))
                .map(|g| &g.group.id)
                .collect()
        };
        let dirty = &self.dirty_members;
        let mut desired = match &self.applied {
            Some(previous) => render_reusing(
                state,
                &self.attachments,
                self.rendering,
                previous,
                |g| !changed.contains(g),
                |g| dirty.as_ref().is_some_and(|d| !d.contains(g)),
            ),
            None => render_as(state, &self.attachments, self.rendering),
        };
        for (device, why) in &self.unattributed {
            desired.isolate(device, why);
        }
        let vpc_of = |a: &Attachment| {
            state
                .instance(&a.instance)
                .ok()
                .and_then(|i| i.vpc_id.clone())
        };
        let present: BTreeSet<VpcId> = self
            .attachments
            .iter()
            .filter_map(vpc_of)
            .chain(self.overlays.iter().map(|(_, v)| v.clone()))
            .collect();
        allocate_zones(&mut self.zones, &present);
        desired.zones = zones(state, &self.attachments, &self.overlays, &self.zones);
        for (device, _) in &self.overlays {
            desired.sources.overlay(device);
        }
        if self.applied.as_ref() == Some(&desired) {
            return Ok(Outcome {
                failed: desired.failed,
                ..Outcome::default()
            });
        }
        let script = match &self.applied {
            Some(old) => desired.diff_script(old),
            None => desired.full_script(),
        };
        let full = self.applied.is_none();
        // Counters the transaction deletes, or all of them when it replaces the table, are
        // read first: what they counted since the last read would go with them.
        let deleted: Vec<String> = match &self.applied {
            Some(old) => {
                let keep = desired.counters();
                (old.counters().into_iter())
                    .filter(|c| !keep.contains(c))
                    .map(str::to_string)
                    .collect()
            }
            None => Vec::new(),
        };
        if full || !deleted.is_empty() {
            match self.backend.list_counters() {
                Ok(listing) => self.hits.read(&listing, unix_now()),
                Err(e) => {
                    tracing::warn!(error = %e, "hit counters not read before the transaction")
                }
            }
        }
        // A change of set elements alone (a member joining or leaving) skips `nft`.
        let elements = self
            .applied
            .as_ref()
            .and_then(|old| desired.element_changes(old));
        let applied = match &elements {
            Some(changes) => self.backend.apply_elements(changes, &script),
            None => self.backend.apply(&script),
        };
        let result: Result<bool, AgentError> = match applied {
            Ok(()) => Ok(full),
            Err(refused) => {
                tracing::warn!(%refused, "transaction refused; isolating the instances at fault");
                for a in &self.attachments {
                    let alone = render_as(state, std::slice::from_ref(a), self.rendering);
                    if let Err(e) = self.backend.check(&alone.full_script()) {
                        desired.quarantine(a, &e.to_string());
                    }
                }
                if self.backend.apply(&desired.full_script()).is_err() {
                    for a in &self.attachments {
                        desired.quarantine(a, &refused.to_string());
                    }
                    self.backend.apply(&desired.full_script())?;
                }
                Ok(true)
            }
        };
        let full = result?;
        let enforced_in = start.elapsed();
        if full {
            self.hits.table_replaced();
        } else {
            for name in &deleted {
                self.hits.forget(name);
            }
        }
        let failed = desired.failed.clone();
        if !same_groups {
            self.applied_groups = policy.snapshot.groups.clone();
        }
        if let Err(e) = self.note_transaction() {
            // What the table holds is unknown: the next sync replaces it whole.
            self.applied = None;
            return Err(e);
        }
        self.applied = Some(desired);
        self.dirty_members = Some(BTreeSet::new());
        self.members_only = true;
        Ok(Outcome {
            applied: true,
            full,
            failed,
            enforced_in,
        })
    }

    /// Notes what the table holds after a transaction of ours: its generation when the
    /// backend reads it (cheap; the listing is taken at the next drift check), its listing
    /// otherwise. Either way off the path from a change to its enforcement, which the
    /// listing of a big table (tens of milliseconds) would lengthen for the next change.
    fn note_transaction(&mut self) -> Result<(), AgentError> {
        self.generation = self.backend.generation()?;
        self.fingerprint = match self.generation {
            Some(_) => None,
            None => Some(self.listing()?),
        };
        Ok(())
    }

    /// The kernel's listing of the tables without counter values, which packets change.
    fn listing(&mut self) -> Result<String, AgentError> {
        Ok(nft::counters::stateless(&self.backend.list()?))
    }

    /// Reads the kernel's hit counters into the pending counts (see [`crate::hits`]).
    pub fn read_hits(&mut self) -> Result<(), AgentError> {
        let listing = self.backend.list_counters()?;
        self.hits.read(&listing, unix_now());
        Ok(())
    }

    /// The hit counts not yet delivered.
    pub fn hits(&mut self) -> &mut crate::hits::Hits {
        &mut self.hits
    }

    /// [`Enforcer::sync`] when only members of groups changed, none attached here (the
    /// usual change on a host, which must not cost a pass over every interface): those
    /// groups' sets are rendered again and their elements changed, nothing else. `None`
    /// when that is not the change, or the kernel refused it (the full sync then finds
    /// out why).
    fn sync_members(&mut self, start: std::time::Instant) -> Result<Option<Outcome>, AgentError> {
        let (Some((_, state)), Some(applied), Some(dirty), true, Rendering::Linear) = (
            &self.policy,
            &mut self.applied,
            &self.dirty_members,
            self.members_only,
            self.rendering,
        ) else {
            return Ok(None);
        };
        let failed = applied.failed.clone();
        let sets = applied.changed_member_sets(state, dirty);
        if sets.is_empty() {
            self.dirty_members = Some(BTreeSet::new());
            return Ok(Some(Outcome {
                failed,
                ..Outcome::default()
            }));
        }
        let applied_now = match applied.set_changes(&sets) {
            (Some(changes), script) => self.backend.apply_elements(&changes, &script),
            (None, script) => self.backend.apply(&script),
        };
        if let Err(refused) = applied_now {
            tracing::warn!(%refused, "set update refused; syncing the whole table");
            self.members_only = false;
            return Ok(None);
        }
        let enforced_in = start.elapsed();
        applied.replace_sets(sets);
        self.note_transaction()?;
        self.dirty_members = Some(BTreeSet::new());
        Ok(Some(Outcome {
            applied: true,
            full: false,
            failed,
            enforced_in,
        }))
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
