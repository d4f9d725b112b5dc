//! Property: the compiled evaluator answers every flow exactly as the reference evaluator
//! does (verdict, and the rule or default that decided each stage), on random policies and
//! after random incremental changes.
//!
//! Policies draw from small pools of addresses, ports and priorities so that rules overlap,
//! tie and shadow each other often; they mix group references (including self-references),
//! prefix lists, multi-group instances, basic and enterprise groups, classic-network
//! interfaces and IPv6. 10,000 cases by default; `PROPTEST_CASES` overrides.

use std::net::IpAddr;

use model::{Direction, NicType, ProbeProtocol};
use policy::{Endpoint, Engine, Evaluator, Flow, IpFamily, Packet, Reference, Snapshot};
use proptest::prelude::*;

#[path = "common/world.rs"]
mod world;
use world::*;

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

    /// An account's exposure hides another account's member addresses yet stays true: some
    /// instances of a random world belong to a second account; seen by the first account,
    /// (a) an address no other-account member holds is accepted if and only if a part lists
    /// it; (b) an other-account member's address that is accepted is listed by a part or
    /// by a part naming a group with no sources, and one that is not accepted is listed
    /// only by parts that except one of its groups; (c) no run of a part's sources starts or
    /// ends at an address only such members hold.
    #[test]
    fn exposure_seen_by_an_account_hides_and_stays_true(w in world(), theirs in proptest::collection::vec(any::<bool>(), 16), probes in proptest::collection::vec((any::<u32>(), 0usize..7, 0u16..2048, 0usize..3), 30)) {
        let mut snapshot = w.snapshot();
        let (mine, other) = (model::AccountId::new(1), model::AccountId::new(2));
        for (k, i) in snapshot.instances.iter_mut().enumerate() {
            if theirs[k % theirs.len()] {
                i.owner = other;
            }
        }
        let reference = Reference::new(&snapshot).unwrap();
        let engine = Engine::new(&snapshot).unwrap();
        let address_owners = |a: IpAddr| -> Vec<&model::Instance> {
            snapshot.instances.iter().filter(|i| i.intranet_addresses().any(|x| x == a)).collect()
        };
        for i in snapshot.instances.iter().filter(|i| i.owner == mine) {
            let seen = policy::exposure::Viewer::Account(mine);
            let exposed = policy::exposure::exposure_in(&engine, &i.id, NicType::Intranet, Direction::Ingress, seen).unwrap();
            // Addresses another account's members hold.
            let hidden = |a: IpAddr| address_owners(a).iter().any(|h| h.owner == other);
            let mut addresses: Vec<(u32, usize, u16, usize)> = probes.iter().map(|&(a, p, port, pick)| (a, p, port, pick)).collect();
            for o in snapshot.instances.iter().filter(|o| o.owner == other) {
                addresses.push((u32::from(o.private_ip), 0, 22, 1));
                addresses.push((u32::from(o.private_ip), 1, 80, 1));
            }
            for (addr, proto, port, pick) in addresses {
                let packet = probe_packet(i.private_ip, addr, proto, pick, port);
                let q = policy::StageQuery { instance: &i.id, direction: Direction::Ingress, nic_type: NicType::Intranet, packet };
                let accepted = reference.decide(&q).unwrap().verdict == model::Policy::Accept;
                let matches = |e: &&policy::exposure::Exposed| {
                    e.protocol == protocol_class(packet.protocol)
                        && (e.ports.start..=e.ports.end).contains(&packet.destination_port)
                };
                let in_part = exposed.iter().filter(matches).find(|e| e.sources.iter().any(|n| n.contains(&packet.peer)));
                if !hidden(packet.peer) {
                    prop_assert_eq!(accepted, in_part.is_some(), "instance {} packet {:?}", i.id, q.packet);
                    continue;
                }
                let groups: Vec<&model::SecurityGroupId> = address_owners(packet.peer).iter().flat_map(|h| &h.security_groups).collect();
                let by_group = exposed.iter().filter(matches).any(|e| e.sources.is_empty());
                if accepted {
                    prop_assert!(in_part.is_some() || by_group, "instance {} packet {:?}", i.id, q.packet);
                } else if let Some(e) = in_part {
                    prop_assert!(e.except.iter().any(|g| groups.contains(&g)), "instance {} packet {:?}: {:?}", i.id, q.packet, e);
                }
            }
            for e in &exposed {
                let mut runs: Vec<(u64, u64)> = Vec::new();
                let mut blocks: Vec<(u64, u64)> = e.sources.iter().filter_map(|n| match n {
                    ipnet::IpNet::V4(n) => Some((u64::from(u32::from(n.network())), u64::from(u32::from(n.broadcast())))),
                    _ => None,
                }).collect();
                blocks.sort();
                for (lo, hi) in blocks {
                    match runs.last_mut() {
                        Some(last) if last.1 + 1 == lo => last.1 = hi,
                        _ => runs.push((lo, hi)),
                    }
                }
                for (lo, hi) in runs {
                    for edge in [lo, hi + 1] {
                        if edge <= u64::from(u32::MAX) {
                            let a = IpAddr::V4(std::net::Ipv4Addr::from(edge as u32));
                            prop_assert!(!hidden(a) || edge_is_drawn(&snapshot, i, a), "instance {}: {:?} cut at {}", i.id, e, a);
                        }
                    }
                }
            }
        }
    }
}

/// Whether something the instance's account may see draws a block edge at `a`: its own
/// rules (then the account named it), or an address of its own members (at it or just
/// before it).
fn edge_is_drawn(snapshot: &Snapshot, i: &model::Instance, a: IpAddr) -> bool {
    let IpAddr::V4(a) = a else { return false };
    let a = u64::from(u32::from(a));
    let own = snapshot
        .instances
        .iter()
        .filter(|o| o.owner == i.owner)
        .flat_map(|o| o.intranet_addresses());
    if own
        .filter_map(|v| match v {
            IpAddr::V4(v) => Some(u64::from(u32::from(v))),
            _ => None,
        })
        .any(|v| v == a || v + 1 == a)
    {
        return true;
    }
    let lists: std::collections::HashMap<_, _> = snapshot
        .prefix_lists
        .iter()
        .map(|l| (&l.id, &l.cidrs))
        .collect();
    snapshot
        .groups
        .iter()
        .filter(|g| i.security_groups.contains(&g.group.id))
        .flat_map(|g| g.permissions.iter())
        .flat_map(|p| match &p.peer {
            model::Peer::Cidr(n) => vec![*n],
            model::Peer::PrefixList(l) => lists.get(l).map(|c| c.to_vec()).unwrap_or_default(),
            model::Peer::Group(_) => vec![],
        })
        .any(|n| match n {
            ipnet::IpNet::V4(n) => {
                let (lo, hi) = (
                    u64::from(u32::from(n.network())),
                    u64::from(u32::from(n.broadcast())),
                );
                a == lo || a == hi + 1
            }
            _ => false,
        })
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
        let start = Items::of(delta::whole(&first.share(&at), &interfaces(&at)).to_string().as_bytes()).unwrap();
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
            // Hashing only the items that changed, the others moved to their new places,
            // gives the hashes of hashing all.
            let mut dirty = delta::Dirty::default();
            fn differ<T: PartialEq>(a: &[T], b: &[T], key: impl Fn(&T) -> String, out: &mut std::collections::HashSet<String>) {
                for x in a.iter().chain(b) {
                    let k = key(x);
                    if a.iter().find(|y| key(y) == k) != b.iter().find(|y| key(y) == k) {
                        out.insert(k);
                    }
                }
            }
            differ(&current.groups, &now.groups, |g| g.group.id.to_string(), &mut dirty.groups);
            differ(&current.instances, &now.instances, |i| i.id.to_string(), &mut dirty.members);
            differ(&current.prefix_lists, &now.prefix_lists, |l| l.id.to_string(), &mut dirty.prefix_lists);
            differ(&current.port_range_lists, &now.port_range_lists, |l| l.id.to_string(), &mut dirty.port_range_lists);
            prop_assert_eq!(
                RegionHashes::new(&current, &hasher).refreshed(&now, &dirty, &hasher),
                RegionHashes::new(&now, &hasher)
            );
            hashes = RegionHashes::new(&now, &hasher).after(revision, &hashes);
            revision += 1;
            let at = local(&now);
            let share = now.share(&at);
            let cut = hashes.cut(&now, &at);
            prop_assert_eq!(&cut, &share.cut);
            let want = Items::of(delta::whole(&share, &interfaces(&at)).to_string().as_bytes()).unwrap();
            // The whole answer written from the region's item texts is the same document,
            // also the second time (trimmed members then come from the texts' cache).
            let texts = delta::Texts::new(&now);
            for _ in 0..2 {
                let mut text = String::from("{");
                texts.write_whole(&mut text, &now, &cut, &interfaces(&at));
                text.push('}');
                prop_assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                    delta::whole(&share, &interfaces(&at))
                );
            }
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
                held.apply(delta::Delta::parse(&d.to_string()).unwrap(), *held_at).unwrap();
                *held_at = revision;
                *since = ItemKeys::default();
                prop_assert_eq!(&*held, &want, "after {:?}: delta {}", change, d);
                prop_assert_eq!(held.to_answer(), want.to_answer());
            }
        }
        let _ = incremental;
    }
}
