//! ClassBench benchmark of the policy engine: the public 5-tuple rule sets as the ingress
//! rules of one instance, compiled evaluator against the reference evaluator in one run.
//!
//! Mapping of a ClassBench line (0-based index `i` of `n`) to an ECS quintuple rule:
//! - source prefix → `SourceCidrIp` (the peer), destination prefix → `DestCidrIp` (the
//!   instance-side address), source ports → `SourcePortRange` (omitted when `0 : 65535`),
//!   destination ports → `PortRange` (`0` raised to `1`: ECS ports start at 1), protocol →
//!   `IpProtocol` (`0x06` TCP, `0x11` UDP, `0x01` ICMP, `0x2f` GRE, wildcard `ALL`; the 17
//!   ESP/AH rules of ipc1 become `ALL`, ECS having no such protocol);
//! - line order → priority bucket `1 + i * 100 / n`; every 7th line (`i % 7 == 6`) is `drop`;
//! - 1K sets are split into 5 consecutive chunks, one group each, so that an instance in
//!   those 5 groups (in order) sees the lines in their original order within each
//!   (priority, policy) class; 10K sets are one group (the 1000-rule interface limit lifted).
//!
//! Lookups read the trace that `classbench/make-trace.py` writes (seed 1, 1,000,000
//! packets: 80 % inside a random rule, 20 % uniform), the one the quoted TupleMerge and
//! PartitionSort figures were measured on; it is generated once into `target/classbench/`.
//! Without Python, an equivalent trace is generated here from the same recipe (seed 1).
//!
//! `cargo bench -p policy --bench classbench` prints a summary table of the 24 sets (median
//! of runs) and then runs criterion groups. `STOCKADE_PEER_SIM=/path/to/main` measures the
//! best of TupleMerge and PartitionSort (online and offline) in the same run, with the
//! simulator of drjdaly/tuplemerge built outside this repository, on the same rule and
//! trace files; without it the table says the ratio was not measured.
//! `STOCKADE_BENCH_SETS=acl1_1k,fw1_10k` picks the sets, `STOCKADE_BENCH_SEEDS=1,2` the
//! trace seeds; `STOCKADE_BENCH_TABLE_ONLY=1` skips criterion; `STOCKADE_BENCH_QUICK=1`
//! shortens everything (no fair ratio then: ours runs on a part of the trace);
//! `STOCKADE_BENCH_PROFILE=SET` only runs compiled lookups on one set, for a profiler
//! (`STOCKADE_BENCH_PROFILE_BATCH=1`: the batch form).

// A benchmark measures time and reads the ClassBench rule sets and traces.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use model::{Direction, Instance, MemberId, NetworkType, NicType, PermissionFields};
use policy::{
    Change, Engine, Evaluator, GroupPolicy, Packet, Reference, Snapshot, Stage, StageQuery,
};
use rand::{RngExt, SeedableRng};

#[path = "common/classbench_set.rs"]
mod set;
use set::*;

/// The 24 ClassBench sets of `classbench/` (vendored beside this bench).
const SETS: [&str; 24] = [
    "acl1_1k", "acl2_1k", "acl3_1k", "acl4_1k", "acl5_1k", "fw1_1k", "fw2_1k", "fw3_1k", "fw4_1k",
    "fw5_1k", "ipc1_1k", "ipc2_1k", "acl1_10k", "acl2_10k", "acl3_10k", "acl4_10k", "acl5_10k",
    "fw1_10k", "fw2_10k", "fw3_10k", "fw4_10k", "fw5_10k", "ipc1_10k", "ipc2_10k",
];

/// The peer classifiers of the TupleMerge simulator, by its names for them.
const PEERS: &str = "PartitionSort,PartitionSortOffline,TMOnline,TMOffline";

/// The policy of one instance holding the set, plus a group `sg-peer` (referenced by one
/// rule of the first group) for the member-join measurement.
fn snapshot(rules: &[Rule], groups: usize) -> Snapshot {
    let n = rules.len();
    let mut policies: Vec<GroupPolicy> = (0..groups)
        .map(|g| GroupPolicy {
            group: group(&format!("sg-set{g}")),
            permissions: Default::default(),
        })
        .collect();
    for (i, r) in rules.iter().enumerate() {
        let g = i * groups / n;
        let p = fields(r, i, n)
            .parse(
                format!("sgr-{i}").parse().unwrap(),
                Direction::Ingress,
                NetworkType::Vpc,
            )
            .expect("mapped rule is valid");
        std::sync::Arc::make_mut(&mut policies[g].permissions).push(p);
    }
    let reference_rule = PermissionFields {
        ip_protocol: Some("tcp".into()),
        port_range: Some("5432/5432".into()),
        group_id: Some("sg-peer".into()),
        priority: Some("50".into()),
        ..Default::default()
    };
    std::sync::Arc::make_mut(&mut policies[0].permissions).push(
        reference_rule
            .parse(
                "sgr-peer".parse().unwrap(),
                Direction::Ingress,
                NetworkType::Vpc,
            )
            .unwrap(),
    );
    policies.push(GroupPolicy {
        group: group("sg-peer"),
        permissions: Default::default(),
    });
    let instance = Instance {
        id: "i-bench".parse().unwrap(),
        attached_to: None,
        owner: model::AccountId::new(1),
        vpc_id: Some("vpc-bench".parse().unwrap()),
        private_ip: Ipv4Addr::new(198, 18, 0, 1),
        secondary_ips: Vec::new(),
        ipv4_prefixes: Vec::new(),
        ipv6: None,
        public_ip: None,
        source_dest_check: true,
        security_groups: (0..groups)
            .map(|g| format!("sg-set{g}").parse().unwrap())
            .collect(),
    };
    Snapshot {
        groups: policies,
        instances: vec![instance],
        prefix_lists: vec![],
        port_range_lists: vec![],
    }
}

type Header = [u32; 5];

/// Where the trace of `set` with `n` packets and `seed` is kept (seed 1 keeps the name
/// earlier runs wrote).
fn trace_path(set: &str, n: usize, seed: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/classbench");
    match seed {
        1 => dir.join(format!("{set}.trace.{n}")),
        s => dir.join(format!("{set}.trace.{n}.seed{s}")),
    }
}

fn trace(set: &str, rules: &[Rule], n: usize) -> Vec<Header> {
    trace_seeded(set, rules, n, 1)
}

fn trace_seeded(set: &str, rules: &[Rule], n: usize, seed: u64) -> Vec<Header> {
    let path = trace_path(set, n, seed);
    let dir = path.parent().expect("trace dir").to_path_buf();
    if !path.exists() {
        std::fs::create_dir_all(&dir).expect("trace dir");
        let status = std::process::Command::new("python3")
            .arg(classbench_dir().join("make-trace.py"))
            .arg(classbench_dir().join(set))
            .arg(&path)
            .arg(n.to_string())
            .arg(seed.to_string())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            let _ = std::fs::remove_file(&path);
            return synthetic_trace(rules, n, seed);
        }
    }
    std::fs::read_to_string(&path)
        .expect("trace")
        .lines()
        .map(|l| {
            let mut h = [0u32; 5];
            for (slot, v) in h.iter_mut().zip(l.split_whitespace()) {
                *slot = v.parse().expect("trace value");
            }
            h
        })
        .collect()
}

/// The recipe of make-trace.py, for machines without Python.
fn synthetic_trace(rules: &[Rule], n: usize, seed: u64) -> Vec<Header> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let span = |(ip, len): (u32, u8)| {
        let size = if len == 0 {
            u64::from(u32::MAX) + 1
        } else {
            1u64 << (32 - len)
        };
        let lo = u64::from(ip) & !(size - 1);
        (lo, lo + size - 1)
    };
    (0..n)
        .map(|_| {
            if rng.random_bool(0.8) {
                let r = &rules[rng.random_range(0..rules.len())];
                let (s, d) = (span(r.src), span(r.dst));
                let proto = r.proto.map_or_else(|| rng.random_range(0..=255), u32::from);
                [
                    rng.random_range(s.0..=s.1) as u32,
                    rng.random_range(d.0..=d.1) as u32,
                    rng.random_range(u32::from(r.sport.0)..=u32::from(r.sport.1)),
                    rng.random_range(u32::from(r.dport.0)..=u32::from(r.dport.1)),
                    proto,
                ]
            } else {
                [
                    rng.random(),
                    rng.random(),
                    rng.random_range(0..65536),
                    rng.random_range(0..65536),
                    rng.random_range(0..256),
                ]
            }
        })
        .collect()
}

fn packet(h: &Header) -> Packet {
    Packet {
        peer: IpAddr::V4(Ipv4Addr::from(h[0])),
        local: IpAddr::V4(Ipv4Addr::from(h[1])),
        source_port: h[2] as u16,
        destination_port: h[3] as u16,
        protocol: h[4] as u8,
    }
}

fn query<'a>(instance: &'a MemberId, h: &Header) -> StageQuery<'a> {
    StageQuery {
        instance,
        direction: Direction::Ingress,
        nic_type: NicType::Intranet,
        packet: packet(h),
    }
}

/// The instance's ingress intranet rules, resolved once as a firewall holds them per
/// interface: what the published simulators measure (one rule set, packets against it).
fn stage<'a>(engine: &'a Engine, instance: &MemberId) -> Stage<'a> {
    engine
        .stage(instance, Direction::Ingress, NicType::Intranet)
        .expect("bench instance")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// ns per packet over the whole trace, judged by a resolved stage.
fn stage_throughput(stage: &Stage<'_>, trace: &[Header]) -> f64 {
    let start = Instant::now();
    for h in trace {
        black_box(stage.decide(&packet(black_box(h))).expect("decide"));
    }
    start.elapsed().as_nanos() as f64 / trace.len() as f64
}

/// ns per packet over the whole trace, judged by the stage's batch form
/// ([`Stage::decide_all`]) a block of packets at a time, as a bulk caller holds them.
fn batch_throughput(stage: &Stage<'_>, trace: &[Header]) -> f64 {
    let (mut packets, mut out) = (Vec::with_capacity(BLOCK), Vec::with_capacity(BLOCK));
    let start = Instant::now();
    for part in trace.chunks(BLOCK) {
        packets.clear();
        packets.extend(part.iter().map(packet));
        out.clear();
        stage
            .decide_all(black_box(&packets), &mut out)
            .expect("decide");
        black_box(&out);
    }
    start.elapsed().as_nanos() as f64 / trace.len() as f64
}

/// Packets handed to [`Stage::decide_all`] at once by the batch measurement.
const BLOCK: usize = 256;

/// ns per query over the whole trace, each naming its instance.
fn throughput(e: &impl Evaluator, instance: &MemberId, trace: &[Header]) -> f64 {
    let start = Instant::now();
    for h in trace {
        black_box(e.decide(&query(instance, black_box(h))).expect("decide"));
    }
    start.elapsed().as_nanos() as f64 / trace.len() as f64
}

/// Per-packet latencies (ns), each timed alone, minus the cost of reading the clock.
fn latencies(stage: &Stage<'_>, trace: &[Header]) -> Vec<f64> {
    let clock: Vec<f64> = (0..10_000)
        .map(|_| {
            let t = Instant::now();
            black_box(());
            t.elapsed().as_nanos() as f64
        })
        .collect();
    let overhead = median(clock);
    let mut out: Vec<f64> = trace
        .iter()
        .map(|h| {
            let p = packet(h);
            let t = Instant::now();
            black_box(stage.decide(black_box(&p)).expect("decide"));
            (t.elapsed().as_nanos() as f64 - overhead).max(0.0)
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Row {
    set: String,
    rules: usize,
    compiled_ns: f64,
    batch_ns: f64,
    query_ns: f64,
    reference_ns: f64,
    p50: f64,
    p99: f64,
    build_ms: f64,
    add_us: f64,
    remove_us: f64,
    join_us: f64,
    memory_kib: f64,
    shape: (usize, usize, usize, u32),
}

fn measure(set: &str, quick: bool, seed: u64) -> Row {
    let rules = load_rules(set);
    let groups = if rules.len() <= 1000 { 5 } else { 1 };
    let snap = snapshot(&rules, groups);
    let instance: MemberId = "i-bench".parse().unwrap();
    let runs = if quick { 1 } else { 3 };
    let trace = trace_seeded(set, &rules, 1_000_000, seed);
    let trace = if quick { &trace[..50_000] } else { &trace[..] };

    let build_ms = median(
        (0..if quick { 1 } else { 5 })
            .map(|_| {
                let t = Instant::now();
                black_box(Engine::new(&snap).unwrap());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    let mut engine = Engine::new(&snap).unwrap();
    let reference = Reference::new(&snap).unwrap();

    // The reference sorts every rule at every lookup: a sample of the trace is enough.
    let sample = &trace[..if rules.len() > 1000 { 2_000 } else { 20_000 }.min(trace.len())];
    for h in sample {
        let q = query(&instance, h);
        assert_eq!(
            reference.decide(&q).unwrap(),
            engine.decide(&q).unwrap(),
            "{set}: evaluators disagree on {h:?}"
        );
    }
    let compiled = stage(&engine, &instance);
    // The batch form must judge every packet as the one-by-one form does.
    let sample_packets: Vec<Packet> = trace[..trace.len().min(100_000)]
        .iter()
        .map(packet)
        .collect();
    let mut batch = Vec::new();
    compiled.decide_all(&sample_packets, &mut batch).unwrap();
    for (p, d) in sample_packets.iter().zip(&batch) {
        assert_eq!(
            &compiled.decide(p).unwrap(),
            d,
            "{set}: batch disagrees on {p:?}"
        );
    }
    drop(batch);
    let batch_ns = median(
        (0..runs)
            .map(|_| batch_throughput(&compiled, trace))
            .collect(),
    );
    let compiled_ns = median(
        (0..runs)
            .map(|_| stage_throughput(&compiled, trace))
            .collect(),
    );
    let query_ns = median(
        (0..runs)
            .map(|_| throughput(&engine, &instance, trace))
            .collect(),
    );
    let reference_ns = median(
        (0..runs)
            .map(|_| throughput(&reference, &instance, sample))
            .collect(),
    );
    let lat = latencies(&compiled, &trace[..trace.len().min(200_000)]);

    // Incremental: add then revoke one rule (a copy of a random line at a middle priority),
    // and members joining the group that a rule of the instance references.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut adds, mut removes) = (vec![], vec![]);
    for k in 0..if quick { 20 } else { 200 } {
        let i = rng.random_range(0..rules.len());
        let p = fields(&rules[i], i, rules.len())
            .parse(
                format!("sgr-new{k}").parse().unwrap(),
                Direction::Ingress,
                NetworkType::Vpc,
            )
            .unwrap();
        let add = Change::AddPermission("sg-set0".parse().unwrap(), p);
        let t = Instant::now();
        engine.apply(&add).unwrap();
        adds.push(micros(t.elapsed()));
        let remove = Change::RemovePermission(
            "sg-set0".parse().unwrap(),
            format!("sgr-new{k}").parse().unwrap(),
        );
        let t = Instant::now();
        engine.apply(&remove).unwrap();
        removes.push(micros(t.elapsed()));
    }
    let mut joins = vec![];
    for k in 0..if quick { 20 } else { 200u32 } {
        let id: MemberId = format!("i-member{k}").parse().unwrap();
        let member = Instance {
            id: id.clone(),
            attached_to: None,
            owner: model::AccountId::new(1),
            vpc_id: Some("vpc-bench".parse().unwrap()),
            private_ip: Ipv4Addr::from(0xC612_1000 + k),
            secondary_ips: Vec::new(),
            ipv4_prefixes: Vec::new(),
            ipv6: None,
            public_ip: None,
            source_dest_check: true,
            security_groups: vec!["sg-set0".parse().unwrap()],
        };
        engine.apply(&Change::AddInstance(member)).unwrap();
        let join = Change::Join(id, "sg-peer".parse().unwrap());
        let t = Instant::now();
        engine.apply(&join).unwrap();
        joins.push(micros(t.elapsed()));
    }
    Row {
        set: set.to_string(),
        rules: rules.len(),
        compiled_ns,
        batch_ns,
        query_ns,
        reference_ns,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        build_ms,
        add_us: median(adds),
        remove_us: median(removes),
        join_us: median(joins),
        memory_kib: engine.memory_bytes() as f64 / 1024.0,
        shape: engine.ingress_shape(&instance).unwrap(),
    }
}

fn sets(smoke: bool) -> Vec<String> {
    match std::env::var("STOCKADE_BENCH_SETS") {
        Ok(s) => s.split(',').map(str::to_string).collect(),
        Err(_) if smoke => vec!["acl1_1k".to_string()],
        Err(_) => SETS.iter().map(|s| s.to_string()).collect(),
    }
}

/// `STOCKADE_BENCH_SEEDS=1,2`: the trace seeds (1 by default, the seed the published
/// figures used).
fn seeds() -> Vec<u64> {
    std::env::var("STOCKADE_BENCH_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![1])
}

/// One peer classifier's figures from the simulator's CSV.
struct PeerFigure {
    name: String,
    ns: f64,
    build_ms: f64,
    bytes: f64,
}

/// The TupleMerge/PartitionSort simulator (`STOCKADE_PEER_SIM`, the `main` binary of
/// drjdaly/tuplemerge built outside this repository) on the same rule file and trace file:
/// each classifier's ns per lookup over the whole trace, build time and size. `None`
/// without the variable: the ratio is then not measured.
fn peer(sim: &Path, set: &str, trace: &Path, packets: usize) -> Vec<PeerFigure> {
    let out = std::env::temp_dir().join(format!("stockade-peer-{set}-{}.csv", std::process::id()));
    let status = std::process::Command::new(sim)
        .arg(format!("f={}", classbench_dir().join(set).display()))
        .arg(format!("c={PEERS}"))
        .arg(format!("o={}", out.display()))
        .arg(format!("p={}", trace.display()))
        .arg("TM.Limit.Collide=10")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("STOCKADE_PEER_SIM runs");
    assert!(status.success(), "the peer simulator failed on {set}");
    let csv = std::fs::read_to_string(&out).expect("the simulator's CSV");
    let _ = std::fs::remove_file(&out);
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some(PeerFigure {
                name: f.first()?.to_string(),
                build_ms: f.get(1)?.parse().ok()?,
                ns: f.get(2)?.parse::<f64>().ok()? * 1e9 / packets as f64,
                bytes: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// The best of each peer over two runs (one before ours, one after: the machine's noise
/// counts in the peer's favour), then the best peer.
fn best_peer(runs: [Vec<PeerFigure>; 2]) -> Option<PeerFigure> {
    let [first, second] = runs;
    first
        .into_iter()
        .map(|a| match second.iter().find(|b| b.name == a.name) {
            Some(b) if b.ns < a.ns => PeerFigure {
                name: a.name,
                ns: b.ns,
                build_ms: b.build_ms,
                bytes: b.bytes,
            },
            _ => a,
        })
        .min_by(|a, b| a.ns.total_cmp(&b.ns))
}

fn report(quick: bool, smoke: bool) {
    let sim = std::env::var_os("STOCKADE_PEER_SIM").map(PathBuf::from);
    println!("\nStockade policy engine on ClassBench (one core; compiled vs reference and vs the best peer, all in the same run)\n");
    println!(
        "{:<9} {:>4} {:>5} | {:>8} {:>7} {:>8} {:>7} | {:>6} {:>6} | {:>20} {:>8} {:>7} {:>7} {:>11} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>17}",
        "set", "seed", "rules", "ns/look", "batch", "query", "vs ref", "p50", "p99", "best peer", "peer ns", "ratio", "batch",
        "peer KiB/ms", "build ms", "add us", "del us", "join us", "mem KiB", "nodes/leaves/max/d"
    );
    let mut ratios = Vec::new();
    for set in sets(smoke) {
        for seed in seeds() {
            if sim.is_some() {
                // The simulator reads the trace file: make it before the first peer run.
                trace_seeded(&set, &load_rules(&set), 1_000_000, seed);
            }
            let before = sim
                .as_ref()
                .map(|s| peer(s, &set, &trace_path(&set, 1_000_000, seed), 1_000_000));
            let r = measure(&set, quick, seed);
            let after = sim
                .as_ref()
                .map(|s| peer(s, &set, &trace_path(&set, 1_000_000, seed), 1_000_000));
            let best = before.zip(after).and_then(|(a, b)| best_peer([a, b]));
            let (name, ns, ratio, batch, kib) = match &best {
                Some(p) => {
                    ratios.push((set.clone(), seed, p.ns / r.compiled_ns, p.ns / r.batch_ns));
                    (
                        p.name.clone(),
                        format!("{:.1}", p.ns),
                        format!("{:.2}x", p.ns / r.compiled_ns),
                        format!("{:.2}x", p.ns / r.batch_ns),
                        format!("{:.0}/{:.1}", p.bytes / 1024.0, p.build_ms),
                    )
                }
                None => {
                    let none = || "-".to_string();
                    ("not measured".into(), none(), none(), none(), none())
                }
            };
            println!(
                "{:<9} {:>4} {:>5} | {:>8.1} {:>7.1} {:>6.0}ns {:>6.0}x | {:>6.0} {:>6.0} | {:>20} {:>8} {:>7} {:>7} {:>11} | {:>8.2} {:>8.2} {:>8.2} {:>8.2} | {:>8.0} {:>17}",
                r.set,
                seed,
                r.rules,
                r.compiled_ns,
                r.batch_ns,
                r.query_ns,
                r.reference_ns / r.query_ns,
                r.p50,
                r.p99,
                name,
                ns,
                ratio,
                batch,
                kib,
                r.build_ms,
                r.add_us,
                r.remove_us,
                r.join_us,
                r.memory_kib,
                format!("{}/{}/{}/{}", r.shape.0, r.shape.1, r.shape.2, r.shape.3),
            );
        }
    }
    println!(
        "\nns/look: mean ns per packet over the trace judged by the instance's resolved stage (median of 3 \
         passes), as the simulators judge packets against one rule set; batch: the same stage's \
         Stage::decide_all, blocks of 256 packets judged eight at a time with their tree walks overlapped; query: the same through \
         Evaluator::decide, which also finds the instance; vs ref: reference / query, both per query; \
         best peer: the fastest of TupleMerge and PartitionSort (online and offline) run by the simulator \
         at STOCKADE_PEER_SIM on the same rule and trace files, before and after ours, its better run kept; \
         ratio: peer ns / ours one by one, batch: peer ns / ours in batches (>1 = we are faster); add/del/join: median µs of 200 incremental changes.\n"
    );
    match (&sim, ratios.is_empty()) {
        (None, _) => println!(
            "peer: not measured (set STOCKADE_PEER_SIM to the simulator's binary to measure it in this run)\n"
        ),
        (Some(_), false) => {
            for (label, pick) in [("one by one", 2), ("in batches", 3)] {
                let ratio = |r: &(String, u64, f64, f64)| if pick == 2 { r.2 } else { r.3 };
                let short: Vec<String> = ratios
                    .iter()
                    .filter(|r| ratio(r) < 2.0)
                    .map(|r| format!("{}/{} {:.2}x", r.0, r.1, ratio(r)))
                    .collect();
                println!(
                    "{label}: {} of {} rows at >= 2x the best peer{}",
                    ratios.len() - short.len(),
                    ratios.len(),
                    if short.is_empty() { String::new() } else { format!("; under: {}", short.join(", ")) }
                );
            }
            println!();
        }
        (Some(_), true) => {}
    }
}

fn criterion_groups(c: &mut Criterion) {
    for set in sets(false) {
        let rules = load_rules(&set);
        let snap = snapshot(&rules, if rules.len() <= 1000 { 5 } else { 1 });
        let trace = trace(&set, &rules, 1_000_000);
        let engine = Engine::new(&snap).unwrap();
        let reference = Reference::new(&snap).unwrap();
        let instance: MemberId = "i-bench".parse().unwrap();
        let mut g = c.benchmark_group(format!("lookup/{set}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        let batch = &trace[..10_000];
        g.throughput(Throughput::Elements(batch.len() as u64));
        let compiled = stage(&engine, &instance);
        g.bench_function("compiled", |b| {
            b.iter(|| stage_throughput(&compiled, batch))
        });
        let small = &batch[..200];
        g.throughput(Throughput::Elements(small.len() as u64));
        g.bench_function("reference", |b| {
            b.iter(|| throughput(&reference, &instance, small))
        });
        g.finish();
        let mut g = c.benchmark_group(format!("build/{set}"));
        g.sample_size(10).measurement_time(Duration::from_secs(2));
        g.bench_function("compiled", |b| {
            b.iter_batched(
                || snap.clone(),
                |s| Engine::new(&s).unwrap(),
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

fn main() {
    let quick = std::env::var("STOCKADE_BENCH_QUICK").is_ok();
    if let Ok(set) = std::env::var("STOCKADE_BENCH_PROFILE") {
        // Compiled lookups only, for a profiler.
        let rules = load_rules(&set);
        let engine =
            Engine::new(&snapshot(&rules, if rules.len() <= 1000 { 5 } else { 1 })).unwrap();
        let trace = trace(&set, &rules, 1_000_000);
        let instance: MemberId = "i-bench".parse().unwrap();
        let compiled = stage(&engine, &instance);
        for _ in 0..10 {
            println!("{:.1} ns", stage_throughput(&compiled, &trace));
        }
        return;
    }
    // `cargo test --all-targets` runs this binary without `--bench`: then it is a smoke test
    // (one small set, short trace; the evaluators' agreement is still asserted).
    let benching = std::env::args().any(|a| a == "--bench");
    report(quick || !benching, !benching);
    // `STOCKADE_BENCH_TABLE_ONLY=1`: the table (with the peer, full traces), no criterion.
    if benching && !quick && std::env::var("STOCKADE_BENCH_TABLE_ONLY").is_err() {
        let mut c = Criterion::default().configure_from_args();
        criterion_groups(&mut c);
        c.final_summary();
    }
}
