//! Network interfaces (ENIs) and their placement on hosts.
//!
//! Every instance has a primary interface, created and deleted with it; its groups are the
//! instance's (DESIGN.md §3), kept in `memberships`. Other interfaces are created on their
//! own (`CreateNetworkInterface`) in a vSwitch, with groups of their own
//! (`interface_memberships`); every interface holds its private address, so address
//! uniqueness in a VPC is checked over interfaces. `AttachNetworkInterface` makes one a
//! secondary interface of an instance: the engine then holds it as a member of its own
//! (`model::MemberId::Interface`), judged by its own groups at its own address, and the
//! agent feed names that member for its device. **Placement** (which host an interface is bound to) is the
//! operator's alone: only an account created as an operator (`stockade account create
//! --operator`) may set or read it, through Stockade's operator actions, because whoever
//! chooses placement chooses which host programs an interface's rules, and a tenant able to
//! place its own interfaces next to another's is one step from deciding that tenant's
//! verdicts. The agent finds the device of an interface by the interface id the operator's
//! provisioning labelled it with, never by address.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use model::{
    AccountId, HostId, InstanceId, Ipv4Prefix, NetworkInterfaceId, SecurityGroupId, VSwitchId,
    VpcId,
};
use serde_json::json;

use crate::limits::{group_members, GROUPS_PER_INSTANCE};
use crate::sql::{args, Db, Row};
use crate::{new_id_body, now, random_string, ControlError, Result, Tx};

/// Primary (created with its instance) or secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceKind {
    /// The instance's first interface.
    Primary,
    /// Another interface of the instance.
    Secondary,
}

impl InterfaceKind {
    /// The wire form (`Type` in ECS answers).
    pub fn as_wire(self) -> &'static str {
        match self {
            InterfaceKind::Primary => "Primary",
            InterfaceKind::Secondary => "Secondary",
        }
    }
}

/// A stored network interface, as its owner sees it (no placement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterfaceRecord {
    /// `eni-...`
    pub id: NetworkInterfaceId,
    /// Owner.
    pub owner: AccountId,
    /// Primary or secondary.
    pub kind: InterfaceKind,
    /// `MacAddress`.
    pub mac: String,
    /// The instance it is attached to (`InUse`), or none (`Available`).
    pub instance: Option<InstanceId>,
    /// Its VPC (`None`: a classic instance's primary interface).
    pub vpc_id: Option<VpcId>,
    /// Its vSwitch.
    pub vswitch_id: Option<VSwitchId>,
    /// `ZoneId`.
    pub zone_id: String,
    /// `PrivateIpAddress` (the primary one).
    pub private_ip: Ipv4Addr,
    /// Its IPv6 address, if it has one.
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// `NetworkInterfaceName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `CreationTime`.
    pub created_at: String,
    /// Its groups in order (a primary interface's are its instance's).
    pub security_groups: Vec<SecurityGroupId>,
    /// Secondary private addresses (`AssignPrivateIpAddresses`), in the order assigned.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// IPv4 prefixes delegated to it (`Ipv4Prefix.N`), in the order assigned.
    pub ipv4_prefixes: Vec<Ipv4Prefix>,
    /// `DeleteOnRelease`: it goes when its instance is deleted (a primary interface always
    /// does; a secondary one created by `RunInstances` does unless asked otherwise).
    pub delete_on_release: bool,
    /// `SourceDestCheck`: `false` lets it send from addresses not its own (VPC only).
    pub source_dest_check: bool,
}

/// The addresses an interface holds beyond its primary one, as stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeldAddresses {
    secondary: Vec<Ipv4Addr>,
    prefixes: Vec<Ipv4Prefix>,
}

impl NetworkInterfaceRecord {
    /// Takes its secondary addresses and prefixes out of `held` (by interface id).
    pub(crate) fn take_addresses(
        &mut self,
        held: &mut std::collections::HashMap<String, HeldAddresses>,
    ) {
        let h = held.remove(self.id.as_str()).unwrap_or_default();
        (self.secondary_ips, self.ipv4_prefixes) = (h.secondary, h.prefixes);
    }

    /// `Status`: `InUse` attached, `Available` detached.
    pub fn status(&self) -> &'static str {
        if self.instance.is_some() {
            "InUse"
        } else {
            "Available"
        }
    }
}

/// `CreateNetworkInterface` after parameter parsing.
#[derive(Debug, Clone)]
pub struct CreateInterface {
    /// `VSwitchId`.
    pub vswitch_id: VSwitchId,
    /// `SecurityGroupId` / `SecurityGroupIds.N`, in order.
    pub security_groups: Vec<SecurityGroupId>,
    /// `PrimaryIpAddress` (allocated from the vSwitch when absent).
    pub private_ip: Option<Ipv4Addr>,
    /// `NetworkInterfaceName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `PrivateIpAddress.N`: secondary addresses to assign at creation.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// `SecondaryPrivateIpAddressCount`: free secondary addresses to assign at creation.
    pub secondary_count: usize,
    /// `Ipv4Prefix.N` / `Ipv4PrefixCount`: prefixes to delegate at creation.
    pub prefixes: PrefixRequest,
    /// `SourceDestCheck` (`true` unless asked otherwise).
    pub source_dest_check: bool,
}

/// `Ipv4Prefix.N` / `Ipv4PrefixCount`: prefixes to delegate to an interface.
#[derive(Debug, Clone, Default)]
pub struct PrefixRequest {
    /// `Ipv4Prefix.N`: these blocks of the interface's vSwitch.
    pub given: Vec<Ipv4Prefix>,
    /// `Ipv4PrefixCount`: this many free blocks of it.
    pub count: usize,
}

impl PrefixRequest {
    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty() && self.count == 0
    }
}

/// What `AssignPrivateIpAddresses` gave an interface.
#[derive(Debug, Clone, Default)]
pub struct Assigned {
    /// Secondary addresses, in order.
    pub addresses: Vec<Ipv4Addr>,
    /// Prefixes, in order.
    pub prefixes: Vec<Ipv4Prefix>,
}

/// What `ModifyNetworkInterfaceAttribute` changes; `None` keeps what is.
#[derive(Debug, Clone, Default)]
pub struct InterfaceChanges {
    /// `NetworkInterfaceName`.
    pub name: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `SecurityGroupId.N`: the whole new list.
    pub groups: Option<Vec<SecurityGroupId>>,
    /// `SourceDestCheck`.
    pub source_dest_check: Option<bool>,
}

/// Which interfaces `DescribeNetworkInterfaces` lists (every given filter must hold).
#[derive(Debug, Clone, Default)]
pub struct InterfaceFilter {
    /// `NetworkInterfaceId.N`.
    pub ids: Vec<NetworkInterfaceId>,
    /// `VpcId`.
    pub vpc_id: Option<VpcId>,
    /// `VSwitchId`.
    pub vswitch_id: Option<VSwitchId>,
    /// `InstanceId`.
    pub instance_id: Option<InstanceId>,
    /// `SecurityGroupId`.
    pub security_group_id: Option<SecurityGroupId>,
    /// `PrimaryIpAddress` / `PrivateIpAddress.N`.
    pub addresses: Vec<Ipv4Addr>,
    /// `NetworkInterfaceName`.
    pub name: Option<String>,
    /// `Type`.
    pub kind: Option<InterfaceKind>,
    /// `Status` (`Available` or `InUse`).
    pub status: Option<String>,
}

/// Where an interface is bound, as the operator and the agent feed see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The interface.
    pub interface: NetworkInterfaceId,
    /// Its instance (`None`: not attached; such an interface carries no traffic, and its
    /// host's agent fails a device labelled with it closed).
    pub instance: Option<InstanceId>,
    /// Its owner.
    pub owner: AccountId,
    /// The host it is bound to, if any.
    pub host: Option<HostId>,
    /// Primary or secondary.
    pub kind: InterfaceKind,
}

impl Placement {
    /// The engine member whose groups judge the interface's packets: its instance for a
    /// primary interface, the interface itself for an attached secondary one, none for a
    /// detached one (it carries no traffic).
    pub fn member(&self) -> Option<model::MemberId> {
        match (self.kind, &self.instance) {
            (_, None) => None,
            (InterfaceKind::Primary, Some(i)) => Some(model::MemberId::Instance(i.clone())),
            (InterfaceKind::Secondary, Some(_)) => {
                Some(model::MemberId::Interface(self.interface.clone()))
            }
        }
    }
}

/// A MAC address in Alibaba Cloud's block (`00:16:3e`), as ECS hands out.
fn new_mac() -> String {
    let hex = random_string(b"0123456789abcdef", 6);
    format!("00:16:3e:{}:{}:{}", &hex[0..2], &hex[2..4], &hex[4..6])
}

/// An instance's primary interface, as creation and the backfill of older stores make it.
pub(crate) struct Primary<'a> {
    pub(crate) instance: &'a InstanceId,
    pub(crate) owner: AccountId,
    pub(crate) region: &'a str,
    pub(crate) vpc: Option<&'a VpcId>,
    pub(crate) vswitch: Option<&'a VSwitchId>,
    pub(crate) zone: &'a str,
    pub(crate) private_ip: Ipv4Addr,
    pub(crate) ipv6: Option<std::net::Ipv6Addr>,
}

/// Inserts the primary interface of an instance.
pub(crate) fn insert_primary(db: &dyn Db, p: &Primary) -> Result<NetworkInterfaceId> {
    let id = NetworkInterfaceId::from_body(&new_id_body())?;
    db.execute(
        "INSERT INTO network_interfaces (id, account_id, region, instance_id, kind, vpc_id, vswitch_id,
                                         zone_id, private_ip, mac, name, description, created_at, ipv6)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, '', '', ?11, ?12)",
        args![
            id.as_str(),
            p.owner.get() as i64,
            p.region,
            p.instance.as_str(),
            InterfaceKind::Primary.as_wire(),
            p.vpc.map(|v| v.as_str()),
            p.vswitch.map(|v| v.as_str()),
            p.zone,
            p.private_ip.to_string(),
            new_mac(),
            now(),
            p.ipv6.map(|a| a.to_string())
        ],
    )?;
    Ok(id)
}

/// The columns [`read_interface`] reads, in its order.
pub(crate) const INTERFACE_COLUMNS: &str =
    "n.id, n.account_id, n.kind, n.mac, n.instance_id, n.vpc_id, n.vswitch_id, \
     n.zone_id, n.private_ip, n.name, n.description, n.created_at, n.ipv6, n.delete_on_release, \
     n.source_dest_check";

pub(crate) fn read_interface(r: &Row) -> Result<NetworkInterfaceRecord> {
    let parsed = |c: usize| -> Result<Option<String>> { r.opt_text(c) };
    let bad = |c: &str| ControlError::Storage(format!("bad {c}"));
    Ok(NetworkInterfaceRecord {
        id: r.parsed(0)?,
        owner: AccountId::new(r.int(1)? as u64),
        kind: if r.text(2)? == InterfaceKind::Primary.as_wire() {
            InterfaceKind::Primary
        } else {
            InterfaceKind::Secondary
        },
        mac: r.text(3)?,
        instance: parsed(4)?
            .map(|v| v.parse())
            .transpose()
            .map_err(|_| bad("instance_id"))?,
        vpc_id: parsed(5)?
            .map(|v| v.parse())
            .transpose()
            .map_err(|_| bad("vpc_id"))?,
        vswitch_id: parsed(6)?
            .map(|v| v.parse())
            .transpose()
            .map_err(|_| bad("vswitch_id"))?,
        zone_id: r.text(7)?,
        private_ip: r.parsed(8)?,
        name: r.text(9)?,
        description: r.text(10)?,
        created_at: r.text(11)?,
        ipv6: parsed(12)?
            .map(|v| v.parse())
            .transpose()
            .map_err(|_| bad("ipv6"))?,
        security_groups: Vec::new(),
        secondary_ips: Vec::new(),
        ipv4_prefixes: Vec::new(),
        delete_on_release: r.int(13)? != 0 || r.text(2)? == InterfaceKind::Primary.as_wire(),
        source_dest_check: r.int(14)? != 0,
    })
}

impl Tx<'_> {
    /// `CreateNetworkInterface`: an `Available` interface in one of the caller's vSwitches,
    /// with its groups (checked as an instance's are) and an address of the vSwitch no other
    /// interface of the VPC holds.
    pub fn create_interface(&self, req: &CreateInterface) -> Result<NetworkInterfaceId> {
        let vswitch = self.vswitch(&req.vswitch_id)?;
        self.check_interface_quota(1)?;
        self.check_groups(&req.security_groups, Some(&vswitch.vpc_id), 1)?;
        let private_ip = match req.private_ip {
            Some(ip) => {
                if !crate::addressing::usable(&vswitch.cidr).any(|a| a == ip) {
                    return Err(ControlError::PrivateIpNotInVSwitch(ip));
                }
                if self.address_taken(ip, Some(&vswitch.vpc_id))? {
                    return Err(ControlError::PrivateIpInUse(ip));
                }
                ip
            }
            None => self.free_address(&vswitch.cidr, Some(&vswitch.vpc_id))?,
        };
        let id = NetworkInterfaceId::from_body(&new_id_body())?;
        self.db.execute(
            "INSERT INTO network_interfaces (id, account_id, region, kind, vpc_id, vswitch_id, zone_id,
                                             private_ip, mac, name, description, created_at,
                                             source_dest_check)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            args![
                id.as_str(),
                self.ctx.account.get() as i64,
                &self.ctx.region,
                InterfaceKind::Secondary.as_wire(),
                vswitch.vpc_id.as_str(),
                vswitch.id.as_str(),
                &vswitch.zone_id,
                private_ip.to_string(),
                new_mac(),
                &req.name,
                &req.description,
                now(),
                i64::from(req.source_dest_check)
            ],
        )?;
        self.write_interface_groups(&id, &req.security_groups)?;
        self.log(
            "CreateNetworkInterface",
            id.as_str(),
            json!({"PrivateIpAddress": private_ip.to_string()}),
        )?;
        if !req.secondary_ips.is_empty() || req.secondary_count > 0 || !req.prefixes.is_empty() {
            self.assign_private_ips(&id, &req.secondary_ips, req.secondary_count, &req.prefixes)?;
        }
        Ok(id)
    }

    fn write_interface_groups(
        &self,
        id: &NetworkInterfaceId,
        groups: &[SecurityGroupId],
    ) -> Result<()> {
        self.db.execute(
            "DELETE FROM interface_memberships WHERE interface_id = ?1",
            args![id.as_str()],
        )?;
        for (position, g) in groups.iter().enumerate() {
            self.db.execute(
                "INSERT INTO interface_memberships (interface_id, group_id, position) VALUES (?1, ?2, ?3)",
                args![id.as_str(), g.as_str(), position],
            )?;
        }
        Ok(())
    }

    /// One of the caller's interfaces in the region.
    pub fn interface(&self, id: &NetworkInterfaceId) -> Result<NetworkInterfaceRecord> {
        let filter = InterfaceFilter {
            ids: vec![id.clone()],
            ..InterfaceFilter::default()
        };
        self.interfaces(&filter)?
            .pop()
            .ok_or_else(|| ControlError::NetworkInterfaceNotFound(id.clone()))
    }

    /// The caller's interfaces in the region that pass `f`, oldest first.
    pub fn interfaces(&self, f: &InterfaceFilter) -> Result<Vec<NetworkInterfaceRecord>> {
        // One interface asked for (every command on an interface, every tag check) is read
        // by its id, not by reading the account's every interface.
        let only = match f.ids.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        };
        let rows = self.db.query(
            &format!(
                "SELECT {INTERFACE_COLUMNS} FROM network_interfaces n
                 WHERE n.account_id = ?1 AND n.region = ?2 AND (CAST(?3 AS TEXT) IS NULL OR n.id = ?3)
                 ORDER BY n.seq"
            ),
            args![self.ctx.account.get() as i64, &self.ctx.region, only],
        )?;
        let mut out: Vec<NetworkInterfaceRecord> =
            rows.iter().map(read_interface).collect::<Result<_>>()?;
        // Groups of every listed interface in two queries: the instances' (primary
        // interfaces) and the interfaces' own.
        let mut by_instance: std::collections::HashMap<String, Vec<SecurityGroupId>> =
            std::collections::HashMap::new();
        for r in self.db.query(
            "SELECT m.instance_id, m.group_id FROM memberships m JOIN instances i ON i.id = m.instance_id
             WHERE i.account_id = ?1 AND i.region = ?2 ORDER BY m.position",
            args![self.ctx.account.get() as i64, &self.ctx.region],
        )? {
            by_instance.entry(r.text(0)?).or_default().push(r.parsed(1)?);
        }
        let mut by_interface: std::collections::HashMap<String, Vec<SecurityGroupId>> =
            std::collections::HashMap::new();
        for r in self.db.query(
            "SELECT m.interface_id, m.group_id FROM interface_memberships m
             JOIN network_interfaces n ON n.id = m.interface_id
             WHERE n.account_id = ?1 AND n.region = ?2 AND (CAST(?3 AS TEXT) IS NULL OR n.id = ?3)
             ORDER BY m.position",
            args![self.ctx.account.get() as i64, &self.ctx.region, only],
        )? {
            by_interface
                .entry(r.text(0)?)
                .or_default()
                .push(r.parsed(1)?);
        }
        let mut addresses = self.addresses_where(
            "WHERE n.account_id = ?1 AND n.region = ?2 AND (CAST(?3 AS TEXT) IS NULL OR n.id = ?3)",
            args![self.ctx.account.get() as i64, &self.ctx.region, only],
        )?;
        for n in &mut out {
            n.take_addresses(&mut addresses);
            n.security_groups = match (n.kind, &n.instance) {
                (InterfaceKind::Primary, Some(i)) => {
                    by_instance.get(i.as_str()).cloned().unwrap_or_default()
                }
                _ => by_interface.remove(n.id.as_str()).unwrap_or_default(),
            };
        }
        out.retain(|n| {
            (f.ids.is_empty() || f.ids.contains(&n.id))
                && f.vpc_id
                    .as_ref()
                    .is_none_or(|v| n.vpc_id.as_ref() == Some(v))
                && f.vswitch_id
                    .as_ref()
                    .is_none_or(|v| n.vswitch_id.as_ref() == Some(v))
                && f.instance_id
                    .as_ref()
                    .is_none_or(|i| n.instance.as_ref() == Some(i))
                && f.security_group_id
                    .as_ref()
                    .is_none_or(|g| n.security_groups.contains(g))
                && (f.addresses.is_empty() || f.addresses.contains(&n.private_ip))
                && f.name.as_ref().is_none_or(|x| &n.name == x)
                && f.kind.is_none_or(|k| n.kind == k)
                && f.status.as_ref().is_none_or(|s| n.status() == s)
        });
        Ok(out)
    }

    /// `ModifyNetworkInterfaceAttribute`: name, description and/or the whole group list (a
    /// primary interface's groups are its instance's, changed as `ModifyInstanceAttribute`
    /// changes them).
    pub fn modify_interface(
        &self,
        id: &NetworkInterfaceId,
        changes: InterfaceChanges,
    ) -> Result<()> {
        let n = self.interface(id)?;
        let InterfaceChanges {
            name,
            description,
            groups,
            source_dest_check,
        } = changes;
        // Forwarding for others is a VPC's (one account's network); on the shared classic
        // network an instance could then send as another account's.
        if source_dest_check == Some(false) && n.vpc_id.is_none() {
            return Err(ControlError::SourceDestCheckClassic);
        }
        if let Some(groups) = groups {
            match (n.kind, &n.instance) {
                (InterfaceKind::Primary, Some(instance)) => self.modify_instance(
                    instance,
                    crate::InstanceChanges {
                        groups: Some(groups),
                        ..Default::default()
                    },
                )?,
                _ => self.set_interface_groups(&n, &groups)?,
            }
        }
        self.db.execute(
            "UPDATE network_interfaces SET name = ?2, description = ?3, source_dest_check = ?4
             WHERE id = ?1",
            args![
                id.as_str(),
                name.unwrap_or(n.name),
                description.unwrap_or(n.description),
                i64::from(source_dest_check.unwrap_or(n.source_dest_check))
            ],
        )?;
        self.log("ModifyNetworkInterfaceAttribute", id.as_str(), json!({}))
    }

    /// Replaces the groups of an interface that is not a primary one, after the checks an
    /// instance's groups get.
    fn set_interface_groups(
        &self,
        n: &NetworkInterfaceRecord,
        groups: &[SecurityGroupId],
    ) -> Result<()> {
        self.check_groups(groups, n.vpc_id.as_ref(), 0)?;
        for g in groups.iter().filter(|g| !n.security_groups.contains(g)) {
            let record = self.group(g)?;
            if self.members(g)? + 1 > group_members(record.group_type) {
                return Err(ControlError::GroupMemberLimit);
            }
        }
        self.write_interface_groups(&n.id, groups)
    }

    /// `JoinSecurityGroup` / `LeaveSecurityGroup` with `NetworkInterfaceId`.
    pub fn interface_membership(
        &self,
        id: &NetworkInterfaceId,
        group: &SecurityGroupId,
        join: bool,
    ) -> Result<()> {
        self.group(group)?;
        let n = self.interface(id)?;
        if let (InterfaceKind::Primary, Some(instance)) = (n.kind, &n.instance) {
            return if join {
                self.join(instance, group)
            } else {
                self.leave(instance, group)
            };
        }
        let mut groups = n.security_groups.clone();
        match (join, groups.contains(group)) {
            (true, true) => return Err(ControlError::AlreadyMember),
            (false, false) => return Err(ControlError::NotMember),
            (true, false) if groups.len() >= GROUPS_PER_INSTANCE => {
                return Err(ControlError::InstanceGroupLimit)
            }
            (false, true) if groups.len() == 1 => return Err(ControlError::LastGroup),
            (true, false) => groups.push(group.clone()),
            (false, true) => groups.retain(|g| g != group),
        }
        self.set_interface_groups(&n, &groups)?;
        self.log(
            if join {
                "JoinSecurityGroup"
            } else {
                "LeaveSecurityGroup"
            },
            id.as_str(),
            json!({"SecurityGroupId": group.as_str()}),
        )
    }

    /// `AssignIpv6Addresses`: the interface's IPv6 address, from its vSwitch's block (one
    /// per interface in this version: the engine judges one IPv6 address per instance).
    pub fn assign_ipv6(
        &self,
        id: &NetworkInterfaceId,
        want: crate::Ipv6Request,
    ) -> Result<std::net::Ipv6Addr> {
        let n = self.interface(id)?;
        if n.ipv6.is_some() {
            return Err(ControlError::Ipv6PerInterface);
        }
        let block = match &n.vswitch_id {
            Some(s) => self.vswitch(s)?.ipv6_cidr,
            None => None,
        }
        .ok_or(ControlError::VSwitchIpv6NotEnabled)?;
        let address = self.ipv6_address(&block, n.vpc_id.as_ref(), want)?;
        self.db.execute(
            "UPDATE network_interfaces SET ipv6 = ?2 WHERE id = ?1",
            args![id.as_str(), address.to_string()],
        )?;
        self.log(
            "AssignIpv6Addresses",
            id.as_str(),
            json!({"Ipv6Address": address.to_string()}),
        )?;
        Ok(address)
    }

    /// `UnassignIpv6Addresses`: each address must be the interface's.
    pub fn unassign_ipv6(
        &self,
        id: &NetworkInterfaceId,
        addresses: &[std::net::Ipv6Addr],
    ) -> Result<()> {
        let n = self.interface(id)?;
        for a in addresses {
            if n.ipv6 != Some(*a) {
                return Err(ControlError::Ipv6NotOnInterface(*a));
            }
        }
        if !addresses.is_empty() {
            self.db.execute(
                "UPDATE network_interfaces SET ipv6 = NULL WHERE id = ?1",
                args![id.as_str()],
            )?;
        }
        self.log("UnassignIpv6Addresses", id.as_str(), json!({}))
    }

    /// `DeleteNetworkInterface`: only an `Available` one (a primary interface goes with its
    /// instance).
    pub fn delete_interface(&self, id: &NetworkInterfaceId) -> Result<()> {
        let n = self.interface(id)?;
        if n.instance.is_some() {
            return Err(ControlError::InterfaceInUse);
        }
        self.db.execute(
            "DELETE FROM interface_addresses WHERE interface_id = ?1",
            args![id.as_str()],
        )?;
        self.db.execute(
            "DELETE FROM interface_memberships WHERE interface_id = ?1",
            args![id.as_str()],
        )?;
        self.db.execute(
            "DELETE FROM tags WHERE resource_type = 'eni' AND resource_id = ?1",
            args![id.as_str()],
        )?;
        self.db.execute(
            "DELETE FROM network_interfaces WHERE id = ?1",
            args![id.as_str()],
        )?;
        self.log("DeleteNetworkInterface", id.as_str(), json!({}))
    }

    /// The secondary addresses and prefixes by interface of the interfaces `n` that `filter`
    /// keeps (a `JOIN` and `WHERE` over `network_interfaces n`, with `params`), in one query.
    pub(crate) fn addresses_where(
        &self,
        filter: &str,
        params: &[crate::sql::Value],
    ) -> Result<std::collections::HashMap<String, HeldAddresses>> {
        let mut out: std::collections::HashMap<String, HeldAddresses> =
            std::collections::HashMap::new();
        for r in self.db.query(
            &format!(
                "SELECT a.interface_id, a.address, a.prefix_len FROM interface_addresses a
                 JOIN network_interfaces n ON n.id = a.interface_id {filter} ORDER BY a.seq"
            ),
            params,
        )? {
            let held = out.entry(r.text(0)?).or_default();
            let address: Ipv4Addr = r.parsed(1)?;
            if r.int(2)? == i64::from(Ipv4Prefix::LEN) {
                held.prefixes.push(
                    Ipv4Prefix::at(address)
                        .ok_or_else(|| ControlError::Storage(format!("bad prefix {address}")))?,
                );
            } else {
                held.secondary.push(address);
            }
        }
        Ok(out)
    }

    /// `AssignPrivateIpAddresses`: the given addresses of the interface's vSwitch, or `count`
    /// free ones, become secondary addresses of a VPC interface, and the given /28 blocks of
    /// the vSwitch, or `prefixes.count` free ones, its prefixes; all or none. Every address
    /// of either kind is unique in the VPC; an interface holds at most
    /// [`crate::Limits::secondary_addresses_per_interface`] secondary addresses and
    /// [`crate::Limits::prefixes_per_interface`] prefixes. Group references to the
    /// interface's groups match them all from then on, and anti-spoofing lets it send from
    /// them.
    pub fn assign_private_ips(
        &self,
        id: &NetworkInterfaceId,
        given: &[Ipv4Addr],
        count: usize,
        prefixes: &PrefixRequest,
    ) -> Result<Assigned> {
        let n = self.interface(id)?;
        let (Some(vpc), Some(vsw)) = (&n.vpc_id, &n.vswitch_id) else {
            return Err(ControlError::InstanceNotInVpc);
        };
        let vswitch = self.vswitch(vsw)?;
        let max = self.limits.secondary_addresses_per_interface;
        if n.secondary_ips.len() + given.len() + count > max {
            return Err(ControlError::SecondaryAddressLimit(max));
        }
        let max = self.limits.prefixes_per_interface;
        if n.ipv4_prefixes.len() + prefixes.given.len() + prefixes.count > max {
            return Err(ControlError::PrefixLimit(max));
        }
        let mut added = Assigned::default();
        for (k, ip) in given.iter().enumerate() {
            if !crate::addressing::usable(&vswitch.cidr).any(|a| a == *ip) {
                return Err(ControlError::PrivateIpNotInVSwitch(*ip));
            }
            if given[..k].contains(ip) || self.address_taken(*ip, Some(vpc))? {
                return Err(ControlError::PrivateIpInUse(*ip));
            }
            self.insert_held(id, vpc, *ip, 32)?;
            added.addresses.push(*ip);
        }
        for _ in 0..count {
            let ip = self.free_address(&vswitch.cidr, Some(vpc))?;
            self.insert_held(id, vpc, ip, 32)?;
            added.addresses.push(ip);
        }
        for prefix in &prefixes.given {
            if !crate::addressing::prefix_usable(&vswitch.cidr, *prefix) {
                return Err(ControlError::PrefixNotInVSwitch(*prefix));
            }
            // Earlier blocks of this request are rows already, so a repeat is taken too.
            if self.block_taken(*prefix, vpc)? {
                return Err(ControlError::PrefixInUse(*prefix));
            }
            self.insert_held(id, vpc, prefix.network(), Ipv4Prefix::LEN)?;
            added.prefixes.push(*prefix);
        }
        for _ in 0..prefixes.count {
            let prefix = self.free_prefix(&vswitch.cidr, vpc)?;
            self.insert_held(id, vpc, prefix.network(), Ipv4Prefix::LEN)?;
            added.prefixes.push(prefix);
        }
        self.log(
            "AssignPrivateIpAddresses",
            id.as_str(),
            json!({
                "PrivateIpAddress": added.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "Ipv4Prefix": added.prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        )?;
        Ok(added)
    }

    fn insert_held(
        &self,
        id: &NetworkInterfaceId,
        vpc: &VpcId,
        ip: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<()> {
        self.db.execute(
            "INSERT INTO interface_addresses (interface_id, region, vpc_id, address, prefix_len)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![
                id.as_str(),
                &self.ctx.region,
                vpc.as_str(),
                ip.to_string(),
                i64::from(prefix_len)
            ],
        )?;
        Ok(())
    }

    /// `UnassignPrivateIpAddresses`: secondary addresses and prefixes the interface has, all
    /// or none.
    pub fn unassign_private_ips(
        &self,
        id: &NetworkInterfaceId,
        remove: &[Ipv4Addr],
        prefixes: &[Ipv4Prefix],
    ) -> Result<()> {
        let n = self.interface(id)?;
        for ip in remove {
            if !n.secondary_ips.contains(ip) {
                return Err(ControlError::PrivateIpNotOnInterface(*ip));
            }
        }
        for prefix in prefixes {
            if !n.ipv4_prefixes.contains(prefix) {
                return Err(ControlError::PrefixNotOnInterface(*prefix));
            }
        }
        for (ip, len) in remove
            .iter()
            .map(|ip| (*ip, 32))
            .chain(prefixes.iter().map(|p| (p.network(), Ipv4Prefix::LEN)))
        {
            self.db.execute(
                "DELETE FROM interface_addresses WHERE interface_id = ?1 AND address = ?2
                 AND prefix_len = ?3",
                args![id.as_str(), ip.to_string(), i64::from(len)],
            )?;
        }
        self.log(
            "UnassignPrivateIpAddresses",
            id.as_str(),
            json!({
                "PrivateIpAddress": remove.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "Ipv4Prefix": prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        )
    }

    /// Refuses `more` interfaces (or instances, each with its primary one) beyond the
    /// account's quota in the region.
    pub(crate) fn check_interface_quota(&self, more: usize) -> Result<()> {
        let limit = self.limits.interfaces_per_region;
        self.check_quota(
            "network_interfaces",
            more,
            limit,
            ControlError::InterfaceQuota,
        )
    }

    /// Refuses unless the caller is an operator account.
    pub fn require_operator(&self) -> Result<()> {
        let operator = self
            .db
            .query_opt(
                "SELECT operator FROM accounts WHERE id = ?1",
                args![self.ctx.account.get() as i64],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        if operator == 1 {
            Ok(())
        } else {
            Err(ControlError::OperatorOnly)
        }
    }

    /// Removes the primary interface of an instance being deleted, and its tags; its
    /// secondary interfaces are detached (they outlive it, as in ECS).
    pub(crate) fn delete_interfaces_of(&self, instance: &InstanceId) -> Result<()> {
        let released = self.db.query(
            "SELECT id FROM network_interfaces WHERE instance_id = ?1 AND kind = ?2 AND delete_on_release != 0",
            args![instance.as_str(), InterfaceKind::Secondary.as_wire()],
        )?;
        for r in released {
            let id: NetworkInterfaceId = r.parsed(0)?;
            self.db.execute(
                "UPDATE network_interfaces SET instance_id = NULL WHERE id = ?1",
                args![id.as_str()],
            )?;
            self.delete_interface(&id)?;
        }
        self.db.execute(
            "UPDATE network_interfaces SET instance_id = NULL WHERE instance_id = ?1 AND kind = ?2",
            args![instance.as_str(), InterfaceKind::Secondary.as_wire()],
        )?;
        self.db.execute(
            "DELETE FROM tags WHERE resource_type = 'eni' AND resource_id IN
                 (SELECT id FROM network_interfaces WHERE instance_id = ?1)",
            args![instance.as_str()],
        )?;
        self.db.execute(
            "DELETE FROM interface_addresses WHERE interface_id IN
                 (SELECT id FROM network_interfaces WHERE instance_id = ?1)",
            args![instance.as_str()],
        )?;
        self.db.execute(
            "DELETE FROM network_interfaces WHERE instance_id = ?1",
            args![instance.as_str()],
        )?;
        Ok(())
    }

    /// `AttachNetworkInterface`: one of the caller's `Available` interfaces becomes a
    /// secondary interface of one of its instances, in the same VPC and zone, within
    /// [`crate::Limits::interfaces_per_instance`]. From then on the engine judges flows at
    /// the interface's address by the interface's own groups.
    pub fn attach_interface(&self, id: &NetworkInterfaceId, instance: &InstanceId) -> Result<()> {
        self.attach_interface_releasing(id, instance, false)
    }

    /// [`Tx::attach_interface`], the interface then deleted with the instance when
    /// `delete_on_release` (`RunInstances`' `NetworkInterface.N.DeleteOnRelease`).
    pub fn attach_interface_releasing(
        &self,
        id: &NetworkInterfaceId,
        instance: &InstanceId,
        delete_on_release: bool,
    ) -> Result<()> {
        let n = self.interface(id)?;
        let i = self.instance(instance)?;
        if n.instance.is_some() || n.kind != InterfaceKind::Secondary {
            return Err(ControlError::InterfaceInUse);
        }
        if n.vpc_id.is_none() || n.vpc_id != i.vpc_id {
            return Err(ControlError::InterfaceVpcMismatch);
        }
        if n.zone_id != i.zone_id {
            return Err(ControlError::InterfaceZoneMismatch);
        }
        let attached = self
            .db
            .query_one(
                "SELECT COUNT(*) FROM network_interfaces WHERE instance_id = ?1",
                args![instance.as_str()],
            )?
            .int(0)? as usize;
        if attached >= self.limits.interfaces_per_instance {
            return Err(ControlError::InterfacesPerInstance(
                self.limits.interfaces_per_instance,
            ));
        }
        self.db.execute(
            "UPDATE network_interfaces SET instance_id = ?2, delete_on_release = ?3 WHERE id = ?1",
            args![id.as_str(), instance.as_str(), i64::from(delete_on_release)],
        )?;
        self.log(
            "AttachNetworkInterface",
            id.as_str(),
            json!({"InstanceId": instance.as_str()}),
        )
    }

    /// `DetachNetworkInterface`: a secondary interface leaves its instance (`Available`
    /// again); its traffic stops with it.
    pub fn detach_interface(&self, id: &NetworkInterfaceId, instance: &InstanceId) -> Result<()> {
        let n = self.interface(id)?;
        self.instance(instance)?;
        if n.kind == InterfaceKind::Primary {
            return Err(ControlError::DetachPrimary);
        }
        if n.instance.as_ref() != Some(instance) {
            return Err(ControlError::InterfaceNotAttached(id.clone()));
        }
        // Detached, it is the caller's to delete: it no longer goes with the instance.
        self.db.execute(
            "UPDATE network_interfaces SET instance_id = NULL, delete_on_release = 0 WHERE id = ?1",
            args![id.as_str()],
        )?;
        self.log(
            "DetachNetworkInterface",
            id.as_str(),
            json!({"InstanceId": instance.as_str()}),
        )
    }

    /// The region's attached secondary interfaces in `scope`, as engine members (each with
    /// its own groups, in order), in three queries that read the scope only.
    pub(crate) fn secondary_members(&self, scope: crate::Scope) -> Result<Vec<model::Instance>> {
        let params = scope.params(&self.ctx.region);
        let filter = format!(
            "WHERE {} AND n.kind = '{}' AND n.instance_id IS NOT NULL",
            scope.on_interfaces(),
            InterfaceKind::Secondary.as_wire()
        );
        let rows = self.db.query(
            &format!(
                "SELECT n.id, n.instance_id, n.account_id, n.vpc_id, n.private_ip, n.ipv6,
                        n.source_dest_check
                 FROM network_interfaces n {filter} ORDER BY n.seq"
            ),
            &params,
        )?;
        let mut addresses = self.addresses_where(&filter, &params)?;
        let mut groups: std::collections::HashMap<String, Vec<SecurityGroupId>> =
            std::collections::HashMap::new();
        for r in self.db.query(
            &format!(
                "SELECT m.interface_id, m.group_id FROM interface_memberships m
                 JOIN network_interfaces n ON n.id = m.interface_id {filter} ORDER BY m.position"
            ),
            &params,
        )? {
            groups.entry(r.text(0)?).or_default().push(r.parsed(1)?);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: NetworkInterfaceId = r.parsed(0)?;
            let held = addresses.remove(id.as_str()).unwrap_or_default();
            out.push(model::Instance {
                secondary_ips: held.secondary,
                ipv4_prefixes: held.prefixes,
                security_groups: groups.remove(id.as_str()).unwrap_or_default(),
                attached_to: Some(r.parsed(1)?),
                owner: AccountId::new(r.int(2)? as u64),
                vpc_id: r.opt_text(3)?.map(|v| v.parse()).transpose()?,
                private_ip: r.parsed(4)?,
                ipv6: r
                    .opt_text(5)?
                    .map(|a| a.parse())
                    .transpose()
                    .map_err(|_| ControlError::Storage("bad ipv6".into()))?,
                public_ip: None,
                source_dest_check: r.int(6)? != 0,
                id: model::MemberId::Interface(id),
            });
        }
        Ok(out)
    }

    /// Binds an interface of any account in the region to `host`, or unbinds it (`None`).
    /// Operator only.
    pub fn place_interface(&self, id: &NetworkInterfaceId, host: Option<&HostId>) -> Result<()> {
        self.require_operator()?;
        let changed = self.db.execute(
            "UPDATE network_interfaces SET host = ?3 WHERE id = ?1 AND region = ?2",
            args![id.as_str(), &self.ctx.region, host.map(HostId::as_str)],
        )?;
        if changed == 0 {
            return Err(ControlError::NetworkInterfaceNotFound(id.clone()));
        }
        self.log(
            "PlaceNetworkInterface",
            id.as_str(),
            json!({"HostId": host.map(HostId::as_str)}),
        )
    }

    /// The region's interfaces with their placement, oldest first: all of them, or those
    /// bound to `host`, or the one `only`. Operator only.
    pub fn placements(
        &self,
        host: Option<&HostId>,
        only: Option<&NetworkInterfaceId>,
    ) -> Result<Vec<Placement>> {
        self.require_operator()?;
        self.placements_where(host, only, false)
    }

    /// The region's interfaces bound to a host, by host, each host's oldest first: the agent
    /// feed's question, asked once per revision for every host (the server authenticates
    /// the feed with the agent token, not an account).
    pub fn bound_interfaces(&self) -> Result<BTreeMap<HostId, Vec<Placement>>> {
        let mut bound: BTreeMap<HostId, Vec<Placement>> = BTreeMap::new();
        for p in self.placements_where(None, None, true)? {
            if let Some(host) = p.host.clone() {
                bound.entry(host).or_default().push(p);
            }
        }
        Ok(bound)
    }

    fn placements_where(
        &self,
        host: Option<&HostId>,
        only: Option<&NetworkInterfaceId>,
        placed_only: bool,
    ) -> Result<Vec<Placement>> {
        // `placed_only`: the agent feed reads the placed interfaces after every commit (the
        // fleet's, not every interface of the region), through the index on (region, host).
        let by_host = match (host, placed_only) {
            (Some(_), _) => "host = ?2",
            (None, true) => "CAST(?2 AS TEXT) IS NULL AND host IS NOT NULL",
            (None, false) => "CAST(?2 AS TEXT) IS NULL",
        };
        let by_id = if only.is_some() {
            "id = ?3"
        } else {
            "CAST(?3 AS TEXT) IS NULL"
        };
        self.db
            .query(
                &format!(
                    "SELECT id, instance_id, account_id, host, kind FROM network_interfaces
                     WHERE {by_id} AND region = ?1 AND {by_host} ORDER BY seq"
                ),
                args![
                    &self.ctx.region,
                    host.map(HostId::as_str),
                    only.map(NetworkInterfaceId::as_str)
                ],
            )?
            .iter()
            .map(|r| {
                Ok(Placement {
                    interface: r.parsed(0)?,
                    instance: r.opt_text(1)?.map(|i| i.parse()).transpose()?,
                    owner: AccountId::new(r.int(2)? as u64),
                    host: r.opt_text(3)?.map(|h| h.parse()).transpose()?,
                    kind: if r.text(4)? == InterfaceKind::Primary.as_wire() {
                        InterfaceKind::Primary
                    } else {
                        InterfaceKind::Secondary
                    },
                })
            })
            .collect()
    }
}

/// Gives every instance without an interface its primary one (stores written before
/// interfaces existed). Looked for in a read first by the caller.
pub(crate) fn backfill_primary(db: &dyn Db) -> Result<()> {
    let rows = db.query(
        "SELECT i.id, i.account_id, i.region, i.vpc_id, i.vswitch_id, i.zone_id, i.private_ip
         FROM instances i
         WHERE NOT EXISTS (SELECT 1 FROM network_interfaces n WHERE n.instance_id = i.id)
         ORDER BY i.seq",
        args![],
    )?;
    for r in rows {
        let instance: InstanceId = r.parsed(0)?;
        let vpc: Option<VpcId> = r.opt_text(3)?.map(|v| v.parse()).transpose()?;
        let vswitch: Option<VSwitchId> = r.opt_text(4)?.map(|v| v.parse()).transpose()?;
        insert_primary(
            db,
            &Primary {
                instance: &instance,
                owner: AccountId::new(r.int(1)? as u64),
                region: &r.text(2)?,
                vpc: vpc.as_ref(),
                vswitch: vswitch.as_ref(),
                zone: &r.text(5)?,
                private_ip: r.parsed(6)?,
                ipv6: None,
            },
        )?;
    }
    Ok(())
}
