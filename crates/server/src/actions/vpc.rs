//! The VPC product (`Version=2016-04-28`): VPCs and vSwitches.

use control::limits::{DESCRIPTION_LENGTH, NAME_LENGTH};
use control::{TaggedType, VSwitchRecord, VpcRecord};
use ipnet::Ipv4Net;
use model::{VSwitchId, VpcId};
use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::{Result, ServerError};
use crate::paging::Paging;
use crate::wire::Params;

/// The block `CreateVpc` takes when none is given (ECS's default).
const DEFAULT_VPC_BLOCK: Ipv4Net = Ipv4Net::new_assert(std::net::Ipv4Addr::new(172, 16, 0, 0), 12);

/// A resource's tags as the VPC product answers them (`Key`/`Value`, not ECS's
/// `TagKey`/`TagValue`).
fn vpc_tags(tags: &[(String, String)]) -> Value {
    json!({"Tag": tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()})
}

/// A VPC's answer fields; `tags` are its own.
fn vpc_json(v: &VpcRecord, call: &Call, tags: &[(String, String)]) -> Value {
    let mut out = json!({
        "VpcId": v.id.to_string(),
        "RegionId": call.ctx.region,
        "Status": "Available",
        "VpcName": v.name,
        "Description": v.description,
        "CidrBlock": v.cidr.to_string(),
        "Ipv6CidrBlock": v.ipv6_cidr.map(|b| b.to_string()).unwrap_or_default(),
        "Ipv6CidrBlocks": {"Ipv6CidrBlock": v.ipv6_cidr.iter().map(|b| json!({"Ipv6CidrBlock": b.to_string(), "Ipv6Isp": "BGP"})).collect::<Vec<_>>()},
        "EnabledIpv6": v.ipv6_cidr.is_some(),
        "CreationTime": v.created_at,
        "IsDefault": false,
        // No ClassicLink, private DNS or resource groups for VPCs here: ECS's values
        // without them.
        "ClassicLinkEnabled": false,
        "DnsHostnameStatus": "DISABLED",
        "ResourceGroupId": "",
        "VRouterId": format!("vrt-{}", &v.id.as_str()[4..]),
        "VSwitchIds": {"VSwitchId": v.vswitches.iter().map(ToString::to_string).collect::<Vec<_>>()},
        "RouterTableIds": {"RouterTableIds": [route_table(&v.id)]},
        "Tags": vpc_tags(tags),
        "OwnerId": call.ctx.account.get(),
    });
    // No secondary blocks, user CIDRs, DHCP options, NAT or IPv4 gateways, CEN or
    // route propagation here: what a VPC without them answers.
    super::extend(
        &mut out,
        json!({
            "SecondaryCidrBlocks": {"SecondaryCidrBlock": []},
            "UserCidrs": {"UserCidr": []},
            "NatGatewayIds": {"NatGatewayIds": []},
            "DhcpOptionsSetId": "",
            "DhcpOptionsSetStatus": "",
            "CenStatus": "",
            "Ipv4GatewayId": "",
            "SupportIpv4Gateway": false,
            "AssociatedCens": {"AssociatedCen": []},
            "AssociatedPropagationSources": {"AssociatedPropagationSources": []},
            "CloudResources": {"CloudResourceSetType": []},
        }),
    );
    out
}

/// The id of a VPC's system route table (its one table: routes are not modelled).
fn route_table(vpc: &VpcId) -> String {
    format!("vtb-{}", &vpc.as_str()[4..])
}

/// A vSwitch's answer fields; `tags` are its own.
fn vswitch_json(s: &VSwitchRecord, call: &Call, tags: &[(String, String)]) -> Value {
    json!({
        "VSwitchId": s.id.to_string(),
        "VpcId": s.vpc_id.to_string(),
        "ZoneId": s.zone_id,
        "Status": "Available",
        "VSwitchName": s.name,
        "Description": s.description,
        "CidrBlock": s.cidr.to_string(),
        "Ipv6CidrBlock": s.ipv6_cidr.map(|b| b.to_string()).unwrap_or_default(),
        "EnabledIpv6": s.ipv6_cidr.is_some(),
        "AvailableIpAddressCount": s.available,
        "CreationTime": s.created_at,
        "IsDefault": false,
        "RouteTable": {"RouteTableId": route_table(&s.vpc_id), "RouteTableType": "System"},
        "Tags": vpc_tags(tags),
        "OwnerId": call.ctx.account.get(),
        // No network ACLs, resource groups or sharing here.
        "NetworkAclId": "",
        "ResourceGroupId": "",
        "ShareType": "",
    })
}

/// `CidrBlock`, if given.
fn cidr(p: &Params) -> Result<Option<Ipv4Net>> {
    p.opt("CidrBlock")
        .map(|s| s.parse().map_err(|_| ServerError::CidrBlockMalformed(s)))
        .transpose()
}

/// `CreateVpc`.
pub(super) fn create_vpc(call: &Call) -> Result<Reply> {
    let p = call.params;
    let block = cidr(p)?.unwrap_or(DEFAULT_VPC_BLOCK);
    let name = p.bounded("VpcName", NAME_LENGTH)?.unwrap_or_default();
    let description = p
        .bounded("Description", DESCRIPTION_LENGTH)?
        .unwrap_or_default();
    // A block of the caller's own (`Ipv6CidrBlock`, BYOIP) is not offered: the lab's hosts
    // carry addresses of the benchmarking range only.
    if let Some(b) = p.opt("Ipv6CidrBlock") {
        return Err(ServerError::invalid("Ipv6CidrBlock", b));
    }
    let ipv6 = p.flag("EnableIpv6")?;
    call.command_with(|tx| {
        let id = tx.create_vpc(&name, &description, block, ipv6)?;
        let body = &id.as_str()[4..];
        let ipv6 = tx
            .vpc(&id)?
            .ipv6_cidr
            .map(|b| b.to_string())
            .unwrap_or_default();
        Ok(
            json!({"VpcId": id.to_string(), "VRouterId": format!("vrt-{body}"),
                  "RouteTableId": route_table(&id), "ResourceGroupId": "",
                  "Ipv6CidrBlock": ipv6}),
        )
    })
}

/// `DescribeVpcs`.
pub(super) fn describe_vpcs(call: &Call) -> Result<Reply> {
    let only: Option<VpcId> = call.params.parsed("VpcId")?;
    let name = call.params.opt("VpcName");
    let paging = Paging::parse(call.params)?;
    call.read(|tx| {
        let vpcs: Vec<VpcRecord> = tx
            .vpcs(only.as_ref())?
            .into_iter()
            .filter(|v| name.as_ref().is_none_or(|n| &v.name == n))
            .collect();
        let window = paging.window(vpcs.len());
        let mut page = Vec::new();
        for v in &vpcs[window.range.clone()] {
            let tags = tx.resource_tags(TaggedType::Vpc, v.id.as_str())?;
            page.push(vpc_json(v, call, &tags));
        }
        let mut body = paging.fields(&window, vpcs.len());
        body["Vpcs"] = json!({ "Vpc": page });
        Ok(body)
    })
}

/// `DescribeVpcAttribute`: one VPC, its fields at the top of the answer (what Terraform's
/// `alicloud_vpc` waits on).
pub(super) fn describe_vpc_attribute(call: &Call) -> Result<Reply> {
    let id: VpcId = call.params.typed("VpcId")?;
    call.read(|tx| {
        let tags = tx.resource_tags(TaggedType::Vpc, id.as_str())?;
        Ok(vpc_json(&tx.vpc(&id)?, call, &tags))
    })
}

/// `DeleteVpc`.
pub(super) fn delete_vpc(call: &Call) -> Result<Reply> {
    let id: VpcId = call.params.typed("VpcId")?;
    call.command(|tx| tx.delete_vpc(&id))
}

/// `CreateVSwitch`.
pub(super) fn create_vswitch(call: &Call) -> Result<Reply> {
    let p = call.params;
    let vpc: VpcId = p.typed("VpcId")?;
    let zone = p
        .bounded("ZoneId", NAME_LENGTH)?
        .ok_or(model::ModelError::Missing("ZoneId"))?;
    let block = cidr(p)?.ok_or(model::ModelError::Missing("CidrBlock"))?;
    let name = p.bounded("VSwitchName", NAME_LENGTH)?.unwrap_or_default();
    let description = p
        .bounded("Description", DESCRIPTION_LENGTH)?
        .unwrap_or_default();
    // `Ipv6CidrBlock` is the index (0-255) of the vSwitch's /64 in its VPC's /56.
    let ipv6 = p.number("Ipv6CidrBlock", 0, 255)?.map(|n| n as u8);
    call.command_with(|tx| {
        let id = tx.create_vswitch(&vpc, &zone, block, ipv6, &name, &description)?;
        Ok(json!({"VSwitchId": id.to_string()}))
    })
}

/// `DescribeVSwitches`.
pub(super) fn describe_vswitches(call: &Call) -> Result<Reply> {
    let vpc: Option<VpcId> = call.params.parsed("VpcId")?;
    let only: Option<VSwitchId> = call.params.parsed("VSwitchId")?;
    let zone = call.params.opt("ZoneId");
    let paging = Paging::parse(call.params)?;
    call.read(|tx| {
        let list: Vec<VSwitchRecord> = tx
            .vswitches(vpc.as_ref(), only.as_ref())?
            .into_iter()
            .filter(|s| zone.as_ref().is_none_or(|z| &s.zone_id == z))
            .collect();
        let window = paging.window(list.len());
        let mut page = Vec::new();
        for s in &list[window.range.clone()] {
            let tags = tx.resource_tags(TaggedType::VSwitch, s.id.as_str())?;
            page.push(vswitch_json(s, call, &tags));
        }
        let mut body = paging.fields(&window, list.len());
        body["VSwitches"] = json!({ "VSwitch": page });
        Ok(body)
    })
}

/// `DescribeVSwitchAttributes`: one vSwitch, its fields at the top of the answer (what
/// Terraform's `alicloud_vswitch` waits on).
pub(super) fn describe_vswitch_attributes(call: &Call) -> Result<Reply> {
    let id: VSwitchId = call.params.typed("VSwitchId")?;
    call.read(|tx| {
        let tags = tx.resource_tags(TaggedType::VSwitch, id.as_str())?;
        let mut body = vswitch_json(&tx.vswitch(&id)?, call, &tags);
        body["RegionId"] = json!(call.ctx.region);
        Ok(body)
    })
}

/// `DeleteVSwitch`.
pub(super) fn delete_vswitch(call: &Call) -> Result<Reply> {
    let id: VSwitchId = call.params.typed("VSwitchId")?;
    call.command(|tx| tx.delete_vswitch(&id))
}

/// `ModifyVpcAttribute`: `VpcName`, `Description`.
pub(super) fn modify_vpc_attribute(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: VpcId = p.typed("VpcId")?;
    let name = p.bounded("VpcName", NAME_LENGTH)?;
    let description = p.bounded("Description", DESCRIPTION_LENGTH)?;
    call.command(|tx| tx.modify_vpc(&id, name, description))
}

/// `ModifyVSwitchAttribute`: `VSwitchName`, `Description`.
pub(super) fn modify_vswitch_attribute(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: VSwitchId = p.typed("VSwitchId")?;
    let name = p.bounded("VSwitchName", NAME_LENGTH)?;
    let description = p.bounded("Description", DESCRIPTION_LENGTH)?;
    call.command(|tx| tx.modify_vswitch(&id, name, description))
}

/// `DescribeRouteTableList`: each VPC's system route table (the one Stockade's VPCs have;
/// routes are not modelled), what Terraform's `alicloud_vpc` reads as `route_table_id`.
/// Filters `VpcId`, `RouteTableId`, `RouterId`, `RouteTableType`; `PageNumber`/`PageSize`.
pub(super) fn describe_route_table_list(call: &Call) -> Result<Reply> {
    let p = call.params;
    let only: Option<VpcId> = p.parsed("VpcId")?;
    let table = p.opt("RouteTableId");
    let router = p.opt("RouterId");
    let kind = p.opt("RouteTableType");
    let paging = Paging::parse(p)?;
    call.read(|tx| {
        let tables: Vec<Value> = tx
            .vpcs(only.as_ref())?
            .into_iter()
            .map(|v| {
                let body = &v.id.as_str()[4..];
                json!({
                    "RouteTableId": route_table(&v.id),
                    "RouteTableName": "",
                    "Description": "",
                    "VpcId": v.id.to_string(),
                    "RouterId": format!("vrt-{body}"),
                    "RouterType": "VRouter",
                    "RouteTableType": "System",
                    "AssociateType": "VSwitch",
                    "Status": "Available",
                    "CreationTime": v.created_at,
                    "VSwitchIds": {"VSwitchId": v.vswitches.iter().map(ToString::to_string).collect::<Vec<_>>()},
                    "ResourceGroupId": "",
                    "OwnerId": call.ctx.account.to_string(),
                    "Tags": {"Tag": []},
                    "GatewayIds": {"GatewayIds": []},
                    "RoutePropagationEnable": false,
                })
            })
            .filter(|t| table.as_ref().is_none_or(|x| t["RouteTableId"] == x.as_str()))
            .filter(|t| router.as_ref().is_none_or(|x| t["RouterId"] == x.as_str()))
            .filter(|t| kind.as_ref().is_none_or(|x| t["RouteTableType"] == x.as_str()))
            .collect();
        let window = paging.window(tables.len());
        let mut body = paging.fields(&window, tables.len());
        body["RouterTableList"] = json!({"RouterTableListType": tables[window.range.clone()]});
        body["Success"] = json!(true);
        body["Code"] = json!("200");
        Ok(body)
    })
}
