//! Instance, membership and VPC actions, and Stockade's `DescribeFlowVerdict`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use control::{CreateInstances, Ctx, InstanceRecord, InstanceStatus, VSwitchRecord, VpcRecord};
use model::{ip_proto, InstanceId, NicType, SecurityGroupId, VSwitchId, VpcId};
use policy::{DecidedBy, Endpoint, Engine, Evaluator, Flow};
use serde_json::{json, Value};

use crate::actions::{mutate, mutate_with, Paging};
use crate::wire::{ApiError, Params};
use crate::AppState;

/// Compiled engines per region, rebuilt when the change log has moved on.
#[derive(Default)]
pub struct EngineCache {
    by_region: Mutex<HashMap<String, (u64, Arc<Engine>)>>,
}

fn instance_id(p: &Params) -> Result<InstanceId, ApiError> {
    Ok(p.required("InstanceId")?.parse()?)
}

fn group_list(p: &Params) -> Result<Vec<SecurityGroupId>, ApiError> {
    let mut groups: Vec<SecurityGroupId> = Vec::new();
    if let Some(g) = p.parsed::<SecurityGroupId>("SecurityGroupId")? {
        groups.push(g);
    }
    for g in p.list("SecurityGroupIds") {
        let g: SecurityGroupId = g.parse()?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(groups)
}

fn create(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
    p: &Params,
    running: bool,
) -> Result<Value, ApiError> {
    let amount = if running {
        p.number("Amount", 1, 100)?.unwrap_or(1) as usize
    } else {
        1
    };
    let private_ip = match p.opt("PrivateIpAddress") {
        None => None,
        Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
            ApiError::new(
                400,
                "InvalidPrivateIpAddress.Malformed",
                format!("The specified PrivateIpAddress \"{s}\" is not valid."),
            )
        })?),
    };
    if private_ip.is_some() && amount > 1 {
        return Err(ApiError::new(
            400,
            "InvalidParameter.Conflict",
            "PrivateIpAddress can only be given with Amount 1.",
        ));
    }
    let name = p.opt("InstanceName").unwrap_or_default();
    if name.chars().count() > 128 {
        return Err(ApiError::new(
            400,
            "InvalidInstanceName.Malformed",
            "The specified InstanceName is not valid.",
        ));
    }
    let req = CreateInstances {
        amount,
        vswitch_id: p.parsed("VSwitchId")?,
        zone_id: p.opt("ZoneId"),
        security_groups: group_list(p)?,
        private_ip,
        public_ip: p.number("InternetMaxBandwidthOut", 0, 1024)?.unwrap_or(0) > 0,
        name,
        description: p
            .opt("Description")
            .map(|d| model::validate_group_description(&d))
            .transpose()?
            .unwrap_or_default(),
        image_id: p.required("ImageId")?,
        instance_type: p.required("InstanceType")?,
        running,
    };
    mutate_with(state, ctx, action, p, |tx| {
        let ids = tx.create_instances(&req)?;
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        Ok(if running {
            json!({"InstanceIdSets": {"InstanceIdSet": ids}, "TradePrice": 0.0})
        } else {
            json!({"InstanceId": ids[0]})
        })
    })
}

fn instance_json(i: &InstanceRecord, region: &str, tags: &[(String, String)]) -> Value {
    let ip = |a: Option<Ipv4Addr>| a.map(|a| vec![a.to_string()]).unwrap_or_default();
    let (private, inner) = match i.vpc_id {
        Some(_) => (vec![i.private_ip.to_string()], vec![]),
        None => (vec![], vec![i.private_ip.to_string()]),
    };
    json!({
        "InstanceId": i.id.to_string(),
        "InstanceName": i.name,
        "Description": i.description,
        "RegionId": region,
        "ZoneId": i.zone_id,
        "Status": i.status.as_wire(),
        "ImageId": i.image_id,
        "InstanceType": i.instance_type,
        "CreationTime": i.created_at,
        "InstanceNetworkType": if i.vpc_id.is_some() { "vpc" } else { "classic" },
        "SecurityGroupIds": {"SecurityGroupId": i.security_groups.iter().map(ToString::to_string).collect::<Vec<_>>()},
        "VpcAttributes": {
            "VpcId": i.vpc_id.as_ref().map(ToString::to_string).unwrap_or_default(),
            "VSwitchId": i.vswitch_id.as_ref().map(ToString::to_string).unwrap_or_default(),
            "PrivateIpAddress": {"IpAddress": private},
            "NatIpAddress": "",
        },
        "InnerIpAddress": {"IpAddress": inner},
        "PublicIpAddress": {"IpAddress": ip(i.public_ip)},
        "EipAddress": {"IpAddress": "", "AllocationId": ""},
        "NetworkInterfaces": {"NetworkInterface": [{
            "NetworkInterfaceId": format!("eni-{}", &i.id.as_str()[2..]),
            "Type": "Primary",
            "PrimaryIpAddress": i.private_ip.to_string(),
            "PrivateIpSets": {"PrivateIpSet": [{"PrivateIpAddress": i.private_ip.to_string(), "Primary": true}]},
            "Ipv6Sets": {"Ipv6Set": []},
        }]},
        "Tags": {"Tag": tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>()},
    })
}

fn describe_instances(state: &AppState, ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let ids: Option<Vec<InstanceId>> = match p.opt("InstanceIds") {
        None => None,
        Some(list) => {
            let parsed: Vec<String> = serde_json::from_str(&list)
                .map_err(|_| ApiError::invalid_parameter("InstanceIds", &list))?;
            Some(parsed.iter().map(|s| s.parse()).collect::<Result<_, _>>()?)
        }
    };
    let vpc: Option<VpcId> = p.parsed("VpcId")?;
    let vswitch: Option<VSwitchId> = p.parsed("VSwitchId")?;
    let group: Option<SecurityGroupId> = p.parsed("SecurityGroupId")?;
    let status = p.opt("Status");
    let name = p.opt("InstanceName");
    let paging = Paging::parse(p)?;
    let value = state.control.read(ctx, |tx| {
        let all: Vec<InstanceRecord> = tx
            .instances()?
            .into_iter()
            .filter(|i| ids.as_ref().is_none_or(|ids| ids.contains(&i.id)))
            .filter(|i| vpc.as_ref().is_none_or(|v| i.vpc_id.as_ref() == Some(v)))
            .filter(|i| {
                vswitch
                    .as_ref()
                    .is_none_or(|s| i.vswitch_id.as_ref() == Some(s))
            })
            .filter(|i| group.as_ref().is_none_or(|g| i.security_groups.contains(g)))
            .filter(|i| status.as_ref().is_none_or(|s| i.status.as_wire() == s))
            .filter(|i| name.as_ref().is_none_or(|n| &i.name == n))
            .collect();
        let (start, end, mut meta) = paging.window(all.len());
        let mut page = Vec::with_capacity(end - start);
        for i in &all[start..end] {
            page.push(instance_json(
                i,
                &ctx.region,
                &tx.resource_tags(control::TaggedType::Instance, i.id.as_str())?,
            ));
        }
        meta["Instances"] = json!({"Instance": page});
        Ok(meta)
    })?;
    Ok(value)
}

/// The instance an ENI-style request names: `NetworkInterfaceId` is `eni-` + the instance
/// id's body (one primary interface per instance in this version).
fn target_instance(p: &Params) -> Result<InstanceId, ApiError> {
    match (p.opt("InstanceId"), p.opt("NetworkInterfaceId")) {
        (Some(i), None) => Ok(i.parse()?),
        (None, Some(eni)) => match eni.strip_prefix("eni-") {
            Some(body) => Ok(InstanceId::from_body(body)?),
            None => Err(ApiError::new(
                400,
                "InvalidNetworkInterfaceId.Malformed",
                "The specified NetworkInterfaceId is not valid.",
            )),
        },
        (Some(_), Some(_)) => Err(ApiError::new(
            400,
            "InvalidParameter.Conflict",
            "InstanceId and NetworkInterfaceId cannot be specified together.",
        )),
        (None, None) => Err(model::ModelError::Missing("InstanceId").into()),
    }
}

/// ECS instance and membership actions; `None` if the action is not one of them.
pub fn dispatch(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
    p: &Params,
) -> Option<Result<Value, ApiError>> {
    Some(match action {
        "RunInstances" => create(state, ctx, action, p, true),
        "CreateInstance" => create(state, ctx, action, p, false),
        "DescribeInstances" => describe_instances(state, ctx, p),
        "StartInstance" => instance_id(p).and_then(|id| {
            mutate(state, ctx, action, p, |tx| {
                tx.set_instance_status(&id, InstanceStatus::Running)
            })
        }),
        "StopInstance" => instance_id(p).and_then(|id| {
            mutate(state, ctx, action, p, |tx| {
                tx.set_instance_status(&id, InstanceStatus::Stopped)
            })
        }),
        "DeleteInstance" => instance_id(p).and_then(|id| {
            let force = p.flag("Force")?;
            mutate(state, ctx, action, p, |tx| tx.delete_instance(&id, force))
        }),
        "JoinSecurityGroup" | "LeaveSecurityGroup" => (|| {
            let instance = target_instance(p)?;
            let group: SecurityGroupId = p.required("SecurityGroupId")?.parse()?;
            mutate(state, ctx, action, p, |tx| {
                if action == "JoinSecurityGroup" {
                    tx.join(&instance, &group)
                } else {
                    tx.leave(&instance, &group)
                }
            })
        })(),
        "ModifyInstanceAttribute" => (|| {
            let id = instance_id(p)?;
            let groups = p.list("SecurityGroupIds");
            let groups = if groups.is_empty() {
                None
            } else {
                Some(
                    groups
                        .iter()
                        .map(|g| g.parse())
                        .collect::<Result<Vec<SecurityGroupId>, _>>()?,
                )
            };
            let name = p.opt("InstanceName");
            let description = p.opt("Description");
            mutate(state, ctx, action, p, |tx| {
                tx.modify_instance(&id, name, description, groups)
            })
        })(),
        "DescribeFlowVerdict" => describe_flow_verdict(state, ctx, p),
        _ => return None,
    })
}

fn endpoint(
    p: &Params,
    instance: &'static str,
    ip: &'static str,
) -> Result<Option<Endpoint>, ApiError> {
    match (p.opt(instance), p.opt(ip)) {
        (Some(i), None) => Ok(Some(Endpoint::Instance(i.parse()?))),
        (None, Some(a)) => Ok(Some(Endpoint::Address(
            a.parse::<IpAddr>()
                .map_err(|_| ApiError::invalid_parameter(ip, &a))?,
        ))),
        (Some(_), Some(_)) => Err(ApiError::new(
            400,
            "InvalidParameter.Conflict",
            format!("{instance} and {ip} cannot be specified together."),
        )),
        (None, None) => Ok(None),
    }
}

fn describe_flow_verdict(state: &AppState, ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let source = endpoint(p, "SourceInstanceId", "SourceIp")?
        .ok_or(model::ModelError::Missing("SourceInstanceId"))?;
    let destination = endpoint(p, "DestinationInstanceId", "DestinationIp")?
        .ok_or(model::ModelError::Missing("DestinationInstanceId"))?;
    let protocol = match p.required("IpProtocol")?.to_ascii_lowercase().as_str() {
        "tcp" => ip_proto::TCP,
        "udp" => ip_proto::UDP,
        "icmp" => ip_proto::ICMP,
        "icmpv6" => ip_proto::ICMPV6,
        "gre" => ip_proto::GRE,
        other => return Err(model::ModelError::IpProtocolNotSupported(other.to_string()).into()),
    };
    let has_ports = matches!(protocol, ip_proto::TCP | ip_proto::UDP);
    let destination_port = match (has_ports, p.number("DestinationPort", 1, 65535)?) {
        (true, Some(port)) => port as u16,
        (true, None) => return Err(model::ModelError::Missing("DestinationPort").into()),
        (false, _) => 0,
    };
    let source_port = p.number("SourcePort", 1, 65535)?.unwrap_or(49152) as u16;
    let nic_type: NicType = p.parsed("NicType")?.unwrap_or(NicType::Intranet);
    // Only the caller's instances can be asked about.
    state.control.read(ctx, |tx| {
        for end in [&source, &destination] {
            if let Endpoint::Instance(id) = end {
                tx.instance(id)?;
            }
        }
        Ok(())
    })?;
    let engine = compiled(state, ctx)?;
    let family = Flow::infer_family(&source, &destination, protocol);
    let flow = Flow {
        source,
        destination,
        protocol,
        source_port,
        destination_port,
        nic_type,
        family,
    };
    let verdict = engine.verdict(&flow)?;
    Ok(flow_verdict_json(&verdict))
}

/// The `DescribeFlowVerdict` response body (without `RequestId`): the verdict, and per stage
/// what decided it, empty strings where a field does not apply.
pub fn flow_verdict_json(verdict: &policy::FlowVerdict) -> Value {
    let stages: Vec<Value> = verdict
        .stages
        .iter()
        .map(|s| {
            let (group, rule, priority, policy) = match &s.decided_by {
                DecidedBy::Rule { group, rule, priority, policy } => {
                    (group.to_string(), rule.to_string(), priority.to_string(), policy.as_wire().to_string())
                }
                DecidedBy::InnerAccessPolicy(g) => (g.to_string(), String::new(), String::new(), String::new()),
                _ => Default::default(),
            };
            json!({
                "Stage": match s.direction { model::Direction::Egress => "Egress", model::Direction::Ingress => "Ingress" },
                "InstanceId": s.instance.to_string(),
                "Verdict": s.verdict.as_wire(),
                "DecidedBy": s.decided_by.as_wire(),
                "SecurityGroupId": group,
                "SecurityGroupRuleId": rule,
                "Priority": priority,
                "Policy": policy,
            })
        })
        .collect();
    json!({"Verdict": verdict.verdict.as_wire(), "Stages": {"Stage": stages}})
}

/// The region's compiled engine at the store's current revision.
pub(crate) fn compiled(state: &AppState, ctx: &Ctx) -> Result<Arc<Engine>, ApiError> {
    let revision = state.control.revision()?;
    let mut cache = state
        .engines
        .by_region
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((at, engine)) = cache.get(&ctx.region) {
        if *at == revision {
            return Ok(engine.clone());
        }
    }
    let snapshot = state.control.read(ctx, |tx| tx.region_snapshot())?;
    let engine = Arc::new(
        Engine::new(&snapshot).map_err(|e| ApiError::new(500, "InternalError", e.to_string()))?,
    );
    cache.insert(ctx.region.clone(), (revision, engine.clone()));
    Ok(engine)
}

fn vpc_json(v: &VpcRecord, region: &str) -> Value {
    json!({
        "VpcId": v.id.to_string(),
        "RegionId": region,
        "Status": "Available",
        "VpcName": v.name,
        "Description": v.description,
        "CidrBlock": v.cidr.to_string(),
        "CreationTime": v.created_at,
        "IsDefault": false,
        "VRouterId": format!("vrt-{}", &v.id.as_str()[4..]),
        "VSwitchIds": {"VSwitchId": v.vswitches.iter().map(ToString::to_string).collect::<Vec<_>>()},
    })
}

fn vswitch_json(s: &VSwitchRecord) -> Value {
    json!({
        "VSwitchId": s.id.to_string(),
        "VpcId": s.vpc_id.to_string(),
        "ZoneId": s.zone_id,
        "Status": "Available",
        "VSwitchName": s.name,
        "Description": s.description,
        "CidrBlock": s.cidr.to_string(),
        "AvailableIpAddressCount": s.available,
        "CreationTime": s.created_at,
        "IsDefault": false,
    })
}

fn cidr(p: &Params) -> Result<ipnet::Ipv4Net, ApiError> {
    let s = p.required("CidrBlock")?;
    s.parse().map_err(|_| {
        ApiError::new(
            400,
            "InvalidCidrBlock.Malformed",
            format!("The specified CidrBlock \"{s}\" is not valid."),
        )
    })
}

/// The VPC product's actions (`Version=2016-04-28`).
pub fn dispatch_vpc(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
    p: &Params,
) -> Result<Value, ApiError> {
    match action {
        "CreateVpc" => {
            let block = match p.opt("CidrBlock") {
                Some(_) => cidr(p)?,
                None => "172.16.0.0/12".parse().expect("literal"),
            };
            let name = p.opt("VpcName").unwrap_or_default();
            let description = p.opt("Description").unwrap_or_default();
            mutate_with(state, ctx, action, p, |tx| {
                let id = tx.create_vpc(&name, &description, block)?;
                Ok(
                    json!({"VpcId": id.to_string(), "VRouterId": format!("vrt-{}", &id.as_str()[4..]),
                          "RouteTableId": format!("vtb-{}", &id.as_str()[4..]), "ResourceGroupId": ""}),
                )
            })
        }
        "DescribeVpcs" => {
            let only: Option<VpcId> = p.parsed("VpcId")?;
            let name = p.opt("VpcName");
            let paging = Paging::parse(p)?;
            Ok(state.control.read(ctx, |tx| {
                let vpcs: Vec<VpcRecord> =
                    tx.vpcs(only.as_ref())?.into_iter().filter(|v| name.as_ref().is_none_or(|n| &v.name == n)).collect();
                let (start, end, mut meta) = paging.window(vpcs.len());
                meta["Vpcs"] = json!({"Vpc": vpcs[start..end].iter().map(|v| vpc_json(v, &ctx.region)).collect::<Vec<_>>()});
                Ok(meta)
            })?)
        }
        "DeleteVpc" => {
            let id: VpcId = p.required("VpcId")?.parse()?;
            mutate(state, ctx, action, p, |tx| tx.delete_vpc(&id))
        }
        "CreateVSwitch" => {
            let vpc: VpcId = p.required("VpcId")?.parse()?;
            let zone = p.required("ZoneId")?;
            let block = cidr(p)?;
            let name = p.opt("VSwitchName").unwrap_or_default();
            let description = p.opt("Description").unwrap_or_default();
            mutate_with(state, ctx, action, p, |tx| {
                let id = tx.create_vswitch(&vpc, &zone, block, &name, &description)?;
                Ok(json!({"VSwitchId": id.to_string()}))
            })
        }
        "DescribeVSwitches" => {
            let vpc: Option<VpcId> = p.parsed("VpcId")?;
            let only: Option<VSwitchId> = p.parsed("VSwitchId")?;
            let zone = p.opt("ZoneId");
            let paging = Paging::parse(p)?;
            Ok(state.control.read(ctx, |tx| {
                let list: Vec<VSwitchRecord> = tx
                    .vswitches(vpc.as_ref(), only.as_ref())?
                    .into_iter()
                    .filter(|s| zone.as_ref().is_none_or(|z| &s.zone_id == z))
                    .collect();
                let (start, end, mut meta) = paging.window(list.len());
                meta["VSwitches"] = json!({"VSwitch": list[start..end].iter().map(vswitch_json).collect::<Vec<_>>()});
                Ok(meta)
            })?)
        }
        "DeleteVSwitch" => {
            let id: VSwitchId = p.required("VSwitchId")?.parse()?;
            mutate(state, ctx, action, p, |tx| tx.delete_vswitch(&id))
        }
        _ => Err(ApiError::new(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        )),
    }
}
