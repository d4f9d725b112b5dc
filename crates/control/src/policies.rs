//! The policy the engine takes, read from the store: the whole region's (what the agent
//! feed needs; after a commit, made from the last one by what the commit touched) or one
//! account's share of it (what that account's analysis needs), each read by queries over
//! what it holds only, so an account's questions cost what its own share costs, however
//! much another account stores.

use std::collections::{BTreeMap, BTreeSet};

use model::{InstanceId, MemberId, Peer, SecurityGroupId};

use crate::scope::Scope;
use crate::sql::args;
use crate::{GroupRecord, InstanceRecord, Result, Tx};

/// What a change-log row is about, as far as policies go.
enum Subject {
    Group(SecurityGroupId),
    Instance(InstanceId),
    Interface(model::NetworkInterfaceId),
    PrefixList(model::PrefixListId),
    PortRangeList(model::PortRangeListId),
    /// Nothing a policy holds: a VPC, a vSwitch, an agent token, or a commit that logged
    /// nothing of its own (every command that changes a policy item logs it: the invariant
    /// the incremental reads rest on).
    Inert,
    /// Something this module does not know: whoever reads must read whole.
    Unknown,
}

impl Subject {
    fn of(kind: &str, subject: &str) -> Subject {
        if let Ok(g) = subject.parse() {
            Subject::Group(g)
        } else if let Ok(i) = subject.parse() {
            Subject::Instance(i)
        } else if let Ok(n) = subject.parse() {
            Subject::Interface(n)
        } else if let Ok(l) = subject.parse() {
            Subject::PrefixList(l)
        } else if let Ok(l) = subject.parse() {
            Subject::PortRangeList(l)
        } else if subject.parse::<model::VpcId>().is_ok()
            || subject.parse::<model::VSwitchId>().is_ok()
            || kind.ends_with("AgentToken")
            || kind == "Write"
        {
            Subject::Inert
        } else {
            Subject::Unknown
        }
    }
}

/// An instance as the engine takes it: its primary interface's addresses, its groups.
fn member(i: InstanceRecord) -> model::Instance {
    let primary = i.network_interfaces.first();
    model::Instance {
        id: i.id.into(),
        attached_to: None,
        owner: i.owner,
        vpc_id: i.vpc_id,
        private_ip: i.private_ip,
        secondary_ips: primary.map(|n| n.secondary_ips.clone()).unwrap_or_default(),
        ipv4_prefixes: primary.map(|n| n.ipv4_prefixes.clone()).unwrap_or_default(),
        ipv6: i.ipv6,
        public_ip: i.public_ip,
        source_dest_check: primary.is_none_or(|n| n.source_dest_check),
        security_groups: i.security_groups,
    }
}

/// A group as the engine takes it, with `permissions`.
fn group_policy(g: GroupRecord, permissions: Vec<model::Permission>) -> policy::GroupPolicy {
    policy::GroupPolicy {
        group: model::SecurityGroup {
            id: g.id,
            owner: g.owner,
            group_type: g.group_type,
            vpc_id: g.vpc_id,
            inner_access_policy: g.inner_access_policy,
        },
        permissions: permissions.into(),
    }
}

/// The lists of one kind (what `of` reads from a rule) the rules of `new` name, `before`
/// being those `old`'s rules named: only the `touched` groups change which, so only when
/// their old rules named a list their new ones do not is every rule looked at.
fn named<L: Ord>(
    old: &policy::Snapshot,
    new: &policy::Snapshot,
    touched: &BTreeSet<SecurityGroupId>,
    before: impl Iterator<Item = L>,
    of: impl Fn(&model::Permission) -> Option<L>,
) -> BTreeSet<L> {
    let rules = |s: &policy::Snapshot, all: bool| -> BTreeSet<L> {
        (s.groups.iter())
            .filter(|g| all || touched.contains(&g.group.id))
            .flat_map(|g| g.permissions.iter())
            .filter_map(&of)
            .collect()
    };
    let now = rules(new, false);
    if rules(old, false).is_subset(&now) {
        now.into_iter().chain(before).collect()
    } else {
        rules(new, true)
    }
}

/// Keeps the `lists` that are `named` and not `changed`, reads the other named ones, and
/// notes in `dirty` what it read and what changed.
fn refresh_lists<L, Id: Ord + Clone + ToString>(
    lists: &mut Vec<L>,
    id: impl Fn(&L) -> &Id,
    (named, changed): (&BTreeSet<Id>, &BTreeSet<Id>),
    mut read: impl FnMut(&Id) -> Result<Option<L>>,
    dirty: &mut std::collections::HashSet<String>,
) -> Result<()> {
    lists.retain(|l| named.contains(id(l)) && !changed.contains(id(l)));
    let held: BTreeSet<Id> = lists.iter().map(|l| id(l).clone()).collect();
    for missing in named.difference(&held) {
        dirty.insert(missing.to_string());
        lists.extend(read(missing)?);
    }
    dirty.extend(changed.iter().map(ToString::to_string));
    Ok(())
}

impl Tx<'_> {
    /// The whole policy of the request's region, every account included (group references
    /// cross accounts), as the policy engine takes it.
    pub fn region_snapshot(&self) -> Result<policy::Snapshot> {
        let records: Vec<GroupRecord> = self
            .db
            .query(
                "SELECT * FROM security_groups WHERE region = ?1 ORDER BY seq",
                &Scope::Region.params(&self.ctx.region),
            )?
            .iter()
            .map(|r| crate::groups::read_group(r).map(|(g, _)| g))
            .collect::<Result<_>>()?;
        let mut rules = self.region_rules(&records)?;
        let groups = records
            .into_iter()
            .map(|g| {
                let permissions = rules.remove(&g.id).unwrap_or_default();
                group_policy(g, permissions)
            })
            .collect();
        let members = self.members_in(Scope::Region)?;
        self.with_lists(groups, members)
    }

    /// The caller's share of the region's policy: its groups and its members' groups, with
    /// their rules; the groups those rules reference, without theirs; every member of any
    /// of these (of any account, its group list cut to them); the lists the rules name.
    /// Each part is read by the groups or members it is about, so the cost is the share's.
    ///
    /// Everything [`policy::Snapshot::closure`] at the caller's members holds is here, so
    /// the closure of this is the closure of the region's (checked over random fleets in
    /// `server/tests/tenancy.rs`); it also holds the caller's groups without members, which
    /// the audit judges.
    pub fn account_policy(&self) -> Result<policy::Snapshot> {
        let account = self.ctx.account;
        let mut members: BTreeMap<MemberId, model::Instance> = self
            .members_in(Scope::Owner(account))?
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        let mut own: BTreeSet<SecurityGroupId> = self
            .db
            .query(
                "SELECT id FROM security_groups WHERE region = ?1 AND account_id = ?2",
                &Scope::Owner(account).params(&self.ctx.region),
            )?
            .iter()
            .map(|r| r.parsed(0))
            .collect::<Result<_>>()?;
        own.extend(
            members
                .values()
                .flat_map(|m| m.security_groups.iter().cloned()),
        );
        let mut groups = Vec::with_capacity(own.len());
        let mut kept = own.clone();
        for id in &own {
            let Some(g) = self.any_group(id)? else {
                continue;
            };
            let permissions: Vec<model::Permission> =
                self.rules(&g)?.into_iter().map(|r| r.permission).collect();
            kept.extend(permissions.iter().filter_map(|p| match &p.peer {
                Peer::Group(r) => Some(r.id.clone()),
                _ => None,
            }));
            groups.push(group_policy(g, permissions));
        }
        for id in kept.difference(&own) {
            if let Some(g) = self.any_group(id)? {
                groups.push(group_policy(g, Vec::new()));
            }
        }
        for id in &kept {
            for m in self.members_in(Scope::Group(id))? {
                members.entry(m.id.clone()).or_insert(m);
            }
        }
        let members = members
            .into_values()
            .map(|mut m| {
                m.security_groups.retain(|g| kept.contains(g));
                m
            })
            .collect();
        groups.sort_by(|a, b| a.group.id.cmp(&b.group.id));
        self.with_lists(groups, members)
    }

    /// The region's policy now, made from `old`, the policy at revision `since`: only what
    /// the change log names since then is read again (a group with its rules and its
    /// members, old and new; an instance with its attached interfaces; an interface's
    /// instance; a list), so a commit costs the agent feed what it touched, not the region.
    /// Answers also what it read again (for [`policy::delta::RegionHashes::refreshed`]).
    /// `None` when a whole read is due: a subject it does not know, or more of them than a
    /// whole read costs. (Items keep their places; new ones go last.)
    pub fn region_snapshot_after(
        &self,
        old: &policy::Snapshot,
        since: u64,
    ) -> Result<Option<(policy::Snapshot, policy::delta::Dirty)>> {
        // Past 2,048 distinct subjects one whole read is cheaper.
        let Some(subjects) = self.subjects_since(since, 2048)? else {
            return Ok(None);
        };
        let (mut groups, mut bundles) = (BTreeSet::new(), BTreeSet::new());
        let mut lists = (BTreeSet::new(), BTreeSet::new());
        for subject in subjects {
            match subject {
                Subject::Group(g) => {
                    groups.insert(g);
                }
                Subject::Instance(i) => {
                    bundles.insert(i);
                }
                Subject::Interface(n) => {
                    // An interface is its instance's bundle, where it is attached now and was.
                    bundles.extend(self.attached_to(&n)?);
                    let was = MemberId::Interface(n);
                    if let Some(m) = old.instances.iter().find(|m| m.id == was) {
                        bundles.extend(m.attached_to.iter().cloned());
                    }
                }
                Subject::PrefixList(l) => {
                    lists.0.insert(l);
                }
                Subject::PortRangeList(l) => {
                    lists.1.insert(l);
                }
                Subject::Inert => {}
                Subject::Unknown => return Ok(None),
            }
        }
        // (A group's subjects never change who is in it: joins and leaves name the instance
        // or interface, and a group with members cannot be deleted.)
        let bundle_of = |m: &model::Instance| match (&m.id, &m.attached_to) {
            (MemberId::Instance(i), _) => Some(i.clone()),
            (_, at) => at.clone(),
        };
        let mut dirty = policy::delta::Dirty::default();
        let mut new = old.clone();
        // Groups: re-read, replaced in place, gone ones dropped, new ones last.
        let mut fresh: BTreeMap<SecurityGroupId, policy::GroupPolicy> = BTreeMap::new();
        for id in &groups {
            dirty.groups.insert(id.to_string());
            if let Some(g) = self.any_group(id)? {
                let permissions = self.rules(&g)?.into_iter().map(|r| r.permission).collect();
                fresh.insert(id.clone(), group_policy(g, permissions));
            }
        }
        new.groups.retain_mut(|g| match fresh.remove(&g.group.id) {
            Some(f) => {
                *g = f;
                true
            }
            None => !groups.contains(&g.group.id),
        });
        new.groups.extend(fresh.into_values());
        // Members: each bundle's items replaced by what it holds now.
        let mut fresh: BTreeMap<MemberId, model::Instance> = BTreeMap::new();
        for i in &bundles {
            for m in self.members_in(Scope::Bundle(i))? {
                fresh.insert(m.id.clone(), m);
            }
        }
        new.instances.retain_mut(|m| {
            let touched = bundle_of(m).is_some_and(|b| bundles.contains(&b));
            if touched {
                dirty.members.insert(m.id.to_string());
            }
            match fresh.remove(&m.id) {
                Some(f) => {
                    *m = f;
                    true
                }
                None => !touched,
            }
        });
        dirty.members.extend(fresh.keys().map(ToString::to_string));
        new.instances.extend(fresh.into_values());
        // Lists: those the rules name now; re-read where changed or newly named.
        let prefix_of = |p: &model::Permission| match &p.peer {
            Peer::PrefixList(l) => Some(l.clone()),
            _ => None,
        };
        let ports_of = |p: &model::Permission| p.port_list.clone();
        let held = new.prefix_lists.iter().map(|l| l.id.clone());
        let prefix = named(old, &new, &groups, held, prefix_of);
        let held = new.port_range_lists.iter().map(|l| l.id.clone());
        let ports = named(old, &new, &groups, held, ports_of);
        refresh_lists(
            &mut new.prefix_lists,
            |l| &l.id,
            (&prefix, &lists.0),
            |id| self.prefix_list_policy(id),
            &mut dirty.prefix_lists,
        )?;
        refresh_lists(
            &mut new.port_range_lists,
            |l| &l.id,
            (&ports, &lists.1),
            |id| self.port_range_list_policy(id),
            &mut dirty.port_range_lists,
        )?;
        Ok(Some((new, dirty)))
    }

    /// Whether a commit since revision `since` may have changed `share`, the caller's share
    /// then (`account_policy`): whether the change log names one of its items, a member of
    /// the caller's, or an instance or interface now in one of its groups. When not, the
    /// share (and the engine compiled over it) stands: another account's writes cost the
    /// caller's questions one indexed look per subject, not a read of the share. Errs on
    /// the side of `true` (a subject it does not know; more subjects than are worth
    /// checking).
    pub fn share_touched(&self, share: &policy::Snapshot, since: u64) -> Result<bool> {
        let Some(subjects) = self.subjects_since(since, 256)? else {
            return Ok(true);
        };
        let groups: BTreeSet<&str> = share.groups.iter().map(|g| g.group.id.as_str()).collect();
        let held = |id: &str| {
            share.instances.iter().any(|m| {
                m.id.as_str() == id || m.attached_to.as_ref().is_some_and(|i| i.as_str() == id)
            })
        };
        let account = self.ctx.account.get() as i64;
        // Whether an instance or interface is the caller's or in one of the share's groups.
        let joins = |sql: &str, id: &str| -> Result<bool> {
            for r in self.db.query(sql, args![id])? {
                if r.int(0)? == account || groups.contains(r.text(1)?.as_str()) {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        for subject in subjects {
            let touched = match subject {
                Subject::Group(g) => groups.contains(g.as_str()),
                Subject::Instance(i) => {
                    held(i.as_str())
                        || joins(
                            "SELECT i.account_id, COALESCE(m.group_id, '') FROM instances i
                             LEFT JOIN memberships m ON m.instance_id = i.id WHERE i.id = ?1
                             UNION ALL
                             SELECT n.account_id, im.group_id FROM network_interfaces n
                             JOIN interface_memberships im ON im.interface_id = n.id
                             WHERE n.instance_id = ?1",
                            i.as_str(),
                        )?
                }
                Subject::Interface(n) => {
                    held(n.as_str())
                        || joins(
                            "SELECT n.account_id, '' FROM network_interfaces n WHERE n.id = ?1
                             UNION ALL
                             SELECT n.account_id, im.group_id FROM network_interfaces n
                             JOIN interface_memberships im ON im.interface_id = n.id
                             WHERE n.id = ?1",
                            n.as_str(),
                        )?
                        || self.attached_to(&n)?.is_some_and(|i| held(i.as_str()))
                }
                Subject::PrefixList(l) => share.prefix_lists.iter().any(|x| x.id == l),
                Subject::PortRangeList(l) => share.port_range_lists.iter().any(|x| x.id == l),
                Subject::Inert => false,
                Subject::Unknown => true,
            };
            if touched {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// What the change log names since revision `since`, each once; `None` past `most`
    /// (one whole read is then cheaper than looking at each).
    fn subjects_since(&self, since: u64, most: usize) -> Result<Option<Vec<Subject>>> {
        let rows = self.db.query(
            "SELECT DISTINCT kind, subject FROM change_log WHERE revision > ?1",
            args![since as i64],
        )?;
        if rows.len() > most {
            return Ok(None);
        }
        rows.iter()
            .map(|r| Ok(Subject::of(&r.text(0)?, &r.text(1)?)))
            .collect::<Result<_>>()
            .map(Some)
    }

    /// The instance an interface of the region is attached to, if any.
    fn attached_to(&self, n: &model::NetworkInterfaceId) -> Result<Option<InstanceId>> {
        self.db
            .query_opt(
                "SELECT instance_id FROM network_interfaces WHERE id = ?1 AND region = ?2",
                args![n.as_str(), &self.ctx.region],
            )?
            .and_then(|r| r.opt_text(0).transpose())
            .map(|i| Ok(i?.parse()?))
            .transpose()
    }

    /// A prefix list as the engine takes it, if the region holds it.
    fn prefix_list_policy(&self, id: &model::PrefixListId) -> Result<Option<policy::PrefixList>> {
        Ok(self
            .prefix_lists_where(Some(id), None)?
            .pop()
            .map(|l| policy::PrefixList {
                id: l.id,
                cidrs: l.entries.into_iter().map(|(net, _)| net).collect(),
            }))
    }

    /// A port range list as the engine takes it, if the region holds it.
    fn port_range_list_policy(
        &self,
        id: &model::PortRangeListId,
    ) -> Result<Option<policy::PortRangeList>> {
        Ok(self
            .port_range_lists_where(Some(id), None)?
            .pop()
            .map(|l| policy::PortRangeList {
                id: l.id,
                ranges: l.entries.into_iter().map(|(r, _)| r).collect(),
            }))
    }

    /// The members in `scope`: instances, then attached secondary interfaces.
    fn members_in(&self, scope: Scope) -> Result<Vec<model::Instance>> {
        let mut out: Vec<model::Instance> = self
            .instances_where(scope)?
            .into_iter()
            .map(member)
            .collect();
        out.extend(self.secondary_members(scope)?);
        Ok(out)
    }

    /// A policy of `groups` and `members`, with the prefix and port range lists its rules
    /// name, read by id: a list no rule names costs nothing, however many entries it holds.
    fn with_lists(
        &self,
        groups: Vec<policy::GroupPolicy>,
        instances: Vec<model::Instance>,
    ) -> Result<policy::Snapshot> {
        let rules = || groups.iter().flat_map(|g| g.permissions.iter());
        let prefix: BTreeSet<&model::PrefixListId> = rules()
            .filter_map(|p| match &p.peer {
                Peer::PrefixList(l) => Some(l),
                _ => None,
            })
            .collect();
        let ports: BTreeSet<&model::PortRangeListId> =
            rules().filter_map(|p| p.port_list.as_ref()).collect();
        let mut prefix_lists = Vec::with_capacity(prefix.len());
        for id in prefix {
            prefix_lists.extend(self.prefix_list_policy(id)?);
        }
        let mut port_range_lists = Vec::with_capacity(ports.len());
        for id in ports {
            port_range_lists.extend(self.port_range_list_policy(id)?);
        }
        Ok(policy::Snapshot {
            groups,
            instances,
            prefix_lists,
            port_range_lists,
        })
    }
}
