//! The ClassBench rule sets of `crates/policy/benches/classbench/` (vendored: data only, see
//! its README) and their mapping to ECS rules (documented at the top of `classbench.rs`),
//! shared by the engine's benchmark and the kernel benchmark.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use model::{GroupType, InnerAccessPolicy, PermissionFields, SecurityGroup};

/// One ClassBench line: source and destination prefixes, port ranges, protocol (`None`
/// for the wildcard).
pub(crate) struct Rule {
    pub(crate) src: (u32, u8),
    pub(crate) dst: (u32, u8),
    pub(crate) sport: (u16, u16),
    pub(crate) dport: (u16, u16),
    pub(crate) proto: Option<u8>,
}

/// Where the sets are: in the policy crate, whichever crate includes this file.
pub(crate) fn classbench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/benches/classbench")
}

pub(crate) fn parse_prefix(s: &str) -> (u32, u8) {
    let (ip, len) = s.split_once('/').expect("prefix");
    (
        ip.parse::<Ipv4Addr>().expect("ip").into(),
        len.parse().expect("len"),
    )
}

pub(crate) fn parse_range(s: &str) -> (u16, u16) {
    let (a, b) = s.split_once(':').expect("range");
    (
        a.trim().parse().expect("port"),
        b.trim().parse().expect("port"),
    )
}

pub(crate) fn load_rules(set: &str) -> Vec<Rule> {
    let text = std::fs::read_to_string(classbench_dir().join(set)).expect("classbench set");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.trim_start_matches('@').split('\t').collect();
            let (value, mask) = f[4].split_once('/').expect("proto");
            let value = u8::from_str_radix(value.trim_start_matches("0x"), 16).expect("hex");
            let mask = u8::from_str_radix(mask.trim_start_matches("0x"), 16).expect("hex");
            Rule {
                src: parse_prefix(f[0]),
                dst: parse_prefix(f[1]),
                sport: parse_range(f[2]),
                dport: parse_range(f[3]),
                proto: (mask == 0xff).then_some(value),
            }
        })
        .collect()
}

pub(crate) fn fields(r: &Rule, i: usize, n: usize) -> PermissionFields {
    let protocol = match r.proto {
        Some(6) => "tcp",
        Some(17) => "udp",
        Some(1) => "icmp",
        Some(47) => "gre",
        _ => "all",
    };
    let ports = |(lo, hi): (u16, u16)| format!("{}/{}", lo.max(1), hi.max(1));
    let with_ports = matches!(protocol, "tcp" | "udp");
    PermissionFields {
        policy: Some(if i % 7 == 6 { "drop" } else { "accept" }.into()),
        priority: Some((1 + i * 100 / n).to_string()),
        ip_protocol: Some(protocol.into()),
        port_range: Some(if with_ports {
            ports(r.dport)
        } else {
            "-1/-1".into()
        }),
        source_port_range: (with_ports && r.sport != (0, 65535)).then(|| ports(r.sport)),
        source_cidr_ip: Some(format!("{}/{}", Ipv4Addr::from(r.src.0), r.src.1)),
        dest_cidr_ip: Some(format!("{}/{}", Ipv4Addr::from(r.dst.0), r.dst.1)),
        ..Default::default()
    }
}

/// A basic group of the benchmarks' one VPC (`vpc-bench`) and account.
pub(crate) fn group(id: &str) -> SecurityGroup {
    SecurityGroup {
        id: id.parse().unwrap(),
        owner: model::AccountId::new(1),
        group_type: GroupType::Normal,
        vpc_id: Some("vpc-bench".parse().unwrap()),
        inner_access_policy: InnerAccessPolicy::Accept,
    }
}
