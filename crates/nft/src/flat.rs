//! The flat rendering: a policy chain as a short walk down a decision tree of verdict maps,
//! whose depth does not grow with the rules.
//!
//! A linear chain makes the kernel test a new flow against every rule in turn, so its cost
//! grows with the rules. Here the engine's first-match order is resolved ahead of time into
//! a tree over one packet field at a time (protocol, destination port, peer address, local
//! address, source port): a node cuts its field at every bound its rules draw and sends each
//! piece, through a single-field interval verdict map (nftables' red-black tree, a
//! logarithmic lookup), to the node of the rules that cover that piece, or straight to a
//! verdict once the first of them covers everything left. A packet meets at most five
//! lookups. Fields every rule of a node leaves open are skipped, so a protocol without ports
//! never reads one.
//!
//! Measured before choosing (`benches/kernel.rs`): one interval map over the concatenated
//! fields (`pipapo`) looks up in time linear in its elements, and was slower at 100 rules
//! than the linear chain itself; single-field trees are not.
//!
//! Nodes are named by a hash of what they decide (their field and the rules below them), so
//! identical subtrees are one chain, a re-render reuses every node whose rules did not change
//! (the previous ruleset's chain of that name is the same node), and a diff touches only the
//! nodes a change reaches.
//!
//! Group peers stay dynamic. A chain's peer addresses that are members of the groups it
//! reads (its group peers, and its own groups when intra-group access applies) fall into
//! classes, one per set of those groups they belong to; a class map (`address → goto`) sends
//! such a packet to the tree of its class, cut with that set's group rules as matching every
//! peer. A member joining a group whose class already exists is then one class-map element;
//! addresses outside every group walk the chain's own tree.
//!
//! A chain whose trees would exceed [`MAX_CELLS`] map elements is rendered linearly instead
//! (still exact, only slower), so a pathological rule set costs its owner speed, not the host
//! its memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use model::{Direction, Peer, Permission, Policy, Protocol, SecurityGroupId};
use policy::State;

use crate::render::Family;

/// The most map elements one chain's trees may hold before it falls back to the linear
/// rendering.
pub const MAX_CELLS: usize = 50_000;

/// An inclusive range of one field's values.
type Iv = (u128, u128);

/// The fields of the tree, in the order it cuts them.
const FIELDS: usize = 5;
const PROTOCOL: usize = 0;
const DESTINATION_PORT: usize = 1;
const PEER: usize = 2;
const LOCAL: usize = 3;
const SOURCE_PORT: usize = 4;

/// A rule's box: one range per field.
type Cell = [Iv; FIELDS];

const FULL_PORTS: Iv = (0, u16::MAX as u128);
const FULL_PROTOCOLS: Iv = (0, u8::MAX as u128);
const TCP: u128 = 6;
const UDP: u128 = 17;

/// What a box or map element sends a packet to (`accept`, `goto …`).
pub(crate) type Action = &'static str;

/// The boxes a node decides between, in the engine's order.
type Boxes = Vec<(Cell, Action)>;

/// The statements and map of a previous ruleset's node, by the node's name.
pub(crate) type PreviousNode<'a> = &'a dyn Fn(&str) -> Option<(Vec<String>, VerdictMap)>;

/// A verdict map of the flat rendering and its elements (key text → verdict text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictMap {
    /// The map's declaration (`type ipv4_addr : verdict; flags interval;`).
    pub declaration: &'static str,
    /// Key → verdict, as nft writes them.
    pub elements: BTreeMap<String, String>,
}

/// What one chain of the flat rendering is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlatChain {
    /// The statements of the chain itself: the class dispatch, then the tree of peers in no
    /// group, then the default.
    pub main: Vec<String>,
    /// The tree nodes' chains, by name, each with its statements.
    pub nodes: BTreeMap<String, Vec<String>>,
    /// Every map the chain and its nodes read, by name.
    pub maps: BTreeMap<String, VerdictMap>,
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

/// The suffix of a chain's class map for `family`.
pub(crate) fn class_map_suffix(family: Family) -> &'static str {
    match family {
        Family::V4 => "__k4",
        Family::V6 => "__k6",
    }
}

/// The verdict text of a permission: an accepted egress returns, so that the destination's
/// ingress chain still judges the packet.
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
fn member_addresses(state: &State, group: &SecurityGroupId) -> Vec<IpAddr> {
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

/// The boxes of one family for peers that are members of exactly the groups of `class`, in
/// the engine's order, each with its action.
fn boxes(
    state: &State,
    policy: &ChainPolicy<'_>,
    family: Family,
    class: &BTreeSet<SecurityGroupId>,
) -> Boxes {
    let mut out = Vec::new();
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
        // (protocols, source ports, destination ports)
        let shapes: Vec<(Iv, Iv, Iv)> = match &p.protocol {
            Protocol::Tcp(ports) | Protocol::Udp(ports) => {
                let protocol = if matches!(p.protocol, Protocol::Tcp(_)) {
                    TCP
                } else {
                    UDP
                };
                let source = ports
                    .source
                    .map_or(FULL_PORTS, |r| (r.start().into(), r.end().into()));
                state
                    .destination_ports(p)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| {
                        (
                            (protocol, protocol),
                            source,
                            (r.start().into(), r.end().into()),
                        )
                    })
                    .collect()
            }
            Protocol::Icmp => vec![((1, 1), FULL_PORTS, FULL_PORTS)],
            Protocol::Icmpv6 => vec![((58, 58), FULL_PORTS, FULL_PORTS)],
            Protocol::Gre => vec![((47, 47), FULL_PORTS, FULL_PORTS)],
            Protocol::All => vec![(FULL_PROTOCOLS, FULL_PORTS, FULL_PORTS)],
        };
        for &peer in &peers {
            for &(protocols, source, destination) in &shapes {
                let mut cell = [(0, 0); FIELDS];
                cell[PROTOCOL] = protocols;
                cell[DESTINATION_PORT] = destination;
                cell[PEER] = peer;
                cell[LOCAL] = local;
                cell[SOURCE_PORT] = source;
                out.push((cell, action(p)));
            }
        }
    }
    if policy.inner.iter().any(|g| class.contains(g)) {
        out.push((
            [FULL_PROTOCOLS, FULL_PORTS, full, full, FULL_PORTS],
            "accept",
        ));
    }
    out
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
    if lo == 0 && hi == full_addresses(family).1 {
        return format!("{}/0", show(0));
    }
    let size = hi - lo + 1;
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

/// 128-bit FNV-1a: stable across processes and versions (a node's name must not change when
/// the agent restarts or is upgraded), and wide enough that two different nodes of a host
/// never share a name.
struct Fnv(u128);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 =
                (self.0 ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
    }

    fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// The statement's expression and the map declaration of a field.
fn field_expression(field: usize, family: Family, direction: Direction) -> (String, &'static str) {
    let ip = family.keyword();
    let (peer, local) = match direction {
        Direction::Ingress => ("saddr", "daddr"),
        Direction::Egress => ("daddr", "saddr"),
    };
    let addresses = match family {
        Family::V4 => "type ipv4_addr : verdict; flags interval;",
        Family::V6 => "type ipv6_addr : verdict; flags interval;",
    };
    let ports = "type inet_service : verdict; flags interval;";
    match field {
        PROTOCOL => (
            "meta l4proto".into(),
            "type inet_proto : verdict; flags interval;",
        ),
        DESTINATION_PORT => ("th dport".into(), ports),
        PEER => (format!("{ip} {peer}"), addresses),
        LOCAL => (format!("{ip} {local}"), addresses),
        _ => ("th sport".into(), ports),
    }
}

fn domain(field: usize, family: Family) -> Iv {
    match field {
        PROTOCOL => FULL_PROTOCOLS,
        PEER | LOCAL => full_addresses(family),
        _ => FULL_PORTS,
    }
}

/// Builds the trees of one chain.
struct Trees<'a> {
    chain: &'a str,
    direction: Direction,
    default: Action,
    previous: PreviousNode<'a>,
    out: FlatChain,
    /// (family, field, boxes) → the node's target, within this render.
    memo: HashMap<(Family, usize, Boxes), String>,
    elements: usize,
}

impl Trees<'_> {
    /// Where a packet in the region of `list` (boxes that cover the region on the fields
    /// before `field`, in order) goes: a verdict, or `goto` the node that judges it.
    fn target(&mut self, family: Family, field: usize, list: Boxes) -> Option<String> {
        let Some(&(first, first_action)) = list.first() else {
            return Some(self.default.to_string());
        };
        let covers_rest = (field..FIELDS).all(|f| first[f] == domain(f, family));
        if covers_rest {
            return Some(first_action.to_string());
        }
        // Skip fields every box leaves open.
        let field = (field..FIELDS)
            .find(|&f| list.iter().any(|(c, _)| c[f] != domain(f, family)))
            .expect("some field is cut, or the first box would cover the rest");
        let key = (family, field, list);
        if let Some(t) = self.memo.get(&key) {
            return Some(t.clone());
        }
        let (family, field, list) = key;
        let (expression, declaration) = field_expression(field, family, self.direction);
        let mut h = Fnv::new();
        h.bytes(expression.as_bytes());
        h.bytes(self.default.as_bytes());
        for (cell, a) in &list {
            for (lo, hi) in &cell[field..] {
                h.bytes(&lo.to_le_bytes());
                h.bytes(&hi.to_le_bytes());
            }
            h.bytes(a.as_bytes());
            h.bytes(&[0]);
        }
        let name = format!("{}__{}", self.chain, h.hex());
        let target = format!("goto {name}");
        if !self.out.nodes.contains_key(&name) && self.copy(&name).is_none() {
            let map = self.cut(family, field, &list)?;
            self.elements += map.len();
            if self.elements > MAX_CELLS {
                return None;
            }
            let statements = vec![
                format!("{expression} vmap @{name}__m"),
                self.default.to_string(),
            ];
            self.out.nodes.insert(name.clone(), statements);
            self.out.maps.insert(
                format!("{name}__m"),
                VerdictMap {
                    declaration,
                    elements: map,
                },
            );
        }
        self.memo.insert((family, field, list), target.clone());
        Some(target)
    }

    /// Takes a node the previous ruleset had, and its descendants, as they were (`None`
    /// when it had no such node).
    fn copy(&mut self, name: &str) -> Option<()> {
        if self.out.nodes.contains_key(name) {
            return Some(());
        }
        let (statements, map) = (self.previous)(name)?;
        self.elements += map.elements.len();
        let children: Vec<String> = map
            .elements
            .values()
            .filter_map(|v| v.strip_prefix("goto ").map(str::to_string))
            .collect();
        self.out.nodes.insert(name.to_string(), statements);
        self.out.maps.insert(format!("{name}__m"), map);
        for child in children {
            self.copy(&child)?;
        }
        Some(())
    }

    /// The elements of a node cutting `field`: each piece between bounds to the target of
    /// the boxes covering it, adjacent pieces of one target merged, pieces that end at the
    /// default left out (the node's last statement).
    fn cut(
        &mut self,
        family: Family,
        field: usize,
        list: &[(Cell, Action)],
    ) -> Option<BTreeMap<String, String>> {
        let (lo, hi) = domain(field, family);
        let mut bounds: BTreeSet<u128> = BTreeSet::from([lo]);
        for (cell, _) in list {
            bounds.insert(cell[field].0);
            if cell[field].1 < hi {
                bounds.insert(cell[field].1 + 1);
            }
        }
        let bounds: Vec<u128> = bounds.into_iter().collect();
        let mut pieces: Vec<(Iv, String)> = Vec::new();
        for (k, &start) in bounds.iter().enumerate() {
            let end = bounds.get(k + 1).map_or(hi, |next| next - 1);
            let sub: Boxes = list
                .iter()
                .filter(|(c, _)| c[field].0 <= start && start <= c[field].1)
                .copied()
                .collect();
            let target = self.target(family, field + 1, sub)?;
            match pieces.last_mut() {
                Some((range, t)) if *t == target => range.1 = end,
                _ => pieces.push(((start, end), target)),
            }
        }
        let text = |range: Iv| match field {
            PEER | LOCAL => address(family, range),
            _ => number(range),
        };
        Some(
            pieces
                .into_iter()
                .filter(|(_, t)| t != self.default)
                .map(|(range, t)| (text(range), t))
                .collect(),
        )
    }
}

/// Renders one chain flat, or `None` when its trees would exceed [`MAX_CELLS`] elements.
/// `previous` gives the statements and map a node of that name had in the ruleset before
/// (the same node, its name being a hash of what it decides).
pub(crate) fn flat_chain(
    state: &State,
    name: &str,
    policy: &ChainPolicy<'_>,
    previous: PreviousNode<'_>,
) -> Option<FlatChain> {
    let groups = referenced(policy);
    // Every member address of the groups read → the groups it is a member of.
    let mut class_of: BTreeMap<IpAddr, BTreeSet<SecurityGroupId>> = BTreeMap::new();
    for g in &groups {
        for a in member_addresses(state, g) {
            class_of.entry(a).or_default().insert(g.clone());
        }
    }
    let mut trees = Trees {
        chain: name,
        direction: policy.direction,
        default: policy.default,
        previous,
        out: FlatChain {
            main: Vec::new(),
            nodes: BTreeMap::new(),
            maps: BTreeMap::new(),
        },
        memo: HashMap::new(),
        elements: 0,
    };
    let mut roots: BTreeMap<(Family, &BTreeSet<SecurityGroupId>), String> = BTreeMap::new();
    let none = BTreeSet::new();
    for family in [Family::V4, Family::V6] {
        for class in class_of.values().chain([&none]) {
            if roots.contains_key(&(family, class)) {
                continue;
            }
            let list = boxes(state, policy, family, class);
            let root = trees.target(family, PROTOCOL, list)?;
            roots.insert((family, class), root);
        }
    }
    let peer = match policy.direction {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    let mut out = trees.out;
    for family in [Family::V4, Family::V6] {
        let elements = class_of
            .iter()
            .filter(|(a, _)| Family::of(&IpNet::from(**a)) == family)
            .map(|(a, class)| (a.to_string(), roots[&(family, class)].clone()))
            .collect();
        let map = VerdictMap {
            declaration: match family {
                Family::V4 => "type ipv4_addr : verdict;",
                Family::V6 => "type ipv6_addr : verdict;",
            },
            elements,
        };
        let map_name = format!("{name}{}", class_map_suffix(family));
        out.main
            .push(format!("{} {peer} vmap @{map_name}", family.keyword()));
        out.maps.insert(map_name, map);
    }
    // The roots through a map, so that a rule change (a new root) is an element update
    // and never rewrites the chain's statements.
    let elements = [(Family::V4, "ipv4"), (Family::V6, "ipv6")]
        .into_iter()
        .map(|(family, nfproto)| (nfproto.to_string(), roots[&(family, &none)].clone()))
        .filter(|(_, root)| root != policy.default)
        .collect();
    let map_name = format!("{name}__r");
    out.main.push(format!("meta nfproto vmap @{map_name}"));
    out.maps.insert(
        map_name,
        VerdictMap {
            declaration: "type nf_proto : verdict;",
            elements,
        },
    );
    out.main.push(policy.default.to_string());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
