//! The control layer's error: everything a command can be refused for once its parameters
//! parse, each with the ECS code, HTTP status and message an ECS client expects.

use std::net::Ipv4Addr;

use std::borrow::Cow;

use model::{
    EcsError, InstanceId, ModelError, NetworkInterfaceId, SecurityGroupId, SecurityGroupRuleId,
    VSwitchId, VpcId,
};
use thiserror::Error;

/// Why a command was refused (nothing was changed).
#[derive(Debug, Error)]
pub enum ControlError {
    /// A parameter did not parse or validate.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The group does not exist for this account and region.
    #[error("The specified SecurityGroupId \"{0}\" does not exist.")]
    GroupNotFound(SecurityGroupId),
    /// The group named as a rule's source does not exist.
    #[error("The specified SourceGroupId \"{0}\" does not exist.")]
    SourceGroupNotFound(SecurityGroupId),
    /// The group named as a rule's destination does not exist.
    #[error("The specified DestGroupId \"{0}\" does not exist.")]
    DestGroupNotFound(SecurityGroupId),
    /// The referenced group is in another VPC (ingress rule).
    #[error("Specified security group and source group are not in the same VPC.")]
    SourceGroupMismatch,
    /// The referenced group is in another VPC (egress rule).
    #[error("Specified security group and destination group are not in the same VPC.")]
    DestGroupMismatch,
    /// A classic-network group and a VPC group cannot reference each other.
    #[error("The network types of the security group and the authorized security group conflict.")]
    NetworkTypeConflict,
    /// Enterprise groups neither use nor are used as group references.
    #[error("Enterprise security groups cannot authorize or be authorized as security groups.")]
    EnterpriseGroupReference,
    /// The prefix list does not exist for this account and region.
    #[error("The specified PrefixListId \"{0}\" does not exist.")]
    PrefixListNotFound(String),
    /// `MaxEntries` of a prefix or port range list outside 1 to the given most.
    #[error("The specified MaxEntries \"{0}\" is not valid: 1 to {1}.")]
    ListMaxEntries(usize, usize),
    /// An entry that is not one of the list's kind (a CIDR block of its address family, a
    /// port range).
    #[error("The specified entry \"{0}\" is not valid for the list.")]
    ListEntryMalformed(String),
    /// An entry the list (or the request) already has.
    #[error("The specified entry \"{0}\" already exists in the list.")]
    ListEntryDuplicate(String),
    /// `RemoveEntry.N` naming an entry the list does not have.
    #[error("The specified entry \"{0}\" does not exist in the list.")]
    ListEntryNotFound(String),
    /// More entries than a prefix list's `MaxEntries`.
    #[error("The prefix list can hold at most {0} entries.")]
    PrefixListFull(usize),
    /// The list is used by a rule.
    #[error("The specified prefix list is used by security group rules.")]
    PrefixListInUse,
    /// The port range list does not exist for this account and region.
    #[error("The specified PortRangeListId \"{0}\" does not exist.")]
    PortRangeListNotFound(String),
    /// More entries than a port range list's `MaxEntries`.
    #[error("The port range list can hold at most {0} entries.")]
    PortRangeListFull(usize),
    /// The list is used by a rule.
    #[error("The specified port range list is used by security group rules.")]
    PortRangeListInUse,
    /// Too many rules in the group.
    #[error("The limit of authorization records in the security group reaches.")]
    AuthorizationLimit,
    /// Too many group-reference rules in a basic group.
    #[error("The maximum number of security group authorization rules is reached.")]
    GroupRuleLimit,
    /// One request carries the same rule twice.
    #[error("The specified Permissions contain duplicate rules.")]
    DuplicatePermissions,
    /// Flat rule parameters and `Permissions.N` together.
    #[error("The specified parameter Permissions cannot coexist with other parameters.")]
    PermissionsConflict,
    /// A rule id that does not exist in the group and direction.
    #[error("The specified SecurityGroupRuleId \"{0}\" does not exist.")]
    RuleNotFound(SecurityGroupRuleId),
    /// `ModifySecurityGroupRule` by fields: no rule of the group has them all.
    #[error("The specified rule does not exist in the security group.")]
    RuleNotFoundByFields,
    /// The account's group quota in the region is used up.
    #[error("The maximum number of security groups is reached.")]
    GroupQuota,
    /// The account's prefix list quota in the region is used up.
    #[error("The maximum number of prefix lists is reached.")]
    PrefixListQuota,
    /// The account's port range list quota in the region is used up.
    #[error("The maximum number of port range lists is reached.")]
    PortRangeListQuota,
    /// Another group's rule references this group.
    #[error("The specified security group has been authorized in another one.")]
    GroupReferenced,
    /// Enterprise groups always isolate their members.
    #[error("The InnerAccessPolicy of an enterprise security group cannot be changed.")]
    EnterpriseInnerAccessPolicy,
    /// The AccessKeyId is unknown.
    #[error("Specified access key is not found.")]
    AccessKeyNotFound,
    /// The AccessKeyId is disabled.
    #[error("Specified access key is disabled.")]
    AccessKeyInactive,
    /// Deleting an AccessKey that is still active.
    #[error("The AccessKey is active: disable it before deleting it.")]
    AccessKeyActive,
    /// The account has as many AccessKeys as it may.
    #[error("The account already has the most AccessKeys it may have.")]
    AccessKeyLimit,
    /// No account of that name.
    #[error("No account is named \"{0}\".")]
    AccountNotFound(String),
    /// An account of that name exists.
    #[error("An account named \"{0}\" already exists.")]
    AccountExists(String),
    /// A `ClientToken` was reused for a different request.
    #[error("The specified ClientToken was already used by a request with other parameters.")]
    IdempotentParameterMismatch,
    /// A CIDR block that is not a network of an accepted size, or not inside its VPC.
    #[error("The specified CidrBlock \"{0}\" is not valid.")]
    InvalidCidr(String),
    /// A vSwitch block overlapping another vSwitch of the VPC.
    #[error("The specified CidrBlock \"{0}\" overlaps another vSwitch of the VPC.")]
    CidrOverlap(String),
    /// The VPC does not exist.
    #[error("The specified VpcId \"{0}\" does not exist.")]
    VpcNotFound(VpcId),
    /// The vSwitch does not exist.
    #[error("The specified VSwitchId \"{0}\" does not exist.")]
    VSwitchNotFound(VSwitchId),
    /// The VPC still has vSwitches or security groups.
    #[error("The specified VPC still has vSwitches or security groups.")]
    VpcInUse,
    /// The vSwitch still has instances.
    #[error("The specified vSwitch still has instances.")]
    VSwitchInUse,
    /// A zone not of the region.
    #[error("The specified ZoneId \"{0}\" does not exist in the region.")]
    ZoneNotFound(String),
    /// The instance does not exist.
    #[error("The specified InstanceId \"{0}\" does not exist.")]
    InstanceNotFound(InstanceId),
    /// More groups than an instance may have.
    #[error("Exceeding the allowed amount of security groups that an instance can be in.")]
    InstanceGroupLimit,
    /// The instance is in the group already.
    #[error("The specified instance already exists in the specified security group.")]
    AlreadyMember,
    /// The instance is not in the group.
    #[error("The specified instance is not in the specified security group.")]
    NotMember,
    /// Leaving would leave the instance in no group.
    #[error("The specified security group is the last security group for the instance.")]
    LastGroup,
    /// Instance and group are not in the same network or VPC.
    #[error("Specified instance and security group are not in the same VPC.")]
    InstanceGroupMismatch,
    /// Basic and enterprise groups on one instance.
    #[error("Basic and enterprise security groups cannot be mixed on one instance.")]
    GroupTypeMix,
    /// The group has as many instances as it may.
    #[error("The security group has reached its maximum number of instances.")]
    GroupMemberLimit,
    /// The group still has instances.
    #[error("There is still instance(s) in the specified security group.")]
    GroupHasInstances,
    /// The instance's status does not allow the operation.
    #[error("The current status of the resource does not support this operation.")]
    IncorrectInstanceStatus,
    /// `AllocatePublicIpAddress` for an instance without outbound bandwidth.
    #[error("The instance has no public bandwidth (InternetMaxBandwidthOut is 0): it cannot be given a public IP address.")]
    NoPublicBandwidth,
    /// `SourceDestCheck=false` on a classic-network interface.
    #[error("SourceDestCheck can be turned off on the network interfaces of a VPC only.")]
    SourceDestCheckClassic,
    /// The instance has deletion protection (`DeletionProtection=true`).
    #[error("The instance cannot be deleted while its deletion protection is on.")]
    DeletionProtection,
    /// A new vSwitch for an instance is in another zone than its current one.
    #[error("The specified instance and vSwitch are not in the same zone.")]
    VSwitchZoneMismatch,
    /// `ModifyInstanceVpcAttribute` on a classic-network instance.
    #[error("The specified operation is denied as the instance is not in a VPC.")]
    InstanceNotInVpc,
    /// `ModifyInstanceVpcAttribute` on an instance holding an IPv6 address.
    #[error("The instance has an IPv6 address: unassign it before changing its vSwitch or VPC.")]
    InstanceHasIpv6,
    /// `ModifyInstanceVpcAttribute` on an instance with secondary network interfaces.
    #[error("The instance has secondary network interfaces or addresses: detach or unassign them before changing its vSwitch or VPC.")]
    InstanceHasSecondaryInterfaces,
    /// `PrivateIpAddress` outside the vSwitch's usable addresses.
    #[error("The specified PrivateIpAddress \"{0}\" is not in the vSwitch's usable addresses.")]
    PrivateIpNotInVSwitch(Ipv4Addr),
    /// `PrivateIpAddress` already used in the VPC.
    #[error("The specified PrivateIpAddress \"{0}\" is already in use.")]
    PrivateIpInUse(Ipv4Addr),
    /// More secondary addresses than an interface may hold.
    #[error("The interface can hold at most {0} secondary private IP addresses.")]
    SecondaryAddressLimit(usize),
    /// `UnassignPrivateIpAddresses` naming an address the interface does not have.
    #[error(
        "The specified private IP address \"{0}\" is not a secondary address of the interface."
    )]
    PrivateIpNotOnInterface(Ipv4Addr),
    /// `Ipv4Prefix.N` with an address the vSwitch does not give instances.
    #[error("The specified Ipv4Prefix \"{0}\" is not a block of the vSwitch's usable addresses.")]
    PrefixNotInVSwitch(model::Ipv4Prefix),
    /// `Ipv4Prefix.N` with an address already held in the VPC.
    #[error("The specified Ipv4Prefix \"{0}\" holds an address already in use.")]
    PrefixInUse(model::Ipv4Prefix),
    /// More prefixes than an interface may hold.
    #[error("The interface can hold at most {0} IPv4 prefixes.")]
    PrefixLimit(usize),
    /// `UnassignPrivateIpAddresses` naming a prefix the interface does not have.
    #[error("The specified Ipv4Prefix \"{0}\" is not a prefix of the interface.")]
    PrefixNotOnInterface(model::Ipv4Prefix),
    /// The vSwitch (or pool) has no free address.
    #[error("The specified vSwitch does not have enough IP addresses.")]
    NoFreeAddress,
    /// `ModifySecurityGroupRule` changing the kind of authorization object.
    #[error("The type of the authorization object of a rule cannot be changed.")]
    ModifyEntityType,
    /// `ModifySecurityGroupRule` changing the NicType.
    #[error("The NicType of a rule cannot be changed.")]
    ModifyNicType,
    /// `ModifySecurityGroupRule` producing a copy of another rule.
    #[error("The modified rule duplicates an existing rule.")]
    RuleDuplicate,
    /// A tag resource id that does not exist for the caller.
    #[error("The specified ResourceId \"{0}\" does not exist.")]
    ResourceNotFound(String),
    /// The network interface does not exist (for this account; for an operator, in the
    /// region).
    #[error("The specified NetworkInterfaceId \"{0}\" does not exist.")]
    NetworkInterfaceNotFound(NetworkInterfaceId),
    /// `RevokeAgentToken` for a host that holds no agent token.
    #[error("The specified HostId \"{0}\" holds no agent token.")]
    AgentTokenNotFound(model::HostId),
    /// The account's VPC quota in the region is used up.
    #[error("The maximum number of VPCs in the region is reached.")]
    VpcQuota,
    /// The account's network-interface quota in the region (instances' primary interfaces
    /// included) is used up.
    #[error(
        "The maximum number of network interfaces (and so instances) in the region is reached."
    )]
    InterfaceQuota,
    /// `EnableIpv6` on more VPCs than the IPv6 pool has blocks for one account.
    #[error("The IPv6 blocks available to the account in the region are used up.")]
    Ipv6BlockQuota,
    /// A vSwitch's `Ipv6CidrBlock` in a VPC without IPv6.
    #[error("The VPC of the vSwitch has no IPv6 block (create it with EnableIpv6).")]
    VpcIpv6NotEnabled,
    /// An IPv6 address asked for in a vSwitch without IPv6.
    #[error("The IPv6 of the specified vSwitch is not turned on.")]
    VSwitchIpv6NotEnabled,
    /// `Ipv6Address.N` outside the vSwitch's block.
    #[error("The specified Ipv6Address \"{0}\" is not in the vSwitch's IPv6 block.")]
    Ipv6NotInVSwitch(std::net::Ipv6Addr),
    /// `Ipv6Address.N` held by another interface of the VPC.
    #[error("The specified Ipv6Address \"{0}\" is already in use.")]
    Ipv6InUse(std::net::Ipv6Addr),
    /// A second IPv6 address for one interface.
    #[error("A network interface has at most one IPv6 address in this version.")]
    Ipv6PerInterface,
    /// `UnassignIpv6Addresses` naming an address the interface does not have.
    #[error("The specified Ipv6Address \"{0}\" is not an address of the network interface.")]
    Ipv6NotOnInterface(std::net::Ipv6Addr),
    /// The interface is attached (`InUse`); the operation needs it `Available`.
    #[error(
        "The operation is not allowed in the current ENI state: the network interface is in use."
    )]
    InterfaceInUse,
    /// `AttachNetworkInterface` of an interface in another zone than the instance.
    #[error("The network interface and the instance are not in the same zone.")]
    InterfaceZoneMismatch,
    /// `AttachNetworkInterface` of an interface in another VPC than the instance.
    #[error("The network interface and the instance are not in the same VPC.")]
    InterfaceVpcMismatch,
    /// The instance already has as many interfaces as allowed.
    #[error("The instance has the most network interfaces it may have ({0}).")]
    InterfacesPerInstance(usize),
    /// `DetachNetworkInterface` of a primary interface.
    #[error("The primary network interface of an instance cannot be detached.")]
    DetachPrimary,
    /// A flow question names an interface attached to no instance: no flow crosses it.
    #[error("The specified NetworkInterfaceId \"{0}\" is not attached to an instance: no flow crosses it.")]
    InterfaceNotAttached(NetworkInterfaceId),
    /// A Stockade operator action called with a tenant's AccessKey. Placement is the
    /// operator's: no tenant may choose the host (and so the device) its interfaces use.
    #[error("User not authorized to operate on the specified resource: operator actions need an operator AccessKey.")]
    OperatorOnly,
    /// More than 20 tags on one resource.
    #[error("A resource can carry at most 20 tags.")]
    TagLimit,
    /// The store failed; the command was rolled back. The text is the backend's (logged,
    /// never shown to callers).
    #[error("The request processing has failed due to some unknown error.")]
    Storage(String),
}

impl From<rusqlite::Error> for ControlError {
    fn from(e: rusqlite::Error) -> ControlError {
        ControlError::Storage(e.to_string())
    }
}

impl EcsError for ControlError {
    fn code(&self) -> Cow<'static, str> {
        let code = match self {
            ControlError::Model(e) => return e.code(),
            ControlError::GroupNotFound(_) => "InvalidSecurityGroupId.NotFound",
            ControlError::SourceGroupNotFound(_) => "InvalidSourceGroupId.NotFound",
            ControlError::DestGroupNotFound(_) => "InvalidDestGroupId.NotFound",
            ControlError::SourceGroupMismatch => "InvalidSourceGroupId.Mismatch",
            ControlError::DestGroupMismatch => "InvalidDestGroupId.Mismatch",
            ControlError::NetworkTypeConflict => "InvalidNetworkType.Conflict",
            ControlError::EnterpriseGroupReference => "InvalidGroupAuthParameter.OperationDenied",
            ControlError::PrefixListNotFound(_) => "InvalidPrefixListId.NotFound",
            ControlError::ListMaxEntries(..) => "InvalidMaxEntries.ValueNotSupported",
            ControlError::ListEntryMalformed(_) => "InvalidEntry.Malformed",
            ControlError::ListEntryDuplicate(_) => "InvalidEntry.Duplicated",
            ControlError::ListEntryNotFound(_) => "InvalidEntry.NotFound",
            ControlError::PrefixListFull(_) => "QuotaExceed.PrefixListEntry",
            ControlError::PrefixListInUse => "DependencyViolation.PrefixList",
            ControlError::PortRangeListNotFound(_) => "InvalidPortRangeListId.NotFound",
            ControlError::PortRangeListFull(_) => "QuotaExceed.PortRangeListEntry",
            ControlError::PortRangeListInUse => "DependencyViolation.PortRangeList",
            ControlError::AuthorizationLimit => "AuthorizationLimitExceed",
            ControlError::GroupRuleLimit => "AuthorizedGroupRule.LimitExceed",
            ControlError::DuplicatePermissions => "InvalidParam.DuplicatePermissions",
            ControlError::PermissionsConflict => "InvalidParam.Permissions",
            ControlError::RuleNotFound(_) => "InvalidSecurityGroupRuleId.NotFound",
            ControlError::RuleNotFoundByFields => "InvalidSecurityGroupRule.RuleNotExist",
            ControlError::GroupQuota => "QuotaExceed.SecurityGroup",
            ControlError::PrefixListQuota => "QuotaExceed.PrefixList",
            ControlError::PortRangeListQuota => "QuotaExceed.PortRangeList",
            ControlError::GroupReferenced => "DependencyViolation",
            ControlError::EnterpriseInnerAccessPolicy => "OperationDenied",
            ControlError::AccessKeyNotFound => "InvalidAccessKeyId.NotFound",
            ControlError::AccessKeyInactive => "InvalidAccessKeyId.Inactive",
            ControlError::AccessKeyActive => "InvalidAccessKeyStatus.Active",
            ControlError::AccessKeyLimit => "LimitExceeded.AccessKey",
            ControlError::AccountNotFound(_) => "InvalidAccountName.NotFound",
            ControlError::AccountExists(_) => "InvalidAccountName.Duplicate",
            ControlError::IdempotentParameterMismatch => "IdempotentParameterMismatch",
            ControlError::InvalidCidr(_) => "InvalidCidrBlock.Malformed",
            ControlError::CidrOverlap(_) => "InvalidCidrBlock.Overlapped",
            ControlError::VpcNotFound(_) => "InvalidVpcId.NotFound",
            ControlError::VSwitchNotFound(_) => "InvalidVSwitchId.NotFound",
            ControlError::VpcInUse
            | ControlError::VSwitchInUse
            | ControlError::GroupHasInstances => "DependencyViolation",
            ControlError::ZoneNotFound(_) => "InvalidZoneId.NotFound",
            ControlError::InstanceNotFound(_) => "InvalidInstanceId.NotFound",
            ControlError::InstanceGroupLimit => "InstanceSecurityGroupLimitExceeded",
            ControlError::AlreadyMember => "InvalidInstanceId.AlreadyExists",
            ControlError::NotMember => "InvalidSecurityGroupAssociation.NotFound",
            ControlError::LastGroup => "InstanceLastSecurityGroup",
            ControlError::InstanceGroupMismatch => "InvalidInstanceId.Mismatch",
            ControlError::GroupTypeMix => "InvalidSecurityGroupType.Mismatch",
            ControlError::GroupMemberLimit => "SecurityGroupInstanceLimitExceeded",
            ControlError::IncorrectInstanceStatus => "IncorrectInstanceStatus",
            ControlError::DeletionProtection => "InvalidOperation.DeletionProtection",
            ControlError::SourceDestCheckClassic => "OperationDenied",
            ControlError::NoPublicBandwidth => "InvalidParameter.Bandwidth",
            ControlError::VSwitchZoneMismatch => "InvalidVSwitchId.Mismatch",
            ControlError::InstanceNotInVpc
            | ControlError::InstanceHasIpv6
            | ControlError::InstanceHasSecondaryInterfaces => "OperationDenied",
            ControlError::PrivateIpNotInVSwitch(_) => "InvalidPrivateIpAddress.Mismatch",
            ControlError::PrivateIpInUse(_) => "InvalidPrivateIpAddress.Duplicated",
            ControlError::SecondaryAddressLimit(_) => "QuotaExceed.PrivateIpAddress",
            ControlError::PrivateIpNotOnInterface(_) => "InvalidPrivateIpAddress.NotFound",
            ControlError::PrefixNotInVSwitch(_) => "InvalidIpv4Prefix.Mismatch",
            ControlError::PrefixInUse(_) => "InvalidIpv4Prefix.Duplicated",
            ControlError::PrefixLimit(_) => "QuotaExceed.Ipv4PrefixCount",
            ControlError::PrefixNotOnInterface(_) => "InvalidIpv4Prefix.NotFound",
            ControlError::NoFreeAddress => "InvalidVSwitchId.IpNotEnough",
            ControlError::ModifyEntityType => "InvalidOperation.ModifySgRuleEntityType",
            ControlError::ModifyNicType => "InvalidOperation.ModifyNicType",
            ControlError::RuleDuplicate => "InvalidOperation.RuleDuplicate",
            ControlError::ResourceNotFound(_) => "InvalidResourceId.NotFound",
            ControlError::TagLimit => "InvalidTagCount",
            ControlError::NetworkInterfaceNotFound(_) => "InvalidNetworkInterfaceId.NotFound",
            ControlError::AgentTokenNotFound(_) => "InvalidHostId.NotFound",
            ControlError::OperatorOnly => "Forbidden.RAM",
            ControlError::Ipv6BlockQuota => "QuotaExceeded.Ipv6CidrBlock",
            ControlError::VpcQuota => "QuotaExceeded.Vpc",
            ControlError::InterfaceQuota => "QuotaExceed.NetworkInterface",
            ControlError::VpcIpv6NotEnabled => "InvalidVpc.Ipv6NotTurnOn",
            ControlError::VSwitchIpv6NotEnabled => "InvalidVSwitch.Ipv6NotTurnOn",
            ControlError::Ipv6NotInVSwitch(_) => "InvalidIpv6Address.Mismatch",
            ControlError::Ipv6InUse(_) => "InvalidIpv6Address.Duplicated",
            ControlError::Ipv6PerInterface => "QuotaExceed.Ipv6Address",
            ControlError::Ipv6NotOnInterface(_) => "InvalidIpv6Address.NotFound",
            ControlError::InterfaceInUse | ControlError::InterfaceNotAttached(_) => {
                "InvalidOperation.InvalidEniState"
            }
            ControlError::InterfaceZoneMismatch => "InvalidOperation.AvailabilityZoneMismatch",
            ControlError::InterfaceVpcMismatch => "InvalidOperation.VpcMismatch",
            ControlError::InterfacesPerInstance(_) => "InvalidOperation.EniCountExceeded",
            ControlError::DetachPrimary => "InvalidOperation.DetachPrimaryEniNotAllowed",
            ControlError::Storage(_) => "InternalError",
        };
        code.into()
    }

    fn http_status(&self) -> u16 {
        match self {
            ControlError::Model(e) => e.http_status(),
            ControlError::GroupNotFound(_)
            | ControlError::SourceGroupNotFound(_)
            | ControlError::DestGroupNotFound(_)
            | ControlError::PrefixListNotFound(_)
            | ControlError::PortRangeListNotFound(_)
            | ControlError::RuleNotFound(_)
            | ControlError::RuleNotFoundByFields
            | ControlError::AccessKeyNotFound
            | ControlError::AccountNotFound(_)
            | ControlError::VpcNotFound(_)
            | ControlError::VSwitchNotFound(_)
            | ControlError::ZoneNotFound(_)
            | ControlError::InstanceNotFound(_)
            | ControlError::ResourceNotFound(_)
            | ControlError::NetworkInterfaceNotFound(_)
            | ControlError::AgentTokenNotFound(_) => 404,
            ControlError::VSwitchZoneMismatch
            | ControlError::InstanceNotInVpc
            | ControlError::InstanceHasIpv6
            | ControlError::InstanceHasSecondaryInterfaces
            | ControlError::SourceDestCheckClassic
            | ControlError::NoPublicBandwidth => 400,
            ControlError::NetworkTypeConflict
            | ControlError::EnterpriseGroupReference
            | ControlError::AuthorizationLimit
            | ControlError::GroupQuota
            | ControlError::PrefixListQuota
            | ControlError::PortRangeListQuota
            | ControlError::GroupReferenced
            | ControlError::EnterpriseInnerAccessPolicy
            | ControlError::AlreadyMember
            | ControlError::LastGroup
            | ControlError::GroupTypeMix
            | ControlError::GroupMemberLimit
            | ControlError::GroupHasInstances
            | ControlError::IncorrectInstanceStatus
            | ControlError::DeletionProtection
            | ControlError::OperatorOnly
            | ControlError::PrefixListInUse
            | ControlError::PortRangeListInUse
            | ControlError::Ipv6BlockQuota
            | ControlError::Ipv6PerInterface
            | ControlError::VpcQuota
            | ControlError::InterfaceQuota
            | ControlError::InterfaceInUse
            | ControlError::InterfaceNotAttached(_)
            | ControlError::InterfaceZoneMismatch
            | ControlError::InterfaceVpcMismatch
            | ControlError::InterfacesPerInstance(_)
            | ControlError::DetachPrimary => 403,
            ControlError::Storage(_) => 500,
            ControlError::SourceGroupMismatch
            | ControlError::DestGroupMismatch
            | ControlError::GroupRuleLimit
            | ControlError::DuplicatePermissions
            | ControlError::PermissionsConflict
            | ControlError::AccountExists(_)
            | ControlError::AccessKeyInactive
            | ControlError::AccessKeyActive
            | ControlError::AccessKeyLimit
            | ControlError::IdempotentParameterMismatch
            | ControlError::InvalidCidr(_)
            | ControlError::CidrOverlap(_)
            | ControlError::VpcInUse
            | ControlError::VSwitchInUse
            | ControlError::InstanceGroupLimit
            | ControlError::NotMember
            | ControlError::InstanceGroupMismatch
            | ControlError::PrivateIpNotInVSwitch(_)
            | ControlError::PrivateIpInUse(_)
            | ControlError::SecondaryAddressLimit(_)
            | ControlError::PrivateIpNotOnInterface(_)
            | ControlError::PrefixNotInVSwitch(_)
            | ControlError::PrefixInUse(_)
            | ControlError::PrefixLimit(_)
            | ControlError::PrefixNotOnInterface(_)
            | ControlError::NoFreeAddress
            | ControlError::ModifyEntityType
            | ControlError::ModifyNicType
            | ControlError::RuleDuplicate
            | ControlError::TagLimit
            | ControlError::ListMaxEntries(..)
            | ControlError::ListEntryMalformed(_)
            | ControlError::ListEntryDuplicate(_)
            | ControlError::ListEntryNotFound(_)
            | ControlError::PrefixListFull(_)
            | ControlError::PortRangeListFull(_)
            | ControlError::VpcIpv6NotEnabled
            | ControlError::VSwitchIpv6NotEnabled
            | ControlError::Ipv6NotInVSwitch(_)
            | ControlError::Ipv6InUse(_)
            | ControlError::Ipv6NotOnInterface(_) => 400,
        }
    }
}
