//! The engine against the kernel: random policies made through the API, random flows
//! across the lab, and for every flow the engine's verdict (`DescribeFlowVerdict`) must be
//! what a real packet meets. Several seeds (`STOCKADE_DIFF_SEEDS`, default 3) of at least
//! 700 flows each; a disagreement fails with the flow, the policy and the rendered tables.
//! Two accounts: the lab's, and a tenant whose VPC has the same CIDRs with its instances at
//! the same addresses on the same hosts; each makes its own random policy, and flows run
//! within each VPC (the other tenant's VPC is not routed to) and between the lab's VPC, its
//! classic instance and the internet, all at once. Two of the lab's instances also have a
//! secondary interface (a second device) whose groups are drawn like the instances'; flows
//! start and end at those interfaces too.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use serde_json::Value;

use crate::harness::{skipped, Lab};

const PORTS: [&str; 6] = [
    "22/22",
    "80/80",
    "1/1024",
    "443/443",
    "3000/4000",
    "1/65535",
];
const SOURCE_PORTS: [&str; 2] = ["1024/65535", "40000/40100"];
const PROBE_PORTS: [u16; 7] = [22, 80, 443, 1000, 3306, 3500, 8080];
const PROBE_SOURCE_PORTS: [u16; 3] = [40050, 50001, 45000];
const PRIORITIES: [&str; 4] = ["1", "2", "5", "100"];

struct Flow {
    /// Member index, or `None` for the internet client.
    from: Option<usize>,
    /// Member index, or `None` for the internet client.
    to: Option<usize>,
    /// Towards the receiver's public address (classic internet interface).
    internet: bool,
    protocol: &'static str,
    port: u16,
    source_port: u16,
    /// Over IPv6 (between two VPC members).
    v6: bool,
    /// From the sender's secondary network interface (its address, its device).
    from_eni: bool,
    /// To the receiver's secondary network interface.
    to_eni: bool,
}

/// One rule's parameters; TCP and UDP rules name the tenant's port range list (`port_list`)
/// instead of a range one time in five.
fn random_rule(
    rng: &mut StdRng,
    lab: &Lab,
    groups: &[String],
    classic: bool,
    port_list: &str,
) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| p.push((k.to_string(), v));
    let egress = rng.random_bool(0.3);
    put(
        "Policy",
        if rng.random_bool(0.3) {
            "drop"
        } else {
            "accept"
        }
        .into(),
    );
    put("Priority", PRIORITIES.choose(rng).unwrap().to_string());
    let v6 = !classic && rng.random_bool(0.3);
    let protocol = if v6 {
        *["tcp", "tcp", "udp", "icmpv6", "all"].choose(rng).unwrap()
    } else {
        *["tcp", "tcp", "udp", "icmp", "all"].choose(rng).unwrap()
    };
    put("IpProtocol", protocol.into());
    if matches!(protocol, "tcp" | "udp") {
        if rng.random_bool(0.2) {
            put("PortRangeListId", port_list.to_string());
        } else {
            put("PortRange", PORTS.choose(rng).unwrap().to_string());
        }
        if rng.random_bool(0.2) {
            put(
                "SourcePortRange",
                SOURCE_PORTS.choose(rng).unwrap().to_string(),
            );
        }
    } else {
        put("PortRange", "-1/-1".into());
    }
    let internet = classic && rng.random_bool(0.5);
    if classic {
        put(
            "NicType",
            if internet { "internet" } else { "intranet" }.into(),
        );
    }
    let member = |rng: &mut StdRng| lab.members.choose(rng).unwrap().private_ip.clone();
    let (peer, local, group_key) = if egress {
        ("DestCidrIp", "SourceCidrIp", "DestGroupId")
    } else {
        ("SourceCidrIp", "DestCidrIp", "SourceGroupId")
    };
    let v6_peer = if egress {
        "Ipv6DestCidrIp"
    } else {
        "Ipv6SourceCidrIp"
    };
    let member6 = |rng: &mut StdRng| {
        let vpc: Vec<&str> = lab
            .members
            .iter()
            .map(|m| m.ipv6.as_str())
            .filter(|a| !a.is_empty())
            .collect();
        vpc.choose(rng).unwrap().to_string()
    };
    // Group references are intranet-only and VPC-local.
    if !classic && rng.random_bool(0.3) {
        put(group_key, groups.choose(rng).unwrap().clone());
    } else if v6 {
        let cidr = match rng.random_range(0..3) {
            0 => "::/0".to_string(),
            1 => "2001:2::/48".to_string(),
            _ => format!("{}/128", member6(rng)),
        };
        put(v6_peer, cidr);
    } else {
        let cidr = match rng.random_range(0..6) {
            0 => "0.0.0.0/0".to_string(),
            1 => "198.18.1.0/24".to_string(),
            2 => format!("{}/32", member(rng)),
            3 => "198.18.1.0/30".to_string(),
            4 => "198.19.0.0/16".to_string(),
            _ => "198.18.0.0/15".to_string(),
        };
        put(peer, cidr);
    }
    if rng.random_bool(0.15) && !v6 {
        put(local, format!("{}/32", member(rng)));
    }
    put(
        "Action",
        if egress {
            "AuthorizeSecurityGroupEgress"
        } else {
            "AuthorizeSecurityGroup"
        }
        .into(),
    );
    p
}

/// A call as tenant `t` (0: the lab's account).
fn call_owned(lab: &Lab, t: usize, params: &[(String, String)]) -> Result<Value, Value> {
    let borrowed: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match t {
        0 => lab.try_call(&borrowed),
        t => lab.try_call_as(&lab.tenants[t - 1], &borrowed),
    }
}

/// A call as tenant `t` that must succeed.
fn call_as(lab: &Lab, t: usize, params: &[(&str, &str)]) -> Value {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    call_owned(lab, t, &owned).unwrap_or_else(|e| panic!("{params:?}: {e}"))
}

/// Tenant `t`'s VPC and its default (lab) VPC group.
fn network_of(lab: &Lab, t: usize) -> (String, String) {
    match t {
        0 => (lab.vpc_id(), lab.default_group("vpc")),
        t => {
            let tenant = &lab.lab["Tenants"][t - 1];
            let text = |v: &Value| v.as_str().unwrap().to_string();
            (text(&tenant["VpcId"]), text(&tenant["SecurityGroupIds"][0]))
        }
    }
}

/// Makes a random policy: three new VPC groups (one enterprise on some seeds), random rules
/// and inner policies, random ordered group lists for the VPC instances; random rules for the
/// classic instance's group.
fn random_policy(lab: &Lab, rng: &mut StdRng, seed: u64, t: usize) {
    let (vpc, vpc_group) = network_of(lab, t);
    let enterprise_seed = seed % 3 == 2;
    let mut basic = Vec::new();
    let mut enterprise = None;
    for n in 0..3 {
        let ent = enterprise_seed && n == 2;
        let name = format!("diff-{seed}-{n}");
        let mut params = vec![
            ("Action", "CreateSecurityGroup"),
            ("VpcId", vpc.as_str()),
            ("SecurityGroupName", name.as_str()),
        ];
        if ent {
            params.push(("SecurityGroupType", "enterprise"));
        }
        let id = call_as(lab, t, &params)["SecurityGroupId"]
            .as_str()
            .unwrap()
            .to_string();
        if !ent && rng.random_bool(0.5) {
            call_as(
                lab,
                t,
                &[
                    ("Action", "ModifySecurityGroupPolicy"),
                    ("SecurityGroupId", &id),
                    ("InnerAccessPolicy", "Drop"),
                ],
            );
        }
        if ent {
            enterprise = Some(id);
        } else {
            basic.push(id);
        }
    }
    let mut all = basic.clone();
    all.extend(enterprise.clone());
    // Overlapping entries that cut the probe ports differently from the ranges above.
    let port_list = call_as(
        lab,
        t,
        &[
            ("Action", "CreatePortRangeList"),
            ("PortRangeListName", &format!("diff-{seed}")),
            ("MaxEntries", "4"),
            ("Entry.1.PortRange", "22/22"),
            ("Entry.2.PortRange", "3300/3400"),
            ("Entry.3.PortRange", "3306/8080"),
        ],
    )["PortRangeListId"]
        .as_str()
        .unwrap()
        .to_string();
    for g in &all {
        for _ in 0..rng.random_range(6..14) {
            let mut rule = random_rule(rng, lab, &basic, false, &port_list);
            rule.push(("SecurityGroupId".into(), g.clone()));
            // Enterprise groups may not reference groups: such draws are refused, skip them.
            let _ = call_owned(lab, t, &rule);
        }
    }
    if t == 0 {
        let classic_group = lab.default_group("classic");
        for _ in 0..8 {
            let mut rule = random_rule(rng, lab, &basic, true, &port_list);
            rule.push(("SecurityGroupId".into(), classic_group.clone()));
            call_owned(lab, t, &rule).unwrap_or_else(|e| panic!("{rule:?}: {e}"));
        }
    }
    let vpc_members = lab
        .members
        .iter()
        .filter(|m| m.public_ip.is_empty() && m.tenant == t);
    for m in vpc_members {
        let mut list: Vec<String> = match &enterprise {
            Some(e) if rng.random_bool(0.3) => vec![e.clone()],
            _ => {
                let mut l = basic.clone();
                l.shuffle(rng);
                l.truncate(rng.random_range(1..=2));
                l
            }
        };
        if rng.random_bool(0.3) && list.len() < 3 && enterprise.as_ref() != list.first() {
            list.push(vpc_group.clone());
        }
        let keys: Vec<String> = (1..=list.len())
            .map(|n| format!("SecurityGroupIds.{n}"))
            .collect();
        let mut params = vec![
            ("Action", "ModifyInstanceAttribute"),
            ("InstanceId", m.id.as_str()),
        ];
        params.extend(
            keys.iter()
                .map(String::as_str)
                .zip(list.iter().map(String::as_str)),
        );
        call_as(lab, t, &params);
    }
    // The lab's secondary interfaces take groups of their own, drawn like the instances'.
    let eni_group = lab.lab["SecondarySecurityGroupId"]
        .as_str()
        .unwrap_or_default();
    for (eni, _) in lab
        .members
        .iter()
        .filter(|m| m.tenant == t)
        .filter_map(|m| m.secondary.as_ref())
    {
        let mut list = basic.clone();
        list.push(eni_group.to_string());
        list.shuffle(rng);
        list.truncate(rng.random_range(1..=2));
        let keys: Vec<String> = (1..=list.len())
            .map(|n| format!("SecurityGroupId.{n}"))
            .collect();
        let mut params = vec![
            ("Action", "ModifyNetworkInterfaceAttribute"),
            ("NetworkInterfaceId", eni.as_str()),
        ];
        params.extend(
            keys.iter()
                .map(String::as_str)
                .zip(list.iter().map(String::as_str)),
        );
        call_as(lab, t, &params);
    }
}

fn random_flows(lab: &Lab, rng: &mut StdRng, n: usize) -> Vec<Flow> {
    let mut seen = BTreeSet::new();
    let mut flows = Vec::new();
    let count = lab.members.len();
    while flows.len() < n {
        let pick = |rng: &mut StdRng| {
            (rng.random_range(0..=count) < count).then(|| rng.random_range(0..count))
        };
        let (from, to) = (pick(rng), pick(rng));
        if from == to || (from.is_none() && to.is_none()) {
            continue;
        }
        // Another tenant's VPC is routed to nothing outside itself.
        let tenant = |m: Option<usize>| m.map_or(0, |n| lab.member(n).tenant);
        if tenant(from) != tenant(to) {
            continue;
        }
        let internet =
            to.is_some_and(|t| !lab.member(t).public_ip.is_empty()) && rng.random_bool(0.5);
        // Between two VPC members, a third of the flows go over IPv6.
        let vpc_member = |m: Option<usize>| m.is_some_and(|n| !lab.member(n).ipv6.is_empty());
        let v6 = vpc_member(from) && vpc_member(to) && rng.random_bool(0.33);
        let protocol = *["tcp", "tcp", "udp", "udp", "icmp"].choose(rng).unwrap();
        let (port, source_port) = if protocol == "icmp" {
            (0, 0)
        } else {
            (
                *PROBE_PORTS.choose(rng).unwrap(),
                *PROBE_SOURCE_PORTS.choose(rng).unwrap(),
            )
        };
        // A member with a secondary interface sends or receives by it two times in five.
        let has_eni = |m: Option<usize>| m.is_some_and(|n| lab.member(n).secondary.is_some());
        let from_eni = has_eni(from) && !v6 && rng.random_bool(0.4);
        let to_eni = has_eni(to) && !v6 && !internet && rng.random_bool(0.4);
        // Each 5-tuple once per seed: connection tracking must not carry one probe's state
        // into another's.
        let key = (from, to, internet, protocol, port, source_port, v6);
        if !seen.insert((key, from_eni, to_eni)) {
            continue;
        }
        flows.push(Flow {
            from,
            to,
            internet,
            protocol,
            port,
            source_port,
            v6,
            from_eni,
            to_eni,
        });
    }
    flows
}

fn address(lab: &Lab, who: Option<usize>, internet: bool, v6: bool, eni: bool) -> String {
    match who {
        None => "198.19.255.1".into(),
        Some(n) if eni => lab.member(n).secondary.clone().unwrap().1,
        Some(n) if v6 => lab.member(n).ipv6.clone(),
        Some(n) if internet => lab.member(n).public_ip.clone(),
        Some(n) => lab.member(n).private_ip.clone(),
    }
}

/// The engine's verdict through the API, asked by the flow's tenant.
fn engine_verdict(lab: &Lab, f: &Flow) -> bool {
    let t = f.from.or(f.to).map_or(0, |n| lab.member(n).tenant);
    let protocol = if f.v6 && f.protocol == "icmp" {
        "icmpv6"
    } else {
        f.protocol
    };
    let mut p: Vec<(String, String)> = vec![
        ("Action".into(), "DescribeFlowVerdict".into()),
        ("IpProtocol".into(), protocol.into()),
        ("IpVersion".into(), if f.v6 { "6" } else { "4" }.into()),
    ];
    let eni = |n: usize| lab.member(n).secondary.clone().unwrap().0;
    match f.from {
        Some(n) if f.from_eni => p.push(("SourceNetworkInterfaceId".into(), eni(n))),
        Some(n) => p.push(("SourceInstanceId".into(), lab.member(n).id.clone())),
        None => p.push(("SourceIp".into(), "198.19.255.1".into())),
    }
    match f.to {
        Some(n) if f.to_eni => p.push(("DestinationNetworkInterfaceId".into(), eni(n))),
        Some(n) => p.push(("DestinationInstanceId".into(), lab.member(n).id.clone())),
        None => p.push(("DestinationIp".into(), "198.19.255.1".into())),
    }
    if f.protocol != "icmp" {
        p.push(("DestinationPort".into(), f.port.to_string()));
        p.push(("SourcePort".into(), f.source_port.to_string()));
    }
    // Which interface a classic instance uses is decided by the address family of the lab:
    // towards 198.19.0.0/16 (the internet side) it is the internet one.
    let classic_internet = f.internet
        || (f.to.is_none() && f.from.is_some_and(|n| !lab.member(n).public_ip.is_empty()));
    p.push((
        "NicType".into(),
        if classic_internet {
            "internet"
        } else {
            "intranet"
        }
        .into(),
    ));
    let v = call_owned(lab, t, &p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    v["Verdict"] == "Accept"
}

#[test]
fn engine_and_kernel_agree_on_random_policies() {
    if skipped() {
        return;
    }
    for rendering in ["linear", "flat"] {
        agree_on_random_policies(rendering);
    }
}

/// The differential run with the agents writing chains in `rendering`.
fn agree_on_random_policies(rendering: &'static str) {
    let seeds: u64 = std::env::var("STOCKADE_DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // Two of the lab's instances also have a secondary interface, with groups of its own.
    let lab = Lab::up_rendering('d', 2, 5, 1, 1, 2, rendering);
    let mut total = 0;
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        for t in 0..=lab.tenants.len() {
            random_policy(&lab, &mut rng, seed, t);
        }
        lab.wait_applied();
        assert_eq!(
            lab.tables().contains("__k4"),
            rendering == "flat",
            "the agents write {rendering} chains"
        );
        for (_, ns) in &lab.hosts {
            let _ = std::process::Command::new("ip")
                .args(["netns", "exec", ns, "conntrack", "-F"])
                .output();
        }
        let flows = random_flows(&lab, &mut rng, 700);
        let expected: Vec<bool> = flows.iter().map(|f| engine_verdict(&lab, f)).collect();
        // Probes grouped by sender, all senders at once.
        let mut by_sender: Vec<(Option<usize>, Vec<usize>)> = Vec::new();
        for (i, f) in flows.iter().enumerate() {
            match by_sender.iter_mut().find(|(s, _)| *s == f.from) {
                Some((_, list)) => list.push(i),
                None => by_sender.push((f.from, vec![i])),
            }
        }
        let mut actual = vec![false; flows.len()];
        std::thread::scope(|scope| {
            let handles: Vec<_> = by_sender
                .iter()
                .map(|(sender, indices)| {
                    let lines: Vec<String> = indices
                        .iter()
                        .map(|&i| {
                            let f = &flows[i];
                            let mut line = format!(
                                "{} {} {} {}",
                                f.protocol,
                                address(&lab, f.to, f.internet, f.v6, f.to_eni),
                                f.port,
                                f.source_port
                            );
                            if f.from_eni {
                                line += " ";
                                line += &address(&lab, f.from, false, false, true);
                            }
                            line
                        })
                        .collect();
                    let ns = lab.netns(*sender);
                    let lab = &lab;
                    scope.spawn(move || lab.probe_lines(&ns, &lines))
                })
                .collect();
            for ((_, indices), h) in by_sender.iter().zip(handles) {
                for (&i, r) in indices.iter().zip(h.join().unwrap()) {
                    actual[i] = r;
                }
            }
        });
        let wrong: Vec<String> = flows
            .iter()
            .zip(expected.iter().zip(&actual))
            .filter(|(_, (e, a))| e != a)
            .map(|(f, (e, a))| {
                format!(
                    "{} {:?}({}) -> {:?}({}) port {} sport {}: engine {}, kernel {}",
                    f.protocol,
                    f.from,
                    address(&lab, f.from, false, f.v6, f.from_eni),
                    f.to,
                    address(&lab, f.to, f.internet, f.v6, f.to_eni),
                    f.port,
                    f.source_port,
                    if *e { "accept" } else { "drop" },
                    if *a { "passed" } else { "blocked" }
                )
            })
            .collect();
        if !wrong.is_empty() {
            panic!(
                "{rendering}, seed {seed}: {} of {} flows disagree:\n{}\n\npolicy (each host's share):\n{}\n\nrendered:\n{}",
                wrong.len(),
                flows.len(),
                wrong.join("\n"),
                lab.host_policies(),
                lab.tables()
            );
        }
        let accepted = expected.iter().filter(|e| **e).count();
        let other = flows
            .iter()
            .filter(|f| f.from.or(f.to).is_some_and(|n| lab.member(n).tenant > 0))
            .count();
        assert!(
            other > 100,
            "the second tenant's VPC is exercised: {other} flows"
        );
        let v6 = flows.iter().filter(|f| f.v6).count();
        assert!(v6 > 50, "IPv6 is exercised: {v6} flows");
        let eni = flows.iter().filter(|f| f.from_eni || f.to_eni).count();
        assert!(eni > 50, "secondary interfaces are exercised: {eni} flows");
        eprintln!(
            "{rendering}, seed {seed}: {} flows agree ({accepted} accepted; {other} in the second tenant's VPC; {v6} over IPv6; {eni} at secondary interfaces)",
            flows.len()
        );
        total += flows.len();
    }
    assert!(total >= 700 * seeds as usize);
}
