//! Port range lists: named sets of destination port ranges that TCP and UDP rules use as
//! their ports (`PortRangeListId`). The data plane holds each as one named interval set, so
//! an entry change is a set update and no chain is rewritten.
//!
//! As ECS counts them, a rule naming a list counts as `MaxEntries` rules against its group's
//! rule limit (times a prefix list's `MaxEntries` when it names one too); a list used by a
//! rule cannot be deleted. Lists are the owner's: another account's list answers as a
//! missing one.

use model::{PortRange, PortRangeListId, ResourceGroupId, SecurityGroupId};
use serde_json::json;

use crate::groups::resource_group;
use crate::limits::PORT_RANGE_LIST_ENTRIES;
use crate::lists::{check_entries, ListTables};

const TABLES: ListTables = ListTables {
    table: "port_range_lists",
    entries: "port_range_list_entries",
    tag_type: "portrangelist",
    rule_column: "port_range_list_id",
};
use crate::sql::args;
use crate::{new_id_body, now, ControlError, Result, Tx};

/// A stored port range list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRangeListRecord {
    /// `prl-...`
    pub id: PortRangeListId,
    /// `PortRangeListName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `MaxEntries`.
    pub max_entries: usize,
    /// `ResourceGroupId`.
    pub resource_group_id: Option<ResourceGroupId>,
    /// `CreationTime`.
    pub created_at: String,
    /// Entries: range and description, by first port.
    pub entries: Vec<(PortRange, String)>,
    /// The groups whose rules name it.
    pub associations: Vec<SecurityGroupId>,
}

/// `CreatePortRangeList` after parameter parsing.
#[derive(Debug, Clone)]
pub struct CreatePortRangeList {
    /// `PortRangeListName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `MaxEntries`.
    pub max_entries: usize,
    /// `ResourceGroupId`.
    pub resource_group_id: Option<ResourceGroupId>,
    /// `Entry.N.PortRange` / `Entry.N.Description`.
    pub entries: Vec<(PortRange, String)>,
}

impl Tx<'_> {
    /// `CreatePortRangeList`.
    pub fn create_port_range_list(&self, req: &CreatePortRangeList) -> Result<PortRangeListId> {
        if !(1..=PORT_RANGE_LIST_ENTRIES).contains(&req.max_entries) {
            return Err(ControlError::ListMaxEntries(
                req.max_entries,
                PORT_RANGE_LIST_ENTRIES,
            ));
        }
        self.check_quota(
            "port_range_lists",
            1,
            self.limits.port_range_lists_per_region,
            ControlError::PortRangeListQuota,
        )?;
        let id = PortRangeListId::from_body(&new_id_body())?;
        self.db.execute(
            "INSERT INTO port_range_lists (id, account_id, region, name, description, max_entries, resource_group_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            args![
                id.as_str(),
                self.ctx.account.get() as i64,
                &self.ctx.region,
                &req.name,
                &req.description,
                req.max_entries as i64,
                req.resource_group_id.as_ref().map_or("", |r| r.as_str()),
                now()
            ],
        )?;
        self.change_port_entries(&id, req.max_entries, &[], &req.entries, &[])?;
        self.log("CreatePortRangeList", id.as_str(), json!({}))?;
        Ok(id)
    }

    /// Adds, re-describes and removes entries, all or none. ECS documents `AddEntry.N` as
    /// "added or modified": an added range the list already has takes the new description;
    /// a range both added and removed is refused.
    fn change_port_entries(
        &self,
        id: &PortRangeListId,
        max: usize,
        existing: &[(PortRange, String)],
        add: &[(PortRange, String)],
        remove: &[PortRange],
    ) -> Result<()> {
        if add.iter().any(|(r, _)| remove.contains(r)) {
            return Err(model::ModelError::Conflict(
                "AddEntry.N.PortRange",
                "RemoveEntry.N.PortRange",
            )
            .into());
        }
        let (described, new): (Vec<_>, Vec<_>) = add
            .iter()
            .cloned()
            .partition(|(r, _)| existing.iter().any(|(e, _)| e == r));
        check_entries(
            existing,
            &new,
            remove,
            max,
            |_| true,
            ControlError::PortRangeListFull,
        )?;
        for range in remove {
            self.db.execute(
                "DELETE FROM port_range_list_entries WHERE list_id = ?1 AND port_range = ?2",
                args![id.as_str(), range.to_string()],
            )?;
        }
        for (range, description) in &described {
            self.db.execute(
                "UPDATE port_range_list_entries SET description = ?3 WHERE list_id = ?1 AND port_range = ?2",
                args![id.as_str(), range.to_string(), description],
            )?;
        }
        for (range, description) in &new {
            self.db.execute(
                "INSERT INTO port_range_list_entries (list_id, port_range, start_port, end_port, description)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                args![
                    id.as_str(),
                    range.to_string(),
                    i64::from(range.start()),
                    i64::from(range.end()),
                    description
                ],
            )?;
        }
        Ok(())
    }

    /// `ModifyPortRangeList`: name, description, `AddEntry.N`, `RemoveEntry.N`.
    pub fn modify_port_range_list(
        &self,
        id: &PortRangeListId,
        name: Option<String>,
        description: Option<String>,
        add: &[(PortRange, String)],
        remove: &[PortRange],
    ) -> Result<()> {
        let list = self.port_range_list(id)?;
        self.change_port_entries(id, list.max_entries, &list.entries, add, remove)?;
        self.db.execute(
            "UPDATE port_range_lists SET name = ?2, description = ?3 WHERE id = ?1",
            args![
                id.as_str(),
                name.unwrap_or(list.name),
                description.unwrap_or(list.description)
            ],
        )?;
        self.log("ModifyPortRangeList", id.as_str(), json!({}))
    }

    /// `DeletePortRangeList`: only one no rule names.
    pub fn delete_port_range_list(&self, id: &PortRangeListId) -> Result<()> {
        let list = self.port_range_list(id)?;
        if !list.associations.is_empty() {
            return Err(ControlError::PortRangeListInUse);
        }
        self.delete_list_rows(&TABLES, id.as_str())?;
        self.log("DeletePortRangeList", id.as_str(), json!({}))
    }

    /// One of the caller's lists in the region.
    pub fn port_range_list(&self, id: &PortRangeListId) -> Result<PortRangeListRecord> {
        self.port_range_lists_where(Some(id), Some(self.ctx.account))?
            .pop()
            .ok_or_else(|| ControlError::PortRangeListNotFound(id.to_string()))
    }

    /// The caller's lists in the region, oldest first.
    pub fn port_range_lists(&self) -> Result<Vec<PortRangeListRecord>> {
        self.port_range_lists_where(None, Some(self.ctx.account))
    }

    pub(crate) fn port_range_lists_where(
        &self,
        only: Option<&PortRangeListId>,
        owner: Option<model::AccountId>,
    ) -> Result<Vec<PortRangeListRecord>> {
        let (by_id, by_owner) = crate::lists::filters(only.is_some(), owner.is_some());
        let rows = self.db.query(
            &format!(
                "SELECT id, name, description, max_entries, resource_group_id, created_at FROM port_range_lists
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
            let id: PortRangeListId = r.parsed(0)?;
            let entries = self
                .db
                .query(
                    "SELECT port_range, description FROM port_range_list_entries WHERE list_id = ?1
                     ORDER BY start_port, end_port",
                    args![id.as_str()],
                )?
                .iter()
                .map(|e| Ok((e.parsed(0)?, e.text(1)?)))
                .collect::<Result<Vec<_>>>()?;
            let associations = self.list_associations(&TABLES, id.as_str())?;
            out.push(PortRangeListRecord {
                id,
                name: r.text(1)?,
                description: r.text(2)?,
                max_entries: r.int(3)? as usize,
                resource_group_id: resource_group(&r.text(4)?)?,
                created_at: r.text(5)?,
                entries,
                associations,
            });
        }
        Ok(out)
    }
}
