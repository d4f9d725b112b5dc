//! Exposure and change preview: the exact set of flows an instance accepts in one direction,
//! and exactly which flows a change would allow or deny, computed by the engine.
//!
//! An instance's space in one direction — protocol × destination port × peer address — is cut
//! at every boundary any of its rules draws (port ranges, CIDR blocks, prefix-list entries,
//! and the addresses of the members of referenced groups and of its own groups, which the
//! intra-group default reads). Inside one cell every packet meets the same rules, so one
//! probe per cell, judged by an evaluator, decides the whole cell. Cells are merged back into
//! port ranges and CIDR blocks. A preview cuts the space at the boundaries of both policies
//! and reports the cells whose verdict differs. Source ports are taken as an ephemeral port
//! (49152): rules that filter on the source port are rare, and exposure is about who can
//! open a connection. IPv4 only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Subnets};
use model::{
    Direction, MemberId, NetworkType, NicType, Peer, Policy, PortSpan, ProbeProtocol,
    SecurityGroupId,
};

use crate::flow::{DecidedBy, Evaluator, Packet, StageQuery};
use crate::state::{PolicyError, State};

/// The source port probes use.
pub const PROBE_SOURCE_PORT: u16 = model::FlowPorts::DEFAULT_SOURCE_PORT;

/// One accepted part of an instance's space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    /// The protocol class.
    pub protocol: ProbeProtocol,
    /// Destination ports ([`PortSpan::NONE`] for protocols without ports; TCP and UDP cover
    /// port 0 too, which only rules for every port and the defaults accept).
    pub ports: PortSpan,
    /// Peer addresses (sources of inbound flows, destinations of outbound ones).
    pub sources: Vec<IpNet>,
    /// What accepts these flows.
    pub decided_by: DecidedBy,
    /// Groups of another account whose members (addresses not shown to a [`Viewer::Account`])
    /// inside `sources` are not decided as this part says: their flows are the parts that
    /// name those groups' rules, with no sources.
    pub except: Vec<SecurityGroupId>,
}

/// One part of an instance's space whose verdict a change flips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowChange {
    /// Ingress (flows to the instance) or egress (flows from it).
    pub direction: Direction,
    /// `true`: allowed after the change, denied before; `false`: the reverse.
    pub allowed: bool,
    /// The protocol class.
    pub protocol: ProbeProtocol,
    /// Destination ports ([`PortSpan::NONE`] for protocols without ports).
    pub ports: PortSpan,
    /// Peer addresses (none when the peers are `peer_groups`' members).
    pub peers: Vec<IpNet>,
    /// Groups of another account whose members (addresses not shown to a
    /// [`Viewer::Account`]) are the peers whose flows flip.
    pub peer_groups: Vec<SecurityGroupId>,
    /// Groups of another account whose members inside `peers` do not flip as this part
    /// says (their flips are the parts naming those groups).
    pub except: Vec<SecurityGroupId>,
}

/// Whose answer it is, which decides which peers' addresses it may draw on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Viewer {
    /// The operator's: every address (the CLI over a policy file).
    #[default]
    Operator,
    /// An account's: the address of a member of another account's group (which its rules
    /// may name across accounts, as ECS allows) is never a cut, so no part's edge falls at
    /// one. Such a member whose flows differ from the block around it is answered by its
    /// group's name instead (`except`, `peer_groups`): an answer says that a member of the
    /// group lies somewhere in a part's sources, never where. (A block the account's own
    /// rule draws around exactly such an address is judged at the address: the account
    /// named it.)
    Account(model::AccountId),
}

fn key(a: Ipv4Addr) -> u64 {
    u64::from(u32::from(a))
}

const LAST_ADDRESS: u64 = u32::MAX as u64;

/// Where the space of `instance` in `direction` is cut, over the given states.
struct Cuts {
    ports: Vec<u16>,
    addresses: Vec<u64>,
    /// Addresses the viewer may not see (members of another account's groups), with the
    /// groups read that hold them: not cuts.
    hidden: BTreeMap<u64, BTreeSet<SecurityGroupId>>,
}

fn cuts(states: &[&State], instance: &MemberId, direction: Direction, viewer: Viewer) -> Cuts {
    let mut hidden: BTreeMap<u64, BTreeSet<SecurityGroupId>> = BTreeMap::new();
    let mut shown: BTreeSet<u64> = BTreeSet::new();
    let mut addresses = BTreeSet::from([0u64]);
    let mut ports = BTreeSet::from([0u16, 1]);
    let range = |set: &mut BTreeSet<u64>, lo: u64, hi: u64| {
        set.insert(lo);
        if hi < LAST_ADDRESS {
            set.insert(hi + 1);
        }
    };
    for state in states {
        let Ok(i) = state.instance(instance) else {
            continue;
        };
        let mut groups_read = i.security_groups.clone();
        for g in &i.security_groups {
            let Ok(group) = state.group(g) else { continue };
            for (_, p) in group.rules().filter(|(_, p)| p.direction == direction) {
                for r in state.destination_ports(p).unwrap_or_default() {
                    ports.insert(r.start());
                    if r.end() < u16::MAX {
                        ports.insert(r.end() + 1);
                    }
                }
                let nets: Vec<IpNet> = match &p.peer {
                    Peer::Cidr(n) => vec![*n],
                    Peer::Group(r) => {
                        groups_read.push(r.id.clone());
                        vec![]
                    }
                    Peer::PrefixList(l) => state.prefix_list(l).to_vec(),
                };
                for n in nets {
                    if let IpNet::V4(n) = n {
                        range(&mut addresses, key(n.network()), key(n.broadcast()));
                    }
                }
            }
        }
        for g in &groups_read {
            let Ok(group) = state.group(g) else { continue };
            for m in &group.members {
                if let Ok(member) = state.instance(m) {
                    let foreign = matches!(viewer, Viewer::Account(v) if member.owner != v);
                    for ip in member.intranet_v4() {
                        let a = key(ip);
                        if foreign {
                            hidden.entry(a).or_default().insert(g.clone());
                        } else {
                            shown.insert(a);
                            range(&mut addresses, a, a);
                        }
                    }
                }
            }
        }
    }
    // An address the viewer's own members hold too is the viewer's to see.
    hidden.retain(|a, _| !shown.contains(a));
    Cuts {
        ports: ports.into_iter().collect(),
        addresses: addresses.into_iter().collect(),
        hidden,
    }
}

impl Cuts {
    /// The port cells of `protocol` (one, without ports, for protocols that have none).
    fn port_cells(&self, protocol: ProbeProtocol) -> Vec<PortSpan> {
        if !protocol.has_ports() {
            return vec![PortSpan::NONE];
        }
        (self.ports.iter().enumerate())
            .map(|(k, &start)| PortSpan {
                start,
                end: self.ports.get(k + 1).map_or(u16::MAX, |next| next - 1),
            })
            .collect()
    }

    /// The address cell holding `a`.
    fn cell(&self, a: u64) -> (u64, u64) {
        let k = self.addresses.partition_point(|&c| c <= a) - 1;
        let hi = self
            .addresses
            .get(k + 1)
            .map_or(LAST_ADDRESS, |next| next - 1);
        (self.addresses[k], hi)
    }

    /// Where the cell `lo..=hi` is probed: its first address the viewer may see (its
    /// first when it holds none).
    fn probe_point(&self, lo: u64, hi: u64) -> u64 {
        let mut at = lo;
        for &h in self.hidden.range(lo..=hi).map(|(h, _)| h) {
            if h != at {
                break;
            }
            at += 1;
        }
        if at > hi {
            lo
        } else {
            at
        }
    }

    /// The hidden addresses whose label differs from their cell's, per port cell.
    fn deviations<L: PartialEq>(
        &self,
        mut label: impl FnMut(ProbeProtocol, u16, Ipv4Addr) -> Result<Option<L>, PolicyError>,
    ) -> Result<Vec<Deviation<L>>, PolicyError> {
        let mut out = Vec::new();
        for &a in self.hidden.keys() {
            let (lo, hi) = self.cell(a);
            let point = self.probe_point(lo, hi);
            if point == a {
                continue;
            }
            for protocol in ProbeProtocol::ALL {
                for span in self.port_cells(protocol) {
                    let own = label(protocol, span.start, Ipv4Addr::from(a as u32))?;
                    let cell = label(protocol, span.start, Ipv4Addr::from(point as u32))?;
                    if own != cell {
                        out.push(Deviation {
                            protocol,
                            ports: span,
                            address: a,
                            own,
                            cell,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The hidden groups of the deviations, `which` of them, inside a part.
    fn except<L>(
        &self,
        deviations: &[Deviation<L>],
        part: (ProbeProtocol, PortSpan, u64, u64),
    ) -> Vec<SecurityGroupId> {
        let (protocol, ports, lo, hi) = part;
        let groups: BTreeSet<&SecurityGroupId> = deviations
            .iter()
            .filter(|d| {
                d.protocol == protocol
                    && ports.contains(d.ports.start)
                    && (lo..=hi).contains(&d.address)
                    && d.cell.is_some()
            })
            .flat_map(|d| &self.hidden[&d.address])
            .collect();
        groups.into_iter().cloned().collect()
    }
}

/// A hidden address, in one port cell, whose label differs from its address cell's.
struct Deviation<L> {
    protocol: ProbeProtocol,
    ports: PortSpan,
    address: u64,
    /// Its own label.
    own: Option<L>,
    /// Its cell's (what the part holding it says).
    cell: Option<L>,
}

/// Port spans merged where adjacent, per key (sorted by key, then port).
fn merge_spans<K: Ord + Clone>(mut parts: Vec<(K, PortSpan)>) -> Vec<(K, PortSpan)> {
    parts.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.start.cmp(&b.1.start)));
    parts.dedup();
    let mut out: Vec<(K, PortSpan)> = Vec::new();
    for (k, span) in parts {
        match out.last_mut() {
            Some((last, prev)) if *last == k && prev.end.wrapping_add(1) == span.start => {
                prev.end = span.end
            }
            _ => out.push((k, span)),
        }
    }
    out
}

/// Runs of ports, each with the labelled address ranges found on it.
type Scan<L> = Vec<(ProbeProtocol, PortSpan, Vec<(u64, u64, L)>)>;

/// Probes every cell, labels it with `label` (`None` = not reported), merges adjacent
/// addresses with equal labels, then adjacent port runs with equal address ranges.
fn scan<L: Clone + PartialEq>(
    cuts: &Cuts,
    mut label: impl FnMut(ProbeProtocol, u16, Ipv4Addr) -> Result<Option<L>, PolicyError>,
) -> Result<Scan<L>, PolicyError> {
    let mut out: Scan<L> = Vec::new();
    for protocol in ProbeProtocol::ALL {
        let port_cells = cuts.port_cells(protocol);
        let first = out.len();
        for span in port_cells {
            let mut ranges: Vec<(u64, u64, L)> = Vec::new();
            for (k, &lo) in cuts.addresses.iter().enumerate() {
                let hi = cuts
                    .addresses
                    .get(k + 1)
                    .map_or(LAST_ADDRESS, |next| next - 1);
                let at = cuts.probe_point(lo, hi);
                if let Some(l) = label(protocol, span.start, Ipv4Addr::from(at as u32))? {
                    match ranges.last_mut() {
                        Some(last) if last.1 + 1 == lo && last.2 == l => last.1 = hi,
                        _ => ranges.push((lo, hi, l)),
                    }
                }
            }
            match out[first..].last_mut() {
                Some((_, prev_span, prev))
                    if prev_span.end.wrapping_add(1) == span.start && *prev == ranges =>
                {
                    prev_span.end = span.end
                }
                _ => out.push((protocol, span, ranges)),
            }
        }
    }
    Ok(out)
}

fn blocks(lo: u64, hi: u64) -> Vec<IpNet> {
    Ipv4Subnets::new(Ipv4Addr::from(lo as u32), Ipv4Addr::from(hi as u32), 0)
        .map(IpNet::V4)
        .collect()
}

/// The stage query of a probe packet, seen from the instance.
fn probe<'a>(
    instance: &'a MemberId,
    direction: Direction,
    nic: NicType,
    local: Ipv4Addr,
    protocol: ProbeProtocol,
    port: u16,
    peer: Ipv4Addr,
) -> StageQuery<'a> {
    StageQuery {
        instance,
        direction,
        nic_type: nic,
        packet: Packet {
            peer: IpAddr::V4(peer),
            local: IpAddr::V4(local),
            protocol: protocol.number(),
            source_port: if protocol.has_ports() {
                PROBE_SOURCE_PORT
            } else {
                0
            },
            destination_port: port,
        },
    }
}

/// The interface and local address of an instance for `nic`.
fn local_address(
    state: &State,
    instance: &MemberId,
    nic: NicType,
) -> Result<(NicType, Ipv4Addr), PolicyError> {
    let i = state.instance(instance)?;
    match (i.network(), nic) {
        (NetworkType::Classic, NicType::Internet) => i
            .public_ip
            .map(|p| (NicType::Internet, p))
            .ok_or_else(|| PolicyError::NoAddress(instance.clone(), "public (internet) IPv4")),
        _ => Ok((NicType::Intranet, i.private_ip)),
    }
}

/// Every inbound IPv4 flow `instance` accepts (on its intranet interface, or on the internet
/// interface of a classic instance with a public address), as the operator sees it.
pub fn exposure(
    evaluator: &impl Evaluator,
    instance: &MemberId,
    nic: NicType,
) -> Result<Vec<Exposed>, PolicyError> {
    exposure_in(
        evaluator,
        instance,
        nic,
        Direction::Ingress,
        Viewer::Operator,
    )
}

/// Every IPv4 flow `instance` accepts in `direction`, as `viewer` may see it.
pub fn exposure_in(
    evaluator: &impl Evaluator,
    instance: &MemberId,
    nic: NicType,
    direction: Direction,
    viewer: Viewer,
) -> Result<Vec<Exposed>, PolicyError> {
    let state = evaluator.state();
    let (nic, local) = local_address(state, instance, nic)?;
    let cuts = cuts(&[state], instance, direction, viewer);
    let mut label = |protocol, port, peer| {
        let d = evaluator.decide(&probe(
            instance, direction, nic, local, protocol, port, peer,
        ))?;
        Ok((d.verdict == Policy::Accept).then(|| DecidedBy::from(d.decided_by)))
    };
    let deviations = cuts.deviations(&mut label)?;
    let mut out = Vec::new();
    for (protocol, ports, ranges) in scan(&cuts, &mut label)? {
        for (lo, hi, decided_by) in ranges {
            out.push(Exposed {
                protocol,
                ports,
                sources: blocks(lo, hi),
                decided_by,
                except: cuts.except(&deviations, (protocol, ports, lo, hi)),
            });
        }
    }
    // Hidden members accepted otherwise than their block: by the rule naming their group.
    let hidden: Vec<((ProbeProtocol, DecidedByKey), PortSpan)> = deviations
        .into_iter()
        .filter_map(|d| Some(((d.protocol, DecidedByKey(d.own?)), d.ports)))
        .collect();
    for ((protocol, by), ports) in merge_spans(hidden) {
        out.push(Exposed {
            protocol,
            ports,
            sources: Vec::new(),
            decided_by: by.0,
            except: Vec::new(),
        });
    }
    Ok(out)
}

/// A [`DecidedBy`] ordered by its wire form and ids, to merge parts by it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DecidedByKey(DecidedBy);

impl DecidedByKey {
    fn sort_key(&self) -> (String, String) {
        match &self.0 {
            DecidedBy::Rule { group, rule, .. } => (group.to_string(), rule.to_string()),
            other => (other.as_wire().to_string(), String::new()),
        }
    }
}

impl PartialOrd for DecidedByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DecidedByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

/// Exactly which flows of `instance` in `direction` change verdict between two policies (the
/// instance must exist in both), as the operator sees them.
pub fn changes(
    before: &impl Evaluator,
    after: &impl Evaluator,
    instance: &MemberId,
    nic: NicType,
    direction: Direction,
) -> Result<Vec<FlowChange>, PolicyError> {
    changes_seen(before, after, instance, nic, direction, Viewer::Operator)
}

/// [`changes`] as `viewer` may see them.
pub fn changes_seen(
    before: &impl Evaluator,
    after: &impl Evaluator,
    instance: &MemberId,
    nic: NicType,
    direction: Direction,
    viewer: Viewer,
) -> Result<Vec<FlowChange>, PolicyError> {
    let (nic, local) = local_address(after.state(), instance, nic)?;
    let cuts = cuts(
        &[before.state(), after.state()],
        instance,
        direction,
        viewer,
    );
    let mut label = |protocol, port, peer| {
        let q = probe(instance, direction, nic, local, protocol, port, peer);
        let (was, is) = (before.decide(&q)?.verdict, after.decide(&q)?.verdict);
        Ok((was != is).then_some(is == Policy::Accept))
    };
    let deviations = cuts.deviations(&mut label)?;
    let mut out = Vec::new();
    for (protocol, ports, ranges) in scan(&cuts, &mut label)? {
        for (lo, hi, allowed) in ranges {
            out.push(FlowChange {
                direction,
                allowed,
                protocol,
                ports,
                peers: blocks(lo, hi),
                peer_groups: Vec::new(),
                except: cuts.except(&deviations, (protocol, ports, lo, hi)),
            });
        }
    }
    // Hidden members that flip otherwise than their block, by their groups.
    type Flip = (ProbeProtocol, bool, Vec<SecurityGroupId>);
    let hidden: Vec<(Flip, PortSpan)> = deviations
        .into_iter()
        .filter_map(|d| {
            let groups = cuts.hidden[&d.address].iter().cloned().collect();
            Some(((d.protocol, d.own?, groups), d.ports))
        })
        .collect();
    for ((protocol, allowed, peer_groups), ports) in merge_spans(hidden) {
        out.push(FlowChange {
            direction,
            allowed,
            protocol,
            ports,
            peers: Vec::new(),
            peer_groups,
            except: Vec::new(),
        });
    }
    Ok(out)
}

/// Instances that share one exposure, and that exposure.
pub type SharedExposure = (Vec<MemberId>, Vec<Exposed>);

/// The exposure of every instance of the state, computed once per set of instances that
/// must share it: the same group list and the same local-address filters containing their
/// address (the only ways an instance's own address enters its rules). Returns the
/// instances of each set with their common exposure.
pub fn fleet_exposure(
    evaluator: &impl Evaluator,
    nic: NicType,
) -> Result<Vec<SharedExposure>, PolicyError> {
    let state = evaluator.state();
    let mut sets: std::collections::BTreeMap<
        (Vec<model::SecurityGroupId>, Vec<IpNet>),
        Vec<MemberId>,
    > = std::collections::BTreeMap::new();
    for i in state.instances() {
        let (_, local) = local_address(state, &i.id, nic)?;
        let mut filters: Vec<IpNet> = i
            .security_groups
            .iter()
            .filter_map(|g| state.group(g).ok())
            .flat_map(|g| g.rules().filter_map(|(_, p)| p.local))
            .filter(|n| n.contains(&IpAddr::V4(local)))
            .collect();
        filters.sort();
        filters.dedup();
        sets.entry((i.security_groups.clone(), filters))
            .or_default()
            .push(i.id.clone());
    }
    let mut out = Vec::with_capacity(sets.len());
    for (_, mut instances) in sets {
        instances.sort();
        let exposed = exposure(evaluator, &instances[0], nic)?;
        out.push((instances, exposed));
    }
    Ok(out)
}

/// Address blocks that are not the internet: private (RFC 1918), shared (RFC 6598),
/// loopback, link-local, benchmarking (RFC 2544, where Stockade's labs live), this-network,
/// multicast and reserved.
const NOT_INTERNET: [(u32, u32); 9] = [
    (0x0000_0000, 0x00ff_ffff),
    (0x0a00_0000, 0x0aff_ffff),
    (0x6440_0000, 0x647f_ffff),
    (0x7f00_0000, 0x7fff_ffff),
    (0xa9fe_0000, 0xa9fe_ffff),
    (0xac10_0000, 0xac1f_ffff),
    (0xc0a8_0000, 0xc0a8_ffff),
    (0xc612_0000, 0xc613_ffff),
    (0xe000_0000, 0xffff_ffff),
];

/// The parts of IPv4 source blocks that lie on the internet (outside private, shared,
/// loopback, link-local, benchmarking, multicast and reserved space).
pub fn internet_part(sources: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for net in sources {
        let IpNet::V4(n) = net else { continue };
        let (mut lo, hi) = (
            u64::from(u32::from(n.network())),
            u64::from(u32::from(n.broadcast())),
        );
        for &(a, b) in &NOT_INTERNET {
            let (a, b) = (u64::from(a), u64::from(b));
            if b < lo || a > hi {
                continue;
            }
            if a > lo {
                out.extend(blocks(lo, a - 1));
            }
            lo = b + 1;
            if lo > hi {
                break;
            }
        }
        if lo <= hi {
            out.extend(blocks(lo, hi));
        }
    }
    out
}

/// The instances (other than `target`) that can open the flows of an exposure entry: their
/// address lies in its sources and their own egress lets every port of it through to
/// `target`'s private address.
pub fn reaching_instances(
    evaluator: &impl Evaluator,
    target: &MemberId,
    e: &Exposed,
) -> Result<Vec<MemberId>, PolicyError> {
    Ok(reaching_all(evaluator, target, std::slice::from_ref(e))?
        .pop()
        .unwrap_or_default())
}

/// [`reaching_instances`] of every entry of an exposure, in order. Each possible source's
/// egress port cuts are worked out once for all entries, not once per entry: they depend on
/// the source alone, and an exposure of a group of hundreds of rules has hundreds of entries
/// (computed per entry, the console's exposure page took 50 s at 120 instances; see the
/// fleet benchmark's `reaching` lines).
pub fn reaching_all(
    evaluator: &impl Evaluator,
    target: &MemberId,
    exposed: &[Exposed],
) -> Result<Vec<Vec<MemberId>>, PolicyError> {
    let state = evaluator.state();
    let target_ip = state.instance(target)?.private_ip;
    let mut egress_ports: BTreeMap<&MemberId, Vec<u16>> = BTreeMap::new();
    let mut out = Vec::with_capacity(exposed.len());
    for e in exposed {
        let mut reaching = Vec::new();
        for s in state.instances() {
            if &s.id == target
                || !e
                    .sources
                    .iter()
                    .any(|n| n.contains(&IpAddr::V4(s.private_ip)))
            {
                continue;
            }
            let ports: Vec<u16> = if e.protocol.has_ports() {
                let cut = egress_ports.entry(&s.id).or_insert_with(|| {
                    cuts(&[state], &s.id, Direction::Egress, Viewer::Operator).ports
                });
                std::iter::once(e.ports.start)
                    .chain(
                        cut.iter()
                            .copied()
                            .filter(|p| *p > e.ports.start && e.ports.contains(*p)),
                    )
                    .collect()
            } else {
                vec![0]
            };
            let mut all = true;
            for port in ports {
                let q = probe(
                    &s.id,
                    Direction::Egress,
                    NicType::Intranet,
                    s.private_ip,
                    e.protocol,
                    port,
                    target_ip,
                );
                if evaluator.decide(&q)?.verdict != Policy::Accept {
                    all = false;
                    break;
                }
            }
            if all {
                reaching.push(s.id.clone());
            }
        }
        reaching.sort();
        out.push(reaching);
    }
    Ok(out)
}
