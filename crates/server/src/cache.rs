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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use model::AccountId;

use crate::wire::Params;

/// Most answers kept; when full, the cache starts over (answers are cheap to rebuild, and a
/// changing store empties it in effect anyway).
const CAPACITY: usize = 4096;

/// What identifies a question: account, region and every non-transport parameter.
pub(crate) type Key = (AccountId, String, Vec<(String, String)>);

/// Cached answers: key → (revision, the action's fields as JSON).
#[derive(Debug, Default)]
pub(crate) struct ReadCache {
    answers: Mutex<HashMap<Key, (u64, Arc<str>)>>,
}

impl ReadCache {
    /// The key of a request.
    pub(crate) fn key(account: AccountId, region: &str, params: &Params) -> Key {
        let params = params
            .request_fields()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (account, region.to_string(), params)
    }

    /// The answer rendered at `revision`, if any.
    pub(crate) fn get(&self, key: &Key, revision: u64) -> Option<Arc<str>> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers
            .get(key)
            .filter(|(r, _)| *r == revision)
            .map(|(_, body)| body.clone())
    }

    /// Keeps an answer rendered at `revision`.
    pub(crate) fn put(&self, key: Key, revision: u64, body: Arc<str>) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= CAPACITY {
            answers.clear();
        }
        answers.insert(key, (revision, body));
    }
}
