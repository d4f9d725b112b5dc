//! A small language for writing policies and flows in tests, and an assertion that both
//! evaluators give the expected answer.
#![allow(dead_code)]

use std::net::IpAddr;

use model::{
    Direction, EcsError as _, GroupType, InnerAccessPolicy, Instance, NetworkType, NicType,
    PermissionFields, SecurityGroup,
};
use policy::{
    Change, DecidedBy, Endpoint, Engine, Evaluator, Flow, FlowVerdict, GroupPolicy, PolicyError,
    PrefixList, Reference, Snapshot,
};

/// A policy under construction.
#[derive(Default)]
pub(crate) struct World {
    pub snapshot: Snapshot,
    next_rule: usize,
}

pub(crate) const OWNER: u64 = 1_000_000_000_000_001;

impl World {
    pub(crate) fn new() -> World {
        World::default()
    }

    /// A basic VPC group in `vpc-1`.
    pub(crate) fn group(&mut self, id: &str) -> &mut Self {
        self.group_with(
            id,
            GroupType::Normal,
            Some("vpc-1"),
            InnerAccessPolicy::Accept,
        )
    }

    pub(crate) fn group_with(
        &mut self,
        id: &str,
        group_type: GroupType,
        vpc: Option<&str>,
        inner: InnerAccessPolicy,
    ) -> &mut Self {
        self.snapshot.groups.push(GroupPolicy {
            group: SecurityGroup {
                id: id.parse().unwrap(),
                owner: model::AccountId::new(OWNER),
                group_type,
                vpc_id: vpc.map(|v| v.parse().unwrap()),
                inner_access_policy: inner,
            },
            permissions: Default::default(),
        });
        self
    }

    /// Adds a rule written as `in|out accept|drop PRIORITY PROTO PORTS [key=value...]` with
    /// keys `peer` (CIDR, `sg-...` or `pl-...`), `local` (CIDR), `sport` and `nic`. Returns
    /// the new rule's id (`sgr-N`, N counting from 1 across the world).
    pub(crate) fn rule(&mut self, group: &str, text: &str) -> String {
        let (id, direction, fields) = self.parse_rule(text);
        let g = self
            .snapshot
            .groups
            .iter_mut()
            .find(|g| g.group.id.as_str() == group)
            .expect("group");
        let p = fields
            .parse(id.parse().unwrap(), direction, g.group.network())
            .expect("valid rule");
        std::sync::Arc::make_mut(&mut g.permissions).push(p);
        id
    }

    /// The change that adds a rule (for incremental tests).
    pub(crate) fn rule_change(&mut self, group: &str, text: &str, network: NetworkType) -> Change {
        let (id, direction, fields) = self.parse_rule(text);
        let p = fields
            .parse(id.parse().unwrap(), direction, network)
            .expect("valid rule");
        Change::AddPermission(group.parse().unwrap(), p)
    }

    fn parse_rule(&mut self, text: &str) -> (String, Direction, PermissionFields) {
        self.next_rule += 1;
        let id = format!("sgr-{}", self.next_rule);
        let words: Vec<&str> = text.split_whitespace().collect();
        let direction = match words[0] {
            "in" => Direction::Ingress,
            "out" => Direction::Egress,
            other => panic!("direction {other}"),
        };
        let mut f = PermissionFields {
            policy: Some(words[1].into()),
            priority: Some(words[2].into()),
            ip_protocol: Some(words[3].into()),
            port_range: Some(words[4].into()),
            ..Default::default()
        };
        for kv in &words[5..] {
            let (k, v) = kv.split_once('=').expect("key=value");
            let v = Some(v.to_string());
            let v6 = kv.contains(':') && !kv.starts_with("sport");
            match (k, direction) {
                ("peer", _) if kv.contains("=sg-") => f.group_id = v,
                ("peer", _) if kv.contains("=pl-") => f.prefix_list_id = v,
                ("peer", Direction::Ingress) | ("local", Direction::Egress) if v6 => {
                    f.ipv6_source_cidr_ip = v
                }
                ("peer", Direction::Ingress) | ("local", Direction::Egress) => f.source_cidr_ip = v,
                ("peer", Direction::Egress) | ("local", Direction::Ingress) if v6 => {
                    f.ipv6_dest_cidr_ip = v
                }
                ("peer", Direction::Egress) | ("local", Direction::Ingress) => f.dest_cidr_ip = v,
                ("sport", _) => f.source_port_range = v,
                ("nic", _) => f.nic_type = v,
                ("owner", _) => f.group_owner_id = v,
                _ => panic!("key {k}"),
            }
        }
        (id, direction, f)
    }

    /// A VPC instance in `vpc-1`.
    pub(crate) fn vpc_instance(&mut self, id: &str, ip: &str, groups: &[&str]) -> &mut Self {
        self.instance(id, Some("vpc-1"), ip, None, None, groups)
    }

    /// A classic instance with an optional public address.
    pub(crate) fn classic_instance(
        &mut self,
        id: &str,
        ip: &str,
        public: Option<&str>,
        groups: &[&str],
    ) -> &mut Self {
        self.instance(id, None, ip, None, public, groups)
    }

    pub(crate) fn instance(
        &mut self,
        id: &str,
        vpc: Option<&str>,
        ip: &str,
        ipv6: Option<&str>,
        public: Option<&str>,
        groups: &[&str],
    ) -> &mut Self {
        self.snapshot.instances.push(Instance {
            id: id.parse().unwrap(),
            attached_to: None,
            owner: model::AccountId::new(OWNER),
            vpc_id: vpc.map(|v| v.parse().unwrap()),
            private_ip: ip.parse().unwrap(),
            secondary_ips: Vec::new(),
            ipv4_prefixes: Vec::new(),
            ipv6: ipv6.map(|a| a.parse().unwrap()),
            public_ip: public.map(|a| a.parse().unwrap()),
            source_dest_check: true,
            security_groups: groups.iter().map(|g| g.parse().unwrap()).collect(),
        });
        self
    }

    pub(crate) fn prefix_list(&mut self, id: &str, cidrs: &[&str]) -> &mut Self {
        self.snapshot.prefix_lists.push(PrefixList {
            id: id.parse().unwrap(),
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        });
        self
    }
}

fn endpoint(s: &str) -> Endpoint {
    if s.starts_with("i-") {
        Endpoint::Instance(s.parse().unwrap())
    } else {
        Endpoint::Address(s.parse::<IpAddr>().unwrap())
    }
}

/// A flow written as `FROM TO PROTO [PORT] [sport=N] [nic=internet]`, FROM and TO being
/// instance ids or addresses.
pub(crate) fn flow(text: &str) -> Flow {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (source, destination) = (endpoint(words[0]), endpoint(words[1]));
    let protocol = match words[2] {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        "gre" => 47,
        n => n.parse().unwrap(),
    };
    let mut f = Flow {
        family: Flow::infer_family(&source, &destination, protocol),
        source,
        destination,
        protocol,
        source_port: 40000,
        destination_port: 0,
        nic_type: NicType::Intranet,
    };
    for w in &words[3..] {
        match w.split_once('=') {
            Some(("sport", p)) => f.source_port = p.parse().unwrap(),
            Some(("nic", n)) => f.nic_type = n.parse().unwrap(),
            Some(("family", "v6")) => f.family = policy::IpFamily::V6,
            _ => f.destination_port = w.parse().unwrap(),
        }
    }
    f
}

/// Renders a verdict compactly: `Accept | egress i-a Accept DefaultEgress | ingress i-b
/// Accept sgr-2`.
pub(crate) fn render(v: &Result<FlowVerdict, PolicyError>) -> String {
    let v = match v {
        Ok(v) => v,
        Err(e) => return format!("error {}", e.code()),
    };
    let mut out = v.verdict.as_wire().to_string();
    for s in &v.stages {
        let why = match &s.decided_by {
            DecidedBy::Rule { rule, .. } => rule.to_string(),
            DecidedBy::InnerAccessPolicy(g) => format!("InnerAccessPolicy {g}"),
            other => other.as_wire().to_string(),
        };
        out += &format!(
            " | {} {} {} {}",
            s.direction.as_wire(),
            s.instance,
            s.verdict.as_wire(),
            why
        );
    }
    out
}

/// Asserts that the reference and the compiled evaluator both answer `expected` for the flow.
pub(crate) fn check(world: &World, flow_text: &str, expected: &str) {
    let reference = Reference::new(&world.snapshot).expect("valid snapshot");
    let engine = Engine::new(&world.snapshot).expect("valid snapshot");
    check_both(&reference, &engine, flow_text, expected);
}

pub(crate) fn check_both(reference: &Reference, engine: &Engine, flow_text: &str, expected: &str) {
    let f = flow(flow_text);
    assert_eq!(
        render(&reference.verdict(&f)),
        expected,
        "reference evaluator, flow {flow_text}"
    );
    assert_eq!(
        render(&engine.verdict(&f)),
        expected,
        "compiled evaluator, flow {flow_text}"
    );
}
