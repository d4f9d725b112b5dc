//! The behaviours of DESIGN.md §4 on real packets, one numbered step each, driven through
//! the ECS API. Lab: hosts h1 and h2; VPC instances A (h1), B (h2), C (h1), D (h2), all in
//! the lab's VPC group (intra-group access dropped); classic instance E (h1) with an internet
//! interface; the internet client outside every group.

use std::process::Command;
use std::time::Duration;

use crate::harness::{skipped, Connection, Lab};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const D: usize = 3;
const E: usize = 4;
const INTERNET: &str = agent::netns::INTERNET;

/// Asserts a probe's outcome after the agents applied the latest change.
macro_rules! expect {
    ($lab:expr, $step:expr, $from:expr => $to:expr, $proto:expr, $port:expr, $pass:expr) => {{
        let from: Option<usize> = $from;
        let to = String::from($to);
        let got = $lab.probe(from, &to, $proto, $port);
        assert_eq!(
            got,
            $pass,
            "step {}: {} {:?} -> {} port {} should {}\n{}",
            $step,
            $proto,
            from,
            to,
            $port,
            if $pass { "pass" } else { "be blocked" },
            $lab.tables()
        );
    }};
}

fn group(lab: &Lab, name: &str, enterprise: bool) -> String {
    let vpc = lab.vpc_id();
    let mut params = vec![
        ("Action", "CreateSecurityGroup"),
        ("SecurityGroupName", name),
        ("VpcId", vpc.as_str()),
    ];
    if enterprise {
        params.push(("SecurityGroupType", "enterprise"));
    }
    lab.call(&params)["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn authorize(lab: &Lab, sg: &str, extra: &[(&str, &str)]) {
    let mut params = vec![
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", sg),
    ];
    params.extend_from_slice(extra);
    lab.call(&params);
    lab.wait_applied();
}

/// Joins (`action` "Join") or leaves ("Leave") a group with lab instance `instance`.
fn membership(lab: &Lab, action: &str, instance: usize, sg: &str) {
    let action = format!("{action}SecurityGroup");
    let instance = lab.member(instance).id.clone();
    lab.call(&[
        ("Action", action.as_str()),
        ("InstanceId", &instance),
        ("SecurityGroupId", sg),
    ]);
    lab.wait_applied();
}

#[test]
fn security_groups_hold_on_real_packets() {
    if skipped() {
        return;
    }
    let lab = Lab::up('s', 2, 4, 1);
    let ip = |n: usize| lab.member(n).private_ip.clone();
    let id = |n: usize| lab.member(n).id.clone();
    let a32 = format!("{}/32", ip(A));
    let g0 = lab.default_group("vpc");

    // 1. Default inbound deny (the lab group drops intra-group traffic), default egress
    //    accept (the internet client, outside every group, answers).
    expect!(lab, 1, Some(A) => ip(B), "tcp", 80, false);
    expect!(lab, 1, Some(A) => ip(B), "udp", 53, false);
    expect!(lab, 1, Some(A) => ip(B), "icmp", 0, false);
    expect!(lab, 1, Some(A) => INTERNET, "tcp", 80, true);

    // 2. Allow a TCP port from a CIDR: exactly that port, exactly that source.
    authorize(
        &lab,
        &g0,
        &[
            ("IpProtocol", "tcp"),
            ("PortRange", "80/80"),
            ("SourceCidrIp", &a32),
        ],
    );
    expect!(lab, 2, Some(A) => ip(B), "tcp", 80, true);
    expect!(lab, 2, Some(A) => ip(B), "tcp", 81, false);
    expect!(lab, 2, Some(C) => ip(B), "tcp", 80, false);
    expect!(lab, 2, Some(A) => ip(B), "udp", 80, false);

    // 3. Allow from a group: C is not in it yet.
    let g1 = group(&lab, "scenario-g1", false);
    authorize(
        &lab,
        &g0,
        &[
            ("IpProtocol", "tcp"),
            ("PortRange", "8080/8080"),
            ("SourceGroupId", &g1),
        ],
    );
    expect!(lab, 3, Some(C) => ip(B), "tcp", 8080, false);

    // 4. A member joining that group gains access without any rule change.
    membership(&lab, "Join", C, &g1);
    expect!(lab, 4, Some(C) => ip(B), "tcp", 8080, true);
    expect!(lab, 4, Some(A) => ip(B), "tcp", 8080, false);

    // 5. Drop beats accept at equal priority.
    authorize(
        &lab,
        &g0,
        &[
            ("IpProtocol", "tcp"),
            ("PortRange", "80/80"),
            ("SourceCidrIp", &a32),
            ("Policy", "drop"),
            ("Priority", "1"),
        ],
    );
    expect!(lab, 5, Some(A) => ip(B), "tcp", 80, false);

    // 6. A higher-priority accept beats a lower-priority drop.
    authorize(
        &lab,
        &g0,
        &[
            ("IpProtocol", "udp"),
            ("PortRange", "53/53"),
            ("SourceCidrIp", "0.0.0.0/0"),
            ("Policy", "drop"),
            ("Priority", "2"),
        ],
    );
    authorize(
        &lab,
        &g0,
        &[
            ("IpProtocol", "udp"),
            ("PortRange", "53/53"),
            ("SourceCidrIp", "198.18.1.0/24"),
            ("Priority", "1"),
        ],
    );
    expect!(lab, 6, Some(A) => ip(B), "udp", 53, true);
    expect!(lab, 6, None => ip(B), "udp", 53, false);

    // 7. Rules across two groups of one instance: B also joins G2, which opens 9000.
    let g2 = group(&lab, "scenario-g2", false);
    authorize(
        &lab,
        &g2,
        &[
            ("IpProtocol", "tcp"),
            ("PortRange", "9000/9000"),
            ("SourceCidrIp", &a32),
        ],
    );
    membership(&lab, "Join", B, &g2);
    expect!(lab, 7, Some(A) => ip(B), "tcp", 9000, true);
    expect!(lab, 7, Some(A) => ip(B), "tcp", 80, false);

    // 8. Intra-group accept, then InnerAccessPolicy=Drop: C and D share G1.
    membership(&lab, "Join", D, &g1);
    expect!(lab, 8, Some(C) => ip(D), "icmp", 0, true);
    lab.call(&[
        ("Action", "ModifySecurityGroupPolicy"),
        ("SecurityGroupId", &g1),
        ("InnerAccessPolicy", "Drop"),
    ]);
    lab.wait_applied();
    expect!(lab, 8, Some(C) => ip(D), "icmp", 0, false);

    // 9. Enterprise groups: members isolated, egress denied by default.
    let ge = group(&lab, "scenario-ent", true);
    for n in [C, D] {
        lab.call(&[
            ("Action", "ModifyInstanceAttribute"),
            ("InstanceId", &id(n)),
            ("SecurityGroupIds.1", &ge),
        ]);
    }
    lab.wait_applied();
    expect!(lab, 9, Some(D) => INTERNET, "tcp", 80, false);
    lab.call(&[
        ("Action", "AuthorizeSecurityGroupEgress"),
        ("SecurityGroupId", &ge),
        ("IpProtocol", "all"),
        ("PortRange", "-1/-1"),
        ("DestCidrIp", "0.0.0.0/0"),
    ]);
    lab.wait_applied();
    expect!(lab, 9, Some(D) => INTERNET, "tcp", 80, true);
    expect!(lab, 9, Some(C) => ip(D), "tcp", 80, false);

    // 10. An egress drop rule.
    lab.call(&[
        ("Action", "AuthorizeSecurityGroupEgress"),
        ("SecurityGroupId", &g0),
        ("IpProtocol", "tcp"),
        ("PortRange", "443/443"),
        ("DestCidrIp", "0.0.0.0/0"),
        ("Policy", "drop"),
    ]);
    lab.wait_applied();
    expect!(lab, 10, Some(A) => INTERNET, "tcp", 443, false);
    expect!(lab, 10, Some(A) => INTERNET, "tcp", 444, true);

    // 11. Revoking a rule cuts a connection it had allowed.
    let rule = [
        ("IpProtocol", "tcp"),
        ("PortRange", "7000/7000"),
        ("SourceCidrIp", a32.as_str()),
    ];
    authorize(&lab, &g0, &rule);
    let mut conn = Connection::open(&lab.member(B).netns, &lab.member(A).netns, &ip(B), 7000);
    assert!(conn.echo(), "step 11: the allowed connection works");
    let mut revoke = vec![
        ("Action", "RevokeSecurityGroup"),
        ("SecurityGroupId", g0.as_str()),
    ];
    revoke.extend_from_slice(&rule);
    lab.call(&revoke);
    lab.wait_applied();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !conn.echo(),
        "step 11: the revoked connection is cut\n{}",
        lab.tables()
    );
    drop(conn);

    // 12. Leaving a group takes its rules away.
    membership(&lab, "Leave", B, &g2);
    expect!(lab, 12, Some(A) => ip(B), "tcp", 9000, false);

    // 13. Classic internet NIC rules apply on the internet interface only.
    let e_public = lab.member(E).public_ip.clone();
    let gc = lab.default_group("classic");
    expect!(lab, 13, None => e_public.clone(), "tcp", 80, false);
    authorize(
        &lab,
        &gc,
        &[
            ("IpProtocol", "tcp"),
            ("PortRange", "80/80"),
            ("SourceCidrIp", "0.0.0.0/0"),
            ("NicType", "internet"),
        ],
    );
    expect!(lab, 13, None => e_public.clone(), "tcp", 80, true);
    expect!(lab, 13, None => e_public, "tcp", 81, false);
    expect!(lab, 13, Some(A) => ip(E), "tcp", 80, false);

    // IPv6: the lab has no IPv6 addresses (ECS instances here get none), so no step.
}

#[test]
fn enforcement_survives_faults() {
    if skipped() {
        return;
    }
    let mut lab = Lab::up('f', 2, 2, 0);
    let ip_b = lab.member(1).private_ip.clone();
    let a32 = format!("{}/32", lab.member(0).private_ip);
    let g0 = lab.default_group("vpc");
    let rule = [
        ("IpProtocol", "tcp"),
        ("PortRange", "80/80"),
        ("SourceCidrIp", a32.as_str()),
    ];
    authorize(&lab, &g0, &rule);
    assert!(lab.probe(Some(0), &ip_b, "tcp", 80));

    // The agent of B's host dies: the table stays, the policy still holds.
    let b_host: usize = lab.member(1).host[1..].parse::<usize>().unwrap() - 1;
    lab.kill_agent(b_host);
    assert!(
        lab.probe(Some(0), &ip_b, "tcp", 80),
        "allowed traffic still passes"
    );
    assert!(
        !lab.probe(Some(0), &ip_b, "tcp", 81),
        "denied traffic still blocked"
    );
    // A change made meanwhile is enforced once the restarted agent resyncs.
    let mut revoke = vec![
        ("Action", "RevokeSecurityGroup"),
        ("SecurityGroupId", g0.as_str()),
    ];
    revoke.extend_from_slice(&rule);
    lab.call(&revoke);
    let host_id = lab.hosts[b_host].0.clone();
    let out = lab
        .stockade(&["lab", "restart-agent", "--host", &host_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.wait_applied();
    assert!(
        !lab.probe(Some(0), &ip_b, "tcp", 80),
        "restarted agent resynced"
    );

    // The table flushed by hand is restored within the reconcile interval (1 s).
    authorize(&lab, &g0, &rule);
    let ns = lab.hosts[b_host].1.clone();
    let flushed = Command::new("ip")
        .args([
            "netns", "exec", &ns, "nft", "flush", "table", "inet", "stockade",
        ])
        .status()
        .unwrap();
    assert!(flushed.success());
    assert!(
        lab.probe(Some(0), &ip_b, "tcp", 81),
        "flushed: everything passes for now"
    );
    let start = std::time::Instant::now();
    while lab.probe(Some(0), &ip_b, "tcp", 81) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "drift not repaired within 5 s\n{}",
            lab.tables()
        );
    }
    assert!(
        lab.probe(Some(0), &ip_b, "tcp", 80),
        "restored with the current policy"
    );

    // The server goes away: the agents keep the last policy.
    lab.stop_server();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(lab.probe(Some(0), &ip_b, "tcp", 80));
    assert!(!lab.probe(Some(0), &ip_b, "tcp", 81));
}
