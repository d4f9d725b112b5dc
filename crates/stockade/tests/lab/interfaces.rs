//! Secondary network interfaces on real packets: a second device in an instance's namespace
//! (`lab up --secondary`), judged by its interface's own groups at its own address, matched
//! by group references through that address, and cut, tracked connections too, when it is
//! detached.

use std::time::Duration;

use crate::harness::{skipped, Connection, Lab};

fn authorize(lab: &Lab, group: &str, port: &str, peer: (&str, &str)) {
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", group),
        ("IpProtocol", "tcp"),
        ("PortRange", port),
        peer,
    ]);
}

#[test]
fn a_secondary_interface_holds_its_own_groups_and_detaching_cuts_it() {
    if skipped() {
        return;
    }
    let lab = Lab::up_with('e', 2, 3, 0, 0, 1);
    let (a, b) = (lab.member(0), lab.member(1));
    let (eni, eni_ip) = a
        .secondary
        .clone()
        .expect("member 0 has a secondary interface");
    let eni_group = lab.lab["SecondarySecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    let vpc_group = lab.default_group("vpc");
    let lab_range = ("SourceCidrIp", "198.18.0.0/15");
    // The instance's groups open 22, the interface's 80; the instance's group also admits
    // 5432 from members of the interface's group (a group reference).
    authorize(&lab, &vpc_group, "22/22", lab_range);
    authorize(&lab, &eni_group, "80/80", lab_range);
    authorize(&lab, &vpc_group, "5432/5432", ("SourceGroupId", &eni_group));
    lab.wait_applied();
    let from_b = |to: &str, port: u16| lab.probe(Some(1), to, "tcp", port);
    assert_eq!(
        (from_b(&eni_ip, 80), from_b(&eni_ip, 22)),
        (true, false),
        "the interface's address is judged by its own groups\n{}",
        lab.tables()
    );
    assert_eq!(
        (from_b(&a.private_ip, 80), from_b(&a.private_ip, 22)),
        (false, true),
        "the primary address by the instance's"
    );
    // From the interface's address (its own device), the group reference admits it.
    let from_a = |source: Option<&str>| {
        let line = match source {
            Some(s) => format!("tcp {} 5432 0 {s}", b.private_ip),
            None => format!("tcp {} 5432 0", b.private_ip),
        };
        lab.probe_lines(&a.netns, &[line])[0]
    };
    assert_eq!(
        (from_a(Some(&eni_ip)), from_a(None)),
        (true, false),
        "a group reference matches the secondary interface's address, not the primary's\n{}",
        lab.tables()
    );
    // `lab probe` takes the interface id on either side.
    let probe = |from: &str, to: &str, port: &str| {
        lab.stockade(&["lab", "probe", "--from", from, "--to", to, "--port", port])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(probe(&b.id, &eni, "80") && !probe(&b.id, &a.id, "80"));
    assert!(probe(&eni, &b.id, "5432"));

    // A secondary address of the instance's primary interface, configured on its device as
    // provisioning would: dropped as spoofed until AssignPrivateIpAddresses makes it the
    // interface's, then matched by a group reference to the instance's group.
    let c = lab.member(2);
    assert_eq!((a.host.as_str(), c.host.as_str()), ("h1", "h1"));
    let extra = "198.18.1.200";
    let name = lab.lab["Name"].as_str().unwrap();
    let host_ns = &lab.hosts.iter().find(|(h, _)| h == "h1").unwrap().1;
    for args in [
        vec![
            "-n",
            a.netns.as_str(),
            "addr",
            "add",
            "198.18.1.200/32",
            "dev",
            "eth0",
        ],
        vec![
            "-n",
            host_ns.as_str(),
            "route",
            "add",
            extra,
            "dev",
            &format!("sk{name}0i"),
        ],
    ] {
        ip(&args);
    }
    authorize(&lab, &vpc_group, "6000/6000", ("SourceGroupId", &vpc_group));
    lab.wait_applied();
    let to_c = |source: &str| {
        lab.probe_lines(&a.netns, &[format!("tcp {} 6000 0 {source}", c.private_ip)])[0]
    };
    assert_eq!(
        (to_c(&a.private_ip), to_c(extra)),
        (true, false),
        "an address the interface does not have is spoofed"
    );
    let assign = |action: &str| {
        lab.call(&[
            ("Action", action),
            ("NetworkInterfaceId", &a.eni),
            ("PrivateIpAddress.1", extra),
        ]);
        lab.wait_applied();
    };
    assign("AssignPrivateIpAddresses");
    assert!(
        to_c(extra),
        "assigned, it is the member's and the group reference matches it\n{}",
        lab.tables()
    );
    assign("UnassignPrivateIpAddresses");
    assert!(!to_c(extra), "unassigned, it is refused again");

    // The same for an IPv4 prefix: every address of a delegated /28 block is the
    // interface's, for anti-spoofing and for group references alike.
    let (block, inside, outside) = ("198.18.1.208/28", "198.18.1.221", "198.18.1.226");
    for args in [
        vec![
            "-n",
            a.netns.as_str(),
            "addr",
            "add",
            "198.18.1.221/32",
            "dev",
            "eth0",
        ],
        vec![
            "-n",
            a.netns.as_str(),
            "addr",
            "add",
            "198.18.1.226/32",
            "dev",
            "eth0",
        ],
        vec![
            "-n",
            host_ns.as_str(),
            "route",
            "add",
            "198.18.1.208/28",
            "dev",
            &format!("sk{name}0i"),
        ],
        vec![
            "-n",
            host_ns.as_str(),
            "route",
            "add",
            outside,
            "dev",
            &format!("sk{name}0i"),
        ],
    ] {
        ip(&args);
    }
    assert_eq!(
        (to_c(inside), to_c(outside)),
        (false, false),
        "not delegated yet: spoofed"
    );
    let delegate = |action: &str| {
        lab.call(&[
            ("Action", action),
            ("NetworkInterfaceId", &a.eni),
            ("Ipv4Prefix.1", block),
        ]);
        lab.wait_applied();
    };
    delegate("AssignPrivateIpAddresses");
    assert_eq!(
        (to_c(inside), to_c(outside)),
        (true, false),
        "delegated, the block's addresses are the member's, and only they\n{}",
        lab.tables()
    );
    delegate("UnassignPrivateIpAddresses");
    assert!(!to_c(inside), "taken back, the block is refused again");
    let status = lab.stockade(&["lab", "status"]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status
            .lines()
            .any(|l| l.contains(&eni) && l.contains(&eni_group)),
        "lab status shows the interface with its groups:\n{status}"
    );

    // A tracked connection to the interface, then the interface is detached: cut.
    let mut conn = Connection::open(&a.netns, &b.netns, &eni_ip, 80);
    assert!(conn.echo(), "the connection to the interface works");
    lab.call(&[
        ("Action", "DetachNetworkInterface"),
        ("NetworkInterfaceId", &eni),
        ("InstanceId", &a.id),
    ]);
    lab.wait_applied();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !conn.echo(),
        "detaching cuts the interface's tracked connections\n{}",
        lab.tables()
    );
    drop(conn);
    assert!(!from_b(&eni_ip, 80), "and its new ones");
    assert!(
        from_b(&a.private_ip, 22),
        "the instance itself is untouched"
    );
    lab.call(&[
        ("Action", "AttachNetworkInterface"),
        ("NetworkInterfaceId", &eni),
        ("InstanceId", &a.id),
    ]);
    lab.wait_applied();
    assert!(
        from_b(&eni_ip, 80),
        "attached again, it carries traffic again"
    );
}

/// Runs `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
