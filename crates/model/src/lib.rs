//! Stockade's domain model: the pure values of ECS security groups and their validation.
//!
//! This crate does no I/O and knows nothing of HTTP, SQL or nftables. Wire strings are
//! parsed here exactly once, with the ECS error code each failure answers
//! ([`EcsError::code`]); everything inward of the parse works with typed values whose
//! invariants hold by construction.

mod error;
mod group;
mod ids;
mod rule;

pub use error::{EcsError, IdKind, ModelError};
pub use group::{
    validate_group_description, validate_group_name, GroupType, InnerAccessPolicy, Instance,
    Ipv4Prefix, MemberId, SecurityGroup,
};
pub use ids::{
    AccountId, HostId, InstanceId, NetworkInterfaceId, PortRangeListId, PrefixListId,
    ResourceGroupId, SecurityGroupId, SecurityGroupRuleId, VSwitchId, VpcId,
};
pub use rule::{
    ip_proto, packet_protocol, precedence, validate_description, Direction, FlowPorts, GroupRef,
    IpProtocol, NetworkType, NicType, Peer, Permission, PermissionFields, Policy, PortRange,
    PortSpan, Ports, Priority, ProbeProtocol, Protocol, RuleSpec, MAX_RULE_DESCRIPTION,
};

#[cfg(test)]
mod tests;
