//! Stockade's ECS-compatible HTTP API.
//!
//! RPC style on `/` (GET or POST, parameters in the query string and/or a form body), the
//! product chosen by `Version` (`2014-05-26` ECS; `2016-04-28` VPC arrives with the VPC
//! actions), the action by `Action` (or by the `x-acs-action` / `x-acs-version` headers of V3
//! requests). Every request is authenticated (see [`auth`]) before it reaches an action; every
//! failure is an ECS error body with its HTTP status.

pub mod actions;
mod agents;
pub mod auth;
mod cache;
mod console;
pub mod error;
pub mod http;
pub mod metrics;
mod paging;
pub mod wire;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use control::{Control, Ctx};
use sha2::Digest;

pub use actions::analysis::{audit_json, exposure_json, flow_verdict_json};
pub use actions::{Action, Mode, Reply};
pub use error::ServerError;

use actions::{Call, RegionSource};
use auth::Scheme;
use error::Result;
use wire::{render, render_error, request_id, Format, Params};

/// The ECS API version.
pub const ECS_VERSION: &str = "2014-05-26";
/// The VPC API version.
pub const VPC_VERSION: &str = "2016-04-28";

/// What the request handlers share.
pub struct AppState {
    /// The control plane.
    pub control: Arc<Control>,
    /// Regions served (the first is the default in `DescribeRegions`).
    pub regions: Vec<String>,
    engines: actions::analysis::EngineCache,
    /// The bearer token agents present; `None` refuses every agent.
    agent_token: Option<String>,
    /// Woken after every request during which the store committed a change (agent long
    /// polls wait on it).
    changed: tokio::sync::Notify,
    hosts: agents::HostRegistry,
    feed: agents::Feed,
    closing: std::sync::atomic::AtomicBool,
    reads: cache::ReadCache,
    request_limits: wire::RequestLimits,
    sessions: console::Sessions,
    /// Served over TLS: the console's cookie is `Secure` and only `https` origins pass.
    https: bool,
    /// The Prometheus families (`stockade serve --metrics-listen` serves them).
    pub metrics: metrics::Metrics,
}

impl AppState {
    /// State over a control plane, serving `regions`.
    pub fn new(control: Arc<Control>, regions: Vec<String>) -> AppState {
        let metrics = metrics::Metrics::default();
        let commits = metrics.commits();
        control.observe_commits(move |took| commits.observe(took.as_secs_f64()));
        AppState {
            control,
            regions,
            engines: Default::default(),
            agent_token: None,
            changed: tokio::sync::Notify::new(),
            hosts: Default::default(),
            feed: Default::default(),
            closing: Default::default(),
            reads: Default::default(),
            request_limits: Default::default(),
            sessions: Default::default(),
            https: false,
            metrics,
        }
    }

    /// Refuses a signature nonce seen before within the timestamp window (remembered in the
    /// store, so across restarts and, on PostgreSQL, across replicas).
    fn check_nonce(&self, access_key: &str, nonce: &str) -> Result<()> {
        let keep = 2 * auth::TIMESTAMP_WINDOW.as_secs() as i64;
        if self.control.remember_nonce(access_key, nonce, keep)? {
            Ok(())
        } else {
            Err(ServerError::SignatureNonceUsed)
        }
    }

    /// Ends waiting agent long polls (they answer with the current policy): call when the
    /// server starts draining, so they do not hold the shutdown open.
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// After a request that committed: the agent feed makes the new revision of the regions
    /// agents follow, then wakes the waiting polls; in the background, so that the request's
    /// answer does not wait for it.
    ///
    /// At most one refresh runs and at most one waits behind it, so a tenant's flood of
    /// writes costs one region build at a time, each at the newest revision, rather than
    /// one queued build (and one blocking thread) per commit. A commit made before the
    /// waiting refresh starts is covered by it: the refresh reads the revision after
    /// clearing the flag.
    fn committed(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.feed.refresh_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            let _running = state.feed.refreshing.lock().await;
            state.feed.refresh_pending.store(false, Ordering::Release);
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || agents::refresh(&s)).await;
            state.changed.notify_waiters();
        });
    }

    /// Refuses requests over `limits` instead of the defaults.
    pub fn with_request_limits(mut self, limits: wire::RequestLimits) -> AppState {
        self.request_limits = limits;
        self
    }

    /// Marks the state as served over TLS (`stockade serve --tls-cert`).
    pub fn with_https(mut self) -> AppState {
        self.https = true;
        self
    }

    /// Accepts agents that present `token` on the agent feed.
    pub fn with_agent_token(mut self, token: String) -> AppState {
        self.agent_token = Some(token);
        self
    }
}

/// The HTTP application: the RPC endpoint, `/healthz`, the agent feed and the console.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(console::routes())
        .route("/", get(rpc).post(rpc))
        .route("/healthz", get(|| async { "ok" }))
        .route("/agent/v1/policy", get(agents::policy))
        .route("/agent/v1/status", axum::routing::post(agents::status))
        .route("/agent/v1/hosts", get(agents::hosts))
        .with_state(state)
}

async fn rpc(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let id = request_id();
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, state.request_limits.max_body).await else {
        return render_error(Format::Json, "stockade", &id, &ServerError::BodyTooLarge);
    };
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("stockade")
        .to_string();
    let is_form = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let mut params = Params::parse(parts.uri.query(), is_form.then_some(&body[..]));
    let format = Format::of(&params);
    let state2 = state.clone();
    let commits = state.control.commits();
    // The store is synchronous (SQLite): run the request on the blocking pool.
    let (action, outcome) = tokio::task::spawn_blocking(move || {
        let query = parts.uri.query().unwrap_or_default();
        let outcome = handle(
            &state2,
            &parts.method,
            &parts.headers,
            query,
            &body,
            &mut params,
        );
        // Named for the metrics even when refused, if it is an action of the table.
        let action = params
            .opt("Action")
            .zip(params.opt("Version"))
            .and_then(|(name, version)| Action::parse(&version, &name).ok());
        (action, outcome)
    })
    .await
    .unwrap_or_else(|e| {
        (
            None,
            Err(ServerError::internal(format!("request task: {e}"))),
        )
    });
    let code = match &outcome {
        Ok(_) => std::borrow::Cow::Borrowed("OK"),
        Err(e) => model::EcsError::code(e),
    };
    state
        .metrics
        .request(action.map(Action::name), &code, started.elapsed());
    // Agent long polls wait for a commit; reads (most requests) must not wake them all.
    if state.control.commits() != commits {
        state.committed();
    }
    match outcome {
        Ok((_, Answer::Cached(fields))) => wire::render_json_fields(&id, &fields),
        Ok((action, Answer::Value(value))) => render(
            200,
            format,
            &format!("{}Response", action.name()),
            &id,
            value,
        ),
        Err(e) => render_error(format, &host, &id, &e),
    }
}

/// An action's answer: its fields, or (for a cached read) those fields already as JSON.
enum Answer {
    Value(serde_json::Value),
    Cached(std::sync::Arc<str>),
}

/// Authenticates, resolves the action and its region, then runs it (through the read cache
/// when the action is cached).
fn handle(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    query: &str,
    body: &Bytes,
    params: &mut Params,
) -> Result<(Action, Answer)> {
    params.check_limits(&state.request_limits)?;
    let account = authenticate(state, method, headers, query, body, params)?;
    let name = params.required("Action")?;
    let action = Action::parse(&params.required("Version")?, &name)?;
    let ctx = Ctx {
        account,
        region: region(state, action, account, params)?,
    };
    let call = Call {
        state,
        ctx: &ctx,
        params,
        action,
        mode: Mode::of(params)?,
    };
    let run = |call: &Call| match actions::execute(call)? {
        Reply::Body(value) => Ok(value),
        Reply::Previewed(_) => Err(ServerError::internal(format!(
            "{} answered a preview outside a preview",
            action.name()
        ))),
    };
    if !action.is_cached() || Format::of(params) != Format::Json {
        return Ok((action, Answer::Value(run(&call)?)));
    }
    let key = cache::ReadCache::key(account, &ctx.region, params);
    let before = state.control.revision()?;
    if let Some(fields) = state.reads.get(&key, before) {
        return Ok((action, Answer::Cached(fields)));
    }
    let fields: std::sync::Arc<str> = run(&call)?.to_string().into();
    // Kept only if no change committed meanwhile: the answer is then the state at `before`.
    if state.control.revision()? == before {
        state.reads.put(key, before, fields.clone());
    }
    Ok((action, Answer::Cached(fields)))
}

/// The region a request acts in (see [`RegionSource`]).
fn region(
    state: &AppState,
    action: Action,
    account: model::AccountId,
    params: &Params,
) -> Result<String> {
    match (action.region_source(), params.opt("RegionId")) {
        (RegionSource::Optional, r) => Ok(r.unwrap_or_else(|| state.regions[0].clone())),
        (RegionSource::OrInstance, None) => Ok(match actions::target(params)? {
            actions::Target::Instance(i) => state
                .control
                .instance_region(account, &i)?
                .ok_or(control::ControlError::InstanceNotFound(i))?,
            actions::Target::Interface(n) => state
                .control
                .interface_region(account, &n)?
                .ok_or(control::ControlError::NetworkInterfaceNotFound(n))?,
        }),
        (_, None) => Err(model::ModelError::Missing("RegionId").into()),
        (_, Some(r)) if !state.regions.contains(&r) => Err(ServerError::RegionNotFound(r)),
        (_, Some(r)) => Ok(r),
    }
}

fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    query: &str,
    body: &Bytes,
    params: &mut Params,
) -> Result<model::AccountId> {
    match auth::scheme(params, headers)? {
        Scheme::V1 => {
            let ak = params.required("AccessKeyId")?;
            auth::check_v1_parameters(params)?;
            let (account, secret) = state.control.access_key(&ak)?;
            let sts = auth::v1_string_to_sign(method.as_str(), params.all());
            let given = params.required("Signature")?;
            if !auth::same(&auth::v1_signature(&secret, &sts), &given) {
                return Err(ServerError::SignatureMismatch(sts));
            }
            auth::check_timestamp(&params.required("Timestamp")?)?;
            let nonce = params.required("SignatureNonce")?;
            state.check_nonce(&ak, &nonce)?;
            Ok(account)
        }
        Scheme::V3(a) => {
            auth::check_v3_signed_headers(&a.signed_headers)?;
            let (account, secret) = state.control.access_key(&a.credential)?;
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let payload_hash = header("x-acs-content-sha256")
                .ok_or(model::ModelError::Missing("x-acs-content-sha256"))?;
            if payload_hash != hex::encode(sha2::Sha256::digest(body)) {
                return Err(ServerError::ContentHashMismatch);
            }
            // Only V3 signs the query string apart from the body: parsed here, not per request.
            let query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let sts = auth::v3_string_to_sign(
                method.as_str(),
                "/",
                &query,
                headers,
                &a.signed_headers,
                &payload_hash,
            );
            if !auth::same(&auth::v3_signature(&secret, &sts), &a.signature) {
                return Err(ServerError::SignatureMismatch(sts));
            }
            auth::check_timestamp(
                &header("x-acs-date").ok_or(model::ModelError::Missing("x-acs-date"))?,
            )?;
            let nonce = header("x-acs-signature-nonce")
                .ok_or(model::ModelError::Missing("x-acs-signature-nonce"))?;
            state.check_nonce(&a.credential, &nonce)?;
            for (h, p) in [("x-acs-action", "Action"), ("x-acs-version", "Version")] {
                if let Some(v) = header(h) {
                    params.insert(p, &v);
                }
            }
            Ok(account)
        }
    }
}
