//! What prefix lists and port range lists share: their entries change all or none.

use crate::{ControlError, Result};

/// Checks a change of a list's entries before any is written: every removed entry exists,
/// every added one is `valid`, new (neither in the list, unless removed by the same request,
/// nor twice in the request), and the list then holds at most `max` entries (else `full`).
pub(crate) fn check_entries<T: PartialEq + ToString>(
    existing: &[(T, String)],
    add: &[(T, String)],
    remove: &[T],
    max: usize,
    valid: impl Fn(&T) -> bool,
    full: impl FnOnce(usize) -> ControlError,
) -> Result<()> {
    for entry in remove {
        if !existing.iter().any(|(e, _)| e == entry) {
            return Err(ControlError::ListEntryNotFound(entry.to_string()));
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
    if existing.len() - remove.len() + add.len() > max {
        return Err(full(max));
    }
    Ok(())
}
