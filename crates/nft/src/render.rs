//! The pure renderer: policy in, [`Ruleset`] value out, and the scripts that install it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::sync::Arc;

use ipnet::IpNet;
use model::{
    Direction, GroupType, InnerAccessPolicy, NicType, Peer, Permission, Policy, Protocol,
    SecurityGroupId,
};
use policy::State;

use crate::counters;
use crate::flat::{self, ChainPolicy, VerdictMap};

/// Most set elements one [`SetElements`] change carries: a backend sends a change this
/// size as one netlink batch, and a bigger one goes as `nft` text.
pub const MAX_ELEMENTS: usize = 1024;

/// The one table Stockade owns in the host's network namespace (family `inet`).
pub const TABLE: &str = "stockade";

/// An instance interface on this host: which instance, which of its NICs, which device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    /// The member whose groups judge the device's packets: an instance (its primary
    /// interface) or a secondary interface.
    pub instance: model::MemberId,
    /// Intranet, or the internet NIC of a classic instance.
    pub nic_type: NicType,
    /// The host-side network device its packets cross (e.g. the host end of a veth pair).
    pub interface: String,
}

/// What a named set holds: a group's member addresses, a prefix list's CIDRs, or a port
/// range list's ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// The intranet addresses of a group's members (`g…`).
    Members,
    /// The CIDRs of a prefix list (`p…`).
    PrefixList,
    /// The destination port ranges of a port range list (`r…`; ports have no address
    /// family, so these sets are always named with family 4, `r4_prl_…`).
    PortList,
}

/// The address family of a set (nft matches `ip` and `ip6` addresses separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 (`ip`).
    V4,
    /// IPv6 (`ip6`).
    V6,
}

impl Family {
    pub(crate) fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// The nft address expression family (`ip` / `ip6`).
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

/// The name of a named set: what it holds, its family, and the id of the group or prefix
/// list (as an nft identifier). Printed `g4_sg_abc`; ordered as that text is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetName {
    /// Members or prefix list.
    pub kind: SetKind,
    /// IPv4 or IPv6.
    pub family: Family,
    /// The group's or list's id, `-` written `_`.
    pub id: String,
}

impl SetName {
    fn members(group: &SecurityGroupId, family: Family) -> SetName {
        SetName {
            kind: SetKind::Members,
            family,
            id: ident(group.as_str()),
        }
    }

    fn prefix_list(list: &model::PrefixListId, family: Family) -> SetName {
        SetName {
            kind: SetKind::PrefixList,
            family,
            id: ident(list.as_str()),
        }
    }

    fn port_list(list: &model::PortRangeListId) -> SetName {
        SetName {
            kind: SetKind::PortList,
            family: Family::V4,
            id: ident(list.as_str()),
        }
    }

    /// The element type the set is declared with.
    pub fn set_type(&self) -> SetType {
        match (self.kind, self.family) {
            (SetKind::PortList, _) => SetType::Ports,
            (SetKind::Members, Family::V4) => SetType::Ipv4Addr,
            (SetKind::Members, Family::V6) => SetType::Ipv6Addr,
            (SetKind::PrefixList, Family::V4) => SetType::Ipv4Net,
            (SetKind::PrefixList, Family::V6) => SetType::Ipv6Net,
        }
    }
}

impl fmt::Display for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            SetKind::Members => 'g',
            SetKind::PrefixList => 'p',
            SetKind::PortList => 'r',
        };
        let family = match self.family {
            Family::V4 => '4',
            Family::V6 => '6',
        };
        write!(f, "{kind}{family}_{}", self.id)
    }
}

/// What a dispatch map sends an interface's packets to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// The policy chain of the interface's group list.
    Jump(String),
    /// Nothing passes: the interface's policy could not be rendered (fail closed).
    Drop,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Jump(chain) => write!(f, "jump {chain}"),
            Verdict::Drop => f.write_str("drop"),
        }
    }
}

/// One statement of a policy chain and the named sets it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The statement as nft reads it (`ip saddr @g4_sg_a tcp dport 22 accept`).
    pub text: String,
    /// The sets the statement names.
    pub sets: Vec<SetName>,
    /// The hit counter it counts its decisions into (see [`crate::counters`]).
    pub counter: Option<String>,
}

impl Rule {
    /// A statement that names no set and counts nothing.
    fn plain(text: impl Into<String>) -> Rule {
        Rule {
            text: text.into(),
            sets: Vec::new(),
            counter: None,
        }
    }

    /// A deciding statement: `matches`, counted into `counter`, then `verdict`.
    fn counted(matches: &str, counter: String, verdict: &str, sets: Vec<SetName>) -> Rule {
        let space = if matches.is_empty() { "" } else { " " };
        Rule {
            text: format!("{matches}{space}counter name \"{counter}\" {verdict}"),
            sets,
            counter: Some(counter),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The element type of a named set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetType {
    /// Single IPv4 addresses (group members).
    Ipv4Addr,
    /// Single IPv6 addresses.
    Ipv6Addr,
    /// IPv4 prefixes (prefix lists; an interval set).
    Ipv4Net,
    /// IPv6 prefixes.
    Ipv6Net,
    /// Port ranges (port range lists; an interval set).
    Ports,
}

impl SetType {
    fn declaration(self) -> &'static str {
        match self {
            SetType::Ipv4Addr => "type ipv4_addr;",
            SetType::Ipv6Addr => "type ipv6_addr;",
            SetType::Ipv4Net => "type ipv4_addr; flags interval; auto-merge;",
            SetType::Ipv6Net => "type ipv6_addr; flags interval; auto-merge;",
            SetType::Ports => "type inet_service; flags interval; auto-merge;",
        }
    }

    /// Interval sets merge adjacent prefixes, so their elements are replaced as a whole
    /// rather than added and deleted one by one.
    fn interval(self) -> bool {
        matches!(self, SetType::Ipv4Net | SetType::Ipv6Net | SetType::Ports)
    }
}

/// A named set and its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// What it holds.
    pub set_type: SetType,
    /// Its elements, as nft writes them.
    pub elements: BTreeSet<String>,
}

/// Addresses added to or deleted from one named set: the change a backend sends without a
/// script (`netfilter::Backend::apply_elements`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElements {
    /// The set's name.
    pub set: String,
    /// Added (else deleted).
    pub add: bool,
    /// The addresses.
    pub elements: Vec<std::net::IpAddr>,
}

/// The whole desired content of the `inet stockade` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// Named address sets, by name.
    pub sets: BTreeMap<SetName, Set>,
    /// Policy chains, by name, each a list of rule statements (shared: a re-render reuses
    /// the chains of unchanged groups without copying them).
    pub chains: BTreeMap<String, Arc<[Rule]>>,
    /// The verdict maps of chains rendered flat (see [`Rendering::Flat`]), by name: a
    /// chain's class maps are named after it (`in_i_sg_a__k4`), its tree nodes' maps after
    /// the node (`in_i_sg_a__<hash>__m`).
    pub maps: BTreeMap<String, VerdictMap>,
    /// Input interface (quoted, as nft writes it) → verdict: the sending instance's egress.
    pub egress: BTreeMap<String, Verdict>,
    /// Output interface → verdict: the receiving instance's ingress.
    pub ingress: BTreeMap<String, Verdict>,
    /// Instances rendered fail-closed, with the reason.
    pub failed: BTreeMap<model::MemberId, String>,
    /// Devices that claim to carry an interface but cannot be attributed to exactly one
    /// bound here, failed closed: device → why.
    pub isolated: BTreeMap<String, String>,
    /// Conntrack zones (see [`Zones`]).
    pub zones: Zones,
    /// The source addresses each device may send from (see [`Sources`]).
    pub sources: Sources,
}

/// Anti-spoofing: a packet coming in by an interface's device must carry one of that
/// interface's own addresses as its source, or it is dropped before anything else (before
/// connection tracking's `established` accept too, so that a forged packet cannot ride on
/// another's established flow). Without it, an instance could send from the address of a
/// member of another tenant's group and pass that tenant's group rules (on the shared
/// classic network). The same sets guard what reaches the host itself: ARP (the `arp`
/// table, [`ARP_TABLE`]) and neighbour discovery may announce only the device's own
/// addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources {
    /// The devices checked (quoted).
    pub devices: BTreeSet<String>,
    /// `"device" . address` pairs allowed, IPv4.
    pub v4: BTreeSet<String>,
    /// The same for IPv6.
    pub v6: BTreeSet<String>,
    /// The IPv6 pairs again, the address as the 128-bit number a neighbour advertisement's
    /// target is read as (`@th,64,128`: nft 1.0.6 has no `icmpv6 taddr`).
    pub nd: BTreeSet<String>,
    /// VPC overlay devices (quoted): they carry tenants' packets between hosts, never any
    /// for the host itself, yet a tenant's packet to an address the host holds (its VPC may
    /// contain the host's underlay addresses) would reach the host's stack by them.
    pub overlays: BTreeSet<String>,
    /// Devices of VPC interfaces with `SourceDestCheck=false` (quoted): what they forward
    /// for others may carry any source. Only forwarded traffic: the host itself (`host`,
    /// `neighbour`, ARP) still hears them only from their own addresses, and their flows
    /// stay in their VPC's zone.
    pub forwarders: BTreeSet<String>,
}

impl Sources {
    /// The sets of the `inet` table as `(name, declaration, elements)`.
    fn sets(&self) -> [(&'static str, &'static str, &BTreeSet<String>); 6] {
        [
            ("src_devices", "type ifname;", &self.devices),
            ("src_v4", "type ifname . ipv4_addr;", &self.v4),
            ("src_v6", "type ifname . ipv6_addr;", &self.v6),
            ("src_nd", "typeof iifname . @th,64,128;", &self.nd),
            ("overlays", "type ifname;", &self.overlays),
            ("forwarders", "type ifname;", &self.forwarders),
        ]
    }

    /// Notes a VPC's overlay device (see [`Sources::overlays`]).
    pub fn overlay(&mut self, device: &str) {
        self.overlays.insert(quote(device));
    }

    /// The sets of the `arp` table, which cannot read the `inet` table's.
    fn arp_sets(&self) -> [(&'static str, &'static str, &BTreeSet<String>); 2] {
        [
            ("src_devices", "type ifname;", &self.devices),
            ("src_v4", "type ifname . ipv4_addr;", &self.v4),
        ]
    }

    /// Allows `device` to send from its interface's addresses.
    fn allow(&mut self, device: &str, addresses: impl IntoIterator<Item = std::net::IpAddr>) {
        let device = quote(device);
        for a in addresses {
            match a {
                std::net::IpAddr::V4(_) => {
                    self.v4.insert(format!("{device} . {a}"));
                }
                std::net::IpAddr::V6(v6) => {
                    self.v6.insert(format!("{device} . {a}"));
                    self.nd
                        .insert(format!("{device} . 0x{:032x}", u128::from(v6)));
                }
            }
        }
        self.devices.insert(device);
    }
}

/// Connection-tracking zones: one per VPC on this host, so that two equal 5-tuples in two
/// VPCs (overlapping CIDRs are normal) are two connections, and a packet of one tenant never
/// rides on another's established flow. A packet takes the zone of the device it came in by
/// (an interface's device, or a VPC's overlay device), or else the zone of the device the
/// host's routing sends it out by (`fib daddr oifname`: traffic from the host's shared
/// uplinks, routed as it will really go, which also tells apart equal addresses of two VPCs
/// on one host); otherwise zone 0, which is also the classic network's (ECS's classic
/// network is one shared network).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Zones {
    /// Device (quoted) → zone (never 0: zone 0 needs no entry).
    pub by_device: BTreeMap<String, u16>,
}

impl Zones {
    /// Sets the zone of packets coming in by `device`, or routed out by it.
    pub fn device(&mut self, device: &str, zone: u16) {
        if zone != 0 {
            self.by_device.insert(quote(device), zone);
        }
    }

    /// The chain that puts a packet in `zone`.
    fn chain(zone: u16) -> String {
        format!("zone_{zone}")
    }

    /// The zones in use, each with its chain.
    fn chains(&self) -> BTreeSet<u16> {
        self.by_device.values().copied().collect()
    }

    /// The dispatch maps' entries (both maps hold the same ones).
    fn entries(&self) -> BTreeMap<String, Verdict> {
        self.by_device
            .iter()
            .map(|(d, z)| (d.clone(), Verdict::Jump(Zones::chain(*z))))
            .collect()
    }
}

/// The zone dispatch maps: by input device, and by the output device routing chooses.
const ZONE_MAPS: [(&str, &str); 2] = [
    ("zone_in", "type ifname"),
    ("zone_out", "typeof fib daddr oifname"),
];

/// The base chains of the `inet` table, whatever the policy.
///
/// - `zone` runs at priority -450, before defragmentation (-400, `NF_IP_PRI_CONNTRACK_DEFRAG`),
///   which reassembles per zone: a zone set later (at `raw`, -300) let a fragment of one VPC
///   join another VPC's datagram of the same addresses and id.
/// - `zone_local` (output) puts what the host itself sends by an instance's device in that
///   device's zone, so the answers, which come in by the device and take its zone, find
///   their flow.
/// - `host` (input) guards the host itself: an instance device, or a VPC's overlay device,
///   reaches no local address (gateway, underlay, overlay endpoints, management), save
///   neighbour discovery (`neighbour`: an instance's for its own addresses) and answers,
///   from an instance's own addresses, to flows the host opened; ARP is the `arp` table's
///   ([`ARP_TABLE`]). The host offers instances no service.
/// - `forward`: devices failed closed get nothing, established flows included; then
///   anti-spoofing (save what a VPC interface with `SourceDestCheck=false` forwards), then
///   what no instance may send on (router advertisements, redirects,
///   DHCP server messages: `control`), all before the `established` accept; then the
///   interfaces' policy chains.
const BASE_CHAINS: &str = "\tchain zone {
\t\ttype filter hook prerouting priority -450; policy accept;
\t\tiifname vmap @zone_in
\t\tfib daddr oifname vmap @zone_out
\t}
\tchain zone_local {
\t\ttype filter hook output priority -450; policy accept;
\t\toifname vmap @zone_in
\t}
\tchain host {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname @isolated drop
\t\tiifname != @src_devices iifname != @overlays accept
\t\tct direction reply ct state established,related iifname . ip saddr @src_v4 accept
\t\tct direction reply ct state established,related iifname . ip6 saddr @src_v6 accept
\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 jump neighbour
\t\tdrop
\t}
\tchain neighbour {
\t\ticmpv6 type nd-neighbor-advert @th,64,16 & 0xffc0 != 0xfe80 iifname . @th,64,128 != @src_nd drop
\t\tip6 saddr { ::, fe80::/10 } accept
\t\tiifname . ip6 saddr @src_v6 accept
\t\tdrop
\t}
\tchain control {
\t\ticmp type redirect drop
\t\ticmpv6 type { nd-router-advert, nd-redirect } drop
\t\tudp sport . udp dport { 67 . 68, 547 . 546 } drop
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname @isolated drop
\t\toifname @isolated drop
\t\tiifname @src_devices iifname != @forwarders iifname . ip saddr != @src_v4 drop
\t\tiifname @src_devices iifname != @forwarders iifname . ip6 saddr != @src_v6 drop
\t\tiifname @src_devices meta l4proto { icmp, ipv6-icmp, udp } jump control
\t\tct state established,related accept
\t\tct state invalid drop
\t\tiifname vmap @egress
\t\toifname vmap @ingress
\t}
";

/// The table (family `arp`) that anti-spoofs ARP from instance devices to the host: a
/// device may announce or ask from its own IPv4 addresses only, and a device failed closed
/// not at all. The `inet` family never sees ARP.
pub const ARP_TABLE: &str = "stockade";

/// How policy chains are written.
///
/// Linear is the default because of what each costs to program, measured on this machine
/// (`benches/agent.rs`, ARCHITECTURE.md): the flat rendering of the agent benchmark's
/// 1,000 instances (40 chains of 250 rules, each reading a 2,000-member group) is some 12,000
/// tree nodes, which `nft` takes tens of seconds to install and list, against well under a
/// second for the linear chains. Flat pays where a few chains hold many rules (the kernel
/// benchmark's 1,000-rule chain keeps 88–96 % of its 10-rule rate, linear 20 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rendering {
    /// One statement per rule in the engine's order: the kernel tests a new flow against
    /// each in turn, so its cost grows with the rules. Group and list peers are named sets.
    #[default]
    Linear,
    /// At most five single-field map lookups per new flow, whatever the rules (see the
    /// `flat` module); group members stay named by address in class maps, so a join is an
    /// element update. A chain too big to cut falls back to [`Rendering::Linear`].
    Flat,
}

/// Renders the policy of the instances attached on this host, in the default rendering
/// (linear).
///
/// Every attachment gets a dispatch entry in both maps: a jump to the chain of its group list
/// or, when its policy cannot be rendered (unknown instance or group), `drop`.
pub fn render(state: &State, attachments: &[Attachment]) -> Ruleset {
    render_as(state, attachments, Rendering::default())
}

/// [`render`] in the given rendering.
pub fn render_as(state: &State, attachments: &[Attachment], rendering: Rendering) -> Ruleset {
    render_reusing(
        state,
        attachments,
        rendering,
        &Ruleset::default(),
        |_| false,
        |_| false,
    )
}

/// [`render_as`], taking from `previous` the chains whose groups all have `unchanged_rules`
/// (same attributes and rules) and the member sets of groups with `unchanged_members`,
/// instead of rendering them again: a membership change then costs the changed sets and the
/// joiner's chains, not every chain and set of the host.
pub fn render_reusing(
    state: &State,
    attachments: &[Attachment],
    rendering: Rendering,
    previous: &Ruleset,
    unchanged_rules: impl Fn(&SecurityGroupId) -> bool,
    unchanged_members: impl Fn(&SecurityGroupId) -> bool,
) -> Ruleset {
    let unchanged = unchanged_rules;
    let mut out = Ruleset::default();
    for a in attachments {
        let interface = quote(&a.interface);
        match render_instance(state, a, &mut out, previous, rendering, &unchanged) {
            Ok((egress, ingress)) => {
                if let Ok(i) = state.instance(&a.instance) {
                    let own: Vec<std::net::IpAddr> = match a.nic_type {
                        NicType::Intranet => i.intranet_addresses().collect(),
                        NicType::Internet => i.public_ip.into_iter().map(Into::into).collect(),
                    };
                    out.sources.allow(&a.interface, own);
                    // A VPC's only (control refuses it elsewhere; checked again here).
                    let vpc = i.vpc_id.is_some() && a.nic_type == NicType::Intranet;
                    if !i.source_dest_check && vpc {
                        out.sources.forwarders.insert(quote(&a.interface));
                    }
                }
                out.egress.insert(interface.clone(), Verdict::Jump(egress));
                out.ingress.insert(interface, Verdict::Jump(ingress));
            }
            Err(why) => {
                out.egress.insert(interface.clone(), Verdict::Drop);
                out.ingress.insert(interface, Verdict::Drop);
                out.failed.insert(a.instance.clone(), why);
            }
        }
    }
    let by_ident: BTreeMap<String, &policy::GroupEntry> = state
        .groups()
        .map(|g| (ident(g.group.id.as_str()), g))
        .collect();
    for name in referenced_sets(&out.chains) {
        let reusable = name.kind == SetKind::Members
            && by_ident
                .get(&name.id)
                .is_some_and(|g| unchanged_members(&g.group.id));
        let set = match previous.sets.get(&name) {
            Some(set) if reusable => set.clone(),
            _ => member_set(state, &by_ident, &name),
        };
        out.sets.insert(name, set);
    }
    out
}

/// The sets the chains' rules use.
fn referenced_sets(chains: &BTreeMap<String, Arc<[Rule]>>) -> BTreeSet<SetName> {
    chains
        .values()
        .flat_map(|rules| rules.iter())
        .flat_map(|rule| rule.sets.iter().cloned())
        .collect()
}

/// Renders (or reuses) the two chains of one attachment and returns their names.
fn render_instance(
    state: &State,
    a: &Attachment,
    out: &mut Ruleset,
    previous: &Ruleset,
    rendering: Rendering,
    unchanged: &impl Fn(&SecurityGroupId) -> bool,
) -> Result<(String, String), String> {
    let instance = state.instance(&a.instance).map_err(|e| e.to_string())?;
    let groups = &instance.security_groups;
    // A VPC instance's public address reaches it through the VPC's gateway, judged by its
    // groups' rules, which are all intranet ones; only a classic instance's internet
    // interface has rules of its own.
    let nic = match instance.vpc_id {
        Some(_) => NicType::Intranet,
        None => a.nic_type,
    };
    let mut names = Vec::new();
    for direction in [Direction::Egress, Direction::Ingress] {
        let name = chain_name(groups, direction, nic);
        if !out.chains.contains_key(&name) {
            // A tree node's name is a hash of what it decides, so the previous ruleset's
            // node of that name is this one, whatever else changed.
            let node = |node: &str| {
                let statements = previous.chains.get(node)?;
                let map = previous.maps.get(&format!("{node}__m"))?;
                Some((
                    statements.iter().map(|r| r.text.clone()).collect(),
                    map.clone(),
                ))
            };
            let flat = match rendering {
                Rendering::Flat => {
                    let policy = chain_policy(state, groups, direction, nic)?;
                    flat::flat_chain(state, &name, &policy, &node)
                }
                Rendering::Linear => None,
            };
            match flat {
                Some(f) => {
                    let plain = |v: Vec<String>| v.into_iter().map(Rule::plain).collect();
                    out.chains.insert(name.clone(), plain(f.main));
                    for (node, statements) in f.nodes {
                        out.chains.insert(node, plain(statements));
                    }
                    out.maps.extend(f.maps);
                }
                None => {
                    let same_rules = groups.iter().all(unchanged);
                    let rules = match previous.chains.get(&name) {
                        Some(rules) if same_rules && !previous.is_flat(&name) => rules.clone(),
                        _ => {
                            chain_rules(&name, &chain_policy(state, groups, direction, nic)?).into()
                        }
                    };
                    out.chains.insert(name.clone(), rules);
                }
            }
        }
        names.push(name);
    }
    let ingress = names.pop().expect("two chains");
    let egress = names.pop().expect("two chains");
    Ok((egress, ingress))
}

/// `eg_i_sg_abc_sg_def`: direction, interface type, then the group list in order (the order
/// matters for which rule decides, so it is part of the identity).
fn chain_name(groups: &[SecurityGroupId], direction: Direction, nic: NicType) -> String {
    let mut name = String::from(match direction {
        Direction::Egress => "eg_",
        Direction::Ingress => "in_",
    });
    name.push(match nic {
        NicType::Intranet => 'i',
        NicType::Internet => 'p',
    });
    for g in groups {
        name.push('_');
        name.push_str(&ident(g.as_str()));
    }
    name
}

/// nft identifiers allow letters, digits, `_`, `.` and `/`; ECS ids use `-`.
fn ident(s: &str) -> String {
    s.replace('-', "_")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', ""))
}

/// What judges one policy chain: its rules in evaluation order, the groups whose members
/// it accepts after them, and its default.
fn chain_policy<'a>(
    state: &'a State,
    groups: &'a [SecurityGroupId],
    direction: Direction,
    nic: NicType,
) -> Result<ChainPolicy<'a>, String> {
    let ordered = state
        .ordered_permissions(groups, direction, nic)
        .map_err(|e| e.to_string())?;
    let enterprise = groups
        .first()
        .and_then(|g| state.group(g).ok())
        .is_some_and(|g| g.group.group_type == GroupType::Enterprise);
    let mut inner = Vec::new();
    if direction == Direction::Ingress && !enterprise && nic == NicType::Intranet {
        for g in groups {
            let entry = state.group(g).map_err(|e| e.to_string())?;
            if entry.group.inner_access() == InnerAccessPolicy::Accept {
                inner.push(g.clone());
            }
        }
    }
    let default = match direction {
        Direction::Egress if !enterprise => "return",
        _ => "drop",
    };
    Ok(ChainPolicy {
        ordered: ordered.into_iter().map(|(_, p)| p).collect(),
        direction,
        inner,
        default,
    })
}

/// The statements of the linear policy chain `chain`: the rules in evaluation order, then
/// the intra-group accepts and the default, each counting its decisions.
fn chain_rules(chain: &str, policy: &ChainPolicy<'_>) -> Vec<Rule> {
    let mut rules = Vec::new();
    for p in &policy.ordered {
        rules.extend(permission_rules(p));
    }
    for g in &policy.inner {
        for family in [Family::V4, Family::V6] {
            let set = SetName::members(g, family);
            let matches = format!("{} saddr @{set}", family.keyword());
            rules.push(Rule::counted(
                &matches,
                counters::inner(g),
                "accept",
                vec![set],
            ));
        }
    }
    rules.push(Rule::counted(
        "",
        counters::default(chain),
        policy.default,
        Vec::new(),
    ));
    rules
}

/// The statements of one permission (two when its peer is a set with both families).
fn permission_rules(p: &Permission) -> Vec<Rule> {
    let (peer_dir, local_dir) = match p.direction {
        Direction::Ingress => ("saddr", "daddr"),
        Direction::Egress => ("daddr", "saddr"),
    };
    // Each peer: its family, how a statement names it, and the set it reads.
    let peers: Vec<(Family, String, Option<SetName>)> = match &p.peer {
        Peer::Cidr(net) => vec![(Family::of(net), net.to_string(), None)],
        Peer::Group(g) => [Family::V4, Family::V6]
            .map(|family| {
                let set = SetName::members(&g.id, family);
                (family, format!("@{set}"), Some(set))
            })
            .into(),
        Peer::PrefixList(l) => [Family::V4, Family::V6]
            .map(|family| {
                let set = SetName::prefix_list(l, family);
                (family, format!("@{set}"), Some(set))
            })
            .into(),
    };
    let verdict = match (p.policy, p.direction) {
        (Policy::Drop, _) => "drop",
        (Policy::Accept, Direction::Ingress) => "accept",
        // An accepted egress still has to pass the destination's ingress chain.
        (Policy::Accept, Direction::Egress) => "return",
    };
    let mut protocol = String::new();
    let port_set = p.port_list.as_ref().map(SetName::port_list);
    match &p.protocol {
        Protocol::Tcp(ports) | Protocol::Udp(ports) => {
            let name = if matches!(p.protocol, Protocol::Tcp(_)) {
                "tcp"
            } else {
                "udp"
            };
            if let Some(source) = ports.source {
                let _ = write!(protocol, " {name} sport {}", range(source));
            }
            match &port_set {
                Some(set) => {
                    let _ = write!(protocol, " {name} dport @{set}");
                }
                None => {
                    let _ = write!(protocol, " {name} dport {}", range(ports.destination));
                }
            }
        }
        Protocol::Icmp => protocol.push_str(" meta l4proto icmp"),
        Protocol::Icmpv6 => protocol.push_str(" meta l4proto ipv6-icmp"),
        Protocol::Gre => protocol.push_str(" meta l4proto gre"),
        Protocol::All => {}
    }
    peers
        .into_iter()
        .filter(|(family, _, _)| p.local.is_none_or(|l| Family::of(&l) == *family))
        .map(|(family, peer, set)| {
            let fam = family.keyword();
            let mut text = format!("{fam} {peer_dir} {peer}");
            if let Some(local) = p.local {
                let _ = write!(text, " {fam} {local_dir} {local}");
            }
            text.push_str(&protocol);
            Rule::counted(
                &text,
                counters::rule(&p.id),
                verdict,
                set.into_iter().chain(port_set.clone()).collect(),
            )
        })
        .collect()
}

/// Port ranges merged where they overlap or touch: ECS lets a list hold `20/30` beside
/// `22/22`, and nft refuses overlapping intervals in one set.
fn coalesce(ranges: &[model::PortRange]) -> Vec<model::PortRange> {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    let mut out: Vec<model::PortRange> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if u32::from(r.start()) <= u32::from(last.end()) + 1 => {
                let end = last.end().max(r.end());
                *last = model::PortRange::new(last.start(), end).expect("start <= end");
            }
            _ => out.push(r),
        }
    }
    out
}

fn range(r: model::PortRange) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{}-{}", r.start(), r.end())
    }
}

/// The elements of a set named by a rule: group members' intranet addresses or a prefix
/// list's CIDRs, of the set's family.
fn member_set(
    state: &State,
    groups: &BTreeMap<String, &policy::GroupEntry>,
    name: &SetName,
) -> Set {
    let wanted = |a: &std::net::IpAddr| a.is_ipv4() == (name.family == Family::V4);
    let elements = match name.kind {
        SetKind::Members => groups
            .get(&name.id)
            .map(|g| {
                g.members
                    .iter()
                    .filter_map(|i| state.instance(i).ok())
                    .flat_map(|i| i.intranet_addresses())
                    .filter(wanted)
                    .map(|a| a.to_string())
                    .collect()
            })
            .unwrap_or_default(),
        SetKind::PrefixList => state
            .prefix_list_ids()
            .find(|id| ident(id.as_str()) == name.id)
            .map(|id| {
                state
                    .prefix_list(id)
                    .iter()
                    .filter(|n| wanted(&n.addr()))
                    .map(|n| n.to_string())
                    .collect()
            })
            .unwrap_or_default(),
        SetKind::PortList => state
            .port_list_ids()
            .find(|id| ident(id.as_str()) == name.id)
            .map(|id| {
                coalesce(state.port_list(id))
                    .into_iter()
                    .map(range)
                    .collect()
            })
            .unwrap_or_default(),
    };
    Set {
        set_type: name.set_type(),
        elements,
    }
}

fn elements(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

impl Ruleset {
    /// Fails `attachment` closed: its interface maps to `drop` in both directions, and the
    /// chains and sets no other interface uses are dropped from the ruleset (one of them may
    /// be what the kernel refused).
    pub fn quarantine(&mut self, attachment: &Attachment, why: &str) {
        let interface = quote(&attachment.interface);
        self.egress.insert(interface.clone(), Verdict::Drop);
        self.ingress.insert(interface, Verdict::Drop);
        self.failed
            .insert(attachment.instance.clone(), why.to_string());
        self.prune();
    }

    /// Fails a device closed that no attachment explains (its label names no interface
    /// bound here, or several devices claim one): `drop` both ways in the dispatch maps,
    /// and in the `isolated` sets, which drop its packets before the `established` accept
    /// and at the host (so it wins over any attachment of the same device, and a flow
    /// opened before gets nothing more).
    pub fn isolate(&mut self, interface: &str, why: &str) {
        let quoted = quote(interface);
        self.egress.insert(quoted.clone(), Verdict::Drop);
        self.ingress.insert(quoted, Verdict::Drop);
        self.isolated.insert(interface.to_string(), why.to_string());
        self.prune();
    }

    /// Drops the chains no dispatch entry reaches (through jumps, gotos and the maps'
    /// verdicts), the maps no chain kept reads, and the sets no chain uses.
    fn prune(&mut self) {
        let mut chains: BTreeSet<String> = BTreeSet::new();
        let mut maps: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = self
            .egress
            .values()
            .chain(self.ingress.values())
            .filter_map(|v| match v {
                Verdict::Jump(chain) => Some(chain.clone()),
                Verdict::Drop => None,
            })
            .collect();
        while let Some(chain) = todo.pop() {
            if !chains.insert(chain.clone()) {
                continue;
            }
            let Some(rules) = self.chains.get(&chain) else {
                continue;
            };
            for rule in rules.iter() {
                let words: Vec<&str> = rule.text.split_whitespace().collect();
                for (k, word) in words.iter().enumerate() {
                    if let Some(map) = word.strip_prefix('@') {
                        if let Some(m) = self.maps.get(map) {
                            maps.insert(map.to_string());
                            todo.extend(
                                m.elements
                                    .values()
                                    .filter_map(|v| v.strip_prefix("goto "))
                                    .map(str::to_string),
                            );
                        }
                    } else if k > 0 && matches!(words[k - 1], "goto" | "jump") {
                        todo.push(word.to_string());
                    }
                }
            }
        }
        self.chains.retain(|name, _| chains.contains(name));
        self.maps.retain(|name, _| maps.contains(name));
        let sets = referenced_sets(&self.chains);
        self.sets.retain(|name, _| sets.contains(name));
    }

    /// Whether a chain was rendered flat.
    fn is_flat(&self, chain: &str) -> bool {
        self.maps
            .contains_key(&format!("{chain}{}", flat::class_map_suffix(Family::V4)))
    }

    /// The devices failed closed, quoted as set elements.
    fn isolated_devices(&self) -> BTreeSet<String> {
        self.isolated.keys().map(|d| quote(d)).collect()
    }

    /// Replaces the `arp` table ([`ARP_TABLE`]), whatever it holds now.
    fn arp_script(&self, s: &mut String) {
        let t = ARP_TABLE;
        let _ = writeln!(
            s,
            "table arp {t} {{}}\ndelete table arp {t}\ntable arp {t} {{"
        );
        let isolated = self.isolated_devices();
        let sets =
            self.sources
                .arp_sets()
                .into_iter()
                .chain([("isolated", "type ifname;", &isolated)]);
        for (name, declaration, set) in sets {
            let _ = write!(s, "\tset {name} {{ {declaration}");
            if !set.is_empty() {
                let _ = write!(s, " elements = {{ {} }};", elements(set));
            }
            s.push_str(" }\n");
        }
        s.push_str(
            "\tchain input {\n\
             \t\ttype filter hook input priority filter; policy accept;\n\
             \t\tiifname @isolated drop\n\
             \t\tiifname @src_devices iifname . arp saddr ip != @src_v4 drop\n\
             \t}\n}\n",
        );
    }

    /// The hit counters its chains count into.
    pub fn counters(&self) -> BTreeSet<&str> {
        self.chains
            .values()
            .flat_map(|rules| rules.iter())
            .filter_map(|r| r.counter.as_deref())
            .collect()
    }

    /// One transaction that replaces the table, whatever it holds now (or creates it).
    pub fn full_script(&self) -> String {
        let mut s = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
        let _ = writeln!(s, "table inet {TABLE} {{");
        for name in self.counters() {
            let _ = writeln!(s, "\tcounter {name} {{ }}");
        }
        for (name, set) in &self.sets {
            let _ = write!(s, "\tset {name} {{ {}", set.set_type.declaration());
            if !set.elements.is_empty() {
                let _ = write!(s, " elements = {{ {} }};", elements(&set.elements));
            }
            s.push_str(" }\n");
        }
        for (name, map) in &self.maps {
            let _ = write!(s, "\tmap {name} {{ {}", map.declaration);
            if !map.elements.is_empty() {
                let entries: Vec<String> = map
                    .elements
                    .iter()
                    .map(|(k, v)| format!("{k} : {v}"))
                    .collect();
                let _ = write!(s, " elements = {{ {} }};", entries.join(", "));
            }
            s.push_str(" }\n");
        }
        for (name, map) in [("egress", &self.egress), ("ingress", &self.ingress)] {
            let _ = write!(s, "\tmap {name} {{ type ifname : verdict;");
            if !map.is_empty() {
                let entries: Vec<String> = map.iter().map(|(k, v)| format!("{k} : {v}")).collect();
                let _ = write!(s, " elements = {{ {} }};", entries.join(", "));
            }
            s.push_str(" }\n");
        }
        for (name, declaration, set) in self.sources.sets() {
            let _ = write!(s, "\tset {name} {{ {declaration}");
            if !set.is_empty() {
                let _ = write!(s, " elements = {{ {} }};", elements(set));
            }
            s.push_str(" }\n");
        }
        let _ = write!(s, "\tset isolated {{ type ifname;");
        if !self.isolated.is_empty() {
            let _ = write!(
                s,
                " elements = {{ {} }};",
                elements(&self.isolated_devices())
            );
        }
        s.push_str(" }\n");
        let zone_entries = self.zones.entries();
        for (name, key) in ZONE_MAPS {
            let _ = write!(s, "\tmap {name} {{ {key} : verdict;");
            if !zone_entries.is_empty() {
                let entries: Vec<String> = zone_entries
                    .iter()
                    .map(|(k, v)| format!("{k} : {v}"))
                    .collect();
                let _ = write!(s, " elements = {{ {} }};", entries.join(", "));
            }
            s.push_str(" }\n");
        }
        for zone in self.zones.chains() {
            let _ = writeln!(
                s,
                "\tchain {} {{\n\t\tct zone set {zone} accept\n\t}}",
                Zones::chain(zone)
            );
        }
        for (name, rules) in &self.chains {
            let _ = writeln!(s, "\tchain {name} {{");
            for r in rules.iter() {
                let _ = writeln!(s, "\t\t{r}");
            }
            s.push_str("\t}\n");
        }
        s.push_str(BASE_CHAINS);
        s.push_str("}\n");
        self.arp_script(&mut s);
        s
    }

    /// When `self` differs from `old` (what the table holds) only by elements of address
    /// sets, the usual membership change: those changes, deletions first, each set's
    /// elements in one change. `None` otherwise, or past [`MAX_ELEMENTS`].
    pub fn element_changes(&self, old: &Ruleset) -> Option<Vec<SetElements>> {
        let same_chains = self.chains.len() == old.chains.len()
            && self
                .chains
                .iter()
                .zip(&old.chains)
                .all(|((n, c), (o, p))| n == o && (Arc::ptr_eq(c, p) || c == p));
        let rest_same = same_chains
            && self.maps == old.maps
            && self.egress == old.egress
            && self.ingress == old.ingress
            && self.isolated == old.isolated
            && self.zones == old.zones
            && self.sources == old.sources
            && self.sets.len() == old.sets.len();
        if !rest_same {
            return None;
        }
        let mut changes = ElementChanges::default();
        for ((name, set), (was, prev)) in self.sets.iter().zip(&old.sets) {
            if name != was {
                return None;
            }
            changes.push(name, set, prev)?;
        }
        changes.finish()
    }

    /// The member sets of groups `dirty` rendered again from `state`, those that differ
    /// from what `self` holds: everything in the table a change of those groups' members
    /// changes, when none of the members changed is bound here.
    pub fn changed_member_sets(
        &self,
        state: &State,
        dirty: &BTreeSet<SecurityGroupId>,
    ) -> BTreeMap<SetName, Set> {
        let groups: BTreeMap<String, &policy::GroupEntry> = state
            .groups()
            .filter(|g| dirty.contains(&g.group.id))
            .map(|g| (ident(g.group.id.as_str()), g))
            .collect();
        let mut out = BTreeMap::new();
        for group in dirty {
            for family in [Family::V4, Family::V6] {
                let name = SetName::members(group, family);
                if let Some(held) = self.sets.get(&name) {
                    let set = member_set(state, &groups, &name);
                    if set != *held {
                        out.insert(name, set);
                    }
                }
            }
        }
        out
    }

    /// The transaction that gives sets `sets` (sets of `self`) those elements: as element
    /// changes for netlink when they are addresses and few enough, and as a script.
    pub fn set_changes(&self, sets: &BTreeMap<SetName, Set>) -> (Option<Vec<SetElements>>, String) {
        let mut script = String::new();
        let mut changes = Some(ElementChanges::default());
        for (name, set) in sets {
            let prev = self.sets.get(name);
            set_diff(&mut script, name, set, prev);
            changes = changes.and_then(|mut c| {
                c.push(name, set, prev?)?;
                Some(c)
            });
        }
        (changes.and_then(ElementChanges::finish), script)
    }

    /// Takes sets as applied (after [`Ruleset::set_changes`] went through).
    pub fn replace_sets(&mut self, sets: BTreeMap<SetName, Set>) {
        self.sets.extend(sets);
    }

    /// One transaction that turns `old` (what the table holds) into `self`, touching only
    /// what differs: set elements, changed chains, dispatch entries. Empty when equal.
    pub fn diff_script(&self, old: &Ruleset) -> String {
        let t = TABLE;
        let mut s = String::new();
        // New sets, counters and element changes first: chains may start to use them.
        for (name, set) in &self.sets {
            let prev = old.sets.get(name);
            set_diff(&mut s, name, set, prev);
        }
        let (counters, old_counters) = (self.counters(), old.counters());
        for name in counters.difference(&old_counters) {
            let _ = writeln!(s, "add counter inet {t} {name}");
        }
        // New chains first, then new maps, then the chains' statements (which read the
        // maps), then the maps' elements (which go to the chains). A chain must exist
        // before an interval map is added that will go to it: nft 1.0.6 fails to resolve
        // the chain of an element otherwise (`No such file or directory`).
        for name in self.chains.keys() {
            if !old.chains.contains_key(name) {
                let _ = writeln!(s, "add chain inet {t} {name}");
            }
        }
        for (name, map) in &self.maps {
            match old.maps.get(name) {
                Some(prev) if prev.declaration == map.declaration => {}
                Some(_) => {
                    let _ = writeln!(s, "delete map inet {t} {name}");
                    let _ = writeln!(s, "add map inet {t} {name} {{ {} }}", map.declaration);
                }
                None => {
                    let _ = writeln!(s, "add map inet {t} {name} {{ {} }}", map.declaration);
                }
            }
        }
        for (name, rules) in &self.chains {
            match old.chains.get(name) {
                Some(prev) if prev == rules => continue,
                Some(prev) if insert_rules(&mut s, name, prev, rules) => continue,
                Some(_) => {
                    let _ = writeln!(s, "flush chain inet {t} {name}");
                }
                None => {}
            }
            for r in rules.iter() {
                let _ = writeln!(s, "add rule inet {t} {name} {r}");
            }
        }
        let none = BTreeMap::new();
        for (name, map) in &self.maps {
            let prev = match old.maps.get(name) {
                Some(prev) if prev.declaration == map.declaration => &prev.elements,
                _ => &none,
            };
            elements_diff(&mut s, name, &map.elements, prev);
        }
        for (map, new, prev) in [
            ("egress", &self.egress, &old.egress),
            ("ingress", &self.ingress, &old.ingress),
        ] {
            map_diff(&mut s, map, new, prev);
        }
        let (new_zones, old_zones) = (self.zones.chains(), old.zones.chains());
        for zone in new_zones.difference(&old_zones) {
            let chain = Zones::chain(*zone);
            let _ = writeln!(s, "add chain inet {t} {chain}");
            let _ = writeln!(s, "add rule inet {t} {chain} ct zone set {zone} accept");
        }
        let (new_entries, old_entries) = (self.zones.entries(), old.zones.entries());
        for (map, _) in ZONE_MAPS {
            map_diff(&mut s, map, &new_entries, &old_entries);
        }
        let (isolated, was_isolated) = (self.isolated_devices(), old.isolated_devices());
        let inet = (self.sources.sets().into_iter()).zip(old.sources.sets());
        let arp = (self.sources.arp_sets().into_iter()).zip(old.sources.arp_sets());
        let both = [("inet", TABLE), ("arp", ARP_TABLE)].map(|(family, table)| {
            (
                family,
                table,
                ("isolated", "", &isolated),
                ("isolated", "", &was_isolated),
            )
        });
        let changes = inet
            .map(|(n, o)| ("inet", TABLE, n, o))
            .chain(arp.map(|(n, o)| ("arp", ARP_TABLE, n, o)))
            .chain(both);
        for (family, table, (name, _, new), (_, _, prev)) in changes {
            let gone: BTreeSet<String> = prev.difference(new).cloned().collect();
            if !gone.is_empty() {
                let _ = writeln!(
                    s,
                    "delete element {family} {table} {name} {{ {} }}",
                    elements(&gone)
                );
            }
            let added: BTreeSet<String> = new.difference(prev).cloned().collect();
            if !added.is_empty() {
                let _ = writeln!(
                    s,
                    "add element {family} {table} {name} {{ {} }}",
                    elements(&added)
                );
            }
        }
        // Removals last, once nothing refers to them.
        for zone in old_zones.difference(&new_zones) {
            let _ = writeln!(s, "delete chain inet {t} {}", Zones::chain(*zone));
        }
        // A map's elements hold the chains they go to: empty the maps going away first, then
        // delete the chains (those that are not tree nodes first: their statements go to
        // nodes), then the maps.
        for name in old.maps.keys() {
            if !self.maps.contains_key(name) {
                let _ = writeln!(s, "flush map inet {t} {name}");
            }
        }
        let gone: Vec<&String> = old
            .chains
            .keys()
            .filter(|name| !self.chains.contains_key(*name))
            .collect();
        let (nodes, others): (Vec<&String>, Vec<&String>) =
            gone.into_iter().partition(|n| n.contains("__"));
        for name in others.into_iter().chain(nodes) {
            let _ = writeln!(s, "delete chain inet {t} {name}");
        }
        for name in old.maps.keys() {
            if !self.maps.contains_key(name) {
                let _ = writeln!(s, "delete map inet {t} {name}");
            }
        }
        for name in old.sets.keys() {
            if !self.sets.contains_key(name) {
                let _ = writeln!(s, "delete set inet {t} {name}");
            }
        }
        for name in old_counters.difference(&counters) {
            let _ = writeln!(s, "delete counter inet {t} {name}");
        }
        s
    }
}

/// When `new` is `old` with rules inserted (an authorisation, a join that adds a group's
/// rules), writes the insertions at their positions and returns true. Inserting touches no
/// existing rule; a flush deletes rules, and deletions make the kernel wait for an RCU grace
/// period (about 15 ms per transaction here) before the transaction returns.
fn insert_rules(s: &mut String, chain: &str, old: &[Rule], new: &[Rule]) -> bool {
    let mut matched = 0;
    let mut inserts = Vec::new();
    for (position, rule) in new.iter().enumerate() {
        if old.get(matched) == Some(rule) {
            matched += 1;
        } else {
            inserts.push((position, rule));
        }
    }
    if matched != old.len() {
        return false;
    }
    // In increasing final position, every rule before the insertion point is in place, so
    // the rule now at `position` is the one the new rule must precede.
    for (len, (position, rule)) in (old.len()..).zip(inserts) {
        if position < len {
            let _ = writeln!(
                s,
                "insert rule inet {TABLE} {chain} index {position} {rule}"
            );
        } else {
            let _ = writeln!(s, "add rule inet {TABLE} {chain} {rule}");
        }
    }
    true
}

/// The element changes that turn map `prev` into `new`.
/// [`map_diff`] for maps with many elements: one statement for all deletions and one for
/// all additions (the flat maps change by hundreds of elements at once).
fn elements_diff(
    s: &mut String,
    map: &str,
    new: &BTreeMap<String, String>,
    prev: &BTreeMap<String, String>,
) {
    let gone: Vec<&str> = prev
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    if !gone.is_empty() {
        let _ = writeln!(
            s,
            "delete element inet {TABLE} {map} {{ {} }}",
            gone.join(", ")
        );
    }
    let added: Vec<String> = new
        .iter()
        .filter(|(k, v)| prev.get(*k) != Some(v))
        .map(|(k, v)| format!("{k} : {v}"))
        .collect();
    if !added.is_empty() {
        let _ = writeln!(
            s,
            "add element inet {TABLE} {map} {{ {} }}",
            added.join(", ")
        );
    }
}

fn map_diff<V: PartialEq + fmt::Display>(
    s: &mut String,
    map: &str,
    new: &BTreeMap<String, V>,
    prev: &BTreeMap<String, V>,
) {
    for (k, v) in prev {
        if new.get(k) != Some(v) {
            let _ = writeln!(s, "delete element inet {TABLE} {map} {{ {k} }}");
        }
    }
    for (k, v) in new {
        if prev.get(k) != Some(v) {
            let _ = writeln!(s, "add element inet {TABLE} {map} {{ {k} : {v} }}");
        }
    }
}

/// Writes what turns set `name` from `prev` (if the table has it) into `set`.
fn set_diff(s: &mut String, name: &SetName, set: &Set, prev: Option<&Set>) {
    let t = TABLE;
    match prev {
        Some(prev) if prev.set_type == set.set_type => {
            if prev.elements == set.elements {
                return;
            }
            if set.set_type.interval() {
                let _ = writeln!(s, "flush set inet {t} {name}");
                add_elements(s, name, &set.elements);
            } else {
                let gone: BTreeSet<String> =
                    prev.elements.difference(&set.elements).cloned().collect();
                let new: BTreeSet<String> =
                    set.elements.difference(&prev.elements).cloned().collect();
                if !gone.is_empty() {
                    let _ = writeln!(
                        s,
                        "delete element inet {t} {name} {{ {} }}",
                        elements(&gone)
                    );
                }
                add_elements(s, name, &new);
            }
        }
        _ => {
            if prev.is_some() {
                // A type change cannot happen with our names; replace to be safe.
                let _ = writeln!(s, "delete set inet {t} {name}");
            }
            let _ = writeln!(
                s,
                "add set inet {t} {name} {{ {} }}",
                set.set_type.declaration()
            );
            add_elements(s, name, &set.elements);
        }
    }
}

/// Set element changes being gathered for netlink: deletions, then additions.
#[derive(Default)]
struct ElementChanges {
    deleted: Vec<SetElements>,
    added: Vec<SetElements>,
    count: usize,
}

impl ElementChanges {
    /// Adds what turns `prev` into `set`; `None` when netlink cannot carry it (not plain
    /// addresses, or another type).
    fn push(&mut self, name: &SetName, set: &Set, prev: &Set) -> Option<()> {
        if set.set_type != prev.set_type {
            return None;
        }
        if set.elements == prev.elements {
            return Some(());
        }
        if !matches!(set.set_type, SetType::Ipv4Addr | SetType::Ipv6Addr) {
            return None;
        }
        let addresses = |elements: std::collections::btree_set::Difference<'_, String>| {
            elements
                .map(|e| e.parse::<std::net::IpAddr>().ok())
                .collect::<Option<Vec<_>>>()
        };
        for (add, elements) in [
            (false, addresses(prev.elements.difference(&set.elements))?),
            (true, addresses(set.elements.difference(&prev.elements))?),
        ] {
            self.count += elements.len();
            if !elements.is_empty() {
                let list = if add {
                    &mut self.added
                } else {
                    &mut self.deleted
                };
                list.push(SetElements {
                    set: name.to_string(),
                    add,
                    elements,
                });
            }
        }
        Some(())
    }

    /// The changes, deletions first; `None` past [`MAX_ELEMENTS`].
    fn finish(mut self) -> Option<Vec<SetElements>> {
        if self.count > MAX_ELEMENTS {
            return None;
        }
        self.deleted.append(&mut self.added);
        Some(self.deleted)
    }
}

fn add_elements(s: &mut String, name: &SetName, set: &BTreeSet<String>) {
    if !set.is_empty() {
        let _ = writeln!(s, "add element inet {TABLE} {name} {{ {} }}", elements(set));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripts list sets in map order; it must be the order of their printed names, which
    /// the snapshots (and operators reading `nft list`) see.
    #[test]
    fn set_names_sort_as_they_print() {
        let mut names = Vec::new();
        for kind in [SetKind::PortList, SetKind::PrefixList, SetKind::Members] {
            for family in [Family::V6, Family::V4] {
                for id in ["sg_b", "sg_a", "pl_x"] {
                    names.push(SetName {
                        kind,
                        family,
                        id: id.into(),
                    });
                }
            }
        }
        let mut by_value = names.clone();
        by_value.sort();
        let mut by_text: Vec<String> = names.iter().map(ToString::to_string).collect();
        by_text.sort();
        let printed: Vec<String> = by_value.iter().map(ToString::to_string).collect();
        assert_eq!(printed, by_text);
        assert_eq!(printed[0], "g4_pl_x");
        assert_eq!(
            Verdict::Jump("in_i_sg_a".into()).to_string(),
            "jump in_i_sg_a"
        );
    }
}
