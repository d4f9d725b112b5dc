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
/// The operator's AccessKey (placement of interfaces is the operator's).
pub(crate) const AK_OPERATOR: &str = "LTAIhttpoperatorkey";
/// Its secret.
pub(crate) const SK_OPERATOR: &str = "httpoperatorsecret";

/// A store in `dir` holding the account `tester` (AccessKey [`AK`]/[`SK`]) and the operator
/// `ops` ([`AK_OPERATOR`]).
pub(crate) fn store(dir: &std::path::Path) -> Control {
    let control = Control::open(dir, Limits::default()).unwrap();
    control
        .create_account("tester", Some((AK.into(), SK.into())))
        .unwrap();
    control
        .create_operator("ops", Some((AK_OPERATOR.into(), SK_OPERATOR.into())))
        .unwrap();
    control
}

/// A V1-signed GET URL for the parameters, signed by the operator `ops`.
pub(crate) fn signed_operator(params: &[(&str, &str)]) -> String {
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    format!(
        "/?{}",
        auth::signed_v1_query("GET", AK_OPERATOR, SK_OPERATOR, params)
    )
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

/// A V3 (ACS3-HMAC-SHA256) POST of `action` with query parameters `query`, signed by
/// `tester` over the headers `signed` (every `x-acs-*` header is sent either way), with the
/// `SignedHeaders` list written as `signed_list` (normally `signed` joined by `;`).
pub(crate) fn v3_request(
    action: &str,
    query: &[(&str, &str)],
    signed: &[&str],
    signed_list: &str,
) -> Request<Body> {
    let empty_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let nonce = uuid::Uuid::new_v4().to_string();
    let headers = [
        ("host", "stockade"),
        ("x-acs-action", action),
        ("x-acs-version", "2014-05-26"),
        ("x-acs-date", date.as_str()),
        ("x-acs-signature-nonce", nonce.as_str()),
        ("x-acs-content-sha256", empty_hash),
    ];
    let mut map = axum::http::HeaderMap::new();
    for (k, v) in headers {
        map.insert(k, v.parse().unwrap());
    }
    let query: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let names: Vec<String> = signed.iter().map(|s| s.to_string()).collect();
    let sts = auth::v3_string_to_sign("POST", "/", &query, &map, &names, empty_hash);
    let signature = auth::v3_signature(SK, &sts);
    let qs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", auth::percent_encode(k), auth::percent_encode(v)))
        .collect();
    let mut request = Request::post(format!("/?{}", qs.join("&")));
    for (k, v) in headers {
        request = request.header(k, v);
    }
    request
        .header(
            "authorization",
            format!("ACS3-HMAC-SHA256 Credential={AK},SignedHeaders={signed_list},Signature={signature}"),
        )
        .body(Body::empty())
        .unwrap()
}

/// Sends a request, answering status and JSON.
pub(crate) async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The second account of [`two_accounts`].
pub(crate) const AK2: &str = "LTAIhttpotherkey";
/// Its secret.
pub(crate) const SK2: &str = "httpothersecret";

/// A server over a fresh store with `tester` and a second account, `other` ([`AK2`]).
pub(crate) fn two_accounts() -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let control = store(dir.path());
    control
        .create_account("other", Some((AK2.into(), SK2.into())))
        .unwrap();
    (dir, serve(control))
}

/// A V1-signed GET URL for the parameters, signed by `other`.
pub(crate) fn signed_other(params: &[(&str, &str)]) -> String {
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    format!("/?{}", auth::signed_v1_query("GET", AK2, SK2, params))
}

/// A V1-signed POST with the parameters in a form body, signed by `tester`.
pub(crate) fn signed_post(params: &[(&str, &str)]) -> Request<Body> {
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(auth::signed_v1_query("POST", AK, SK, params)))
        .unwrap()
}

/// A signer of request URLs ([`signed`] or [`signed_other`]).
pub(crate) type Signer = fn(&[(&str, &str)]) -> String;

/// A request that must succeed: its answer.
pub(crate) async fn ok(app: &axum::Router, sign: Signer, params: &[(&str, &str)]) -> Value {
    let (status, body) = call(app, &sign(params)).await;
    assert_eq!(status, StatusCode::OK, "{params:?}: {body}");
    body
}

/// The string at a JSON pointer of an answer.
pub(crate) fn text(body: &Value, pointer: &str) -> String {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} in {body}"))
        .to_string()
}

/// A VPC (10.0.0.0/16), its vSwitch (10.0.1.0/24), a group in it and an instance in the
/// group, all of the signer's.
pub(crate) struct VpcInstance {
    pub(crate) vpc: String,
    pub(crate) vswitch: String,
    pub(crate) group: String,
    pub(crate) instance: String,
}

pub(crate) async fn vpc_instance(app: &axum::Router, sign: Signer) -> VpcInstance {
    let version = ("Version", "2016-04-28");
    let v = ok(
        app,
        sign,
        &[
            version,
            ("Action", "CreateVpc"),
            ("CidrBlock", "10.0.0.0/16"),
        ],
    )
    .await;
    let vpc = text(&v, "/VpcId");
    let s = ok(
        app,
        sign,
        &[
            version,
            ("Action", "CreateVSwitch"),
            ("VpcId", &vpc),
            ("ZoneId", "cn-hangzhou-h"),
            ("CidrBlock", "10.0.1.0/24"),
        ],
    )
    .await;
    let vswitch = text(&s, "/VSwitchId");
    let g = ok(
        app,
        sign,
        &[("Action", "CreateSecurityGroup"), ("VpcId", &vpc)],
    )
    .await;
    let group = text(&g, "/SecurityGroupId");
    let i = ok(
        app,
        sign,
        &[
            ("Action", "RunInstances"),
            ("VSwitchId", &vswitch),
            ("SecurityGroupId", &group),
            ("ImageId", "img"),
            ("InstanceType", "ecs.t"),
        ],
    )
    .await;
    let instance = text(&i, "/InstanceIdSets/InstanceIdSet/0");
    VpcInstance {
        vpc,
        vswitch,
        group,
        instance,
    }
}
