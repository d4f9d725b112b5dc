//! Resource identifiers, one type per kind of resource, parsed once at the edge.
//!
//! ECS ids are a kind prefix and an alphanumeric body (`sg-bp67acfmxazb4p`); accounts are
//! numeric (an Alibaba UID has 16 digits). Having a type per kind means a function that needs
//! a security group id cannot be handed an instance id by mistake.

use std::fmt;
use std::str::FromStr;

use crate::error::{IdKind, ModelError};

/// The longest id body accepted; ECS ids are about 20 characters, this leaves room for
/// imported ids without letting a request smuggle kilobytes into a key.
const MAX_ID_BODY: usize = 64;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Builds the id from its body (the part after the prefix), as id generators do.
            pub fn from_body(body: &str) -> Result<Self, ModelError> {
                format!("{}{}", $prefix, body).parse()
            }

            /// The id as it appears on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ModelError;

            fn from_str(s: &str) -> Result<Self, ModelError> {
                let malformed = || ModelError::IdMalformed { kind: $kind, value: s.to_string() };
                let body = s.strip_prefix($prefix).ok_or_else(malformed)?;
                if body.is_empty()
                    || body.len() > MAX_ID_BODY
                    || !body.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(malformed());
                }
                Ok($name(s.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad` honours width and alignment, so ids line up in tables.
                f.pad(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A security group id, `sg-...`.
    SecurityGroupId, "sg-", IdKind::SecurityGroup
);
prefixed_id!(
    /// A security group rule (permission) id, `sgr-...`.
    SecurityGroupRuleId, "sgr-", IdKind::SecurityGroupRule
);
prefixed_id!(
    /// An ECS instance id, `i-...`.
    InstanceId, "i-", IdKind::Instance
);
prefixed_id!(
    /// A VPC id, `vpc-...`.
    VpcId, "vpc-", IdKind::Vpc
);
prefixed_id!(
    /// A vSwitch id, `vsw-...`.
    VSwitchId, "vsw-", IdKind::VSwitch
);
prefixed_id!(
    /// An elastic network interface id, `eni-...`: the unit security groups bind to and
    /// the identity a host's device is labelled with.
    NetworkInterfaceId, "eni-", IdKind::NetworkInterface
);
prefixed_id!(
    /// A prefix list id, `pl-...`.
    PrefixListId, "pl-", IdKind::PrefixList
);
prefixed_id!(
    /// A port range list id, `prl-...`: a named set of destination port ranges a rule may
    /// name instead of one `PortRange`.
    PortRangeListId, "prl-", IdKind::PortRangeList
);
prefixed_id!(
    /// A resource group id, `rg-...` (Resource Manager's grouping of resources for access
    /// and billing; Stockade stores, returns and filters by it).
    ResourceGroupId, "rg-", IdKind::ResourceGroup
);

/// A host of the data plane, as its agent names itself (`stockade agent --host-id`): 1 to 64
/// letters, digits, `.`, `_` or `-`. Placement of interfaces on hosts is the operator's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(String);

impl HostId {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HostId {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(HostId(s.to_string()))
        } else {
            Err(ModelError::HostIdMalformed(s.to_string()))
        }
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// An account (owner) id: the numeric UID, 1 to 20 digits (Alibaba's have 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(u64);

impl AccountId {
    /// Wraps a numeric account id.
    pub fn new(id: u64) -> Self {
        AccountId(id)
    }

    /// The numeric value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for AccountId {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ModelError::IdMalformed {
                kind: IdKind::Account,
                value: s.to_string(),
            });
        }
        s.parse::<u64>()
            .map(AccountId)
            .map_err(|_| ModelError::IdMalformed {
                kind: IdKind::Account,
                value: s.to_string(),
            })
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EcsError;

    #[test]
    fn ids_need_their_prefix_and_an_alphanumeric_body() {
        assert!("sg-bp67acfmxazb4p".parse::<SecurityGroupId>().is_ok());
        let err = "i-abc".parse::<SecurityGroupId>().unwrap_err();
        assert_eq!(err.code(), "InvalidSecurityGroupId.Malformed");
        assert!("sg-".parse::<SecurityGroupId>().is_err());
        assert!("sg-a b".parse::<SecurityGroupId>().is_err());
        assert_eq!(
            "sgr-".parse::<SecurityGroupRuleId>().unwrap_err().code(),
            "InvalidParam.SecurityGroupRuleId"
        );
        assert_eq!(InstanceId::from_body("x1").unwrap().as_str(), "i-x1");
    }

    #[test]
    fn account_ids_are_numeric() {
        assert_eq!(
            "1234567890123456".parse::<AccountId>().unwrap().get(),
            1234567890123456
        );
        assert!("12a".parse::<AccountId>().is_err());
        assert!("".parse::<AccountId>().is_err());
    }
}
