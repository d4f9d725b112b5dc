//! The flat rendering: a policy chain as a constant number of verdict-map lookups, whatever
//! its number of rules.
//!
//! A linear chain makes the kernel test a new flow against every rule in turn, so its cost
//! grows with the rules. Here the engine's first-match order is resolved ahead of time: per
//! address family, the space a chain judges (peer address × local address × protocol ×
//! source port × destination port; the last two for TCP and UDP only) is cut into disjoint
//! boxes, each carrying the verdict of the first rule that covers it, and the boxes whose
//! verdict is not the chain's default become the elements of interval verdict maps over
//! concatenated fields (nftables' `pipapo` sets). One lookup per map then judges a packet.
//!
//! Group peers stay dynamic. A chain's peer addresses that are members of the groups it
//! reads (its group peers, and its own groups when intra-group access applies) fall into
//! classes, one per set of those groups they belong to; a class map (`address → goto`) sends
//! such a packet to the chain of its class, whose maps were cut with that set's group rules
//! as matching every peer. A member joining a group whose class already exists is then one
//! class-map element, not a new cut; addresses outside every group take the chain itself.
//!
//! A chain whose boxes would exceed [`MAX_CELLS`] is rendered linearly instead (still exact,
//! only slower), so a pathological rule set costs its owner speed, not the host its memory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use model::{Direction, Peer, Permission, Policy, Protocol, SecurityGroupId};
use policy::State;

use crate::render::Family;

/// The most boxes (over all classes) one chain's maps may hold before it falls back to the
/// linear rendering.
pub const MAX_CELLS: usize = 50_000;

/// An inclusive range of one field's values.
type Iv = (u128, u128);

/// A box of `N` fields: peer, local, protocol, then (TCP/UDP maps) source and destination
/// port.
type Cell<const N: usize> = [Iv; N];

const FULL_PORTS: Iv = (0, u16::MAX as u128);
const TCP: u128 = 6;
const UDP: u128 = 17;
/// The protocol values the port-less maps cover: everything but TCP and UDP, which the
/// port maps judge.
const OTHER_PROTOCOLS: [Iv; 3] = [(0, TCP - 1), (TCP + 1, UDP - 1), (UDP + 1, u8::MAX as u128)];

/// What a box sends a packet to.
pub(crate) type Action = &'static str;

/// Which verdict map of a chain: the class map, the TCP/UDP map, the map of other protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapKind {
    /// Peer address → the chain of its class (`goto`).
    Class,
    /// Peer . local . protocol . source port . destination port → verdict (TCP and UDP).
    Ports,
    /// Peer . local . protocol → verdict (every other protocol).
    Other,
}

impl MapKind {
    /// The suffix of the map's name (`__k4`).
    pub(crate) fn suffix(self, family: Family) -> String {
        let kind = match self {
            MapKind::Class => 'k',
            MapKind::Ports => 't',
            MapKind::Other => 'o',
        };
        let family = match family {
            Family::V4 => '4',
            Family::V6 => '6',
        };
        format!("__{kind}{family}")
    }

    /// The map's declaration.
    pub fn declaration(self, family: Family) -> &'static str {
        match (self, family) {
            (MapKind::Class, Family::V4) => "type ipv4_addr : verdict;",
            (MapKind::Class, Family::V6) => "type ipv6_addr : verdict;",
            (MapKind::Ports, Family::V4) => {
                "type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service : verdict; flags interval;"
            }
            (MapKind::Ports, Family::V6) => {
                "type ipv6_addr . ipv6_addr . inet_proto . inet_service . inet_service : verdict; flags interval;"
            }
            (MapKind::Other, Family::V4) => {
                "type ipv4_addr . ipv4_addr . inet_proto : verdict; flags interval;"
            }
            (MapKind::Other, Family::V6) => {
                "type ipv6_addr . ipv6_addr . inet_proto : verdict; flags interval;"
            }
        }
    }
}

/// A verdict map of the flat rendering and its elements (key text → verdict text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictMap {
    /// Which map of its chain.
    pub kind: MapKind,
    /// The family of its addresses.
    pub family: Family,
    /// Key → verdict, as nft writes them.
    pub elements: BTreeMap<String, String>,
}

impl VerdictMap {
    /// The map's declaration (`type … : verdict; flags interval;`).
    pub fn declaration(&self) -> &'static str {
        self.kind.declaration(self.family)
    }
}

/// What one chain of the flat rendering is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlatChain {
    /// The statements of the chain itself (the class dispatch, then the maps of peers in no
    /// group, then the default).
    pub main: Vec<String>,
    /// The chains of classes, by name, each with its statements.
    pub classes: BTreeMap<String, Vec<String>>,
    /// Every map the chain and its class chains read, by name.
    pub maps: BTreeMap<String, VerdictMap>,
}

/// The fields a chain judges: which packet address is the peer and which the local one.
struct Fields {
    peer: &'static str,
    local: &'static str,
}

impl Fields {
    fn of(direction: Direction) -> Fields {
        match direction {
            Direction::Ingress => Fields {
                peer: "saddr",
                local: "daddr",
            },
            Direction::Egress => Fields {
                peer: "daddr",
                local: "saddr",
            },
        }
    }
}

/// The inputs of one chain: its rules in the engine's order and what follows them.
pub(crate) struct ChainPolicy<'a> {
    /// The permissions in evaluation order.
    pub ordered: Vec<&'a Permission>,
    /// The direction judged.
    pub direction: Direction,
    /// The chain's own groups whose members it accepts after its rules (intra-group access).
    pub inner: Vec<SecurityGroupId>,
    /// The verdict when nothing matches (`drop` or `return`).
    pub default: Action,
}

/// The verdict text of a permission in `direction`: an accepted egress returns, so that the
/// destination's ingress chain still judges the packet.
fn action(p: &Permission) -> Action {
    match (p.policy, p.direction) {
        (Policy::Drop, _) => "drop",
        (Policy::Accept, Direction::Ingress) => "accept",
        (Policy::Accept, Direction::Egress) => "return",
    }
}

/// The groups a chain reads the members of.
fn referenced(policy: &ChainPolicy<'_>) -> BTreeSet<SecurityGroupId> {
    let mut groups: BTreeSet<SecurityGroupId> = policy.inner.iter().cloned().collect();
    for p in &policy.ordered {
        if let Peer::Group(g) = &p.peer {
            groups.insert(g.id.clone());
        }
    }
    groups
}

/// The intranet addresses of a group's members (what its member sets hold).
pub(crate) fn member_addresses(state: &State, group: &SecurityGroupId) -> Vec<IpAddr> {
    state
        .group(group)
        .map(|g| {
            g.members
                .iter()
                .filter_map(|i| state.instance(i).ok())
                .flat_map(|i| i.intranet_addresses())
                .collect()
        })
        .unwrap_or_default()
}

fn family_of(a: &IpAddr) -> Family {
    if a.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    }
}

/// The first and last address of a family.
fn full_addresses(family: Family) -> Iv {
    match family {
        Family::V4 => (0, u32::MAX as u128),
        Family::V6 => (0, u128::MAX),
    }
}

fn net_range(net: &IpNet) -> Iv {
    match net {
        IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Disjoint boxes, each with the action of the first rule that covered it.
struct Cut<const N: usize> {
    cells: Vec<(Cell<N>, Action)>,
}

impl<const N: usize> Cut<N> {
    fn new() -> Self {
        Cut { cells: Vec::new() }
    }

    /// Adds what of `cell` no earlier box covers, with `action`.
    fn add(&mut self, cell: Cell<N>, action: Action, budget: &mut usize) -> Result<(), TooMany> {
        let mut pieces = vec![cell];
        for (old, _) in &self.cells {
            if pieces.is_empty() {
                return Ok(());
            }
            if !pieces.iter().any(|p| intersects(p, old)) {
                continue;
            }
            let mut next = Vec::with_capacity(pieces.len());
            for p in pieces {
                subtract(&p, old, &mut next);
            }
            pieces = next;
        }
        if pieces.len() > *budget {
            return Err(TooMany);
        }
        *budget -= pieces.len();
        self.cells.extend(pieces.into_iter().map(|p| (p, action)));
        Ok(())
    }
}

/// The boxes would exceed [`MAX_CELLS`].
#[derive(Debug)]
pub(crate) struct TooMany;

fn intersects<const N: usize>(a: &Cell<N>, b: &Cell<N>) -> bool {
    a.iter().zip(b).all(|(x, y)| x.0 <= y.1 && y.0 <= x.1)
}

/// Appends `a` minus `b` to `out`, as disjoint boxes (at most two per field).
fn subtract<const N: usize>(a: &Cell<N>, b: &Cell<N>, out: &mut Vec<Cell<N>>) {
    if !intersects(a, b) {
        out.push(*a);
        return;
    }
    let mut rest = *a;
    for d in 0..N {
        let (lo, hi) = rest[d];
        if lo < b[d].0 {
            let mut piece = rest;
            piece[d] = (lo, b[d].0 - 1);
            out.push(piece);
        }
        if hi > b[d].1 {
            let mut piece = rest;
            piece[d] = (b[d].1 + 1, hi);
            out.push(piece);
        }
        rest[d] = (lo.max(b[d].0), hi.min(b[d].1));
    }
}

/// The boxes of one class of one family: TCP/UDP and other protocols.
struct ClassCut {
    ports: Cut<5>,
    other: Cut<3>,
}

/// Cuts one family's space for peers that are members of exactly the groups of `class`.
fn cut_class(
    state: &State,
    policy: &ChainPolicy<'_>,
    family: Family,
    class: &BTreeSet<SecurityGroupId>,
    budget: &mut usize,
) -> Result<ClassCut, TooMany> {
    let mut cut = ClassCut {
        ports: Cut::new(),
        other: Cut::new(),
    };
    let full = full_addresses(family);
    let in_family = |n: &IpNet| Family::of(n) == family;
    for p in &policy.ordered {
        let peers: Vec<Iv> = match &p.peer {
            Peer::Cidr(n) if in_family(n) => vec![net_range(n)],
            Peer::Cidr(_) => continue,
            Peer::Group(g) if class.contains(&g.id) => vec![full],
            Peer::Group(_) => continue,
            Peer::PrefixList(l) => state
                .prefix_list(l)
                .iter()
                .filter(|n| in_family(n))
                .map(net_range)
                .collect(),
        };
        let local = match &p.local {
            Some(n) if in_family(n) => net_range(n),
            Some(_) => continue,
            None => full,
        };
        let act = action(p);
        let ported = |protocol: u128, ports: &model::Ports| {
            let source = ports
                .source
                .map_or(FULL_PORTS, |r| (r.start() as u128, r.end() as u128));
            state
                .destination_ports(p)
                .unwrap_or_default()
                .into_iter()
                .map(move |r| (protocol, source, (r.start() as u128, r.end() as u128)))
                .collect::<Vec<_>>()
        };
        let (ports, others): (Vec<(u128, Iv, Iv)>, Vec<Iv>) = match &p.protocol {
            Protocol::Tcp(ports) => (ported(TCP, ports), vec![]),
            Protocol::Udp(ports) => (ported(UDP, ports), vec![]),
            Protocol::Icmp => (vec![], vec![(1, 1)]),
            Protocol::Icmpv6 => (vec![], vec![(58, 58)]),
            Protocol::Gre => (vec![], vec![(47, 47)]),
            Protocol::All => (
                vec![(TCP, FULL_PORTS, FULL_PORTS), (UDP, FULL_PORTS, FULL_PORTS)],
                OTHER_PROTOCOLS.to_vec(),
            ),
        };
        for &peer in &peers {
            for &(protocol, source, destination) in &ports {
                let cell = [peer, local, (protocol, protocol), source, destination];
                cut.ports.add(cell, act, budget)?;
            }
            for &protocols in &others {
                cut.other.add([peer, local, protocols], act, budget)?;
            }
        }
    }
    if policy.inner.iter().any(|g| class.contains(g)) {
        for protocol in [TCP, UDP] {
            let cell = [full, full, (protocol, protocol), FULL_PORTS, FULL_PORTS];
            cut.ports.add(cell, "accept", budget)?;
        }
        for protocols in OTHER_PROTOCOLS {
            cut.other.add([full, full, protocols], "accept", budget)?;
        }
    }
    Ok(cut)
}

/// Writes an address range as nft reads it (a prefix where it is one).
fn address(family: Family, (lo, hi): Iv) -> String {
    let show = |v: u128| match family {
        Family::V4 => std::net::Ipv4Addr::from(v as u32).to_string(),
        Family::V6 => std::net::Ipv6Addr::from(v).to_string(),
    };
    let bits = match family {
        Family::V4 => 32,
        Family::V6 => 128,
    };
    let size = hi.wrapping_sub(lo).wrapping_add(1);
    if lo == 0 && hi == full_addresses(family).1 {
        return format!("{}/0", show(0));
    }
    if size.is_power_of_two() && lo % size == 0 {
        return format!("{}/{}", show(lo), bits - size.trailing_zeros());
    }
    format!("{}-{}", show(lo), show(hi))
}

fn number((lo, hi): Iv) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// The map elements of boxes whose action is not the default.
fn elements<const N: usize>(
    family: Family,
    cut: &Cut<N>,
    default: Action,
) -> BTreeMap<String, String> {
    cut.cells
        .iter()
        .filter(|(_, a)| *a != default)
        .map(|(cell, a)| {
            let mut key = format!(
                "{} . {}",
                address(family, cell[0]),
                address(family, cell[1])
            );
            for field in &cell[2..] {
                let _ = write!(key, " . {}", number(*field));
            }
            (key, a.to_string())
        })
        .collect()
}

/// A short stable name for a class (its groups), for its chain's name.
fn class_tag(class: &BTreeSet<SecurityGroupId>) -> String {
    // FNV-1a: stable across processes and versions (a chain's name must not change when
    // the agent restarts), and short enough to keep names under nft's 256 bytes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for g in class {
        for b in g.as_str().bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The statements that judge by the maps of `name` (a chain or a class chain), then the
/// default.
fn lookups(name: &str, fields: &Fields, default: Action) -> Vec<String> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        let ip = family.keyword();
        let (peer, local) = (fields.peer, fields.local);
        let ports = MapKind::Ports.suffix(family);
        let other = MapKind::Other.suffix(family);
        out.push(format!(
            "meta l4proto {{ tcp, udp }} {ip} {peer} . {ip} {local} . meta l4proto . th sport . th dport vmap @{name}{ports}"
        ));
        out.push(format!(
            "{ip} {peer} . {ip} {local} . meta l4proto vmap @{name}{other}"
        ));
    }
    out.push(default.to_string());
    out
}

/// Renders one chain flat, or `None` when its boxes would exceed [`MAX_CELLS`]. `reuse`
/// gives the maps a chain (or class chain) of that name had when its rules were the same,
/// so that a membership change does not cut the space again.
pub(crate) fn flat_chain(
    state: &State,
    name: &str,
    policy: &ChainPolicy<'_>,
    reuse: impl Fn(&str) -> Option<[(String, VerdictMap); 4]>,
) -> Option<FlatChain> {
    let fields = Fields::of(policy.direction);
    let groups = referenced(policy);
    // Every member address of the groups read → the groups it is a member of.
    let mut class_of: BTreeMap<IpAddr, BTreeSet<SecurityGroupId>> = BTreeMap::new();
    for g in &groups {
        for a in member_addresses(state, g) {
            class_of.entry(a).or_default().insert(g.clone());
        }
    }
    let classes: BTreeSet<&BTreeSet<SecurityGroupId>> = class_of.values().collect();
    let mut out = FlatChain {
        main: Vec::new(),
        classes: BTreeMap::new(),
        maps: BTreeMap::new(),
    };
    let mut budget = MAX_CELLS;
    let mut chain_for = |chain: &str, class: &BTreeSet<SecurityGroupId>| -> Option<()> {
        let maps = match reuse(chain) {
            Some(maps) => maps,
            None => {
                let mut maps = Vec::new();
                for family in [Family::V4, Family::V6] {
                    let cut = cut_class(state, policy, family, class, &mut budget).ok()?;
                    for (kind, elements) in [
                        (MapKind::Ports, elements(family, &cut.ports, policy.default)),
                        (MapKind::Other, elements(family, &cut.other, policy.default)),
                    ] {
                        let map = VerdictMap {
                            kind,
                            family,
                            elements,
                        };
                        maps.push((format!("{chain}{}", kind.suffix(family)), map));
                    }
                }
                maps.try_into().ok()?
            }
        };
        out.maps.extend(maps);
        Some(())
    };
    let empty = BTreeSet::new();
    chain_for(name, &empty)?;
    let mut tags: BTreeMap<&BTreeSet<SecurityGroupId>, String> = BTreeMap::new();
    for class in classes {
        let chain = format!("{name}__{}", class_tag(class));
        chain_for(&chain, class)?;
        tags.insert(class, chain);
    }
    if tags.values().collect::<BTreeSet<_>>().len() != tags.len() {
        return None; // two classes with one tag: render this chain linearly
    }
    for family in [Family::V4, Family::V6] {
        let elements = class_of
            .iter()
            .filter(|(a, _)| family_of(a) == family)
            .map(|(a, class)| (a.to_string(), format!("goto {}", tags[class])))
            .collect();
        let map = VerdictMap {
            kind: MapKind::Class,
            family,
            elements,
        };
        let map_name = format!("{name}{}", MapKind::Class.suffix(family));
        out.main.push(format!(
            "{} {} vmap @{map_name}",
            family.keyword(),
            fields.peer
        ));
        out.maps.insert(map_name, map);
    }
    out.main.extend(lookups(name, &fields, policy.default));
    for chain in tags.into_values() {
        let statements = lookups(&chain, &fields, policy.default);
        out.classes.insert(chain, statements);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtraction_leaves_disjoint_boxes_covering_the_difference() {
        let a: Cell<2> = [(0, 9), (0, 9)];
        let b: Cell<2> = [(3, 5), (4, 12)];
        let mut out = Vec::new();
        subtract(&a, &b, &mut out);
        for x in 0..12u128 {
            for y in 0..14u128 {
                let inside =
                    |c: &Cell<2>| (c[0].0..=c[0].1).contains(&x) && (c[1].0..=c[1].1).contains(&y);
                let n = out.iter().filter(|c| inside(c)).count();
                let want = inside(&a) && !inside(&b);
                assert_eq!(n, usize::from(want), "({x},{y})");
            }
        }
    }

    #[test]
    fn addresses_print_as_prefixes_where_they_are_one() {
        assert_eq!(address(Family::V4, (0, u32::MAX as u128)), "0.0.0.0/0");
        assert_eq!(
            address(Family::V4, (0x0a00_0000, 0x0aff_ffff)),
            "10.0.0.0/8"
        );
        assert_eq!(address(Family::V4, (5, 5)), "0.0.0.5/32");
        assert_eq!(address(Family::V4, (5, 6)), "0.0.0.5-0.0.0.6");
        assert_eq!(address(Family::V6, (0, u128::MAX)), "::/0");
    }
}
