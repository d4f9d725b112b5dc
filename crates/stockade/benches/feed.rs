//! The agent feed at fleet scale: one `stockade serve` (SQLite) and 1,000 simulated hosts,
//! each followed by the agent's own feed client (`agent::feed`: real HTTP long polls, the
//! share parsed and validated as the daemon does), two instances placed on each.
//!
//! Every instance is in the fleet-wide group `sg-fleet` and one of ten tier groups, so a rule
//! change in the fleet group changes every host's share. The bench measures, for the whole
//! shares the feed sent before (the baseline, in the same run) and for deltas:
//! - **cold start**: all agents started at once, until every one holds the current share;
//! - **fan-out**: from an `AuthorizeSecurityGroup` call on the fleet group being sent to each
//!   agent holding the new revision (p50, p99, and the last agent), over several changes;
//! - **bytes** the server sent per change (all agents' answers summed) and the server
//!   process's CPU time per change (user + system, from `/proc`).
//!
//! `cargo bench -p stockade --bench feed`; `STOCKADE_BENCH_HOSTS=N` changes the fleet size;
//! `STOCKADE_BENCH_QUICK=1` (and `cargo test`) runs a small smoke version.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use agent::feed::{FeedClient, Follower};
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_stockade");
const AK: &str = "LTAIfeedbenchkey";
const SK: &str = "feedbenchsecret";
const TOKEN: &str = "feed-bench-token";
/// Instances placed on each host.
const PER_HOST: usize = 2;
/// Tier groups besides the fleet group.
const TIERS: usize = 10;

fn quick() -> bool {
    std::env::var("STOCKADE_BENCH_QUICK").is_ok() || !std::env::args().any(|a| a == "--bench")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The server under test, killed on drop.
struct Server {
    child: Child,
    base: String,
    operator: (String, String),
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut child = Command::new(EXE)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(["--limit", "interfaces-per-region=100000"])
            // Every simulated host connects from this one process's address.
            .args(["--max-connections-per-peer", "8192"])
            .env("STOCKADE_BOOTSTRAP_ACCESS_KEY_ID", AK)
            .env("STOCKADE_BOOTSTRAP_ACCESS_KEY_SECRET", SK)
            .env("STOCKADE_AGENT_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("stockade serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = loop {
            let line = lines.next().expect("server output").expect("line");
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.to_string();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        let out = Command::new(EXE)
            .args([
                "account",
                "create",
                "--name",
                "bench-operator",
                "--operator",
            ])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("stockade account");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("account JSON");
        let key = |k: &str| v[k].as_str().expect("key").to_string();
        Server {
            child,
            base: format!("http://{addr}"),
            operator: (key("AccessKeyId"), key("AccessKeySecret")),
            _dir: dir,
        }
    }

    /// A signed ECS call that must succeed.
    fn call(&self, keys: (&str, &str), params: &[(&str, String)]) -> Value {
        let mut all: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        all.push(("Version".into(), "2014-05-26".into()));
        all.push(("RegionId".into(), "cn-hangzhou".into()));
        let query = server::auth::signed_v1_query("GET", keys.0, keys.1, all);
        let r = reqwest::blocking::get(format!("{}/?{query}", self.base)).expect("request");
        let ok = r.status().is_success();
        let v: Value = r.json().expect("JSON");
        assert!(ok, "{params:?}: {v}");
        v
    }

    /// The server process's CPU time so far (user + system), in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("server stat");
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
            .split(' ')
            .collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        ticks / 100.0
    }

    /// The store's current revision, as the feed reports it.
    fn revision(&self) -> u64 {
        let client = FeedClient::new(&self.base, TOKEN, "bench-probe", None);
        client
            .poll(None, Duration::from_secs(0))
            .expect("feed")
            .revision
    }
}

/// The fleet: groups, instances, and each host's interfaces placed. Returns the fleet group.
fn build_fleet(server: &Server, hosts: usize) -> String {
    let owner = (AK, SK);
    let group = |name: &str| {
        server.call(
            owner,
            &[
                ("Action", "CreateSecurityGroup".into()),
                ("SecurityGroupName", name.into()),
            ],
        )["SecurityGroupId"]
            .as_str()
            .expect("group id")
            .to_string()
    };
    let fleet = group("fleet");
    let tiers: Vec<String> = (0..TIERS).map(|t| group(&format!("tier-{t}"))).collect();
    for (t, tier) in tiers.iter().enumerate() {
        // Each tier admits the fleet group and a few networks: a share of a few rules.
        let port = (8000 + t).to_string();
        server.call(
            owner,
            &[
                ("Action", "AuthorizeSecurityGroup".into()),
                ("SecurityGroupId", tier.clone()),
                ("Permissions.1.IpProtocol", "tcp".into()),
                ("Permissions.1.PortRange", format!("{port}/{port}")),
                ("Permissions.1.SourceGroupId", fleet.clone()),
                ("Permissions.2.IpProtocol", "tcp".into()),
                ("Permissions.2.PortRange", "22/22".into()),
                ("Permissions.2.SourceCidrIp", "198.18.0.0/16".into()),
            ],
        );
    }
    let total = hosts * PER_HOST;
    let mut enis = Vec::with_capacity(total);
    while enis.len() < total {
        let amount = (total - enis.len()).min(100);
        let tier = &tiers[(enis.len() / 100) % TIERS];
        let run = server.call(
            owner,
            &[
                ("Action", "RunInstances".into()),
                ("ImageId", "img".into()),
                ("InstanceType", "t".into()),
                ("SecurityGroupIds.1", fleet.clone()),
                ("SecurityGroupIds.2", tier.clone()),
                ("Amount", amount.to_string()),
            ],
        );
        let ids: Vec<String> = run["InstanceIdSets"]["InstanceIdSet"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_str().expect("id").to_string())
            .collect();
        let described = server.call(
            owner,
            &[
                ("Action", "DescribeInstances".into()),
                ("InstanceIds", serde_json::to_string(&ids).expect("ids")),
                ("PageSize", "100".into()),
            ],
        );
        for i in described["Instances"]["Instance"]
            .as_array()
            .expect("instances")
        {
            enis.push(
                i["NetworkInterfaces"]["NetworkInterface"][0]["NetworkInterfaceId"]
                    .as_str()
                    .expect("eni")
                    .to_string(),
            );
        }
    }
    let operator = (server.operator.0.as_str(), server.operator.1.as_str());
    for (n, eni) in enis.iter().enumerate() {
        server.call(
            operator,
            &[
                ("Action", "PlaceNetworkInterface".into()),
                ("NetworkInterfaceId", eni.clone()),
                ("HostId", format!("host-{}", n / PER_HOST)),
            ],
        );
    }
    fleet
}

/// What the agents saw: per agent, each share received (revision, when, bytes).
type Seen = Arc<Vec<Mutex<Vec<(u64, Instant, usize)>>>>;

/// `hosts` agents started at once, following by deltas or by whole shares, until `stop`.
fn start_agents(
    server: &Server,
    hosts: usize,
    deltas: bool,
    stop: &Arc<AtomicBool>,
    errors: &Arc<AtomicUsize>,
) -> (Seen, Vec<std::thread::JoinHandle<()>>, Instant) {
    let seen: Seen = Arc::new((0..hosts).map(|_| Mutex::new(Vec::new())).collect());
    let barrier = Arc::new(Barrier::new(hosts + 1));
    let shared = FeedClient::new(&server.base, TOKEN, "host-0", None);
    let threads = (0..hosts)
        .map(|h| {
            let (seen, barrier, stop) = (seen.clone(), barrier.clone(), stop.clone());
            let errors = errors.clone();
            let client = shared.for_host(&format!("host-{h}"));
            std::thread::Builder::new()
                .name(format!("agent-{h}"))
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut follower = Follower::new(client.clone());
                    let mut last = None;
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        // The daemon's long poll.
                        let wait = Duration::from_secs(25);
                        // Each simulated agent reads its answers as the agent does (JSON, items
                        // by key, a delta applied) but does not compile the share: on a real
                        // fleet that work is each host's own (the agent bench measures it),
                        // here it would be a thousand hosts' work on this machine's cores.
                        let got = if deltas {
                            let before = follower.received();
                            follower
                                .next_items(wait)
                                .map(|(r, _)| r)
                                .map(|r| (r, follower.received() - before))
                        } else {
                            client.poll_raw(last, wait)
                        };
                        // As the daemon does: an error (a keep-alive connection the server
                        // closed as it was reused) is retried, the share held kept.
                        let Ok((revision, bytes)) = got else {
                            errors.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        };
                        last = Some(revision);
                        seen[h]
                            .lock()
                            .expect("seen")
                            .push((revision, Instant::now(), bytes));
                    }
                })
                .expect("agent thread")
        })
        .collect();
    barrier.wait();
    (seen, threads, Instant::now())
}

/// Waits until every agent holds `revision` or later; returns, per agent, when it first did
/// and the bytes of that answer.
fn wait_current(seen: &Seen, revision: u64, limit: Duration) -> Vec<(Instant, usize)> {
    let deadline = Instant::now() + limit;
    loop {
        let firsts: Vec<Option<(Instant, usize)>> = seen
            .iter()
            .map(|s| {
                s.lock()
                    .expect("seen")
                    .iter()
                    .find(|(r, _, _)| *r >= revision)
                    .map(|(_, at, bytes)| (*at, *bytes))
            })
            .collect();
        if firsts.iter().all(Option::is_some) {
            return firsts.into_iter().flatten().collect();
        }
        let behind = firsts.iter().filter(|f| f.is_none()).count();
        assert!(
            Instant::now() < deadline,
            "{behind} agents not at revision {revision} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A rule change in the fleet group (a new port each time).
fn change(server: &Server, fleet: &str) {
    static NEXT: AtomicUsize = AtomicUsize::new(20000);
    let port = NEXT.fetch_add(1, Ordering::Relaxed).to_string();
    server.call(
        (AK, SK),
        &[
            ("Action", "AuthorizeSecurityGroup".into()),
            ("SecurityGroupId", fleet.into()),
            ("IpProtocol", "tcp".into()),
            ("PortRange", format!("{port}/{port}")),
            ("SourceCidrIp", "198.18.0.0/15".into()),
        ],
    );
}

struct Phase {
    errors: usize,
    cold_s: f64,
    cold_bytes: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    bytes_per_change: f64,
    cpu_ms_per_change: f64,
}

fn phase(server: &Server, fleet: &str, hosts: usize, changes: usize, deltas: bool) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let current = server.revision();
    let (seen, threads, started) = start_agents(server, hosts, deltas, &stop, &errors);
    let cold = wait_current(&seen, current, Duration::from_secs(120));
    let cold_s = cold
        .iter()
        .map(|(at, _)| at.duration_since(started).as_secs_f64())
        .fold(0.0, f64::max);
    let cold_bytes = cold.iter().map(|(_, b)| b).sum();
    // Let the cold start settle: every agent back in a long poll.
    std::thread::sleep(Duration::from_millis(500));
    let (mut latencies, mut bytes, mut cpu) = (Vec::new(), 0usize, 0.0);
    for c in 0..changes {
        let before = server.revision();
        let cpu_before = server.cpu_seconds();
        let sent = Instant::now();
        change(server, fleet);
        let arrived = wait_current(&seen, before + 1, Duration::from_secs(60));
        let spent = server.cpu_seconds() - cpu_before;
        cpu += spent;
        let these: Vec<f64> = arrived
            .iter()
            .map(|(at, _)| at.saturating_duration_since(sent).as_secs_f64() * 1e3)
            .collect();
        let last = these.iter().copied().fold(0.0, f64::max);
        latencies.extend(these);
        bytes += arrived.iter().map(|(_, b)| b).sum::<usize>();
        eprintln!(
            "  {} change {}/{changes}: last agent after {last:.0} ms, server CPU {:.0} ms",
            if deltas { "deltas" } else { "whole shares" },
            c + 1,
            spent * 1e3
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // One more change wakes every long poll to see the stop.
    stop.store(true, Ordering::Relaxed);
    change(server, fleet);
    for t in threads {
        t.join().expect("agent");
    }
    latencies.sort_by(f64::total_cmp);
    Phase {
        errors: errors.load(Ordering::Relaxed),
        cold_s,
        cold_bytes,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies[latencies.len() - 1],
        bytes_per_change: bytes as f64 / changes as f64,
        cpu_ms_per_change: cpu * 1e3 / changes as f64,
    }
}

fn main() {
    let quick = quick();
    let hosts = std::env::var("STOCKADE_BENCH_HOSTS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(if quick { 20 } else { 1000 });
    // Whole shares cost the server the whole fleet's policy per change: three changes give
    // their figures (3,000 samples) without the baseline taking most of the run.
    let (whole_changes, changes) = if quick { (2, 3) } else { (3, 10) };
    let server = Server::start();
    let t = Instant::now();
    let fleet = build_fleet(&server, hosts);
    println!(
        "\nagent feed: {hosts} hosts × {PER_HOST} instances, every instance in the fleet group and one of \
         {TIERS} tiers (built in {:.1} s)\n",
        t.elapsed().as_secs_f64()
    );
    let whole = phase(&server, &fleet, hosts, whole_changes, false);
    let delta = phase(&server, &fleet, hosts, changes, true);
    println!(
        "{:<34} {:>14} {:>14} {:>10}",
        "", "whole shares", "deltas", "ratio"
    );
    let row = |label: &str, w: f64, d: f64, unit: &str| {
        println!(
            "{label:<34} {:>11.1} {unit:<2} {:>11.1} {unit:<2} {:>9.2}x",
            w,
            d,
            d / w
        );
    };
    row(
        "cold start, all agents current",
        whole.cold_s,
        delta.cold_s,
        "s",
    );
    row(
        "cold start, bytes per agent",
        whole.cold_bytes as f64 / hosts as f64 / 1024.0,
        delta.cold_bytes as f64 / hosts as f64 / 1024.0,
        "KiB",
    );
    row("change → agent, p50", whole.p50_ms, delta.p50_ms, "ms");
    row("change → agent, p99", whole.p99_ms, delta.p99_ms, "ms");
    row("change → last agent", whole.max_ms, delta.max_ms, "ms");
    row(
        "bytes sent per change (all agents)",
        whole.bytes_per_change / 1024.0,
        delta.bytes_per_change / 1024.0,
        "KiB",
    );
    row(
        "server CPU per change",
        whole.cpu_ms_per_change,
        delta.cpu_ms_per_change,
        "ms",
    );
    println!(
        "{:<34} {:>11} {:>14}",
        "feed errors retried (all agents)", whole.errors, delta.errors
    );
    println!(
        "\nratio: deltas / whole shares in this run (< 1: deltas cost less). A change is one \
         AuthorizeSecurityGroup on the fleet group, timed from the call being sent to each agent \
         holding the new revision; {whole_changes} changes with whole shares and {changes} with \
         deltas, {hosts} agents each.\n"
    );
}
