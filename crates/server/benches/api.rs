//! API load generator: a real `server::app` on loopback TCP, driven by concurrent clients
//! that sign every request (V1), as the SDKs do.
//!
//! Measures, in one run: `AuthorizeSecurityGroup` + `RevokeSecurityGroup` pairs per second,
//! `DescribeSecurityGroupAttribute` (200 rules) requests per second, p50/p99 latency of each;
//! then loads a store with 10,000 groups and 200,000 rules and reports the time to open it and
//! answer the first request, and the process's peak memory.
//!
//! `cargo bench -p server --bench api`. `STOCKADE_BENCH_QUICK=1` (and `cargo test`) runs a
//! short smoke version without the big store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::{Control, Ctx, Limits};
use model::{Direction, PermissionFields};
use server::{app, auth, AppState};

const AK: &str = "LTAIloadgenkey";
const SK: &str = "loadgensecret";

fn signed_url(base: &str, params: &[(String, String)]) -> String {
    format!(
        "{base}/?{}",
        auth::signed_v1_query("GET", AK, SK, params.iter().cloned())
    )
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let r = client.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

struct Figures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn figures(mut latencies: Vec<f64>, elapsed: Duration) -> Figures {
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Figures {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

/// Runs `op` from `clients` tasks for `duration`; returns per-operation latencies (ms).
async fn drive<F, Fut>(clients: usize, duration: Duration, op: F) -> (Vec<f64>, Duration)
where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (op, counter) = (op.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < duration {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                op(n).await;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    (all, start.elapsed())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One measured configuration: a label and the control planes of its replicas.
async fn load(quick: bool, label: &str, replicas: Vec<Control>) -> (Figures, Figures) {
    let replicas: Vec<Arc<Control>> = replicas.into_iter().map(Arc::new).collect();
    let first = replicas[0].clone();
    // The control plane is synchronous: off the async threads, as the server runs it.
    let created = tokio::task::spawn_blocking(move || {
        first.create_account("loadgen", Some((AK.into(), SK.into())))
    })
    .await
    .expect("account task");
    match created {
        Ok(_) | Err(control::ControlError::AccountExists(_)) => {}
        Err(e) => panic!("account: {e}"),
    }
    let mut bases = Vec::new();
    for control in replicas {
        let state = Arc::new(AppState::new(control, vec!["cn-hangzhou".into()]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        bases.push(format!("http://{}", listener.local_addr().expect("addr")));
        tokio::spawn(async move { axum::serve(listener, app(state)).await.expect("serve") });
    }
    let bases = Arc::new(bases);
    let base = bases[0].clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");

    let create = |name: &str| {
        signed_url(
            &base,
            &kv(&[
                ("Action", "CreateSecurityGroup"),
                ("SecurityGroupName", name),
            ]),
        )
    };
    let (_, body) = get(&client, &create("reads")).await;
    let read_group = body["SecurityGroupId"].as_str().expect("group").to_string();
    for batch in 0..2u16 {
        let mut params = kv(&[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &read_group),
        ]);
        for i in 0..100u16 {
            let port = batch * 100 + i + 1;
            params.push((format!("Permissions.{}.IpProtocol", i + 1), "tcp".into()));
            params.push((
                format!("Permissions.{}.PortRange", i + 1),
                format!("{port}/{port}"),
            ));
            params.push((
                format!("Permissions.{}.SourceCidrIp", i + 1),
                "10.0.0.0/8".into(),
            ));
        }
        let (status, body) = get(&client, &signed_url(&base, &params)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, body) = get(&client, &create("writes")).await;
    let write_group = body["SecurityGroupId"].as_str().expect("group").to_string();

    let clients = 16;
    let duration = Duration::from_secs(if quick { 1 } else { 10 });
    let (c, bs, g) = (client.clone(), bases.clone(), write_group.clone());
    let (lat, elapsed) = drive(clients, duration, move |n| {
        // Requests alternate between the replicas.
        let (c, b, g) = (c.clone(), bs[n as usize % bs.len()].clone(), g.clone());
        async move {
            let port = (n % 60000 + 1).to_string();
            let rule = [
                ("IpProtocol", "udp"),
                ("PortRange", &format!("{port}/{port}")),
                ("SourceCidrIp", "192.168.0.0/16"),
            ];
            for action in ["AuthorizeSecurityGroup", "RevokeSecurityGroup"] {
                let mut p = kv(&[("Action", action), ("SecurityGroupId", &g)]);
                p.extend(kv(&rule));
                let (status, body) = get(&c, &signed_url(&b, &p)).await;
                assert_eq!(status, 200, "{body}");
            }
        }
    })
    .await;
    let mutations = figures(lat, elapsed);
    let (c, bs, g) = (client.clone(), bases.clone(), read_group.clone());
    let (lat, elapsed) = drive(clients, duration, move |n| {
        let (c, b, g) = (c.clone(), bs[n as usize % bs.len()].clone(), g.clone());
        async move {
            let url = signed_url(
                &b,
                &kv(&[
                    ("Action", "DescribeSecurityGroupAttribute"),
                    ("SecurityGroupId", &g),
                ]),
            );
            // The client checks the status and size only: it shares the machine's two cores
            // with the server, and parsing 200 rules per answer would measure the client.
            let r = c.get(&url).send().await.expect("request");
            assert_eq!(r.status().as_u16(), 200);
            assert!(r.bytes().await.expect("body").len() > 200 * 300);
        }
    })
    .await;
    let reads = figures(lat, elapsed);
    println!(
        "\nStockade API on loopback, {label}, {clients} concurrent signing clients, {}s each:\n",
        duration.as_secs()
    );
    println!("  Authorize+Revoke pairs/s {:>8.0}  (mutations/s {:>8.0})  p50 {:>6.2} ms  p99 {:>6.2} ms  (per pair)",
        mutations.per_second, mutations.per_second * 2.0, mutations.p50_ms, mutations.p99_ms);
    println!(
        "  DescribeSecurityGroupAttribute (200 rules)/s {:>8.0}  p50 {:>6.2} ms  p99 {:>6.2} ms",
        reads.per_second, reads.p50_ms, reads.p99_ms
    );
    (mutations, reads)
}

/// 10,000 groups with 20 rules each, written straight through the control plane.
fn big_store(quick: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (groups, rules) = if quick { (100, 20) } else { (10_000, 20) };
    // One account holds them all: the per-region group quota is lifted for the measurement.
    let limits = Limits {
        groups_per_region: usize::MAX,
        ..Limits::default()
    };
    {
        let control = Control::open(dir.path(), limits.clone()).expect("store");
        let creds = control
            .create_account("big", Some(("LTAIbig".into(), "bigsecret".into())))
            .expect("account");
        let ctx = Ctx {
            account: creds.account_id,
            region: "cn-hangzhou".into(),
        };
        let t = Instant::now();
        for chunk in 0..groups / 100 {
            control
                .write(&ctx, None, |tx| {
                    for g in 0..100 {
                        let id = tx.create_group(control::CreateGroup {
                            name: format!("big{chunk}x{g}"),
                            ..Default::default()
                        })?;
                        let specs: Vec<model::RuleSpec> = (0..rules)
                            .map(|r| PermissionFields {
                                ip_protocol: Some("tcp".into()),
                                port_range: Some(format!("{}/{}", r + 1, r + 1)),
                                source_cidr_ip: Some("10.0.0.0/8".into()),
                                ..Default::default()
                            })
                            .map(|f| f.spec(Direction::Ingress))
                            .collect::<Result<_, _>>()?;
                        tx.authorize(&id, &specs)?;
                    }
                    Ok(serde_json::Value::Null)
                })
                .expect("populate");
        }
        println!(
            "\n  store with {groups} groups and {} rules written in {:.1} s",
            groups * rules,
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let control = Arc::new(Control::open(dir.path(), limits).expect("reopen"));
    let (account, _) = control.access_key("LTAIbig").expect("key");
    let ctx = Ctx {
        account,
        region: "cn-hangzhou".into(),
    };
    let n = control
        .read(&ctx, |tx| Ok(tx.find_groups(&Default::default())?.len()))
        .expect("first query");
    let start_up = t.elapsed();
    assert_eq!(n, groups);
    let t = Instant::now();
    let snapshot = control
        .read(&ctx, |tx| tx.region_snapshot())
        .expect("snapshot");
    let engine = policy::Engine::new(&snapshot).expect("engine");
    println!(
        "  start-up on that store (open + first full listing): {:.0} ms; compiling its policy for DescribeFlowVerdict: {:.0} ms ({} rules)",
        start_up.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3,
        snapshot.groups.iter().map(|g| g.permissions.len()).sum::<usize>()
    );
    drop(engine);
    println!(
        "  peak memory of this process (all of the above): {:.0} MiB\n",
        peak_rss_mib()
    );
}

fn main() {
    let quick =
        std::env::var("STOCKADE_BENCH_QUICK").is_ok() || !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Control::open(dir.path(), Limits::default()).expect("store");
    let (base_mut, base_read) = rt.block_on(load(quick, "SQLite store", vec![sqlite]));
    // With a PostgreSQL server (`scripts/postgres start DIR PORT` prints a URL), the same
    // load runs against one and two replicas on it, in the same run.
    if let Ok(url) = std::env::var("STOCKADE_BENCH_DATABASE_URL") {
        let mut rows = Vec::new();
        for n in [1usize, 2] {
            let replicas = (0..n)
                .map(|_| {
                    Control::open_postgres(&url, Limits::default(), bench_key()).expect("postgres")
                })
                .collect();
            let label = format!("PostgreSQL, {n} replica(s)");
            let (m, r) = rt.block_on(load(quick, &label, replicas));
            rows.push((label, m, r));
        }
        println!("\n  relative to SQLite in this run (mutations/s, reads/s):");
        for (label, m, r) in rows {
            println!(
                "    {label:<26} {:>5.2}x  {:>5.2}x",
                m.per_second / base_mut.per_second,
                r.per_second / base_read.per_second
            );
        }
    }
    big_store(quick);
}

/// The master key the PostgreSQL replicas of the bench share.
fn bench_key() -> control::MasterKey {
    control::MasterKey::from_hex(&"b0".repeat(32)).expect("64 hex digits")
}
