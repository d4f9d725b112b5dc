//! Which members of the request's region a read takes, as conditions on the instances and
//! network interfaces of a query: the one place such a scope is spelled in SQL, so that
//! every read of members (listings, an account's share, the region) is driven by the index
//! of what it asks for.

use model::{AccountId, InstanceId, SecurityGroupId};

use crate::sql::Value;

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
    /// One instance of any account, with the secondary interfaces attached to it.
    Bundle(&'a InstanceId),
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
            Scope::Bundle(i) => params.push(Value::from(i.as_str())),
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
            Scope::Bundle(_) => "i.region = ?1 AND i.id = ?2",
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
            Scope::Bundle(_) => "n.region = ?1 AND n.instance_id = ?2",
        }
    }
}
