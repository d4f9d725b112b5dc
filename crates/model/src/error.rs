//! The model layer's error type: every way a wire value can fail to become a domain value.
//!
//! Each variant maps to exactly one ECS error code and HTTP status, so the server can turn a
//! parse failure into the response an ECS client expects without a second mapping table.
//! Where Alibaba documents no specific code, the variant says which generic code it borrows.

use std::borrow::Cow;

use thiserror::Error;

/// An error an ECS client understands: each value answers exactly one ECS `Code` and one HTTP
/// status. Every layer's error enum implements it (`ModelError`, `PolicyError`,
/// `ControlError`, the server's `ServerError`), so the server renders any of them the same way.
pub trait EcsError: std::error::Error {
    /// The ECS error code (`Code` field of the error body).
    fn code(&self) -> Cow<'static, str>;
    /// The HTTP status ECS answers the code with.
    fn http_status(&self) -> u16;
}

/// A wire value that does not parse or validate, with the ECS error it answers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// A required parameter is absent (`MissingParameter`, or `MissingParameter.<Name>`).
    #[error("The input parameter \"{0}\" that is mandatory for processing this request is not supplied.")]
    Missing(&'static str),
    /// `Priority` is not an integer.
    #[error("The specified Priority \"{0}\" is not valid.")]
    PriorityMalformed(String),
    /// `Priority` is an integer outside 1–100.
    #[error("The specified Priority \"{0}\" is out of range: it must be between 1 and 100.")]
    PriorityOutOfRange(String),
    /// `Policy` is neither `accept` nor `drop`.
    #[error("The specified Policy \"{0}\" is not valid: use accept or drop.")]
    PolicyMalformed(String),
    /// `NicType` is neither `internet` nor `intranet`.
    #[error("The specified NicType \"{0}\" is not supported: use internet or intranet.")]
    NicTypeNotSupported(String),
    /// A security-group reference with `NicType=internet`: references are intranet only.
    #[error("The NicType must be intranet when a security group is the authorization object.")]
    NicTypeMismatch,
    /// `NicType=internet` on a VPC group, whose rules are all intranet.
    #[error("The NicType of a VPC security group rule must be intranet.")]
    NicTypeNotInVpc,
    /// `IpProtocol` is not one of the protocols ECS knows.
    #[error("The parameter IpProtocol must be specified with case insensitive TCP, UDP, ICMP, ICMPv6, GRE or All.")]
    IpProtocolNotSupported(String),
    /// A flow's protocol is neither a name ECS knows (but `ALL`) nor an IANA number.
    #[error("The parameter IpProtocol of a flow must be TCP, UDP, ICMP, ICMPv6, GRE (case insensitive) or an IANA protocol number, not \"{0}\".")]
    PacketProtocolNotSupported(String),
    /// `PortRange` is absent where the protocol needs one.
    #[error("The specified parameter PortRange must set.")]
    PortRangeMissing,
    /// `PortRange` is not of the `start/end` form.
    #[error("The specified parameter PortRange \"{0}\" is not valid. It should be two integers in ?/? format.")]
    PortRangeMalformed(String),
    /// `PortRange` parses but its bounds are out of 1–65535 or reversed (`200/1`).
    #[error("The specified parameter PortRange \"{0}\" is not valid. It should be two integers between 1 and 65535 in start/end order.")]
    PortRangeOutOfRange(String),
    /// `SourcePortRange` does not parse or validate.
    #[error("The specified SourcePortRange \"{0}\" is not valid.")]
    SourcePortRangeMalformed(String),
    /// The port range does not fit the protocol (ICMP with `22/22`, TCP with `-1/-1`).
    #[error("The specified IpProtocol does not exist or IpProtocol and PortRange do not match.")]
    ProtocolAndPortRangeMismatch,
    /// `SourceCidrIp` is not an IPv4 CIDR or address.
    #[error("The specified SourceCidrIp \"{0}\" is not valid.")]
    SourceCidrIpMalformed(String),
    /// `DestCidrIp` is not an IPv4 CIDR or address.
    #[error("The specified DestCidrIp \"{0}\" is not valid.")]
    DestCidrIpMalformed(String),
    /// `Ipv6SourceCidrIp` is not an IPv6 CIDR or address.
    #[error("The specified Ipv6SourceCidrIp \"{0}\" is not valid.")]
    Ipv6SourceCidrIpMalformed(String),
    /// `Ipv6DestCidrIp` is not an IPv6 CIDR or address.
    #[error("The specified Ipv6DestCidrIp \"{0}\" is not valid.")]
    Ipv6DestCidrIpMalformed(String),
    /// `Ipv4Prefix.N` is not an IPv4 block of 16 addresses (`a.b.c.d/28`, `d` a multiple of
    /// 16), the only prefix size ECS delegates.
    #[error("The specified Ipv4Prefix \"{0}\" is not valid: an IPv4 prefix is a /28 block such as 192.168.1.16/28.")]
    Ipv4PrefixMalformed(String),
    /// Two fields that exclude each other are both set (IPv4 and IPv6 peers, a v4 peer with a
    /// v6 local CIDR).
    #[error("The parameters {0} and {1} cannot be specified together.")]
    Conflict(&'static str, &'static str),
    /// ICMP (v4) together with IPv6 addresses.
    #[error("The IPv4 protocol {0} cannot be used with an IPv6 address.")]
    Ipv4ProtocolWithIpv6Address(&'static str),
    /// ICMPv6 together with IPv4 addresses.
    #[error("The IPv6 protocol ICMPv6 cannot be used with an IPv4 address.")]
    Ipv6ProtocolWithIpv4Address,
    /// A rule description that is too long or starts with `http(s)://`.
    #[error("The specified Description is not valid: at most {0} characters, not starting with http:// or https://.")]
    DescriptionMalformed(usize),
    /// `SecurityGroupName` breaks the naming rules.
    #[error("The specified SecurityGroupName \"{0}\" is not valid: 2-128 characters, starting with a letter, of letters, digits, ':', '_', '.' and '-'.")]
    SecurityGroupNameMalformed(String),
    /// A resource id without its prefix or with characters ids never have.
    #[error("The specified {kind} \"{value}\" is malformed.")]
    IdMalformed {
        /// Which id parameter (`SecurityGroupId`, `InstanceId`, ...).
        kind: IdKind,
        /// The offending value.
        value: String,
    },
    /// An enumerated parameter with no specific ECS code (`InnerAccessPolicy`,
    /// `SecurityGroupType`, ...): answered with the generic `InvalidParameter`.
    #[error("The specified {0} \"{1}\" is not valid.")]
    InvalidParameter(&'static str, String),
    /// A host name that is not 1 to 64 letters, digits, `.`, `_` or `-`.
    #[error(
        "The specified HostId \"{0}\" is not valid: 1 to 64 letters, digits, '.', '_' or '-'."
    )]
    HostIdMalformed(String),
}

/// The kinds of resource id, each with its own prefix and malformed-id error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// `sg-...`
    SecurityGroup,
    /// `sgr-...`
    SecurityGroupRule,
    /// `i-...`
    Instance,
    /// `vpc-...`
    Vpc,
    /// `vsw-...`
    VSwitch,
    /// `pl-...`
    PrefixList,
    /// `eni-...`
    NetworkInterface,
    /// `prl-...`
    PortRangeList,
    /// `rg-...`
    ResourceGroup,
    /// A 16-digit account (owner) id.
    Account,
}

impl IdKind {
    /// The wire parameter name that carries this kind of id.
    pub fn parameter(self) -> &'static str {
        match self {
            IdKind::SecurityGroup => "SecurityGroupId",
            IdKind::SecurityGroupRule => "SecurityGroupRuleId",
            IdKind::Instance => "InstanceId",
            IdKind::Vpc => "VpcId",
            IdKind::VSwitch => "VSwitchId",
            IdKind::PrefixList => "PrefixListId",
            IdKind::PortRangeList => "PortRangeListId",
            IdKind::NetworkInterface => "NetworkInterfaceId",
            IdKind::ResourceGroup => "ResourceGroupId",
            IdKind::Account => "OwnerId",
        }
    }
}

impl std::fmt::Display for IdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.parameter())
    }
}

impl EcsError for ModelError {
    fn code(&self) -> Cow<'static, str> {
        let code = match self {
            ModelError::Missing(name) => {
                return match *name {
                    "RegionId" | "Source" | "Dest" => format!("MissingParameter.{name}").into(),
                    _ => "MissingParameter".into(),
                }
            }
            ModelError::PriorityMalformed(_) => "InvalidPriority.Malformed",
            ModelError::PriorityOutOfRange(_) => "InvalidPriority.ValueNotSupported",
            ModelError::PolicyMalformed(_) => "InvalidPolicy.Malformed",
            ModelError::NicTypeNotSupported(_) => "InvalidNicType.ValueNotSupported",
            ModelError::NicTypeMismatch | ModelError::NicTypeNotInVpc => "InvalidNicType.Mismatch",
            ModelError::IpProtocolNotSupported(_) | ModelError::PacketProtocolNotSupported(_) => {
                "InvalidIpProtocol.ValueNotSupported"
            }
            ModelError::PortRangeMissing | ModelError::PortRangeMalformed(_) => {
                "InvalidPortRange.Malformed"
            }
            ModelError::PortRangeOutOfRange(_) => "InvalidParam.PortRange",
            ModelError::SourcePortRangeMalformed(_) => "InvalidSourcePortRange.Malformed",
            ModelError::ProtocolAndPortRangeMismatch => "InvalidParam.ProtocolAndPortRangeMismatch",
            ModelError::SourceCidrIpMalformed(_) => "InvalidSourceCidrIp.Malformed",
            ModelError::DestCidrIpMalformed(_) => "InvalidDestCidrIp.Malformed",
            ModelError::Ipv6SourceCidrIpMalformed(_) => "InvalidParam.Ipv6SourceCidrIp",
            ModelError::Ipv6DestCidrIpMalformed(_) => "InvalidParam.Ipv6DestCidrIp",
            ModelError::Ipv4PrefixMalformed(_) => "InvalidIpv4Prefix.Malformed",
            ModelError::Conflict(..) => "InvalidParameter.Conflict",
            ModelError::Ipv4ProtocolWithIpv6Address(_) => {
                "InvalidParam.Ipv4ProtocolConflictWithIpv6Address"
            }
            ModelError::Ipv6ProtocolWithIpv4Address => {
                "InvalidParam.Ipv6ProtocolConflictWithIpv4Address"
            }
            ModelError::DescriptionMalformed(_) => "InvalidSecurityGroupDiscription.Malformed",
            ModelError::SecurityGroupNameMalformed(_) => "InvalidSecurityGroupName.Malformed",
            ModelError::IdMalformed { kind, .. } => match kind {
                IdKind::SecurityGroup => "InvalidSecurityGroupId.Malformed",
                IdKind::SecurityGroupRule => "InvalidParam.SecurityGroupRuleId",
                IdKind::Instance => "InvalidInstanceId.Malformed",
                IdKind::Vpc => "InvalidVpcId.Malformed",
                IdKind::VSwitch => "InvalidVSwitchId.Malformed",
                IdKind::PrefixList => "InvalidPrefixListId.Malformed",
                IdKind::PortRangeList => "InvalidPortRangeListId.Malformed",
                IdKind::NetworkInterface => "InvalidNetworkInterfaceId.Malformed",
                IdKind::ResourceGroup => "InvalidResourceGroupId.Malformed",
                IdKind::Account => "InvalidOwnerId.Malformed",
            },
            ModelError::InvalidParameter(..) => "InvalidParameter",
            ModelError::HostIdMalformed(_) => "InvalidHostId.Malformed",
        };
        code.into()
    }

    /// Every model error is a client error.
    fn http_status(&self) -> u16 {
        400
    }
}
