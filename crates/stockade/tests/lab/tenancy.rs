//! A hostile tenant on real packets: no request of account B, in any order, changes a
//! verdict of account A (DESIGN.md §6). Lab: A's VPC instances A0 (h1) and A1 (h2); A1's
//! group admits tcp/80 from A0 only.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{skipped, Keys, Lab};

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
    let g = lab.default_group("vpc");
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &g),
        ("IpProtocol", "icmp"),
        ("PortRange", "-1/-1"),
        ("SourceCidrIp", &format!("{}/32", a2.private_ip)),
    ]);
    lab.wait_applied();
    let host_ns = lab
        .hosts
        .iter()
        .find(|(id, _)| *id == a0.host)
        .unwrap()
        .1
        .clone();
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
    let added = Command::new("ip")
        .args([
            "-n",
            &a0.netns,
            "addr",
            "add",
            &format!("{}/32", a2.private_ip),
            "dev",
            "eth0",
        ])
        .status()
        .unwrap();
    assert!(added.success());
    assert!(!ping(&a0.netns, &a2.private_ip));
    assert_eq!(
        tracked_from(&host_ns, &a2.private_ip),
        0,
        "a forged source never reaches connection tracking's table\n{}",
        lab.tables()
    );
}
