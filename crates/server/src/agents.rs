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
//! with its id, which is how the agent finds its device. Each host's agent authenticates
//! with a bearer token the operator issued for that host (`IssueAgentToken`, revocable),
//! which reads that host's share and reports that host's status only; the fleet token the
//! server was started with (`STOCKADE_AGENT_TOKEN`) is the operator's and may read every
//! host. Neither is an account's AccessKey, because an agent sees every account's
//! interfaces on its host.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
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

/// Who a feed request comes from.
enum Agent {
    /// The fleet token the server was started with (`STOCKADE_AGENT_TOKEN`): the
    /// operator's, for tools that watch every host (`lab status`); never a host's.
    Fleet,
    /// A host's own token (`IssueAgentToken`).
    Host(model::HostId),
}

impl Agent {
    /// Whether this agent may read or report for `host`.
    fn may_serve(&self, host: &str) -> Result<(), ServerError> {
        match self {
            Agent::Host(h) if h.as_str() != host => {
                Err(ServerError::AgentTokenOtherHost(h.to_string()))
            }
            _ => Ok(()),
        }
    }
}

async fn authorized(state: &Arc<AppState>, headers: &HeaderMap) -> Result<Agent, ServerError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if let Some(token) = &state.agent_token {
        if crate::auth::same(token, &given) {
            return Ok(Agent::Fleet);
        }
    }
    if given.is_empty() {
        return Err(ServerError::AgentTokenInvalid);
    }
    let s = state.clone();
    match blocking(move || Ok(s.control.agent_token_host(&given)?)).await? {
        Some(host) => Ok(Agent::Host(host)),
        None => Err(ServerError::AgentTokenInvalid),
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
    let _poll = state.metrics.feed_poll();
    let agent = match authorized(&state, &headers).await {
        Ok(agent) => agent,
        Err(e) => return failure(&e),
    };
    // Parsed only once the token is checked, and refused with an ECS body.
    let q = match Query::<FeedQuery>::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(e) => return failure(&ServerError::invalid("query", e.body_text())),
    };
    let host: model::HostId = match q.host.parse() {
        Ok(h) => h,
        Err(e) => return failure(&ServerError::from(e)),
    };
    if let Err(e) = agent.may_serve(host.as_str()) {
        return failure(&e);
    }
    let region = q.region.clone().unwrap_or_else(|| state.regions[0].clone());
    if !state.regions.contains(&region) {
        return failure(&ServerError::RegionNotFound(region));
    }
    state.seen(host.as_str(), None);
    let deadline = Instant::now() + Duration::from_secs(q.wait.unwrap_or(25).min(MAX_WAIT));
    loop {
        // Registered before reading the revision, so a commit in between still wakes us.
        let changed = state.changed.notified();
        let revision = match state.feed.revision.fresh(&state.control) {
            Some(r) => r,
            None => {
                let s = state.clone();
                match blocking(move || s.feed.revision.read(&s.control)).await {
                    Ok(r) => r,
                    Err(e) => return failure(&e),
                }
            }
        };
        let now = Instant::now();
        let closing = state.closing.load(std::sync::atomic::Ordering::SeqCst);
        if q.after.is_none_or(|after| revision > after) || now >= deadline || closing {
            let s = state.clone();
            let host = host.clone();
            let (after, delta) = (q.after, q.delta == 1);
            let answer = blocking(move || {
                let at = region_at(&s, &region, revision)?;
                Ok(host_answer(&s, &at, &host, after, delta))
            });
            return match answer.await {
                Ok(body) => ([(CONTENT_TYPE, "application/json")], body).into_response(),
                Err(e) => failure(&e),
            };
        }
        let _ = tokio::time::timeout(RECHECK.min(deadline - now), changed).await;
    }
}

/// Brings the feed's view of every region agents follow to the store's revision: called
/// after a commit, before the waiting polls are woken, so that they find it made rather
/// than all waiting for one of them to make it.
pub(crate) fn refresh(state: &AppState) {
    let regions: Vec<String> = state
        .feed
        .regions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    if regions.is_empty() {
        return;
    }
    let made = state
        .feed
        .revision
        .read(&state.control)
        .and_then(|revision| {
            regions
                .iter()
                .try_for_each(|region| region_at(state, region, revision).map(drop))
        });
    if let Err(e) = made {
        // The polls then make it themselves (and answer the error if it persists).
        tracing::warn!(error = %e, "agent feed: reading the new revision failed");
    }
}

/// The region at revision `revision` or later: the newest one made, or made now (by one
/// caller while the others wait for it) in one read transaction, with every item hashed.
fn region_at(state: &AppState, region: &str, revision: u64) -> Result<Arc<RegionAt>, ServerError> {
    let newest = || {
        let regions = state.feed.regions.lock().unwrap_or_else(|e| e.into_inner());
        regions
            .get(region)
            .and_then(|h| h.last_key_value())
            .map(|(_, at)| at.clone())
            .filter(|at| at.revision >= revision)
    };
    if let Some(at) = newest() {
        return Ok(at);
    }
    let _building = state.feed.builder.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(at) = newest() {
        return Ok(at);
    }
    let ctx = Ctx {
        account: model::AccountId::new(0),
        region: region.to_string(),
    };
    // The newest earlier revision made: the next is made from it, reading and hashing again
    // only what the change log names since (a tenant's write costs the feed what it
    // touched, not the region), and its hashes say what changed since.
    let before = {
        let regions = state.feed.regions.lock().unwrap_or_else(|e| e.into_inner());
        regions
            .get(region)
            .and_then(|h| h.last_key_value())
            .map(|(_, at)| at.clone())
    };
    // Revision, placements and policy from one read transaction: they describe one state.
    let (revision, bound, made) = state.control.read(&ctx, |tx| {
        let revision = tx.revision()?;
        let made = match &before {
            Some(b) if b.revision < revision => {
                tx.region_snapshot_after(&b.snapshot, b.revision)?
            }
            _ => None,
        };
        let made = match made {
            Some((snapshot, dirty)) => (snapshot, Some(dirty)),
            None => (tx.region_snapshot()?, None),
        };
        Ok((revision, tx.bound_interfaces()?, made))
    })?;
    let (snapshot, dirty) = made;
    let keys = &state.feed.keys;
    let hashes = match (&before, dirty) {
        (Some(b), Some(dirty)) => b.hashes.refreshed(&snapshot, &dirty, keys),
        _ => policy::delta::RegionHashes::new(&snapshot, keys),
    };
    let hashes = match &before {
        Some(b) if b.revision < revision => hashes.after(b.revision, &b.hashes),
        _ => hashes,
    };
    let mut regions = state.feed.regions.lock().unwrap_or_else(|e| e.into_inner());
    let history = regions.entry(region.to_string()).or_default();
    let at = Arc::new(RegionAt {
        region: region.to_string(),
        revision,
        snapshot,
        bound,
        hashes,
        texts: OnceLock::new(),
    });
    history.insert(revision, at.clone());
    while history.len() > HISTORY {
        history.pop_first();
    }
    Ok(at)
}

/// The answer to a poll, at `at`: the host's share, or (`delta`, when this server remembers
/// the host's answer at `after`) what changed in it since. A poll asking for deltas leaves
/// its answer's digest as the base of the next.
fn host_answer(
    state: &AppState,
    at: &RegionAt,
    host: &model::HostId,
    after: Option<u64>,
    delta: bool,
) -> String {
    let placed = at.bound.get(host).map_or(&[][..], Vec::as_slice);
    // Only attached interfaces carry traffic; a device labelled with another fails closed.
    let local: BTreeSet<model::MemberId> = placed.iter().filter_map(|p| p.member()).collect();
    let (snapshot, hashes) = (&at.snapshot, &at.hashes);
    let interfaces = interface_items(placed, |m| hashes.member(snapshot, m));
    let cut = hashes.cut(snapshot, &local);
    let head = json!({"Revision": at.revision, "HostId": host.as_str(), "RegionId": at.region()});
    // The whole share, written from the region's item texts.
    let whole = |cut: &policy::Cut| {
        let texts = at.texts.get_or_init(|| policy::delta::Texts::new(snapshot));
        let mut out = head.to_string();
        out.pop();
        out.push(',');
        texts.write_whole(&mut out, snapshot, cut, &interfaces);
        out.push('}');
        out
    };
    let with_delta = |delta: Value| {
        let mut v = head.clone();
        v["Delta"] = delta;
        v.to_string()
    };
    if !delta {
        return whole(&cut);
    }
    let key = (at.region().to_string(), host.as_str().to_string());
    let held = state
        .feed
        .digests
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
    let keys = &state.feed.keys;
    let moved = base
        .and_then(|base| changed_since(state, at, base))
        .and_then(|changed| {
            digest.update_changed(&cut, snapshot, hashes, &changed, &interfaces, keys)
        });
    let body = match (base, moved) {
        (Some(base), Some(changes)) => {
            with_delta(changes.to_value(base, snapshot, hashes, &cut, &interfaces))
        }
        (base, _) => {
            let share = snapshot.share(&local);
            let changes = digest.update(&share, &interfaces, hashes, keys);
            match base {
                // The whole document is written only when it is what is sent.
                Some(base) => {
                    with_delta(changes.to_value(base, snapshot, hashes, &cut, &interfaces))
                }
                None => whole(&share.cut),
            }
        }
    };
    let mut digests = state.feed.digests.lock().unwrap_or_else(|e| e.into_inner());
    // Host names are the agents' to choose: past this many, everything is forgotten (each
    // host then gets one whole answer) rather than memory growing with made-up names.
    if digests.len() >= MAX_DIGESTS {
        digests.clear();
    }
    digests.insert(key, (at.revision, digest));
    body
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

/// The keys of the items that changed in the region between revision `base` and `at`, by
/// the chain of revisions kept; `None` when the chain does not reach `base`.
fn changed_since(state: &AppState, at: &RegionAt, base: u64) -> Option<policy::delta::ItemKeys> {
    let regions = state.feed.regions.lock().unwrap_or_else(|e| e.into_inner());
    let history = regions.get(at.region())?;
    let mut changed = policy::delta::ItemKeys::default();
    let mut hashes = &at.hashes;
    let mut revision = at.revision;
    while revision > base {
        let (earlier, keys) = hashes.since()?;
        for (all, new) in changed.iter_mut().zip(keys) {
            all.extend(new.iter().cloned());
        }
        revision = earlier;
        if revision > base {
            hashes = &history.get(&revision)?.hashes;
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
    let agent = match authorized(&state, &headers).await {
        Ok(agent) => agent,
        Err(e) => return failure(&e),
    };
    let report: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return failure(&ServerError::invalid("body", e.to_string())),
    };
    let Some(host) = report.get("HostId").and_then(Value::as_str) else {
        return failure(&model::ModelError::Missing("HostId").into());
    };
    if let Err(e) = agent.may_serve(host) {
        return failure(&e);
    }
    let region = match report["RegionId"].as_str() {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => state.regions[0].clone(),
    };
    if !state.regions.contains(&region) {
        return failure(&ServerError::RegionNotFound(region));
    }
    let hits = match parse_hits(&report["Hits"]) {
        Ok(hits) => hits,
        Err(e) => return failure(&e),
    };
    let host_id: model::HostId = match host.parse() {
        Ok(h) => h,
        Err(e) => return failure(&ServerError::from(e)),
    };
    // Recorded before the report is acknowledged: an agent clears what it counted only
    // once the server has it.
    let recorder = state.clone();
    let recorded = blocking(move || {
        let hits = if hits.is_empty() {
            hits
        } else {
            let at = region_at(&recorder, &region, 0)?;
            own_hits(&at, &host_id, hits)
        };
        recorder
            .control
            .record_hits(&region, &hits)
            .map_err(ServerError::from)
    })
    .await;
    if let Err(e) = recorded {
        return failure(&e);
    }
    let host = host.to_string();
    state.seen(&host, Some(report));
    Json(json!({"RequestId": request_id()})).into_response()
}

/// The hits a host may report: those of the groups of the members bound to it, where its
/// kernel decides. A host's credential must not let it write counts into groups whose
/// instances it does not carry (another tenant's audit reads them); the rest are dropped.
fn own_hits(at: &RegionAt, host: &model::HostId, hits: Vec<control::Hit>) -> Vec<control::Hit> {
    let placed = at.bound.get(host).map_or(&[][..], Vec::as_slice);
    let local: BTreeSet<model::MemberId> = placed.iter().filter_map(|p| p.member()).collect();
    let groups: BTreeSet<&model::SecurityGroupId> = (at.snapshot.instances.iter())
        .filter(|i| local.contains(&i.id))
        .flat_map(|i| &i.security_groups)
        .collect();
    let rules: BTreeSet<&model::SecurityGroupRuleId> = (at.snapshot.groups.iter())
        .filter(|g| groups.contains(&g.group.id))
        .flat_map(|g| g.permissions.iter().map(|p| &p.id))
        .collect();
    hits.into_iter()
        .filter(|h| match &h.subject {
            control::HitSubject::Rule(r) => rules.contains(r),
            control::HitSubject::Implicit(gs, _) => gs.iter().all(|g| groups.contains(g)),
        })
        .collect()
}

/// The `Hits` of an agent's report: each a rule or an implicit decision of groups, with
/// the flows it decided since the last report and when.
fn parse_hits(hits: &Value) -> Result<Vec<control::Hit>, ServerError> {
    let Some(list) = hits.as_array() else {
        return Ok(Vec::new());
    };
    let bad = |what: &str| ServerError::invalid("Hits", what.to_string());
    list.iter()
        .map(|h| {
            let number = |k: &str| h[k].as_u64().ok_or_else(|| bad(k));
            let subject = match (h["SecurityGroupRuleId"].as_str(), h["Decision"].as_str()) {
                (Some(rule), None) => {
                    control::HitSubject::Rule(rule.parse().map_err(ServerError::from)?)
                }
                (None, Some(decision)) => control::HitSubject::Implicit(
                    h["SecurityGroupIds"]
                        .as_array()
                        .ok_or_else(|| bad("SecurityGroupIds"))?
                        .iter()
                        .map(|g| {
                            g.as_str()
                                .ok_or_else(|| bad("SecurityGroupIds"))?
                                .parse()
                                .map_err(ServerError::from)
                        })
                        .collect::<Result<_, _>>()?,
                    control::ImplicitDecision::parse(decision).ok_or_else(|| bad(decision))?,
                ),
                _ => return Err(bad("a rule or a decision")),
            };
            Ok(control::Hit {
                subject,
                packets: number("Packets")?,
                bytes: number("Bytes")?,
                first: number("FirstHit")?,
                last: number("LastHit")?,
            })
        })
        .collect()
}

/// `GET /agent/v1/hosts`.
pub(crate) async fn hosts(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    // Every host's report: the fleet's to read, not one host's.
    match authorized(&state, &headers).await {
        Ok(Agent::Fleet) => {}
        Ok(Agent::Host(h)) => return failure(&ServerError::AgentTokenOtherHost(h.to_string())),
        Err(e) => return failure(&e),
    }
    let hosts = state.hosts.lock().unwrap_or_else(|e| e.into_inner());
    let list: Vec<Value> = hosts
        .iter()
        .map(|(host, (seen, report))| json!({"HostId": host, "LastSeen": seen, "Report": report}))
        .collect();
    Json(json!({"RequestId": request_id(), "Hosts": list})).into_response()
}

/// Revisions of a region kept: how far behind an agent may fall and still get a delta made
/// from the region's changed items (beyond it, its whole share is compared).
const HISTORY: usize = 32;

/// A region's policy at one revision, read in one transaction and shared by every host's
/// answer: the snapshot, the interfaces bound to each host, every item's hash, and (once a
/// whole answer is asked for) every item's text.
pub(crate) struct RegionAt {
    region: String,
    revision: u64,
    snapshot: policy::Snapshot,
    bound: BTreeMap<model::HostId, Vec<control::Placement>>,
    hashes: policy::delta::RegionHashes,
    texts: OnceLock<policy::delta::Texts>,
}

impl RegionAt {
    fn region(&self) -> &str {
        &self.region
    }
}

/// (Region, host).
type HostKey = (String, String);

/// Most hosts whose digests are kept.
const MAX_DIGESTS: usize = 65_536;

/// The store's revision as the feed last read it: read again once this process has
/// committed since (its commit count moved) or `RECHECK` has passed (commits of another
/// process), so that a thousand waiting polls cost one query rather than one each.
#[derive(Default)]
pub(crate) struct KnownRevision(Mutex<Option<(u64, Instant, u64)>>);

impl KnownRevision {
    /// The revision last read, if still current.
    fn fresh(&self, control: &control::Control) -> Option<u64> {
        // Not waiting for a caller that is reading it: that is `read`'s, off the async threads.
        let known = *self.0.try_lock().ok()?;
        known
            .filter(|(commits, at, _)| *commits == control.commits() && at.elapsed() < RECHECK)
            .map(|(_, _, revision)| revision)
    }

    /// The current revision, read from the store unless still known (by one caller while
    /// the others wait for it).
    fn read(&self, control: &control::Control) -> Result<u64, ServerError> {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Counted before the query: a commit in between makes the next caller read again.
        let commits = control.commits();
        if let Some((c, at, revision)) = *known {
            if c == commits && at.elapsed() < RECHECK {
                return Ok(revision);
            }
        }
        let revision = control.revision()?;
        *known = Some((commits, Instant::now(), revision));
        Ok(revision)
    }
}

/// What the feed remembers: per region the last revisions made (and through their hashes
/// the chain that says what changed between them), the store's revision, and per (region,
/// host) the revision and digest of the last answer, the base of the host's next delta (a
/// few bytes per item of its share). Items are hashed with keys drawn at random when the
/// server starts.
#[derive(Default)]
pub(crate) struct Feed {
    revision: KnownRevision,
    regions: Mutex<HashMap<String, BTreeMap<u64, Arc<RegionAt>>>>,
    /// Held while a region's next revision is made.
    builder: Mutex<()>,
    /// A refresh after a commit is waiting to start (see [`AppState::committed`]).
    pub(crate) refresh_pending: std::sync::atomic::AtomicBool,
    /// Held by the one refresh running.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
    keys: std::hash::RandomState,
    digests: Mutex<HashMap<HostKey, (u64, policy::delta::Digest)>>,
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
