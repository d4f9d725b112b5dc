//! Prefix lists: named sets of CIDR blocks that rules use as their peer
//! (`SourcePrefixListId` / `DestPrefixListId`). The data plane holds each as one named set,
//! so an entry change is a set update and no chain is rewritten.
//!
//! As ECS counts them, a rule naming a list counts as `MaxEntries` rules against its group's
//! rule limit; a list used by a rule cannot be deleted. Lists are the owner's: another
//! account's list answers as a missing one.

use ipnet::IpNet;
use model::{PrefixListId, SecurityGroupId};
use serde_json::json;

use crate::limits::PREFIX_LIST_ENTRIES;
use crate::lists::{check_entries, ListTables};

const TABLES: ListTables = ListTables {
    table: "prefix_lists",
    entries: "prefix_list_entries",
    tag_type: "prefixlist",
    rule_column: "peer_prefix_list_id",
};
use crate::sql::args;
use crate::{new_id_body, now, ControlError, Result, Tx};

/// IPv4 or IPv6 (`AddressFamily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    /// `IPv4`.
    V4,
    /// `IPv6`.
    V6,
}

impl AddressFamily {
    /// From the wire (`IPv4` / `IPv6`).
    pub fn parse(s: &str) -> Option<AddressFamily> {
        match s {
            "IPv4" => Some(AddressFamily::V4),
            "IPv6" => Some(AddressFamily::V6),
            _ => None,
        }
    }

    /// The wire form.
    pub fn as_wire(self) -> &'static str {
        match self {
            AddressFamily::V4 => "IPv4",
            AddressFamily::V6 => "IPv6",
        }
    }

    fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (AddressFamily::V4, IpNet::V4(_)) | (AddressFamily::V6, IpNet::V6(_))
        )
    }
}

/// A stored prefix list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixListRecord {
    /// `pl-...`
    pub id: PrefixListId,
    /// `PrefixListName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `AddressFamily`.
    pub family: AddressFamily,
    /// `MaxEntries`.
    pub max_entries: usize,
    /// `CreationTime`.
    pub created_at: String,
    /// Entries: CIDR block and description, in CIDR order.
    pub entries: Vec<(IpNet, String)>,
    /// The groups whose rules name it.
    pub associations: Vec<SecurityGroupId>,
}

/// `CreatePrefixList` after parameter parsing.
#[derive(Debug, Clone)]
pub struct CreatePrefixList {
    /// `PrefixListName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `AddressFamily`.
    pub family: AddressFamily,
    /// `MaxEntries`.
    pub max_entries: usize,
    /// `Entry.N.Cidr` / `Entry.N.Description`.
    pub entries: Vec<(IpNet, String)>,
}

impl Tx<'_> {
    /// `CreatePrefixList`.
    pub fn create_prefix_list(&self, req: &CreatePrefixList) -> Result<PrefixListId> {
        if !(1..=PREFIX_LIST_ENTRIES).contains(&req.max_entries) {
            return Err(ControlError::ListMaxEntries(
                req.max_entries,
                PREFIX_LIST_ENTRIES,
            ));
        }
        self.check_quota(
            "prefix_lists",
            1,
            self.limits.prefix_lists_per_region,
            ControlError::PrefixListQuota,
        )?;
        let id = PrefixListId::from_body(&new_id_body())?;
        self.db.execute(
            "INSERT INTO prefix_lists (id, account_id, region, name, description, address_family, max_entries, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            args![
                id.as_str(),
                self.ctx.account.get() as i64,
                &self.ctx.region,
                &req.name,
                &req.description,
                req.family.as_wire(),
                req.max_entries as i64,
                now()
            ],
        )?;
        self.change_entries(&id, req.family, req.max_entries, &[], &req.entries, &[])?;
        self.log("CreatePrefixList", id.as_str(), json!({}))?;
        Ok(id)
    }

    /// Adds and removes entries, all or none: removed ones must exist, added ones be new,
    /// of the list's family, within `MaxEntries` in total.
    fn change_entries(
        &self,
        id: &PrefixListId,
        family: AddressFamily,
        max: usize,
        existing: &[(IpNet, String)],
        add: &[(IpNet, String)],
        remove: &[IpNet],
    ) -> Result<()> {
        check_entries(
            existing,
            add,
            remove,
            max,
            |net| family.holds(net) && net.trunc() == *net,
            ControlError::PrefixListFull,
        )?;
        for net in remove {
            self.db.execute(
                "DELETE FROM prefix_list_entries WHERE list_id = ?1 AND cidr = ?2",
                args![id.as_str(), net.to_string()],
            )?;
        }
        for (net, description) in add {
            self.db.execute(
                "INSERT INTO prefix_list_entries (list_id, cidr, description) VALUES (?1, ?2, ?3)",
                args![id.as_str(), net.to_string(), description],
            )?;
        }
        Ok(())
    }

    /// `ModifyPrefixList`: name, description, `AddEntry.N`, `RemoveEntry.N`.
    pub fn modify_prefix_list(
        &self,
        id: &PrefixListId,
        name: Option<String>,
        description: Option<String>,
        add: &[(IpNet, String)],
        remove: &[IpNet],
    ) -> Result<()> {
        let list = self.prefix_list(id)?;
        self.change_entries(
            id,
            list.family,
            list.max_entries,
            &list.entries,
            add,
            remove,
        )?;
        self.db.execute(
            "UPDATE prefix_lists SET name = ?2, description = ?3 WHERE id = ?1",
            args![
                id.as_str(),
                name.unwrap_or(list.name),
                description.unwrap_or(list.description)
            ],
        )?;
        self.log("ModifyPrefixList", id.as_str(), json!({}))
    }

    /// `DeletePrefixList`: only one no rule names.
    pub fn delete_prefix_list(&self, id: &PrefixListId) -> Result<()> {
        let list = self.prefix_list(id)?;
        if !list.associations.is_empty() {
            return Err(ControlError::PrefixListInUse);
        }
        self.delete_list_rows(&TABLES, id.as_str())?;
        self.log("DeletePrefixList", id.as_str(), json!({}))
    }

    /// One of the caller's lists in the region.
    pub fn prefix_list(&self, id: &PrefixListId) -> Result<PrefixListRecord> {
        self.prefix_lists_where(Some(id), Some(self.ctx.account))?
            .pop()
            .ok_or_else(|| ControlError::PrefixListNotFound(id.to_string()))
    }

    /// The caller's lists in the region, oldest first.
    pub fn prefix_lists(&self) -> Result<Vec<PrefixListRecord>> {
        self.prefix_lists_where(None, Some(self.ctx.account))
    }

    pub(crate) fn prefix_lists_where(
        &self,
        only: Option<&PrefixListId>,
        owner: Option<model::AccountId>,
    ) -> Result<Vec<PrefixListRecord>> {
        let (by_id, by_owner) = crate::lists::filters(only.is_some(), owner.is_some());
        let rows = self.db.query(
            &format!(
                "SELECT id, name, description, address_family, max_entries, created_at FROM prefix_lists
                 WHERE {by_id} AND {by_owner} AND region = ?1 ORDER BY seq"
            ),
            args![
                &self.ctx.region,
                only.map(|l| l.as_str()),
                owner.map(|o| o.get() as i64)
            ],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: PrefixListId = r.parsed(0)?;
            let entries = self
                .db
                .query(
                    "SELECT cidr, description FROM prefix_list_entries WHERE list_id = ?1 ORDER BY cidr",
                    args![id.as_str()],
                )?
                .iter()
                .map(|e| Ok((e.parsed(0)?, e.text(1)?)))
                .collect::<Result<Vec<_>>>()?;
            let associations = self.list_associations(&TABLES, id.as_str())?;
            out.push(PrefixListRecord {
                family: AddressFamily::parse(&r.text(3)?)
                    .ok_or_else(|| ControlError::Storage("bad address_family".into()))?,
                id,
                name: r.text(1)?,
                description: r.text(2)?,
                max_entries: r.int(4)? as usize,
                created_at: r.text(5)?,
                entries,
                associations,
            });
        }
        Ok(out)
    }
}
