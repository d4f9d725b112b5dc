//! The host agent's speed, on the real kernel (needs root, like the lab tests).
//!
//! `cargo bench -p stockade --bench agent` prints:
//! - **propagation**: from an `AuthorizeSecurityGroup` call returning to the first packet
//!   that gets through because of it, over 200 changes (a prober inside the sending
//!   instance's namespace retries every 10 ms... until it passes), between two hosts, in
//!   one lab both for the lab's own VPC (the hosts' main tables and shared link) and for a
//!   second tenant's VPC of the same CIDRs (its own routing table on each host and its own
//!   VXLAN), at the same addresses on the same hosts, and to a secondary interface (a second
//!   device of the receiving instance, in another vSwitch and group);
//! - **full program**: render and apply the policy of 1,000 instances × 5 groups × 50 rules
//!   on one host (20 tiers of instances share their group lists, as tiers do; every group
//!   also references a 2,000-member group);
//! - **membership change**: one instance joining the 2,000-member group: render, diff and
//!   apply (a set-element update);
//! - the full program and the membership change again with chains rendered flat (decision
//!   trees of verdict maps, `nft::Rendering::Flat`), beside the linear figures;
//! - **memory**: the lab agent's resident set, and the growth of this process while it holds
//!   the 1,000-instance policy.
//!
//! Each figure is also given as a ratio to a baseline measured in the same run: one `nft -f`
//! transaction of a one-rule table, the `nft` program started (what every change cost before
//! the agent drove the nftables library in its own process: a process start, the library
//! loaded, the cache read and a netlink batch). `STOCKADE_BENCH_QUICK=1` (and `cargo test`) runs a small smoke version;
//! `STOCKADE_BENCH_ONLY=membership` the baseline and 200 membership changes alone, and
//! `STOCKADE_BENCH_ONLY=propagation` the baseline and the propagation figures alone (to
//! profile those paths).

#[allow(dead_code)]
#[path = "../tests/lab/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::feed::{HostPolicy, Placed};
use agent::Enforcer;
use model::{
    AccountId, GroupType, InnerAccessPolicy, Instance, NicType, PermissionFields, SecurityGroup,
};
use netfilter::{Backend, NftCli};
use nft::{render_as, Attachment, Rendering};
use policy::{GroupPolicy, Snapshot, State};

fn quick() -> bool {
    std::env::var("STOCKADE_BENCH_QUICK").is_ok() || !std::env::args().any(|a| a == "--bench")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// A scratch namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("sknft-bench{tag}-{}", std::process::id());
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median time of one `nft -f` of a one-rule table (the program started, as the baseline
/// always was; the agent itself drives the nftables library in its process).
fn baseline() -> f64 {
    let ns = Netns::new("base");
    let mut nft = NftCli::in_netns(&ns.0).program();
    let script = "table inet stockade {}\ndelete table inet stockade\ntable inet stockade {\n chain c {\n  tcp dport 80 accept\n }\n}\n";
    median(
        (0..20)
            .map(|_| {
                let t = Instant::now();
                nft.apply(script).unwrap();
                ms(t.elapsed())
            })
            .collect(),
    )
}

/// Propagation of rule changes from `from` to `to` of tenant `t` (0: the lab's own
/// account; with `eni`, to `to`'s secondary interface, by a rule of the interfaces' group),
/// `changes` for each of `pairs`, made in turn (one change of each pair, then the next, each
/// round starting with the next pair), so that every pair meets the same load and the same
/// growing ruleset. Sorted milliseconds, per pair.
fn propagation(
    lab: &harness::Lab,
    pairs: &[(usize, (usize, usize), bool)],
    changes: usize,
) -> Vec<Vec<f64>> {
    struct Pair {
        tenant: usize,
        group: String,
        from: String,
        target: String,
        to_prober: std::process::ChildStdin,
        from_prober: std::io::Lines<BufReader<std::process::ChildStdout>>,
        prober: std::process::Child,
        took: Vec<f64>,
    }
    let mut state: Vec<Pair> = pairs
        .iter()
        .map(|&(t, (from, to), eni)| {
            let group = match t {
                0 if eni => lab.lab["SecondarySecurityGroupId"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                0 => lab.default_group("vpc"),
                t => lab.lab["Tenants"][t - 1]["SecurityGroupIds"][0]
                    .as_str()
                    .unwrap()
                    .to_string(),
            };
            let mut prober = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.member(from).netns,
                    env!("CARGO_BIN_EXE_stockade"),
                ])
                .args(["lab", "probe-batch", "--until-pass", "--timeout-ms", "10"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            Pair {
                tenant: t,
                group,
                from: format!("{}/32", lab.member(from).private_ip),
                target: match (&lab.member(to).secondary, eni) {
                    (Some((_, ip)), true) => ip.clone(),
                    _ => lab.member(to).private_ip.clone(),
                },
                to_prober: prober.stdin.take().unwrap(),
                from_prober: BufReader::new(prober.stdout.take().unwrap()).lines(),
                prober,
                took: Vec::new(),
            }
        })
        .collect();
    let pairs = state.len();
    for n in 0..changes {
        // Each round starts with another pair: a change that follows another one closely
        // meets an agent still busy with it, and no pair should always be that one.
        for k in 0..pairs {
            let p = &mut state[(n + k) % pairs];
            let port = (20000 + n).to_string();
            let range = format!("{port}/{port}");
            let params = [
                ("Action", "AuthorizeSecurityGroup"),
                ("SecurityGroupId", p.group.as_str()),
                ("IpProtocol", "tcp"),
                ("PortRange", range.as_str()),
                ("SourceCidrIp", p.from.as_str()),
            ];
            match p.tenant {
                0 => lab.call(&params),
                t => lab
                    .try_call_as(&lab.tenants[t - 1], &params)
                    .unwrap_or_else(|e| panic!("{e}")),
            };
            writeln!(p.to_prober, "tcp {} {port} 0", p.target).unwrap();
            let us: i64 = p
                .from_prober
                .next()
                .unwrap()
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(us >= 0, "change {n} never took effect");
            p.took.push(us as f64 / 1e3);
        }
        if (n + 1) % 50 == 0 {
            eprintln!("  {} changes each", n + 1);
        }
    }
    state
        .into_iter()
        .map(|mut p| {
            drop(p.to_prober);
            let _ = p.prober.wait();
            p.took.sort_by(f64::total_cmp);
            p.took
        })
        .collect()
}

/// `instances` local instances in 20 tiers of 5 groups of `rules` rules, every group
/// referencing a group of `big` remote members.
fn fleet(instances: usize, rules: usize, big: usize) -> (Snapshot, Vec<Attachment>) {
    let vpc: model::VpcId = "vpc-bench".parse().unwrap();
    let owner = AccountId::new(1);
    let sg = |id: &str| SecurityGroup {
        id: id.parse().unwrap(),
        owner,
        group_type: GroupType::Normal,
        vpc_id: Some(vpc.clone()),
        inner_access_policy: InnerAccessPolicy::Accept,
    };
    let mut groups = vec![GroupPolicy {
        group: sg("sg-big"),
        permissions: Default::default(),
    }];
    for g in 0..100 {
        let id = format!("sg-g{g}");
        let permissions: Vec<model::Permission> = (0..rules)
            .map(|r| {
                let port = 1000 + (g * rules + r) as u16 % 60000;
                let mut f = PermissionFields {
                    policy: Some(if r % 7 == 6 { "drop" } else { "accept" }.into()),
                    priority: Some((1 + r % 100).to_string()),
                    ip_protocol: Some(if r % 3 == 2 { "udp" } else { "tcp" }.into()),
                    port_range: Some(format!("{port}/{}", port + (r as u16 % 10))),
                    ..PermissionFields::default()
                };
                if r % 10 == 0 {
                    f.group_id = Some("sg-big".into());
                } else {
                    f.source_cidr_ip = Some(format!("198.18.{}.{}/32", g, r % 250));
                }
                f.parse(
                    format!("sgr-g{g}r{r}").parse().unwrap(),
                    model::Direction::Ingress,
                    model::NetworkType::Vpc,
                )
                .unwrap()
            })
            .collect();
        groups.push(GroupPolicy {
            group: sg(&id),
            permissions: permissions.into(),
        });
    }
    let ip = |n: usize| std::net::Ipv4Addr::from(0xC612_0000u32 + n as u32); // 198.18.0.0 + n
    let mut all = Vec::new();
    let mut attachments = Vec::new();
    for k in 0..instances {
        let tier = k % 20;
        let id = format!("i-local{k}");
        all.push(Instance {
            id: id.parse().unwrap(),
            attached_to: None,
            owner,
            vpc_id: Some(vpc.clone()),
            private_ip: ip(10_000 + k),
            secondary_ips: Vec::new(),
            ipv4_prefixes: Vec::new(),
            ipv6: None,
            public_ip: None,
            source_dest_check: true,
            security_groups: (0..5)
                .map(|g| format!("sg-g{}", tier * 5 + g).parse().unwrap())
                .collect(),
        });
        attachments.push(Attachment {
            instance: id.parse().unwrap(),
            nic_type: NicType::Intranet,
            interface: format!("bk{k}"),
        });
    }
    for m in 0..big {
        all.push(Instance {
            id: format!("i-member{m}").parse().unwrap(),
            attached_to: None,
            owner,
            vpc_id: Some(vpc.clone()),
            private_ip: ip(20_000 + m),
            secondary_ips: Vec::new(),
            ipv4_prefixes: Vec::new(),
            ipv6: None,
            public_ip: None,
            source_dest_check: true,
            security_groups: vec!["sg-big".parse().unwrap()],
        });
    }
    (
        Snapshot {
            groups,
            instances: all,
            prefix_lists: Vec::new(),
            port_range_lists: Vec::new(),
        },
        attachments,
    )
}

/// The first `instances` of the snapshot, placed on the host.
fn placed_of(snapshot: &Snapshot, instances: usize) -> Vec<Placed> {
    snapshot
        .instances
        .iter()
        .take(instances)
        .map(|i| Placed {
            interface: format!("eni-{}", &i.id.as_str()[2..]).parse().unwrap(),
            id: i.id.clone(),
            private_ip: i.private_ip,
            public_ip: None,
        })
        .collect()
}

/// The resident memory of a process (`self` or a pid), in KiB.
fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Median milliseconds of a remote member leaving and rejoining the big group, `iterations`
/// changes in all, through the agent's enforcer writing chains in `rendering`: state, render,
/// diff and apply.
fn membership(
    snapshot: &Snapshot,
    placed: &[Placed],
    attachments: &[Attachment],
    member: usize,
    rendering: Rendering,
    iterations: u64,
) -> (f64, f64) {
    let ns2 = Netns::new("member");
    let mut enforcer = Enforcer::new(NftCli::in_netns(&ns2.0));
    let snap = snapshot.clone();
    enforcer.set_rendering(rendering);
    enforcer
        .set_policy(HostPolicy {
            revision: 1,
            instances: placed.to_vec(),
            snapshot: snap.clone(),
        })
        .unwrap();
    enforcer.set_attachments(attachments.to_vec());
    enforcer.sync().unwrap();
    let (mut join_ms, mut leave_ms) = (Vec::new(), Vec::new());
    let big_group: model::SecurityGroupId = "sg-big".parse().unwrap();
    let mut changed = snap.instances[member].clone();
    for n in 0..iterations {
        // It leaves and rejoins, as the feed's delta of that one member tells the agent:
        // every change removes or adds one set element (linear) or one class-map element
        // per chain that reads the group (flat).
        if n % 2 == 0 {
            changed.security_groups.clear();
        } else {
            changed.security_groups.push(big_group.clone());
        }
        let t = Instant::now();
        enforcer
            .update_members(n + 2, Vec::new(), vec![changed.clone()])
            .unwrap();
        let state_ms = ms(t.elapsed());
        let outcome = enforcer.sync().unwrap();
        assert!(outcome.applied && !outcome.full);
        let last = enforcer.backend().list().unwrap();
        assert!(last.contains("table inet stockade"));
        if rendering == Rendering::Linear {
            // The kernel holds the member's address exactly while it is a member.
            let address = changed.private_ip.to_string();
            let set = last.split("set g4_sg_big").nth(1).unwrap();
            let set = set.split('}').next().unwrap();
            assert_eq!(set.contains(&address), n % 2 == 1, "{address} in {set}");
        }
        if n % 2 == 0 {
            &mut leave_ms
        } else {
            &mut join_ms
        }
        .push(state_ms + ms(outcome.enforced_in));
    }
    (median(join_ms), median(leave_ms))
}

fn main() {
    if harness::skipped() || std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = quick();
    let (changes, instances, rules, big) = if quick {
        (5, 40, 10, 100)
    } else {
        (200, 1000, 50, 2000)
    };
    let base = baseline();
    eprintln!("baseline nft transaction: {base:.2} ms");
    if std::env::var("STOCKADE_BENCH_ONLY").as_deref() == Ok("membership") {
        let (snapshot, attachments) = fleet(instances, rules, big);
        let placed = placed_of(&snapshot, instances);
        let (join, leave) = membership(
            &snapshot,
            &placed,
            &attachments,
            instances,
            Rendering::Linear,
            200,
        );
        println!(
            "| member joins | {join:.2} ms | {:.1}× |\n| member leaves | {leave:.2} ms | {:.1}× |",
            join / base,
            leave / base
        );
        return;
    }

    eprintln!(
        "propagation: {changes} changes through the API, in each of two VPCs and to a secondary interface"
    );
    // Members 0 (h1) and 1 (h2) are the lab's VPC, member 0 also with a secondary interface
    // (a second device, another vSwitch and group), 2 (h1) and 3 (h2) the tenant's, at the
    // same addresses. The interface is probed from member 1, across hosts like the others.
    let lab = harness::Lab::up_with('b', 2, 2, 0, 1, 1);
    let mut all = propagation(
        &lab,
        &[(0, (0, 1), false), (1, (2, 3), false), (0, (1, 0), true)],
        changes,
    );
    let took_eni = all.pop().unwrap();
    let took_tenant = all.pop().unwrap();
    let took = all.pop().unwrap();
    let agent_rss = rss_kib(&lab.agent_pid(0).to_string());
    if std::env::var("STOCKADE_BENCH_ONLY").as_deref() == Ok("propagation") {
        drop(lab);
        println!("| figure | value | target | × baseline ({base:.2} ms nft transaction) |");
        println!("|---|---:|---:|---:|");
        propagation_rows(base, changes, &took, &took_tenant, &took_eni);
        return;
    }
    drop(lab);

    eprintln!("full program: {instances} instances x 5 groups x {rules} rules");
    let before = rss_kib("self");
    let (snapshot, attachments) = fleet(instances, rules, big);
    let state = State::from_snapshot(&snapshot).unwrap();
    let ns = Netns::new("full");
    let mut nft = NftCli::in_netns(&ns.0);
    let t = Instant::now();
    let ruleset = render_as(&state, &attachments, Rendering::Linear);
    let render_ms = ms(t.elapsed());
    let script = ruleset.full_script();
    let t = Instant::now();
    nft.apply(&script).unwrap();
    let apply_ms = ms(t.elapsed());
    let held_kib = rss_kib("self").saturating_sub(before);
    let rule_count: usize = ruleset.chains.values().map(|c| c.len()).sum();

    eprintln!("membership change in the {big}-member group (the agent's enforcer)");
    let doc = policy::document::to_value(&snapshot).to_string();
    let t = Instant::now();
    policy::document::parse(&doc).unwrap();
    let parse_ms = ms(t.elapsed());
    let placed = placed_of(&snapshot, instances);
    let (join, leave) = membership(
        &snapshot,
        &placed,
        &attachments,
        instances,
        Rendering::Linear,
        20,
    );
    eprintln!("the same, chains rendered flat");
    let ns3 = Netns::new("flat");
    let mut nft = NftCli::in_netns(&ns3.0);
    let t = Instant::now();
    let flat = render_as(&state, &attachments, Rendering::Flat);
    let flat_render_ms = ms(t.elapsed());
    let flat_script = flat.full_script();
    let t = Instant::now();
    nft.apply(&flat_script).unwrap();
    let flat_apply_ms = ms(t.elapsed());
    let flat_nodes = flat.chains.len();
    drop(ns3);
    let flat_iterations = 4;
    let (flat_join, flat_leave) = membership(
        &snapshot,
        &placed,
        &attachments,
        instances,
        Rendering::Flat,
        flat_iterations,
    );
    let distinct: BTreeSet<_> = snapshot
        .instances
        .iter()
        .take(instances)
        .map(|i| i.security_groups.clone())
        .collect();

    println!(
        "\nagent benchmark ({})",
        if quick { "quick smoke run" } else { "full" }
    );
    println!("| figure | value | target | × baseline ({base:.2} ms nft transaction) |");
    println!("|---|---:|---:|---:|");
    propagation_rows(base, changes, &took, &took_tenant, &took_eni);
    println!(
        "| full program ({instances} inst × 5 groups × {rules} rules; {} chains, {rule_count} rules, {} KiB script) | {:.1} ms (render {render_ms:.1} + nft {apply_ms:.1}) | < 1000 ms | {:.1}× |",
        distinct.len() * 2,
        script.len() / 1024,
        render_ms + apply_ms,
        (render_ms + apply_ms) / base
    );
    println!(
        "| member joins the {big}-member group (state + render + diff + apply) | {join:.2} ms | < 5 ms | {:.1}× |",
        join / base
    );
    println!(
        "| member leaves it (the kernel waits an RCU grace period to free the element) | {leave:.2} ms | < 10 ms | {:.1}× |",
        leave / base
    );
    println!(
        "| full program, chains rendered flat ({flat_nodes} chains and tree nodes, {} KiB script) | {:.1} ms (render {flat_render_ms:.1} + nft {flat_apply_ms:.1}) | | {:.1}× ({:.1}× linear) |",
        flat_script.len() / 1024,
        flat_render_ms + flat_apply_ms,
        (flat_render_ms + flat_apply_ms) / base,
        (flat_render_ms + flat_apply_ms) / (render_ms + apply_ms)
    );
    println!(
        "| member joins, flat ({flat_iterations} changes) | {flat_join:.2} ms | | {:.1}× ({:.1}× linear) |",
        flat_join / base,
        flat_join / join
    );
    println!(
        "| member leaves, flat | {flat_leave:.2} ms | | {:.1}× ({:.1}× linear) |",
        flat_leave / base,
        flat_leave / leave
    );
    println!(
        "| parsing the host's feed document ({} KiB) | {parse_ms:.2} ms | | {:.1}× |",
        doc.len() / 1024,
        parse_ms / base
    );
    println!(
        "| lab agent resident memory | {} MiB | | |",
        agent_rss / 1024
    );
    println!(
        "| memory to hold the {instances}-instance policy (this process) | {} MiB | | |",
        held_kib / 1024
    );
    // Writing the figures before the namespaces go away keeps a broken pipe from hiding them.
    let _ = std::io::stdout().flush();
}

/// The propagation rows of the table: the lab VPC's, the second tenant's and the secondary
/// interface's percentiles, each against the baseline and the lab VPC's.
fn propagation_rows(base: f64, changes: usize, took: &[f64], tenant: &[f64], eni: &[f64]) {
    let (p50, p99) = (percentile(took, 0.5), percentile(took, 0.99));
    println!(
        "| propagation p50 ({changes} changes) | {p50:.1} ms | | {:.1}× |",
        p50 / base
    );
    println!(
        "| propagation p99 | {p99:.1} ms | < 50 ms | {:.1}× |",
        p99 / base
    );
    let (t50, t99) = (percentile(tenant, 0.5), percentile(tenant, 0.99));
    println!(
        "| propagation p50, second tenant's VPC (own tables + VXLAN) | {t50:.1} ms | | {:.1}× ({:.2}× the lab VPC's) |",
        t50 / base,
        t50 / p50
    );
    println!(
        "| propagation p99, second tenant's VPC | {t99:.1} ms | < 50 ms | {:.1}× ({:.2}× the lab VPC's) |",
        t99 / base,
        t99 / p99
    );
    let (e50, e99) = (percentile(eni, 0.5), percentile(eni, 0.99));
    println!(
        "| propagation p50, to a secondary interface (own device, vSwitch, group) | {e50:.1} ms | | {:.1}× ({:.2}× the primary's) |",
        e50 / base,
        e50 / p50
    );
    println!(
        "| propagation p99, to a secondary interface | {e99:.1} ms | < 50 ms | {:.1}× ({:.2}× the primary's) |",
        e99 / base,
        e99 / p99
    );
}
