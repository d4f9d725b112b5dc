//! Analysis at fleet scale: audit, exposure of every instance and the reachability matrix on
//! a generated region of 10,000 instances, 1,000 groups and 50,000 rules.
//!
//! The fleet (fixed seed): one VPC in 10.0.0.0/8; 1,000 basic groups of 50 rules each —
//! service ports from a list of 20, sources from /16 and /24 blocks of the VPC, the internet
//! for web ports, and group references (at most 10 per group); 200 roles, each a list of 1–3
//! groups; 10,000 instances with a role each and consecutive addresses. Exposure is computed
//! once per set of instances that must share it (`policy::exposure::fleet_exposure`).
//!
//! `cargo bench -p policy --bench fleet`; `cargo test` runs a 1/10 smoke version.

// A benchmark measures time.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::time::Instant;

use model::{
    AccountId, Direction, GroupType, InnerAccessPolicy, Instance, NetworkType, NicType,
    PermissionFields, SecurityGroup,
};
use policy::audit::{audit, AuditConfig};
use policy::exposure::fleet_exposure;
use policy::reach::{reach, Service};
use policy::{Engine, Evaluator, GroupPolicy, Snapshot};
use rand::{RngExt, SeedableRng};

const PORTS: [u16; 20] = [
    22, 80, 443, 3306, 5432, 6379, 8080, 8443, 9000, 9090, 9200, 11211, 27017, 53, 123, 2379, 5672,
    15672, 25, 3389,
];

fn fleet(scale: usize) -> Snapshot {
    let (groups, instances, roles) = (1000 / scale, 10_000 / scale, 200 / scale);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let id = |g: usize| format!("sg-g{g}");
    let mut policies: Vec<GroupPolicy> = (0..groups)
        .map(|g| GroupPolicy {
            group: SecurityGroup {
                id: id(g).parse().unwrap(),
                owner: AccountId::new(1),
                group_type: GroupType::Normal,
                vpc_id: Some("vpc-fleet".parse().unwrap()),
                inner_access_policy: if g % 3 == 0 {
                    InnerAccessPolicy::Drop
                } else {
                    InnerAccessPolicy::Accept
                },
            },
            permissions: Default::default(),
        })
        .collect();
    let mut n = 0;
    for (g, policy) in policies.iter_mut().enumerate() {
        let mut refs = 0;
        for r in 0..50 {
            n += 1;
            let port = PORTS[rng.random_range(0..PORTS.len())];
            let mut f = PermissionFields {
                policy: Some(if r % 9 == 8 { "drop" } else { "accept" }.into()),
                priority: Some(rng.random_range(1..=100).to_string()),
                ip_protocol: Some(if r % 7 == 6 { "udp" } else { "tcp" }.into()),
                port_range: Some(format!("{port}/{port}")),
                ..Default::default()
            };
            let direction = if r % 5 == 4 {
                Direction::Egress
            } else {
                Direction::Ingress
            };
            let cidr = match rng.random_range(0..10) {
                0 if matches!(port, 80 | 443) => Some("0.0.0.0/0".to_string()),
                1..=3 if refs < 10 => {
                    refs += 1;
                    f.group_id = Some(id(rng.random_range(0..groups)));
                    None
                }
                4..=6 => Some(format!(
                    "10.{}.0.0/16",
                    rng.random_range(0..=(instances / 65536 + 1))
                )),
                _ => Some(format!(
                    "10.0.{}.0/24",
                    rng.random_range(0..=(instances / 256))
                )),
            };
            match direction {
                Direction::Ingress => f.source_cidr_ip = cidr,
                Direction::Egress => f.dest_cidr_ip = cidr,
            }
            let p = f.parse(
                format!("sgr-r{n}").parse().unwrap(),
                direction,
                NetworkType::Vpc,
            );
            std::sync::Arc::make_mut(&mut policy.permissions).push(p.expect("generated rule"));
        }
        let _ = g;
    }
    let role_groups: Vec<Vec<usize>> = (0..roles)
        .map(|_| {
            let k = rng.random_range(1..=3);
            let mut gs: Vec<usize> = (0..k).map(|_| rng.random_range(0..groups)).collect();
            gs.dedup();
            gs
        })
        .collect();
    let instances = (0..instances)
        .map(|i| Instance {
            id: format!("i-n{i}").parse().unwrap(),
            attached_to: None,
            owner: AccountId::new(1),
            vpc_id: Some("vpc-fleet".parse().unwrap()),
            private_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 10)) + i as u32),
            secondary_ips: Vec::new(),
            ipv4_prefixes: Vec::new(),
            ipv6: None,
            public_ip: None,
            source_dest_check: true,
            security_groups: role_groups[i % roles]
                .iter()
                .map(|g| id(*g).parse().unwrap())
                .collect(),
        })
        .collect();
    Snapshot {
        groups: policies,
        instances,
        prefix_lists: vec![],
        port_range_lists: vec![],
    }
}

/// The console's slow case (issue: the exposure page took 50 s): `instances` instances in one
/// group of 200 rules (160 inbound, 40 outbound; distinct ports, VPC blocks and the group
/// itself as peers), the same group for all, so every instance may reach every other.
fn one_big_group(instances: usize) -> Snapshot {
    let group: model::SecurityGroupId = "sg-big".parse().unwrap();
    let mut permissions = Vec::new();
    for r in 0..200u16 {
        let direction = if r % 5 == 4 {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let port = 1000 + r;
        let mut f = PermissionFields {
            ip_protocol: Some("tcp".into()),
            port_range: Some(format!("{port}/{}", port + r % 3)),
            ..Default::default()
        };
        let cidr = match r % 4 {
            0 => {
                f.group_id = Some(group.to_string());
                None
            }
            1 => Some("10.0.0.0/16".to_string()),
            _ => Some(format!("10.0.0.{}/30", 8 + (r % 60) * 4)),
        };
        match direction {
            Direction::Ingress => f.source_cidr_ip = cidr,
            Direction::Egress => f.dest_cidr_ip = cidr,
        }
        permissions.push(
            f.parse(
                format!("sgr-b{r}").parse().unwrap(),
                direction,
                NetworkType::Vpc,
            )
            .expect("generated rule"),
        );
    }
    Snapshot {
        groups: vec![GroupPolicy {
            group: SecurityGroup {
                id: group.clone(),
                owner: AccountId::new(1),
                group_type: GroupType::Normal,
                vpc_id: Some("vpc-fleet".parse().unwrap()),
                inner_access_policy: InnerAccessPolicy::Drop,
            },
            permissions: permissions.into(),
        }],
        instances: (0..instances)
            .map(|i| Instance {
                id: format!("i-b{i}").parse().unwrap(),
                attached_to: None,
                owner: AccountId::new(1),
                vpc_id: Some("vpc-fleet".parse().unwrap()),
                private_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 10)) + i as u32),
                secondary_ips: Vec::new(),
                ipv4_prefixes: Vec::new(),
                ipv6: None,
                public_ip: None,
                source_dest_check: true,
                security_groups: vec![group.clone()],
            })
            .collect(),
        prefix_lists: vec![],
        port_range_lists: vec![],
    }
}

/// One instance's exposure with the instances that reach each entry, as
/// `DescribeInstanceExposure` answers it: each entry's sources worked out alone (how it was
/// done) beside all entries at once (`reaching_all`), same engine, same run.
fn exposure_answer(instances: usize) {
    let snapshot = one_big_group(instances);
    let engine = Engine::new(&snapshot).expect("one big group");
    let target: model::MemberId = "i-b0".parse().unwrap();
    let t = Instant::now();
    let exposed =
        policy::exposure::exposure(&engine, &target, NicType::Intranet).expect("exposure");
    let exposure_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let each: Vec<Vec<model::MemberId>> = exposed
        .iter()
        .map(|e| policy::exposure::reaching_instances(&engine, &target, e).expect("reaching"))
        .collect();
    let per_entry = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let all = policy::exposure::reaching_all(&engine, &target, &exposed).expect("reaching");
    let at_once = t.elapsed().as_secs_f64();
    assert_eq!(each, all, "both ways find the same instances");
    let pairs: usize = all.iter().map(Vec::len).sum();
    println!(
        "  one group of 200 rules, {instances} instances: exposure of one in {:.3} s ({} entries); \
         reaching instances ({pairs} in all) per entry {:.3} s, all at once {:.3} s ({:.0}x)",
        exposure_s,
        exposed.len(),
        per_entry,
        at_once,
        per_entry / at_once.max(1e-9)
    );
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let smoke =
        std::env::var("STOCKADE_BENCH_QUICK").is_ok() || !std::env::args().any(|a| a == "--bench");
    let scale = if smoke { 10 } else { 1 };
    let snapshot = fleet(scale);
    let rules: usize = snapshot.groups.iter().map(|g| g.permissions.len()).sum();
    let t = Instant::now();
    let engine = Engine::new(&snapshot).expect("fleet");
    let build = t.elapsed();
    println!(
        "\nFleet: {} instances, {} groups, {rules} rules; engine built in {:.0} ms ({} policy sets)",
        snapshot.instances.len(),
        snapshot.groups.len(),
        build.as_secs_f64() * 1e3,
        engine.policy_sets()
    );

    let t = Instant::now();
    let findings = audit(engine.state(), &AuditConfig::default());
    println!(
        "  audit: {} findings in {:.2} s",
        findings.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let matrix = reach(&engine, &Service::defaults()).expect("reach");
    println!(
        "  reachability matrix: {} classes, {} reaching class pairs, {} services, in {:.2} s",
        matrix.classes.len(),
        matrix.edges().count(),
        matrix.services.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let sets = fleet_exposure(&engine, NicType::Intranet).expect("exposure");
    let entries: usize = sets
        .iter()
        .map(|(instances, e)| instances.len() * e.len())
        .sum();
    println!(
        "  exposure of every instance: {} distinct exposures, {entries} entries, in {:.2} s",
        sets.len(),
        t.elapsed().as_secs_f64()
    );
    let _ = engine.state().instances().count();
    exposure_answer(if smoke { 30 } else { 120 });
    println!("  peak memory: {:.0} MiB\n", peak_rss_mib());
}
