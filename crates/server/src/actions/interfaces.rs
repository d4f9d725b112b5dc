//! Network interfaces (ENIs): create, describe, modify, delete; their tags are `tags`'s
//! (`ResourceType=eni`), their group memberships also `JoinSecurityGroup` /
//! `LeaveSecurityGroup` with `NetworkInterfaceId` (in `instances`).

use std::net::Ipv4Addr;

use control::limits::{INSTANCE_NAME_LENGTH, NAME_LENGTH};
use control::{
    CreateInterface, InterfaceFilter, InterfaceKind, NetworkInterfaceRecord, PrefixRequest,
    TaggedType,
};
use model::{Ipv4Prefix, ModelError, NetworkInterfaceId, SecurityGroupId};
use serde_json::{json, Value};

use super::{tags, Call, Reply};
use crate::error::{Result, ServerError};
use crate::paging::Paging;
use crate::wire::Params;

/// `SecurityGroupId` and `SecurityGroupIds.N` (creation) or `SecurityGroupId.N`
/// (modification), in order, without repeats.
pub(super) fn groups(p: &Params, list: &str) -> Result<Vec<SecurityGroupId>> {
    let mut out: Vec<SecurityGroupId> = Vec::new();
    if list != "SecurityGroupId" {
        out.extend(p.parsed::<SecurityGroupId>("SecurityGroupId")?);
    }
    for g in p.typed_list::<SecurityGroupId>(list)? {
        if !out.contains(&g) {
            out.push(g);
        }
    }
    Ok(out)
}

/// `NetworkInterfaceName`, at most 128 characters.
pub(super) fn name(p: &Params) -> Result<Option<String>> {
    match p.opt("NetworkInterfaceName") {
        Some(n) if n.chars().count() > INSTANCE_NAME_LENGTH => {
            Err(ServerError::invalid("NetworkInterfaceName", n))
        }
        other => Ok(other),
    }
}

pub(super) fn address(s: String) -> Result<Ipv4Addr> {
    s.parse().map_err(|_| ServerError::PrivateIpMalformed(s))
}

/// `PrivateIpAddress.N`: secondary addresses.
fn secondary_addresses(p: &Params) -> Result<Vec<Ipv4Addr>> {
    p.list("PrivateIpAddress")
        .into_iter()
        .map(address)
        .collect()
}

/// `SecondaryPrivateIpAddressCount`.
fn secondary_count(p: &Params) -> Result<usize> {
    Ok(p.number("SecondaryPrivateIpAddressCount", 0, 50)?
        .unwrap_or(0) as usize)
}

/// `Ipv4Prefix.N` (at most 10 /28 blocks) or `Ipv4PrefixCount` (1 to 10), not both.
fn prefixes(p: &Params) -> Result<PrefixRequest> {
    let given: Vec<Ipv4Prefix> = p.typed_list("Ipv4Prefix")?;
    if given.len() > 10 {
        return Err(ServerError::invalid(
            "Ipv4Prefix.N",
            given.len().to_string(),
        ));
    }
    let count = p.number("Ipv4PrefixCount", 1, 10)?.unwrap_or(0) as usize;
    if !given.is_empty() && count > 0 {
        return Err(ModelError::Conflict("Ipv4Prefix.N", "Ipv4PrefixCount").into());
    }
    Ok(PrefixRequest { given, count })
}

/// An interface's prefixes as a list of strings.
fn prefix_texts(prefixes: &[Ipv4Prefix]) -> Vec<String> {
    prefixes.iter().map(ToString::to_string).collect()
}

/// `AssignPrivateIpAddresses`: `PrivateIpAddress.N` or `SecondaryPrivateIpAddressCount`
/// secondary addresses, and `Ipv4Prefix.N` or `Ipv4PrefixCount` prefixes; answers those
/// assigned.
pub(super) fn assign_private_ips(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: NetworkInterfaceId = p.typed("NetworkInterfaceId")?;
    let (given, count) = (secondary_addresses(p)?, secondary_count(p)?);
    let prefixes = prefixes(p)?;
    if given.is_empty() && count == 0 && prefixes.is_empty() {
        return Err(ModelError::Missing("PrivateIpAddress.N").into());
    }
    call.command_with(|tx| {
        let added = tx.assign_private_ips(&id, &given, count, &prefixes)?;
        Ok(json!({"AssignedPrivateIpAddressesSet": {
            "NetworkInterfaceId": id.to_string(),
            "PrivateIpSet": {"PrivateIpAddress": added.addresses.iter().map(ToString::to_string).collect::<Vec<_>>()},
            "Ipv4PrefixSet": {"Ipv4Prefixes": prefix_texts(&added.prefixes)},
        }}))
    })
}

/// `UnassignPrivateIpAddresses`: `PrivateIpAddress.N` and `Ipv4Prefix.N`, each a
/// secondary address or prefix of the interface.
pub(super) fn unassign_private_ips(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: NetworkInterfaceId = p.typed("NetworkInterfaceId")?;
    let remove = secondary_addresses(p)?;
    let prefixes: Vec<Ipv4Prefix> = p.typed_list("Ipv4Prefix")?;
    if remove.is_empty() && prefixes.is_empty() {
        return Err(ModelError::Missing("PrivateIpAddress.N").into());
    }
    call.command(|tx| tx.unassign_private_ips(&id, &remove, &prefixes))
}

/// `CreateNetworkInterface`: an `Available` interface in a vSwitch, with its groups and
/// tags, answered with its attributes.
pub(super) fn create(call: &Call) -> Result<Reply> {
    let p = call.params;
    let req = create_request(p)?;
    let tags = tags::parse_to_set(p, "Tag")?;
    call.command_with(|tx| {
        let id = tx.create_interface(&req)?;
        if !tags.is_empty() {
            tx.tag(TaggedType::Eni, &[id.to_string()], &tags)?;
        }
        let n = tx.interface(&id)?;
        Ok(interface_json(&n, &tags, false))
    })
}

/// The interface `CreateNetworkInterface` (or one `NetworkInterface.N` of `RunInstances`)
/// asks for.
pub(super) fn create_request(p: &Params) -> Result<CreateInterface> {
    let req = CreateInterface {
        vswitch_id: p.typed("VSwitchId")?,
        security_groups: groups(p, "SecurityGroupIds")?,
        private_ip: p.opt("PrimaryIpAddress").map(address).transpose()?,
        name: name(p)?.unwrap_or_default(),
        description: p
            .opt("Description")
            .map(|d| model::validate_group_description(&d))
            .transpose()?
            .unwrap_or_default(),
        secondary_ips: secondary_addresses(p)?,
        secondary_count: secondary_count(p)?,
        prefixes: prefixes(p)?,
        source_dest_check: source_dest_check(p)?.unwrap_or(true),
    };
    if req.security_groups.is_empty() {
        return Err(ModelError::Missing("SecurityGroupId").into());
    }
    fixed_knobs(p)?;
    Ok(req)
}

/// The hardware knobs of an interface (traffic mode, network card, queues), which mean
/// nothing to a security group: Stockade's interfaces are standard ones on card 0 with one
/// queue pair, so a request asking for that is accepted and any other is refused.
fn fixed_knobs(p: &Params) -> Result<()> {
    for (name, value) in [
        ("NetworkInterfaceTrafficMode", "Standard"),
        ("NetworkCardIndex", "0"),
        ("QueueNumber", "1"),
        ("QueuePairNumber", "1"),
    ] {
        p.fixed(name, value)?;
    }
    Ok(())
}

/// `DeleteNetworkInterface`.
pub(super) fn delete(call: &Call) -> Result<Reply> {
    let id: NetworkInterfaceId = call.params.typed("NetworkInterfaceId")?;
    call.command(|tx| tx.delete_interface(&id))
}

/// `AttachNetworkInterface`: an `Available` interface becomes a secondary interface of
/// `InstanceId` (same VPC and zone), judged by its own groups.
pub(super) fn attach(call: &Call) -> Result<Reply> {
    let id: NetworkInterfaceId = call.params.typed("NetworkInterfaceId")?;
    let instance: model::InstanceId = call.params.typed("InstanceId")?;
    call.command(|tx| tx.attach_interface(&id, &instance))
}

/// `DetachNetworkInterface`: a secondary interface leaves `InstanceId`.
pub(super) fn detach(call: &Call) -> Result<Reply> {
    let id: NetworkInterfaceId = call.params.typed("NetworkInterfaceId")?;
    let instance: model::InstanceId = call.params.typed("InstanceId")?;
    call.command(|tx| tx.detach_interface(&id, &instance))
}

/// `ModifyNetworkInterfaceAttribute`: name, description, `SecurityGroupId.N`,
/// `SourceDestCheck` (VPC interfaces only).
pub(super) fn modify(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: NetworkInterfaceId = p.typed("NetworkInterfaceId")?;
    let name = name(p)?;
    let description = p
        .opt("Description")
        .map(|d| model::validate_group_description(&d))
        .transpose()?;
    let groups = groups(p, "SecurityGroupId")?;
    let changes = control::InterfaceChanges {
        name,
        description,
        groups: (!groups.is_empty()).then_some(groups),
        source_dest_check: source_dest_check(p)?,
    };
    call.command(|tx| tx.modify_interface(&id, changes))
}

/// `SourceDestCheck`, if given: `false` lets the interface forward for others (a NAT or
/// router instance); the agent then checks no source address on its device.
fn source_dest_check(p: &Params) -> Result<Option<bool>> {
    Ok(match p.opt("SourceDestCheck") {
        None => None,
        Some(_) => Some(p.flag("SourceDestCheck")?),
    })
}

/// `DescribeNetworkInterfaceAttribute`.
pub(super) fn describe_attribute(call: &Call) -> Result<Reply> {
    let id: NetworkInterfaceId = call.params.typed("NetworkInterfaceId")?;
    call.read(|tx| {
        let n = tx.interface(&id)?;
        let tags = tx.resource_tags(TaggedType::Eni, id.as_str())?;
        Ok(interface_json(&n, &tags, true))
    })
}

/// `DescribeNetworkInterfaces`: the caller's interfaces in the region, filtered (`Tag.N`
/// too) and paged (`PageNumber`/`PageSize` or `NextToken`/`MaxResults`).
pub(super) fn describe(call: &Call) -> Result<Reply> {
    let p = call.params;
    let mut addresses: Vec<Ipv4Addr> = p
        .list("PrivateIpAddress")
        .into_iter()
        .map(address)
        .collect::<Result<_>>()?;
    addresses.extend(p.opt("PrimaryIpAddress").map(address).transpose()?);
    let ids = p.id_filter("NetworkInterfaceId");
    let names_nothing = ids.is_none();
    let filter = InterfaceFilter {
        ids: ids.unwrap_or_default(),
        vpc_id: p.parsed("VpcId")?,
        vswitch_id: p.parsed("VSwitchId")?,
        instance_id: p.parsed("InstanceId")?,
        security_group_id: p.parsed("SecurityGroupId")?,
        addresses,
        name: p.bounded("NetworkInterfaceName", NAME_LENGTH)?,
        kind: match p.opt("Type") {
            None => None,
            Some(t) if t == "Primary" => Some(InterfaceKind::Primary),
            Some(t) if t == "Secondary" => Some(InterfaceKind::Secondary),
            Some(t) => return Err(ModelError::InvalidParameter("Type", t).into()),
        },
        status: match p.opt("Status") {
            Some(s) if s != "Available" && s != "InUse" => {
                return Err(ModelError::InvalidParameter("Status", s).into())
            }
            other => other,
        },
    };
    let wanted_tags = tags::parse(p, "Tag")?;
    let paging = Paging::parse(p)?;
    call.read(|tx| {
        let mut all = Vec::new();
        let found = if names_nothing {
            Vec::new()
        } else {
            tx.interfaces(&filter)?
        };
        for n in found {
            let tags = tx.resource_tags(TaggedType::Eni, n.id.as_str())?;
            let tagged = tags::matches(&wanted_tags, &tags);
            if tagged {
                all.push(interface_json(&n, &tags, false));
            }
        }
        let window = paging.window(all.len());
        let mut body = paging.fields(&window, all.len());
        body["NetworkInterfaceSets"] = json!({"NetworkInterfaceSet": all[window.range.clone()]});
        Ok(body)
    })
}

/// An interface's prefixes as ECS lists them (`Ipv4PrefixSets.Ipv4PrefixSet`).
pub(super) fn prefix_sets(n: &NetworkInterfaceRecord) -> Vec<Value> {
    prefix_texts(&n.ipv4_prefixes)
        .into_iter()
        .map(|p| json!({"Ipv4Prefix": p}))
        .collect()
}

/// An interface's addresses as ECS lists them: the primary one first, then the secondary.
pub(super) fn private_ip_sets(n: &NetworkInterfaceRecord) -> Vec<Value> {
    // No private DNS names or elastic addresses here.
    let set = |a: &Ipv4Addr, primary: bool| {
        json!({
            "PrivateIpAddress": a.to_string(),
            "Primary": primary,
            "PrivateDnsName": "",
            "AssociatedPublicIp": {"AllocationId": "", "PublicIpAddress": ""},
        })
    };
    std::iter::once(set(&n.private_ip, true))
        .chain(n.secondary_ips.iter().map(|a| set(a, false)))
        .collect()
}

/// The fields of what Stockade does not model on an interface (traffic modes, queues, QoS,
/// bonding, enhanced networking, elastic addresses), as an ECS interface without them has
/// them; `attribute` adds those only `DescribeNetworkInterfaceAttribute` answers.
fn unmodelled_interface(n: &NetworkInterfaceRecord, attribute: bool) -> Value {
    let mut out = json!({
        "AssociatedPublicIp": {"AllocationId": "", "PublicIpAddress": ""},
        "Attachment": {
            "InstanceId": n.instance.as_ref().map(ToString::to_string).unwrap_or_default(),
            "DeviceIndex": if n.kind == InterfaceKind::Primary { 0 } else { 1 },
            "NetworkCardIndex": 0,
            "TrunkNetworkInterfaceId": "",
            "MemberNetworkInterfaceIds": {"MemberNetworkInterfaceId": []},
        },
        "NetworkInterfaceTrafficMode": "Standard",
        "QueueNumber": 1,
        "QueuePairNumber": 1,
        "ServiceID": 0,
    });
    if attribute {
        let more = json!({
            "NetworkInterfaceTrafficConfig": {"NetworkInterfaceTrafficMode": "Standard", "QueueNumber": 1, "QueuePairNumber": 1},
            "BondInterfaceSpecification": {"BondMode": "", "SlaveInterfaceSpecification": {"SlaveInterfaceSpecificationSet": []}},
            "SlaveInterfaceSpecification": {"BondNetworkInterfaceId": "", "SlaveNetworkInterfaceId": "", "WorkState": ""},
            "ConnectionTrackingConfiguration": {"TcpClosedAndTimeWaitTimeout": 3, "TcpEstablishedTimeout": 910, "UdpTimeout": 60},
            "EnhancedNetwork": {"EnableRss": false, "EnableSriov": false, "EnableExpress": false, "VirtualFunctionQuantity": 0, "VirtualFunctionTotalQueueNumber": 0},
            "QoSConfig": {"EnableQoS": false, "QoS": {"BandwidthRx": 0, "BandwidthTx": 0, "ConcurrentConnections": 0, "PpsRx": 0, "PpsTx": 0}},
            "TcpOptionAddressEnabled": "",
        });
        super::extend(&mut out, more);
    }
    out
}

/// An interface as `DescribeNetworkInterfaces` and `DescribeNetworkInterfaceAttribute`
/// answer it (field names of the SDKs' models).
fn interface_json(n: &NetworkInterfaceRecord, tags: &[(String, String)], attribute: bool) -> Value {
    fn text<T: ToString>(v: Option<&T>) -> String {
        v.map(ToString::to_string).unwrap_or_default()
    }
    let mut out = json!({
        "NetworkInterfaceId": n.id.to_string(),
        "NetworkInterfaceName": n.name,
        "Description": n.description,
        "Status": n.status(),
        "Type": n.kind.as_wire(),
        "VpcId": text(n.vpc_id.as_ref()),
        "VSwitchId": text(n.vswitch_id.as_ref()),
        "ZoneId": n.zone_id,
        "InstanceId": text(n.instance.as_ref()),
        "MacAddress": n.mac,
        "PrivateIpAddress": n.private_ip.to_string(),
        "PrivateIpSets": {"PrivateIpSet": private_ip_sets(n)},
        // One IPv6 address per interface here, so it is the primary one.
        "Ipv6Sets": {"Ipv6Set": n.ipv6.iter().map(|a| json!({"Ipv6Address": a.to_string(), "Primary": true})).collect::<Vec<_>>()},
        "Ipv4PrefixSets": {"Ipv4PrefixSet": prefix_sets(n)},
        "Ipv6PrefixSets": {"Ipv6PrefixSet": []},
        "SecurityGroupIds": {"SecurityGroupId": n.security_groups.iter().map(ToString::to_string).collect::<Vec<_>>()},
        "Tags": {"Tag": tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>()},
        "OwnerId": n.owner.to_string(),
        "CreationTime": n.created_at,
        "ResourceGroupId": "",
        "ServiceManaged": false,
        "SourceDestCheck": n.source_dest_check,
        "DeleteOnRelease": n.delete_on_release,
    });
    super::extend(&mut out, unmodelled_interface(n, attribute));
    out
}

/// `AssignIpv6Addresses`: `Ipv6AddressCount=1` or `Ipv6Address.1` (one IPv6 address per
/// interface in this version).
pub(super) fn assign_ipv6(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: NetworkInterfaceId = p.typed("NetworkInterfaceId")?;
    let want = match (
        p.number("Ipv6AddressCount", 1, 1)?,
        p.list("Ipv6Address").as_slice(),
    ) {
        (None, [a]) => control::Ipv6Request::Address(
            a.parse()
                .map_err(|_| ServerError::invalid("Ipv6Address.1", a.clone()))?,
        ),
        (Some(1), []) => control::Ipv6Request::Any,
        (None, []) => return Err(ModelError::Missing("Ipv6AddressCount").into()),
        (_, [_, extra, ..]) => return Err(ServerError::invalid("Ipv6Address.2", extra.clone())),
        (Some(_), [_]) => {
            return Err(ModelError::Conflict("Ipv6AddressCount", "Ipv6Address.N").into())
        }
        (Some(n), []) => return Err(ServerError::invalid("Ipv6AddressCount", n.to_string())),
    };
    call.command_with(|tx| {
        let a = tx.assign_ipv6(&id, want)?;
        Ok(json!({
            "NetworkInterfaceId": id.to_string(),
            "Ipv6Sets": {"Ipv6Address": [a.to_string()]},
            "Ipv6PrefixSets": {"Ipv6Prefix": []},
        }))
    })
}

/// `UnassignIpv6Addresses`: `Ipv6Address.N`.
pub(super) fn unassign_ipv6(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: NetworkInterfaceId = p.typed("NetworkInterfaceId")?;
    let addresses: Vec<std::net::Ipv6Addr> = p
        .list("Ipv6Address")
        .into_iter()
        .map(|a| {
            a.parse()
                .map_err(|_| ServerError::invalid("Ipv6Address.N", a))
        })
        .collect::<Result<_>>()?;
    call.command(|tx| tx.unassign_ipv6(&id, &addresses))
}
