//! Property: the compiled evaluator answers every flow exactly as the reference evaluator
//! does (verdict, and the rule or default that decided each stage), on random policies and
//! after random incremental changes.
//!
//! Policies draw from small pools of addresses, ports and priorities so that rules overlap,
//! tie and shadow each other often; they mix group references (including self-references),
//! prefix lists, multi-group instances, basic and enterprise groups, classic-network
//! interfaces and IPv6. 10,000 cases by default; `PROPTEST_CASES` overrides.

use std::net::IpAddr;

use model::{
    Direction, GroupType, InnerAccessPolicy, Instance, NicType, Permission, PermissionFields,
    ProbeProtocol, SecurityGroup,
};
use policy::{
    Change, Endpoint, Engine, Evaluator, Flow, GroupPolicy, IpFamily, Packet, PortRangeList,
    PrefixList, Reference, Snapshot,
};
use proptest::prelude::*;

const V4: [&str; 6] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.5",
    "192.0.2.7",
    "203.0.113.1",
];
const V6: [&str; 4] = ["fd00::1", "fd00::2", "fd00::3", "2001:db8::9"];
const CIDR4: [&str; 6] = [
    "0.0.0.0/0",
    "10.0.0.0/29",
    "10.0.0.2/32",
    "10.0.0.4/30",
    "192.0.2.0/24",
    "10.0.0.0/8",
];
const CIDR6: [&str; 3] = ["::/0", "fd00::/126", "fd00::1/128"];
const PORTS: [&str; 5] = ["22/22", "20/30", "1/65535", "80/80", "1/1024"];
/// Port range lists a rule's ports may be instead of a range (`PORTS.len() + i` picks one):
/// overlapping entries, and an empty list that matches nothing.
const PORT_LISTS: [&[&str]; 2] = [&["22/22", "1000/2000", "20/30"], &[]];
const FLOW_PORTS: [u16; 6] = [22, 25, 80, 1000, 2000, 0];
const PROTOS: [&str; 6] = ["tcp", "udp", "icmp", "icmpv6", "all", "gre"];
const FLOW_PROTOS: [u8; 9] = [6, 6, 6, 17, 17, 1, 58, 47, 50];
const PRIORITIES: [&str; 4] = ["1", "2", "5", "100"];
const GROUPS: usize = 5;

fn group_id(i: usize) -> String {
    format!("sg-g{i}")
}

/// Raw choices from which a rule's wire fields are made; invalid combinations are skipped
/// (they would be rejected at the API).
#[derive(Debug, Clone)]
struct RuleSeed {
    group: usize,
    egress: bool,
    drop: bool,
    priority: usize,
    proto: usize,
    ports: usize,
    source_ports: Option<usize>,
    peer: (u8, usize),
    local: Option<(bool, usize)>,
    internet: bool,
}

fn rule_seed() -> impl Strategy<Value = RuleSeed> {
    (
        (
            0..GROUPS,
            any::<bool>(),
            any::<bool>(),
            0..PRIORITIES.len(),
            0..PROTOS.len(),
        ),
        (
            0..PORTS.len() + PORT_LISTS.len(),
            proptest::option::weighted(0.2, 0..PORTS.len()),
        ),
        (0u8..4, 0usize..8),
        proptest::option::weighted(0.2, (any::<bool>(), 0usize..8)),
        any::<bool>(),
    )
        .prop_map(
            |(
                (group, egress, drop, priority, proto),
                (ports, source_ports),
                peer,
                local,
                internet,
            )| {
                RuleSeed {
                    group,
                    egress,
                    drop,
                    priority,
                    proto,
                    ports,
                    source_ports,
                    peer,
                    local,
                    internet,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct World {
    classic: bool,
    enterprise: [bool; GROUPS],
    inner_drop: [bool; GROUPS],
    rules: Vec<RuleSeed>,
    /// (v4 address index, has v6, has public, groups)
    instances: Vec<(usize, bool, bool, Vec<usize>)>,
    flows: Vec<(usize, usize, usize, usize, usize, bool)>,
    changes: Vec<(u8, usize, usize, RuleSeed)>,
}

fn world() -> impl Strategy<Value = World> {
    (
        any::<bool>(),
        proptest::array::uniform5(proptest::bool::weighted(0.2)),
        proptest::array::uniform5(any::<bool>()),
        proptest::collection::vec(rule_seed(), 0..32),
        proptest::collection::vec(
            (
                0..V4.len(),
                any::<bool>(),
                proptest::bool::weighted(0.75),
                proptest::collection::vec(0..GROUPS, 1..4),
            ),
            1..6,
        ),
        proptest::collection::vec(
            (
                0usize..9,
                0usize..9,
                0..FLOW_PROTOS.len(),
                0..FLOW_PORTS.len(),
                0..FLOW_PORTS.len(),
                proptest::bool::weighted(0.25),
            ),
            24,
        ),
        proptest::collection::vec((0u8..7, 0usize..8, 0usize..GROUPS, rule_seed()), 0..8),
    )
        .prop_map(
            |(classic, enterprise, inner_drop, rules, instances, flows, changes)| World {
                classic,
                enterprise,
                inner_drop,
                rules,
                instances,
                flows,
                changes,
            },
        )
}

impl World {
    fn network(&self) -> model::NetworkType {
        if self.classic {
            model::NetworkType::Classic
        } else {
            model::NetworkType::Vpc
        }
    }

    fn permission(&self, seed: &RuleSeed, n: usize) -> Option<Permission> {
        let mut f = PermissionFields {
            policy: Some(if seed.drop { "drop" } else { "accept" }.into()),
            priority: Some(PRIORITIES[seed.priority].into()),
            ip_protocol: Some(PROTOS[seed.proto].into()),
            port_range: Some(
                if !["tcp", "udp"].contains(&PROTOS[seed.proto]) {
                    "-1/-1"
                } else {
                    PORTS.get(seed.ports).copied().unwrap_or("")
                }
                .into(),
            ),
            port_range_list_id: (seed.ports >= PORTS.len())
                .then(|| format!("prl-l{}", seed.ports - PORTS.len())),
            source_port_range: seed.source_ports.map(|p| PORTS[p].into()),
            nic_type: Some(
                if seed.internet {
                    "internet"
                } else {
                    "intranet"
                }
                .into(),
            ),
            ..Default::default()
        };
        let (kind, i) = seed.peer;
        let peer = match kind {
            0 => Some(CIDR4[i % CIDR4.len()].to_string()),
            1 => Some(CIDR6[i % CIDR6.len()].to_string()),
            _ => None,
        };
        let local = seed.local.map(|(v6, i)| {
            if v6 {
                CIDR6[i % CIDR6.len()]
            } else {
                CIDR4[i % CIDR4.len()]
            }
        });
        let v6 = |s: &str| s.contains(':');
        let ingress = !seed.egress;
        let set = |f: &mut PermissionFields, s: Option<String>, peer_side: bool| {
            let Some(s) = s else { return };
            let source_side = peer_side == ingress;
            match (source_side, v6(&s)) {
                (true, false) => f.source_cidr_ip = Some(s),
                (true, true) => f.ipv6_source_cidr_ip = Some(s),
                (false, false) => f.dest_cidr_ip = Some(s),
                (false, true) => f.ipv6_dest_cidr_ip = Some(s),
            }
        };
        set(&mut f, peer, true);
        set(&mut f, local.map(str::to_string), false);
        match kind {
            2 => f.group_id = Some(group_id(i % GROUPS)),
            3 => f.prefix_list_id = Some(format!("pl-l{}", i % 2)),
            _ => {}
        }
        let direction = if seed.egress {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let p = f
            .parse(
                format!("sgr-r{n}").parse().unwrap(),
                direction,
                self.network(),
            )
            .ok()?;
        // Enterprise groups take no group references (the API refuses them).
        let enterprise = self.enterprise[seed.group];
        (!(enterprise && matches!(p.peer, model::Peer::Group(_)))).then_some(p)
    }

    fn snapshot(&self) -> Snapshot {
        let vpc = (!self.classic).then(|| "vpc-1".parse().unwrap());
        let mut groups: Vec<GroupPolicy> = (0..GROUPS)
            .map(|i| GroupPolicy {
                group: SecurityGroup {
                    id: group_id(i).parse().unwrap(),
                    owner: model::AccountId::new(1),
                    group_type: if self.enterprise[i] {
                        GroupType::Enterprise
                    } else {
                        GroupType::Normal
                    },
                    vpc_id: vpc.clone(),
                    inner_access_policy: if self.inner_drop[i] {
                        InnerAccessPolicy::Drop
                    } else {
                        InnerAccessPolicy::Accept
                    },
                },
                permissions: vec![],
            })
            .collect();
        for (n, seed) in self.rules.iter().enumerate() {
            if let Some(p) = self.permission(seed, n) {
                groups[seed.group].permissions.push(p);
            }
        }
        let instances = self
            .instances
            .iter()
            .enumerate()
            .map(|(n, (ip, v6, public, gs))| {
                // Basic and enterprise groups never mix on one instance: keep the kind of
                // the first group.
                let kind = self.enterprise[gs[0]];
                let mut security_groups: Vec<model::SecurityGroupId> = vec![];
                for g in gs.iter().filter(|g| self.enterprise[**g] == kind) {
                    let id = group_id(*g).parse().unwrap();
                    if !security_groups.contains(&id) {
                        security_groups.push(id);
                    }
                }
                Instance {
                    id: format!("i-n{n}").parse().unwrap(),
                    attached_to: None,
                    owner: model::AccountId::new(1),
                    vpc_id: vpc.clone(),
                    private_ip: V4[*ip].parse().unwrap(),
                    // Every other VPC instance also has a secondary address, sometimes one
                    // another instance holds as its primary (overlapping VPCs do that).
                    secondary_ips: (!self.classic && n % 2 == 1)
                        .then(|| V4[(*ip + 1 + n % 5) % V4.len()].parse().unwrap())
                        .into_iter()
                        .collect(),
                    ipv6: (*v6 && !self.classic).then(|| V6[n % V6.len()].parse().unwrap()),
                    public_ip: (*public && self.classic)
                        .then(|| format!("198.51.100.{n}").parse().unwrap()),
                    security_groups,
                }
            })
            .collect();
        let prefix_lists = vec![
            PrefixList {
                id: "pl-l0".parse().unwrap(),
                cidrs: vec![
                    "10.0.0.2/31".parse().unwrap(),
                    "fd00::/127".parse().unwrap(),
                ],
            },
            PrefixList {
                id: "pl-l1".parse().unwrap(),
                cidrs: vec![],
            },
        ];
        let port_range_lists = PORT_LISTS
            .iter()
            .enumerate()
            .map(|(i, ranges)| PortRangeList {
                id: format!("prl-l{i}").parse().unwrap(),
                ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
            })
            .collect();
        Snapshot {
            groups,
            instances,
            prefix_lists,
            port_range_lists,
        }
    }

    fn endpoint(&self, i: usize, family: IpFamily) -> Endpoint {
        if i < self.instances.len() {
            Endpoint::Instance(format!("i-n{i}").parse().unwrap())
        } else if family == IpFamily::V6 {
            Endpoint::Address(V6[i % V6.len()].parse::<IpAddr>().unwrap())
        } else {
            Endpoint::Address(V4[i % V4.len()].parse::<IpAddr>().unwrap())
        }
    }

    fn flows(&self) -> Vec<Flow> {
        self.flows
            .iter()
            .map(|&(s, d, proto, sport, dport, internet)| {
                let protocol = FLOW_PROTOS[proto];
                let family = if (s + d) % 7 == 6 || protocol == 58 {
                    IpFamily::V6
                } else {
                    IpFamily::V4
                };
                let (source, mut destination) =
                    (self.endpoint(s, family), self.endpoint(d, family));
                if matches!(
                    (&source, &destination),
                    (Endpoint::Address(_), Endpoint::Address(_))
                ) {
                    destination = self.endpoint(d % self.instances.len(), family);
                }
                Flow {
                    family,
                    source,
                    destination,
                    protocol,
                    source_port: FLOW_PORTS[sport],
                    destination_port: FLOW_PORTS[dport],
                    nic_type: if internet {
                        NicType::Internet
                    } else {
                        NicType::Intranet
                    },
                }
            })
            .collect()
    }

    fn change(
        &self,
        (kind, a, g, seed): &(u8, usize, usize, RuleSeed),
        n: usize,
        current: &Snapshot,
    ) -> Option<Change> {
        let instance = || format!("i-n{}", a % self.instances.len()).parse().unwrap();
        let group = group_id(*g).parse().unwrap();
        Some(match kind {
            0 => Change::Join(instance(), group),
            1 => Change::Leave(instance(), group),
            2 => Change::AddPermission(
                group_id(seed.group).parse().unwrap(),
                self.permission(seed, 1000 + n)?,
            ),
            3 | 4 => {
                let rules: Vec<_> = current
                    .groups
                    .iter()
                    .flat_map(|g| g.permissions.iter().map(move |p| (g, p)))
                    .collect();
                let (g, p) = rules.get(a % rules.len().max(1))?;
                if *kind == 3 {
                    Change::RemovePermission(g.group.id.clone(), p.id.clone())
                } else {
                    let mut replaced = self.permission(seed, 0)?;
                    replaced.id = p.id.clone();
                    replaced.direction = p.direction;
                    Change::ReplacePermission(g.group.id.clone(), replaced)
                }
            }
            5 => Change::SetPortRangeList(PortRangeList {
                id: format!("prl-l{}", a % PORT_LISTS.len()).parse().unwrap(),
                ranges: PORTS[..a % PORTS.len()]
                    .iter()
                    .map(|r| r.parse().unwrap())
                    .collect(),
            }),
            _ => Change::SetInnerAccessPolicy(
                group,
                if a % 2 == 0 {
                    InnerAccessPolicy::Drop
                } else {
                    InnerAccessPolicy::Accept
                },
            ),
        })
    }
}

/// The proptest configuration: 10,000 cases (or `PROPTEST_CASES`), divided by `share` for
/// the costlier properties.
#[allow(clippy::disallowed_methods)] // The harness's knob, read by the test, not the library.
fn config(share: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    ProptestConfig {
        cases: cases / share,
        ..ProptestConfig::default()
    }
}

/// A probe packet at `local` built from random draws: a protocol of the pool (99 stands for
/// protocols no rule names), a peer from the address pool or anywhere, a port of the pool.
fn probe_packet(
    local: std::net::Ipv4Addr,
    addr: u32,
    proto: usize,
    pick: usize,
    port: u16,
) -> policy::Packet {
    let protocol = [6u8, 17, 1, 58, 47, 50, 99][proto];
    let peer: std::net::Ipv4Addr = match pick {
        0 => V4[addr as usize % V4.len()].parse().unwrap(),
        _ => addr.into(),
    };
    let has_ports = matches!(protocol, 6 | 17);
    policy::Packet {
        peer: IpAddr::V4(peer),
        local: IpAddr::V4(local),
        protocol,
        source_port: if has_ports {
            policy::exposure::PROBE_SOURCE_PORT
        } else {
            0
        },
        destination_port: if has_ports {
            [22, 25, 80, 1000, port, 65535][addr as usize % 6]
        } else {
            0
        },
    }
}

/// The exposure protocol class of a packet protocol (50 stands for every unnamed one).
/// The probe class of a packet's protocol, written out here as the oracle.
fn protocol_class(protocol: u8) -> ProbeProtocol {
    match protocol {
        6 => ProbeProtocol::Tcp,
        17 => ProbeProtocol::Udp,
        1 => ProbeProtocol::Icmp,
        58 => ProbeProtocol::Icmpv6,
        47 => ProbeProtocol::Gre,
        _ => ProbeProtocol::Other,
    }
}

fn assert_agree(
    reference: &Reference,
    engine: &Engine,
    flows: &[Flow],
) -> Result<(), TestCaseError> {
    for f in flows {
        let r = reference.verdict(f);
        prop_assert_eq!(r, engine.verdict(f), "flow {:?}", f);
    }
    assert_batches_agree(engine, flows)
}

/// Every stage's batch form judges packets as its one-by-one form does: the flows' ports
/// and protocols between the lab's addresses, some IPv6 among the IPv4 so that batches
/// both run whole and fall back.
fn assert_batches_agree(engine: &Engine, flows: &[Flow]) -> Result<(), TestCaseError> {
    let packets: Vec<Packet> = flows
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let (peer, local) = match f.family {
                IpFamily::V4 => (V4[k % V4.len()], V4[(k / 2) % V4.len()]),
                IpFamily::V6 => (V6[k % V6.len()], V6[(k / 2) % V6.len()]),
            };
            Packet {
                peer: peer.parse().unwrap(),
                local: local.parse().unwrap(),
                protocol: f.protocol,
                source_port: f.source_port,
                destination_port: f.destination_port,
            }
        })
        .collect();
    for i in 0..16 {
        let id: model::MemberId = format!("i-n{i}").parse().unwrap();
        for direction in [Direction::Ingress, Direction::Egress] {
            for nic in [NicType::Intranet, NicType::Internet] {
                let Ok(stage) = engine.stage(&id, direction, nic) else {
                    continue;
                };
                let mut all = Vec::new();
                stage.decide_all(&packets, &mut all).unwrap();
                prop_assert_eq!(all.len(), packets.len());
                for (p, d) in packets.iter().zip(&all) {
                    prop_assert_eq!(&stage.decide(p).unwrap(), d, "{} {:?}", id, p);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn compiled_and_reference_agree(w in world()) {
        let snapshot = w.snapshot();
        let mut reference = Reference::new(&snapshot).unwrap();
        let mut engine = Engine::new(&snapshot).unwrap();
        let flows = w.flows();
        assert_agree(&reference, &engine, &flows)?;
        for (n, c) in w.changes.iter().enumerate() {
            let current = reference.state().to_snapshot();
            let Some(change) = w.change(c, n, &current) else { continue };
            let expected = reference.apply(&change);
            prop_assert_eq!(&expected, &engine.apply(&change), "change {:?}", change);
            assert_agree(&reference, &engine, &flows)?;
        }
        // And a fresh compile of the final state agrees with the incrementally kept one.
        let fresh = Engine::new(&reference.state().to_snapshot()).unwrap();
        assert_agree(&reference, &fresh, &flows)?;
    }
}

proptest! {
    #![proptest_config(config(10))]

    /// Exposure is exact: a random inbound IPv4 packet is accepted by the reference evaluator
    /// if and only if it falls in one of the exposure's (protocol, ports, sources) entries.
    #[test]
    fn exposure_matches_brute_force(w in world(), probes in proptest::collection::vec((any::<u32>(), 0usize..7, 0u16..2048, 0usize..3), 40)) {
        let snapshot = w.snapshot();
        let reference = Reference::new(&snapshot).unwrap();
        let engine = Engine::new(&snapshot).unwrap();
        for i in &snapshot.instances {
            let exposed = policy::exposure::exposure(&engine, &i.id, NicType::Intranet).unwrap();
            for (addr, proto, port, pick) in &probes {
                let packet = probe_packet(i.private_ip, *addr, *proto, *pick, *port);
                let q = policy::StageQuery { instance: &i.id, direction: model::Direction::Ingress, nic_type: NicType::Intranet, packet };
                let accepted = reference.decide(&q).unwrap().verdict == model::Policy::Accept;
                let listed = exposed.iter().any(|e| {
                    e.protocol == protocol_class(packet.protocol)
                        && (e.ports.start..=e.ports.end).contains(&packet.destination_port)
                        && e.sources.iter().any(|n| n.contains(&packet.peer))
                });
                prop_assert_eq!(accepted, listed, "instance {} packet {:?}", i.id, q.packet);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(10))]

    /// A preview is exact: a random packet's verdict flips between the policy before and
    /// after a random change if and only if the preview lists its cell, with the new verdict.
    #[test]
    fn preview_matches_brute_force(w in world(), probes in proptest::collection::vec((any::<u32>(), 0usize..7, 0usize..3, any::<bool>()), 30)) {
        let before = w.snapshot();
        let mut reference = Reference::new(&before).unwrap();
        let was = Engine::new(&before).unwrap();
        let Some(change) = w.changes.first().and_then(|c| w.change(c, 0, &before)) else { return Ok(()) };
        if reference.apply(&change).is_err() {
            return Ok(());
        }
        let will = Engine::new(&reference.state().to_snapshot()).unwrap();
        let old_reference = Reference::new(&before).unwrap();
        for i in &before.instances {
            for direction in [model::Direction::Ingress, model::Direction::Egress] {
                let flips = policy::exposure::changes(&was, &will, &i.id, NicType::Intranet, direction).unwrap();
                for (addr, proto, pick, _) in &probes {
                    let packet = probe_packet(i.private_ip, *addr, *proto, *pick, 2000);
                    let q = policy::StageQuery { instance: &i.id, direction, nic_type: NicType::Intranet, packet };
                    let before_v = old_reference.decide(&q).unwrap().verdict;
                    let after_v = reference.decide(&q).unwrap().verdict;
                    let listed = flips.iter().find(|c| {
                        c.protocol == protocol_class(packet.protocol)
                            && (c.ports.start..=c.ports.end).contains(&packet.destination_port)
                            && c.peers.iter().any(|n| n.contains(&packet.peer))
                    });
                    match listed {
                        Some(c) => prop_assert!(before_v != after_v && c.allowed == (after_v == model::Policy::Accept), "{:?} {:?}", change, q.packet),
                        None => prop_assert_eq!(before_v, after_v, "unlisted flip: {:?} {:?}", change, q.packet),
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(10))]

    /// The class-level matrix answers every instance pair as a direct verdict does.
    #[test]
    fn reach_matrix_matches_every_pair(w in world()) {
        let snapshot = w.snapshot();
        let reference = Reference::new(&snapshot).unwrap();
        let engine = Engine::new(&snapshot).unwrap();
        let services = policy::reach::Service::defaults();
        let reach = policy::reach::reach(&engine, &services).unwrap();
        let class_of = |id: &model::MemberId| reach.classes.iter().position(|c| c.instances.contains(id)).unwrap();
        for a in &snapshot.instances {
            for b in &snapshot.instances {
                if a.id == b.id {
                    continue;
                }
                let allowed: Vec<usize> = reach.allowed(class_of(&a.id), class_of(&b.id)).collect();
                for (k, service) in services.iter().enumerate() {
                    let flow = Flow {
                        source: Endpoint::Instance(a.id.clone()),
                        destination: Endpoint::Instance(b.id.clone()),
                        protocol: service.protocol,
                        source_port: if service.port > 0 { policy::exposure::PROBE_SOURCE_PORT } else { 0 },
                        destination_port: service.port,
                        nic_type: NicType::Intranet,
                        family: IpFamily::V4,
                    };
                    let accepted = reference.verdict(&flow).unwrap().verdict == model::Policy::Accept;
                    prop_assert_eq!(accepted, allowed.contains(&k), "{} -> {} {}", a.id, b.id, service.name());
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(20))]

    /// Sharing an exposure between instances loses nothing: each instance's own exposure is
    /// the one of its set.
    #[test]
    fn fleet_exposure_matches_each_instance(w in world()) {
        let engine = Engine::new(&w.snapshot()).unwrap();
        for (instances, shared) in policy::exposure::fleet_exposure(&engine, NicType::Intranet).unwrap() {
            for i in &instances {
                prop_assert_eq!(&policy::exposure::exposure(&engine, i, NicType::Intranet).unwrap(), &shared, "{}", i);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(20))]

    /// An instance named as reaching an exposure entry completes the whole flow (its egress
    /// and the target's ingress) at the entry's first and last port; one with an address in
    /// the sources that is not named is stopped by its own egress somewhere in the range.
    #[test]
    fn reaching_instances_complete_the_flow(w in world()) {
        let snapshot = w.snapshot();
        let reference = Reference::new(&snapshot).unwrap();
        let engine = Engine::new(&snapshot).unwrap();
        for target in &snapshot.instances {
            for e in policy::exposure::exposure(&engine, &target.id, NicType::Intranet).unwrap() {
                let reaching = policy::exposure::reaching_instances(&engine, &target.id, &e).unwrap();
                for s in &snapshot.instances {
                    if s.id == target.id || !e.sources.iter().any(|n| n.contains(&IpAddr::V4(s.private_ip))) {
                        continue;
                    }
                    let verdict = |port: u16| {
                        let flow = Flow {
                            source: Endpoint::Instance(s.id.clone()),
                            destination: Endpoint::Instance(target.id.clone()),
                            protocol: e.protocol.number(),
                            source_port: policy::exposure::PROBE_SOURCE_PORT,
                            destination_port: port,
                            nic_type: NicType::Intranet,
                            family: IpFamily::V4,
                        };
                        reference.verdict(&flow).unwrap().verdict
                    };
                    // Ingress accepts the whole entry for this source, so the flow verdict
                    // is the source's egress.
                    let (first, last) = (verdict(e.ports.start), verdict(e.ports.end));
                    if reaching.contains(&s.id) {
                        prop_assert!(first == model::Policy::Accept && last == model::Policy::Accept, "{} -> {}", s.id, target.id);
                    } else if matches!(e.protocol, ProbeProtocol::Tcp | ProbeProtocol::Udp) {
                        let denied = (e.ports.start..=e.ports.end).step_by(1).any(|p| verdict(p) == model::Policy::Drop);
                        prop_assert!(denied, "{} not listed for {} but reaches every port", s.id, target.id);
                    } else {
                        prop_assert_eq!(first, model::Policy::Drop);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(10))]

    /// The policy document (CLI files, the agent feed) carries every snapshot exactly.
    #[test]
    fn documents_round_trip(w in world()) {
        let snapshot = w.snapshot();
        let text = policy::document::to_value(&snapshot).to_string();
        let back = policy::document::parse(&text).unwrap();
        prop_assert_eq!(snapshot, back);
    }
}

proptest! {
    #![proptest_config(config(10))]

    /// A host's share of the policy (what the agent feed carries) judges its instances
    /// exactly as the whole policy does.
    #[test]
    fn closure_keeps_local_verdicts(w in world(), pick in any::<u8>(), addr in any::<u32>(), proto in 0usize..7) {
        let snapshot = w.snapshot();
        let local: std::collections::BTreeSet<model::MemberId> = snapshot
            .instances
            .iter()
            .enumerate()
            .filter(|(n, _)| pick & (1 << (n % 8)) != 0)
            .map(|(_, i)| i.id.clone())
            .collect();
        let whole = Reference::new(&snapshot).unwrap();
        let part = Reference::new(&snapshot.closure(&local)).unwrap();
        for (n, id) in local.iter().enumerate() {
            let instance = whole.state().instance(id).unwrap();
            for pool_pick in 0..2 {
                let packet = probe_packet(instance.private_ip, addr.wrapping_add(n as u32 * 7919), proto, pool_pick, 1000);
                for direction in [Direction::Ingress, Direction::Egress] {
                    for nic_type in [NicType::Intranet, NicType::Internet] {
                        let q = policy::StageQuery { instance: id, direction, nic_type, packet };
                        prop_assert_eq!(whole.decide(&q).unwrap(), part.decide(&q).unwrap(), "{:?}", q);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(10))]

    /// The feed's deltas: a host holding its share at one state and applying the delta the
    /// server's digest makes holds, after every change of the world, the share a whole
    /// answer would give (the share itself moving as instances come, go and change groups).
    /// Two hosts of the same cut: one polls after every change, the other after every second
    /// (its delta spans two revisions); both through the region's changed items when the cut
    /// stayed, else through the whole pass.
    #[test]
    fn deltas_rebuild_every_share(w in world(), pick in any::<u8>()) {
        use policy::delta::{self, Digest, ItemKeys, Items, RegionHashes};
        let hasher = std::hash::RandomState::new();
        let mut reference = Reference::new(&w.snapshot()).unwrap();
        let local = |s: &Snapshot| -> std::collections::BTreeSet<model::MemberId> {
            s.instances
                .iter()
                .enumerate()
                .filter(|(n, _)| pick & (1 << (n % 8)) != 0)
                .map(|(_, i)| i.id.clone())
                .collect()
        };
        let interfaces = |l: &std::collections::BTreeSet<model::MemberId>| -> Vec<serde_json::Value> {
            l.iter().map(|m| serde_json::json!({"NetworkInterfaceId": format!("eni-{}", m.as_str())})).collect()
        };
        let first = reference.state().to_snapshot();
        let at = local(&first);
        let mut hashes = RegionHashes::new(&first, &hasher);
        let start = Items::of(&delta::whole(&first.share(&at), &interfaces(&at))).unwrap();
        let mut hosts = Vec::new();
        for every in [1usize, 2] {
            let mut digest = Digest::default();
            digest.update(&first.share(&at), &interfaces(&at), &hashes, &hasher);
            // (digest, items held, revision held, the region's changes since)
            hosts.push((every, digest, start.clone(), 0u64, ItemKeys::default()));
        }
        let (mut revision, mut incremental) = (0u64, 0usize);
        for (n, c) in w.changes.iter().enumerate() {
            let current = reference.state().to_snapshot();
            let Some(change) = w.change(c, n, &current) else { continue };
            if reference.apply(&change).is_err() {
                continue;
            }
            let now = reference.state().to_snapshot();
            hashes = RegionHashes::new(&now, &hasher).after(revision, &hashes);
            revision += 1;
            let at = local(&now);
            let share = now.share(&at);
            let cut = hashes.cut(&now, &at);
            prop_assert_eq!(&cut, &share.cut);
            let want = Items::of(&delta::whole(&share, &interfaces(&at))).unwrap();
            for (every, digest, held, held_at, since) in &mut hosts {
                let (_, step) = hashes.since().unwrap();
                for (all, new) in since.iter_mut().zip(step) {
                    all.extend(new.iter().cloned());
                }
                if revision % *every as u64 != 0 {
                    continue;
                }
                let changes = match digest.update_changed(&cut, &now, &hashes, since, &interfaces(&at), &hasher) {
                    Some(changes) => {
                        incremental += 1;
                        changes
                    }
                    None => digest.update(&share, &interfaces(&at), &hashes, &hasher),
                };
                let d = changes.to_value(*held_at, &now, &hashes, &cut, &interfaces(&at));
                held.apply(&d, *held_at).unwrap();
                *held_at = revision;
                *since = ItemKeys::default();
                prop_assert_eq!(&*held, &want, "after {:?}: delta {}", change, d);
                prop_assert_eq!(held.to_answer(), want.to_answer());
            }
        }
        let _ = incremental;
    }
}
