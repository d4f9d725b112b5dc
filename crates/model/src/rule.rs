//! Security group rules (ECS "permissions") and the small values they are made of.
//!
//! Wire strings are parsed here once, with the exact ECS error for each failure; after that,
//! a [`Permission`] cannot be in a state ECS would reject: a TCP rule always has a port range,
//! an ICMP rule never has one, a range is never `200/1`, a group reference is always intranet,
//! and the addresses of one rule are all of one family.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::ModelError;
use crate::ids::{AccountId, PortRangeListId, PrefixListId, SecurityGroupId, SecurityGroupRuleId};

/// Which way a rule filters, seen from the instance: inbound or outbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Inbound (`AuthorizeSecurityGroup`).
    Ingress,
    /// Outbound (`AuthorizeSecurityGroupEgress`).
    Egress,
}

impl Direction {
    /// The wire form used in `DescribeSecurityGroupAttribute` (`ingress` / `egress`).
    pub fn as_wire(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// What a matching rule does with a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// Let the flow through (`accept`).
    Accept,
    /// Silently drop it (`drop`): the client sees a timeout.
    Drop,
}

impl Policy {
    /// The capitalised form ECS responses echo (`Accept` / `Drop`).
    pub fn as_wire(self) -> &'static str {
        match self {
            Policy::Accept => "Accept",
            Policy::Drop => "Drop",
        }
    }
}

/// Where a rule stands in the order the engine applies one group's rules: priority (1
/// first), then drop before accept; creation order (and, across groups, the group's position
/// in the instance's list) breaks what remains. One definition for the engine and every view
/// that lists rules "in the order they apply".
pub fn precedence(priority: Priority, policy: Policy) -> (Priority, bool) {
    (priority, policy == Policy::Accept)
}

impl FromStr for Policy {
    type Err = ModelError;

    /// Case-insensitive, as ECS accepts both `accept` and `Accept`.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "accept" => Ok(Policy::Accept),
            "drop" => Ok(Policy::Drop),
            _ => Err(ModelError::PolicyMalformed(s.to_string())),
        }
    }
}

/// A rule's priority, 1 (highest, the default) to 100 (lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(u8);

impl Priority {
    /// The highest priority, and the default when a request gives none.
    pub const HIGHEST: Priority = Priority(1);
    /// The lowest priority.
    pub const LOWEST: Priority = Priority(100);

    /// Builds a priority from a number, if it is in 1–100.
    pub fn new(value: u8) -> Option<Priority> {
        (1..=100).contains(&value).then_some(Priority(value))
    }

    /// The number, 1–100.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::HIGHEST
    }
}

impl FromStr for Priority {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        let value =
            strict_integer(s).ok_or_else(|| ModelError::PriorityMalformed(s.to_string()))?;
        u8::try_from(value)
            .ok()
            .and_then(Priority::new)
            .ok_or_else(|| ModelError::PriorityOutOfRange(s.to_string()))
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The network interface a rule applies to. VPC rules are always `intranet`; classic-network
/// rules choose between the intranet and the internet interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NicType {
    /// The private (internal) network.
    Intranet,
    /// The public interface of a classic-network instance.
    Internet,
}

impl NicType {
    /// The wire form (`intranet` / `internet`).
    pub fn as_wire(self) -> &'static str {
        match self {
            NicType::Intranet => "intranet",
            NicType::Internet => "internet",
        }
    }
}

impl FromStr for NicType {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "intranet" => Ok(NicType::Intranet),
            "internet" => Ok(NicType::Internet),
            _ => Err(ModelError::NicTypeNotSupported(s.to_string())),
        }
    }
}

/// The network a group or an instance lives in: a VPC, or the retired classic network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkType {
    /// A virtual private cloud: rules are intranet only.
    Vpc,
    /// The classic network: intranet and internet rules.
    Classic,
}

/// The protocol names ECS accepts in `IpProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpProtocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1), IPv4 only.
    Icmp,
    /// ICMPv6 (58), IPv6 only.
    Icmpv6,
    /// GRE (47).
    Gre,
    /// Every protocol.
    All,
}

/// IANA protocol numbers of the protocols ECS names.
pub mod ip_proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;

    /// Whether packets of this protocol carry ports that rules match (TCP and UDP).
    pub fn has_ports(protocol: u8) -> bool {
        matches!(protocol, TCP | UDP)
    }
}

impl IpProtocol {
    /// The protocol ECS names by this IANA number, if any (`ALL` has no number).
    pub fn from_number(n: u8) -> Option<IpProtocol> {
        match n {
            ip_proto::TCP => Some(IpProtocol::Tcp),
            ip_proto::UDP => Some(IpProtocol::Udp),
            ip_proto::ICMP => Some(IpProtocol::Icmp),
            ip_proto::ICMPV6 => Some(IpProtocol::Icmpv6),
            ip_proto::GRE => Some(IpProtocol::Gre),
            _ => None,
        }
    }

    /// The IANA number, or `None` for `ALL`.
    pub fn number(self) -> Option<u8> {
        match self {
            IpProtocol::Tcp => Some(ip_proto::TCP),
            IpProtocol::Udp => Some(ip_proto::UDP),
            IpProtocol::Icmp => Some(ip_proto::ICMP),
            IpProtocol::Icmpv6 => Some(ip_proto::ICMPV6),
            IpProtocol::Gre => Some(ip_proto::GRE),
            IpProtocol::All => None,
        }
    }

    /// Whether rules of this protocol carry port ranges.
    pub fn has_ports(self) -> bool {
        matches!(self, IpProtocol::Tcp | IpProtocol::Udp)
    }

    /// The upper-case form ECS responses echo (`TCP`, `ICMPv6`, `ALL`).
    pub fn as_wire(self) -> &'static str {
        match self {
            IpProtocol::Tcp => "TCP",
            IpProtocol::Udp => "UDP",
            IpProtocol::Icmp => "ICMP",
            IpProtocol::Icmpv6 => "ICMPv6",
            IpProtocol::Gre => "GRE",
            IpProtocol::All => "ALL",
        }
    }
}

impl FromStr for IpProtocol {
    type Err = ModelError;

    /// Case-insensitive. IANA numbers are not accepted: ECS documents them for some regions
    /// only, and each numbered protocol would need its own port semantics.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(IpProtocol::Tcp),
            "udp" => Ok(IpProtocol::Udp),
            "icmp" => Ok(IpProtocol::Icmp),
            "icmpv6" => Ok(IpProtocol::Icmpv6),
            "gre" => Ok(IpProtocol::Gre),
            "all" => Ok(IpProtocol::All),
            _ => Err(ModelError::IpProtocolNotSupported(s.to_string())),
        }
    }
}

/// The protocol of a packet a flow question names (`DescribeFlowVerdict`'s `IpProtocol`,
/// `stockade explain --proto`): a name ECS knows, or an IANA number. `ALL` is refused: a
/// packet has one protocol. Case-insensitive.
pub fn packet_protocol(s: &str) -> Result<u8, ModelError> {
    match s.parse::<IpProtocol>().ok().and_then(IpProtocol::number) {
        Some(n) => Ok(n),
        None => s
            .trim()
            .parse::<u8>()
            .map_err(|_| ModelError::PacketProtocolNotSupported(s.to_string())),
    }
}

/// The layer-4 part of a flow question, parsed once for the API and the CLI: the protocol
/// number and the ports packets of it carry (both 0 for protocols without ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowPorts {
    /// IANA protocol number.
    pub protocol: u8,
    /// Source port (the ephemeral [`FlowPorts::DEFAULT_SOURCE_PORT`] when not given).
    pub source_port: u16,
    /// Destination port.
    pub destination_port: u16,
}

impl FlowPorts {
    /// The source port of a flow that names none: the first ephemeral port.
    pub const DEFAULT_SOURCE_PORT: u16 = 49152;

    /// Parses a flow's protocol and checks its ports: TCP and UDP need a destination port,
    /// other protocols ignore both.
    pub fn parse(
        protocol: &str,
        destination_port: Option<u16>,
        source_port: Option<u16>,
    ) -> Result<FlowPorts, ModelError> {
        let protocol = packet_protocol(protocol)?;
        if !ip_proto::has_ports(protocol) {
            return Ok(FlowPorts {
                protocol,
                source_port: 0,
                destination_port: 0,
            });
        }
        Ok(FlowPorts {
            protocol,
            source_port: source_port.unwrap_or(FlowPorts::DEFAULT_SOURCE_PORT),
            destination_port: destination_port.ok_or(ModelError::Missing("DestinationPort"))?,
        })
    }
}

/// The protocols an analysis probes: those rules can name, and one class for every other
/// protocol (which only `ALL` rules and the defaults decide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// ICMPv6.
    Icmpv6,
    /// GRE.
    Gre,
    /// Every protocol ECS does not name.
    Other,
}

impl ProbeProtocol {
    /// Every class, in the order analyses report them.
    pub const ALL: [ProbeProtocol; 6] = [
        ProbeProtocol::Tcp,
        ProbeProtocol::Udp,
        ProbeProtocol::Icmp,
        ProbeProtocol::Icmpv6,
        ProbeProtocol::Gre,
        ProbeProtocol::Other,
    ];

    /// The protocol ECS names for the class (`None` for `Other`).
    pub fn ip_protocol(self) -> Option<IpProtocol> {
        match self {
            ProbeProtocol::Tcp => Some(IpProtocol::Tcp),
            ProbeProtocol::Udp => Some(IpProtocol::Udp),
            ProbeProtocol::Icmp => Some(IpProtocol::Icmp),
            ProbeProtocol::Icmpv6 => Some(IpProtocol::Icmpv6),
            ProbeProtocol::Gre => Some(IpProtocol::Gre),
            ProbeProtocol::Other => None,
        }
    }

    /// The protocol number of a probe packet of this class (`Other`: ESP, 50, which no rule
    /// but `ALL` names).
    pub fn number(self) -> u8 {
        self.ip_protocol()
            .and_then(IpProtocol::number)
            .unwrap_or(50)
    }

    /// Whether probes of this class have ports (TCP and UDP).
    pub fn has_ports(self) -> bool {
        self.ip_protocol().is_some_and(IpProtocol::has_ports)
    }

    /// The name answers use (`TCP`, ..., `OTHER`).
    pub fn as_wire(self) -> &'static str {
        self.ip_protocol().map_or("OTHER", IpProtocol::as_wire)
    }

    /// The `PortRange` answers show for `ports` of this class: `start/end`, or `-1/-1` for
    /// classes without ports.
    pub fn port_range_wire(self, ports: PortSpan) -> String {
        if self.has_ports() {
            format!("{}/{}", ports.start, ports.end)
        } else {
            "-1/-1".to_string()
        }
    }

    /// The `PortRange` of a rule that names exactly this part of an instance's space, or
    /// `None` when no rule can: the `Other` class (only `ALL` names it, and the named
    /// classes' parts already show that) and port 0 alone (ECS's ranges start at 1; a span
    /// from 0 is shown from 1). Answers list only what a user can write back as a rule.
    pub fn rule_port_range(self, ports: PortSpan) -> Option<String> {
        match self {
            ProbeProtocol::Other => None,
            _ if !self.has_ports() => Some("-1/-1".to_string()),
            _ if ports.end == 0 => None,
            _ => Some(format!("{}/{}", ports.start.max(1), ports.end)),
        }
    }
}

/// An inclusive span of destination ports in probe space. Unlike [`PortRange`] it may
/// include port 0 (which only rules for every port and the defaults accept), and protocols
/// without ports have the single span `0..=0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpan {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl PortSpan {
    /// The span of protocols without ports.
    pub const NONE: PortSpan = PortSpan { start: 0, end: 0 };

    /// Whether `port` is inside the span.
    pub fn contains(self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

/// An inclusive TCP/UDP port range, `start/end` on the wire, `1 <= start <= end <= 65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// Every port, `1/65535`.
    pub const ALL: PortRange = PortRange {
        start: 1,
        end: 65535,
    };

    /// Builds a range if `1 <= start <= end`.
    pub fn new(start: u16, end: u16) -> Option<PortRange> {
        (start >= 1 && start <= end).then_some(PortRange { start, end })
    }

    /// A single port, `p/p`.
    pub fn single(port: u16) -> Option<PortRange> {
        PortRange::new(port, port)
    }

    /// First port of the range.
    pub fn start(self) -> u16 {
        self.start
    }

    /// Last port of the range (inclusive).
    pub fn end(self) -> u16 {
        self.end
    }

    /// Whether `port` is inside the range.
    pub fn contains(self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.start, self.end)
    }
}

/// The result of reading a `start/end` string: either a real range or the `-1/-1` that ECS
/// uses for "no ports" (ICMP, GRE, ALL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WirePorts {
    Range(PortRange),
    Unset,
}

/// A decimal integer as ECS writes one: ASCII digits without sign, spaces or leading zeros
/// (and `-1`, the "no ports" bound). ECS refuses `+80`, `08` and ` 80`; so does this.
pub(crate) fn strict_integer(s: &str) -> Option<i64> {
    if s == "-1" {
        return Some(-1);
    }
    let canonical = !s.is_empty()
        && s.len() <= 18
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Reads `a/b`. `Err(true)` when the text is not two integers, `Err(false)` when the integers
/// are out of range or reversed.
fn parse_wire_ports(s: &str) -> Result<WirePorts, bool> {
    let (a, b) = s.split_once('/').ok_or(true)?;
    let a = strict_integer(a).ok_or(true)?;
    let b = strict_integer(b).ok_or(true)?;
    if a == -1 && b == -1 {
        return Ok(WirePorts::Unset);
    }
    let (Ok(a), Ok(b)) = (u16::try_from(a), u16::try_from(b)) else {
        return Err(false);
    };
    PortRange::new(a, b).map(WirePorts::Range).ok_or(false)
}

impl FromStr for PortRange {
    type Err = ModelError;

    /// Parses `start/end` as a TCP/UDP range (so `-1/-1` is a protocol mismatch here).
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match parse_wire_ports(s) {
            Ok(WirePorts::Range(r)) => Ok(r),
            Ok(WirePorts::Unset) => Err(ModelError::ProtocolAndPortRangeMismatch),
            Err(true) => Err(ModelError::PortRangeMalformed(s.to_string())),
            Err(false) => Err(ModelError::PortRangeOutOfRange(s.to_string())),
        }
    }
}

/// The ports of a TCP or UDP rule: a destination range (the ECS `PortRange`) and an optional
/// source range (the quintuple-rule `SourcePortRange`; `None` = any source port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ports {
    /// Destination ports (`PortRange`).
    pub destination: PortRange,
    /// Source ports (`SourcePortRange`), `None` for any.
    pub source: Option<PortRange>,
}

impl Ports {
    /// Destination ports only, any source port.
    pub fn to(destination: PortRange) -> Ports {
        Ports {
            destination,
            source: None,
        }
    }
}

/// A rule's protocol together with the ports that only some protocols have, so that a TCP
/// rule without ports or an ICMP rule with ports cannot be written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP with its ports.
    Tcp(Ports),
    /// UDP with its ports.
    Udp(Ports),
    /// ICMP (v4), every type.
    Icmp,
    /// ICMPv6, every type.
    Icmpv6,
    /// GRE.
    Gre,
    /// Every protocol and port.
    All,
}

impl Protocol {
    /// The protocol name without ports.
    pub fn ip_protocol(&self) -> IpProtocol {
        match self {
            Protocol::Tcp(_) => IpProtocol::Tcp,
            Protocol::Udp(_) => IpProtocol::Udp,
            Protocol::Icmp => IpProtocol::Icmp,
            Protocol::Icmpv6 => IpProtocol::Icmpv6,
            Protocol::Gre => IpProtocol::Gre,
            Protocol::All => IpProtocol::All,
        }
    }

    /// The ports, for TCP and UDP.
    pub fn ports(&self) -> Option<Ports> {
        match self {
            Protocol::Tcp(p) | Protocol::Udp(p) => Some(*p),
            _ => None,
        }
    }

    /// The `PortRange` wire value (`-1/-1` for protocols without ports).
    pub fn port_range_wire(&self) -> String {
        self.ports()
            .map_or_else(|| "-1/-1".to_string(), |p| p.destination.to_string())
    }

    /// The `SourcePortRange` wire value (empty when unset, as ECS answers).
    pub fn source_port_range_wire(&self) -> String {
        self.ports()
            .and_then(|p| p.source)
            .map_or_else(String::new, |r| r.to_string())
    }

    /// Whether a packet with this IANA protocol number and ports matches. Ports are read
    /// only for TCP and UDP rules; for other packets callers pass 0.
    pub fn matches(&self, protocol: u8, source_port: u16, destination_port: u16) -> bool {
        match self {
            Protocol::All => true,
            Protocol::Tcp(p) | Protocol::Udp(p) => {
                self.ip_protocol().number() == Some(protocol)
                    && p.destination.contains(destination_port)
                    && p.source.is_none_or(|s| s.contains(source_port))
            }
            other => other.ip_protocol().number() == Some(protocol),
        }
    }
}

/// The other side of a rule: who may send (ingress) or be sent to (egress).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// An IPv4 or IPv6 CIDR block (a bare address is a /32 or /128).
    Cidr(IpNet),
    /// The intranet addresses of every instance in a security group.
    Group(GroupRef),
    /// The CIDRs of a prefix list.
    PrefixList(PrefixListId),
}

/// A reference to a security group as a rule's peer, possibly of another account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupRef {
    /// The referenced group.
    pub id: SecurityGroupId,
    /// `SourceGroupOwnerAccount` / `DestGroupOwnerAccount`, as given.
    pub owner_account: Option<String>,
    /// `SourceGroupOwnerId` / `DestGroupOwnerId`, as given.
    pub owner_id: Option<AccountId>,
}

impl GroupRef {
    /// A reference to a group of the caller's own account.
    pub fn local(id: SecurityGroupId) -> GroupRef {
        GroupRef {
            id,
            owner_account: None,
            owner_id: None,
        }
    }
}

/// One security group rule after validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    /// The rule id (`sgr-...`).
    pub id: SecurityGroupRuleId,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Accept or drop.
    pub policy: Policy,
    /// 1 (first) to 100.
    pub priority: Priority,
    /// Protocol and ports. For a rule naming a port list the destination range here is
    /// [`PortRange::ALL`], a placeholder: the list's entries are the ports (see
    /// [`Permission::port_list`]).
    pub protocol: Protocol,
    /// `PortRangeListId`: the destination ports are this list's entries (TCP and UDP only).
    /// Whatever judges ports reads them through the policy state, never from `protocol`.
    pub port_list: Option<PortRangeListId>,
    /// Source (ingress) or destination (egress).
    pub peer: Peer,
    /// The instance-side address filter of quintuple rules: `DestCidrIp` on ingress,
    /// `SourceCidrIp` on egress. `None` matches every local address.
    pub local: Option<IpNet>,
    /// The interface the rule applies to.
    pub nic_type: NicType,
    /// Free text, at most 512 characters.
    pub description: String,
}

impl Permission {
    /// Whether two permissions are the same rule in the ECS sense (every matching and
    /// deciding field equal; id and description do not count). Adding such a rule again is
    /// a successful no-op.
    pub fn same_rule(&self, other: &Permission) -> bool {
        self.direction == other.direction
            && self.policy == other.policy
            && self.priority == other.priority
            && self.protocol == other.protocol
            && self.port_list == other.port_list
            && self.peer == other.peer
            && self.local == other.local
            && self.nic_type == other.nic_type
    }

    /// Whether the peer side of the rule is an address block containing `addr`. Group and
    /// prefix-list peers need the policy state to resolve and answer `None` here.
    pub fn cidr_peer_contains(&self, addr: IpAddr) -> Option<bool> {
        match &self.peer {
            Peer::Cidr(net) => Some(net.contains(&addr)),
            _ => None,
        }
    }

    /// The wire form of the rule: what [`PermissionFields::parse`] turns back into this
    /// permission (with the same id, direction and network), and what responses show.
    pub fn to_fields(&self) -> PermissionFields {
        let net = |n: &IpNet| n.to_string();
        let split = |n: Option<&IpNet>| match n {
            Some(n @ IpNet::V4(_)) => (Some(net(n)), None),
            Some(n @ IpNet::V6(_)) => (None, Some(net(n))),
            None => (None, None),
        };
        let peer_cidr = match &self.peer {
            Peer::Cidr(n) => Some(n),
            _ => None,
        };
        let (peer4, peer6) = split(peer_cidr);
        let (local4, local6) = split(self.local.as_ref());
        let ((source4, source6), (dest4, dest6)) = match self.direction {
            Direction::Ingress => ((peer4, peer6), (local4, local6)),
            Direction::Egress => ((local4, local6), (peer4, peer6)),
        };
        let (group_id, group_owner_account, group_owner_id) = match &self.peer {
            Peer::Group(g) => (
                Some(g.id.to_string()),
                g.owner_account.clone(),
                g.owner_id.map(|o| o.to_string()),
            ),
            _ => (None, None, None),
        };
        PermissionFields {
            policy: Some(self.policy.as_wire().to_string()),
            priority: Some(self.priority.to_string()),
            ip_protocol: Some(self.protocol.ip_protocol().as_wire().to_string()),
            // A list rule answers `-1/-1` (no range of its own), which `spec` reads back.
            port_range: Some(if self.port_list.is_some() {
                "-1/-1".to_string()
            } else {
                self.protocol.port_range_wire()
            }),
            source_port_range: self
                .protocol
                .ports()
                .and_then(|p| p.source)
                .map(|r| r.to_string()),
            source_cidr_ip: source4,
            ipv6_source_cidr_ip: source6,
            dest_cidr_ip: dest4,
            ipv6_dest_cidr_ip: dest6,
            group_id,
            group_owner_account,
            group_owner_id,
            prefix_list_id: match &self.peer {
                Peer::PrefixList(l) => Some(l.to_string()),
                _ => None,
            },
            port_range_list_id: self.port_list.as_ref().map(ToString::to_string),
            nic_type: Some(self.nic_type.as_wire().to_string()),
            description: Some(self.description.clone()),
        }
    }

    /// Whether the local address filter admits `addr`.
    pub fn local_contains(&self, addr: IpAddr) -> bool {
        self.local.is_none_or(|net| net.contains(&addr))
    }
}

/// Declares [`PermissionFields`] from the one table of rule fields: each field's name on the
/// wire for an ingress and for an egress rule (the peer-group and prefix-list fields are
/// `Source*` on ingress and `Dest*` on egress) and its store column. Every reader and writer of
/// rules (API parameters and responses, the store, the policy document) goes through the
/// functions generated here, so a field is added in one line.
macro_rules! permission_fields {
    ($($(#[$doc:meta])* $field:ident: $ingress:literal / $egress:literal => $column:literal,)*) => {
        /// A rule as it arrives on the wire: the strings of one `Permissions.N.*` entry, of the
        /// flat parameters, of a stored row or of a policy document, named as ECS names them.
        /// `None` means the field was absent.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct PermissionFields {
            $($(#[$doc])* pub $field: Option<String>,)*
        }

        impl PermissionFields {
            /// The store columns of the fields, in table order.
            pub const COLUMNS: &'static [&'static str] = &[$($column),*];

            /// Every wire name of a rule field, of either direction.
            pub const WIRE_NAMES: &'static [&'static str] = &[$($ingress, $egress),*];

            /// The wire name of each field for a rule of `direction`, in table order.
            pub fn wire_names(direction: Direction) -> impl Iterator<Item = &'static str> {
                [$(match direction {
                    Direction::Ingress => $ingress,
                    Direction::Egress => $egress,
                }),*]
                .into_iter()
            }

            /// Reads the fields of a rule of `direction` by their wire names.
            pub fn read(direction: Direction, mut get: impl FnMut(&str) -> Option<String>) -> Self {
                PermissionFields {
                    $($field: get(match direction {
                        Direction::Ingress => $ingress,
                        Direction::Egress => $egress,
                    }),)*
                }
            }

            /// Writes the fields of a rule of `direction` under their wire names.
            pub fn write(&self, direction: Direction, mut put: impl FnMut(&'static str, Option<&str>)) {
                $(put(
                    match direction {
                        Direction::Ingress => $ingress,
                        Direction::Egress => $egress,
                    },
                    self.$field.as_deref(),
                );)*
            }

            /// The values of the store columns, in [`PermissionFields::COLUMNS`] order.
            pub fn columns(&self) -> Vec<Option<&str>> {
                vec![$(self.$field.as_deref()),*]
            }

            /// Reads the fields from store columns, `get(i)` giving column `COLUMNS[i]`.
            pub fn from_columns<E>(
                mut get: impl FnMut(usize) -> Result<Option<String>, E>,
            ) -> Result<Self, E> {
                let mut index = 0usize..;
                Ok(PermissionFields {
                    $($field: get(index.next().unwrap_or_default())?,)*
                })
            }

            /// These fields with every field present (non-empty) in `changes` laid over them.
            pub fn overlay(&self, changes: &PermissionFields) -> PermissionFields {
                PermissionFields {
                    $($field: present(&changes.$field)
                        .map(str::to_string)
                        .or_else(|| self.$field.clone()),)*
                }
            }
        }
    };
}

permission_fields! {
    /// `Policy`.
    policy: "Policy" / "Policy" => "policy",
    /// `Priority`.
    priority: "Priority" / "Priority" => "priority",
    /// `IpProtocol`.
    ip_protocol: "IpProtocol" / "IpProtocol" => "ip_protocol",
    /// `PortRange`.
    port_range: "PortRange" / "PortRange" => "port_range",
    /// `SourcePortRange`.
    source_port_range: "SourcePortRange" / "SourcePortRange" => "source_port_range",
    /// `SourceCidrIp`.
    source_cidr_ip: "SourceCidrIp" / "SourceCidrIp" => "source_cidr_ip",
    /// `Ipv6SourceCidrIp`.
    ipv6_source_cidr_ip: "Ipv6SourceCidrIp" / "Ipv6SourceCidrIp" => "ipv6_source_cidr_ip",
    /// `DestCidrIp`.
    dest_cidr_ip: "DestCidrIp" / "DestCidrIp" => "dest_cidr_ip",
    /// `Ipv6DestCidrIp`.
    ipv6_dest_cidr_ip: "Ipv6DestCidrIp" / "Ipv6DestCidrIp" => "ipv6_dest_cidr_ip",
    /// `SourceGroupId` (ingress) or `DestGroupId` (egress).
    group_id: "SourceGroupId" / "DestGroupId" => "peer_group_id",
    /// `SourceGroupOwnerAccount` / `DestGroupOwnerAccount`.
    group_owner_account: "SourceGroupOwnerAccount" / "DestGroupOwnerAccount" => "peer_owner_account",
    /// `SourceGroupOwnerId` / `DestGroupOwnerId`.
    group_owner_id: "SourceGroupOwnerId" / "DestGroupOwnerId" => "peer_owner_id",
    /// `SourcePrefixListId` / `DestPrefixListId`.
    prefix_list_id: "SourcePrefixListId" / "DestPrefixListId" => "peer_prefix_list_id",
    /// `PortRangeListId`.
    port_range_list_id: "PortRangeListId" / "PortRangeListId" => "port_range_list_id",
    /// `NicType`.
    nic_type: "NicType" / "NicType" => "nic_type",
    /// `Description`.
    description: "Description" / "Description" => "description",
}

/// Empty strings count as absent: the SDKs send `Key=` for unset optional fields.
fn present(field: &Option<String>) -> Option<&str> {
    field.as_deref().filter(|s| !s.is_empty())
}

/// Parses an IPv4 or IPv6 CIDR or bare address of the expected family, normalised to its
/// network (`10.1.2.3/8` becomes `10.0.0.0/8`, as the kernel would match it).
///
/// Strict, as ECS is: the address in the standard form (no leading zeros, which some
/// parsers read as octal), the prefix length a plain decimal within the family's bits.
fn parse_cidr(s: &str, v6: bool, err: impl Fn(String) -> ModelError) -> Result<IpNet, ModelError> {
    let malformed = || err(s.to_string());
    let (address, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let address: IpAddr = address.parse().map_err(|_| malformed())?;
    if address.is_ipv6() != v6 {
        return Err(malformed());
    }
    let bits = if v6 { 128 } else { 32 };
    let prefix = match prefix {
        None => bits,
        Some(p) => strict_integer(p)
            .and_then(|p| u8::try_from(p).ok())
            .filter(|p| *p <= bits)
            .ok_or_else(malformed)?,
    };
    IpNet::new(address, prefix)
        .map(|n| n.trunc())
        .map_err(|_| malformed())
}

/// The longest rule description ECS accepts.
pub const MAX_RULE_DESCRIPTION: usize = 512;

/// Checks a free-text description: at most `max` characters, not a URL.
pub fn validate_description(s: &str, max: usize) -> Result<String, ModelError> {
    if s.chars().count() > max || s.starts_with("http://") || s.starts_with("https://") {
        return Err(ModelError::DescriptionMalformed(max));
    }
    Ok(s.to_string())
}

/// A rule parsed and validated at the edge, before it has an id or knows its group's
/// network: what the control plane takes. [`RuleSpec::resolve`] makes it a [`Permission`]
/// inside the transaction that knows the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Inbound or outbound.
    pub direction: Direction,
    /// Accept or drop.
    pub policy: Policy,
    /// 1 (first) to 100.
    pub priority: Priority,
    /// Protocol and ports (the destination range [`PortRange::ALL`] for a port-list rule).
    pub protocol: Protocol,
    /// `PortRangeListId`, for TCP and UDP rules whose ports are a list's entries.
    pub port_list: Option<PortRangeListId>,
    /// Source (ingress) or destination (egress).
    pub peer: Peer,
    /// The instance-side address filter.
    pub local: Option<IpNet>,
    /// `NicType` as requested (`None`: the network's default).
    pub nic_type: Option<NicType>,
    /// Free text, validated.
    pub description: String,
}

impl RuleSpec {
    /// The permission this rule is in a group of `network`, with the id `id`.
    ///
    /// VPC rules are always intranet; classic rules default to internet, except group
    /// references, which are intranet only and default to it.
    pub fn resolve(
        &self,
        id: SecurityGroupRuleId,
        network: NetworkType,
    ) -> Result<Permission, ModelError> {
        let nic_type = match (network, &self.peer, self.nic_type) {
            (NetworkType::Vpc, _, Some(NicType::Internet)) => {
                return Err(ModelError::NicTypeNotInVpc)
            }
            (NetworkType::Vpc, _, _) => NicType::Intranet,
            (NetworkType::Classic, Peer::Group(_), Some(NicType::Internet)) => {
                return Err(ModelError::NicTypeMismatch)
            }
            (NetworkType::Classic, Peer::Group(_), _) => NicType::Intranet,
            (NetworkType::Classic, _, nic) => nic.unwrap_or(NicType::Internet),
        };
        Ok(Permission {
            id,
            direction: self.direction,
            policy: self.policy,
            priority: self.priority,
            protocol: self.protocol,
            port_list: self.port_list.clone(),
            peer: self.peer.clone(),
            local: self.local,
            nic_type,
            description: self.description.clone(),
        })
    }
}

impl PermissionFields {
    /// Validates the fields into a [`Permission`] of the given direction for a group of the
    /// given network type, with the ECS error of the first problem found.
    pub fn parse(
        &self,
        id: SecurityGroupRuleId,
        direction: Direction,
        network: NetworkType,
    ) -> Result<Permission, ModelError> {
        self.spec(direction)?.resolve(id, network)
    }

    /// Validates the fields into a [`RuleSpec`] of the given direction: everything but what
    /// depends on the group's network.
    ///
    /// Decisions where ECS is lenient or silent: `Policy` defaults to accept and `Priority` to
    /// 1; `PortRange` may be omitted for protocols without ports; one authorization object
    /// (CIDR, group or prefix list) per rule.
    pub fn spec(&self, direction: Direction) -> Result<RuleSpec, ModelError> {
        let policy = present(&self.policy).map_or(Ok(Policy::Accept), str::parse)?;
        let priority = present(&self.priority).map_or(Ok(Priority::default()), str::parse)?;
        let ip_protocol: IpProtocol = present(&self.ip_protocol)
            .ok_or(ModelError::Missing("IpProtocol"))?
            .parse()?;
        let port_list: Option<PortRangeListId> = present(&self.port_range_list_id)
            .map(str::parse)
            .transpose()?;
        let protocol = match &port_list {
            None => self.parse_protocol(ip_protocol)?,
            Some(_) => self.list_protocol(ip_protocol)?,
        };

        let (peer_v4, peer_v6, local_v4, local_v6) = match direction {
            Direction::Ingress => (
                (&self.source_cidr_ip, "SourceCidrIp"),
                (&self.ipv6_source_cidr_ip, "Ipv6SourceCidrIp"),
                (&self.dest_cidr_ip, "DestCidrIp"),
                (&self.ipv6_dest_cidr_ip, "Ipv6DestCidrIp"),
            ),
            Direction::Egress => (
                (&self.dest_cidr_ip, "DestCidrIp"),
                (&self.ipv6_dest_cidr_ip, "Ipv6DestCidrIp"),
                (&self.source_cidr_ip, "SourceCidrIp"),
                (&self.ipv6_source_cidr_ip, "Ipv6SourceCidrIp"),
            ),
        };
        let peer_cidr = parse_family_pair(peer_v4, peer_v6)?;
        let local = parse_family_pair(local_v4, local_v6)?;

        // One authorization object per rule: ECS documents a precedence between them, but
        // keeping one and dropping the others silently would store a rule other than the
        // one asked for, so two are refused.
        let (group_name, list_name) = match direction {
            Direction::Ingress => ("SourceGroupId", "SourcePrefixListId"),
            Direction::Egress => ("DestGroupId", "DestPrefixListId"),
        };
        let cidr_name = if present(peer_v4.0).is_some() {
            peer_v4.1
        } else {
            peer_v6.1
        };
        let objects: Vec<&'static str> = [
            peer_cidr.is_some().then_some(cidr_name),
            present(&self.group_id).map(|_| group_name),
            present(&self.prefix_list_id).map(|_| list_name),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let [first, second, ..] = objects[..] {
            return Err(ModelError::Conflict(first, second));
        }
        let peer = if let Some(net) = peer_cidr {
            Peer::Cidr(net)
        } else if let Some(group) = present(&self.group_id) {
            Peer::Group(GroupRef {
                id: group.parse()?,
                owner_account: present(&self.group_owner_account).map(str::to_string),
                owner_id: present(&self.group_owner_id).map(str::parse).transpose()?,
            })
        } else if let Some(list) = present(&self.prefix_list_id) {
            Peer::PrefixList(list.parse()?)
        } else {
            return Err(ModelError::Missing(match direction {
                Direction::Ingress => "Source",
                Direction::Egress => "Dest",
            }));
        };

        if let (Peer::Cidr(p), Some(l)) = (&peer, &local) {
            if matches!(p, IpNet::V6(_)) != matches!(l, IpNet::V6(_)) {
                return Err(ModelError::Conflict(peer_v4.1, local_v6.1));
            }
        }
        let families = [
            match &peer {
                Peer::Cidr(n) => Some(n),
                _ => None,
            },
            local.as_ref(),
        ];
        for net in families.into_iter().flatten() {
            match (ip_protocol, net) {
                (IpProtocol::Icmp, IpNet::V6(_)) => {
                    return Err(ModelError::Ipv4ProtocolWithIpv6Address("ICMP"))
                }
                (IpProtocol::Icmpv6, IpNet::V4(_)) => {
                    return Err(ModelError::Ipv6ProtocolWithIpv4Address)
                }
                _ => {}
            }
        }

        let nic_type = present(&self.nic_type)
            .map(str::parse::<NicType>)
            .transpose()?;

        let description = validate_description(
            self.description.as_deref().unwrap_or(""),
            MAX_RULE_DESCRIPTION,
        )?;

        Ok(RuleSpec {
            direction,
            policy,
            priority,
            protocol,
            port_list,
            peer,
            local,
            nic_type,
            description,
        })
    }

    /// The protocol of a rule naming a port list: TCP or UDP (other protocols have no ports),
    /// with no `PortRange` of its own. ECS documents that a `PortRange` beside the list wins
    /// and the list is ignored; storing a rule other than the one asked for would hide the
    /// mistake, so a real range beside a list is refused (`-1/-1` and empty mean "none").
    fn list_protocol(&self, ip_protocol: IpProtocol) -> Result<Protocol, ModelError> {
        if !ip_protocol.has_ports() {
            return Err(ModelError::ProtocolAndPortRangeMismatch);
        }
        if present(&self.port_range).is_some_and(|r| r != "-1/-1") {
            return Err(ModelError::Conflict("PortRange", "PortRangeListId"));
        }
        PermissionFields {
            port_range: Some(PortRange::ALL.to_string()),
            ..self.clone()
        }
        .parse_protocol(ip_protocol)
    }

    fn parse_protocol(&self, ip_protocol: IpProtocol) -> Result<Protocol, ModelError> {
        let destination = present(&self.port_range).map(|s| {
            parse_wire_ports(s).map_err(|malformed| {
                if malformed {
                    ModelError::PortRangeMalformed(s.to_string())
                } else {
                    ModelError::PortRangeOutOfRange(s.to_string())
                }
            })
        });
        let source = present(&self.source_port_range)
            .map(|s| {
                parse_wire_ports(s).map_err(|_| ModelError::SourcePortRangeMalformed(s.to_string()))
            })
            .transpose()?;
        if ip_protocol.has_ports() {
            let destination = match destination.ok_or(ModelError::PortRangeMissing)?? {
                WirePorts::Range(r) => r,
                WirePorts::Unset => return Err(ModelError::ProtocolAndPortRangeMismatch),
            };
            let source = match source {
                Some(WirePorts::Range(r)) => Some(r),
                Some(WirePorts::Unset) | None => None,
            };
            let ports = Ports {
                destination,
                source,
            };
            return Ok(if ip_protocol == IpProtocol::Tcp {
                Protocol::Tcp(ports)
            } else {
                Protocol::Udp(ports)
            });
        }
        if matches!(destination.transpose()?, Some(WirePorts::Range(_)))
            || matches!(source, Some(WirePorts::Range(_)))
        {
            return Err(ModelError::ProtocolAndPortRangeMismatch);
        }
        Ok(match ip_protocol {
            IpProtocol::Icmp => Protocol::Icmp,
            IpProtocol::Icmpv6 => Protocol::Icmpv6,
            IpProtocol::Gre => Protocol::Gre,
            _ => Protocol::All,
        })
    }
}

/// Parses the IPv4 and IPv6 variants of one address field, which exclude each other.
fn parse_family_pair(
    v4: (&Option<String>, &'static str),
    v6: (&Option<String>, &'static str),
) -> Result<Option<IpNet>, ModelError> {
    let (v4_value, v4_name) = v4;
    let (v6_value, v6_name) = v6;
    match (present(v4_value), present(v6_value)) {
        (Some(_), Some(_)) => Err(ModelError::Conflict(v4_name, v6_name)),
        (Some(s), None) => parse_cidr(s, false, |s| malformed_cidr(v4_name, s)).map(Some),
        (None, Some(s)) => parse_cidr(s, true, |s| malformed_cidr(v6_name, s)).map(Some),
        (None, None) => Ok(None),
    }
}

fn malformed_cidr(field: &'static str, value: String) -> ModelError {
    match field {
        "SourceCidrIp" => ModelError::SourceCidrIpMalformed(value),
        "DestCidrIp" => ModelError::DestCidrIpMalformed(value),
        "Ipv6SourceCidrIp" => ModelError::Ipv6SourceCidrIpMalformed(value),
        _ => ModelError::Ipv6DestCidrIpMalformed(value),
    }
}
