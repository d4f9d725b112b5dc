//! Property: a chain rendered flat judges every packet as the engine's reference evaluator
//! judges that stage, on random policies (the engine's agreement worlds), and a flat
//! ruleset re-rendered after random changes while reusing the previous one equals the one
//! rendered afresh.
//!
//! The flat chains are judged here by an interpreter of the rendered text (the statements
//! and map elements nft is given), so what is checked is what the kernel is asked to hold;
//! the lab's differential test then checks the kernel on real packets.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use model::{Direction, NicType, Policy};
use nft::{render_as, render_reusing, Attachment, Rendering, Ruleset, Verdict};
use policy::{Evaluator, Packet, Reference, StageQuery, State};
use proptest::prelude::*;

#[path = "../../policy/tests/common/world.rs"]
mod world;
use world::*;

fn cases() -> u32 {
    #[allow(clippy::disallowed_methods)] // the harness's knob
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    cases / 25
}

/// An inclusive range parsed from one field of a map key.
fn field(text: &str, v6: bool) -> (u128, u128) {
    let addr = |s: &str| -> u128 {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => u32::from(a).into(),
            IpAddr::V6(a) => a.into(),
        }
    };
    if text.contains(['.', ':']) {
        if let Some((a, len)) = text.split_once('/') {
            let bits = if v6 { 128 } else { 32 };
            let len: u32 = len.parse().unwrap();
            let lo = addr(a);
            let span = if len == 0 {
                if v6 {
                    u128::MAX
                } else {
                    u32::MAX.into()
                }
            } else {
                (1u128 << (bits - len)) - 1
            };
            return (lo, lo + span);
        }
        if let Some((a, b)) = text.split_once('-') {
            return (addr(a), addr(b));
        }
        let a = addr(text);
        return (a, a);
    }
    match text.split_once('-') {
        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
        None => {
            let n = text.parse().unwrap();
            (n, n)
        }
    }
}

/// A map's elements: inclusive range → verdict.
type Elements<'a> = Vec<((u128, u128), &'a str)>;

/// Every map's elements parsed into ranges, once per ruleset.
struct Maps<'a>(HashMap<&'a str, Elements<'a>>);

impl<'a> Maps<'a> {
    fn of(ruleset: &'a Ruleset) -> Maps<'a> {
        Maps(
            ruleset
                .maps
                .iter()
                .map(|(name, map)| {
                    let v6 = map.declaration.contains("ipv6");
                    let elements = map
                        .elements
                        .iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "ipv4" | "ipv6"))
                        .map(|(k, v)| (field(k, v6), v.as_str()))
                        .collect();
                    (name.as_str(), elements)
                })
                .collect(),
        )
    }

    /// The verdict of a lookup of `value` in `map`, when an element matches.
    fn lookup(&self, map: &str, value: u128) -> Option<&'a str> {
        let mut found = None;
        for &((lo, hi), v) in &self.0[map] {
            if lo <= value && value <= hi {
                assert!(found.is_none(), "two elements of {map} hold {value}");
                found = Some(v);
            }
        }
        found
    }
}

/// Judges a packet by a flat chain's statements, as nft would: `true` for accept/return.
fn judge(ruleset: &Ruleset, maps: &Maps<'_>, chain: &str, p: &Packet) -> bool {
    let v6 = p.peer.is_ipv6();
    let num = |a: IpAddr| -> u128 {
        match a {
            IpAddr::V4(a) => u32::from(a).into(),
            IpAddr::V6(a) => a.into(),
        }
    };
    for rule in ruleset.chains[chain].iter() {
        let text = rule.text.as_str();
        let verdict = match text.split_once(" vmap @") {
            None => Some(text),
            Some(("meta nfproto", map)) => ruleset.maps[map]
                .elements
                .get(if v6 { "ipv6" } else { "ipv4" })
                .map(String::as_str),
            Some((expression, map)) => {
                let (peer, local) = (num(p.peer), num(p.local));
                // The chain's direction decides which address is the packet's source.
                let ingress = chain.starts_with("in_");
                let (saddr, daddr) = if ingress {
                    (peer, local)
                } else {
                    (local, peer)
                };
                let value: u128 = match expression {
                    "meta l4proto" => p.protocol.into(),
                    "th dport" | "th sport" => {
                        assert!(
                            matches!(p.protocol, 6 | 17),
                            "{chain}: a port read for protocol {}",
                            p.protocol
                        );
                        if expression == "th dport" {
                            p.destination_port.into()
                        } else {
                            p.source_port.into()
                        }
                    }
                    "ip saddr" | "ip daddr" if v6 => continue,
                    "ip6 saddr" | "ip6 daddr" if !v6 => continue,
                    "ip saddr" | "ip6 saddr" => saddr,
                    "ip daddr" | "ip6 daddr" => daddr,
                    other => panic!("unexpected expression {other}"),
                };
                maps.lookup(map, value)
            }
        };
        match verdict {
            None => continue,
            Some("drop") => return false,
            Some("accept") | Some("return") => return true,
            Some(goto) => {
                let target = goto.strip_prefix("goto ").expect("a goto");
                return judge(ruleset, maps, target, p);
            }
        }
    }
    panic!("chain {chain} ends without a verdict")
}

/// One attachment per instance and interface type it has.
fn attachments(state: &State) -> Vec<Attachment> {
    let mut out = Vec::new();
    for (k, i) in state.instances().enumerate() {
        out.push(Attachment {
            instance: i.id.clone(),
            nic_type: NicType::Intranet,
            interface: format!("vi{k}"),
        });
        if i.public_ip.is_some() {
            out.push(Attachment {
                instance: i.id.clone(),
                nic_type: NicType::Internet,
                interface: format!("vp{k}"),
            });
        }
    }
    out
}

fn packets(draws: &[(u32, usize, usize, usize)], local: IpAddr) -> Vec<Packet> {
    draws
        .iter()
        .map(|&(addr, pick, proto, port)| {
            let v6 = local.is_ipv6();
            let peer: IpAddr = if v6 {
                V6[addr as usize % V6.len()].parse().unwrap()
            } else if pick == 0 {
                V4[addr as usize % V4.len()].parse().unwrap()
            } else {
                IpAddr::V4(addr.into())
            };
            let protocol = [6u8, 17, 1, 58, 47, 50][proto % 6];
            let ports = [22u16, 25, 80, 1000, 2000, 0, 1024, 65535];
            Packet {
                peer,
                local,
                protocol,
                source_port: ports[(port / 8) % 8],
                destination_port: ports[port % 8],
            }
        })
        .collect()
}

fn check(
    reference: &Reference,
    ruleset: &Ruleset,
    atts: &[Attachment],
    draws: &[(u32, usize, usize, usize)],
) -> Result<(), TestCaseError> {
    let state = reference.state();
    let maps = Maps::of(ruleset);
    for a in atts {
        let Ok(i) = state.instance(&a.instance) else {
            continue;
        };
        let device = format!("\"{}\"", a.interface);
        let mut locals: Vec<IpAddr> = match a.nic_type {
            NicType::Intranet => i.intranet_addresses().collect(),
            NicType::Internet => i.public_ip.into_iter().map(IpAddr::V4).collect(),
        };
        locals.push("10.0.0.3".parse().unwrap());
        for (direction, dispatch) in [
            (Direction::Egress, &ruleset.egress),
            (Direction::Ingress, &ruleset.ingress),
        ] {
            let Verdict::Jump(chain) = &dispatch[&device] else {
                return Err(TestCaseError::fail(format!("{device} failed closed")));
            };
            for &local in &locals {
                for p in packets(draws, local) {
                    let query = StageQuery {
                        instance: &a.instance,
                        direction,
                        nic_type: a.nic_type,
                        packet: p,
                    };
                    let want = reference.decide(&query).unwrap().verdict == Policy::Accept;
                    let got = judge(ruleset, &maps, chain, &p);
                    prop_assert_eq!(
                        got,
                        want,
                        "{:?} {} {:?}\n{}",
                        direction,
                        chain,
                        p,
                        ruleset.full_script()
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn flat_chains_judge_as_the_engine(
        w in world(),
        draws in proptest::collection::vec((any::<u32>(), 0usize..3, 0usize..6, 0usize..64), 24),
    ) {
        let snapshot = w.snapshot();
        let mut reference = Reference::new(&snapshot).unwrap();
        let atts = attachments(reference.state());
        let mut ruleset = render_as(reference.state(), &atts, Rendering::Flat);
        check(&reference, &ruleset, &atts, &draws)?;
        for (n, c) in w.changes.iter().enumerate() {
            let current = reference.state().to_snapshot();
            let Some(change) = w.change(c, n, &current) else { continue };
            let before: BTreeMap<_, _> = current.groups.iter().map(|g| (g.group.id.clone(), g.clone())).collect();
            if reference.apply(&change).is_err() {
                continue;
            }
            let after = reference.state().to_snapshot();
            let now: BTreeMap<_, _> = after.groups.iter().map(|g| (g.group.id.clone(), g.clone())).collect();
            let same_rules = |g: &model::SecurityGroupId| match (before.get(g), now.get(g)) {
                (Some(a), Some(b)) => a.group == b.group && a.permissions == b.permissions,
                _ => false,
            };
            let members = |s: &policy::Snapshot, g: &model::SecurityGroupId| -> Vec<model::Instance> {
                s.instances.iter().filter(|i| i.security_groups.contains(g)).cloned().collect()
            };
            let same_members = |g: &model::SecurityGroupId| members(&current, g) == members(&after, g);
            let reused = render_reusing(reference.state(), &atts, Rendering::Flat, &ruleset, same_rules, same_members);
            let fresh = render_as(reference.state(), &atts, Rendering::Flat);
            prop_assert_eq!(&reused, &fresh, "after {:?}", change);
            ruleset = fresh;
            check(&reference, &ruleset, &atts, &draws)?;
        }
    }
}
