//! Stockade's operator actions: which host each network interface is bound to, and each
//! host's agent credential.
//!
//! Placement decides which agent programs an interface's rules, so no tenant may choose or
//! read it (`Forbidden.RAM` for any AccessKey of a tenant account; the check is
//! `control`'s). The operator (the lab, or the compute layer of the user's cloud) binds an
//! interface when it plugs the interface's device into a host, labelled with the interface
//! id, and unbinds it when it unplugs it.

use model::{HostId, NetworkInterfaceId};
use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::Result;
use crate::paging::Paging;

/// `PlaceNetworkInterface` (`HostId` given) and `UnplaceNetworkInterface`.
pub(super) fn place(call: &Call, bind: bool) -> Result<Reply> {
    let id: NetworkInterfaceId = call.params.typed("NetworkInterfaceId")?;
    let host: Option<HostId> = if bind {
        Some(call.params.typed("HostId")?)
    } else {
        None
    };
    call.command(|tx| tx.place_interface(&id, host.as_ref()))
}

/// `DescribeNetworkInterfacePlacements`: the region's interfaces of every account with the
/// host each is bound to, optionally only those of one host or one interface; paged by
/// `MaxResults` / `NextToken`.
pub(super) fn describe(call: &Call) -> Result<Reply> {
    let host: Option<HostId> = call.params.parsed("HostId")?;
    let only: Option<NetworkInterfaceId> = call.params.parsed("NetworkInterfaceId")?;
    let max = call.params.number("MaxResults", 1, 100)?.unwrap_or(100);
    let paging = Paging::after_token(call.params, Some(max))?;
    call.read(|tx| {
        let all = tx.placements(host.as_ref(), only.as_ref())?;
        let window = paging.window(all.len());
        let page: Vec<Value> = all[window.range.clone()]
            .iter()
            .map(|p| {
                json!({
                    "NetworkInterfaceId": p.interface.to_string(),
                    "InstanceId": p.instance.as_ref().map(ToString::to_string).unwrap_or_default(),
                    "OwnerId": p.owner.to_string(),
                    "HostId": p.host.as_ref().map(ToString::to_string).unwrap_or_default(),
                })
            })
            .collect();
        Ok(json!({
            "NextToken": window.next_token,
            "TotalCount": all.len(),
            "Placements": {"Placement": page},
        }))
    })
}

/// `IssueAgentToken`: a new credential for `HostId`'s agent (replacing any it had), answered
/// once. With it the agent reads its own host's share and reports its own status only.
///
/// `ClientToken` is refused: a retry would read the credential back from the store, which
/// keeps only its digest.
pub(super) fn issue_agent_token(call: &Call) -> Result<Reply> {
    let host: HostId = call.params.typed("HostId")?;
    if call.params.opt("ClientToken").is_some() {
        return Err(crate::error::ServerError::invalid(
            "ClientToken",
            "IssueAgentToken cannot be retried with a ClientToken: the credential is answered once",
        ));
    }
    call.command_with(|tx| {
        let token = tx.issue_agent_token(&host)?;
        Ok(json!({"HostId": host.to_string(), "AgentToken": token}))
    })
}

/// `RevokeAgentToken`: `HostId`'s agent credential stops working at once.
pub(super) fn revoke_agent_token(call: &Call) -> Result<Reply> {
    let host: HostId = call.params.typed("HostId")?;
    call.command(|tx| tx.revoke_agent_token(&host))
}
