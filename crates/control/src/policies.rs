//! The policy the engine takes, read from the store: the whole region's (what agents and
//! the preview of an operator's change need) or one account's share of it (what that
//! account's analysis needs), each read by queries over what it holds only, so an
//! account's questions cost what its own share costs, however much another account stores.

use std::collections::{BTreeMap, BTreeSet};

use model::{AccountId, InstanceId, MemberId, Peer, SecurityGroupId};

use crate::sql::Value;
use crate::{GroupRecord, InstanceRecord, Result, Tx};

/// Which members of the request's region a read takes. Each is a condition on the
/// instances (`i`) or network interfaces (`n`) of a query, its parameters from `?2`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// Every one.
    Region,
    /// An account's.
    Owner(AccountId),
    /// One instance of an account (with its interfaces).
    Instance(&'a InstanceId, AccountId),
    /// The members of a group, of any account.
    Group(&'a SecurityGroupId),
}

impl Scope<'_> {
    /// The parameters: the region (`?1`), then the scope's.
    pub(crate) fn params(&self, region: &str) -> Vec<Value> {
        let mut params = vec![Value::from(region)];
        match self {
            Scope::Region => {}
            Scope::Owner(a) => params.push(Value::from(a.get() as i64)),
            Scope::Instance(i, a) => {
                params.push(Value::from(i.as_str()));
                params.push(Value::from(a.get() as i64));
            }
            Scope::Group(g) => params.push(Value::from(g.as_str())),
        }
        params
    }

    /// The condition on instances `i`.
    pub(crate) fn on_instances(&self) -> &'static str {
        match self {
            Scope::Region => "i.region = ?1",
            Scope::Owner(_) => "i.region = ?1 AND i.account_id = ?2",
            Scope::Instance(..) => "i.region = ?1 AND i.id = ?2 AND i.account_id = ?3",
            // `|| ''` keeps SQLite's planner (which has no statistics) from walking the
            // region's index: a group's members are found through the group's own.
            Scope::Group(_) => {
                "i.region || '' = ?1 AND i.id IN (SELECT instance_id FROM memberships WHERE group_id = ?2)"
            }
        }
    }

    /// The condition on network interfaces `n` as members of their own (secondary ones).
    pub(crate) fn on_interfaces(&self) -> &'static str {
        match self {
            Scope::Region => "n.region = ?1",
            Scope::Owner(_) => "n.region = ?1 AND n.account_id = ?2",
            Scope::Instance(..) => "n.region = ?1 AND n.instance_id = ?2 AND n.account_id = ?3",
            Scope::Group(_) => {
                "n.region || '' = ?1 AND n.id IN (SELECT interface_id FROM interface_memberships WHERE group_id = ?2)"
            }
        }
    }
}

/// An instance as the engine takes it: its primary interface's addresses, its groups.
fn member(i: InstanceRecord) -> model::Instance {
    model::Instance {
        id: i.id.into(),
        attached_to: None,
        owner: i.owner,
        vpc_id: i.vpc_id,
        private_ip: i.private_ip,
        secondary_ips: i
            .network_interfaces
            .first()
            .map(|n| n.secondary_ips.clone())
            .unwrap_or_default(),
        ipv6: i.ipv6,
        public_ip: i.public_ip,
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
        permissions,
    }
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
        let rules = || groups.iter().flat_map(|g| &g.permissions);
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
            prefix_lists.extend(
                self.prefix_lists_where(Some(id), None)?
                    .into_iter()
                    .map(|l| policy::PrefixList {
                        id: l.id,
                        cidrs: l.entries.into_iter().map(|(net, _)| net).collect(),
                    }),
            );
        }
        let mut port_range_lists = Vec::with_capacity(ports.len());
        for id in ports {
            port_range_lists.extend(
                self.port_range_lists_where(Some(id), None)?
                    .into_iter()
                    .map(|l| policy::PortRangeList {
                        id: l.id,
                        ranges: l.entries.into_iter().map(|(r, _)| r).collect(),
                    }),
            );
        }
        Ok(policy::Snapshot {
            groups,
            instances,
            prefix_lists,
            port_range_lists,
        })
    }
}
