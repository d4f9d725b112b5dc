//! Rendered answers of read actions, reused while the store has not changed.
//!
//! A `Describe...` answer is a function of the caller's account, the region, the request's
//! parameters and the store's state, and the store's state is named by its revision. So an
//! answer rendered at revision R is served again, byte for byte (with a fresh `RequestId`),
//! to the same question while the revision is still R. Reading the revision is one indexed
//! query; rendering 200 rules is a few hundred rows and a JSON document.
//!
//! An answer is stored only when the revision was the same before and after it was computed,
//! so it cannot mix two states.
//!
//! Bounded in bytes, per account and in all: a question is kept as a 32-byte digest of its
//! region and parameters (unknown parameters included: they cannot change the answer, but
//! a digest makes them cost nothing), and each account's answers may hold
//! [`ACCOUNT_BYTES`], so one account's flood of distinct questions empties its own answers,
//! not another's; [`TOTAL_BYTES`] caps them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use model::AccountId;
use sha2::Digest as _;

use crate::wire::Params;

/// Bytes of answers one account may hold; past it, that account's answers start over
/// (they are cheap to rebuild, and a changing store empties them in effect anyway).
const ACCOUNT_BYTES: usize = 8 << 20;
/// Bytes of answers all accounts may hold; past it, the cache starts over.
const TOTAL_BYTES: usize = 256 << 20;
/// What a kept answer costs besides its body: its digest, revision and table slot.
const ENTRY_OVERHEAD: usize = 96;

/// What identifies a question: the account, and a digest of the region and every
/// non-transport parameter.
pub(crate) type Key = (AccountId, [u8; 32]);

/// One account's answers: digest → (revision, the action's fields as JSON), and their
/// bytes.
#[derive(Debug, Default)]
struct Answers {
    by_question: HashMap<[u8; 32], (u64, Arc<str>)>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: HashMap<AccountId, Answers>,
    bytes: usize,
}

/// Cached answers.
#[derive(Debug, Default)]
pub(crate) struct ReadCache {
    inner: Mutex<Inner>,
}

impl ReadCache {
    /// The key of a request. Every field is written with its length, so no two requests
    /// share an encoding.
    pub(crate) fn key(account: AccountId, region: &str, params: &Params) -> Key {
        let mut hash = sha2::Sha256::new();
        for field in std::iter::once(region).chain(
            params
                .request_fields()
                .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
        ) {
            hash.update((field.len() as u64).to_le_bytes());
            hash.update(field.as_bytes());
        }
        (account, hash.finalize().into())
    }

    /// The answer rendered at `revision`, if any.
    pub(crate) fn get(&self, key: &Key, revision: u64) -> Option<Arc<str>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .accounts
            .get(&key.0)?
            .by_question
            .get(&key.1)
            .filter(|(r, _)| *r == revision)
            .map(|(_, body)| body.clone())
    }

    /// Keeps an answer rendered at `revision` (not one larger than an account's share).
    pub(crate) fn put(&self, key: Key, revision: u64, body: Arc<str>) {
        let cost = body.len() + ENTRY_OVERHEAD;
        if cost > ACCOUNT_BYTES {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.bytes + cost > TOTAL_BYTES {
            *inner = Inner::default();
        }
        let Inner { accounts, bytes } = &mut *inner;
        let answers = accounts.entry(key.0).or_default();
        if answers.bytes + cost > ACCOUNT_BYTES {
            *bytes -= answers.bytes;
            *answers = Answers::default();
        }
        if let Some((_, old)) = answers.by_question.insert(key.1, (revision, body)) {
            let old = old.len() + ENTRY_OVERHEAD;
            answers.bytes -= old;
            *bytes -= old;
        }
        answers.bytes += cost;
        *bytes += cost;
    }

    /// Bytes held: in all, and by one account.
    #[cfg(test)]
    fn bytes(&self, account: AccountId) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let own = inner.accounts.get(&account).map_or(0, |a| a.bytes);
        (inner.bytes, own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(n: usize) -> [u8; 32] {
        let mut q = [0; 32];
        q[..8].copy_from_slice(&(n as u64).to_le_bytes());
        q
    }

    #[test]
    fn one_accounts_flood_evicts_only_its_own_answers_and_bytes_stay_bounded() {
        let cache = ReadCache::default();
        let (a, b) = (AccountId::new(1), AccountId::new(2));
        let small: Arc<str> = "a".repeat(100).into();
        cache.put((a, question(0)), 7, small.clone());
        let big: Arc<str> = "b".repeat(1 << 20).into();
        for n in 0..100 {
            cache.put((b, question(n)), 7, big.clone());
            let (total, own) = cache.bytes(b);
            assert!(
                own <= ACCOUNT_BYTES && total <= TOTAL_BYTES,
                "{own} {total}"
            );
        }
        assert_eq!(cache.get(&(a, question(0)), 7), Some(small));
        assert_eq!(cache.get(&(a, question(0)), 8), None, "another revision");
        // A replaced answer is counted once.
        let before = cache.bytes(a).1;
        cache.put((a, question(0)), 8, "c".repeat(100).into());
        assert_eq!(cache.bytes(a).1, before);
        // Too big to keep at all.
        cache.put((a, question(1)), 8, "d".repeat(ACCOUNT_BYTES).into());
        assert_eq!(cache.get(&(a, question(1)), 8), None);
    }
}
