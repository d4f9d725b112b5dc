//! A hostile tenant on real packets: no request of account B, in any order, changes a
//! verdict of account A (DESIGN.md §6). Lab: A's VPC instances A0 (h1) and A1 (h2); A1's
//! group admits tcp/80 from A0 only.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{skipped, Connection, Keys, Lab, Member};

/// A's verdicts that must never move: A0 → A1 on 80 (accepted) and 81 (dropped), as probes
/// on real packets and as `DescribeFlowVerdict` answers.
fn a_verdicts(lab: &Lab) -> (bool, bool, String) {
    let a1 = lab.member(1).private_ip.clone();
    let answer = lab.call(&[
        ("Action", "DescribeFlowVerdict"),
        ("SourceInstanceId", &lab.member(0).id),
        ("DestinationInstanceId", &lab.member(1).id),
        ("IpProtocol", "tcp"),
        ("DestinationPort", "80"),
    ]);
    (
        lab.probe(Some(0), &a1, "tcp", 80),
        lab.probe(Some(0), &a1, "tcp", 81),
        answer["Verdict"].as_str().unwrap_or_default().to_string(),
    )
}

fn must(lab: &Lab, keys: &Keys, params: &[(&str, &str)]) -> serde_json::Value {
    lab.try_call_as(keys, params)
        .unwrap_or_else(|e| panic!("{params:?}: {e}"))
}

fn refused(lab: &Lab, keys: &Keys, params: &[(&str, &str)], code: &str) {
    let err = lab
        .try_call_as(keys, params)
        .expect_err("a hostile request must be refused");
    assert_eq!(err["Code"], code, "{params:?}: {err}");
}

/// Polls until `f` holds (the agents reconcile devices every second).
fn eventually(what: &str, lab: &Lab, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "{what}\n{}",
            lab.tables()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn no_request_of_another_tenant_changes_a_verdict() {
    if skipped() {
        return;
    }
    let lab = Lab::up('t', 2, 2, 0);
    let a0 = format!("{}/32", lab.member(0).private_ip);
    let a1 = lab.member(1).clone();
    let g = lab.default_group("vpc");
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &g),
        ("IpProtocol", "tcp"),
        ("PortRange", "80/80"),
        ("SourceCidrIp", &a0),
    ]);
    lab.wait_applied();
    let before = a_verdicts(&lab);
    assert_eq!(before, (true, false, "Accept".to_string()));
    // `lab status` shows each interface with its device and groups.
    let out = lab.stockade(&["lab", "status"]).output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    let line = status
        .lines()
        .find(|l| l.contains(&a1.eni))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        line.contains(&a1.id) && line.contains("intranet=") && line.contains(&g),
        "{line}"
    );
    // The CLI names lab members by interface as well as by instance.
    for (port, pass) in [("80", true), ("81", false)] {
        let out = lab
            .stockade(&[
                "lab",
                "probe",
                "--from",
                &lab.member(0).eni,
                "--to",
                &a1.eni,
                "--port",
                port,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.success(), pass, "lab probe to {port}: {text}");
        assert_eq!(text.trim(), if pass { "pass" } else { "blocked" });
    }

    // B copies A's network: the same CIDRs, a group open to everything, an instance at A1's
    // address (accepted: another VPC).
    let b = lab.account("tenant-b");
    let vpc = must(
        &lab,
        &b,
        &[
            ("Action", "CreateVpc"),
            ("Version", server::VPC_VERSION),
            ("CidrBlock", "198.18.0.0/16"),
        ],
    )["VpcId"]
        .as_str()
        .unwrap()
        .to_string();
    let vsw = must(
        &lab,
        &b,
        &[
            ("Action", "CreateVSwitch"),
            ("Version", server::VPC_VERSION),
            ("VpcId", &vpc),
            ("ZoneId", "cn-hangzhou-b"),
            ("CidrBlock", "198.18.1.0/24"),
        ],
    )["VSwitchId"]
        .as_str()
        .unwrap()
        .to_string();
    let open = must(
        &lab,
        &b,
        &[("Action", "CreateSecurityGroup"), ("VpcId", &vpc)],
    )["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    must(
        &lab,
        &b,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &open),
            ("IpProtocol", "all"),
            ("PortRange", "-1/-1"),
            ("SourceCidrIp", "0.0.0.0/0"),
        ],
    );
    let run = must(
        &lab,
        &b,
        &[
            ("Action", "RunInstances"),
            ("ImageId", "img"),
            ("InstanceType", "t"),
            ("SecurityGroupId", &open),
            ("VSwitchId", &vsw),
            ("PrivateIpAddress", &a1.private_ip),
        ],
    );
    let b_instance = run["InstanceIdSets"]["InstanceIdSet"][0]
        .as_str()
        .unwrap()
        .to_string();
    let described = must(
        &lab,
        &b,
        &[
            ("Action", "DescribeInstances"),
            ("InstanceIds", &format!("[\"{b_instance}\"]")),
        ],
    );
    let b_eni = described["Instances"]["Instance"][0]["NetworkInterfaces"]["NetworkInterface"][0]
        ["NetworkInterfaceId"]
        .as_str()
        .unwrap()
        .to_string();

    // B tries to put its instance where A1 runs: the old tag, the operator's actions.
    refused(
        &lab,
        &b,
        &[
            ("Action", "TagResources"),
            ("ResourceType", "instance"),
            ("ResourceId.1", &b_instance),
            ("Tag.1.Key", "stockade:host"),
            ("Tag.1.Value", &a1.host),
        ],
        "InvalidTagKey.Malformed",
    );
    for params in [
        vec![
            ("Action", "PlaceNetworkInterface"),
            ("NetworkInterfaceId", b_eni.as_str()),
            ("HostId", a1.host.as_str()),
        ],
        vec![
            ("Action", "PlaceNetworkInterface"),
            ("NetworkInterfaceId", a1.eni.as_str()),
            ("HostId", "elsewhere"),
        ],
        vec![
            ("Action", "UnplaceNetworkInterface"),
            ("NetworkInterfaceId", a1.eni.as_str()),
        ],
        vec![("Action", "DescribeNetworkInterfacePlacements")],
    ] {
        refused(&lab, &b, &params, "Forbidden.RAM");
    }
    lab.wait_applied();
    assert_eq!(a_verdicts(&lab), before, "B's requests changed nothing");

    // Even bound by the operator to A1's host, at A1's address, B's interface does not take
    // A1's device: the device is A1's by its label. B's drop-all egress changes nothing of A.
    let operator = lab.operator.clone();
    must(
        &lab,
        &operator,
        &[
            ("Action", "PlaceNetworkInterface"),
            ("NetworkInterfaceId", &b_eni),
            ("HostId", &a1.host),
        ],
    );
    must(
        &lab,
        &b,
        &[
            ("Action", "AuthorizeSecurityGroupEgress"),
            ("SecurityGroupId", &open),
            ("IpProtocol", "all"),
            ("PortRange", "-1/-1"),
            ("DestCidrIp", "0.0.0.0/0"),
            ("Policy", "drop"),
        ],
    );
    lab.wait_applied();
    assert_eq!(
        a_verdicts(&lab),
        before,
        "B bound beside A1 changed nothing"
    );

    // A second device claiming A1's interface (a provisioning mistake, or a process on the
    // host): neither can be attributed, so A1 fails closed rather than be judged by the wrong
    // rules; removing it restores A1.
    let host_ns = &lab.hosts.iter().find(|(id, _)| *id == a1.host).unwrap().1;
    let dup = format!("skdup{}", std::process::id() % 10_000);
    let ip = |args: &[&str]| {
        let ok = Command::new("ip")
            .args(["-n", host_ns])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip {args:?}");
    };
    // A veth pair (the lab's kernel may lack the dummy driver); its peer is unlabelled.
    ip(&[
        "link",
        "add",
        &dup,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{dup}p"),
    ]);
    ip(&["link", "set", &dup, "alias", &a1.eni]);
    ip(&["link", "set", &dup, "up"]);
    let a1_ip = a1.private_ip.clone();
    eventually("A1 fails closed while two devices claim it", &lab, || {
        !lab.probe(Some(0), &a1_ip, "tcp", 80)
    });
    ip(&["link", "del", &dup]);
    eventually(
        "A1 is enforced again once its label is unique",
        &lab,
        || lab.probe(Some(0), &a1_ip, "tcp", 80),
    );
    assert_eq!(a_verdicts(&lab), before);
}

/// Opens the lab's VPC group to ICMP from `source` alone, and waits for the hosts.
fn admit_icmp_from(lab: &Lab, source: &str) {
    let g = lab.default_group("vpc");
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &g),
        ("IpProtocol", "icmp"),
        ("PortRange", "-1/-1"),
        ("SourceCidrIp", &format!("{source}/32")),
    ]);
    lab.wait_applied();
}

/// Gives an instance's `eth0` one more address (a forged source, or a network it routes for).
fn add_address(netns: &str, address: &str) {
    let added = Command::new("ip")
        .args([
            "-n",
            netns,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            "eth0",
        ])
        .status()
        .unwrap();
    assert!(added.success());
}

/// The namespace of the lab host `host`.
fn host_netns(lab: &Lab, host: &str) -> String {
    let (_, ns) = lab.hosts.iter().find(|(id, _)| id == host).unwrap();
    ns.clone()
}

/// Tracked ICMP flows from `source` in a host's namespace: a forwarded packet is tracked, one
/// dropped in the forward hook is not.
fn tracked_from(ns: &str, source: &str) -> usize {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "conntrack",
            "-L",
            "-p",
            "icmp",
            "-s",
            source,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("src="))
        .count()
}

#[test]
fn an_instance_cannot_send_from_an_address_that_is_not_its_own() {
    if skipped() {
        return;
    }
    // A0, A1, A2 on h1, h2, h1. A1 admits ICMP from A2 only; A0 borrows A2's address.
    let lab = Lab::up('s', 2, 3, 0);
    let (a0, a1, a2) = (lab.member(0), lab.member(1), lab.member(2));
    admit_icmp_from(&lab, &a2.private_ip);
    let host_ns = host_netns(&lab, &a0.host);
    let ping = |from: &str, source: &str| {
        Command::new("ip")
            .args(["netns", "exec", from, "ping", "-c1", "-W1", "-I", source])
            .arg(&a1.private_ip)
            .output()
            .unwrap()
            .status
            .success()
    };
    // The real A2 gets through (and is tracked on its host, h1, which A0 shares).
    assert!(ping(&a2.netns, &a2.private_ip), "{}", lab.tables());
    assert_eq!(tracked_from(&host_ns, &a2.private_ip), 1);
    let flush = Command::new("ip")
        .args(["netns", "exec", &host_ns, "conntrack", "-F"])
        .status()
        .unwrap();
    assert!(flush.success());
    // A0 sends with A2's address: dropped at A0's device, before connection tracking.
    add_address(&a0.netns, &a2.private_ip);
    assert!(!ping(&a0.netns, &a2.private_ip));
    assert_eq!(
        tracked_from(&host_ns, &a2.private_ip),
        0,
        "a forged source never reaches connection tracking's table\n{}",
        lab.tables()
    );
}

#[test]
fn a_router_instance_forwards_for_others_only_with_its_source_check_off() {
    if skipped() {
        return;
    }
    // A0 (h1) routes for a network behind it, here one address S of its VPC that no
    // interface holds; A1 (h2) admits ICMP from S. A0's packets from S pass only once its
    // interface's SourceDestCheck is off, and then only within its VPC: B1, another
    // account's instance at A1's very address on the same host, admits ICMP from S too and
    // never hears one.
    let lab = Lab::up_with_tenants('r', 2, 2, 0, 1);
    let of = |tenant: usize| -> Vec<&Member> {
        (0..lab.members.len())
            .map(|n| lab.member(n))
            .filter(|m| m.tenant == tenant)
            .collect()
    };
    let (a0, a1, b1) = (of(0)[0], of(0)[1], of(1)[1]);
    assert_eq!(
        (&b1.private_ip, &b1.host),
        (&a1.private_ip, &a1.host),
        "B1 is where A1 is"
    );
    let behind = "198.18.0.200";
    admit_icmp_from(&lab, behind);
    let b_group = lab.lab["Tenants"][0]["SecurityGroupIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    must(
        &lab,
        &lab.tenants[0],
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &b_group),
            ("IpProtocol", "icmp"),
            ("PortRange", "-1/-1"),
            ("SourceCidrIp", &format!("{behind}/32")),
        ],
    );
    lab.wait_applied();
    let echoes_heard = |m: &Member| icmp_in_echos(&m.netns);
    let b1_before = echoes_heard(b1);
    let (h1, h2) = (host_netns(&lab, &a0.host), host_netns(&lab, &a1.host));
    assert_ne!(h1, h2, "the router and its peer are on two hosts");
    add_address(&a0.netns, behind);
    // As a router does, A0 resolves its next hop from its own address (the host hears ARP
    // from an instance's own addresses only, forwarding or not).
    for conf in ["all", "eth0"] {
        let set = Command::new("ip")
            .args(["netns", "exec", &a0.netns, "sysctl", "-qw"])
            .arg(format!("net.ipv4.conf.{conf}.arp_announce=2"))
            .status()
            .unwrap();
        assert!(set.success());
    }
    let forward = || {
        // The answer has no way back to S (no route leads there): what counts is how far
        // the request gets, read from each host's tracked connections.
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &a0.netns, "ping", "-c1", "-W1", "-I", behind,
            ])
            .arg(&a1.private_ip)
            .output()
            .unwrap();
        let seen = (tracked_from(&h1, behind), tracked_from(&h2, behind));
        for ns in [&h1, &h2] {
            let flushed = Command::new("ip")
                .args(["netns", "exec", ns, "conntrack", "-F"])
                .status()
                .unwrap();
            assert!(flushed.success());
        }
        seen
    };
    assert_eq!(
        forward(),
        (0, 0),
        "checked: dropped at A0's device\n{}",
        lab.tables()
    );
    let modify = |check: &str| {
        lab.call(&[
            ("Action", "ModifyNetworkInterfaceAttribute"),
            ("NetworkInterfaceId", &a0.eni),
            ("SourceDestCheck", check),
        ]);
        lab.wait_applied();
    };
    modify("false");
    let described = lab.call(&[
        ("Action", "DescribeNetworkInterfaceAttribute"),
        ("NetworkInterfaceId", &a0.eni),
    ]);
    assert_eq!(described["SourceDestCheck"], false, "{described}");
    assert_eq!(
        forward(),
        (1, 1),
        "unchecked: forwarded by h1 and admitted by A1's rule on h2\n{}",
        lab.tables()
    );
    assert_eq!(
        echoes_heard(b1),
        b1_before,
        "what A0 forwards stays in A's VPC: B1 at the same address heard nothing"
    );
    let a1_before = echoes_heard(a1);
    forward();
    assert_eq!(
        (echoes_heard(a1), echoes_heard(b1)),
        (a1_before + 1, b1_before),
        "A1 hears the forwarded request, B1 does not"
    );
    modify("true");
    assert_eq!(forward(), (0, 0), "checked again\n{}", lab.tables());
}

/// ICMP echo requests the kernel of a namespace has received (`Icmp: InEchos`).
fn icmp_in_echos(netns: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", "/proc/net/snmp"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut icmp = text.lines().filter(|l| l.starts_with("Icmp: "));
    let (names, values) = (icmp.next().unwrap(), icmp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "InEchos")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

#[test]
fn a_vpc_instances_public_address_is_judged_by_its_vpc_rules() {
    if skipped() {
        return;
    }
    // Two VPC instances with public addresses (RunInstances with outbound bandwidth), on two
    // hosts; the internet reaches them through their public addresses only as their groups'
    // (intranet) rules allow, from the internet's own addresses.
    let lab = Lab::up_flags('u', 2, 2, &["--vpc-public"]);
    let (a0, a1) = (lab.member(0), lab.member(1));
    assert!(
        !a0.public_ip.is_empty() && !a1.public_ip.is_empty(),
        "{:?}",
        lab.lab
    );
    let g = lab.default_group("vpc");
    let ssh_from_the_internet = [
        ("SecurityGroupId", g.as_str()),
        ("IpProtocol", "tcp"),
        ("PortRange", "22/22"),
        ("SourceCidrIp", "198.19.0.0/16"),
    ];
    let mut authorize = vec![("Action", "AuthorizeSecurityGroup")];
    authorize.extend(ssh_from_the_internet);
    lab.call(&authorize);
    lab.wait_applied();
    let from_internet = |to: &str, port: u16| lab.probe(None, to, "tcp", port);
    assert_eq!(
        (
            from_internet(&a0.public_ip, 22),
            from_internet(&a1.public_ip, 22)
        ),
        (true, true),
        "both hosts' public addresses admit SSH from the internet\n{}",
        lab.tables()
    );
    assert!(!from_internet(&a0.public_ip, 80), "nothing else");
    // The rule names the internet's addresses: a VPC peer is not among them.
    assert!(!lab.probe(Some(1), &a0.private_ip, "tcp", 22));
    let mut revoke = vec![("Action", "RevokeSecurityGroup")];
    revoke.extend(ssh_from_the_internet);
    lab.call(&revoke);
    lab.wait_applied();
    assert!(
        !from_internet(&a0.public_ip, 22),
        "revoked\n{}",
        lab.tables()
    );
}

#[test]
fn overlapping_vpcs_on_shared_hosts_keep_their_own_rules_and_connections() {
    if skipped() {
        return;
    }
    // Two accounts, one VPC each with the same CIDRs: A0 and B0 at .2 on h1, A1 and B1 at
    // .3 on h2.
    let lab = Lab::up_with_tenants('o', 2, 2, 0, 1);
    let of = |tenant: usize| -> Vec<usize> {
        (0..lab.members.len())
            .filter(|&n| lab.member(n).tenant == tenant)
            .collect()
    };
    let (a, b) = (of(0), of(1));
    assert_eq!((a.len(), b.len()), (2, 2));
    for k in 0..2 {
        let (ma, mb) = (lab.member(a[k]), lab.member(b[k]));
        assert_eq!(
            (&ma.private_ip, &ma.host),
            (&mb.private_ip, &mb.host),
            "equal addresses on one host"
        );
    }
    let b_keys = lab.tenants[0].clone();
    let b_group = lab.lab["Tenants"][0]["SecurityGroupIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let from = format!("{}/32", lab.member(a[0]).private_ip);
    let allow = |keys: Option<&Keys>, group: &str, port: &str| {
        let params = [
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", group),
            ("IpProtocol", "tcp"),
            ("PortRange", port),
            ("SourceCidrIp", from.as_str()),
        ];
        match keys {
            None => lab.call(&params),
            Some(k) => must(&lab, k, &params),
        };
    };
    // A opens 80 (and 82); B opens 81 and 82, from the same address .2.
    allow(None, &lab.default_group("vpc"), "80/80");
    allow(None, &lab.default_group("vpc"), "82/82");
    allow(Some(&b_keys), &b_group, "81/81");
    allow(Some(&b_keys), &b_group, "82/82");
    lab.wait_applied();
    let target = lab.member(a[1]).private_ip.clone();
    let probe = |n: usize, port: u16| lab.probe(Some(n), &target, "tcp", port);
    assert_eq!(
        (probe(a[0], 80), probe(a[0], 81)),
        (true, false),
        "A's rules hold for A\n{}",
        lab.tables()
    );
    assert_eq!(
        (probe(b[0], 80), probe(b[0], 81)),
        (false, true),
        "B's rules hold for B\n{}",
        lab.tables()
    );

    // The same 5-tuple in both VPCs at once (.2:40123 → .3:82): two connections.
    let ns = |n: usize| lab.member(n).netns.clone();
    let mut in_a = Connection::open_from(&ns(a[1]), &ns(a[0]), &target, 82, 40123);
    let mut in_b = Connection::open_from(&ns(b[1]), &ns(b[0]), &target, 82, 40123);
    assert!(in_a.echo() && in_b.echo(), "both connections work");
    let zones = |host: &str| -> usize {
        let ns = &lab.hosts.iter().find(|(id, _)| id == host).unwrap().1;
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "conntrack",
                "-L",
                "-p",
                "tcp",
                "--dport",
                "82",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let zones: std::collections::BTreeSet<&str> = text
            .split_whitespace()
            .filter(|w| w.starts_with("zone="))
            .collect();
        zones.len()
    };
    assert_eq!(zones(&lab.member(a[0]).host), 2, "tracked in two zones");

    // B revokes 82: B's connection is cut, A's equal one lives on.
    must(
        &lab,
        &b_keys,
        &[
            ("Action", "RevokeSecurityGroup"),
            ("SecurityGroupId", &b_group),
            ("IpProtocol", "tcp"),
            ("PortRange", "82/82"),
            ("SourceCidrIp", &from),
        ],
    );
    lab.wait_applied();
    assert!(in_a.echo(), "A's connection is untouched by B's change");
    assert!(!in_b.echo(), "B's connection is cut by B's change");
    assert_eq!(
        (probe(a[0], 80), probe(b[0], 81)),
        (true, true),
        "and each VPC still reaches its own instance only"
    );
}

#[test]
fn ipv6_rules_and_group_references_hold_on_real_packets() {
    if skipped() {
        return;
    }
    // A0 (h1), A1 (h2), A2 (h1), each with an IPv6 address of the vSwitch's /64.
    let lab = Lab::up('v', 2, 3, 0);
    let (a0, a1, a2) = (lab.member(0), lab.member(1), lab.member(2));
    for m in [a0, a1, a2] {
        assert!(
            m.ipv6.starts_with("2001:2:"),
            "{} has IPv6: {:?}",
            m.id,
            m.ipv6
        );
    }
    let g = lab.default_group("vpc");
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &g),
        ("IpProtocol", "tcp"),
        ("PortRange", "80/80"),
        ("Ipv6SourceCidrIp", &format!("{}/128", a0.ipv6)),
    ]);
    lab.wait_applied();
    let probe = |n: usize, port: u16| lab.probe(Some(n), &a1.ipv6, "tcp", port);
    assert_eq!(
        (probe(0, 80), probe(0, 81), probe(2, 80)),
        (true, false, false),
        "an IPv6 CIDR rule admits A0 only, on 80 only\n{}",
        lab.tables()
    );
    // A group reference matches its members' IPv6 addresses.
    let vpc = lab.vpc_id();
    let peers = lab.call(&[
        ("Action", "CreateSecurityGroup"),
        ("VpcId", &vpc),
        ("SecurityGroupName", "v6-peers"),
    ])["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &g),
        ("IpProtocol", "tcp"),
        ("PortRange", "8080/8080"),
        ("SourceGroupId", &peers),
    ]);
    lab.call(&[
        ("Action", "JoinSecurityGroup"),
        ("InstanceId", &a2.id),
        ("SecurityGroupId", &peers),
    ]);
    lab.wait_applied();
    assert_eq!(
        (probe(2, 8080), probe(0, 8080)),
        (true, false),
        "the group's member A2 passes over IPv6, A0 does not\n{}",
        lab.tables()
    );
    // ICMPv6 echo is judged like any protocol; neighbour discovery keeps working meanwhile.
    let ping = || lab.probe(Some(0), &a1.ipv6, "icmp", 0);
    assert!(!ping());
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &g),
        ("IpProtocol", "icmpv6"),
        ("PortRange", "-1/-1"),
        ("Ipv6SourceCidrIp", "::/0"),
    ]);
    lab.wait_applied();
    assert!(ping(), "ICMPv6 allowed\n{}", lab.tables());
    // A tracked IPv6 connection is cut when the rule that allowed it goes.
    let mut conn = Connection::open(&a1.netns, &a0.netns, &a1.ipv6, 80);
    assert!(conn.echo(), "an IPv6 connection on the allowed port");
    lab.call(&[
        ("Action", "RevokeSecurityGroup"),
        ("SecurityGroupId", &g),
        ("IpProtocol", "tcp"),
        ("PortRange", "80/80"),
        ("Ipv6SourceCidrIp", &format!("{}/128", a0.ipv6)),
    ]);
    lab.wait_applied();
    assert!(
        !conn.echo(),
        "cut once its rule is revoked\n{}",
        lab.tables()
    );
    // The engine says the same.
    let v = lab.call(&[
        ("Action", "DescribeFlowVerdict"),
        ("SourceIp", &a2.ipv6),
        ("DestinationInstanceId", &a1.id),
        ("IpProtocol", "tcp"),
        ("DestinationPort", "8080"),
    ]);
    assert_eq!(v["Verdict"], "Accept", "{v}");
}
