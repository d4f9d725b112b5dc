//! Flows, the questions asked of the engine, and verdicts, its answers.
//!
//! A [`Flow`] names its ends as instances or bare addresses. It is resolved into at most two
//! [`StageQuery`]s: the egress stage at the source instance and the ingress stage at the
//! destination instance, each seeing the packet from its instance's side (peer and local
//! address). Evaluators only answer stage queries; resolution and the assembly of the final
//! verdict are shared here so the reference and compiled evaluators differ only where they
//! are meant to: in how they find the deciding rule.

use std::net::IpAddr;

use model::{
    ip_proto, Direction, Instance, MemberId, NetworkType, NicType, Policy, Priority,
    SecurityGroupId, SecurityGroupRuleId,
};

use crate::state::{PolicyError, State};

/// One end of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// An instance: its rules are evaluated and its address is taken from the state.
    Instance(MemberId),
    /// Any address (the internet, a host outside the policy).
    Address(IpAddr),
}

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> IpFamily {
        match addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

/// The first packet of a new flow, as a question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Who sends.
    pub source: Endpoint,
    /// Who receives.
    pub destination: Endpoint,
    /// IANA protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 47 GRE, ...).
    pub protocol: u8,
    /// Source port (TCP/UDP; ignored otherwise).
    pub source_port: u16,
    /// Destination port (TCP/UDP; ignored otherwise).
    pub destination_port: u16,
    /// The interface of classic-network instances the flow crosses (VPC instances have
    /// only the intranet one).
    pub nic_type: NicType,
    /// Address family, so a flow between two instances can be asked over IPv6.
    pub family: IpFamily,
}

impl Flow {
    /// A flow between two ends, of the layer-4 part a question gave, in the family
    /// [`Flow::infer_family`] picks.
    pub fn between(
        source: Endpoint,
        destination: Endpoint,
        ports: model::FlowPorts,
        nic_type: NicType,
    ) -> Flow {
        let family = Flow::infer_family(&source, &destination, ports.protocol);
        Flow {
            source,
            destination,
            protocol: ports.protocol,
            source_port: ports.source_port,
            destination_port: ports.destination_port,
            nic_type,
            family,
        }
    }

    /// The family a flow between these ends most plausibly uses: that of a bare address if
    /// there is one, IPv6 for ICMPv6, IPv4 otherwise.
    pub fn infer_family(source: &Endpoint, destination: &Endpoint, protocol: u8) -> IpFamily {
        match (source, destination) {
            (Endpoint::Address(a), _) | (_, Endpoint::Address(a)) => IpFamily::of(*a),
            _ if protocol == ip_proto::ICMPV6 => IpFamily::V6,
            _ => IpFamily::V4,
        }
    }
}

/// A packet seen from one instance: `peer` is the other end, `local` the instance's own
/// address; ports stay those of the packet (source port first) in both directions, as ECS
/// quintuple rules read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    /// The other end's address.
    pub peer: IpAddr,
    /// The instance's address.
    pub local: IpAddr,
    /// IANA protocol number.
    pub protocol: u8,
    /// Packet source port, 0 for protocols without ports.
    pub source_port: u16,
    /// Packet destination port, 0 for protocols without ports.
    pub destination_port: u16,
}

/// One stage of a flow: a packet leaving (egress) or entering (ingress) an instance through
/// one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageQuery<'a> {
    /// The instance whose groups judge the packet.
    pub instance: &'a MemberId,
    /// Egress at the source, ingress at the destination.
    pub direction: Direction,
    /// The interface the packet crosses.
    pub nic_type: NicType,
    /// The packet, from the instance's side.
    pub packet: Packet,
}

/// What decided a stage, borrowing ids from the evaluator (no allocation on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decider<'a> {
    /// A rule matched.
    Rule {
        /// Its group.
        group: &'a SecurityGroupId,
        /// The rule.
        rule: &'a SecurityGroupRuleId,
        /// Its priority.
        priority: Priority,
        /// Its policy.
        policy: Policy,
    },
    /// No rule matched; the peer is a member of this group of the instance, whose
    /// `InnerAccessPolicy` is `Accept`.
    InnerAccessPolicy(&'a SecurityGroupId),
    /// No rule matched an inbound packet: the group type's default.
    DefaultIngress,
    /// No rule matched an outbound packet: the group type's default.
    DefaultEgress,
}

/// The answer for one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Accept or drop.
    pub verdict: Policy,
    /// Why.
    pub decided_by: Decider<'a>,
}

/// [`Decider`] with owned ids, for answers that outlive the evaluator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DecidedBy {
    /// A rule matched.
    Rule {
        /// Its group.
        group: SecurityGroupId,
        /// The rule.
        rule: SecurityGroupRuleId,
        /// Its priority.
        priority: Priority,
        /// Its policy.
        policy: Policy,
    },
    /// The intra-group default of this group accepted.
    InnerAccessPolicy(SecurityGroupId),
    /// The default for inbound traffic.
    DefaultIngress,
    /// The default for outbound traffic.
    DefaultEgress,
}

impl DecidedBy {
    /// The `DecidedBy` wire value of `DescribeFlowVerdict`.
    pub fn as_wire(&self) -> &'static str {
        match self {
            DecidedBy::Rule { .. } => "Rule",
            DecidedBy::InnerAccessPolicy(_) => "InnerAccessPolicy",
            DecidedBy::DefaultIngress => "DefaultIngress",
            DecidedBy::DefaultEgress => "DefaultEgress",
        }
    }
}

impl From<Decider<'_>> for DecidedBy {
    fn from(d: Decider<'_>) -> DecidedBy {
        match d {
            Decider::Rule {
                group,
                rule,
                priority,
                policy,
            } => DecidedBy::Rule {
                group: group.clone(),
                rule: rule.clone(),
                priority,
                policy,
            },
            Decider::InnerAccessPolicy(g) => DecidedBy::InnerAccessPolicy(g.clone()),
            Decider::DefaultIngress => DecidedBy::DefaultIngress,
            Decider::DefaultEgress => DecidedBy::DefaultEgress,
        }
    }
}

/// The verdict of one stage of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StageVerdict {
    /// `Egress` at the source or `Ingress` at the destination.
    pub direction: Direction,
    /// The member judging: an instance (its primary interface) or a secondary interface.
    pub instance: MemberId,
    /// For a secondary interface, the instance it is attached to.
    pub attached_to: Option<model::InstanceId>,
    /// Its verdict.
    pub verdict: Policy,
    /// Why.
    pub decided_by: DecidedBy,
}

/// The verdict of a flow: accepted only when every stage accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowVerdict {
    /// Accept or drop.
    pub verdict: Policy,
    /// Egress at the source (if an instance), then ingress at the destination (if one).
    pub stages: Vec<StageVerdict>,
}

/// Anything that can judge a stage over a [`State`]; [`Evaluator::verdict`] turns that into
/// the verdict of a whole flow.
pub trait Evaluator {
    /// The state evaluated.
    fn state(&self) -> &State;

    /// Judges one stage. The instance must exist in the state.
    fn decide<'a>(&'a self, query: &StageQuery<'_>) -> Result<Decision<'a>, PolicyError>;

    /// Judges a flow: resolves its ends to addresses, judges the egress stage at the source
    /// instance and the ingress stage at the destination instance.
    fn verdict(&self, flow: &Flow) -> Result<FlowVerdict, PolicyError> {
        let state = self.state();
        let src = resolve(state, &flow.source, flow)?;
        let dst = resolve(state, &flow.destination, flow)?;
        if src.instance.is_none() && dst.instance.is_none() {
            return Err(PolicyError::NoInstanceInFlow);
        }
        let (source_port, destination_port) = if ip_proto::has_ports(flow.protocol) {
            (flow.source_port, flow.destination_port)
        } else {
            (0, 0)
        };
        let mut stages = Vec::with_capacity(2);
        for (this, other, direction) in [
            (&src, &dst, Direction::Egress),
            (&dst, &src, Direction::Ingress),
        ] {
            let Some((instance, nic_type)) = this.instance else {
                continue;
            };
            let query = StageQuery {
                instance: &instance.id,
                direction,
                nic_type,
                packet: Packet {
                    peer: other.address,
                    local: this.address,
                    protocol: flow.protocol,
                    source_port,
                    destination_port,
                },
            };
            let d = self.decide(&query)?;
            stages.push(StageVerdict {
                direction,
                instance: instance.id.clone(),
                attached_to: instance.attached_to.clone(),
                verdict: d.verdict,
                decided_by: d.decided_by.into(),
            });
        }
        let verdict = if stages.iter().all(|s| s.verdict == Policy::Accept) {
            Policy::Accept
        } else {
            Policy::Drop
        };
        Ok(FlowVerdict { verdict, stages })
    }
}

struct Resolved<'a> {
    instance: Option<(&'a Instance, NicType)>,
    address: IpAddr,
}

/// The address an end of the flow uses, and for an instance the interface it crosses: VPC
/// instances only have the intranet one; a classic instance uses its public address on the
/// internet interface.
fn resolve<'a>(state: &'a State, end: &Endpoint, flow: &Flow) -> Result<Resolved<'a>, PolicyError> {
    match end {
        Endpoint::Address(a) => {
            if IpFamily::of(*a) != flow.family {
                return Err(PolicyError::FamilyMismatch);
            }
            Ok(Resolved {
                instance: None,
                address: *a,
            })
        }
        Endpoint::Instance(id) => {
            let i = state.instance(id)?;
            let nic = match i.network() {
                NetworkType::Vpc => NicType::Intranet,
                NetworkType::Classic => flow.nic_type,
            };
            let address = match (flow.family, nic) {
                (IpFamily::V4, NicType::Intranet) => Some(IpAddr::V4(i.private_ip)),
                (IpFamily::V4, NicType::Internet) => i.public_ip.map(IpAddr::V4),
                (IpFamily::V6, NicType::Intranet) => i.ipv6.map(IpAddr::V6),
                (IpFamily::V6, NicType::Internet) => None,
            };
            let address = address.ok_or_else(|| {
                PolicyError::NoAddress(
                    id.clone(),
                    match (flow.family, nic) {
                        (IpFamily::V4, NicType::Internet) => "public (internet) IPv4",
                        (IpFamily::V6, _) => "IPv6",
                        _ => "private IPv4",
                    },
                )
            })?;
            Ok(Resolved {
                instance: Some((i, nic)),
                address,
            })
        }
    }
}
