//! Network interfaces (ENIs) and their placement on hosts.
//!
//! Every instance has a primary interface, created and deleted with it; its groups are the
//! instance's (DESIGN.md §3). **Placement** (which host an interface is bound to) is the
//! operator's alone: only an account created as an operator (`stockade account create
//! --operator`) may set or read it, through Stockade's operator actions, because whoever
//! chooses placement chooses which host programs an interface's rules, and a tenant able to
//! place its own interfaces next to another's is one step from deciding that tenant's
//! verdicts. The agent finds the device of an interface by the interface id the operator's
//! provisioning labelled it with, never by address.

use model::{AccountId, HostId, InstanceId, NetworkInterfaceId};
use serde_json::json;

use crate::sql::{args, Db};
use crate::{new_id_body, now, random_string, ControlError, Result, Tx};

/// Primary (created with its instance) or secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceKind {
    /// The instance's first interface.
    Primary,
    /// Another interface of the instance.
    Secondary,
}

impl InterfaceKind {
    /// The wire form (`Type` in ECS answers).
    pub fn as_wire(self) -> &'static str {
        match self {
            InterfaceKind::Primary => "Primary",
            InterfaceKind::Secondary => "Secondary",
        }
    }
}

/// A stored network interface, as its owner sees it (no placement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterfaceRecord {
    /// `eni-...`
    pub id: NetworkInterfaceId,
    /// Primary or secondary.
    pub kind: InterfaceKind,
    /// `MacAddress`.
    pub mac: String,
}

/// Where an interface is bound, as the operator and the agent feed see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The interface.
    pub interface: NetworkInterfaceId,
    /// Its instance.
    pub instance: InstanceId,
    /// Its owner.
    pub owner: AccountId,
    /// The host it is bound to, if any.
    pub host: Option<HostId>,
}

/// A MAC address in Alibaba Cloud's block (`00:16:3e`), as ECS hands out.
fn new_mac() -> String {
    let hex = random_string(b"0123456789abcdef", 6);
    format!("00:16:3e:{}:{}:{}", &hex[0..2], &hex[2..4], &hex[4..6])
}

/// Inserts the primary interface of an instance (shared by creation and the backfill of
/// stores written before interfaces existed).
pub(crate) fn insert_primary(
    db: &dyn Db,
    instance: &InstanceId,
    owner: AccountId,
    region: &str,
) -> Result<NetworkInterfaceId> {
    let id = NetworkInterfaceId::from_body(&new_id_body())?;
    db.execute(
        "INSERT INTO network_interfaces (id, account_id, region, instance_id, kind, mac, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![
            id.as_str(),
            owner.get() as i64,
            region,
            instance.as_str(),
            InterfaceKind::Primary.as_wire(),
            new_mac(),
            now()
        ],
    )?;
    Ok(id)
}

impl Tx<'_> {
    /// Refuses unless the caller is an operator account.
    pub fn require_operator(&self) -> Result<()> {
        let operator = self
            .db
            .query_opt(
                "SELECT operator FROM accounts WHERE id = ?1",
                args![self.ctx.account.get() as i64],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        if operator == 1 {
            Ok(())
        } else {
            Err(ControlError::OperatorOnly)
        }
    }

    /// Removes the interfaces of an instance being deleted.
    pub(crate) fn delete_interfaces_of(&self, instance: &InstanceId) -> Result<()> {
        self.db.execute(
            "DELETE FROM network_interfaces WHERE instance_id = ?1",
            args![instance.as_str()],
        )?;
        Ok(())
    }

    /// Binds an interface of any account in the region to `host`, or unbinds it (`None`).
    /// Operator only.
    pub fn place_interface(&self, id: &NetworkInterfaceId, host: Option<&HostId>) -> Result<()> {
        self.require_operator()?;
        let changed = self.db.execute(
            "UPDATE network_interfaces SET host = ?3 WHERE id = ?1 AND region = ?2",
            args![id.as_str(), &self.ctx.region, host.map(HostId::as_str)],
        )?;
        if changed == 0 {
            return Err(ControlError::NetworkInterfaceNotFound(id.clone()));
        }
        self.log(
            "PlaceNetworkInterface",
            id.as_str(),
            json!({"HostId": host.map(HostId::as_str)}),
        )
    }

    /// The region's interfaces with their placement, oldest first: all of them, or those
    /// bound to `host`, or the one `only`. Operator only.
    pub fn placements(
        &self,
        host: Option<&HostId>,
        only: Option<&NetworkInterfaceId>,
    ) -> Result<Vec<Placement>> {
        self.require_operator()?;
        self.placements_where(host, only)
    }

    /// The interfaces bound to `host`: the agent feed's question (the server authenticates
    /// the feed with the agent token, not an account).
    pub fn host_interfaces(&self, host: &HostId) -> Result<Vec<Placement>> {
        self.placements_where(Some(host), None)
    }

    fn placements_where(
        &self,
        host: Option<&HostId>,
        only: Option<&NetworkInterfaceId>,
    ) -> Result<Vec<Placement>> {
        self.db
            .query(
                "SELECT id, instance_id, account_id, host FROM network_interfaces
                 WHERE region = ?1 AND (CAST(?2 AS TEXT) IS NULL OR host = ?2)
                   AND (CAST(?3 AS TEXT) IS NULL OR id = ?3)
                 ORDER BY seq",
                args![
                    &self.ctx.region,
                    host.map(HostId::as_str),
                    only.map(NetworkInterfaceId::as_str)
                ],
            )?
            .iter()
            .map(|r| {
                Ok(Placement {
                    interface: r.parsed(0)?,
                    instance: r.parsed(1)?,
                    owner: AccountId::new(r.int(2)? as u64),
                    host: r.opt_text(3)?.map(|h| h.parse()).transpose()?,
                })
            })
            .collect()
    }
}

/// Gives every instance without an interface its primary one (stores written before
/// interfaces existed). Looked for in a read first by the caller.
pub(crate) fn backfill_primary(db: &dyn Db) -> Result<()> {
    let rows = db.query(
        "SELECT i.id, i.account_id, i.region FROM instances i
         WHERE NOT EXISTS (SELECT 1 FROM network_interfaces n WHERE n.instance_id = i.id)
         ORDER BY i.seq",
        args![],
    )?;
    for r in rows {
        let instance: InstanceId = r.parsed(0)?;
        insert_primary(db, &instance, AccountId::new(r.int(1)? as u64), &r.text(2)?)?;
    }
    Ok(())
}
