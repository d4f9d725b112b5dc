//! VPCs, vSwitches and instances with their security-group memberships.
//!
//! Instances get a private address from their vSwitch (VPC) or from the classic intranet pool,
//! and classic instances with outbound bandwidth a public one. Decisions where ECS is silent:
//! the classic intranet pool is 198.18.192.0/18 and the public pool 198.19.0.0/16, both inside
//! the benchmarking range, so lab namespaces can carry the addresses ECS hands out without
//! colliding with any real network (ECS itself uses 10.0.0.0/8 for classic); a vSwitch keeps its network, first (gateway) and
//! broadcast addresses; instances start `Running` (`RunInstances`) or `Stopped`
//! (`CreateInstance`) at once.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// The classic network's intranet address pool.
pub(crate) const CLASSIC_INTRANET: &str = "198.18.192.0/18";
/// Where VPCs' IPv6 blocks (/56 each) come from: the IPv6 benchmarking range, so lab
/// namespaces can carry them. Each account draws from the whole range (256 blocks per
/// account and region), so one tenant cannot use up another's; blocks of two accounts may
/// be equal, and are kept apart as overlapping IPv4 CIDRs are (each VPC has its own routing
/// and connection-tracking zone).
pub(crate) const IPV6_POOL: &str = "2001:2::/48";
use model::{AccountId, InstanceId, NetworkType, SecurityGroupId, VSwitchId, VpcId};
use serde_json::json;

use crate::addressing::{shuffled_start, usable};
use crate::limits::{group_members, GROUPS_PER_INSTANCE};
use crate::sql::args;
use crate::{new_id_body, now, ControlError, Result, Scope, Tx};

/// A stored VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcRecord {
    /// `vpc-...`
    pub id: VpcId,
    /// `VpcName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `CidrBlock`.
    pub cidr: Ipv4Net,
    /// `Ipv6CidrBlock` (a /56), when created with `EnableIpv6`.
    pub ipv6_cidr: Option<Ipv6Net>,
    /// `CreationTime`.
    pub created_at: String,
    /// Its vSwitches.
    pub vswitches: Vec<VSwitchId>,
}

/// A stored vSwitch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VSwitchRecord {
    /// `vsw-...`
    pub id: VSwitchId,
    /// Its VPC.
    pub vpc_id: VpcId,
    /// `ZoneId`.
    pub zone_id: String,
    /// `VSwitchName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `CidrBlock`.
    pub cidr: Ipv4Net,
    /// `Ipv6CidrBlock` (a /64 of its VPC's block), if given one.
    pub ipv6_cidr: Option<Ipv6Net>,
    /// `CreationTime`.
    pub created_at: String,
    /// Addresses still free.
    pub available: u64,
}

/// Lifecycle state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
}

impl InstanceStatus {
    /// The wire form.
    pub fn as_wire(self) -> &'static str {
        match self {
            InstanceStatus::Running => "Running",
            InstanceStatus::Stopped => "Stopped",
        }
    }
}

/// A stored instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// `i-...`
    pub id: InstanceId,
    /// Owner.
    pub owner: AccountId,
    /// `ZoneId`.
    pub zone_id: String,
    /// `InstanceName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `ImageId` (opaque).
    pub image_id: String,
    /// `InstanceType` (opaque).
    pub instance_type: String,
    /// VPC (`None` = classic).
    pub vpc_id: Option<VpcId>,
    /// vSwitch (VPC only).
    pub vswitch_id: Option<VSwitchId>,
    /// Primary private address.
    pub private_ip: Ipv4Addr,
    /// Public address (an instance created with outbound bandwidth, or given one by
    /// `AllocatePublicIpAddress`).
    pub public_ip: Option<Ipv4Addr>,
    /// IPv6 address (its primary interface's), if it has one.
    pub ipv6: Option<Ipv6Addr>,
    /// Running or stopped.
    pub status: InstanceStatus,
    /// `CreationTime`.
    pub created_at: String,
    /// `HostName`.
    pub host_name: String,
    /// `ResourceGroupId`, if it is in one.
    pub resource_group_id: Option<model::ResourceGroupId>,
    /// Groups in join order (those of its primary interface).
    pub security_groups: Vec<SecurityGroupId>,
    /// Its network interfaces, primary first.
    pub network_interfaces: Vec<crate::NetworkInterfaceRecord>,
    /// The attributes given that Stockade keeps without acting on, by wire name.
    pub options: InstanceOptions,
}

/// The lab's internet side: every public address, of classic and VPC instances alike.
const PUBLIC_POOL: &str = "198.19.0.0/16";

/// Attributes of an instance that the control plane stores and hands back but does not act
/// on (billing, spot market, placement), by wire name, as the server parsed and checked
/// them; the one it does act on is [`DELETION_PROTECTION`].
pub type InstanceOptions = serde_json::Map<String, serde_json::Value>;

/// The option (`true`) that makes `DeleteInstance` refuse the instance.
pub const DELETION_PROTECTION: &str = "DeletionProtection";

/// What `ModifyInstanceAttribute` changes; `None` and absent options keep what is.
#[derive(Debug, Clone, Default)]
pub struct InstanceChanges {
    /// `InstanceName`.
    pub name: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `SecurityGroupIds.N`: the whole new list.
    pub groups: Option<Vec<SecurityGroupId>>,
    /// `HostName`.
    pub host_name: Option<String>,
    /// `UserData`.
    pub user_data: Option<String>,
    /// Options to set (each replaces the one of that name).
    pub options: InstanceOptions,
}

impl InstanceRecord {
    /// VPC or classic.
    pub fn network(&self) -> NetworkType {
        if self.vpc_id.is_some() {
            NetworkType::Vpc
        } else {
            NetworkType::Classic
        }
    }
}

/// What `JoinResourceGroup` can move.
#[derive(Debug, Clone)]
pub enum Grouped {
    /// `ResourceType=securitygroup`.
    SecurityGroup(model::SecurityGroupId),
    /// `ResourceType=instance`.
    Instance(InstanceId),
}

/// `RunInstances` / `CreateInstance` after parameter parsing.
#[derive(Debug, Clone)]
pub struct CreateInstances {
    /// How many (`Amount`).
    pub amount: usize,
    /// `VSwitchId` (VPC) or none (classic).
    pub vswitch_id: Option<VSwitchId>,
    /// `ZoneId` (defaults to the vSwitch's, or `<region>-a`).
    pub zone_id: Option<String>,
    /// `SecurityGroupId` and/or `SecurityGroupIds.N`, in order.
    pub security_groups: Vec<SecurityGroupId>,
    /// `PrivateIpAddress` (only with `amount == 1`).
    pub private_ip: Option<Ipv4Addr>,
    /// `InternetMaxBandwidthOut > 0`: a public address.
    pub public_ip: bool,
    /// `Ipv6AddressCount=1` / `Ipv6Address.1`: an IPv6 address from the vSwitch's block.
    pub ipv6: Option<Ipv6Request>,
    /// `InstanceName` of each instance created (in creation order; none given: empty).
    pub names: Vec<String>,
    /// `Description`.
    pub description: String,
    /// `ImageId`.
    pub image_id: String,
    /// `InstanceType`.
    pub instance_type: String,
    /// `UserData` (opaque, as given).
    pub user_data: String,
    /// `SystemDisk.*` as given.
    pub system_disk: SystemDisk,
    /// `HostName` of each instance created (in creation order); an empty one is ECS's
    /// default, derived from the instance id.
    pub host_names: Vec<String>,
    /// `ResourceGroupId` of every instance created.
    pub resource_group_id: Option<model::ResourceGroupId>,
    /// Start running (`RunInstances`) or stopped (`CreateInstance`).
    pub running: bool,
    /// The options given, for every instance created.
    pub options: InstanceOptions,
}

/// The system disk an instance was asked for (`SystemDisk.*`). Stockade models no storage;
/// it keeps these so that `DescribeDisks` answers what was asked, which is what Terraform's
/// `alicloud_instance` reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemDisk {
    /// `SystemDisk.Category` (`cloud_essd` when not given).
    pub category: String,
    /// `SystemDisk.Size` in GiB (40 when not given).
    pub size_gib: u32,
    /// `SystemDisk.DiskName`.
    pub name: String,
    /// `SystemDisk.Description`.
    pub description: String,
}

impl Default for SystemDisk {
    fn default() -> Self {
        SystemDisk {
            category: "cloud_essd".into(),
            size_gib: 40,
            name: String::new(),
            description: String::new(),
        }
    }
}

/// How an interface gets its IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Request {
    /// The first free one of the vSwitch's block.
    Any,
    /// This one.
    Address(Ipv6Addr),
}

impl Tx<'_> {
    /// `CreateVpc`; with `ipv6`, the VPC also gets the first /56 of [`IPV6_POOL`] none of
    /// the caller's VPCs in the region has.
    pub fn create_vpc(
        &self,
        name: &str,
        description: &str,
        cidr: Ipv4Net,
        ipv6: bool,
    ) -> Result<VpcId> {
        if !(8..=28).contains(&cidr.prefix_len()) || cidr.trunc() != cidr {
            return Err(ControlError::InvalidCidr(cidr.to_string()));
        }
        if self.vpcs(None)?.len() >= self.limits.vpcs_per_region {
            return Err(ControlError::VpcQuota);
        }
        let ipv6_cidr = if ipv6 {
            let taken: Vec<Option<Ipv6Net>> =
                self.vpcs(None)?.into_iter().map(|v| v.ipv6_cidr).collect();
            let pool: Ipv6Net = IPV6_POOL.parse().expect("literal");
            let free = pool
                .subnets(56)
                .expect("a /48 has /56s")
                .find(|b| !taken.contains(&Some(*b)))
                .ok_or(ControlError::Ipv6BlockQuota)?;
            Some(free)
        } else {
            None
        };
        let id = VpcId::from_body(&new_id_body())?;
        self.db.execute(
            "INSERT INTO vpcs (id, account_id, region, name, description, cidr_block, ipv6_cidr, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            args![
                id.as_str(),
                self.ctx.account.get() as i64,
                &self.ctx.region,
                name,
                description,
                cidr.to_string(),
                ipv6_cidr.map(|b| b.to_string()),
                now()
            ],
        )?;
        self.log(
            "CreateVpc",
            id.as_str(),
            json!({"CidrBlock": cidr.to_string()}),
        )?;
        Ok(id)
    }

    /// One of the caller's VPCs in the region.
    pub fn vpc(&self, id: &VpcId) -> Result<VpcRecord> {
        self.vpcs(Some(id))?
            .pop()
            .ok_or_else(|| ControlError::VpcNotFound(id.clone()))
    }

    /// The caller's VPCs in the region (one, if `only`), oldest first.
    pub fn vpcs(&self, only: Option<&VpcId>) -> Result<Vec<VpcRecord>> {
        let rows = self.db.query(
            "SELECT id, name, description, cidr_block, created_at, ipv6_cidr FROM vpcs
             WHERE account_id = ?1 AND region = ?2 AND (CAST(?3 AS TEXT) IS NULL OR id = ?3) ORDER BY seq",
            args![
                self.ctx.account.get() as i64,
                &self.ctx.region,
                only.map(|v| v.as_str())
            ],
        )?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(VpcRecord {
                    id: r.parsed(0)?,
                    name: r.text(1)?,
                    description: r.text(2)?,
                    cidr: r.parsed(3)?,
                    created_at: r.text(4)?,
                    ipv6_cidr: r
                        .opt_text(5)?
                        .map(|b| b.parse())
                        .transpose()
                        .map_err(|_| ControlError::Storage("bad ipv6_cidr".into()))?,
                    vswitches: Vec::new(),
                })
            })
            .collect::<Result<Vec<VpcRecord>>>()?;
        for v in &mut out {
            v.vswitches = self
                .vswitches(Some(&v.id), None)?
                .into_iter()
                .map(|s| s.id)
                .collect();
        }
        Ok(out)
    }

    /// `DeleteVpc`: only without vSwitches and security groups.
    pub fn delete_vpc(&self, id: &VpcId) -> Result<()> {
        let v = self.vpc(id)?;
        let groups = self
            .db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM security_groups WHERE vpc_id = ?1)",
                args![id.as_str()],
            )?
            .flag(0)?;
        if !v.vswitches.is_empty() || groups {
            return Err(ControlError::VpcInUse);
        }
        self.db.execute(
            "DELETE FROM tags WHERE resource_type = 'VPC' AND resource_id = ?1",
            args![id.as_str()],
        )?;
        self.db
            .execute("DELETE FROM vpcs WHERE id = ?1", args![id.as_str()])?;
        self.log("DeleteVpc", id.as_str(), json!({}))
    }

    /// `CreateVSwitch`: inside its VPC's block, overlapping no other vSwitch of it.
    pub fn create_vswitch(
        &self,
        vpc: &VpcId,
        zone: &str,
        cidr: Ipv4Net,
        ipv6_index: Option<u8>,
        name: &str,
        description: &str,
    ) -> Result<VSwitchId> {
        let v = self.vpc(vpc)?;
        let ipv6_cidr = match (ipv6_index, v.ipv6_cidr) {
            (None, _) => None,
            (Some(_), None) => return Err(ControlError::VpcIpv6NotEnabled),
            (Some(n), Some(block)) => {
                let sub = block
                    .subnets(64)
                    .expect("a /56 has /64s")
                    .nth(usize::from(n))
                    .expect("256 /64s in a /56");
                if self
                    .vswitches(Some(vpc), None)?
                    .iter()
                    .any(|s| s.ipv6_cidr == Some(sub))
                {
                    return Err(ControlError::CidrOverlap(sub.to_string()));
                }
                Some(sub)
            }
        };
        if !zone.starts_with(&self.ctx.region) || zone.len() == self.ctx.region.len() {
            return Err(ControlError::ZoneNotFound(zone.to_string()));
        }
        if cidr.trunc() != cidr || !v.cidr.contains(&cidr) || cidr.prefix_len() > 29 {
            return Err(ControlError::InvalidCidr(cidr.to_string()));
        }
        if self
            .vswitches(Some(vpc), None)?
            .iter()
            .any(|s| s.cidr.contains(&cidr) || cidr.contains(&s.cidr))
        {
            return Err(ControlError::CidrOverlap(cidr.to_string()));
        }
        let id = VSwitchId::from_body(&new_id_body())?;
        self.db.execute(
            "INSERT INTO vswitches (id, vpc_id, account_id, region, zone_id, name, description, cidr_block, ipv6_cidr, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            args![
                id.as_str(),
                vpc.as_str(),
                self.ctx.account.get() as i64,
                &self.ctx.region,
                zone,
                name,
                description,
                cidr.to_string(),
                ipv6_cidr.map(|b| b.to_string()),
                now()
            ],
        )?;
        self.log(
            "CreateVSwitch",
            id.as_str(),
            json!({"VpcId": vpc.as_str(), "CidrBlock": cidr.to_string()}),
        )?;
        Ok(id)
    }

    /// The caller's vSwitches in the region, filtered by VPC and/or id.
    pub fn vswitches(
        &self,
        vpc: Option<&VpcId>,
        only: Option<&VSwitchId>,
    ) -> Result<Vec<VSwitchRecord>> {
        let rows = self.db.query(
            "SELECT s.id, s.vpc_id, s.zone_id, s.name, s.description, s.cidr_block, s.created_at,
                    (SELECT COUNT(*) FROM network_interfaces n WHERE n.vswitch_id = s.id), s.ipv6_cidr
             FROM vswitches s WHERE s.account_id = ?1 AND s.region = ?2
               AND (CAST(?3 AS TEXT) IS NULL OR s.vpc_id = ?3) AND (CAST(?4 AS TEXT) IS NULL OR s.id = ?4) ORDER BY s.seq",
            args![
                self.ctx.account.get() as i64,
                &self.ctx.region,
                vpc.map(|v| v.as_str()),
                only.map(|s| s.as_str())
            ],
        )?;
        rows.iter()
            .map(|r| {
                let cidr: Ipv4Net = r.parsed(5)?;
                let used = r.int(7)?;
                Ok(VSwitchRecord {
                    id: r.parsed(0)?,
                    vpc_id: r.parsed(1)?,
                    zone_id: r.text(2)?,
                    name: r.text(3)?,
                    description: r.text(4)?,
                    created_at: r.text(6)?,
                    available: (usable(&cidr).count() as u64).saturating_sub(used as u64),
                    cidr,
                    ipv6_cidr: r
                        .opt_text(8)?
                        .map(|b| b.parse())
                        .transpose()
                        .map_err(|_| ControlError::Storage("bad ipv6_cidr".into()))?,
                })
            })
            .collect()
    }

    /// One of the caller's vSwitches.
    pub fn vswitch(&self, id: &VSwitchId) -> Result<VSwitchRecord> {
        self.vswitches(None, Some(id))?
            .pop()
            .ok_or_else(|| ControlError::VSwitchNotFound(id.clone()))
    }

    /// `ModifyVpcAttribute`: name and description.
    pub fn modify_vpc(
        &self,
        id: &VpcId,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<()> {
        let v = self.vpc(id)?;
        self.db.execute(
            "UPDATE vpcs SET name = ?2, description = ?3 WHERE id = ?1",
            args![
                id.as_str(),
                name.unwrap_or(v.name),
                description.unwrap_or(v.description)
            ],
        )?;
        self.log("ModifyVpcAttribute", id.as_str(), json!({}))
    }

    /// `ModifyVSwitchAttribute`: name and description.
    pub fn modify_vswitch(
        &self,
        id: &VSwitchId,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<()> {
        let s = self.vswitch(id)?;
        self.db.execute(
            "UPDATE vswitches SET name = ?2, description = ?3 WHERE id = ?1",
            args![
                id.as_str(),
                name.unwrap_or(s.name),
                description.unwrap_or(s.description)
            ],
        )?;
        self.log("ModifyVSwitchAttribute", id.as_str(), json!({}))
    }

    /// `DeleteVSwitch`: only without instances or network interfaces.
    pub fn delete_vswitch(&self, id: &VSwitchId) -> Result<()> {
        self.vswitch(id)?;
        let used = self
            .db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM network_interfaces WHERE vswitch_id = ?1)",
                args![id.as_str()],
            )?
            .flag(0)?;
        if used {
            return Err(ControlError::VSwitchInUse);
        }
        self.db.execute(
            "DELETE FROM tags WHERE resource_type = 'VSWITCH' AND resource_id = ?1",
            args![id.as_str()],
        )?;
        self.db
            .execute("DELETE FROM vswitches WHERE id = ?1", args![id.as_str()])?;
        self.log("DeleteVSwitch", id.as_str(), json!({}))
    }

    /// A public address no instance holds, from a random place in the pool (as classic
    /// private addresses are: an address says nothing of another account's).
    fn free_public_address(&self) -> Result<Ipv4Addr> {
        let pool: Ipv4Net = PUBLIC_POOL.parse().expect("literal");
        for a in shuffled_start(&pool) {
            if !self.public_address_taken(a)? {
                return Ok(a);
            }
        }
        Err(ControlError::NoFreeAddress)
    }

    /// `AllocatePublicIpAddress`: the instance's public address, assigned now if it has
    /// none. As in ECS the instance needs outbound bandwidth (`InternetMaxBandwidthOut`),
    /// and one that has an address keeps it (it is answered again). A VPC instance's public
    /// address reaches its primary interface, judged by its VPC groups' rules; a classic
    /// one's, its internet interface.
    pub fn allocate_public_ip(&self, id: &InstanceId) -> Result<Ipv4Addr> {
        let i = self.instance(id)?;
        if let Some(a) = i.public_ip {
            return Ok(a);
        }
        let bandwidth = i.options.get("InternetMaxBandwidthOut");
        if bandwidth.and_then(serde_json::Value::as_u64).unwrap_or(0) == 0 {
            return Err(ControlError::NoPublicBandwidth);
        }
        let a = self.free_public_address()?;
        self.db.execute(
            "UPDATE instances SET public_ip = ?2 WHERE id = ?1",
            args![id.as_str(), a.to_string()],
        )?;
        self.log(
            "AllocatePublicIpAddress",
            id.as_str(),
            json!({"IpAddress": a.to_string()}),
        )?;
        Ok(a)
    }

    fn public_address_taken(&self, ip: Ipv4Addr) -> Result<bool> {
        self.db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM instances WHERE public_ip = ?1)",
                args![ip.to_string()],
            )?
            .flag(0)
    }

    /// Checks that an instance (or interface) of `network`/`vpc` may be in these groups: they
    /// exist, are the caller's, share its network and VPC, are of one type, have room for
    /// `joining` more, at most five.
    pub(crate) fn check_groups(
        &self,
        groups: &[SecurityGroupId],
        vpc: Option<&VpcId>,
        joining: usize,
    ) -> Result<()> {
        if groups.is_empty() {
            return Err(model::ModelError::Missing("SecurityGroupId").into());
        }
        if groups.len() > GROUPS_PER_INSTANCE {
            return Err(ControlError::InstanceGroupLimit);
        }
        let mut kind = None;
        for (i, g) in groups.iter().enumerate() {
            if groups[..i].contains(g) {
                return Err(ControlError::AlreadyMember);
            }
            let record = self.group(g)?;
            if record.vpc_id.as_ref() != vpc {
                return Err(ControlError::InstanceGroupMismatch);
            }
            if kind.is_some_and(|k| k != record.group_type) {
                return Err(ControlError::GroupTypeMix);
            }
            kind = Some(record.group_type);
            let members = self.members(g)?;
            let limit = group_members(record.group_type);
            if members + joining > limit {
                return Err(ControlError::GroupMemberLimit);
            }
        }
        Ok(())
    }

    /// How many members a group has: instances (their primary interfaces) and other
    /// network interfaces.
    pub fn members(&self, g: &SecurityGroupId) -> Result<usize> {
        let n = self
            .db
            .query_one(
                "SELECT (SELECT COUNT(*) FROM memberships WHERE group_id = ?1)
                      + (SELECT COUNT(*) FROM interface_memberships WHERE group_id = ?1)",
                args![g.as_str()],
            )?
            .int(0)?;
        Ok(n as usize)
    }

    /// `RunInstances` / `CreateInstance`.
    pub fn create_instances(&self, req: &CreateInstances) -> Result<Vec<InstanceId>> {
        let vswitch = req
            .vswitch_id
            .as_ref()
            .map(|s| self.vswitch(s))
            .transpose()?;
        let vpc = vswitch.as_ref().map(|s| s.vpc_id.clone());
        self.check_groups(&req.security_groups, vpc.as_ref(), req.amount)?;
        self.check_interface_quota(req.amount)?;
        let zone = match (&req.zone_id, &vswitch) {
            (Some(z), Some(s)) if z != &s.zone_id => {
                return Err(ControlError::ZoneNotFound(z.clone()))
            }
            (Some(z), _)
                if !z.starts_with(&self.ctx.region) || z.len() == self.ctx.region.len() =>
            {
                return Err(ControlError::ZoneNotFound(z.clone()))
            }
            (Some(z), _) => z.clone(),
            (None, Some(s)) => s.zone_id.clone(),
            (None, None) => format!("{}-a", self.ctx.region),
        };
        let pool: Ipv4Net = vswitch
            .as_ref()
            .map_or_else(|| CLASSIC_INTRANET.parse().expect("literal"), |s| s.cidr);
        let mut ids = Vec::with_capacity(req.amount);
        for n in 0..req.amount {
            let private_ip = match req.private_ip {
                Some(ip) => {
                    if !usable(&pool).any(|a| a == ip) {
                        return Err(ControlError::PrivateIpNotInVSwitch(ip));
                    }
                    if self.address_taken(ip, vpc.as_ref())? {
                        return Err(ControlError::PrivateIpInUse(ip));
                    }
                    ip
                }
                None => self.free_address(&pool, vpc.as_ref())?,
            };
            let public_ip = if req.public_ip {
                Some(self.free_public_address()?)
            } else {
                None
            };
            let ipv6 = match req.ipv6 {
                None => None,
                Some(want) => {
                    let block = vswitch
                        .as_ref()
                        .and_then(|s| s.ipv6_cidr)
                        .ok_or(ControlError::VSwitchIpv6NotEnabled)?;
                    Some(self.ipv6_address(&block, vpc.as_ref(), want)?)
                }
            };
            let id = InstanceId::from_body(&new_id_body())?;
            self.db.execute(
                "INSERT INTO instances (id, account_id, region, zone_id, name, description, image_id, instance_type,
                                        vpc_id, vswitch_id, private_ip, public_ip, status, created_at, user_data, host_name,
                                        resource_group_id, system_disk_category, system_disk_size, system_disk_name,
                                        system_disk_description, options)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
                args![
                    id.as_str(),
                    self.ctx.account.get() as i64,
                    &self.ctx.region,
                    &zone,
                    req.names.get(n).map_or("", String::as_str),
                    &req.description,
                    &req.image_id,
                    &req.instance_type,
                    vpc.as_ref().map(|v| v.as_str()),
                    req.vswitch_id.as_ref().map(|s| s.as_str()),
                    private_ip.to_string(),
                    public_ip.map(|a| a.to_string()),
                    if req.running { "Running" } else { "Stopped" },
                    now(),
                    &req.user_data,
                    req.host_names.get(n).map_or("", String::as_str),
                    req.resource_group_id.as_ref().map_or("", |r| r.as_str()),
                    &req.system_disk.category,
                    i64::from(req.system_disk.size_gib),
                    &req.system_disk.name,
                    &req.system_disk.description,
                    serde_json::Value::Object(req.options.clone()).to_string(),
                ],
            )?;
            for (position, g) in req.security_groups.iter().enumerate() {
                self.db.execute(
                    "INSERT INTO memberships (instance_id, group_id, position) VALUES (?1, ?2, ?3)",
                    args![id.as_str(), g.as_str(), position],
                )?;
            }
            crate::interfaces::insert_primary(
                self.db,
                &crate::interfaces::Primary {
                    instance: &id,
                    owner: self.ctx.account,
                    region: &self.ctx.region,
                    vpc: vpc.as_ref(),
                    vswitch: req.vswitch_id.as_ref(),
                    zone: &zone,
                    private_ip,
                    ipv6,
                },
            )?;
            self.log(
                "CreateInstance",
                id.as_str(),
                json!({"PrivateIpAddress": private_ip.to_string(), "SecurityGroupIds": req.security_groups.iter().map(|g| g.to_string()).collect::<Vec<_>>()}),
            )?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// An IPv6 address of `block` for an interface: the one asked for, if it is in the block
    /// and free in the VPC, or the first free one (from `::2`; ECS keeps `::1` too).
    pub(crate) fn ipv6_address(
        &self,
        block: &Ipv6Net,
        vpc: Option<&VpcId>,
        want: Ipv6Request,
    ) -> Result<Ipv6Addr> {
        let used: std::collections::HashSet<String> = self
            .db
            .query(
                "SELECT ipv6 FROM network_interfaces WHERE region = ?1 AND ipv6 IS NOT NULL
                 AND (vpc_id = ?2 OR (vpc_id IS NULL AND CAST(?2 AS TEXT) IS NULL))",
                args![&self.ctx.region, vpc.map(|v| v.as_str())],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<_>>()?;
        match want {
            Ipv6Request::Address(a) => {
                let first = u128::from(block.network());
                if !block.contains(&a) || u128::from(a) - first < 2 {
                    return Err(ControlError::Ipv6NotInVSwitch(a));
                }
                if used.contains(&a.to_string()) {
                    return Err(ControlError::Ipv6InUse(a));
                }
                Ok(a)
            }
            Ipv6Request::Any => {
                let first = u128::from(block.network());
                (2..100_000u128)
                    .map(|k| Ipv6Addr::from(first + k))
                    .find(|a| !used.contains(&a.to_string()))
                    .ok_or(ControlError::NoFreeAddress)
            }
        }
    }

    /// One of the caller's instances.
    pub fn instance(&self, id: &InstanceId) -> Result<InstanceRecord> {
        self.instances_where(Scope::Instance(id, self.ctx.account))?
            .pop()
            .ok_or_else(|| ControlError::InstanceNotFound(id.clone()))
    }

    /// The caller's instances in the region, oldest first.
    pub fn instances(&self) -> Result<Vec<InstanceRecord>> {
        self.instances_where(Scope::Owner(self.ctx.account))
    }

    /// `JoinResourceGroup`: moves one of the caller's groups or instances into a resource
    /// group.
    pub fn join_resource_group(
        &self,
        resource: &Grouped,
        group: &model::ResourceGroupId,
    ) -> Result<()> {
        let (table, id) = match resource {
            Grouped::SecurityGroup(g) => {
                self.group(g)?;
                ("security_groups", g.as_str())
            }
            Grouped::Instance(i) => {
                self.instance(i)?;
                ("instances", i.as_str())
            }
        };
        self.db.execute(
            &format!("UPDATE {table} SET resource_group_id = ?2 WHERE id = ?1"),
            args![id, group.as_str()],
        )?;
        self.log(
            "JoinResourceGroup",
            id,
            json!({"ResourceGroupId": group.as_str()}),
        )
    }

    /// Every instance of the region, of every account (for flow verdicts: group references
    /// cross accounts).
    pub fn region_instances(&self) -> Result<Vec<InstanceRecord>> {
        self.instances_where(Scope::Region)
    }

    /// The region's instances in `scope`, oldest first, with their groups, interfaces and
    /// addresses (four queries, whatever the number of instances; each reads the scope only).
    pub(crate) fn instances_where(&self, scope: Scope) -> Result<Vec<InstanceRecord>> {
        let (on, params) = (scope.on_instances(), scope.params(&self.ctx.region));
        let rows = self.db.query(
            &format!(
                "SELECT i.id, i.account_id, i.zone_id, i.name, i.description, i.image_id, i.instance_type,
                        i.vpc_id, i.vswitch_id, i.private_ip, i.public_ip, i.status, i.created_at,
                        i.host_name, i.resource_group_id, i.options
                 FROM instances i WHERE {on} ORDER BY i.seq"
            ),
            &params,
        )?;
        let opt = |r: &crate::sql::Row, c: usize| -> Result<Option<String>> { r.opt_text(c) };
        let bad = |c: &str| ControlError::Storage(format!("bad {c}"));
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(InstanceRecord {
                    id: r.parsed(0)?,
                    owner: AccountId::new(r.int(1)? as u64),
                    zone_id: r.text(2)?,
                    name: r.text(3)?,
                    description: r.text(4)?,
                    image_id: r.text(5)?,
                    instance_type: r.text(6)?,
                    vpc_id: opt(r, 7)?
                        .map(|v| v.parse())
                        .transpose()
                        .map_err(|_| bad("vpc_id"))?,
                    vswitch_id: opt(r, 8)?
                        .map(|v| v.parse())
                        .transpose()
                        .map_err(|_| bad("vswitch_id"))?,
                    private_ip: r.parsed(9)?,
                    public_ip: opt(r, 10)?
                        .map(|p| p.parse())
                        .transpose()
                        .map_err(|_| bad("public_ip"))?,
                    ipv6: None,
                    status: if r.text(11)? == "Running" {
                        InstanceStatus::Running
                    } else {
                        InstanceStatus::Stopped
                    },
                    created_at: r.text(12)?,
                    host_name: match r.text(13)? {
                        // ECS's default: the id between `iZ` and `Z`.
                        given if given.is_empty() => {
                            let id: InstanceId = r.parsed(0)?;
                            format!("iZ{}Z", id.as_str().trim_start_matches("i-"))
                        }
                        given => given,
                    },
                    resource_group_id: crate::groups::resource_group(&r.text(14)?)?,
                    security_groups: Vec::new(),
                    network_interfaces: Vec::new(),
                    options: match serde_json::from_str(&r.text(15)?) {
                        Ok(serde_json::Value::Object(o)) => o,
                        _ => return Err(bad("options")),
                    },
                })
            })
            .collect::<Result<Vec<InstanceRecord>>>()?;
        // Every listed instance's groups in one query, not one per instance (a region's
        // snapshot lists thousands).
        let rows = self.db.query(
            &format!(
                "SELECT m.instance_id, m.group_id FROM memberships m JOIN instances i ON i.id = m.instance_id
                 WHERE {on} ORDER BY m.position"
            ),
            &params,
        )?;
        let mut groups: std::collections::HashMap<String, Vec<SecurityGroupId>> =
            std::collections::HashMap::new();
        for r in &rows {
            groups.entry(r.text(0)?).or_default().push(r.parsed(1)?);
        }
        let rows = self.db.query(
            &format!(
                "SELECT {} FROM network_interfaces n
                 JOIN instances i ON i.id = n.instance_id
                 WHERE {on} ORDER BY n.seq",
                crate::interfaces::INTERFACE_COLUMNS
            ),
            &params,
        )?;
        let mut interfaces: std::collections::HashMap<
            InstanceId,
            Vec<crate::NetworkInterfaceRecord>,
        > = std::collections::HashMap::new();
        for r in &rows {
            let n = crate::interfaces::read_interface(r)?;
            if let Some(i) = n.instance.clone() {
                interfaces.entry(i).or_default().push(n);
            }
        }
        let mut addresses = self.addresses_where(
            &format!("JOIN instances i ON i.id = n.instance_id WHERE {on}"),
            &params,
        )?;
        for list in interfaces.values_mut() {
            for n in list {
                n.take_addresses(&mut addresses);
            }
        }
        for i in &mut out {
            i.security_groups = groups.remove(i.id.as_str()).unwrap_or_default();
            i.network_interfaces = interfaces.remove(&i.id).unwrap_or_default();
            i.ipv6 = i.network_interfaces.first().and_then(|n| n.ipv6);
        }
        Ok(out)
    }

    /// `DescribeUserData`: what the instance was created with.
    pub fn user_data(&self, id: &InstanceId) -> Result<String> {
        self.instance(id)?;
        self.db
            .query_one(
                "SELECT user_data FROM instances WHERE id = ?1",
                args![id.as_str()],
            )?
            .text(0)
    }

    /// The system disk the instance was created with (`DescribeDisks`).
    /// (One of the caller's instances; read by id and owner, without loading the instance.)
    pub fn system_disk(&self, id: &InstanceId) -> Result<SystemDisk> {
        let r = self
            .db
            .query_opt(
                "SELECT system_disk_category, system_disk_size, system_disk_name, system_disk_description
                 FROM instances WHERE id = ?1 AND account_id = ?2 AND region = ?3",
                args![id.as_str(), self.ctx.account.get() as i64, &self.ctx.region],
            )?
            .ok_or_else(|| ControlError::InstanceNotFound(id.clone()))?;
        Ok(SystemDisk {
            category: r.text(0)?,
            size_gib: r.int(1)? as u32,
            name: r.text(2)?,
            description: r.text(3)?,
        })
    }

    /// `StartInstance` / `StopInstance`.
    pub fn set_instance_status(&self, id: &InstanceId, status: InstanceStatus) -> Result<()> {
        let i = self.instance(id)?;
        if i.status == status {
            return Err(ControlError::IncorrectInstanceStatus);
        }
        self.db.execute(
            "UPDATE instances SET status = ?2 WHERE id = ?1",
            args![id.as_str(), status.as_wire()],
        )?;
        self.log(
            if status == InstanceStatus::Running {
                "StartInstance"
            } else {
                "StopInstance"
            },
            id.as_str(),
            json!({}),
        )
    }

    /// `DeleteInstance`: a running instance only with `Force`.
    pub fn delete_instance(&self, id: &InstanceId, force: bool) -> Result<()> {
        let i = self.instance(id)?;
        if i.options.get(DELETION_PROTECTION) == Some(&serde_json::Value::Bool(true)) {
            return Err(ControlError::DeletionProtection);
        }
        if i.status == InstanceStatus::Running && !force {
            return Err(ControlError::IncorrectInstanceStatus);
        }
        self.db.execute(
            "DELETE FROM memberships WHERE instance_id = ?1",
            args![id.as_str()],
        )?;
        self.delete_interfaces_of(id)?;
        self.db
            .execute("DELETE FROM instances WHERE id = ?1", args![id.as_str()])?;
        self.log("DeleteInstance", id.as_str(), json!({}))
    }

    /// Replaces an instance's groups (`JoinSecurityGroup`, `LeaveSecurityGroup`,
    /// `ModifyInstanceAttribute(SecurityGroupIds.N)`), after the same checks as creation.
    fn set_groups(
        &self,
        i: &InstanceRecord,
        groups: &[SecurityGroupId],
        action: &str,
    ) -> Result<()> {
        let newcomers: Vec<SecurityGroupId> = groups
            .iter()
            .filter(|g| !i.security_groups.contains(g))
            .cloned()
            .collect();
        self.check_groups(groups, i.vpc_id.as_ref(), 0)?;
        for g in &newcomers {
            let record = self.group(g)?;
            let limit = group_members(record.group_type);
            if self.members(g)? + 1 > limit {
                return Err(ControlError::GroupMemberLimit);
            }
        }
        self.db.execute(
            "DELETE FROM memberships WHERE instance_id = ?1",
            args![i.id.as_str()],
        )?;
        for (position, g) in groups.iter().enumerate() {
            self.db.execute(
                "INSERT INTO memberships (instance_id, group_id, position) VALUES (?1, ?2, ?3)",
                args![i.id.as_str(), g.as_str(), position],
            )?;
        }
        self.log(
            action,
            i.id.as_str(),
            json!({"SecurityGroupIds": groups.iter().map(|g| g.to_string()).collect::<Vec<_>>()}),
        )
    }

    /// `JoinSecurityGroup`.
    pub fn join(&self, instance: &InstanceId, group: &SecurityGroupId) -> Result<()> {
        self.group(group)?;
        let i = self.instance(instance)?;
        if i.security_groups.contains(group) {
            return Err(ControlError::AlreadyMember);
        }
        if i.security_groups.len() >= GROUPS_PER_INSTANCE {
            return Err(ControlError::InstanceGroupLimit);
        }
        let mut groups = i.security_groups.clone();
        groups.push(group.clone());
        self.set_groups(&i, &groups, "JoinSecurityGroup")
    }

    /// `LeaveSecurityGroup`.
    pub fn leave(&self, instance: &InstanceId, group: &SecurityGroupId) -> Result<()> {
        self.group(group)?;
        let i = self.instance(instance)?;
        if !i.security_groups.contains(group) {
            return Err(ControlError::NotMember);
        }
        if i.security_groups.len() == 1 {
            return Err(ControlError::LastGroup);
        }
        let groups: Vec<SecurityGroupId> = i
            .security_groups
            .iter()
            .filter(|g| *g != group)
            .cloned()
            .collect();
        self.set_groups(&i, &groups, "LeaveSecurityGroup")
    }

    /// `ModifyInstanceAttribute`: name, description and/or the whole group list.
    pub fn modify_instance(&self, instance: &InstanceId, changes: InstanceChanges) -> Result<()> {
        let i = self.instance(instance)?;
        if let Some(groups) = &changes.groups {
            self.set_groups(&i, groups, "ModifyInstanceAttribute")?;
        }
        let user_data = match changes.user_data {
            Some(data) => data,
            None => self.user_data(instance)?,
        };
        let mut options = i.options;
        options.extend(changes.options);
        self.db.execute(
            "UPDATE instances SET name = ?2, description = ?3, host_name = ?4, user_data = ?5, options = ?6
             WHERE id = ?1",
            args![
                instance.as_str(),
                changes.name.unwrap_or(i.name),
                changes.description.unwrap_or(i.description),
                changes.host_name.unwrap_or(i.host_name),
                user_data,
                serde_json::Value::Object(options).to_string()
            ],
        )?;
        self.log("ModifyInstanceAttribute", instance.as_str(), json!({}))
    }

    /// `ModifyInstanceVpcAttribute`: a stopped VPC instance moves to another vSwitch of its
    /// zone (of its VPC, or of `vpc` with the new VPC's `groups`), at `private_ip` or a free
    /// address of the new vSwitch. As in ECS, an instance holding an IPv6 address cannot
    /// move (its address belongs to the old vSwitch's block).
    pub fn modify_instance_vpc(
        &self,
        instance: &InstanceId,
        vswitch: &VSwitchId,
        private_ip: Option<Ipv4Addr>,
        vpc: Option<&VpcId>,
        groups: &[SecurityGroupId],
    ) -> Result<()> {
        let i = self.instance(instance)?;
        let Some(current_vpc) = i.vpc_id.clone() else {
            return Err(ControlError::InstanceNotInVpc);
        };
        if i.status != InstanceStatus::Stopped {
            return Err(ControlError::IncorrectInstanceStatus);
        }
        if i.ipv6.is_some() {
            return Err(ControlError::InstanceHasIpv6);
        }
        if i.network_interfaces.len() > 1
            || i.network_interfaces
                .iter()
                .any(|n| !n.secondary_ips.is_empty() || !n.ipv4_prefixes.is_empty())
        {
            return Err(ControlError::InstanceHasSecondaryInterfaces);
        }
        let target_vpc = vpc.cloned().unwrap_or(current_vpc.clone());
        let sw = self.vswitch(vswitch)?;
        // A vSwitch outside the target VPC is, to the request, one that does not exist.
        if sw.vpc_id != target_vpc {
            return Err(ControlError::VSwitchNotFound(vswitch.clone()));
        }
        if sw.zone_id != i.zone_id {
            return Err(ControlError::VSwitchZoneMismatch);
        }
        let moving = target_vpc != current_vpc;
        if moving && groups.is_empty() {
            return Err(model::ModelError::Missing("SecurityGroupId.N").into());
        }
        let address = match private_ip {
            Some(ip) if ip == i.private_ip && !moving => ip,
            Some(ip) => {
                if !usable(&sw.cidr).any(|a| a == ip) {
                    return Err(ControlError::PrivateIpNotInVSwitch(ip));
                }
                if self.address_taken(ip, Some(&target_vpc))? {
                    return Err(ControlError::PrivateIpInUse(ip));
                }
                ip
            }
            None if sw.cidr.contains(&i.private_ip) && !moving => i.private_ip,
            None => self.free_address(&sw.cidr, Some(&target_vpc))?,
        };
        if moving {
            // The group checks (same VPC, limits, types) run against the new VPC.
            let mut moved = i.clone();
            moved.vpc_id = Some(target_vpc.clone());
            self.set_groups(&moved, groups, "ModifyInstanceVpcAttribute")?;
        } else if !groups.is_empty() {
            self.set_groups(&i, groups, "ModifyInstanceVpcAttribute")?;
        }
        // The instance and its primary interface move together.
        for sql in [
            "UPDATE instances SET vpc_id = ?2, vswitch_id = ?3, private_ip = ?4 WHERE id = ?1",
            "UPDATE network_interfaces SET vpc_id = ?2, vswitch_id = ?3, private_ip = ?4
             WHERE instance_id = ?1 AND kind = 'Primary'",
        ] {
            self.db.execute(
                sql,
                args![
                    instance.as_str(),
                    target_vpc.as_str(),
                    vswitch.as_str(),
                    address.to_string()
                ],
            )?;
        }
        self.log(
            "ModifyInstanceVpcAttribute",
            instance.as_str(),
            json!({"VSwitchId": vswitch.as_str(), "PrivateIpAddress": address.to_string()}),
        )
    }

    /// Whether a group has members (it cannot be deleted then).
    pub fn has_members(&self, g: &SecurityGroupId) -> Result<bool> {
        Ok(self
            .db
            .query_opt(
                "SELECT 1 FROM memberships WHERE group_id = ?1
                 UNION ALL SELECT 1 FROM interface_memberships WHERE group_id = ?1 LIMIT 1",
                args![g.as_str()],
            )?
            .is_some())
    }
}
