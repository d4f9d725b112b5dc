//! Fleet reachability: which instances can open which services on which others.
//!
//! Instances are first sorted into classes that no flow verdict can tell apart: the same
//! ordered group list (same rules, same memberships for group references and the
//! intra-group default), an address in the same cell of the region's CIDR boundaries
//! (every CIDR block of every rule and prefix list), and the same groups behind that address
//! (instances of overlapping VPCs can share one). The verdict then factors by stage: egress
//! is judged once per (source rule set, destination class) and ingress once per
//! (destination rule set, source class), and each class pair is one AND of the two — so the
//! matrix costs rule sets × classes verdicts rather than instances². A class reaches itself
//! only if it has two members (an instance reaching itself is not a flow).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use model::{ip_proto, Direction, MemberId, NicType, Peer, Policy, SecurityGroupId};

use crate::flow::{Evaluator, Packet, StageQuery};
use crate::state::{PolicyError, State};

/// A service probed between instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service {
    /// IANA protocol number.
    pub protocol: u8,
    /// Destination port (0 for protocols without ports).
    pub port: u16,
}

impl Service {
    /// `tcp:22`, `udp:53`, `icmp`, `gre`.
    pub fn parse(s: &str) -> Option<Service> {
        let (proto, port) = s.split_once(':').unwrap_or((s, "0"));
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => ip_proto::TCP,
            "udp" => ip_proto::UDP,
            "icmp" => ip_proto::ICMP,
            "gre" => ip_proto::GRE,
            _ => return None,
        };
        let port: u16 = port.parse().ok()?;
        let needs_port = ip_proto::has_ports(protocol);
        (needs_port == (port > 0)).then_some(Service { protocol, port })
    }

    /// The name `parse` reads.
    pub fn name(&self) -> String {
        match self.protocol {
            ip_proto::TCP => format!("tcp:{}", self.port),
            ip_proto::UDP => format!("udp:{}", self.port),
            ip_proto::ICMP => "icmp".into(),
            _ => "gre".into(),
        }
    }

    /// SSH, RDP, web, databases, ping.
    pub fn defaults() -> Vec<Service> {
        [
            "tcp:22", "tcp:3389", "tcp:80", "tcp:443", "tcp:3306", "tcp:5432", "tcp:6379", "icmp",
        ]
        .iter()
        .filter_map(|s| Service::parse(s))
        .collect()
    }
}

/// Instances no verdict can tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// Their groups, in order.
    pub groups: Vec<SecurityGroupId>,
    /// Their instances, sorted.
    pub instances: Vec<MemberId>,
}

/// The reachability matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The services probed (at most [`MAX_SERVICES`]).
    pub services: Vec<Service>,
    /// The classes.
    pub classes: Vec<Class>,
    /// Dense classes × classes matrix of service bitmasks (bit k = `services[k]` allowed):
    /// four bytes a pair, where a list of pairs grew to gigabytes on large fleets.
    matrix: Vec<u32>,
}

/// Most services one matrix can probe.
pub const MAX_SERVICES: usize = 32;

impl Reach {
    /// The services (indices into `services`) sources of class `from` can open on class `to`.
    pub fn allowed(&self, from: usize, to: usize) -> impl Iterator<Item = usize> + '_ {
        let bits = self.matrix[from * self.classes.len() + to];
        (0..self.services.len()).filter(move |k| bits & (1 << k) != 0)
    }

    /// `(from, to)` of every class pair with at least one service allowed.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let n = self.classes.len();
        self.matrix
            .iter()
            .enumerate()
            .filter(|(_, bits)| **bits != 0)
            .map(move |(i, _)| (i / n, i % n))
    }
}

/// Every CIDR boundary of the region, as cut points of the IPv4 space.
fn cuts(state: &State) -> Vec<u32> {
    let mut cuts = BTreeSet::from([0u32]);
    let mut add = |n: &IpNet| {
        if let IpNet::V4(n) = n {
            cuts.insert(u32::from(n.network()));
            if let Some(next) = u32::from(n.broadcast()).checked_add(1) {
                cuts.insert(next);
            }
        }
    };
    for g in state.groups() {
        for (_, p) in g.rules() {
            match &p.peer {
                Peer::Cidr(n) => add(n),
                Peer::PrefixList(l) => state.prefix_list(l).iter().for_each(&mut add),
                Peer::Group(_) => {}
            }
            if let Some(l) = &p.local {
                add(l);
            }
        }
    }
    cuts.into_iter().collect()
}

/// Computes the matrix over every instance of the state (IPv4, intranet). Takes at most
/// [`MAX_SERVICES`] services (more are ignored).
pub fn reach(evaluator: &impl Evaluator, services: &[Service]) -> Result<Reach, PolicyError> {
    let services = &services[..services.len().min(MAX_SERVICES)];
    let state = evaluator.state();
    let cuts = cuts(state);
    // Group references and the intra-group default match addresses: when several instances
    // share an address (overlapping VPCs), the groups of all of them count.
    type Key = (Vec<SecurityGroupId>, usize, BTreeSet<SecurityGroupId>);
    let mut by_key: BTreeMap<Key, Vec<MemberId>> = BTreeMap::new();
    for i in state.instances() {
        let cell = cuts.partition_point(|&c| c <= u32::from(i.private_ip));
        let holders: BTreeSet<SecurityGroupId> = state
            .instances_at(std::net::IpAddr::V4(i.private_ip))
            .iter()
            .filter_map(|h| state.instance(h).ok())
            .flat_map(|h| h.security_groups.iter().cloned())
            .collect();
        by_key
            .entry((i.security_groups.clone(), cell, holders))
            .or_default()
            .push(i.id.clone());
    }
    let classes: Vec<Class> = by_key
        .into_iter()
        .map(|((groups, _, _), mut instances)| {
            instances.sort();
            Class { groups, instances }
        })
        .collect();
    // The verdict factors by stage: egress at the source depends on the source only through
    // its rule set (group list and the local-address filters containing its address) and on
    // the destination's class; ingress at the destination symmetrically. So both stages are
    // judged per (rule set, class) — sets × classes verdicts each — and combined per class
    // pair with one AND.
    let n = classes.len();
    let address = |id: &MemberId| {
        state
            .instance(id)
            .map(|i| std::net::IpAddr::V4(i.private_ip))
    };
    let mut set_index: BTreeMap<(Vec<SecurityGroupId>, Vec<IpNet>), usize> = BTreeMap::new();
    let mut set_rep: Vec<&MemberId> = Vec::new();
    let mut set_of_class = Vec::with_capacity(n);
    for c in &classes {
        let rep = &c.instances[0];
        let ip = address(rep)?;
        let mut filters: Vec<IpNet> = c
            .groups
            .iter()
            .filter_map(|g| state.group(g).ok())
            .flat_map(|g| g.rules().filter_map(|(_, p)| p.local))
            .filter(|f| f.contains(&ip))
            .collect();
        filters.sort();
        filters.dedup();
        let next = set_rep.len();
        let k = *set_index.entry((c.groups.clone(), filters)).or_insert(next);
        if k == next {
            set_rep.push(rep);
        }
        set_of_class.push(k);
    }
    let judge =
        |instance: &MemberId, direction: Direction, peer, local| -> Result<u32, PolicyError> {
            let mut bits = 0u32;
            for (k, service) in services.iter().enumerate() {
                let packet = Packet {
                    peer,
                    local,
                    protocol: service.protocol,
                    source_port: if service.port > 0 {
                        crate::exposure::PROBE_SOURCE_PORT
                    } else {
                        0
                    },
                    destination_port: service.port,
                };
                let q = StageQuery {
                    instance,
                    direction,
                    nic_type: NicType::Intranet,
                    packet,
                };
                if evaluator.decide(&q)?.verdict == Policy::Accept {
                    bits |= 1 << k;
                }
            }
            Ok(bits)
        };
    // egress[set * n + class]: services the set's instances may send to the class;
    // ingress[set * n + class]: services the set's instances accept from the class.
    let sets = set_rep.len();
    let mut egress = vec![0u32; sets * n];
    let mut ingress = vec![0u32; sets * n];
    for (k, rep) in set_rep.iter().enumerate() {
        let local = address(rep)?;
        for (c, class) in classes.iter().enumerate() {
            let peer = address(&class.instances[0])?;
            egress[k * n + c] = judge(rep, Direction::Egress, peer, local)?;
            ingress[k * n + c] = judge(rep, Direction::Ingress, peer, local)?;
        }
    }
    let mut matrix = vec![0u32; n * n];
    for s in 0..n {
        for d in 0..n {
            if s == d && classes[s].instances.len() < 2 {
                continue;
            }
            matrix[s * n + d] = egress[set_of_class[s] * n + d] & ingress[set_of_class[d] * n + s];
        }
    }
    Ok(Reach {
        services: services.to_vec(),
        classes,
        matrix,
    })
}
