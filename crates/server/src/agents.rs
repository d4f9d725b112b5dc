//! The agent feed: how host agents learn the policy of the instances placed on their host.
//!
//! - `GET /agent/v1/policy?host=NAME[&region=R][&after=REV][&wait=SECONDS]` is a long poll:
//!   it answers at once when the store's revision is past `after` (or `after` is absent),
//!   otherwise when a change commits or `wait` (default 25 s, at most 60) runs out. The answer
//!   is the whole share of the policy the host needs at that revision, so an agent that lost
//!   its connection resumes by asking again with the revision it last applied: nothing to
//!   replay, nothing to miss. With `delta=1` the answer after `after` is instead a `Delta`
//!   (`policy::delta`): the items of the share that changed since `after`, when this server
//!   still remembers the host's answer at `after`; otherwise (a restart, another replica,
//!   an agent that fell behind) the whole share, so a delta is only ever an optimisation.
//! - `POST /agent/v1/status` is the agent's report (revision applied, instances programmed,
//!   errors); `GET /agent/v1/hosts` lists the reports, for `stockade lab status`.
//!
//! Placement: a host's share is the network interfaces the operator bound to it
//! (`PlaceNetworkInterface`, operator accounts only; see `control::interfaces`), each listed
//! with its id, which is how the agent finds its device. Agents authenticate with the bearer
//! token the server was started with (`STOCKADE_AGENT_TOKEN`); it is not an account's
//! AccessKey, because an agent sees every account's interfaces on its host.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use control::Ctx;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ServerError;
use crate::wire::{render_error, request_id, Format};
use crate::AppState;

/// Longest wait of one long poll.
const MAX_WAIT: u64 = 60;
/// Revisions committed by another process (a replica, `stockade account`) are noticed by
/// re-reading the store this often while waiting.
const RECHECK: Duration = Duration::from_millis(500);

/// The feed's query parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct FeedQuery {
    host: String,
    region: Option<String>,
    after: Option<u64>,
    wait: Option<u64>,
    /// `1`: answer with a delta from `after` when possible.
    #[serde(default)]
    delta: u8,
}

fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), ServerError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match &state.agent_token {
        Some(token) if crate::auth::same(token, given) => Ok(()),
        _ => Err(ServerError::AgentTokenInvalid),
    }
}

fn failure(e: &ServerError) -> Response {
    render_error(Format::Json, "stockade", &request_id(), e)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ServerError::internal(format!("feed task: {e}"))))
}

/// `GET /agent/v1/policy`.
pub(crate) async fn policy(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(e) = authorized(&state, &headers) {
        return failure(&e);
    }
    // Parsed only once the token is checked, and refused with an ECS body.
    let q = match Query::<FeedQuery>::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(e) => return failure(&ServerError::invalid("query", e.body_text())),
    };
    let host: model::HostId = match q.host.parse() {
        Ok(h) => h,
        Err(e) => return failure(&ServerError::from(e)),
    };
    let region = q.region.clone().unwrap_or_else(|| state.regions[0].clone());
    if !state.regions.contains(&region) {
        return failure(&ServerError::RegionNotFound(region));
    }
    state.seen(host.as_str(), None);
    let deadline = Instant::now() + Duration::from_secs(q.wait.unwrap_or(25).min(MAX_WAIT));
    loop {
        // Registered before reading the revision, so a commit in between still wakes us.
        let changed = state.changed.notified();
        let s = state.clone();
        let revision = match blocking(move || Ok(s.control.revision()?)).await {
            Ok(r) => r,
            Err(e) => return failure(&e),
        };
        let now = Instant::now();
        let closing = state.closing.load(std::sync::atomic::Ordering::SeqCst);
        if q.after.is_none_or(|after| revision > after) || now >= deadline || closing {
            let s = state.clone();
            let host = host.clone();
            let (after, delta) = (q.after, q.delta == 1);
            return match blocking(move || host_answer(&s, &region, &host, after, delta)).await {
                Ok(v) => Json(v).into_response(),
                Err(e) => failure(&e),
            };
        }
        let _ = tokio::time::timeout(RECHECK.min(deadline - now), changed).await;
    }
}

/// The answer to a poll: the host's share, or (`delta`, when this server remembers the
/// host's answer at `after`) what changed in it since. A poll asking for deltas leaves its
/// answer's digest as the base of the next.
fn host_answer(
    state: &AppState,
    region: &str,
    host: &model::HostId,
    after: Option<u64>,
    delta: bool,
) -> Result<Value, ServerError> {
    let ctx = Ctx {
        account: model::AccountId::new(0),
        region: region.to_string(),
    };
    let (placed, at) = state.control.read(&ctx, |tx| {
        // Revision and policy from one read transaction: they describe the same state. The
        // region's snapshot is built once per revision and shared by every host's answer
        // (a change wakes every agent at once).
        let revision = tx.revision()?;
        let placed = tx.host_interfaces(host)?;
        // One poll builds a revision's snapshot while the others woken with it wait for it,
        // rather than each building its own.
        let _building = state
            .snapshot_builder
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let cached = state
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(region)
            .and_then(|h| h.get(&revision))
            .cloned();
        let at = match cached {
            Some(at) => at,
            None => {
                let at = Arc::new(RegionAt {
                    revision,
                    snapshot: tx.region_snapshot()?,
                    hashes: OnceLock::new(),
                });
                let mut snapshots = state.snapshots.lock().unwrap_or_else(|e| e.into_inner());
                let history = snapshots.entry(region.to_string()).or_default();
                history.insert(revision, at.clone());
                while history.len() > HISTORY {
                    history.pop_first();
                }
                at
            }
        };
        Ok((placed, at))
    })?;
    // Only attached interfaces carry traffic; a device labelled with another fails closed.
    let local: BTreeSet<model::MemberId> = placed.iter().filter_map(|p| p.member()).collect();
    let answer = |body: Value| {
        let mut v = json!({"Revision": at.revision, "HostId": host.as_str(), "RegionId": region});
        if let (Value::Object(v), Value::Object(body)) = (&mut v, body) {
            v.extend(body);
        }
        v
    };
    let at = &*at;
    let snapshot = &at.snapshot;
    if !delta {
        let share = snapshot.share(&local);
        let interfaces = interface_items(&placed, |m| {
            share.instances.iter().find(|i| i.id == *m).copied()
        });
        return Ok(answer(policy::delta::whole(&share, &interfaces)));
    }
    let hashes = region_hashes(state, region, at);
    let interfaces = interface_items(&placed, |m| hashes.member(snapshot, m));
    let cut = hashes.cut(snapshot, &local);
    let key = (region.to_string(), host.as_str().to_string());
    let held = state
        .digests
        .map
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    // A digest made at another revision than `after` is no base: start afresh.
    let (base, mut digest) = match held {
        Some((revision, digest)) if Some(revision) == after => (after, digest),
        _ => (None, policy::delta::Digest::default()),
    };
    // The common case, a host one or a few revisions behind whose cut stayed: only the items
    // the region changed since are looked at. Otherwise the whole share is compared.
    let keys = &state.digests.keys;
    let moved = base
        .and_then(|base| changed_since(state, region, at, base))
        .and_then(|changed| {
            digest.update_changed(&cut, snapshot, hashes, &changed, &interfaces, keys)
        });
    let body = match (base, moved) {
        (Some(base), Some(changes)) => json!({
            "Delta": changes.to_value(base, snapshot, hashes, &cut, &interfaces)
        }),
        (base, _) => {
            let share = snapshot.share(&local);
            let changes = digest.update(&share, &interfaces, hashes, keys);
            match base {
                // The whole document is written only when it is what is sent.
                Some(base) => json!({
                    "Delta": changes.to_value(base, snapshot, hashes, &cut, &interfaces)
                }),
                None => policy::delta::whole(&share, &interfaces),
            }
        }
    };
    let mut digests = state.digests.map.lock().unwrap_or_else(|e| e.into_inner());
    // Host names are the agents' to choose: past this many, everything is forgotten (each
    // host then gets one whole answer) rather than memory growing with made-up names.
    if digests.len() >= MAX_DIGESTS {
        digests.clear();
    }
    digests.insert(key, (at.revision, digest));
    Ok(answer(body))
}

/// The answer's items of the interfaces bound to the host, each with the member `member`
/// finds for it; one whose member is not found (not attached) is left out.
fn interface_items<'s>(
    placed: &[control::Placement],
    member: impl Fn(&model::MemberId) -> Option<&'s model::Instance>,
) -> Vec<Value> {
    placed
        .iter()
        .filter_map(|p| {
            let i = member(&p.member()?)?;
            Some(json!({
                "NetworkInterfaceId": p.interface.as_str(),
                // The member whose groups judge it: its instance, or (a secondary interface)
                // itself.
                "MemberId": i.id.as_str(),
                "InstanceId": i.attached_to.as_ref().map_or(i.id.as_str(), |a| a.as_str()),
                "PrivateIpAddress": i.private_ip.to_string(),
                "PublicIpAddress": i.public_ip.map(|a| a.to_string()).unwrap_or_default(),
            }))
        })
        .collect()
}

/// The hashes of a region at `at`'s revision, made on first use against the newest earlier
/// revision hashed, so that they also say which items changed since.
fn region_hashes<'a>(
    state: &AppState,
    region: &str,
    at: &'a RegionAt,
) -> &'a policy::delta::RegionHashes {
    at.hashes.get_or_init(|| {
        let hashes = policy::delta::RegionHashes::new(&at.snapshot, &state.digests.keys);
        let history = state.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        let previous = history.get(region).and_then(|h| {
            h.range(..at.revision)
                .rev()
                .find_map(|(r, earlier)| earlier.hashes.get().map(|e| (*r, Arc::clone(e))))
        });
        drop(history);
        Arc::new(match previous {
            Some((revision, earlier)) => hashes.after(revision, &earlier),
            None => hashes,
        })
    })
}

/// The keys of the items that changed in the region between revision `base` and `at`, by
/// the chain of hashed revisions kept; `None` when the chain does not reach `base`.
fn changed_since(
    state: &AppState,
    region: &str,
    at: &RegionAt,
    base: u64,
) -> Option<policy::delta::ItemKeys> {
    let history = state.snapshots.lock().unwrap_or_else(|e| e.into_inner());
    let history = history.get(region)?;
    let mut changed = policy::delta::ItemKeys::default();
    let mut hashes = at.hashes.get()?;
    let mut revision = at.revision;
    while revision > base {
        let (earlier, keys) = hashes.since()?;
        for (all, new) in changed.iter_mut().zip(keys) {
            all.extend(new.iter().cloned());
        }
        revision = earlier;
        if revision > base {
            hashes = history.get(&revision)?.hashes.get()?;
        }
    }
    (revision == base).then_some(changed)
}

/// `POST /agent/v1/status`: the agent's report, kept in memory (agents report again after
/// every apply and after every reconnect, so a restarted server relearns them within one
/// poll).
pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authorized(&state, &headers) {
        return failure(&e);
    }
    let report: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return failure(&ServerError::invalid("body", e.to_string())),
    };
    let Some(host) = report.get("HostId").and_then(Value::as_str) else {
        return failure(&model::ModelError::Missing("HostId").into());
    };
    state.seen(host, Some(report.clone()));
    Json(json!({"RequestId": request_id()})).into_response()
}

/// `GET /agent/v1/hosts`.
pub(crate) async fn hosts(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&state, &headers) {
        return failure(&e);
    }
    let hosts = state.hosts.lock().unwrap_or_else(|e| e.into_inner());
    let list: Vec<Value> = hosts
        .iter()
        .map(|(host, (seen, report))| json!({"HostId": host, "LastSeen": seen, "Report": report}))
        .collect();
    Json(json!({"RequestId": request_id(), "Hosts": list})).into_response()
}

/// Region → its whole policy at the last revisions read, newest last: the feed's shared
/// snapshots (and, through their hashes, the chain that says what changed between them).
pub(crate) type SnapshotCache =
    std::sync::Mutex<std::collections::HashMap<String, BTreeMap<u64, Arc<RegionAt>>>>;

/// Revisions of a region kept: how far behind an agent may fall and still get a delta made
/// from the region's changed items (beyond it, its whole share is compared).
const HISTORY: usize = 32;

/// A region's policy at one revision, and (once a poll asks for deltas) its items' hashes.
pub(crate) struct RegionAt {
    revision: u64,
    snapshot: policy::Snapshot,
    hashes: OnceLock<Arc<policy::delta::RegionHashes>>,
}

/// (Region, host).
type HostKey = (String, String);

/// Most hosts whose digests are kept.
const MAX_DIGESTS: usize = 65_536;

/// (Region, host) → the revision and digest of the last answer made for the host, the base of
/// its next delta: one per host that asked for deltas, a few bytes per item of its share.
/// Items are hashed with keys drawn at random when the server starts.
#[derive(Default)]
pub(crate) struct DigestCache {
    keys: std::hash::RandomState,
    map: std::sync::Mutex<std::collections::HashMap<HostKey, (u64, policy::delta::Digest)>>,
}

/// Hosts by name: when last heard from (Unix seconds) and their last report.
pub(crate) type HostRegistry = std::sync::Mutex<BTreeMap<String, (u64, Value)>>;

impl AppState {
    fn seen(&self, host: &str, report: Option<Value>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        match report {
            // A host is registered by its first report; its polls keep it fresh. (A poll
            // alone, e.g. `stockade lab status` reading the revision, registers nothing.)
            Some(report) => {
                hosts.insert(host.to_string(), (now, report));
            }
            None => {
                if let Some(entry) = hosts.get_mut(host) {
                    entry.0 = now;
                }
            }
        }
    }
}
