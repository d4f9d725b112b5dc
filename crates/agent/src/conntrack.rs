//! Cutting tracked connections that the new policy no longer allows (DESIGN.md §4).
//!
//! Connection tracking accepts every packet of an established flow before any rule is
//! consulted, so revoking a rule or leaving a group would not stop a connection already
//! open. After each policy change the agent lists the host's tracked flows, judges each
//! one's original direction with the engine at the stages this host enforces (egress of a
//! local sender, ingress of a local receiver), and deletes those now dropped.

use std::collections::HashMap;
use std::net::IpAddr;

use model::{Direction, MemberId, NicType, Policy};
use policy::{Evaluator, Packet, StageQuery};

use crate::{host_command, AgentError};

/// One tracked flow, in its original direction (listed by the backend's ctnetlink dump,
/// or read from `conntrack -L` by [`list`]).
pub use netfilter::Tracked;

/// A local interface address as tracked flows name it: the zone (which VPC) and the
/// address. Overlapping VPCs on one host share addresses, never zones.
pub type LocalAddress = (u16, IpAddr);

/// Reads `conntrack -L` output (the first tuple of each line is the original direction).
pub fn parse(text: &str) -> Vec<Tracked> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let _name = words.next()?;
            let protocol: u8 = words.next()?.parse().ok()?;
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .map(str::to_string)
            };
            Some(Tracked {
                protocol,
                source: field("src=")?.parse().ok()?,
                destination: field("dst=")?.parse().ok()?,
                source_port: field("sport=").and_then(|p| p.parse().ok()).unwrap_or(0),
                destination_port: field("dport=").and_then(|p| p.parse().ok()).unwrap_or(0),
                zone: field("zone=").and_then(|z| z.parse().ok()).unwrap_or(0),
            })
        })
        .collect()
}

/// The flows among `tracked` that a stage on this host now drops. `local` maps each local
/// interface address (in its zone) to the instance and the interface it uses.
pub fn disallowed(
    evaluator: &impl Evaluator,
    local: &HashMap<LocalAddress, (MemberId, NicType)>,
    tracked: &[Tracked],
) -> Vec<Tracked> {
    tracked
        .iter()
        .filter(|t| {
            let ports = matches!(t.protocol, 6 | 17);
            let stage = |at: IpAddr, peer: IpAddr, direction| {
                let (instance, nic_type) = local.get(&(t.zone, at))?;
                let q = StageQuery {
                    instance,
                    direction,
                    nic_type: *nic_type,
                    packet: Packet {
                        peer,
                        local: at,
                        protocol: t.protocol,
                        source_port: if ports { t.source_port } else { 0 },
                        destination_port: if ports { t.destination_port } else { 0 },
                    },
                };
                evaluator.decide(&q).ok().map(|d| d.verdict)
            };
            stage(t.source, t.destination, Direction::Egress) == Some(Policy::Drop)
                || stage(t.destination, t.source, Direction::Ingress) == Some(Policy::Drop)
        })
        .cloned()
        .collect()
}

/// The host's tracked flows (IPv4 and IPv6).
pub fn list(netns: Option<&str>) -> Result<Vec<Tracked>, AgentError> {
    let mut out = Vec::new();
    for family in ["ipv4", "ipv6"] {
        out.extend(parse(&host_command(
            netns,
            "conntrack",
            &["-L", "-f", family],
        )?));
    }
    Ok(out)
}

/// Deletes tracked flows; returns how many were deleted (a flow that ended meanwhile is not
/// an error).
pub fn delete(netns: Option<&str>, flows: &[Tracked]) -> usize {
    flows
        .iter()
        .filter(|t| {
            let (p, s, d) = (
                t.protocol.to_string(),
                t.source.to_string(),
                t.destination.to_string(),
            );
            let (sp, dp) = (t.source_port.to_string(), t.destination_port.to_string());
            let zone = t.zone.to_string();
            let mut args = vec!["-D", "-p", p.as_str(), "-s", s.as_str(), "-d", d.as_str()];
            args.extend(["-w", zone.as_str()]);
            if matches!(t.protocol, 6 | 17) {
                args.extend(["--sport", sp.as_str(), "--dport", dp.as_str()]);
            }
            host_command(netns, "conntrack", &args).is_ok()
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_original_tuple() {
        let text = "tcp      6 431999 ESTABLISHED src=198.18.1.2 dst=198.18.1.3 sport=40000 dport=80 src=198.18.1.3 dst=198.18.1.2 sport=80 dport=40000 [ASSURED] mark=0 use=1\n\
                    icmp     1 29 src=198.18.1.2 dst=198.18.1.4 type=8 code=0 id=7 src=198.18.1.4 dst=198.18.1.2 type=0 code=0 id=7 mark=0 zone=77 use=1\n\
                    conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n";
        let t = parse(text);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            Tracked {
                protocol: 6,
                source: "198.18.1.2".parse().unwrap(),
                destination: "198.18.1.3".parse().unwrap(),
                source_port: 40000,
                destination_port: 80,
                zone: 0,
            }
        );
        assert_eq!((t[1].protocol, t[1].source_port, t[1].zone), (1, 0, 77));
    }
}
