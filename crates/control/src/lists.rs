//! What prefix lists and port range lists share: their entries change all or none.

use model::SecurityGroupId;

use crate::sql::args;
use crate::{ControlError, Result, Tx};

/// Where a kind of list lives: its table, its entries' table, its tag resource type and the
/// rule column that names it. Constants of the code, never input.
pub(crate) struct ListTables {
    pub(crate) table: &'static str,
    pub(crate) entries: &'static str,
    pub(crate) tag_type: &'static str,
    pub(crate) rule_column: &'static str,
}

/// The `WHERE` terms of a read of lists by id (`?2`) and owner (`?3`): each filter is in the
/// SQL only when given, so that the id's or the owner's index serves it (an `OR` would make
/// every read a scan of the table).
pub(crate) fn filters(by_id: bool, by_owner: bool) -> (&'static str, &'static str) {
    (
        if by_id {
            "id = ?2"
        } else {
            "CAST(?2 AS TEXT) IS NULL"
        },
        if by_owner {
            "account_id = ?3"
        } else {
            "CAST(?3 AS BIGINT) IS NULL"
        },
    )
}

impl Tx<'_> {
    /// The groups whose rules name the list, oldest first.
    pub(crate) fn list_associations(
        &self,
        t: &ListTables,
        id: &str,
    ) -> Result<Vec<SecurityGroupId>> {
        // `g.seq` is selected so that the ordering column is in the DISTINCT list (which
        // PostgreSQL requires).
        self.db
            .query(
                &format!(
                    "SELECT DISTINCT g.id, g.seq FROM permissions p JOIN security_groups g ON g.id = p.group_id
                     WHERE p.{} = ?1 ORDER BY g.seq",
                    t.rule_column
                ),
                args![id],
            )?
            .iter()
            .map(|g| g.parsed(0))
            .collect()
    }

    /// Deletes a list with its entries and tags (its dependencies checked by the caller).
    pub(crate) fn delete_list_rows(&self, t: &ListTables, id: &str) -> Result<()> {
        for sql in [
            format!("DELETE FROM {} WHERE list_id = ?1", t.entries),
            format!(
                "DELETE FROM tags WHERE resource_type = '{}' AND resource_id = ?1",
                t.tag_type
            ),
            format!("DELETE FROM {} WHERE id = ?1", t.table),
        ] {
            self.db.execute(&sql, args![id])?;
        }
        Ok(())
    }
}

/// Checks a change of a list's entries before any is written: every removed entry exists,
/// once, every added one is `valid`, new (neither in the list, unless removed by the same
/// request, nor twice in the request), and the list then holds at most `max` entries (else `full`).
pub(crate) fn check_entries<T: PartialEq + ToString>(
    existing: &[(T, String)],
    add: &[(T, String)],
    remove: &[T],
    max: usize,
    valid: impl Fn(&T) -> bool,
    full: impl FnOnce(usize) -> ControlError,
) -> Result<()> {
    for (i, entry) in remove.iter().enumerate() {
        if !existing.iter().any(|(e, _)| e == entry) {
            return Err(ControlError::ListEntryNotFound(entry.to_string()));
        }
        // Removed twice would count twice against the limit below.
        if remove[..i].contains(entry) {
            return Err(ControlError::ListEntryDuplicate(entry.to_string()));
        }
    }
    for (i, (entry, _)) in add.iter().enumerate() {
        if !valid(entry) {
            return Err(ControlError::ListEntryMalformed(entry.to_string()));
        }
        let again = add[..i].iter().any(|(e, _)| e == entry)
            || existing
                .iter()
                .any(|(e, _)| e == entry && !remove.contains(e));
        if again {
            return Err(ControlError::ListEntryDuplicate(entry.to_string()));
        }
    }
    // The list as it will be: what stays, and what comes.
    let kept = existing.iter().filter(|(e, _)| !remove.contains(e)).count();
    if kept + add.len() > max {
        return Err(full(max));
    }
    Ok(())
}
