//! Noisy neighbours (DESIGN.md §7, availability is tenancy): account A, with a few groups
//! and instances, asks its questions while account B writes (a rule, then its revocation):
//! once before each of A's questions (every question finds a fresh revision: the worst
//! case) and twice a second in the background; first with B holding nearly nothing, then
//! with B at its quotas (1,000 groups of 200 rules, 1,000 instances in 5 groups each), in
//! one run, with an agent following the region throughout. Printed: A's p50/p99 for each
//! action in both phases, their ratio, and the server's resident memory after each phase.
//!
//! `cargo bench -p server --bench neighbours`; `STOCKADE_BENCH_QUICK=1` (and `cargo test`)
//! runs B at 20 groups of 20 rules and 20 instances.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use control::{Control, Ctx, Limits};
use http_body_util::BodyExt;
use model::{Direction, PermissionFields};
use server::{app, auth, AppState};
use tower::ServiceExt;

const A: (&str, &str) = ("LTAIneighbourA", "neighbour-a-secret");
const B: (&str, &str) = ("LTAIneighbourB", "neighbour-b-secret");

/// The fleet's agent token.
const AGENT: &str = "neighbours-agent-token";

/// An agent's long polls, one after another, for ever.
async fn follow(router: axum::Router) {
    let mut after = 0u64;
    loop {
        let uri = format!("/agent/v1/policy?host=h1&after={after}&delta=1&wait=30");
        let request = axum::http::Request::get(uri)
            .header("authorization", format!("Bearer {AGENT}"))
            .body(Body::empty())
            .expect("poll");
        let Ok(response) = router.clone().oneshot(request).await;
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("answer")
            .to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        after = body["Revision"].as_u64().unwrap_or(after);
    }
}

/// One signed request through the app; its status and answer.
async fn call(
    router: &axum::Router,
    key: (&str, &str),
    params: &[(&str, &str)],
) -> serde_json::Value {
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let uri = format!("/?{}", auth::signed_v1_query("GET", key.0, key.1, params));
    let request = axum::http::Request::get(uri)
        .body(Body::empty())
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("answer");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    assert!(status.is_success(), "{body}");
    body
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `n` rules of distinct ports from 10.0.0.0/8.
fn rules(n: usize, first_port: usize) -> Vec<model::RuleSpec> {
    (0..n)
        .map(|r| PermissionFields {
            ip_protocol: Some("tcp".into()),
            port_range: Some(format!("{}/{}", first_port + r, first_port + r)),
            source_cidr_ip: Some("10.0.0.0/8".into()),
            ..Default::default()
        })
        .map(|f| f.spec(Direction::Ingress).expect("rule"))
        .collect()
}

/// B's groups (each with `per_group` rules), written directly to the store, and
/// `instances` instances in five of them each, through the API.
async fn fill(
    router: &axum::Router,
    control: &Control,
    ctx: &Ctx,
    (groups, per_group, instances): (usize, usize, usize),
) {
    let mut ids = Vec::new();
    for chunk in 0..groups.div_ceil(50) {
        control
            .write(ctx, None, |tx| {
                for g in 0..50.min(groups - chunk * 50) {
                    let id = tx.create_group(control::CreateGroup {
                        name: format!("b{chunk}x{g}"),
                        ..Default::default()
                    })?;
                    tx.authorize(&id, &rules(per_group, 1))?;
                    ids.push(id.to_string());
                }
                Ok(serde_json::Value::Null)
            })
            .expect("B's groups");
    }
    let mut made = 0;
    while made < instances {
        let amount = 100.min(instances - made).to_string();
        let mut params = vec![
            ("Action".to_string(), "RunInstances".to_string()),
            ("ImageId".into(), "img".into()),
            ("InstanceType".into(), "ecs.t".into()),
            ("Amount".into(), amount.clone()),
        ];
        for j in 0..5.min(ids.len()) {
            let group = ids[(made / 100 * 5 + j) % ids.len()].clone();
            params.push((format!("SecurityGroupIds.{}", j + 1), group));
        }
        let borrowed: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        call(router, B, &borrowed).await;
        made += amount.parse::<usize>().expect("amount");
    }
}

/// How B writes while A asks.
#[derive(Clone, Copy)]
enum Plan {
    /// One write (a rule, then its revocation) before each of A's questions, `rounds` times
    /// through them: every question finds a fresh revision.
    BeforeEach(usize),
    /// A write twice a second in the background, A asking without pause for `secs`.
    TwiceASecond(u64),
}

/// B's `n`th write: a rule it then takes back, so B stays at its quota.
async fn b_write(router: &axum::Router, b_group: &str, n: usize) {
    let port = format!("{}/{}", 30000 + n % 30000, 30000 + n % 30000);
    for action in ["AuthorizeSecurityGroup", "RevokeSecurityGroup"] {
        call(
            router,
            B,
            &[
                ("Action", action),
                ("SecurityGroupId", b_group),
                ("IpProtocol", "udp"),
                ("PortRange", &port),
                ("SourceCidrIp", "192.0.2.0/24"),
            ],
        )
        .await;
    }
}

/// A's questions while B writes as `plan` says: p50 and p99 of each, in milliseconds.
async fn phase(
    router: &axum::Router,
    plan: Plan,
    a: &(String, String, String),
    b_group: &str,
) -> Vec<(&'static str, f64, f64)> {
    let (group, a0, a1) = a;
    let questions: Vec<(&'static str, Vec<(&str, &str)>)> = vec![
        (
            "DescribeFlowVerdict",
            vec![
                ("Action", "DescribeFlowVerdict"),
                ("SourceInstanceId", a0),
                ("DestinationInstanceId", a1),
                ("IpProtocol", "tcp"),
                ("DestinationPort", "22"),
            ],
        ),
        (
            "DescribeInstanceExposure",
            vec![("Action", "DescribeInstanceExposure"), ("InstanceId", a0)],
        ),
        (
            "DescribeSecurityGroupAudit",
            vec![
                ("Action", "DescribeSecurityGroupAudit"),
                ("SecurityGroupId.1", group),
            ],
        ),
        (
            "PreviewSecurityGroupChange",
            vec![
                ("Action", "PreviewSecurityGroupChange"),
                ("ChangeAction", "AuthorizeSecurityGroup"),
                ("SecurityGroupId", group),
                ("IpProtocol", "tcp"),
                ("PortRange", "8080/8080"),
                ("SourceCidrIp", "0.0.0.0/0"),
            ],
        ),
        (
            "DescribeSecurityGroups",
            vec![("Action", "DescribeSecurityGroups")],
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); questions.len()];
    match plan {
        Plan::BeforeEach(rounds) => {
            for round in 0..rounds {
                for (k, (_, params)) in questions.iter().enumerate() {
                    b_write(router, b_group, round * questions.len() + k).await;
                    let t = Instant::now();
                    call(router, A, params).await;
                    times[k].push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        Plan::TwiceASecond(secs) => {
            let (writer, group) = (router.clone(), b_group.to_string());
            let writes = tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
                for n in 0.. {
                    tick.tick().await;
                    b_write(&writer, &group, n).await;
                }
            });
            let start = Instant::now();
            while start.elapsed().as_secs() < secs {
                for (k, (_, params)) in questions.iter().enumerate() {
                    let t = Instant::now();
                    call(router, A, params).await;
                    times[k].push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            writes.abort();
        }
    }
    questions
        .iter()
        .zip(times)
        .map(|((name, _), mut t)| {
            t.sort_by(f64::total_cmp);
            let at = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize];
            (*name, at(0.5), at(0.99))
        })
        .collect()
}

fn main() {
    let quick =
        std::env::var("STOCKADE_BENCH_QUICK").is_ok() || !std::env::args().any(|a| a == "--bench");
    let (groups, per_group, instances, rounds, secs) = if quick {
        (20, 20, 20, 3, 1)
    } else {
        (1000, 200, 1000, 200, 20)
    };
    let plans = [Plan::BeforeEach(rounds), Plan::TwiceASecond(secs)];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let control = Arc::new(Control::open(dir.path(), Limits::default()).expect("store"));
    let ctx_of = |key: (&str, &str), name: &str| {
        let creds = control
            .create_account(name, Some((key.0.into(), key.1.into())))
            .expect("account");
        Ctx {
            account: creds.account_id,
            region: "cn-hangzhou".into(),
        }
    };
    let (ctx_a, ctx_b) = (ctx_of(A, "a"), ctx_of(B, "b"));
    let state =
        AppState::new(control.clone(), vec!["cn-hangzhou".into()]).with_agent_token(AGENT.into());
    let router = app(Arc::new(state));
    // An agent follows the region throughout, as on any real server: every commit makes the
    // feed's view of the region at the new revision.
    rt.spawn(follow(router.clone()));
    // A: one group of 10 rules, two instances in it. B: one group to write in.
    let a = rt.block_on(async {
        let group = call(&router, A, &[("Action", "CreateSecurityGroup")]).await["SecurityGroupId"]
            .as_str()
            .expect("group")
            .to_string();
        control
            .write(&ctx_a, None, |tx| {
                tx.authorize(&group.parse()?, &rules(10, 20))?;
                Ok(serde_json::Value::Null)
            })
            .expect("A's rules");
        let run = call(
            &router,
            A,
            &[
                ("Action", "RunInstances"),
                ("SecurityGroupId", &group),
                ("ImageId", "img"),
                ("InstanceType", "ecs.t"),
                ("Amount", "2"),
            ],
        )
        .await;
        let ids = &run["InstanceIdSets"]["InstanceIdSet"];
        let id = |k: usize| ids[k].as_str().expect("instance").to_string();
        (group, id(0), id(1))
    });
    let b_group = rt.block_on(async {
        call(&router, B, &[("Action", "CreateSecurityGroup")]).await["SecurityGroupId"]
            .as_str()
            .expect("group")
            .to_string()
    });
    let alone: Vec<_> = plans
        .iter()
        .map(|&plan| rt.block_on(phase(&router, plan, &a, &b_group)))
        .collect();
    let alone_mib = rss_mib();
    let t = Instant::now();
    rt.block_on(fill(
        &router,
        &control,
        &ctx_b,
        (groups - 1, per_group, instances),
    ));
    println!(
        "\nB filled: {groups} groups of {per_group} rules, {instances} instances in 5 groups each ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let crowded: Vec<_> = plans
        .iter()
        .map(|&plan| rt.block_on(phase(&router, plan, &a, &b_group)))
        .collect();
    let crowded_mib = rss_mib();
    let titles = [
        format!("after each write of B ({rounds} rounds)"),
        format!("while B writes twice a second ({secs} s)"),
    ];
    for ((title, alone), crowded) in titles.iter().zip(&alone).zip(&crowded) {
        println!("\nA's latency (ms) {title}: B nearly empty → B at its quotas");
        println!("| action | alone p50 | alone p99 | beside B p50 | beside B p99 | p99 ratio |");
        println!("|---|---:|---:|---:|---:|---:|");
        for ((name, p50, p99), (_, q50, q99)) in alone.iter().zip(crowded) {
            println!(
                "| {name} | {p50:.2} | {p99:.2} | {q50:.2} | {q99:.2} | {:.1} |",
                q99 / p99
            );
        }
    }
    println!("\nserver resident memory: {alone_mib:.0} MiB → {crowded_mib:.0} MiB");
    let rules = (groups * per_group) as f64;
    println!(
        "server memory per rule of B: {:.0} bytes (its instances included; an agent follows the region, so the feed holds B's policy)",
        (crowded_mib - alone_mib) * 1048576.0 / rules
    );
}
