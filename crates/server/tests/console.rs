//! The console's sessions over HTTP: sign-in, the session cookie, CSRF and origin checks on
//! changes, sign-out, and a session that does not outlive its key. (The pages themselves
//! are driven in a real browser by `tests/node/console.test.mjs`.)

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use server::{app, AppState};
use tower::ServiceExt;

use common::{signed, AK, SK};

struct Console {
    app: axum::Router,
    control: Arc<control::Control>,
    _dir: tempfile::TempDir,
}

struct Page {
    status: StatusCode,
    location: String,
    cookie: Option<String>,
    body: String,
    csp: String,
}

impl Console {
    fn new() -> Console {
        let dir = tempfile::tempdir().unwrap();
        let control = Arc::new(common::store(dir.path()));
        let state = AppState::new(control.clone(), vec!["cn-hangzhou".into()]);
        Console {
            app: app(Arc::new(state)),
            control,
            _dir: dir,
        }
    }

    async fn send(&self, request: Request<Body>) -> Page {
        let r = self.app.clone().oneshot(request).await.unwrap();
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (status, location, csp) = (
            r.status(),
            header("location"),
            header("content-security-policy"),
        );
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split(';').next())
            .map(str::to_string);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            location,
            cookie,
            body: String::from_utf8_lossy(&body).into_owned(),
            csp,
        }
    }

    async fn get(&self, path: &str, cookie: &str) -> Page {
        self.send(
            Request::get(path)
                .header("cookie", cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, path: &str, cookie: &str, origin: Option<&str>, form: &str) -> Page {
        let mut r = Request::post(path)
            .header("host", "127.0.0.1:8080")
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        self.send(r.body(Body::from(form.to_string())).unwrap())
            .await
    }

    async fn sign_in(&self, id: &str, secret: &str) -> Page {
        let form = format!("AccessKeyId={id}&AccessKeySecret={secret}");
        self.post("/console/signin", "", Some("http://127.0.0.1:8080"), &form)
            .await
    }

    /// Signs in as `tester`: the cookie and the page's CSRF token.
    async fn session(&self) -> (String, String) {
        let cookie = self.sign_in(AK, SK).await.cookie.expect("a session cookie");
        let page = self.get("/console/groups", &cookie).await;
        let csrf = page
            .body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a CSRF token in the page")
            .to_string();
        (cookie, csrf)
    }

    async fn group_count(&self) -> usize {
        let (_, v) = common::call(
            &self.app,
            &signed(&[
                ("Action", "DescribeSecurityGroups"),
                ("RegionId", "cn-hangzhou"),
            ]),
        )
        .await;
        v["TotalCount"].as_u64().unwrap() as usize
    }
}

#[tokio::test]
async fn sign_in_gives_an_http_only_strict_cookie_and_refuses_bad_keys_alike() {
    let c = Console::new();
    let wrong = c.sign_in(AK, "not-the-secret").await;
    let unknown = c.sign_in("LTAInosuchkey", SK).await;
    for page in [&wrong, &unknown] {
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(page.cookie.is_none());
        assert!(page
            .body
            .contains("The AccessKey ID or secret is not valid."));
    }
    let r = c
        .send(
            Request::post("/console/signin")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("AccessKeyId={AK}&AccessKeySecret={SK}")))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location, "/console/groups");
    let page = c.get("/console/groups", r.cookie.as_deref().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.csp.contains("script-src 'self'"), "{}", page.csp);
    assert!(!page.csp.contains("unsafe-inline"));
    let raw = c
        .app
        .clone()
        .oneshot(
            Request::post("/console/signin")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("AccessKeyId={AK}&AccessKeySecret={SK}")))
                .unwrap(),
        )
        .await
        .unwrap();
    let set = raw.headers()["set-cookie"].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(attribute), "{set}");
    }
}

#[tokio::test]
async fn pages_without_a_session_send_the_browser_to_sign_in() {
    let c = Console::new();
    for path in ["/console/groups", "/console/flow", "/console/groups/sg-x"] {
        let page = c.get(path, "stockade_console=forged").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location, "/console/signin");
    }
}

#[tokio::test]
async fn a_change_needs_the_session_token_and_this_servers_origin() {
    let c = Console::new();
    let (cookie, csrf) = c.session().await;
    let form = |token: &str| format!("csrf={token}&SecurityGroupName=web");
    let before = c.group_count().await;
    let no_token = c.post("/console/groups", &cookie, None, &form("")).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let other_origin = c
        .post(
            "/console/groups",
            &cookie,
            Some("http://127.0.0.1:9999"),
            &form(&csrf),
        )
        .await;
    assert_eq!(other_origin.status, StatusCode::FORBIDDEN);
    assert_eq!(c.group_count().await, before, "nothing was created");
    let ok = c
        .post(
            "/console/groups",
            &cookie,
            Some("http://127.0.0.1:8080"),
            &form(&csrf),
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert!(
        ok.location.starts_with("/console/groups/sg-"),
        "{}",
        ok.location
    );
    assert_eq!(c.group_count().await, before + 1);
}

#[tokio::test]
async fn a_session_ends_at_sign_out_and_with_its_key() {
    let c = Console::new();
    let (cookie, csrf) = c.session().await;
    let out = c
        .post("/console/signout", &cookie, None, &format!("csrf={csrf}"))
        .await;
    assert_eq!(out.location, "/console/signin");
    assert_eq!(
        c.get("/console/groups", &cookie).await.status,
        StatusCode::SEE_OTHER
    );

    let key = c.control.create_access_key("tester").unwrap();
    let page = c.sign_in(&key.access_key_id, &key.access_key_secret).await;
    let cookie = page.cookie.unwrap();
    assert_eq!(
        c.get("/console/groups", &cookie).await.status,
        StatusCode::OK
    );
    c.control
        .set_access_key_active(&key.access_key_id, false)
        .unwrap();
    c.control.delete_access_key(&key.access_key_id).unwrap();
    let after = c.get("/console/groups", &cookie).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location, "/console/signin");
}

#[tokio::test]
async fn another_accounts_group_shows_nothing() {
    let c = Console::new();
    let other = c.control.create_account("other", None).unwrap();
    let (_, made) = common::call(
        &c.app,
        &format!(
            "/?{}",
            server::auth::signed_v1_query(
                "GET",
                &other.access_key_id,
                &other.access_key_secret,
                [
                    ("Action", "CreateSecurityGroup"),
                    ("RegionId", "cn-hangzhou"),
                    ("SecurityGroupName", "secret-project"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
            )
        ),
    )
    .await;
    let theirs = made["SecurityGroupId"].as_str().unwrap();
    let (cookie, csrf) = c.session().await;
    let page = c.get(&format!("/console/groups/{theirs}"), &cookie).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!page.body.contains("secret-project"));
    let delete = c
        .post(
            "/console/do",
            &cookie,
            None,
            &format!("csrf={csrf}&Action=DeleteSecurityGroup&SecurityGroupId={theirs}&confirm=1&return=/console/groups"),
        )
        .await;
    assert_eq!(delete.status, StatusCode::SEE_OTHER);
    let shown = c.get("/console/groups", &cookie).await;
    assert!(
        shown.body.contains("InvalidSecurityGroupId.NotFound"),
        "{}",
        shown.body
    );
}

#[tokio::test]
async fn a_port_list_rule_shows_its_list_not_a_range() {
    let c = Console::new();
    let (cookie, _) = c.session().await;
    let call = |params: &[(&str, &str)]| {
        let mut all = vec![("RegionId", "cn-hangzhou")];
        all.extend_from_slice(params);
        let request = signed(&all);
        let app = c.app.clone();
        async move { common::call(&app, &request).await }
    };
    let (_, made) = call(&[("Action", "CreateSecurityGroup")]).await;
    let sg = made["SecurityGroupId"].as_str().unwrap().to_string();
    let (_, list) = call(&[
        ("Action", "CreatePortRangeList"),
        ("PortRangeListName", "web"),
        ("MaxEntries", "2"),
        ("Entry.1.PortRange", "8080/8080"),
    ])
    .await;
    let prl = list["PortRangeListId"].as_str().unwrap().to_string();
    let (status, _) = call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &sg),
        ("Permissions.1.IpProtocol", "tcp"),
        ("Permissions.1.PortRangeListId", &prl),
        ("Permissions.1.SourceCidrIp", "192.0.2.0/24"),
    ])
    .await;
    assert_eq!(status, 200);
    let page = c.get(&format!("/console/groups/{sg}"), &cookie).await;
    assert!(
        page.body.contains(&format!("list <code>{prl}</code> web")),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("1/65535"),
        "no placeholder range is shown"
    );
}

/// Bytes a fuzzed value is drawn from: ordinary ones and those that break headers, paths
/// and parsers (CR, LF, NUL, `%`, `/`, `\`, quotes, a lone UTF-8 continuation byte).
const FUZZ_BYTES: &[u8] = b"aZ09-_./\\:?#&=+%\"' \r\n\t\0\x7f\xc3\xa9\x80";

fn fuzz_value(rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    use rand::seq::IndexedRandom;
    use rand::RngExt;
    match rng.random_range(0..10) {
        0 => Vec::new(),
        1 => vec![b'a'; rng.random_range(1000..5000)],
        2 => b"/console/groups\r\nSet-Cookie: x=1".to_vec(),
        3 => b"//evil.example/".to_vec(),
        _ => (0..rng.random_range(1..24))
            .map(|_| *FUZZ_BYTES.choose(rng).unwrap())
            .collect(),
    }
}

/// Percent-encodes every byte but letters and digits.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Random console requests (`STOCKADE_CONSOLE_FUZZ_REQUESTS`, 20,000 by default): every
/// route and unknown ones, both methods and others, ids and `return` paths with control
/// characters and bytes that do not decode, forms with and without the session's token.
/// The console must answer each in its own form: never a 5xx, always its hardening
/// headers, and a redirect only to one of its own pages.
#[tokio::test]
async fn random_console_requests_never_fail_and_always_answer_as_the_console() {
    use rand::seq::IndexedRandom;
    use rand::{RngExt, SeedableRng};
    let count: usize = std::env::var("STOCKADE_CONSOLE_FUZZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261208);
    let c = Console::new();
    let (_, g) = common::call(
        &c.app,
        &signed(&[
            ("Action", "CreateSecurityGroup"),
            ("RegionId", "cn-hangzhou"),
        ]),
    )
    .await;
    let group = g["SecurityGroupId"].as_str().unwrap().to_string();
    let (cookie, csrf) = c.session().await;
    const PATHS: &[&str] = &[
        "/console",
        "/console/",
        "/console/signin",
        "/console/signout",
        "/console/assets/{}",
        "/console/groups",
        "/console/groups/{}",
        "/console/groups/{}/rules",
        "/console/instances",
        "/console/flow",
        "/console/exposure",
        "/console/audit",
        "/console/map",
        "/console/prefix-lists",
        "/console/do",
        "/console/{}",
        "/console/{}/{}",
    ];
    const FIELDS: &[&str] = &[
        "Action",
        "return",
        "confirm",
        "SecurityGroupId",
        "SecurityGroupName",
        "InstanceId",
        "Direction",
        "SecurityGroupRuleId",
        "PeerKind",
        "Peer",
        "Local",
        "IpProtocol",
        "PortRange",
        "Policy",
        "Priority",
        "Description",
        "TagKey",
        "PrefixListId",
        "AccessKeyId",
        "AccessKeySecret",
        "Unknown",
    ];
    const ACTIONS: &[&str] = &[
        "AuthorizeSecurityGroup",
        "RevokeSecurityGroup",
        "DeleteSecurityGroup",
        "JoinSecurityGroup",
        "ModifySecurityGroupPolicy",
        "CreatePrefixList",
        "RunInstances",
        "NoSuchAction",
    ];
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..count {
        let template = *PATHS.choose(&mut rng).unwrap();
        let mut path = String::new();
        for (i, part) in template.split("{}").enumerate() {
            if i > 0 {
                path.push_str(&match rng.random_range(0..4) {
                    0 => group.clone(),
                    1 => "sg-nothing".to_string(),
                    _ => encode(&fuzz_value(&mut rng)),
                });
            }
            path.push_str(part);
        }
        let mut pairs: Vec<String> = (0..rng.random_range(0..8))
            .map(|_| {
                let name = *FIELDS.choose(&mut rng).unwrap();
                let value = match (name, rng.random_range(0..3)) {
                    ("Action", 0 | 1) => ACTIONS.choose(&mut rng).unwrap().as_bytes().to_vec(),
                    ("SecurityGroupId", 0 | 1) => group.as_bytes().to_vec(),
                    _ => fuzz_value(&mut rng),
                };
                format!("{name}={}", encode(&value))
            })
            .collect();
        if rng.random_bool(0.8) {
            pairs.push(format!("csrf={csrf}"));
        }
        let form = pairs.join("&");
        let method = *[
            "GET", "GET", "GET", "GET", "POST", "POST", "POST", "POST", "PUT", "DELETE",
        ]
        .choose(&mut rng)
        .unwrap();
        let uri = if method == "GET" && rng.random_bool(0.5) {
            format!("{path}?{form}")
        } else {
            path.clone()
        };
        let session = match rng.random_range(0..6) {
            0 => String::new(),
            1 => "stockade_console=forged".to_string(),
            _ => cookie.clone(),
        };
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("host", "127.0.0.1:8080")
            .header("origin", "http://127.0.0.1:8080")
            .header("cookie", session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.clone()))
            .unwrap();
        let page = c.send(request).await;
        let what = || format!("request {n}: {method} {uri} [{form}] -> {}", page.status);
        assert!(page.status.as_u16() < 500, "{}\n{}", what(), page.body);
        assert!(page.csp.contains("default-src 'none'"), "{}", what());
        if page.status.is_redirection() {
            assert!(
                page.location.starts_with("/console/") && !page.location.starts_with("/console//"),
                "{}: to {:?}",
                what(),
                page.location
            );
        }
        *statuses.entry(page.status.as_u16()).or_default() += 1;
    }
    // The requests must reach past the front door: pages, redirects and refusals alike.
    for status in [200, 303, 400, 404, 405] {
        assert!(statuses.contains_key(&status), "{statuses:?}");
    }
    eprintln!("{count} console requests, answers by status: {statuses:?}");
}
