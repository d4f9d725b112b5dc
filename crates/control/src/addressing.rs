//! Private addresses: which of a block instances may take, which are held, and which one a
//! new interface gets (a VPC's in order, the shared classic pool's from a random place).
//! Instances (`network`) and interfaces (`interfaces`) both allocate through here.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use model::{Ipv4Prefix, VpcId};

use crate::sql::args;
use crate::{ControlError, Result, Tx};

/// Every address of a block that instances may take.
pub(crate) fn usable(net: &Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    let (first, last) = (u32::from(net.network()), u32::from(net.broadcast()));
    (first.saturating_add(2)..last).map(Ipv4Addr::from)
}

/// Whether every address of `prefix` is one instances may take in `net` (a block holding a
/// vSwitch's reserved first two or its last address is not delegated).
pub(crate) fn prefix_usable(net: &Ipv4Net, prefix: Ipv4Prefix) -> bool {
    let (first, last) = (u32::from(net.network()), u32::from(net.broadcast()));
    prefix
        .addresses()
        .all(|a| (first.saturating_add(2)..last).contains(&u32::from(a)))
}

/// The usable addresses of a pool shared by every account (the classic network's), from a
/// random one on, wrapping round: what one account is given says nothing of where another's
/// instances are, as the next address of a sequence would.
pub(crate) fn shuffled_start(net: &Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    use rand::RngExt as _;
    let all: Vec<Ipv4Addr> = usable(net).collect();
    let start = if all.is_empty() {
        0
    } else {
        rand::rng().random_range(0..all.len())
    };
    let (before, after) = all.split_at(start);
    let mut order = after.to_vec();
    order.extend_from_slice(before);
    order.into_iter()
}

impl Tx<'_> {
    /// Whether a private address is held in the VPC (or, `None`, on the classic network) by
    /// any network interface (every instance's primary one included), as an address or as
    /// one of a delegated prefix.
    pub(crate) fn address_taken(&self, ip: Ipv4Addr, vpc: Option<&VpcId>) -> Result<bool> {
        self.db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM network_interfaces WHERE private_ip = ?1 AND region = ?2
                 AND (vpc_id = ?3 OR (vpc_id IS NULL AND CAST(?3 AS TEXT) IS NULL)))
                 OR EXISTS(SELECT 1 FROM interface_addresses WHERE region = ?2 AND vpc_id = ?3
                 AND ((address = ?1 AND prefix_len = 32) OR (address = ?4 AND prefix_len = ?5)))",
                args![
                    ip.to_string(),
                    &self.ctx.region,
                    vpc.map(|v| v.as_str()),
                    Ipv4Prefix::of(ip).network().to_string(),
                    i64::from(Ipv4Prefix::LEN)
                ],
            )?
            .flag(0)
    }

    /// Whether any address of `prefix` is held in the VPC.
    pub(crate) fn block_taken(&self, prefix: Ipv4Prefix, vpc: &VpcId) -> Result<bool> {
        Ok(self.held(Some(vpc))?.iter().any(|a| prefix.contains(*a)))
    }

    /// Every address held in the VPC (or classic network): interfaces' primary and
    /// secondary addresses and every address of their prefixes.
    fn held(&self, vpc: Option<&VpcId>) -> Result<std::collections::HashSet<Ipv4Addr>> {
        let mut out = std::collections::HashSet::new();
        for r in self.db.query(
            "SELECT private_ip, 32 FROM network_interfaces WHERE region = ?1
             AND (vpc_id = ?2 OR (vpc_id IS NULL AND CAST(?2 AS TEXT) IS NULL))
             UNION ALL SELECT address, prefix_len FROM interface_addresses
             WHERE region = ?1 AND vpc_id = ?2",
            args![&self.ctx.region, vpc.map(|v| v.as_str())],
        )? {
            let address: Ipv4Addr = r.parsed(0)?;
            let block = r.int(1)? == i64::from(Ipv4Prefix::LEN);
            match Ipv4Prefix::at(address).filter(|_| block) {
                Some(prefix) => out.extend(prefix.addresses()),
                None => {
                    out.insert(address);
                }
            }
        }
        Ok(out)
    }

    /// An address of `pool` no interface of the VPC (or classic network) holds: a VPC's first
    /// free one, the classic network's from a random place (see [`shuffled_start`]).
    pub(crate) fn free_address(&self, pool: &Ipv4Net, vpc: Option<&VpcId>) -> Result<Ipv4Addr> {
        let used = self.held(vpc)?;
        let free = |a: &Ipv4Addr| !used.contains(a);
        match vpc {
            // A VPC is its owner's alone: its addresses go in order, as ECS gives them.
            Some(_) => usable(pool).find(free),
            None => shuffled_start(pool).find(free),
        }
        .ok_or(ControlError::NoFreeAddress)
    }

    /// The first /28 block of `pool` whose every address is usable and free in the VPC.
    pub(crate) fn free_prefix(&self, pool: &Ipv4Net, vpc: &VpcId) -> Result<Ipv4Prefix> {
        let used = self.held(Some(vpc))?;
        let first = u32::from(pool.network());
        let blocks = (first..=u32::from(pool.broadcast())).step_by(1 << (32 - Ipv4Prefix::LEN));
        blocks
            .filter_map(|b| Ipv4Prefix::at(Ipv4Addr::from(b)))
            .find(|p| prefix_usable(pool, *p) && !p.addresses().any(|a| used.contains(&a)))
            .ok_or(ControlError::NoFreeAddress)
    }
}
