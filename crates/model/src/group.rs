//! Security groups and instances: the containers of rules and the things rules protect.
//!
//! A group carries no rules here; the policy layer owns the ordered rule lists, because rule
//! order (creation time) and membership are state, while these are plain values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::ModelError;
use crate::ids::{AccountId, InstanceId, NetworkInterfaceId, SecurityGroupId, VpcId};
use crate::rule::{validate_description, NetworkType};

/// Basic (`normal`) or advanced (`enterprise`) security group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GroupType {
    /// Basic group: members reach each other by default, egress open.
    #[default]
    Normal,
    /// Advanced group: everything closed by default, members isolated, no group references.
    Enterprise,
}

impl GroupType {
    /// The wire form (`normal` / `enterprise`).
    pub fn as_wire(self) -> &'static str {
        match self {
            GroupType::Normal => "normal",
            GroupType::Enterprise => "enterprise",
        }
    }
}

impl FromStr for GroupType {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(GroupType::Normal),
            "enterprise" => Ok(GroupType::Enterprise),
            _ => Err(ModelError::InvalidParameter(
                "SecurityGroupType",
                s.to_string(),
            )),
        }
    }
}

/// Whether members of a basic group reach each other when no rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InnerAccessPolicy {
    /// Members reach each other over the intranet on every protocol and port.
    #[default]
    Accept,
    /// Members are isolated from each other.
    Drop,
}

impl InnerAccessPolicy {
    /// The wire form (`Accept` / `Drop`).
    pub fn as_wire(self) -> &'static str {
        match self {
            InnerAccessPolicy::Accept => "Accept",
            InnerAccessPolicy::Drop => "Drop",
        }
    }
}

impl FromStr for InnerAccessPolicy {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "accept" => Ok(InnerAccessPolicy::Accept),
            "drop" => Ok(InnerAccessPolicy::Drop),
            _ => Err(ModelError::InvalidParameter(
                "InnerAccessPolicy",
                s.to_string(),
            )),
        }
    }
}

/// A security group's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    /// `sg-...`
    pub id: SecurityGroupId,
    /// The owning account.
    pub owner: AccountId,
    /// Basic or advanced.
    pub group_type: GroupType,
    /// The VPC, or `None` for the classic network.
    pub vpc_id: Option<VpcId>,
    /// Intra-group policy as set; see [`SecurityGroup::inner_access`] for the effective one.
    pub inner_access_policy: InnerAccessPolicy,
}

impl SecurityGroup {
    /// VPC or classic.
    pub fn network(&self) -> NetworkType {
        if self.vpc_id.is_some() {
            NetworkType::Vpc
        } else {
            NetworkType::Classic
        }
    }

    /// The intra-group policy in force: enterprise groups always isolate their members.
    pub fn inner_access(&self) -> InnerAccessPolicy {
        match self.group_type {
            GroupType::Enterprise => InnerAccessPolicy::Drop,
            GroupType::Normal => self.inner_access_policy,
        }
    }
}

/// Checks `SecurityGroupName`: 2–128 characters, starting with a letter (any script), made of
/// letters, digits, `:`, `_`, `.` and `-`, and not a URL.
pub fn validate_group_name(s: &str) -> Result<String, ModelError> {
    let n = s.chars().count();
    let ok = (2..=128).contains(&n)
        && s.chars().next().is_some_and(char::is_alphabetic)
        && !s.starts_with("http://")
        && !s.starts_with("https://")
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ':' | '_' | '.' | '-'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(ModelError::SecurityGroupNameMalformed(s.to_string()))
    }
}

/// Checks a group `Description`: at most 256 characters, not a URL. (ECS documents a minimum
/// of 2; an empty description is accepted because the SDKs send `Description=` when unset.)
pub fn validate_group_description(s: &str) -> Result<String, ModelError> {
    validate_description(s, 256)
}

/// What an engine record stands for, and its name in answers: an instance (its primary
/// network interface, which ECS users name by the instance), or a secondary network
/// interface attached to one. Security groups are enforced per network interface; the
/// primary one's groups are its instance's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberId {
    /// `i-...`: an instance, through its primary interface.
    Instance(InstanceId),
    /// `eni-...`: a secondary interface.
    Interface(NetworkInterfaceId),
}

impl MemberId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        match self {
            MemberId::Instance(i) => i.as_str(),
            MemberId::Interface(n) => n.as_str(),
        }
    }

    /// The instance, when the member is one.
    pub fn instance(&self) -> Option<&InstanceId> {
        match self {
            MemberId::Instance(i) => Some(i),
            MemberId::Interface(_) => None,
        }
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<InstanceId> for MemberId {
    fn from(i: InstanceId) -> MemberId {
        MemberId::Instance(i)
    }
}

impl From<NetworkInterfaceId> for MemberId {
    fn from(n: NetworkInterfaceId) -> MemberId {
        MemberId::Interface(n)
    }
}

impl FromStr for MemberId {
    type Err = ModelError;

    /// `i-...` or `eni-...`.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        if s.starts_with("eni-") {
            s.parse().map(MemberId::Interface)
        } else {
            s.parse().map(MemberId::Instance)
        }
    }
}

/// An IPv4 prefix delegated to a network interface (`Ipv4Prefix.N` / `Ipv4PrefixCount`): a
/// block of [`Ipv4Prefix::LEN`] bits, every address of which is the interface's own, as its
/// primary and secondary addresses are (group references match them, anti-spoofing lets
/// the interface send from them). ECS delegates /28 blocks only, so one prefix is 16
/// addresses and an interface's addresses stay few enough to list one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix(Ipv4Addr);

impl Ipv4Prefix {
    /// The prefix length ECS delegates.
    pub const LEN: u8 = 28;

    /// The block that starts at `network`, if `network` starts a /28 block.
    pub fn at(network: Ipv4Addr) -> Option<Ipv4Prefix> {
        (u32::from(network) & Self::host_mask() == 0).then_some(Ipv4Prefix(network))
    }

    /// The block holding `address`.
    pub fn of(address: Ipv4Addr) -> Ipv4Prefix {
        Ipv4Prefix(Ipv4Addr::from(u32::from(address) & !Self::host_mask()))
    }

    fn host_mask() -> u32 {
        (1u32 << (32 - Self::LEN)) - 1
    }

    /// Its first address.
    pub fn network(self) -> Ipv4Addr {
        self.0
    }

    /// Every address of the block, the first and the last included (a delegated block is
    /// not a subnet of its own: all 16 are the interface's).
    pub fn addresses(self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.0);
        (first..=first | Self::host_mask()).map(Ipv4Addr::from)
    }

    /// Whether `address` is in the block.
    pub fn contains(self, address: Ipv4Addr) -> bool {
        Self::of(address) == self
    }
}

impl std::fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.0, Self::LEN)
    }
}

impl FromStr for Ipv4Prefix {
    type Err = ModelError;

    /// `a.b.c.d/28` with `a.b.c.d` the block's first address; anything else is
    /// `InvalidIpv4Prefix.Malformed` (a misaligned block is refused rather than rounded, as a
    /// silently different block would be a different set of addresses).
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::Ipv4PrefixMalformed(s.to_string());
        let (address, len) = s.split_once('/').ok_or_else(bad)?;
        if len != Self::LEN.to_string() {
            return Err(bad());
        }
        Ipv4Prefix::at(address.parse().map_err(|_| bad())?).ok_or_else(bad)
    }
}

/// A member as the policy sees it (an instance, or a secondary interface attached to one):
/// its addresses and its ordered list of groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The instance, or the secondary interface.
    pub id: MemberId,
    /// For a secondary interface, the instance it is attached to.
    pub attached_to: Option<InstanceId>,
    /// The owning account.
    pub owner: AccountId,
    /// The VPC, or `None` for a classic-network instance.
    pub vpc_id: Option<VpcId>,
    /// Primary private (intranet) IPv4 address.
    pub private_ip: Ipv4Addr,
    /// Secondary private IPv4 addresses of its interface (`AssignPrivateIpAddresses`):
    /// group references match them as they match the primary one.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// IPv4 prefixes delegated to its interface (`Ipv4Prefix.N`): every address of each is
    /// an intranet address of the member, as a secondary address is.
    pub ipv4_prefixes: Vec<Ipv4Prefix>,
    /// Private IPv6 address (VPC only).
    pub ipv6: Option<Ipv6Addr>,
    /// Internet address of a classic instance with outbound bandwidth.
    pub public_ip: Option<Ipv4Addr>,
    /// `SourceDestCheck`: `false` lets the interface send from addresses that are not its
    /// own, as a NAT or router instance of a VPC forwards for others (ECS's default is
    /// `true` here: anti-spoofing on). A VPC is one account's, so what such an instance
    /// forwards reaches only its own VPC.
    pub source_dest_check: bool,
    /// Security groups in join order (1 to 5, or up to 10 when configured).
    pub security_groups: Vec<SecurityGroupId>,
}

impl Instance {
    /// VPC or classic.
    pub fn network(&self) -> NetworkType {
        if self.vpc_id.is_some() {
            NetworkType::Vpc
        } else {
            NetworkType::Classic
        }
    }

    /// The intranet addresses that group references to this instance's groups match.
    pub fn intranet_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.intranet_v4()
            .map(IpAddr::V4)
            .chain(self.ipv6.map(IpAddr::V6))
    }

    /// The IPv4 intranet addresses: primary, secondary, then those of its prefixes.
    pub fn intranet_v4(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        std::iter::once(self.private_ip)
            .chain(self.secondary_ips.iter().copied())
            .chain(self.ipv4_prefixes.iter().flat_map(|p| p.addresses()))
    }
}
