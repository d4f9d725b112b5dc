//! Random policy worlds for properties: small pools of addresses, ports and priorities so
//! that rules overlap, tie and shadow each other often, with group references (including
//! self-references), prefix lists, port range lists, multi-group instances, basic and
//! enterprise groups, classic-network interfaces and IPv6. Shared by the engine's agreement
//! properties and the nft crate's rendering properties.
#![allow(dead_code)]

use std::net::IpAddr;

use model::{
    Direction, GroupType, InnerAccessPolicy, Instance, NicType, Permission, PermissionFields,
    SecurityGroup,
};
use policy::{Change, Endpoint, Flow, GroupPolicy, IpFamily, PortRangeList, PrefixList, Snapshot};
use proptest::prelude::*;

pub(crate) const V4: [&str; 6] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.5",
    "192.0.2.7",
    "203.0.113.1",
];
pub(crate) const V6: [&str; 4] = ["fd00::1", "fd00::2", "fd00::3", "2001:db8::9"];
pub(crate) const CIDR4: [&str; 6] = [
    "0.0.0.0/0",
    "10.0.0.0/29",
    "10.0.0.2/32",
    "10.0.0.4/30",
    "192.0.2.0/24",
    "10.0.0.0/8",
];
pub(crate) const CIDR6: [&str; 3] = ["::/0", "fd00::/126", "fd00::1/128"];
pub(crate) const PORTS: [&str; 5] = ["22/22", "20/30", "1/65535", "80/80", "1/1024"];
/// Port range lists a rule's ports may be instead of a range (`PORTS.len() + i` picks one):
/// overlapping entries, and an empty list that matches nothing.
pub(crate) const PORT_LISTS: [&[&str]; 2] = [&["22/22", "1000/2000", "20/30"], &[]];
pub(crate) const FLOW_PORTS: [u16; 6] = [22, 25, 80, 1000, 2000, 0];
pub(crate) const PROTOS: [&str; 6] = ["tcp", "udp", "icmp", "icmpv6", "all", "gre"];
pub(crate) const FLOW_PROTOS: [u8; 9] = [6, 6, 6, 17, 17, 1, 58, 47, 50];
pub(crate) const PRIORITIES: [&str; 4] = ["1", "2", "5", "100"];
pub(crate) const GROUPS: usize = 5;

pub(crate) fn group_id(i: usize) -> String {
    format!("sg-g{i}")
}

/// Raw choices from which a rule's wire fields are made; invalid combinations are skipped
/// (they would be rejected at the API).
#[derive(Debug, Clone)]
pub(crate) struct RuleSeed {
    pub(crate) group: usize,
    pub(crate) egress: bool,
    pub(crate) drop: bool,
    pub(crate) priority: usize,
    pub(crate) proto: usize,
    pub(crate) ports: usize,
    pub(crate) source_ports: Option<usize>,
    pub(crate) peer: (u8, usize),
    pub(crate) local: Option<(bool, usize)>,
    pub(crate) internet: bool,
}

pub(crate) fn rule_seed() -> impl Strategy<Value = RuleSeed> {
    (
        (
            0..GROUPS,
            any::<bool>(),
            any::<bool>(),
            0..PRIORITIES.len(),
            0..PROTOS.len(),
        ),
        (
            0..PORTS.len() + PORT_LISTS.len(),
            proptest::option::weighted(0.2, 0..PORTS.len()),
        ),
        (0u8..4, 0usize..8),
        proptest::option::weighted(0.2, (any::<bool>(), 0usize..8)),
        any::<bool>(),
    )
        .prop_map(
            |(
                (group, egress, drop, priority, proto),
                (ports, source_ports),
                peer,
                local,
                internet,
            )| {
                RuleSeed {
                    group,
                    egress,
                    drop,
                    priority,
                    proto,
                    ports,
                    source_ports,
                    peer,
                    local,
                    internet,
                }
            },
        )
}

#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) classic: bool,
    pub(crate) enterprise: [bool; GROUPS],
    pub(crate) inner_drop: [bool; GROUPS],
    pub(crate) rules: Vec<RuleSeed>,
    /// (v4 address index, has v6, has public, groups)
    pub(crate) instances: Vec<(usize, bool, bool, Vec<usize>)>,
    pub(crate) flows: Vec<(usize, usize, usize, usize, usize, bool)>,
    pub(crate) changes: Vec<(u8, usize, usize, RuleSeed)>,
}

pub(crate) fn world() -> impl Strategy<Value = World> {
    (
        any::<bool>(),
        proptest::array::uniform5(proptest::bool::weighted(0.2)),
        proptest::array::uniform5(any::<bool>()),
        proptest::collection::vec(rule_seed(), 0..32),
        proptest::collection::vec(
            (
                0..V4.len(),
                any::<bool>(),
                proptest::bool::weighted(0.75),
                proptest::collection::vec(0..GROUPS, 1..4),
            ),
            1..6,
        ),
        proptest::collection::vec(
            (
                0usize..9,
                0usize..9,
                0..FLOW_PROTOS.len(),
                0..FLOW_PORTS.len(),
                0..FLOW_PORTS.len(),
                proptest::bool::weighted(0.25),
            ),
            24,
        ),
        proptest::collection::vec((0u8..7, 0usize..8, 0usize..GROUPS, rule_seed()), 0..8),
    )
        .prop_map(
            |(classic, enterprise, inner_drop, rules, instances, flows, changes)| World {
                classic,
                enterprise,
                inner_drop,
                rules,
                instances,
                flows,
                changes,
            },
        )
}

impl World {
    pub(crate) fn network(&self) -> model::NetworkType {
        if self.classic {
            model::NetworkType::Classic
        } else {
            model::NetworkType::Vpc
        }
    }

    pub(crate) fn permission(&self, seed: &RuleSeed, n: usize) -> Option<Permission> {
        let mut f = PermissionFields {
            policy: Some(if seed.drop { "drop" } else { "accept" }.into()),
            priority: Some(PRIORITIES[seed.priority].into()),
            ip_protocol: Some(PROTOS[seed.proto].into()),
            port_range: Some(
                if !["tcp", "udp"].contains(&PROTOS[seed.proto]) {
                    "-1/-1"
                } else {
                    PORTS.get(seed.ports).copied().unwrap_or("")
                }
                .into(),
            ),
            port_range_list_id: (seed.ports >= PORTS.len())
                .then(|| format!("prl-l{}", seed.ports - PORTS.len())),
            source_port_range: seed.source_ports.map(|p| PORTS[p].into()),
            nic_type: Some(
                if seed.internet {
                    "internet"
                } else {
                    "intranet"
                }
                .into(),
            ),
            ..Default::default()
        };
        let (kind, i) = seed.peer;
        let peer = match kind {
            0 => Some(CIDR4[i % CIDR4.len()].to_string()),
            1 => Some(CIDR6[i % CIDR6.len()].to_string()),
            _ => None,
        };
        let local = seed.local.map(|(v6, i)| {
            if v6 {
                CIDR6[i % CIDR6.len()]
            } else {
                CIDR4[i % CIDR4.len()]
            }
        });
        let v6 = |s: &str| s.contains(':');
        let ingress = !seed.egress;
        let set = |f: &mut PermissionFields, s: Option<String>, peer_side: bool| {
            let Some(s) = s else { return };
            let source_side = peer_side == ingress;
            match (source_side, v6(&s)) {
                (true, false) => f.source_cidr_ip = Some(s),
                (true, true) => f.ipv6_source_cidr_ip = Some(s),
                (false, false) => f.dest_cidr_ip = Some(s),
                (false, true) => f.ipv6_dest_cidr_ip = Some(s),
            }
        };
        set(&mut f, peer, true);
        set(&mut f, local.map(str::to_string), false);
        match kind {
            2 => f.group_id = Some(group_id(i % GROUPS)),
            3 => f.prefix_list_id = Some(format!("pl-l{}", i % 2)),
            _ => {}
        }
        let direction = if seed.egress {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let p = f
            .parse(
                format!("sgr-r{n}").parse().unwrap(),
                direction,
                self.network(),
            )
            .ok()?;
        // Enterprise groups take no group references (the API refuses them).
        let enterprise = self.enterprise[seed.group];
        (!(enterprise && matches!(p.peer, model::Peer::Group(_)))).then_some(p)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let vpc = (!self.classic).then(|| "vpc-1".parse().unwrap());
        let mut groups: Vec<GroupPolicy> = (0..GROUPS)
            .map(|i| GroupPolicy {
                group: SecurityGroup {
                    id: group_id(i).parse().unwrap(),
                    owner: model::AccountId::new(1),
                    group_type: if self.enterprise[i] {
                        GroupType::Enterprise
                    } else {
                        GroupType::Normal
                    },
                    vpc_id: vpc.clone(),
                    inner_access_policy: if self.inner_drop[i] {
                        InnerAccessPolicy::Drop
                    } else {
                        InnerAccessPolicy::Accept
                    },
                },
                permissions: Default::default(),
            })
            .collect();
        for (n, seed) in self.rules.iter().enumerate() {
            if let Some(p) = self.permission(seed, n) {
                std::sync::Arc::make_mut(&mut groups[seed.group].permissions).push(p);
            }
        }
        let instances = self
            .instances
            .iter()
            .enumerate()
            .map(|(n, (ip, v6, public, gs))| {
                // Basic and enterprise groups never mix on one instance: keep the kind of
                // the first group.
                let kind = self.enterprise[gs[0]];
                let mut security_groups: Vec<model::SecurityGroupId> = vec![];
                for g in gs.iter().filter(|g| self.enterprise[**g] == kind) {
                    let id = group_id(*g).parse().unwrap();
                    if !security_groups.contains(&id) {
                        security_groups.push(id);
                    }
                }
                Instance {
                    id: format!("i-n{n}").parse().unwrap(),
                    attached_to: None,
                    owner: model::AccountId::new(1),
                    vpc_id: vpc.clone(),
                    private_ip: V4[*ip].parse().unwrap(),
                    // Every other VPC instance also has a secondary address, sometimes one
                    // another instance holds as its primary (overlapping VPCs do that).
                    secondary_ips: (!self.classic && n % 2 == 1)
                        .then(|| V4[(*ip + 1 + n % 5) % V4.len()].parse().unwrap())
                        .into_iter()
                        .collect(),
                    // Every third VPC instance also holds a /28 prefix, whose block covers
                    // other instances' addresses (10.0.0.0/28 holds four of `V4`).
                    ipv4_prefixes: (!self.classic && n % 3 == 2)
                        .then(|| {
                            model::Ipv4Prefix::of(V4[(*ip + 2 + n) % V4.len()].parse().unwrap())
                        })
                        .into_iter()
                        .collect(),
                    ipv6: (*v6 && !self.classic).then(|| V6[n % V6.len()].parse().unwrap()),
                    public_ip: (*public && self.classic)
                        .then(|| format!("198.51.100.{n}").parse().unwrap()),
                    source_dest_check: true,
                    security_groups,
                }
            })
            .collect();
        let prefix_lists = vec![
            PrefixList {
                id: "pl-l0".parse().unwrap(),
                cidrs: vec![
                    "10.0.0.2/31".parse().unwrap(),
                    "fd00::/127".parse().unwrap(),
                ],
            },
            PrefixList {
                id: "pl-l1".parse().unwrap(),
                cidrs: vec![],
            },
        ];
        let port_range_lists = PORT_LISTS
            .iter()
            .enumerate()
            .map(|(i, ranges)| PortRangeList {
                id: format!("prl-l{i}").parse().unwrap(),
                ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
            })
            .collect();
        Snapshot {
            groups,
            instances,
            prefix_lists,
            port_range_lists,
        }
    }

    pub(crate) fn endpoint(&self, i: usize, family: IpFamily) -> Endpoint {
        if i < self.instances.len() {
            Endpoint::Instance(format!("i-n{i}").parse().unwrap())
        } else if family == IpFamily::V6 {
            Endpoint::Address(V6[i % V6.len()].parse::<IpAddr>().unwrap())
        } else {
            Endpoint::Address(V4[i % V4.len()].parse::<IpAddr>().unwrap())
        }
    }

    pub(crate) fn flows(&self) -> Vec<Flow> {
        self.flows
            .iter()
            .map(|&(s, d, proto, sport, dport, internet)| {
                let protocol = FLOW_PROTOS[proto];
                let family = if (s + d) % 7 == 6 || protocol == 58 {
                    IpFamily::V6
                } else {
                    IpFamily::V4
                };
                let (source, mut destination) =
                    (self.endpoint(s, family), self.endpoint(d, family));
                if matches!(
                    (&source, &destination),
                    (Endpoint::Address(_), Endpoint::Address(_))
                ) {
                    destination = self.endpoint(d % self.instances.len(), family);
                }
                Flow {
                    family,
                    source,
                    destination,
                    protocol,
                    source_port: FLOW_PORTS[sport],
                    destination_port: FLOW_PORTS[dport],
                    nic_type: if internet {
                        NicType::Internet
                    } else {
                        NicType::Intranet
                    },
                }
            })
            .collect()
    }

    pub(crate) fn change(
        &self,
        (kind, a, g, seed): &(u8, usize, usize, RuleSeed),
        n: usize,
        current: &Snapshot,
    ) -> Option<Change> {
        let instance = || format!("i-n{}", a % self.instances.len()).parse().unwrap();
        let group = group_id(*g).parse().unwrap();
        Some(match kind {
            0 => Change::Join(instance(), group),
            1 => Change::Leave(instance(), group),
            2 => Change::AddPermission(
                group_id(seed.group).parse().unwrap(),
                self.permission(seed, 1000 + n)?,
            ),
            3 | 4 => {
                let rules: Vec<_> = current
                    .groups
                    .iter()
                    .flat_map(|g| g.permissions.iter().map(move |p| (g, p)))
                    .collect();
                let (g, p) = rules.get(a % rules.len().max(1))?;
                if *kind == 3 {
                    Change::RemovePermission(g.group.id.clone(), p.id.clone())
                } else {
                    let mut replaced = self.permission(seed, 0)?;
                    replaced.id = p.id.clone();
                    replaced.direction = p.direction;
                    Change::ReplacePermission(g.group.id.clone(), replaced)
                }
            }
            5 => Change::SetPortRangeList(PortRangeList {
                id: format!("prl-l{}", a % PORT_LISTS.len()).parse().unwrap(),
                ranges: PORTS[..a % PORTS.len()]
                    .iter()
                    .map(|r| r.parse().unwrap())
                    .collect(),
            }),
            _ => Change::SetInnerAccessPolicy(
                group,
                if a % 2 == 0 {
                    InnerAccessPolicy::Drop
                } else {
                    InnerAccessPolicy::Accept
                },
            ),
        })
    }
}
