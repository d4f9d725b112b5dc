//! Which device each placed instance's packets cross: learned from the host's routes.
//!
//! A routed host (the lab, Calico-style hosts) has a host route to every local instance
//! address through that instance's device (`198.18.1.2 dev sk3fa01b2c scope link`). The agent
//! reads the routing table once per pass (`ip -j route show`) instead of being told, so an
//! interface created or re-created after the agent started is picked up on the next pass.

use model::NicType;
use nft::Attachment;
use serde_json::Value;

use crate::feed::Placed;
use crate::{host_command, AgentError};

/// The attachments of `instances` given the JSON of `ip -j route show`: the intranet
/// device routes the private address, the internet device the public one. An instance
/// without a route has no device here yet and is left out.
pub fn from_routes(routes: &Value, instances: &[Placed]) -> Vec<Attachment> {
    let device = |addr: String| -> Option<String> {
        routes.as_array()?.iter().find_map(|r| {
            let dst = r["dst"].as_str()?;
            (dst == addr || dst == format!("{addr}/32"))
                .then(|| r["dev"].as_str().map(str::to_string))
                .flatten()
        })
    };
    let mut out = Vec::new();
    for i in instances {
        let nics = [
            (NicType::Intranet, Some(i.private_ip)),
            (NicType::Internet, i.public_ip),
        ];
        for (nic_type, addr) in nics {
            if let Some(interface) = addr.and_then(|a| device(a.to_string())) {
                out.push(Attachment {
                    instance: i.id.clone(),
                    nic_type,
                    interface,
                });
            }
        }
    }
    out.sort();
    out
}

/// The attachments in the host's namespace (`None`: the current one).
pub fn discover(netns: Option<&str>, instances: &[Placed]) -> Result<Vec<Attachment>, AgentError> {
    let text = host_command(netns, "ip", &["-j", "route", "show"])?;
    let routes: Value = serde_json::from_str(&text)
        .map_err(|e| AgentError::Command(format!("ip -j route: {e}")))?;
    Ok(from_routes(&routes, instances))
}
