//! Private addresses: which of a block instances may take, which are held, and which one a
//! new interface gets (a VPC's in order, the shared classic pool's from a random place).
//! Instances (`network`) and interfaces (`interfaces`) both allocate through here.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use model::VpcId;

use crate::sql::args;
use crate::{ControlError, Result, Tx};

/// Every address of a block that instances may take.
pub(crate) fn usable(net: &Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    let (first, last) = (u32::from(net.network()), u32::from(net.broadcast()));
    (first.saturating_add(2)..last).map(Ipv4Addr::from)
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
    /// any network interface (every instance's primary one included).
    pub(crate) fn address_taken(&self, ip: Ipv4Addr, vpc: Option<&VpcId>) -> Result<bool> {
        self.db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM network_interfaces WHERE private_ip = ?1 AND region = ?2
                 AND (vpc_id = ?3 OR (vpc_id IS NULL AND CAST(?3 AS TEXT) IS NULL)))
                 OR EXISTS(SELECT 1 FROM interface_addresses WHERE address = ?1 AND region = ?2
                 AND vpc_id = ?3)",
                args![ip.to_string(), &self.ctx.region, vpc.map(|v| v.as_str())],
            )?
            .flag(0)
    }

    /// An address of `pool` no interface of the VPC (or classic network) holds: a VPC's first
    /// free one, the classic network's from a random place (see [`shuffled_start`]).
    pub(crate) fn free_address(&self, pool: &Ipv4Net, vpc: Option<&VpcId>) -> Result<Ipv4Addr> {
        let used = self
            .db
            .query(
                "SELECT private_ip FROM network_interfaces WHERE region = ?1
                 AND (vpc_id = ?2 OR (vpc_id IS NULL AND CAST(?2 AS TEXT) IS NULL))
                 UNION SELECT address FROM interface_addresses WHERE region = ?1 AND vpc_id = ?2",
                args![&self.ctx.region, vpc.map(|v| v.as_str())],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<std::collections::HashSet<String>>>()?;
        let free = |a: &Ipv4Addr| !used.contains(&a.to_string());
        match vpc {
            // A VPC is its owner's alone: its addresses go in order, as ECS gives them.
            Some(_) => usable(pool).find(free),
            None => shuffled_start(pool).find(free),
        }
        .ok_or(ControlError::NoFreeAddress)
    }
}
