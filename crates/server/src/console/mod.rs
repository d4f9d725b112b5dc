//! The web console at `/console`: the seed's walkthrough in a browser, on the API's listener.
//!
//! **Pages read and change state only through the API's actions** ([`run`] builds a
//! request of the signed-in account and hands it to the same handlers `/` does), so the
//! console has no validation, rule or tenancy check of its own to drift: what it shows is
//! what an SDK would get, errors included (shown with their ECS code, in plain words).
//!
//! **Sessions** (decided over signing requests in the browser): the AccessKey secret is
//! given once, at sign-in, and never reaches a script; the browser then holds a random
//! session token in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/console`. The
//! server keeps only the token's SHA-256, with the account, the key id and a digest of the
//! secret; every request re-reads the key from the store, so a deleted or rotated key ends
//! its sessions at once. Sessions expire after 30 idle minutes and 8 hours in all.
//! Sessions live in this replica's memory: behind a load balancer the console needs
//! sticky sessions (or the user signs in again), a cost accepted to keep secrets-derived
//! state out of the shared store.
//!
//! **Changes** are `POST`s that must carry the session's CSRF token and, when the browser
//! sends them, an `Origin` of this server (a same-site page on another port is another
//! origin); `SameSite=Strict` alone would not stop such a page. Every change that alters
//! who reaches whom is first previewed (`PreviewSecurityGroupChange`: the flows it would
//! flip) and applied only on confirmation.
//!
//! **Output is inert**: pages are rendered by `maud`, which escapes every interpolated
//! string, and served with a Content-Security-Policy that allows no inline script or style.

mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::Router;
use control::Ctx;
use model::{AccountId, EcsError};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::actions::{self, Action, Call, Mode, Reply};
use crate::error::ServerError;
use crate::wire::Params;
use crate::AppState;

/// How long a session may sit unused.
const IDLE: Duration = Duration::from_secs(30 * 60);
/// How long a session may live at most.
const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Most live sessions of one AccessKey: signing in again past it ends the oldest, so no key
/// can fill the server's memory with sessions.
const SESSIONS_PER_KEY: usize = 16;
/// The session cookie's name.
const COOKIE: &str = "stockade_console";

/// The value of a session lookup, or (from the handler) the answer it gave instead: a
/// redirect to sign in, or a refusal.
macro_rules! signed_in {
    ($lookup:expr) => {
        match $lookup {
            Ok(x) => x,
            Err(answer) => return *answer,
        }
    };
}

/// The console's routes (merged into the application by [`crate::app`]).
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/signin", get(signin_page).post(signin))
        .route("/console/signout", post(signout))
        .route("/console/assets/{name}", get(asset))
        .route("/console/groups", get(groups).post(create_group))
        .route("/console/groups/{id}", get(group))
        .route("/console/groups/{id}/rules", post(rule_change))
        .route("/console/instances", get(instances))
        .route("/console/flow", get(flow))
        .route("/console/exposure", get(exposure))
        .route("/console/audit", get(audit))
        .route("/console/map", get(map))
        .route("/console/prefix-lists", get(prefix_lists))
        .route("/console/do", post(change))
        .route("/console/{*rest}", any(no_such_page))
        .layer(axum::middleware::map_response(own_answer))
}

/// No console page at this path.
async fn no_such_page() -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::problem("Not found", "There is no such console page."),
    )
}

/// Every console answer in the console's own form: the router's and extractors' refusals
/// (a wrong method, a path segment that does not decode, an oversized body) carry no page
/// and none of [`harden`]'s headers, so they are replaced by a console error page.
async fn own_answer(response: Response) -> Response {
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let status = response.status();
    if status.is_client_error() && !is_page {
        let why = status.canonical_reason().unwrap_or("Bad request");
        return html(status, pages::problem("Request refused", why));
    }
    harden(response)
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    account: AccountId,
    access_key_id: String,
    /// SHA-256 of the secret signed in with: a rotated secret ends the session.
    secret_digest: [u8; 32],
    csrf: String,
    region: String,
    created: Instant,
    last_seen: Instant,
    /// A message for the next page shown (the outcome of a change).
    flash: Option<Notice>,
}

/// A message shown once at the top of a page.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// A change was applied.
    Done(String),
    /// A request failed: the ECS code and message.
    Failed { code: String, message: String },
}

impl Notice {
    fn failed(e: &ServerError) -> Notice {
        Notice::Failed {
            code: e.code().into_owned(),
            message: e.to_string(),
        }
    }
}

/// Sessions by the SHA-256 of their token.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

impl Session {
    /// Whether the session is within its idle and absolute lifetimes at `now`.
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) < LIFETIME
            && now.saturating_duration_since(self.last_seen) < IDLE
    }
}

impl Sessions {
    /// Keeps `session` under `token_digest`, forgetting expired sessions and, past
    /// [`SESSIONS_PER_KEY`], the key's oldest.
    fn open(&self, token_digest: [u8; 32], session: Session) {
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.fresh(now));
        let mut same: Vec<([u8; 32], Instant)> = sessions
            .iter()
            .filter(|(_, s)| s.access_key_id == session.access_key_id)
            .map(|(k, s)| (*k, s.created))
            .collect();
        same.sort_by_key(|(_, created)| *created);
        let excess = (same.len() + 1).saturating_sub(SESSIONS_PER_KEY);
        for (k, _) in same.into_iter().take(excess) {
            sessions.remove(&k);
        }
        sessions.insert(token_digest, session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// 244 bits from the operating system's generator, as 64 hex digits.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The session of this request, if it is live and its key still exists unchanged; a dead
/// one is forgotten. The key is read on the blocking pool (the store is synchronous).
async fn session(state: &Arc<AppState>, headers: &HeaderMap) -> Option<([u8; 32], Session)> {
    let key = digest(&cookie_token(headers)?);
    let found = state.sessions.lock().get(&key).cloned()?;
    let now = Instant::now();
    let current = found.fresh(now) && {
        let (state, id) = (state.clone(), found.access_key_id.clone());
        tokio::task::spawn_blocking(move || state.control.access_key(&id).ok())
            .await
            .ok()
            .flatten()
            .is_some_and(|(account, secret)| {
                account == found.account && digest(&secret) == found.secret_digest
            })
    };
    let mut sessions = state.sessions.lock();
    if !current {
        sessions.remove(&key);
        return None;
    }
    let s = sessions.get_mut(&key)?;
    s.last_seen = now;
    Some((key, s.clone()))
}

/// Takes the session's pending notice.
fn take_flash(state: &AppState, key: &[u8; 32]) -> Option<Notice> {
    state
        .sessions
        .lock()
        .get_mut(key)
        .and_then(|s| s.flash.take())
}

fn set_flash(state: &AppState, key: &[u8; 32], notice: Notice) {
    if let Some(s) = state.sessions.lock().get_mut(key) {
        s.flash = Some(notice);
    }
}

/// The headers every console answer carries: no inline script or style, no framing, no
/// caching of account data, no referrer leaking ids.
fn harden(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        // `same-origin`, not `no-referrer`: with the latter, browsers send `Origin: null` on
        // form posts, and the origin check needs the real one.
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A hardened redirect to a console page. `Redirect::to` panics on a value a header cannot
/// carry (a CR or LF that came in percent-encoded in a path or form field), which would
/// answer a bare 500: such a target goes to the group list instead.
fn redirect(to: &str) -> Response {
    let to = if HeaderValue::from_str(to).is_ok() {
        to
    } else {
        "/console/groups"
    };
    harden(Redirect::to(to).into_response())
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    harden(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response(),
    )
}

fn to_signin() -> Response {
    redirect("/console/signin")
}

/// Whether a `POST` comes from a page of this server: the browser's `Origin` (or, without
/// one, `Sec-Fetch-Site`) must say so. Requests without either (curl, old browsers) still
/// need the CSRF token.
fn same_origin(headers: &HeaderMap, https: bool) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let scheme = if https { "https" } else { "http" };
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin == format!("{scheme}://{host}"),
        (Some(_), None) => false,
        (None, _) => get("sec-fetch-site").is_none_or(|s| s == "same-origin" || s == "none"),
    }
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// A `POST` of a signed-in browser: its session, after the origin and CSRF checks.
async fn authorized_post(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<([u8; 32], Session), Box<Response>> {
    let refused = |why: &str| html(StatusCode::FORBIDDEN, pages::refused(why));
    if !same_origin(headers, state.https) {
        return Err(Box::new(refused(
            "The request came from a page of another site.",
        )));
    }
    let Some((key, s)) = session(state, headers).await else {
        return Err(Box::new(to_signin()));
    };
    if !crate::auth::same(field(form, "csrf"), &s.csrf) {
        return Err(Box::new(refused(
            "The form's anti-forgery token is missing or stale: reload the page and try again.",
        )));
    }
    Ok((key, s))
}

/// Runs one API action as the session's account: the handlers, validation, limits and
/// errors of `/`, on the blocking pool, waking agents if it committed.
async fn run(
    state: &Arc<AppState>,
    session: &Session,
    action: Action,
    fields: Vec<(String, String)>,
) -> Result<Value, ServerError> {
    let state = state.clone();
    let session = session.clone();
    let commits = state.control.commits();
    let outcome = tokio::task::spawn_blocking({
        let state = state.clone();
        move || run_blocking(&state, &session, action, &fields)
    })
    .await
    .unwrap_or_else(|e| Err(ServerError::internal(format!("console task: {e}"))));
    if state.control.commits() != commits {
        state.committed();
    }
    outcome
}

fn run_blocking(
    state: &AppState,
    session: &Session,
    action: Action,
    fields: &[(String, String)],
) -> Result<Value, ServerError> {
    let mut params = Params::default();
    for (k, v) in fields {
        if !v.is_empty() {
            params.insert(k, v);
        }
    }
    params.insert("RegionId", &session.region);
    params.check_limits(&state.request_limits)?;
    let ctx = Ctx {
        account: session.account,
        region: session.region.clone(),
    };
    let call = Call {
        state,
        ctx: &ctx,
        params: &params,
        action,
        mode: Mode::Commit,
    };
    match actions::execute(&call)? {
        Reply::Body(v) => Ok(v),
        Reply::Previewed(_) => Err(ServerError::internal("a preview outside a preview")),
    }
}

/// The items of a list field of an answer (`{"SecurityGroups": {"SecurityGroup": [...]}}`).
pub(crate) fn items<'a>(v: &'a Value, outer: &str, inner: &str) -> &'a [Value] {
    v[outer][inner].as_array().map_or(&[], Vec::as_slice)
}

/// A string field of an answer ("" when absent; numbers as text).
pub(crate) fn text(v: &Value, name: &str) -> String {
    match &v[name] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The query string's pairs.
fn query(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match session(&state, &headers).await {
        Some(_) => redirect("/console/groups"),
        None => to_signin(),
    }
}

async fn signin_page() -> Response {
    html(StatusCode::OK, pages::signin(None))
}

async fn signin(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&headers, state.https) {
        return html(
            StatusCode::FORBIDDEN,
            pages::refused("The request came from a page of another site."),
        );
    }
    let form = form(&body);
    let (id, secret) = (field(&form, "AccessKeyId"), field(&form, "AccessKeySecret"));
    let known = if id.is_empty() {
        None
    } else {
        let (state, id) = (state.clone(), id.to_string());
        tokio::task::spawn_blocking(move || state.control.access_key(&id).ok())
            .await
            .ok()
            .flatten()
    };
    // One answer for an unknown key and a wrong secret: the form is no oracle for key ids.
    let Some((account, stored)) = known.filter(|(_, s)| crate::auth::same(s, secret)) else {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::signin(Some("The AccessKey ID or secret is not valid.")),
        );
    };
    let token = random_token();
    let now = Instant::now();
    let session = Session {
        account,
        access_key_id: id.to_string(),
        secret_digest: digest(&stored),
        csrf: random_token(),
        region: state.regions[0].clone(),
        created: now,
        last_seen: now,
        flash: None,
    };
    state.sessions.open(digest(&token), session);
    let mut response = redirect("/console/groups");
    let cookie = format!(
        "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if state.https { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn signout(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form(&body);
    let (key, _) = signed_in!(authorized_post(&state, &headers, &form).await);
    state.sessions.lock().remove(&key);
    let mut response = to_signin();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "stockade_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "console.css" => (
            include_str!("assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_str!("assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return harden(StatusCode::NOT_FOUND.into_response()),
    };
    let mut r = ([(header::CONTENT_TYPE, kind)], body).into_response();
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    harden(r)
}

/// What a page needs of its session.
pub(crate) struct Frame {
    csrf: String,
    region: String,
    account_key: String,
    flash: Option<Notice>,
    /// The path and query of the page, where a change made from it returns.
    here: String,
}

/// The session of a page view, or the answer sending the browser to sign in.
async fn page_session(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    here: String,
) -> Result<(Session, Frame), Box<Response>> {
    let Some((key, s)) = session(state, headers).await else {
        return Err(Box::new(to_signin()));
    };
    let flash = take_flash(state, &key);
    let frame = Frame {
        csrf: s.csrf.clone(),
        region: s.region.clone(),
        account_key: s.access_key_id.clone(),
        flash,
        here,
    };
    Ok((s, frame))
}

fn here(path: &str, raw: &Option<String>) -> String {
    match raw {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

/// Reads several actions for one page; the first failure becomes the page's notice.
struct Reads<'a> {
    state: &'a Arc<AppState>,
    session: &'a Session,
    failure: Option<Notice>,
}

impl Reads<'_> {
    async fn get(&mut self, action: Action, fields: &[(&str, &str)]) -> Value {
        let fields = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match run(self.state, self.session, action, fields).await {
            Ok(v) => v,
            Err(e) => {
                self.failure.get_or_insert(Notice::failed(&e));
                Value::Null
            }
        }
    }
}

fn reads<'a>(state: &'a Arc<AppState>, session: &'a Session) -> Reads<'a> {
    Reads {
        state,
        session,
        failure: None,
    }
}

fn with_failure(mut frame: Frame, reads: &Reads) -> Frame {
    if frame.flash.is_none() {
        frame.flash = reads.failure.clone();
    }
    frame
}

async fn groups(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let (s, frame) =
        signed_in!(page_session(&state, &headers, here("/console/groups", &raw)).await);
    let q = query(&raw);
    let mut filter: Vec<(&str, &str)> = vec![("PageSize", "100")];
    for name in ["VpcId", "SecurityGroupName", "SecurityGroupType"] {
        filter.push((name, field(&q, name)));
    }
    if !field(&q, "TagKey").is_empty() {
        filter.push(("Tag.1.Key", field(&q, "TagKey")));
        filter.push(("Tag.1.Value", field(&q, "TagValue")));
    }
    let mut r = reads(&state, &s);
    let list = r.get(Action::DescribeSecurityGroups, &filter).await;
    let vpcs = r.get(Action::DescribeVpcs, &[("PageSize", "50")]).await;
    let frame = with_failure(frame, &r);
    html(StatusCode::OK, pages::groups(&frame, &q, &list, &vpcs))
}

async fn create_group(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form(&body);
    let (key, s) = signed_in!(authorized_post(&state, &headers, &form).await);
    let mut fields: Vec<(String, String)> = [
        "SecurityGroupName",
        "Description",
        "VpcId",
        "SecurityGroupType",
    ]
    .iter()
    .map(|k| (k.to_string(), field(&form, k).to_string()))
    .collect();
    if !field(&form, "TagKey").is_empty() {
        fields.push(("Tag.1.Key".into(), field(&form, "TagKey").into()));
        fields.push(("Tag.1.Value".into(), field(&form, "TagValue").into()));
    }
    match run(&state, &s, Action::CreateSecurityGroup, fields).await {
        Ok(v) => {
            let id = text(&v, "SecurityGroupId");
            set_flash(&state, &key, Notice::Done(format!("Created {id}.")));
            redirect(&format!("/console/groups/{id}"))
        }
        Err(e) => {
            set_flash(&state, &key, Notice::failed(&e));
            redirect("/console/groups")
        }
    }
}

async fn group(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (s, frame) = signed_in!(
        page_session(
            &state,
            &headers,
            here(&format!("/console/groups/{id}"), &raw),
        )
        .await
    );
    let mut r = reads(&state, &s);
    let attribute = r
        .get(
            Action::DescribeSecurityGroupAttribute,
            &[("SecurityGroupId", &id), ("MaxResults", "1000")],
        )
        .await;
    if attribute.is_null() {
        let frame = with_failure(frame, &r);
        return html(StatusCode::NOT_FOUND, pages::missing(&frame, &id));
    }
    let summary = r
        .get(
            Action::DescribeSecurityGroups,
            &[("SecurityGroupId", &id), ("PageSize", "1")],
        )
        .await;
    let members = r
        .get(
            Action::DescribeInstances,
            &[("SecurityGroupId", &id), ("PageSize", "100")],
        )
        .await;
    let all = r
        .get(Action::DescribeInstances, &[("PageSize", "100")])
        .await;
    let references = r
        .get(
            Action::DescribeSecurityGroupReferences,
            &[("SecurityGroupId.1", &id)],
        )
        .await;
    let hits = r
        .get(
            Action::DescribeSecurityGroupRuleHits,
            &[("SecurityGroupId", &id)],
        )
        .await;
    let frame = with_failure(frame, &r);
    let q = query(&raw);
    let view = pages::GroupView {
        attribute: &attribute,
        summary: items(&summary, "SecurityGroups", "SecurityGroup")
            .first()
            .unwrap_or(&Value::Null),
        members: items(&members, "Instances", "Instance"),
        instances: items(&all, "Instances", "Instance"),
        references: items(
            &references,
            "SecurityGroupReferences",
            "SecurityGroupReference",
        ),
        editing: field(&q, "edit"),
        hits: &hits,
    };
    html(StatusCode::OK, pages::group(&frame, &view))
}

/// The add and edit rule forms: neutral fields (direction, peer kind and value) mapped onto
/// the parameters of `Authorize…` or `ModifySecurityGroup(Egress)Rule`, then the usual
/// preview and confirmation.
async fn rule_change(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form(&body);
    let (key, s) = signed_in!(authorized_post(&state, &headers, &form).await);
    let egress = field(&form, "Direction") == "egress";
    let rule = field(&form, "SecurityGroupRuleId");
    let action = match (egress, rule.is_empty()) {
        (false, true) => Action::AuthorizeSecurityGroup,
        (true, true) => Action::AuthorizeSecurityGroupEgress,
        (false, false) => Action::ModifySecurityGroupRule,
        (true, false) => Action::ModifySecurityGroupEgressRule,
    };
    let (side, v6) = if egress {
        ("Dest", "Ipv6DestCidrIp")
    } else {
        ("Source", "Ipv6SourceCidrIp")
    };
    let peer_field = match field(&form, "PeerKind") {
        "ipv6" => v6.to_string(),
        "group" => format!("{side}GroupId"),
        "prefixlist" => format!("{side}PrefixListId"),
        _ => format!("{side}CidrIp"),
    };
    let mut fields = vec![
        ("SecurityGroupId".to_string(), id.clone()),
        (peer_field, field(&form, "Peer").trim().to_string()),
    ];
    // The instance's own side of a quintuple rule: the destination of inbound traffic, the
    // source of outbound.
    let local = field(&form, "Local").trim();
    if !local.is_empty() {
        let name = match (egress, local.contains(':')) {
            (false, false) => "DestCidrIp",
            (false, true) => "Ipv6DestCidrIp",
            (true, false) => "SourceCidrIp",
            (true, true) => "Ipv6SourceCidrIp",
        };
        fields.push((name.to_string(), local.to_string()));
    }
    for name in [
        "SecurityGroupRuleId",
        "IpProtocol",
        "PortRange",
        "PortRangeListId",
        "SourcePortRange",
        "Policy",
        "Priority",
        "NicType",
        "Description",
    ] {
        fields.push((name.to_string(), field(&form, name).trim().to_string()));
    }
    let back = format!("/console/groups/{id}");
    propose(&state, key, &s, action, fields, &back, false).await
}

/// `POST /console/do`: one action with its own parameters (the buttons of the pages and
/// the confirmation of a preview). Only the actions the pages offer are accepted.
async fn change(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form(&body);
    let (key, s) = signed_in!(authorized_post(&state, &headers, &form).await);
    const OFFERED: [Action; 18] = [
        Action::AuthorizeSecurityGroup,
        Action::AuthorizeSecurityGroupEgress,
        Action::RevokeSecurityGroup,
        Action::RevokeSecurityGroupEgress,
        Action::ModifySecurityGroupRule,
        Action::ModifySecurityGroupEgressRule,
        Action::ModifySecurityGroupAttribute,
        Action::ModifySecurityGroupPolicy,
        Action::DeleteSecurityGroup,
        Action::JoinSecurityGroup,
        Action::LeaveSecurityGroup,
        Action::TagResources,
        Action::UntagResources,
        Action::CreatePrefixList,
        Action::ModifyPrefixList,
        Action::DeletePrefixList,
        Action::AttachNetworkInterface,
        Action::DetachNetworkInterface,
    ];
    let back = safe_return(field(&form, "return"));
    let name = field(&form, "Action");
    let action = match Action::parse(crate::ECS_VERSION, name) {
        Ok(a) if OFFERED.contains(&a) => a,
        _ => {
            set_flash(
                &state,
                &key,
                Notice::failed(&ServerError::invalid("Action", name)),
            );
            return redirect(&back);
        }
    };
    let confirmed = field(&form, "confirm") == "1";
    let fields: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "csrf" | "Action" | "return" | "confirm"))
        .cloned()
        .collect();
    propose(&state, key, &s, action, fields, &back, confirmed).await
}

/// Where a change returns: a console page, never another site.
fn safe_return(path: &str) -> String {
    // Visible ASCII only: a control character or space cannot be in a header.
    if path.starts_with("/console/")
        && !path.starts_with("/console//")
        && !path.contains('\\')
        && path.bytes().all(|b| b.is_ascii_graphic())
    {
        path.to_string()
    } else {
        "/console/groups".to_string()
    }
}

/// Previews a change that alters who reaches whom (unless `confirmed`), else applies it and
/// returns to `back` with its outcome.
async fn propose(
    state: &Arc<AppState>,
    key: [u8; 32],
    session: &Session,
    action: Action,
    fields: Vec<(String, String)>,
    back: &str,
    confirmed: bool,
) -> Response {
    if !confirmed && action.is_previewable() {
        let mut preview = fields.clone();
        preview.push(("ChangeAction".into(), action.name().into()));
        match run(state, session, Action::PreviewSecurityGroupChange, preview).await {
            Ok(flips) => {
                let frame = Frame {
                    csrf: session.csrf.clone(),
                    region: session.region.clone(),
                    account_key: session.access_key_id.clone(),
                    flash: None,
                    here: back.to_string(),
                };
                return html(
                    StatusCode::OK,
                    pages::preview(&frame, action, &fields, &flips),
                );
            }
            Err(e) => {
                set_flash(state, &key, Notice::failed(&e));
                return redirect(back);
            }
        }
    }
    let (notice, to) = match run(state, session, action, fields).await {
        // A deleted group's page is gone: back to the list. A refused deletion stays where
        // the reason makes sense.
        Ok(_) if action == Action::DeleteSecurityGroup => (
            Notice::Done(format!("{} applied.", pages::describe_action(action))),
            "/console/groups",
        ),
        Ok(_) => (
            Notice::Done(format!("{} applied.", pages::describe_action(action))),
            back,
        ),
        Err(e) => (Notice::failed(&e), back),
    };
    set_flash(state, &key, notice);
    redirect(to)
}

async fn instances(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let (s, frame) =
        signed_in!(page_session(&state, &headers, here("/console/instances", &raw)).await);
    let mut r = reads(&state, &s);
    let list = r
        .get(Action::DescribeInstances, &[("PageSize", "100")])
        .await;
    let interfaces = r
        .get(Action::DescribeNetworkInterfaces, &[("PageSize", "100")])
        .await;
    let groups = r
        .get(Action::DescribeSecurityGroups, &[("PageSize", "100")])
        .await;
    let frame = with_failure(frame, &r);
    html(
        StatusCode::OK,
        pages::instances(
            &frame,
            items(&list, "Instances", "Instance"),
            items(&interfaces, "NetworkInterfaceSets", "NetworkInterfaceSet"),
            items(&groups, "SecurityGroups", "SecurityGroup"),
        ),
    )
}

async fn flow(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let (s, frame) = signed_in!(page_session(&state, &headers, here("/console/flow", &raw)).await);
    let q = query(&raw);
    let mut r = reads(&state, &s);
    let list = r
        .get(Action::DescribeInstances, &[("PageSize", "100")])
        .await;
    let asked = !field(&q, "IpProtocol").is_empty();
    let verdict = if asked {
        let end = |side: &str| {
            let value = field(&q, side).trim();
            let name = if value.starts_with("i-") {
                format!("{side}InstanceId")
            } else {
                format!("{side}Ip")
            };
            (name, value.to_string())
        };
        let (src, dst) = (end("Source"), end("Destination"));
        let fields: Vec<(String, String)> = [
            src,
            dst,
            ("IpProtocol".into(), field(&q, "IpProtocol").into()),
            (
                "DestinationPort".into(),
                field(&q, "DestinationPort").into(),
            ),
            ("SourcePort".into(), field(&q, "SourcePort").into()),
            ("NicType".into(), field(&q, "NicType").into()),
        ]
        .into_iter()
        .collect();
        match run(&state, &s, Action::DescribeFlowVerdict, fields).await {
            Ok(v) => Some(v),
            Err(e) => {
                r.failure.get_or_insert(Notice::failed(&e));
                None
            }
        }
    } else {
        None
    };
    let frame = with_failure(frame, &r);
    html(
        StatusCode::OK,
        pages::flow(
            &frame,
            &q,
            items(&list, "Instances", "Instance"),
            verdict.as_ref(),
        ),
    )
}

async fn exposure(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let (s, frame) =
        signed_in!(page_session(&state, &headers, here("/console/exposure", &raw)).await);
    let q = query(&raw);
    let mut r = reads(&state, &s);
    let list = r
        .get(Action::DescribeInstances, &[("PageSize", "100")])
        .await;
    let instances = items(&list, "Instances", "Instance").to_vec();
    // The internet-exposed list: every instance's inbound flows open to addresses outside
    // the private ranges.
    let mut exposed = Vec::new();
    for i in &instances {
        let id = text(i, "InstanceId");
        let e = r
            .get(Action::DescribeInstanceExposure, &[("InstanceId", &id)])
            .await;
        exposed.push((id, e));
    }
    let chosen = field(&q, "InstanceId").to_string();
    let frame = with_failure(frame, &r);
    html(
        StatusCode::OK,
        pages::exposure(&frame, &instances, &exposed, &chosen),
    )
}

async fn audit(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (s, frame) = signed_in!(page_session(&state, &headers, "/console/audit".into()).await);
    let mut r = reads(&state, &s);
    let findings = r.get(Action::DescribeSecurityGroupAudit, &[]).await;
    let frame = with_failure(frame, &r);
    html(
        StatusCode::OK,
        pages::audit(&frame, items(&findings, "Findings", "Finding")),
    )
}

async fn prefix_lists(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let here = here("/console/prefix-lists", &raw);
    let (s, frame) = signed_in!(page_session(&state, &headers, here).await);
    let mut r = reads(&state, &s);
    let listed = r
        .get(Action::DescribePrefixLists, &[("MaxResults", "100")])
        .await;
    let mut lists = Vec::new();
    for l in items(&listed, "PrefixLists", "PrefixList") {
        let id = text(l, "PrefixListId");
        lists.push(
            r.get(
                Action::DescribePrefixListAttributes,
                &[("PrefixListId", &id)],
            )
            .await,
        );
    }
    let frame = with_failure(frame, &r);
    html(StatusCode::OK, pages::prefix_lists(&frame, &lists))
}

async fn map(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let (s, frame) = signed_in!(page_session(&state, &headers, here("/console/map", &raw)).await);
    let chosen: Vec<String> = query(&raw)
        .into_iter()
        .filter(|(k, _)| k == "Service")
        .map(|(_, v)| v)
        .collect();
    let services: Vec<(String, String)> = chosen
        .iter()
        .enumerate()
        .map(|(n, v)| (format!("Service.{}", n + 1), v.clone()))
        .collect();
    let mut r = reads(&state, &s);
    let fields: Vec<(&str, &str)> = services
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reach = r.get(Action::DescribeReachability, &fields).await;
    let frame = with_failure(frame, &r);
    html(StatusCode::OK, pages::map(&frame, &reach, &chosen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_returns_only_to_a_console_page() {
        assert_eq!(safe_return("/console/groups/sg-1"), "/console/groups/sg-1");
        for hostile in [
            "https://evil.example/",
            "//evil.example",
            "/console//evil.example",
            "/console/\\evil",
            "",
        ] {
            assert_eq!(safe_return(hostile), "/console/groups", "{hostile}");
        }
    }

    fn session(key: &str, created: Instant) -> Session {
        Session {
            account: AccountId::new(1),
            access_key_id: key.into(),
            secret_digest: [0; 32],
            csrf: String::new(),
            region: "cn-hangzhou".into(),
            created,
            last_seen: created,
            flash: None,
        }
    }

    #[test]
    fn a_session_expires_idle_or_old() {
        let start = Instant::now();
        let mut s = session("k", start);
        assert!(s.fresh(start + IDLE - Duration::from_secs(1)));
        assert!(!s.fresh(start + IDLE), "30 idle minutes");
        s.last_seen = start + LIFETIME - Duration::from_secs(60);
        assert!(s.fresh(start + LIFETIME - Duration::from_secs(1)));
        assert!(!s.fresh(start + LIFETIME), "8 hours in all, however busy");
    }

    #[test]
    fn one_key_holds_a_bounded_number_of_sessions() {
        let sessions = Sessions::default();
        let now = Instant::now();
        for n in 0..(SESSIONS_PER_KEY + 5) {
            let mut token = [0u8; 32];
            token[0] = n as u8;
            sessions.open(token, session("k", now + Duration::from_millis(n as u64)));
        }
        sessions.open([255; 32], session("other", now));
        let held = sessions.lock();
        assert_eq!(
            held.values().filter(|s| s.access_key_id == "k").count(),
            SESSIONS_PER_KEY
        );
        assert!(!held.contains_key(&[0u8; 32]), "the oldest went first");
        assert!(
            held.contains_key(&[255; 32]),
            "another key's session is untouched"
        );
    }

    #[test]
    fn only_this_servers_pages_pass_the_origin_check() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h, false), "no Origin: the token decides");
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h, false));
        assert!(
            !same_origin(&h, true),
            "an https server takes only https origins"
        );
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:9090"));
        assert!(!same_origin(&h, false), "same site, other origin");
        h.remove("origin");
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!same_origin(&h, false));
    }
}
