//! Which device carries each network interface bound to this host: learned from the labels
//! the operator's provisioning set on the devices, never from addresses.
//!
//! The contract with provisioning (the lab, or the compute layer of the user's cloud): the
//! host-side device of an interface carries the interface id as its alias (`ip link set dev
//! DEV alias eni-...`; the id is longer than a device name may be), and the internet device
//! of a classic instance carries `eni-.../internet`. Addresses cannot identify a device: VPCs
//! of different tenants overlap, and a tenant chooses its addresses. A device whose label
//! does not name exactly one interface bound here (unknown, not bound to this host, claimed
//! by several devices, malformed) is *unattributed* and gets no traffic. A device without a
//! label is the host's own (uplinks, links between hosts) and is not filtered.
//!
//! A VPC's overlay device (the lab's VXLAN with one VNI per VPC, or a VRF-like uplink)
//! carries the VPC id as its label (`vpc-...`): packets it brings in are tracked in that
//! VPC's conntrack zone.

use model::{MemberId, NetworkInterfaceId, NicType, VpcId};
use nft::Attachment;
use serde_json::Value;

use crate::feed::Placed;
use crate::{host_command, AgentError};

/// The label suffix of a classic instance's internet device.
pub const INTERNET_SUFFIX: &str = "/internet";

/// What the host's devices say about the interfaces bound here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Devices attributed to exactly one bound interface.
    pub attachments: Vec<Attachment>,
    /// Devices labelled as an interface's but attributable to none: device → why. They are
    /// failed closed.
    pub unattributed: Vec<(String, String)>,
    /// Overlay devices and the VPC each carries.
    pub overlays: Vec<(String, VpcId)>,
    /// Bound interfaces claimed by several devices: all of them failed closed, so the
    /// interface gets no packet at all and its tracked connections are deleted.
    pub contested: Vec<(MemberId, NicType)>,
}

/// The label of an interface's device: its id, plus [`INTERNET_SUFFIX`] for the internet
/// device of a classic instance.
pub fn label(interface: &NetworkInterfaceId, nic: NicType) -> String {
    match nic {
        NicType::Intranet => interface.to_string(),
        NicType::Internet => format!("{interface}{INTERNET_SUFFIX}"),
    }
}

/// Attributes the devices of `ip -j link show` to the interfaces `placed` here.
pub fn from_links(links: &Value, placed: &[Placed]) -> Discovery {
    let labelled: Vec<(&str, &str)> = links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| Some((l["ifname"].as_str()?, l["ifalias"].as_str()?)))
        .filter(|(_, alias)| alias.starts_with(NetworkInterfaceId::PREFIX))
        .collect();
    let mut overlays: Vec<(String, VpcId)> = links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let vpc = l["ifalias"].as_str()?.parse().ok()?;
            Some((l["ifname"].as_str()?.to_string(), vpc))
        })
        .collect();
    overlays.sort();
    let mut out = Discovery {
        overlays,
        ..Discovery::default()
    };
    for &(device, alias) in &labelled {
        let claims = labelled.iter().filter(|(_, a)| *a == alias).count();
        let (id, nic) = match alias.strip_suffix(INTERNET_SUFFIX) {
            Some(id) => (id, NicType::Internet),
            None => (alias, NicType::Intranet),
        };
        let bound = id
            .parse::<NetworkInterfaceId>()
            .ok()
            .and_then(|id| placed.iter().find(|p| p.interface == id));
        let why = match bound {
            _ if claims > 1 => Some(format!("{claims} devices are labelled {alias}")),
            None => Some(format!("{alias} is not an interface bound to this host")),
            Some(p) if nic == NicType::Internet && p.public_ip.is_none() => {
                Some(format!("{id} has no internet address"))
            }
            Some(_) => None,
        };
        match (why, bound) {
            (None, Some(p)) => out.attachments.push(Attachment {
                instance: p.id.clone(),
                nic_type: nic,
                interface: device.to_string(),
            }),
            (why, bound) => {
                if let Some(p) = bound.filter(|_| claims > 1) {
                    out.contested.push((p.id.clone(), nic));
                }
                out.unattributed
                    .push((device.to_string(), why.unwrap_or_default()))
            }
        }
    }
    out.attachments.sort();
    out.unattributed.sort();
    out.contested.sort();
    out.contested.dedup();
    out
}

/// The devices in the host's namespace (`None`: the current one).
pub fn discover(netns: Option<&str>, placed: &[Placed]) -> Result<Discovery, AgentError> {
    let text = host_command(netns, "ip", &["-j", "link", "show"])?;
    let links: Value =
        serde_json::from_str(&text).map_err(|e| AgentError::Command(format!("ip -j link: {e}")))?;
    Ok(from_links(&links, placed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn placed(eni: &str, instance: &str, public: bool) -> Placed {
        Placed {
            interface: eni.parse().unwrap(),
            id: instance.parse().unwrap(),
            private_ip: "10.0.1.10".parse().unwrap(),
            public_ip: public.then(|| "198.19.0.2".parse().unwrap()),
        }
    }

    #[test]
    fn devices_are_attributed_by_label_only() {
        let here = [placed("eni-a", "i-a", true), placed("eni-b", "i-b", false)];
        let links = json!([
            {"ifname": "lo"},
            {"ifname": "uplink0", "ifalias": "to the hub"},
            {"ifname": "vA", "ifalias": "eni-a"},
            {"ifname": "vAp", "ifalias": "eni-a/internet"},
            {"ifname": "vB1", "ifalias": "eni-b"},
            {"ifname": "vB2", "ifalias": "eni-b"},
            {"ifname": "vBp", "ifalias": "eni-b/internet"},
            {"ifname": "vC", "ifalias": "eni-c"},
            {"ifname": "vD", "ifalias": "eni-!bad"},
            {"ifname": "vx7", "ifalias": "vpc-seven"},
        ]);
        let d = from_links(&links, &here);
        let attached: Vec<(&str, &str, NicType)> = d
            .attachments
            .iter()
            .map(|a| (a.interface.as_str(), a.instance.as_str(), a.nic_type))
            .collect();
        assert_eq!(
            attached,
            [
                ("vA", "i-a", NicType::Intranet),
                ("vAp", "i-a", NicType::Internet)
            ]
        );
        let isolated: Vec<&str> = d.unattributed.iter().map(|(dev, _)| dev.as_str()).collect();
        // Two devices claiming one interface: neither gets its traffic; an interface not
        // bound here, a label that is not an id, an internet label without an address.
        assert_eq!(isolated, ["vB1", "vB2", "vBp", "vC", "vD"]);
        assert!(d.unattributed[0].1.contains("2 devices"));
        assert_eq!(
            d.overlays,
            [("vx7".to_string(), "vpc-seven".parse().unwrap())]
        );
        // Only the interface two devices claim is contested (its connections are ended), not
        // the unknown or malformed labels, nor eni-b's internet device without an address.
        let contested: Vec<(&str, NicType)> = d
            .contested
            .iter()
            .map(|(m, nic)| (m.as_str(), *nic))
            .collect();
        assert_eq!(contested, [("i-b", NicType::Intranet)]);
    }
}
