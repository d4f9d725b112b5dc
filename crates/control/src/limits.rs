//! Every ECS limit Stockade enforces, in one place: the configurable quotas of
//! DESIGN.md §4 ([`Limits`]) and the fixed limits of the API (list lengths per request,
//! tags per resource, members per group).

/// Configurable limits (DESIGN.md §4), ECS defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rules per group.
    pub rules_per_group: usize,
    /// Group-reference rules per basic group.
    pub group_rules_per_group: usize,
    /// Groups per account and region.
    pub groups_per_region: usize,
    /// VPCs per account and region. ECS's default quota is 10; Stockade's is 100, because
    /// labs and test suites make many, and what the quota must stop is unbounded use.
    pub vpcs_per_region: usize,
    /// Network interfaces (every instance's primary one included) per account and region.
    /// The classic network's addresses are one pool for every tenant; this quota is what
    /// keeps one tenant from taking them all.
    pub interfaces_per_region: usize,
    /// Network interfaces per instance, the primary one included (ECS's count depends on
    /// the instance type; 3 is that of its small general-purpose types).
    pub interfaces_per_instance: usize,
    /// Secondary private IPv4 addresses per interface (`AssignPrivateIpAddresses`; ECS
    /// allows 10 on an interface of its own, the instance type deciding once attached).
    pub secondary_addresses_per_interface: usize,
    /// IPv4 prefixes per interface (`Ipv4Prefix.N`; ECS takes at most 10 in one request).
    /// Each is 16 addresses, so an interface holds at most 16 times this many beyond its
    /// secondary ones.
    pub prefixes_per_interface: usize,
    /// Prefix lists per account and region (ECS's quota: 100). With at most 200 entries
    /// each, what one account's lists can hold is bounded.
    pub prefix_lists_per_region: usize,
    /// Port range lists per account and region (ECS's quota: 100; at most 2,000 entries
    /// each).
    pub port_range_lists_per_region: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rules_per_group: 200,
            group_rules_per_group: 20,
            groups_per_region: 1000,
            vpcs_per_region: 100,
            interfaces_per_region: 1000,
            interfaces_per_instance: 3,
            secondary_addresses_per_interface: 10,
            prefixes_per_interface: 10,
            prefix_lists_per_region: 100,
            port_range_lists_per_region: 100,
        }
    }
}

impl Limits {
    /// The names `stockade serve --limit NAME=N` takes: the fields, `-` for `_`.
    pub const NAMES: &'static [&'static str] = &[
        "rules-per-group",
        "group-rules-per-group",
        "groups-per-region",
        "vpcs-per-region",
        "interfaces-per-region",
        "interfaces-per-instance",
        "secondary-addresses-per-interface",
        "prefixes-per-interface",
        "prefix-lists-per-region",
        "port-range-lists-per-region",
    ];

    /// Sets one limit by name (at least 1: a zero limit would refuse everything).
    pub fn set(&mut self, name: &str, value: usize) -> Result<(), String> {
        let field = match name {
            "rules-per-group" => &mut self.rules_per_group,
            "group-rules-per-group" => &mut self.group_rules_per_group,
            "groups-per-region" => &mut self.groups_per_region,
            "vpcs-per-region" => &mut self.vpcs_per_region,
            "interfaces-per-region" => &mut self.interfaces_per_region,
            "interfaces-per-instance" => &mut self.interfaces_per_instance,
            "secondary-addresses-per-interface" => &mut self.secondary_addresses_per_interface,
            "prefixes-per-interface" => &mut self.prefixes_per_interface,
            "prefix-lists-per-region" => &mut self.prefix_lists_per_region,
            "port-range-lists-per-region" => &mut self.port_range_lists_per_region,
            _ => {
                return Err(format!(
                    "unknown limit {name:?} (known: {})",
                    Limits::NAMES.join(", ")
                ))
            }
        };
        if value == 0 {
            return Err(format!("limit {name} must be at least 1"));
        }
        *field = value;
        Ok(())
    }
}

/// Most AccessKey pairs of one account (as Alibaba Cloud allows: two, so one can be
/// rotated in while the other is still in use).
pub const ACCESS_KEYS_PER_ACCOUNT: usize = 2;
/// Most groups per instance (ECS default; DESIGN.md §4).
pub const GROUPS_PER_INSTANCE: usize = 5;
/// Most instances in a basic group.
pub const BASIC_GROUP_MEMBERS: usize = 2000;
/// Most instances in an enterprise group.
pub const ENTERPRISE_GROUP_MEMBERS: usize = 65_536;
/// Most entries a prefix list may be created for (`MaxEntries`, 1 to 200).
pub const PREFIX_LIST_ENTRIES: usize = 200;
/// Most entries a port range list may be created for (`MaxEntries`, 1 to 2,000, as ECS).
pub const PORT_RANGE_LIST_ENTRIES: usize = 2000;
/// Most tags on one resource.
pub const TAGS_PER_RESOURCE: usize = 20;
/// Longest tag key and tag value, in bytes.
pub const TAG_LENGTH: usize = 128;
/// Longest instance name, in characters.
pub const INSTANCE_NAME_LENGTH: usize = 128;
/// Most rules in one `Authorize`/`Revoke` request (`Permissions.N`), and most rule ids in
/// one revoke.
pub const RULES_PER_REQUEST: usize = 100;
/// Most group ids in one `DescribeSecurityGroups` (`SecurityGroupIds`).
pub const GROUP_IDS_PER_REQUEST: usize = 100;
/// Most group ids in one `DescribeSecurityGroupReferences`.
pub const REFERENCE_QUERIES_PER_REQUEST: usize = 10;
/// Most resource ids in one tag request.
pub const RESOURCES_PER_TAG_REQUEST: usize = 50;
/// Instances one `RunInstances` creates at most (`Amount`).
pub const INSTANCES_PER_RUN: u64 = 100;
/// Largest page of a `MaxResults` / `PageSize` listing.
pub const PAGE_SIZE_MAX: u64 = 100;
/// Page size of a `PageNumber` listing without `PageSize`.
pub const PAGE_SIZE_DEFAULT: u64 = 10;
/// Page of `ListTagResources` (it takes no page size).
pub const TAG_PAGE: u64 = 50;
/// Bounds of `MaxResults` in `DescribeSecurityGroupAttribute` (rules per page).
pub const RULE_PAGE: (u64, u64) = (10, 1000);

/// Most parameters in one request (100 rules of 15 fields fit with room to spare).
pub const PARAMETERS_PER_REQUEST: usize = 4096;
/// Longest parameter name, in bytes.
pub const PARAMETER_NAME_LENGTH: usize = 128;
/// Longest parameter value, in bytes (a JSON list of 100 ids fits).
pub const PARAMETER_LENGTH: usize = 8192;
/// Longest name or opaque identifier (`VpcName`, `ImageId`, `ZoneId`, ...), in characters.
pub const NAME_LENGTH: usize = 128;
/// Longest description of a VPC or vSwitch, in characters.
pub const DESCRIPTION_LENGTH: usize = 256;

/// The most members a group of this type may have.
pub fn group_members(group_type: model::GroupType) -> usize {
    match group_type {
        model::GroupType::Normal => BASIC_GROUP_MEMBERS,
        model::GroupType::Enterprise => ENTERPRISE_GROUP_MEMBERS,
    }
}
