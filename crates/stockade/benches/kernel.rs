//! The kernel's cost of judging new flows against the number of rules, on real packets:
//! the linear rendering (one statement per rule) beside the flat one (verdict-map lookups),
//! in the same run (needs root, like the lab tests).
//!
//! Three network namespaces: a client, a host that routes between it and an instance and
//! holds the `inet stockade` table, and the instance. The instance's only group holds N
//! rules (10, 100, 1,000): the first N − 1 lines of ClassBench's `acl1_10k` mapped as the
//! engine's benchmark maps them (source prefix → peer CIDR, destination prefix → local CIDR,
//! ports, protocol, priority buckets, every 7th a drop), every 10th turned into a rule whose
//! peer is a 50-member group, lines that would match the measured flow left out; then the
//! rule that admits the flow (TCP 5001 from the client, priority 100), so that a linear
//! chain is walked to its end. The client opens connections one after another (connect,
//! read the server's close, close); each SYN is a new flow judged by the chain, every later
//! packet an established one. Figures: connections per second and the median `connect`
//! (the first packet's round trip, chain included), each configuration measured in fresh
//! namespaces, the configurations interleaved over three rounds, the best round kept. The
//! ratio that matters is each rendering's rate at N rules over its own rate at 10 rules.
//! Before measuring, each table is checked to drop a flow its rules do not admit.
//!
//! `cargo bench -p stockade --bench kernel`; `STOCKADE_BENCH_QUICK=1` (and `cargo test`)
//! runs a small smoke version (10 and 100 rules, a few hundred connections).

// A benchmark spawns processes, times them and reads the rule sets.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../../policy/benches/common/classbench_set.rs"]
mod set;

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use model::{Direction, Instance, NetworkType, NicType, PermissionFields};
use netfilter::{Backend, NftCli};
use nft::{render_as, Attachment, Rendering};
use policy::{GroupPolicy, Snapshot, State};

/// Set in the helper processes this benchmark starts inside the namespaces.
const ROLE: &str = "STOCKADE_KERNEL_BENCH_ROLE";
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
const INSTANCE: Ipv4Addr = Ipv4Addr::new(198, 18, 101, 10);
const PORT: u16 = 5001;
/// A port the rules do not admit (the drop check).
const CLOSED_PORT: u16 = 5002;

fn quick() -> bool {
    std::env::var("STOCKADE_BENCH_QUICK").is_ok() || !std::env::args().any(|a| a == "--bench")
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect(program);
    assert!(status.success(), "{program} {args:?}");
}

/// A namespace, deleted on drop (also when the benchmark panics).
struct Netns(String);

impl Netns {
    fn new(role: &str, tag: usize) -> Netns {
        let name = format!("skk-{role}{tag}-{}", std::process::id());
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Client ─ host ─ instance, with the server listening in the instance.
struct Topology {
    client: Netns,
    host: Netns,
    _instance: Netns,
    server: Child,
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn topology(tag: usize) -> Topology {
    let (client, host, instance) = (
        Netns::new("c", tag),
        Netns::new("h", tag),
        Netns::new("i", tag),
    );
    let h = host.0.as_str();
    for (device, peer, host_address, peer_address) in [
        ("kc", &client.0, "198.18.100.1/24", "198.18.100.2/24"),
        ("ki", &instance.0, "198.18.101.1/24", "198.18.101.10/24"),
    ] {
        run(
            "ip",
            &[
                "-n", h, "link", "add", device, "type", "veth", "peer", "name", "eth0", "netns",
                peer,
            ],
        );
        run("ip", &["-n", h, "addr", "add", host_address, "dev", device]);
        run("ip", &["-n", h, "link", "set", device, "up"]);
        run(
            "ip",
            &["-n", peer, "addr", "add", peer_address, "dev", "eth0"],
        );
        run("ip", &["-n", peer, "link", "set", "eth0", "up"]);
        let gateway = host_address.split('/').next().unwrap();
        run(
            "ip",
            &["-n", peer, "route", "add", "default", "via", gateway],
        );
    }
    run(
        "ip",
        &["netns", "exec", h, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
    );
    let mut server = helper(&instance.0, "server", &[]);
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    Topology {
        client,
        host,
        _instance: instance,
        server,
    }
}

/// This benchmark's own binary in `ns`, playing `role`.
fn helper(ns: &str, role: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns])
        .arg(exe)
        .env(ROLE, role)
        .stdout(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// The server: accepts and closes at once (the close comes first from its side, so the
/// client's ports never wait in TIME_WAIT); a UDP socket on the same port takes the flood
/// (never read: what the host forwarded is counted on the host).
fn serve() {
    let listener = TcpListener::bind(("0.0.0.0", PORT)).unwrap();
    let _udp = UdpSocket::bind(("0.0.0.0", PORT)).unwrap();
    println!("ready");
    for stream in listener.incoming() {
        drop(stream);
    }
}

/// The flood: UDP datagrams to the instance for `STOCKADE_KERNEL_BENCH_FLOOD` seconds from
/// 64 sockets in turn (64 flows). No answer ever comes, so conntrack keeps every flow new
/// and the host's chain judges each datagram as it judges a flow's first packet.
fn flood(seconds: f64) {
    let sockets: Vec<UdpSocket> = (0..64)
        .map(|_| {
            let s = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
            s.connect((INSTANCE, PORT)).unwrap();
            s
        })
        .collect();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for s in &sockets {
            if s.send(&[0u8; 18]).is_ok() {
                sent += 1;
            }
        }
    }
    println!("{sent}");
}

/// The client: `STOCKADE_KERNEL_BENCH_COUNT` connections one after another; prints the
/// seconds they took and the median connect in microseconds. With
/// `STOCKADE_KERNEL_BENCH_PROBE=PORT`, only says whether one connection to that port is
/// answered (a refusal is an answer: the packet got through).
fn connect_loop() {
    if let Ok(seconds) = std::env::var("STOCKADE_KERNEL_BENCH_FLOOD") {
        return flood(seconds.parse().unwrap());
    }
    let target = |port| SocketAddr::from((INSTANCE, port));
    if let Ok(port) = std::env::var("STOCKADE_KERNEL_BENCH_PROBE") {
        let answered = match TcpStream::connect_timeout(
            &target(port.parse().unwrap()),
            Duration::from_millis(300),
        ) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        };
        println!("{answered}");
        return;
    }
    let count: usize = std::env::var("STOCKADE_KERNEL_BENCH_COUNT")
        .unwrap()
        .parse()
        .unwrap();
    let mut connects = Vec::with_capacity(count);
    let mut sink = [0u8; 16];
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&target(PORT), Duration::from_secs(2))
            .expect("the admitted flow connects");
        connects.push(t.elapsed().as_secs_f64() * 1e6);
        let _ = s.read(&mut sink);
    }
    let seconds = start.elapsed().as_secs_f64();
    connects.sort_by(f64::total_cmp);
    println!("{seconds} {}", connects[count / 2]);
}

fn instance(id: &str, ip: Ipv4Addr, group: &str) -> Instance {
    Instance {
        id: id.parse().unwrap(),
        attached_to: None,
        owner: model::AccountId::new(1),
        vpc_id: Some("vpc-bench".parse().unwrap()),
        private_ip: ip,
        secondary_ips: Vec::new(),
        ipv4_prefixes: Vec::new(),
        ipv6: None,
        public_ip: None,
        source_dest_check: true,
        security_groups: vec![group.parse().unwrap()],
    }
}

/// Whether a ClassBench line could match the measured flows (client → instance, TCP or UDP
/// 5001); such lines are left out so every chain is walked to its end.
fn matches_flow(r: &set::Rule) -> bool {
    let inside = |(net, len): (u32, u8), a: Ipv4Addr| {
        len == 0 || (u32::from(a) ^ net) >> (32 - u32::from(len)) == 0
    };
    inside(r.src, CLIENT)
        && inside(r.dst, INSTANCE)
        && r.proto.is_none_or(|p| p == 6 || p == 17)
        && r.dport.0 <= PORT
        && PORT <= r.dport.1
}

/// The instance's policy with `n` rules (see the module documentation).
fn policy(rules: &[set::Rule], n: usize) -> Snapshot {
    let mut permissions = Vec::new();
    let lines: Vec<&set::Rule> = rules.iter().filter(|r| !matches_flow(r)).collect();
    for (i, r) in lines.iter().take(n - 2).enumerate() {
        let mut fields = set::fields(r, i, n);
        if i % 10 == 9 {
            fields.source_cidr_ip = None;
            fields.dest_cidr_ip = None;
            fields.group_id = Some("sg-peers".into());
        }
        permissions.push(fields);
    }
    for protocol in ["tcp", "udp"] {
        permissions.push(PermissionFields {
            priority: Some("100".into()),
            ip_protocol: Some(protocol.into()),
            port_range: Some(format!("{PORT}/{PORT}")),
            source_cidr_ip: Some(format!("{CLIENT}/32")),
            ..Default::default()
        });
    }
    let permissions = permissions
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            f.parse(
                format!("sgr-{i}").parse().unwrap(),
                Direction::Ingress,
                NetworkType::Vpc,
            )
            .expect("mapped rule is valid")
        })
        .collect::<Vec<_>>()
        .into();
    let mut instances = vec![instance("i-bench", INSTANCE, "sg-bench")];
    instances.extend((1..=50).map(|k| {
        instance(
            &format!("i-peer{k}"),
            Ipv4Addr::new(198, 18, 102, k),
            "sg-peers",
        )
    }));
    Snapshot {
        groups: vec![
            GroupPolicy {
                group: set::group("sg-bench"),
                permissions,
            },
            GroupPolicy {
                group: set::group("sg-peers"),
                permissions: Default::default(),
            },
        ],
        instances,
        prefix_lists: vec![],
        port_range_lists: vec![],
    }
}

/// One configuration's figures.
#[derive(Clone, Copy)]
struct Figures {
    /// Datagrams of unanswered flows the host forwarded per second.
    judged_per_second: f64,
    /// TCP connections opened and closed per second, one after another.
    per_second: f64,
    /// The median connect (the SYN's round trip).
    connect_us: f64,
    /// Rendering the table and installing it (`nft -f`), in milliseconds.
    install_ms: f64,
}

/// The packets the host's counter table saw leave by the instance's device.
fn forwarded(host: &str) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns", "exec", host, "nft", "list", "chain", "inet", "skbench", "post",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("packets ").expect("counter");
    text[at + 8..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The script as the table was before the host-isolation rules: the zone chain at `raw`
/// (after reassembly), the forward chain without the isolated-device and control-message
/// rules. The baseline of what those cost the forwarding path (the `host` chain is on the
/// input path, which no measured packet takes).
fn without_isolation(script: &str) -> String {
    script
        .lines()
        .filter(|l| !l.contains("jump control") && !(l.contains("@isolated drop")))
        .map(|l| l.replace("priority -450", "priority raw") + "\n")
        .collect()
}

/// The same table without its hit counters (`counter name "…"` in statements, the counter
/// objects): the baseline of what counting costs.
fn without_counters(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        if line.trim_start().starts_with("counter h") {
            continue;
        }
        let mut l = line.to_string();
        const AT: &str = "counter name \"";
        while let Some(at) = l.find(AT) {
            let close = at + AT.len() + l[at + AT.len()..].find('"').expect("a closing quote");
            // Through the closing quote and the space after it.
            l.replace_range(at..=close + 1, "");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// A configuration measured: a rendering, with the host-isolation rules or without, with
/// the hit counters or without.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Config {
    rendering: Rendering,
    isolation: bool,
    counters: bool,
}

/// Installs the table for `n` rules in `config` in fresh namespaces, checks it drops an
/// unadmitted flow, and measures `count` connections.
fn measure(
    rules: &[set::Rule],
    n: usize,
    Config {
        rendering,
        isolation,
        counters,
    }: Config,
    count: usize,
    tag: usize,
) -> (Figures, usize) {
    let top = topology(tag);
    let state = State::from_snapshot(&policy(rules, n)).unwrap();
    let attachments = [Attachment {
        instance: "i-bench".parse().unwrap(),
        nic_type: NicType::Intranet,
        interface: "ki".into(),
    }];
    let t = Instant::now();
    let ruleset = render_as(&state, &attachments, rendering);
    assert!(ruleset.failed.is_empty(), "{:?}", ruleset.failed);
    let mut nft = NftCli::in_netns(&top.host.0);
    let mut script = ruleset.full_script();
    if !counters {
        let bare = without_counters(&script);
        assert_ne!(bare, script, "the baseline lacks the counters");
        assert!(!bare.contains("counter name"), "{bare}");
        script = bare;
    }
    if isolation {
        nft.apply(&script).unwrap();
    } else {
        let baseline = without_isolation(&script);
        assert_ne!(baseline, script, "the baseline lacks the isolation rules");
        nft.apply(&baseline).unwrap();
    }
    let install_ms = t.elapsed().as_secs_f64() * 1e3;
    let elements: usize = ruleset.maps.values().map(|m| m.elements.len()).sum();
    // The client helper with one setting; what it printed.
    let client = |setting: &str, value: String| {
        let out = helper(&top.client.0, "client", &[(setting, value)])
            .wait_with_output()
            .unwrap();
        assert!(out.status.success(), "client {setting} failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let probe = |port: u16| client("STOCKADE_KERNEL_BENCH_PROBE", port.to_string()) == "true";
    assert!(
        probe(PORT),
        "{rendering:?} {n}: the admitted flow is dropped"
    );
    assert!(
        !probe(CLOSED_PORT),
        "{rendering:?} {n}: a flow no rule admits gets through"
    );
    let counter = "table inet skbench {\n chain post {\n  type filter hook postrouting priority 0; policy accept;\n  oifname \"ki\" meta l4proto udp counter\n }\n}\n";
    nft.apply(counter).unwrap();
    let seconds = if count > 1000 { 2.0 } else { 0.3 };
    let before = forwarded(&top.host.0);
    client("STOCKADE_KERNEL_BENCH_FLOOD", seconds.to_string());
    let judged_per_second = (forwarded(&top.host.0) - before) as f64 / seconds;
    let text = client("STOCKADE_KERNEL_BENCH_COUNT", count.to_string());
    let mut parts = text.split_whitespace().map(|v| v.parse::<f64>().unwrap());
    let (seconds, connect_us) = (parts.next().unwrap(), parts.next().unwrap());
    let figures = Figures {
        judged_per_second,
        per_second: count as f64 / seconds,
        connect_us,
        install_ms,
    };
    (figures, elements)
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("server") => return serve(),
        Ok("client") => return connect_loop(),
        _ => {}
    }
    if std::env::var_os("STOCKADE_SKIP_KERNEL").is_some() || std::env::args().any(|a| a == "--list")
    {
        return;
    }
    let quick = quick();
    let (sizes, count, rounds): (&[usize], usize, usize) = if quick {
        (&[10, 100], 200, 1)
    } else {
        (&[10, 100, 1000], 3000, 3)
    };
    let rules = set::load_rules("acl1_10k");
    let configs = [
        (Rendering::Linear, true, true),
        (Rendering::Flat, true, true),
        (Rendering::Linear, false, true),
        (Rendering::Linear, true, false),
    ]
    .map(|(rendering, isolation, counters)| Config {
        rendering,
        isolation,
        counters,
    });
    let mut best = vec![vec![None::<Figures>; sizes.len()]; configs.len()];
    let mut elements = vec![0usize; sizes.len()];
    let mut tag = 0;
    for round in 0..rounds {
        for (s, &n) in sizes.iter().enumerate() {
            for (c, &config) in configs.iter().enumerate() {
                tag += 1;
                let (f, e) = measure(&rules, n, config, count, tag);
                eprintln!(
                    "round {round}: {config:?} {n} rules: {:.0} first packets/s, {:.0} connections/s, connect {:.1} µs",
                    f.judged_per_second, f.per_second, f.connect_us
                );
                if config.rendering == Rendering::Flat {
                    elements[s] = e;
                }
                let slot = &mut best[c][s];
                if slot.is_none_or(|b| f.judged_per_second > b.judged_per_second) {
                    *slot = Some(f);
                }
            }
        }
    }
    println!(
        "\nnew flows through the host's table (best of {rounds} rounds, {count} connections each)"
    );
    println!(
        "| rules | linear first packets/s | vs 10 rules | conn/s | connect µs | install ms | flat first packets/s | vs 10 rules | conn/s | connect µs | install ms | flat map elements |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (s, &n) in sizes.iter().enumerate() {
        let cell = |c: usize| {
            let f = best[c][s].unwrap();
            let base = best[c][0].unwrap();
            format!(
                "{:.0} | {:.0}% | {:.0} | {:.1} | {:.1}",
                f.judged_per_second,
                100.0 * f.judged_per_second / base.judged_per_second,
                f.per_second,
                f.connect_us,
                f.install_ms,
            )
        };
        println!("| {n} | {} | {} | {} |", cell(0), cell(1), elements[s]);
    }
    // The linear table as rendered (configuration 0) beside one without a part of it.
    let compare = |title: &str, without: usize| {
        println!("\n{title}");
        println!("| rules | with: first packets/s | conn/s | without: first packets/s | conn/s | with / without |");
        println!("|---:|---:|---:|---:|---:|---:|");
        for (s, &n) in sizes.iter().enumerate() {
            let (with, without) = (best[0][s].unwrap(), best[without][s].unwrap());
            println!(
                "| {n} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
                with.judged_per_second,
                with.per_second,
                without.judged_per_second,
                without.per_second,
                with.judged_per_second / without.judged_per_second
            );
        }
    };
    compare(
        "the host-isolation rules on the forwarding path (linear, same run)",
        2,
    );
    compare(
        "the hit counters (linear, same run; goal: under 5 % of the new-flow rate)",
        3,
    );
}
