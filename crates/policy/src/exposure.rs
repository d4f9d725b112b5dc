//! Exposure: the exact set of inbound flows an instance accepts, computed by the engine.
//!
//! The instance's inbound space — protocol × destination port × source address — is cut at
//! every boundary any of its rules draws (port ranges, CIDR blocks, and the addresses of the
//! members of referenced groups and of its own groups, which the intra-group default reads).
//! Inside one cell every packet meets the same rules, so one probe per cell, judged by the
//! evaluator, decides the whole cell. Accepted cells are merged back into port ranges and
//! CIDR blocks. Source ports are taken as an ephemeral port (49152): rules that filter on the
//! source port are rare, and exposure is about who can open a connection.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Subnets};
use model::{ip_proto, Direction, InstanceId, NetworkType, NicType, Peer, Policy};

use crate::flow::{DecidedBy, Evaluator, Packet, StageQuery};
use crate::state::{PolicyError, State};

/// The source port probes use.
pub const PROBE_SOURCE_PORT: u16 = 49152;

/// Protocols probed: those rules can name, and one that stands for all others (ESP).
const PROTOCOLS: [u8; 6] = [
    ip_proto::TCP,
    ip_proto::UDP,
    ip_proto::ICMP,
    ip_proto::ICMPV6,
    ip_proto::GRE,
    50,
];

/// One accepted part of the inbound space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    /// IANA protocol number (50 stands for every protocol ECS cannot name).
    pub protocol: u8,
    /// Destination ports, inclusive (`0..=0` for protocols without ports).
    pub ports: (u16, u16),
    /// Source addresses, as CIDR blocks.
    pub sources: Vec<IpNet>,
    /// What accepts these flows (the first cell's decider when several agree).
    pub decided_by: DecidedBy,
}

/// A run of destination ports and the source-address ranges accepted on each of them (with
/// the decider of each range).
type PortCell = ((u16, u16), Vec<(u64, u64, DecidedBy)>);

fn key(a: Ipv4Addr) -> u64 {
    u64::from(u32::from(a))
}

/// Cuts of the IPv4 source space for an instance's ingress: rule CIDRs, member addresses.
fn address_cuts(state: &State, instance: &model::Instance) -> Vec<u64> {
    let mut cuts = BTreeSet::from([0u64]);
    let mut add_range = |lo: u64, hi: u64| {
        cuts.insert(lo);
        if hi < u64::from(u32::MAX) {
            cuts.insert(hi + 1);
        }
    };
    let mut groups_read: Vec<model::SecurityGroupId> = instance.security_groups.clone();
    for g in &instance.security_groups {
        let Ok(group) = state.group(g) else { continue };
        for (_, p) in group
            .rules()
            .filter(|(_, p)| p.direction == Direction::Ingress)
        {
            match &p.peer {
                Peer::Cidr(IpNet::V4(n)) => add_range(key(n.network()), key(n.broadcast())),
                Peer::Cidr(IpNet::V6(_)) => {}
                Peer::Group(r) => groups_read.push(r.id.clone()),
                Peer::PrefixList(l) => {
                    for n in state.prefix_list(l) {
                        if let IpNet::V4(n) = n {
                            add_range(key(n.network()), key(n.broadcast()));
                        }
                    }
                }
            }
        }
    }
    for g in &groups_read {
        let Ok(group) = state.group(g) else { continue };
        for m in &group.members {
            if let Ok(i) = state.instance(m) {
                let a = key(i.private_ip);
                add_range(a, a);
            }
        }
    }
    cuts.into_iter().collect()
}

fn port_cuts(state: &State, instance: &model::Instance) -> Vec<u16> {
    let mut cuts = BTreeSet::from([0u16, 1]);
    for g in &instance.security_groups {
        let Ok(group) = state.group(g) else { continue };
        for (_, p) in group
            .rules()
            .filter(|(_, p)| p.direction == Direction::Ingress)
        {
            if let Some(ports) = p.protocol.ports() {
                cuts.insert(ports.destination.start());
                if ports.destination.end() < u16::MAX {
                    cuts.insert(ports.destination.end() + 1);
                }
            }
        }
    }
    cuts.into_iter().collect()
}

/// Every inbound IPv4 flow `instance` accepts on its intranet interface (and, for a classic
/// instance with a public address, on its internet interface too, with `nic` = internet).
pub fn exposure(
    evaluator: &impl Evaluator,
    instance: &InstanceId,
    nic: NicType,
) -> Result<Vec<Exposed>, PolicyError> {
    let state = evaluator.state();
    let i = state.instance(instance)?;
    let (nic, local) = match (i.network(), nic) {
        (NetworkType::Classic, NicType::Internet) => match i.public_ip {
            Some(p) => (NicType::Internet, p),
            None => {
                return Err(PolicyError::NoAddress(
                    instance.clone(),
                    "public (internet) IPv4",
                ))
            }
        },
        _ => (NicType::Intranet, i.private_ip),
    };
    let addresses = address_cuts(state, i);
    let ports = port_cuts(state, i);
    let mut out: Vec<Exposed> = Vec::new();
    for protocol in PROTOCOLS {
        let port_cells: Vec<(u16, u16)> = if matches!(protocol, ip_proto::TCP | ip_proto::UDP) {
            ports
                .iter()
                .enumerate()
                .map(|(k, &lo)| (lo, ports.get(k + 1).map_or(u16::MAX, |next| next - 1)))
                .filter(|(lo, _)| *lo >= 1)
                .collect()
        } else {
            vec![(0, 0)]
        };
        // Per port cell, the accepted address ranges (adjacent ones with the same decider
        // merged); then adjacent port cells with the same ranges merged.
        let mut previous: Option<PortCell> = None;
        let flush = |cell: Option<PortCell>, out: &mut Vec<Exposed>| {
            let Some(((plo, phi), ranges)) = cell else {
                return;
            };
            for (lo, hi, decided_by) in ranges {
                let sources =
                    Ipv4Subnets::new(Ipv4Addr::from(lo as u32), Ipv4Addr::from(hi as u32), 0)
                        .map(IpNet::V4)
                        .collect();
                out.push(Exposed {
                    protocol,
                    ports: (plo, phi),
                    sources,
                    decided_by,
                });
            }
        };
        for (plo, phi) in port_cells {
            let mut accepted: Vec<(u64, u64, DecidedBy)> = Vec::new();
            for (k, &lo) in addresses.iter().enumerate() {
                let hi = addresses
                    .get(k + 1)
                    .map_or(u64::from(u32::MAX), |next| next - 1);
                let query = StageQuery {
                    instance,
                    direction: Direction::Ingress,
                    nic_type: nic,
                    packet: Packet {
                        peer: IpAddr::V4(Ipv4Addr::from(lo as u32)),
                        local: IpAddr::V4(local),
                        protocol,
                        source_port: if plo == 0 { 0 } else { PROBE_SOURCE_PORT },
                        destination_port: plo,
                    },
                };
                let d = evaluator.decide(&query)?;
                if d.verdict == Policy::Accept {
                    let decided_by: DecidedBy = d.decided_by.into();
                    match accepted.last_mut() {
                        Some(last) if last.1 + 1 == lo && last.2 == decided_by => last.1 = hi,
                        _ => accepted.push((lo, hi, decided_by)),
                    }
                }
            }
            match &mut previous {
                Some(((_, prev_hi), ranges))
                    if prev_hi.wrapping_add(1) == plo && *ranges == accepted =>
                {
                    *prev_hi = phi
                }
                _ => flush(previous.replace(((plo, phi), accepted)), &mut out),
            }
        }
        flush(previous, &mut out);
    }
    Ok(out)
}
