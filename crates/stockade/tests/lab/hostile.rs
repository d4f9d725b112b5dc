//! A hostile instance on real packets, against the host it runs on, the overlay and the
//! other tenant beside it (DESIGN.md §6, "the host is not a path between tenants"). Lab: two
//! hosts; the victim V (the lab's tenant, its VPC carried between hosts by VXLAN) has V0 on
//! h1 and V1 on h2; the attacker X (the lab's own account, on the hosts' shared tables, so it
//! can reach every host's underlay) has X0 and X1 at the very same addresses (IPv4 and
//! IPv6: each account draws its blocks from the same range) on the same hosts. Every attack forges raw frames on the attacker's device (`forge.py`), first shows
//! they left it (its device's counter), then that nothing of them arrived: not at V's
//! instances (a UDP listener on V1), not at any host's own stack (`sniff.py`, raw sockets
//! that see what the input hook lets through), not in any neighbour or forwarding table;
//! and V's own flows work throughout. Run under both renderings.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{skipped, Connection, Lab, Member};

const FORGE: &str = include_str!("forge.py");
const SNIFF: &str = include_str!("sniff.py");
/// What V1 listens on (UDP, both families); V's group admits it from V0.
const PORT: u16 = 5000;
/// The link-layer address forged ARP replies claim V's overlay next hops are at.
const FAKE_MAC: &str = "02:00:00:66:66:66";
/// Prints every datagram it receives, one per line.
const LISTEN: &str = "import socket,sys\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\ns.bind(('::',int(sys.argv[1])));print('ready',flush=True)\nwhile True:\n d,_=s.recvfrom(65535)\n print(d.decode(errors='replace'),flush=True)\n";

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&run(args)).unwrap()
}

/// A program in a namespace whose output lines are collected until it is stopped.
struct Recorder {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(ns: &str, script: &str, args: &[&str]) -> Recorder {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", script])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        out.read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "{script}");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Recorder { child, lines }
    }

    /// What it printed so far, and forgets it.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A device's index, link-layer address and transmitted packets.
fn link(ns: &str, dev: &str) -> (u64, String, u64) {
    let l = &json(&["ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev])[0];
    (
        l["ifindex"].as_u64().unwrap(),
        l["address"].as_str().unwrap().to_string(),
        l["stats64"]["tx"]["packets"].as_u64().unwrap(),
    )
}

/// The device in `ns` labelled `alias`.
fn labelled(ns: &str, alias: &str) -> String {
    json(&["ip", "-n", ns, "-j", "link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifalias"] == alias)
        .and_then(|l| l["ifname"].as_str())
        .unwrap_or_else(|| panic!("no device labelled {alias} in {ns}"))
        .to_string()
}

/// Every address a host holds, IPv4 and IPv6 (link-local ones with their device).
fn addresses(ns: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in json(&["ip", "-n", ns, "-j", "addr", "show"])
        .as_array()
        .unwrap()
    {
        let dev = l["ifname"].as_str().unwrap_or_default();
        for a in l["addr_info"].as_array().into_iter().flatten() {
            let local = a["local"].as_str().unwrap_or_default();
            if dev != "lo" || !local.starts_with("127.") && local != "::1" {
                out.push((local.to_string(), dev.to_string()));
            }
        }
    }
    out
}

/// An instance as the attacker or the victim: its namespace, the host's namespace, and the
/// host side of its device (name, index, link-layer address).
struct Side<'a> {
    member: &'a Member,
    host: String,
    dev: String,
    ifindex: u64,
    mac: String,
}

impl<'a> Side<'a> {
    fn new(lab: &Lab, member: &'a Member) -> Side<'a> {
        let host = lab
            .hosts
            .iter()
            .find(|(id, _)| *id == member.host)
            .unwrap()
            .1
            .clone();
        let dev = labelled(&host, &member.eni);
        let (ifindex, mac, _) = link(&host, &dev);
        Side {
            member,
            host,
            dev,
            ifindex,
            mac,
        }
    }

    /// Sends forged frames from the instance's `eth0`; asserts they left it.
    fn forge(&self, command: &str, args: &[&str]) {
        let ns = &self.member.netns;
        let (.., before) = link(ns, "eth0");
        let mut all = vec!["ip", "netns", "exec", ns, "python3", "-c", FORGE];
        all.extend(["eth0", self.mac.as_str(), command]);
        all.extend(args);
        let sent: u64 = run(&all).trim().parse().unwrap();
        let (.., after) = link(ns, "eth0");
        assert!(
            after >= before + sent,
            "the forged frames left the attacker ({command} {args:?}: {before} → {after})"
        );
    }
}

/// `ip neigh` entries of a device: address → (link-layer address, state).
fn neighbours(ns: &str, dev: &str) -> Vec<(String, String, String)> {
    json(&["ip", "-n", ns, "-j", "neigh", "show", "dev", dev])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            let state = n["state"].as_array().map(|s| s[0].to_string());
            (s("dst"), s("lladdr"), state.unwrap_or_default())
        })
        .collect()
}

/// What the sniffers (one per host, in `hosts` order) recorded coming from the attacker:
/// by its devices or with its addresses as the source.
fn from_attacker(sniffers: &[Recorder], hosts: &[String], x: &[&Side]) -> Vec<String> {
    let devices: BTreeSet<(&str, u64)> = x.iter().map(|s| (s.host.as_str(), s.ifindex)).collect();
    let sources: BTreeSet<&str> = x
        .iter()
        .flat_map(|s| [s.member.private_ip.as_str(), s.member.ipv6.as_str()])
        .collect();
    let mut out = Vec::new();
    for (sniffer, host) in sniffers.iter().zip(hosts) {
        for line in sniffer.take() {
            let v: Value = serde_json::from_str(&line).unwrap();
            let by_device = devices.contains(&(host.as_str(), v["ifindex"].as_u64().unwrap()));
            if by_device || sources.contains(v["src"].as_str().unwrap()) {
                out.push(format!("{host}: {line}"));
            }
        }
    }
    out
}

fn hostile(tag: char, rendering: &'static str) {
    if skipped() {
        return;
    }
    let lab = Lab::up_rendering(tag, 2, 2, 0, 1, 0, rendering);
    let of = |tenant: usize| -> Vec<&Member> {
        lab.members.iter().filter(|m| m.tenant == tenant).collect()
    };
    let (xm, vm) = (of(0), of(1));
    let (x0, x1) = (Side::new(&lab, xm[0]), Side::new(&lab, xm[1]));
    let (v0, v1) = (Side::new(&lab, vm[0]), Side::new(&lab, vm[1]));
    assert_eq!(
        (
            &x0.member.private_ip,
            &x0.host,
            &x1.member.private_ip,
            &x1.host
        ),
        (
            &v0.member.private_ip,
            &v0.host,
            &v1.member.private_ip,
            &v1.host
        ),
        "the attacker holds the victim's addresses on the victim's hosts"
    );
    let v_keys = lab.tenants[0].clone();
    let v_group = lab.lab["Tenants"][0]["SecurityGroupIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let v_vpc = lab.lab["Tenants"][0]["VpcId"].as_str().unwrap().to_string();
    let v0_4 = format!("{}/32", v0.member.private_ip);
    let v0_6 = format!("{}/128", v0.member.ipv6);
    for (protocol, ports, family, cidr) in [
        ("udp", "5000/5000", "SourceCidrIp", &v0_4),
        ("udp", "5000/5000", "Ipv6SourceCidrIp", &v0_6),
        ("tcp", "80/80", "SourceCidrIp", &v0_4),
    ] {
        lab.try_call_as(
            &v_keys,
            &[
                ("Action", "AuthorizeSecurityGroup"),
                ("SecurityGroupId", &v_group),
                ("IpProtocol", protocol),
                ("PortRange", ports),
                (family, cidr),
            ],
        )
        .unwrap();
    }
    lab.wait_applied();
    let listener = Recorder::start(&v1.member.netns, LISTEN, &[&PORT.to_string()]);
    let hosts: Vec<String> = lab.hosts.iter().map(|(_, ns)| ns.clone()).collect();
    let sniffers: Vec<Recorder> = hosts
        .iter()
        .map(|ns| Recorder::start(ns, SNIFF, &[]))
        .collect();
    let x = [&x0, &x1];
    let settle = || std::thread::sleep(Duration::from_millis(600));
    // V's own fragmented datagrams, IPv4 and IPv6, reach V1 whole: the zone chain's new
    // place keeps reassembly working.
    let (v1_4, v1_6) = (v1.member.private_ip.clone(), v1.member.ipv6.clone());
    let (v0_ip, v0_ip6) = (v0.member.private_ip.clone(), v0.member.ipv6.clone());
    let port = PORT.to_string();
    let frag = |side: &Side, src: &str, dst: &str, id: &str, tail: &str, part: &str| {
        side.forge(
            "frag",
            &[src, dst, id, "40000", &port, "V-HEAD-0", tail, part],
        );
    };
    for (src, dst, id) in [(&v0_ip, &v1_4, "101"), (&v0_ip6, &v1_6, "102")] {
        frag(&v0, src, dst, id, "V-TAIL-0", "both");
    }
    settle();
    assert_eq!(
        listener.take(),
        ["V-HEAD-0V-TAIL-0", "V-HEAD-0V-TAIL-0"],
        "V's fragments are reassembled and delivered\n{}",
        lab.tables()
    );

    // 1. Fragments of two VPCs never join, in either order: X0 sends a tail from V0's
    // address (which is its own too) with the id of a head V0 sends, to V1's address (X1's
    // too). Reassembled in one zone, V1 would get V's head with X's tail.
    for (src, dst, id) in [(&v0_ip, &v1_4, "201"), (&v0_ip6, &v1_6, "202")] {
        frag(&x0, src, dst, id, "X-TAIL-1", "tail");
        frag(&v0, src, dst, id, "X-TAIL-1", "head");
    }
    for (src, dst, id) in [(&v0_ip, &v1_4, "301"), (&v0_ip6, &v1_6, "302")] {
        frag(&v0, src, dst, id, "X-TAIL-2", "head");
        frag(&x0, src, dst, id, "X-TAIL-2", "tail");
    }
    settle();
    assert_eq!(
        listener.take(),
        Vec::<String>::new(),
        "no datagram of V's head and X's tail\n{}",
        lab.tables()
    );

    // 2. Forged VXLAN with V's VNI, to every address of every host, from both attackers:
    // an ARP reply moving V's overlay next hops to a made-up MAC, and a datagram "from V0"
    // to V1. Then IP-in-IP and GRE carrying the same datagram.
    let vni = "101";
    let mut overlay = Vec::new();
    for ns in &hosts {
        let dev = labelled(ns, &v_vpc);
        let (_, mac, _) = link(ns, &dev);
        overlay.push((ns.clone(), dev, mac));
    }
    let neighbours_before: Vec<_> = overlay
        .iter()
        .map(|(ns, dev, _)| neighbours(ns, dev))
        .collect();
    for (_, _, neigh) in neighbours_before.iter().flatten() {
        assert_eq!(neigh, "\"PERMANENT\"", "{neighbours_before:?}");
    }
    let targets: Vec<String> = hosts
        .iter()
        .flat_map(|ns| addresses(ns))
        .map(|(a, _)| a)
        .filter(|a| a.contains('.'))
        .collect();
    let claims: Vec<String> = targets
        .iter()
        .filter(|a| a.starts_with("169.254."))
        .cloned()
        .collect();
    for attacker in x {
        let own = attacker.member.private_ip.as_str();
        for target in &targets {
            for claim in &claims {
                attacker.forge("vxlan", &[own, target, vni, "arp", claim, FAKE_MAC]);
            }
            for (_, _, vx_mac) in &overlay {
                attacker.forge(
                    "vxlan",
                    &[
                        own, target, vni, "udp", vx_mac, &v0_ip, &v1_4, &port, "X-VXLAN",
                    ],
                );
            }
            attacker.forge("ipip", &[own, target, &v0_ip, &v1_4, &port, "X-IPIP"]);
        }
    }
    settle();
    assert_eq!(
        listener.take(),
        Vec::<String>::new(),
        "nothing forged reaches V1"
    );
    let neighbours_after: Vec<_> = overlay
        .iter()
        .map(|(ns, dev, _)| neighbours(ns, dev))
        .collect();
    assert_eq!(
        neighbours_after, neighbours_before,
        "V's overlay next hops stay"
    );
    for (ns, dev, _) in &overlay {
        let fdb = run(&["bridge", "-n", ns, "fdb", "show", "dev", dev]);
        assert!(!fdb.contains(FAKE_MAC), "{ns} {dev}: {fdb}");
    }
    let seen = from_attacker(&sniffers, &hosts, &x);
    assert!(
        seen.is_empty(),
        "no host received the attacker's tunnels: {seen:#?}"
    );

    // 3. Every address of its own host, over UDP, TCP and ICMP, both families; and, from
    // V1, every IPv4 address of the other host, which V's VPC routes over its overlay (a
    // VPC may hold the hosts' addresses: the host's local routes win over the VPC's table).
    let other_host: Vec<String> = addresses(&v0.host)
        .into_iter()
        .map(|(a, _)| a)
        .filter(|a| a.contains('.'))
        .collect();
    let sweeps = x
        .iter()
        .map(|a| (*a, addresses(&a.host).into_iter().map(|(t, _)| t).collect()))
        .chain([(&v1, other_host)]);
    for (attacker, targets) in sweeps {
        let (own4, own6) = (&attacker.member.private_ip, &attacker.member.ipv6);
        for target in targets {
            let own = if target.contains(':') { own6 } else { own4 };
            attacker.forge("udp", &[own, &target, "40000", "7777", "X-HOST"]);
            attacker.forge("syn", &[own, &target, "22"]);
            attacker.forge("ping", &[own, &target]);
        }
    }
    settle();
    let seen = from_attacker(&sniffers, &hosts, &x);
    assert!(
        seen.is_empty(),
        "no host address answers an instance: {seen:#?}"
    );

    // 4. ARP and neighbour discovery claim only the attacker's own addresses: a request
    // from its own address is learnt (so the check below can see a learnt entry), one from
    // V1's, the gateway's or another host's address is not.
    let v4_claims = [&v0_ip, &v1_4, "198.18.255.254", "198.18.254.5"];
    let claims_of = |side: &Side| -> Vec<String> {
        (v4_claims.iter().map(|c| c.to_string()))
            .chain([v0_ip6.clone(), v1_6.clone()])
            .filter(|c| *c != side.member.private_ip && *c != side.member.ipv6)
            .collect()
    };
    for attacker in x {
        let own = attacker.member.private_ip.as_str();
        attacker.forge("arp", &["1", own, "198.18.255.254"]);
        for claim in claims_of(attacker) {
            if claim.contains(':') {
                attacker.forge("ns", &[&claim, "fe80::1"]);
                attacker.forge("na", &[&claim, "fe80::1", &claim]);
            } else {
                attacker.forge("arp", &["1", &claim, "198.18.255.254"]);
                attacker.forge("arp", &["2", &claim, &claim]);
            }
        }
    }
    settle();
    for attacker in x {
        let learnt: Vec<String> = neighbours(&attacker.host, &attacker.dev)
            .into_iter()
            .map(|(a, ..)| a)
            .collect();
        assert!(
            learnt.contains(&attacker.member.private_ip),
            "its own address is learnt: {learnt:?}"
        );
        for claim in claims_of(attacker) {
            assert!(
                !learnt.contains(&claim),
                "{claim} is not learnt at the attacker's device: {learnt:?}"
            );
        }
    }

    // 5. Router advertisements, redirects and DHCP server messages.
    for attacker in x {
        let (own4, own6) = (&attacker.member.private_ip, &attacker.member.ipv6);
        attacker.forge("ra", &[own6]);
        attacker.forge("redirect6", &[own6, "fe80::1", "fe80::66", &v1_6]);
        attacker.forge("redirect4", &[own4, "198.18.255.254", own4, &v1_4]);
        attacker.forge("udp", &[own4, "198.18.255.254", "67", "68", "X-DHCP"]);
        attacker.forge("udp", &[own4, &v1_4, "67", "68", "X-DHCP"]);
        attacker.forge("udp", &[own6, "fe80::1", "547", "546", "X-DHCP"]);
    }
    settle();
    let seen = from_attacker(&sniffers, &hosts, &x);
    assert!(seen.is_empty(), "the hosts heard no router: {seen:#?}");
    let routes = run(&["ip", "-n", &hosts[0], "-6", "route", "show", "table", "all"]);
    assert!(!routes.contains("2001:db8:66"), "{routes}");

    // The host's own traffic is untouched: it reaches the instances it carries, and their
    // answers (in their VPC's zone) come back.
    for side in x {
        for address in [&side.member.private_ip, &side.member.ipv6] {
            let out = Command::new("ip")
                .args(["netns", "exec", &side.host, "ping", "-c1", "-W2", address])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} reaches {address}: {}\n{}",
                side.host,
                String::from_utf8_lossy(&out.stdout),
                lab.tables()
            );
        }
    }

    // V's flows are as they were.
    frag(&v0, &v0_ip, &v1_4, "401", "V-TAIL-4", "both");
    settle();
    assert_eq!(listener.take(), ["V-HEAD-0V-TAIL-4"], "{}", lab.tables());

    // 6. A second device labelled as V1's interface isolates both, established flows
    // included, and V1's tracked connections go; once it is gone, V1 is reachable again.
    let mut flow = Connection::open(&v1.member.netns, &v0.member.netns, &v1_4, 80);
    assert!(flow.echo(), "{}", lab.tables());
    let dup = format!("skdup{}", std::process::id() % 100_000);
    let ip = |args: &[&str]| {
        let mut all = vec!["ip", "-n", v1.host.as_str()];
        all.extend(args);
        run(&all);
    };
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
    ip(&["link", "set", &dup, "alias", &v1.member.eni]);
    ip(&["link", "set", &dup, "up"]);
    let mut cut = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(200));
        let tracked = run(&[
            "ip",
            "netns",
            "exec",
            &v1.host,
            "conntrack",
            "-L",
            "-d",
            &v1_4,
        ]);
        if !tracked.contains("dport=80") {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "V1's tracked connections are deleted\n{}",
        lab.tables()
    );
    assert!(
        !flow.echo(),
        "an established flow into an isolated device stops"
    );
    ip(&["link", "del", &dup]);
    let v0_index = lab.members.iter().position(|m| m.id == v0.member.id);
    let v0_index = v0_index.unwrap();
    let mut back = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(200));
        if lab.probe(Some(v0_index), &v1_4, "tcp", 80) {
            back = true;
            break;
        }
    }
    assert!(back, "V1 is enforced again once its label is unique");
}

#[test]
fn a_hostile_instance_reaches_neither_the_host_nor_the_overlay_nor_another_vpc() {
    hostile('h', "linear");
}

#[test]
fn a_hostile_instance_reaches_neither_the_host_nor_the_overlay_nor_another_vpc_flat() {
    hostile('H', "flat");
}
