//! What the in-process HTTP tests share: a server over a fresh store with one account and
//! the agent token set, V1-signed request URLs, and a GET answering status and JSON.

#![allow(dead_code)] // each test crate uses its own part

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use control::{Control, Limits};
use http_body_util::BodyExt;
use serde_json::Value;
use server::{app, auth, AppState};
use tower::ServiceExt;

pub(crate) const AK: &str = "LTAIhttptestkey";
pub(crate) const SK: &str = "httptestsecret";
pub(crate) const TOKEN: &str = "feed-token";

/// A store in `dir` holding the account `tester` (AccessKey [`AK`]/[`SK`]).
pub(crate) fn store(dir: &std::path::Path) -> Control {
    let control = Control::open(dir, Limits::default()).unwrap();
    control
        .create_account("tester", Some((AK.into(), SK.into())))
        .unwrap();
    control
}

/// The API and agent feed over `control`, region `cn-hangzhou`, agent token [`TOKEN`].
pub(crate) fn serve(control: Control) -> axum::Router {
    let state =
        AppState::new(Arc::new(control), vec!["cn-hangzhou".into()]).with_agent_token(TOKEN.into());
    app(Arc::new(state))
}

/// A server over a fresh store (kept alive by the returned directory).
pub(crate) fn setup() -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let app = serve(store(dir.path()));
    (dir, app)
}

/// A V1-signed GET URL for the parameters, signed by `tester`.
pub(crate) fn signed(params: &[(&str, &str)]) -> String {
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    format!("/?{}", auth::signed_v1_query("GET", AK, SK, params))
}

/// GET `uri`, with the agent token as a bearer token when given.
pub(crate) async fn get(app: &axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(uri);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// GET `uri` without a token.
pub(crate) async fn call(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    get(app, uri, None).await
}
