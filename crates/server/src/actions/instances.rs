//! Instances and their security-group memberships.

use std::net::Ipv4Addr;

use control::limits::{INSTANCES_PER_RUN, INSTANCE_NAME_LENGTH, NAME_LENGTH};
use control::{
    CreateInstances, CreateInterface, InstanceRecord, InstanceStatus, Ipv6Request, TaggedType, Tx,
};
use model::{InstanceId, ModelError, NetworkInterfaceId, SecurityGroupId, VSwitchId, VpcId};
use serde_json::{json, Value};

use super::{tags, Call, Reply};
use crate::error::{Result, ServerError};
use crate::paging::Paging;
use crate::wire::Params;

/// `SecurityGroupId` and `SecurityGroupIds.N`, in order, without repeats.
/// ECS takes up to 32 KiB of Base64 user data; it is kept as given and handed back.
const USER_DATA_LENGTH: usize = 32 * 1024;

fn group_list(p: &Params) -> Result<Vec<SecurityGroupId>> {
    let mut groups: Vec<SecurityGroupId> = Vec::new();
    if let Some(g) = p.parsed::<SecurityGroupId>("SecurityGroupId")? {
        groups.push(g);
    }
    for g in p.typed_list::<SecurityGroupId>("SecurityGroupIds")? {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(groups)
}

/// A secondary interface `RunInstances` attaches to each instance it creates
/// (`NetworkInterface.N` with `InstanceType` `Secondary`, the default).
enum Secondary {
    /// `NetworkInterfaceId`: one of the caller's `Available` interfaces, as it is.
    Existing(NetworkInterfaceId, bool),
    /// A new interface of these fields (`CreateNetworkInterface`'s).
    New(CreateInterface, bool),
}

/// The primary interface's own fields (`NetworkInterface.1` with `InstanceType` `Primary`):
/// the instance's vSwitch, groups and address, and the interface's name and description.
#[derive(Default)]
struct Primary {
    vswitch_id: Option<VSwitchId>,
    security_groups: Vec<SecurityGroupId>,
    private_ip: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Request>,
    name: Option<String>,
    description: Option<String>,
}

/// `NetworkInterface.N.*`: the primary interface's fields (only as the first entry) and the
/// secondary interfaces each instance gets. A secondary interface without groups takes the
/// instance's (`groups`); one given by id can only go to one instance. The hardware knobs
/// (`NetworkCardIndex`, queue counts, `NetworkInterfaceTrafficMode`) are accepted at the one
/// setting Stockade has, and refused otherwise; a secondary one's `SourceDestCheck` holds.
fn network_interfaces(
    p: &Params,
    amount: usize,
    groups: &[SecurityGroupId],
) -> Result<(Option<Primary>, Vec<Secondary>)> {
    let mut primary: Option<Primary> = None;
    let mut secondaries = Vec::new();
    for (n, object) in p.objects("NetworkInterface").iter().enumerate() {
        let mut f = object.params();
        // ECS's default: an interface created with the instance goes with it.
        let release = |default: bool| -> Result<bool> {
            match f.opt("DeleteOnRelease") {
                None => Ok(default),
                Some(_) => f.flag("DeleteOnRelease"),
            }
        };
        match f.opt("InstanceType").as_deref() {
            Some("Primary") if n == 0 => {
                // The primary interface is made with the instance; an existing one cannot be.
                if let Some(id) = f.opt("NetworkInterfaceId") {
                    return Err(ServerError::invalid(
                        "NetworkInterface.1.NetworkInterfaceId",
                        id,
                    ));
                }
                primary = Some(Primary {
                    ipv6: ipv6_request(&f)?,
                    vswitch_id: f.parsed("VSwitchId")?,
                    security_groups: super::interfaces::groups(&f, "SecurityGroupIds")?,
                    private_ip: f
                        .opt("PrimaryIpAddress")
                        .map(super::interfaces::address)
                        .transpose()?,
                    name: super::interfaces::name(&f)?,
                    description: f
                        .opt("Description")
                        .map(|d| model::validate_group_description(&d))
                        .transpose()?,
                });
            }
            None | Some("Secondary") => {
                if let Some(id) = f.parsed::<NetworkInterfaceId>("NetworkInterfaceId")? {
                    if amount > 1 {
                        return Err(ModelError::Conflict(
                            "NetworkInterface.N.NetworkInterfaceId",
                            "Amount",
                        )
                        .into());
                    }
                    if f.opt("VSwitchId").is_some() {
                        return Err(ModelError::Conflict(
                            "NetworkInterface.N.NetworkInterfaceId",
                            "NetworkInterface.N.VSwitchId",
                        )
                        .into());
                    }
                    secondaries.push(Secondary::Existing(id, release(false)?));
                    continue;
                }
                if f.opt("PrimaryIpAddress").is_some() && amount > 1 {
                    return Err(ModelError::Conflict(
                        "NetworkInterface.N.PrimaryIpAddress",
                        "Amount",
                    )
                    .into());
                }
                // IPv6 comes by `AssignIpv6Addresses` once attached; refused, not dropped.
                if f.number("Ipv6AddressCount", 0, 10)?.unwrap_or(0) > 0
                    || !f.list("Ipv6Address").is_empty()
                {
                    return Err(ServerError::invalid(
                        "NetworkInterface.N.Ipv6AddressCount",
                        "secondary interfaces take IPv6 by AssignIpv6Addresses",
                    ));
                }
                let dor = release(true)?;
                let inherited = primary
                    .as_ref()
                    .map(|p| p.security_groups.as_slice())
                    .filter(|g| !g.is_empty())
                    .unwrap_or(groups);
                if f.opt("SecurityGroupId").is_none() && f.list("SecurityGroupIds").is_empty() {
                    for (m, g) in inherited.iter().enumerate() {
                        f.insert(&format!("SecurityGroupIds.{}", m + 1), g.as_str());
                    }
                }
                secondaries.push(Secondary::New(super::interfaces::create_request(&f)?, dor));
            }
            Some(other) => {
                return Err(ServerError::invalid(
                    "NetworkInterface.N.InstanceType",
                    other.to_string(),
                ))
            }
        }
    }
    Ok((primary, secondaries))
}

/// `Ipv6AddressCount` / `Ipv6Address.N`: one IPv6 address per interface in this version
/// (the engine knows one per member).
fn ipv6_request(p: &Params) -> Result<Option<Ipv6Request>> {
    Ok(
        match (
            p.number("Ipv6AddressCount", 0, 1)?,
            p.list("Ipv6Address").as_slice(),
        ) {
            (_, [a]) => {
                Some(Ipv6Request::Address(a.parse().map_err(|_| {
                    ServerError::invalid("Ipv6Address.1", a.clone())
                })?))
            }
            (_, [_, extra, ..]) => {
                return Err(ServerError::invalid("Ipv6Address.2", extra.clone()))
            }
            (Some(1), []) => Some(Ipv6Request::Any),
            _ => None,
        },
    )
}

/// `SystemDisk.*`, kept for `DescribeDisks` (Stockade models no storage).
fn system_disk(p: &Params) -> Result<control::SystemDisk> {
    let default = control::SystemDisk::default();
    Ok(control::SystemDisk {
        category: p
            .bounded("SystemDisk.Category", NAME_LENGTH)?
            .unwrap_or(default.category),
        size_gib: p
            .number("SystemDisk.Size", 20, 2048)?
            .map_or(default.size_gib, |s| s as u32),
        name: p
            .bounded("SystemDisk.DiskName", NAME_LENGTH)?
            .unwrap_or_default(),
        description: p
            .opt("SystemDisk.Description")
            .map(|d| model::validate_group_description(&d))
            .transpose()?
            .unwrap_or_default(),
    })
}

/// `PrivateIpAddress`, if given.
fn private_ip(p: &Params) -> Result<Option<Ipv4Addr>> {
    p.opt("PrivateIpAddress")
        .map(|s| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| ServerError::PrivateIpMalformed(s))
        })
        .transpose()
}

/// `InstanceName`, at most 128 characters.
fn instance_name(p: &Params) -> Result<Option<String>> {
    match p.opt("InstanceName") {
        Some(n) if n.chars().count() > INSTANCE_NAME_LENGTH => {
            Err(ServerError::InstanceNameMalformed)
        }
        other => Ok(other),
    }
}

/// An instance's `Description`, validated as ECS validates descriptions.
fn description(p: &Params) -> Result<Option<String>> {
    Ok(p.opt("Description")
        .map(|d| model::validate_group_description(&d))
        .transpose()?)
}

/// A Linux `HostName` as ECS checks it.
fn host_name(name: String) -> Result<String> {
    let ok = (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !name.starts_with(['.', '-'])
        && !name.ends_with(['.', '-'])
        && !name.contains("..");
    if ok {
        Ok(name)
    } else {
        Err(ServerError::HostNameMalformed(name))
    }
}

/// The `HostName` of each of `amount` instances: `HostNames.N` one each, or `HostName` for
/// all (with `UniqueSuffix=true`, followed by `001`, `002`, ...), or ECS's default (empty
/// here: derived from the id when read).
fn host_names(p: &Params, amount: usize) -> Result<Vec<String>> {
    let listed = p.list("HostNames");
    let one = p.opt("HostName");
    if !listed.is_empty() {
        if one.is_some() {
            return Err(ModelError::Conflict("HostName", "HostNames.N").into());
        }
        if listed.len() != amount {
            return Err(ServerError::invalid(
                "HostNames.N",
                listed.len().to_string(),
            ));
        }
        return listed.into_iter().map(host_name).collect();
    }
    match one {
        None => Ok(Vec::new()),
        Some(one) => Ok(suffixed(p, host_name(one)?, amount)?),
    }
}

/// `amount` copies of `name`; with `UniqueSuffix=true` and more than one, each followed by
/// `001`, `002`, ... (ECS does this to `HostName` and `InstanceName` alike).
fn suffixed(p: &Params, name: String, amount: usize) -> Result<Vec<String>> {
    Ok(if p.flag("UniqueSuffix")? && amount > 1 {
        (1..=amount).map(|n| format!("{name}{n:03}")).collect()
    } else {
        vec![name; amount]
    })
}

/// What ECS's instance type names say of size: `large` 2 vCPUs, `xlarge` 4, `Nxlarge` 4N,
/// `medium` 1, `small` 1; memory per vCPU by family letter (`c` 2 GiB, `g` 4, `r` 8).
/// `(vCPUs, MiB)`, 0 for what the name does not say (Stockade runs no guests: these only
/// answer the reads tools make).
fn sizing(instance_type: &str) -> (u32, u32) {
    let mut parts = instance_type.split('.');
    let (Some("ecs"), Some(family), Some(size)) = (parts.next(), parts.next(), parts.next()) else {
        return (0, 0);
    };
    let cpus = match size {
        "small" | "medium" => 1,
        "large" => 2,
        "xlarge" => 4,
        s => s
            .strip_suffix("xlarge")
            .and_then(|n| n.parse::<u32>().ok())
            .map_or(0, |n| n * 4),
    };
    let per_cpu = match family.trim_start_matches("hf").chars().next() {
        Some('c') => 2048,
        Some('g') => 4096,
        Some('r') => 8192,
        _ => 0,
    };
    (cpus, cpus * per_cpu)
}

/// `DescribeInstanceTypes`: the named types (`InstanceTypes.N`) as this server reads ECS's
/// type names (vCPUs and memory as `DescribeInstances` answers them; interfaces and IPv6
/// addresses per interface as the server's limits allow). Instance types are otherwise opaque
/// here, so without names it lists none, and a name it cannot read answers nothing.
pub(super) fn describe_instance_types(call: &Call) -> Result<Reply> {
    let p = call.params;
    let named = p.list("InstanceTypes");
    let family = p.opt("InstanceTypeFamily");
    call.read(|tx| {
        let enis = tx.limits().interfaces_per_instance;
        let types: Vec<Value> = named
            .iter()
            .filter_map(|t| {
                let (cpus, memory) = sizing(t);
                let type_family = t.rsplit_once('.').map_or("", |(f, _)| f);
                (cpus > 0 && family.as_ref().is_none_or(|f| f == type_family)).then(|| {
                    let mut out = json!({
                        "InstanceTypeId": t,
                        "InstanceTypeFamily": type_family,
                        "CpuCoreCount": cpus,
                        "MemorySize": f64::from(memory) / 1024.0,
                        "EniQuantity": enis,
                        "EniTotalQuantity": enis,
                        "EniPrivateIpAddressQuantity": 1,
                        "EniIpv6AddressQuantity": 1,
                        "CpuArchitecture": "X86",
                        "CpuOptions": {
                            "Core": cpus,
                            "ThreadsPerCore": 1,
                            "CoreFactor": 1,
                            "HyperThreadingAdjustable": false,
                            "NestedVirtualizationSupport": "",
                            "SupportedTopologyTypes": {"SupportedTopologyType": []},
                        },
                    });
                    // What the server does not know of a type (GPUs, local disks, network
                    // bandwidth and queues, credits, processor): ECS's values for none.
                    super::extend(&mut out, json!({
                        "InstanceCategory": "",
                        "InstanceFamilyLevel": "",
                        "PhysicalProcessorModel": "",
                        "CpuSpeedFrequency": 0.0,
                        "CpuTurboFrequency": 0.0,
                        "GPUAmount": 0,
                        "GPUMemorySize": 0.0,
                        "GPUSpec": "",
                        "LocalStorageAmount": 0,
                        "LocalStorageCapacity": 0,
                        "LocalStorageCategory": "",
                        "DiskQuantity": 0,
                        "BaselineCredit": 0,
                        "InitialCredit": 0,
                        "InstanceBandwidthRx": 0,
                        "InstanceBandwidthTx": 0,
                        "InstancePpsRx": 0,
                        "InstancePpsTx": 0,
                        "EriQuantity": 0,
                        "EniTrunkSupported": false,
                        "JumboFrameSupport": false,
                        "NetworkEncryptionSupport": false,
                        "NvmeSupport": "unsupported",
                        "MaximumQueueNumberPerEni": 1,
                        "PrimaryEniQueueNumber": 1,
                        "SecondaryEniQueueNumber": 1,
                        "TotalEniQueueQuantity": enis,
                        "QueuePairNumber": 1,
                        "NetworkCardQuantity": 1,
                        // No network-card choice (Terraform sends `NetworkCardIndex` only for types that list cards).
                        "NetworkCards": {"NetworkCardInfo": []},
                        "Attributes": {"Attribute": []},
                        "Clock": {"PtpSupport": "unsupported"},
                        "EnhancedNetwork": {"RssSupport": false, "SriovSupport": false, "ExpressSupport": false, "VfQueueNumberPerEni": 0},
                        "NetworkInfo": {"BandwidthWeighting": {"WeightingInfos": {"WeightingInfo": []}}},
                        "SecurityOptions": {"SecureBootSupport": "unsupported"},
                        "SupportedBootModes": {"SupportedBootMode": ["BIOS"]},
                    }));
                    out
                })
            })
            .collect();
        Ok(json!({"InstanceTypes": {"InstanceType": types}, "NextToken": ""}))
    })
}

/// `RunInstances` (`running`, `Amount` instances) or `CreateInstance` (one, stopped).
pub(super) fn create(call: &Call, running: bool) -> Result<Reply> {
    let p = call.params;
    let amount = if running {
        p.number("Amount", 1, INSTANCES_PER_RUN)?.unwrap_or(1) as usize
    } else {
        1
    };
    // ECS creates between `MinAmount` and `Amount` as stock allows; here there is always
    // stock, so `Amount`, once `MinAmount` is checked.
    if let Some(min) = p.number("MinAmount", 1, INSTANCES_PER_RUN)? {
        if running && (min as usize) > amount {
            return Err(ServerError::invalid("MinAmount", min.to_string()));
        }
    }
    // A launch template could stand for the image, type and network; none exists here.
    if let Some(t) = p.opt("LaunchTemplateId").or(p.opt("LaunchTemplateName")) {
        return Err(ServerError::LaunchTemplateNotFound(t));
    }
    let mut private_ip = private_ip(p)?;
    let mut ipv6 = ipv6_request(p)?;
    let mut vswitch_id = p.parsed("VSwitchId")?;
    let mut security_groups = group_list(p)?;
    let (primary, secondaries) = network_interfaces(p, amount, &security_groups)?;
    // The primary interface's fields are the instance's, given in one place or the other.
    let mut primary_label = (None, None);
    if let Some(primary) = primary {
        let conflict = |flat: &'static str, nested: &'static str| {
            Err(ModelError::Conflict(flat, nested).into())
        };
        if primary.vswitch_id.is_some() {
            if vswitch_id.is_some() {
                return conflict("VSwitchId", "NetworkInterface.1.VSwitchId");
            }
            vswitch_id = primary.vswitch_id;
        }
        if !primary.security_groups.is_empty() {
            if !security_groups.is_empty() {
                return conflict("SecurityGroupId", "NetworkInterface.1.SecurityGroupId");
            }
            security_groups = primary.security_groups;
        }
        if primary.private_ip.is_some() {
            if private_ip.is_some() {
                return conflict("PrivateIpAddress", "NetworkInterface.1.PrimaryIpAddress");
            }
            private_ip = primary.private_ip;
        }
        if primary.ipv6.is_some() {
            if ipv6.is_some() {
                return conflict("Ipv6AddressCount", "NetworkInterface.1.Ipv6AddressCount");
            }
            ipv6 = primary.ipv6;
        }
        primary_label = (primary.name, primary.description);
    }
    if private_ip.is_some() && amount > 1 {
        return Err(ModelError::Conflict("PrivateIpAddress", "Amount").into());
    }
    if private_ip.is_some() && vswitch_id.is_none() {
        return Err(ServerError::PrivateIpWithoutVSwitch);
    }
    let names = match instance_name(p)? {
        Some(name) => suffixed(p, name, amount)?,
        None => Vec::new(),
    };
    // Read even when neither name is given, so that it is never refused as unread.
    p.flag("UniqueSuffix")?;
    if matches!(ipv6, Some(Ipv6Request::Address(_))) && amount > 1 {
        return Err(ModelError::Conflict("Ipv6Address.N", "Amount").into());
    }
    let req = CreateInstances {
        amount,
        vswitch_id,
        zone_id: p.bounded("ZoneId", NAME_LENGTH)?,
        security_groups,
        private_ip,
        public_ip: p.number("InternetMaxBandwidthOut", 0, 1024)?.unwrap_or(0) > 0,
        ipv6,
        names,
        description: description(p)?.unwrap_or_default(),
        // ECS takes `ImageFamily` for the family's newest image; images are opaque here, so
        // the family's name stands for it.
        image_id: p
            .bounded("ImageId", NAME_LENGTH)?
            .or(p.bounded("ImageFamily", NAME_LENGTH)?)
            .ok_or(ModelError::Missing("ImageId"))?,
        instance_type: p
            .bounded("InstanceType", NAME_LENGTH)?
            .ok_or(ModelError::Missing("InstanceType"))?,
        user_data: p.bounded("UserData", USER_DATA_LENGTH)?.unwrap_or_default(),
        system_disk: system_disk(p)?,
        host_names: host_names(p, amount)?,
        resource_group_id: p.parsed("ResourceGroupId")?,
        running,
        options: super::options::parse(p)?,
    };
    // What Stockade does one way only: accepted when they ask for that way.
    p.fixed("IoOptimized", "optimized")?;
    p.fixed("NetworkOptions.EnableJumboFrame", "false")?;
    let tags = tags::parse_to_set(p, "Tag")?;
    call.command_with(|tx| {
        let created = tx.create_instances(&req)?;
        for instance in &created {
            if primary_label != (None, None) {
                let i = tx.instance(instance)?;
                if let Some(eni) = i.network_interfaces.first() {
                    let (name, description) = primary_label.clone();
                    tx.modify_interface(
                        &eni.id,
                        control::InterfaceChanges {
                            name,
                            description,
                            ..Default::default()
                        },
                    )?;
                }
            }
            for s in &secondaries {
                let (eni, release) = match s {
                    Secondary::Existing(id, release) => (id.clone(), *release),
                    Secondary::New(spec, release) => (tx.create_interface(spec)?, *release),
                };
                tx.attach_interface_releasing(&eni, instance, release)?;
            }
        }
        let ids: Vec<String> = created.iter().map(ToString::to_string).collect();
        if !tags.is_empty() {
            tx.tag(TaggedType::Instance, &ids, &tags)?;
        }
        Ok(if running {
            json!({"InstanceIdSets": {"InstanceIdSet": ids}, "TradePrice": 0.0, "OrderId": ""})
        } else {
            // Nothing is billed here: no order, no price.
            json!({"InstanceId": ids[0], "TradePrice": 0.0, "OrderId": ""})
        })
    })
}

fn instance_json(i: &InstanceRecord, region: &str, tags: &[(String, String)]) -> Value {
    let ip = |a: Option<Ipv4Addr>| a.map(|a| vec![a.to_string()]).unwrap_or_default();
    let (private, inner) = match i.vpc_id {
        Some(_) => (vec![i.private_ip.to_string()], vec![]),
        None => (vec![], vec![i.private_ip.to_string()]),
    };
    let (cpus, memory) = sizing(&i.instance_type);
    let mut out = json!({
        "InstanceId": i.id.to_string(),
        "InstanceName": i.name,
        "Description": i.description,
        "RegionId": region,
        "ZoneId": i.zone_id,
        "Status": i.status.as_wire(),
        "ImageId": i.image_id,
        "InstanceType": i.instance_type,
        "CreationTime": i.created_at,
        "StartTime": i.created_at,
        "HostName": i.host_name,
        "Cpu": cpus,
        "Memory": memory,
        "InstanceTypeFamily": i.instance_type.rsplit_once('.').map_or("", |(family, _)| family),
        "OSType": "linux",
        "OSName": "",
        "InstanceNetworkType": if i.vpc_id.is_some() { "vpc" } else { "classic" },
        "SecurityGroupIds": {"SecurityGroupId": i.security_groups.iter().map(ToString::to_string).collect::<Vec<_>>()},
        "VpcAttributes": {
            "VpcId": i.vpc_id.as_ref().map(ToString::to_string).unwrap_or_default(),
            "VSwitchId": i.vswitch_id.as_ref().map(ToString::to_string).unwrap_or_default(),
            "PrivateIpAddress": {"IpAddress": private},
            "NatIpAddress": "",
        },
        "InnerIpAddress": {"IpAddress": inner},
        // Before `PublicIpAddress`, as real ECS answers have it: footmark's parser recurses
        // forever on an instance without a public address when the order is the other way.
        "EipAddress": {"IpAddress": "", "AllocationId": "", "InternetChargeType": "", "Bandwidth": 0, "IsSupportUnassociate": false},
        "PublicIpAddress": {"IpAddress": ip(i.public_ip)},
        "NetworkInterfaces": {"NetworkInterface": i.network_interfaces.iter().map(|n| json!({
            "NetworkInterfaceId": n.id.to_string(),
            "Type": n.kind.as_wire(),
            "MacAddress": n.mac,
            "PrimaryIpAddress": n.private_ip.to_string(),
            "PrivateIpSets": {"PrivateIpSet": super::interfaces::private_ip_sets(n)},
            // One IPv6 address per interface here, so it is the primary one.
            "Ipv6Sets": {"Ipv6Set": n.ipv6.iter().map(|a| json!({"Ipv6Address": a.to_string(), "Primary": true})).collect::<Vec<_>>()},
            "Ipv4PrefixSets": {"Ipv4PrefixSet": super::interfaces::prefix_sets(n)},
            "Ipv6PrefixSets": {"Ipv6PrefixSet": []},
        })).collect::<Vec<_>>()},
        "Tags": {"Tag": tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>()},
    });
    super::extend(&mut out, unmodelled(i));
    super::extend(&mut out, super::options::answer(&i.options));
    out
}

/// The fields of what Stockade does not model, as an ECS instance without it has them.
fn unmodelled(i: &InstanceRecord) -> Value {
    let mut out = json!({
        // No billing, metadata service or GPUs here: the values an ECS instance has without
        // them. (What a request may set is in `options`.)
        "StoppedMode": "Not-applicable",
        "IoOptimized": true,
        "DeviceAvailable": true,
        "Recyclable": false,
        "GPUAmount": 0,
        "GPUSpec": "",
        "ExpiredTime": "2099-12-31T15:59Z",
        "ResourceGroupId": i.resource_group_id.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        "SerialNumber": i.id.as_str().trim_start_matches("i-"),
        "OperationLocks": {"LockReason": []},
        "MetadataOptions": {"HttpEndpoint": "enabled", "HttpTokens": "optional", "HttpPutResponseHopLimit": 1, "InstanceMetadataTags": "disabled"},
    });
    super::extend(
        &mut out,
        json!({
            // No clusters, VLANs, local disks, dedicated hosts, capacity reservations, RDMA,
            // hibernation or secure boot here: what an instance without them answers.
            "ClusterId": "",
            "VlanId": "",
            "ISP": "",
            "SaleCycle": "",
            "OSNameEn": "",
            "EnableNVS": false,
            "LocalStorageAmount": 0,
            "LocalStorageCapacity": 0,
            "AdditionalInfo": {"EnableHighDensityMode": false, "ManagedHostId": "", "NodeSerialNumber": ""},
            "ClockOptions": {"PtpStatus": "disabled"},
            "CpuOptions": {
                "CoreCount": sizing(&i.instance_type).0,
                "ThreadsPerCore": 1,
                "Numa": "",
                "NestedVirtualization": "",
                "TopologyType": "",
                "TurboMode": "",
                "EnableVISST": false,
                "EnableVRDT": false,
            },
            "DedicatedHostAttribute": {"DedicatedHostClusterId": "", "DedicatedHostId": "", "DedicatedHostName": ""},
            "DedicatedInstanceAttribute": {"Affinity": "default", "Tenancy": "default"},
            "EcsCapacityReservationAttr": {"CapacityReservationId": "", "CapacityReservationPreference": "none"},
            "HibernationOptions": {"Configured": false},
            "ImageOptions": {"CurrentOSNVMeSupported": false, "LoginAsNonRoot": false},
            "PrivateDnsNameOptions": {
                "HostnameType": "Custom",
                "EnableInstanceIdDnsARecord": false,
                "EnableInstanceIdDnsAAAARecord": false,
                "EnableIpDnsARecord": false,
                "EnableIpDnsPtrRecord": false,
            },
            "RdmaIpAddress": {"IpAddress": []},
            "SecurityOptions": {"EnableSecureBoot": false},
        }),
    );
    out
}

/// `DescribeInstances`: the caller's instances in the region, filtered and paged.
pub(super) fn describe(call: &Call) -> Result<Reply> {
    let p = call.params;
    let ids: Option<Vec<InstanceId>> = match p.opt("InstanceIds") {
        None => None,
        Some(list) => {
            let parsed: Vec<String> = serde_json::from_str(&list)
                .map_err(|_| ServerError::invalid("InstanceIds", list))?;
            Some(parsed.iter().map(|s| s.parse()).collect::<Result<_, _>>()?)
        }
    };
    // `AdditionalAttributes.N` asks for fields ECS leaves out by default (metadata options,
    // the primary interface's address, ...): this answer always carries every field, so
    // each is honoured as asked.
    let _ = p.list("AdditionalAttributes");
    let vpc: Option<VpcId> = p.parsed("VpcId")?;
    let vswitch: Option<VSwitchId> = p.parsed("VSwitchId")?;
    let group: Option<SecurityGroupId> = p.parsed("SecurityGroupId")?;
    let status = p.opt("Status");
    let name = p.opt("InstanceName");
    let zone = p.opt("ZoneId");
    let image = p.opt("ImageId");
    let instance_type = p.opt("InstanceType");
    let network = match p.opt("InstanceNetworkType") {
        Some(n) if n != "vpc" && n != "classic" => {
            return Err(ModelError::InvalidParameter("InstanceNetworkType", n).into())
        }
        other => other,
    };
    // Address filters are JSON arrays, like `InstanceIds`.
    let addresses = |key: &'static str| -> Result<Option<Vec<String>>> {
        p.opt(key)
            .map(|list| {
                serde_json::from_str::<Vec<String>>(&list)
                    .map_err(|_| ServerError::invalid(key, list))
            })
            .transpose()
    };
    let (private, inner, public) = (
        addresses("PrivateIpAddresses")?,
        addresses("InnerIpAddresses")?,
        addresses("PublicIpAddresses")?,
    );
    let ipv6: Vec<std::net::Ipv6Addr> = p
        .list("Ipv6Address")
        .into_iter()
        .map(|a| {
            a.parse()
                .map_err(|_| ServerError::invalid("Ipv6Address.N", a))
        })
        .collect::<Result<_>>()?;
    let wanted_tags = tags::parse(p, "Tag")?;
    let resource_group: Option<model::ResourceGroupId> = p.parsed("ResourceGroupId")?;
    let holds = |list: &Option<Vec<String>>, a: Option<String>| {
        list.as_ref()
            .is_none_or(|l| a.is_some_and(|a| l.contains(&a)))
    };
    let paging = Paging::parse(p)?;
    call.read(|tx| {
        let mut all: Vec<InstanceRecord> = tx
            .instances()?
            .into_iter()
            .filter(|i| zone.as_ref().is_none_or(|z| &i.zone_id == z))
            .filter(|i| {
                resource_group
                    .as_ref()
                    .is_none_or(|rg| i.resource_group_id.as_ref() == Some(rg))
            })
            .filter(|i| image.as_ref().is_none_or(|x| &i.image_id == x))
            .filter(|i| instance_type.as_ref().is_none_or(|x| &i.instance_type == x))
            .filter(|i| {
                let kind = if i.vpc_id.is_some() { "vpc" } else { "classic" };
                network.as_ref().is_none_or(|n| n == kind)
            })
            .filter(|i| {
                holds(
                    &private,
                    i.vpc_id.as_ref().map(|_| i.private_ip.to_string()),
                )
            })
            .filter(|i| holds(&inner, i.vpc_id.is_none().then(|| i.private_ip.to_string())))
            .filter(|i| holds(&public, i.public_ip.map(|a| a.to_string())))
            .filter(|i| ipv6.is_empty() || i.ipv6.is_some_and(|a| ipv6.contains(&a)))
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
        if !wanted_tags.is_empty() {
            let mut kept = Vec::with_capacity(all.len());
            for i in all {
                let tags = tx.resource_tags(TaggedType::Instance, i.id.as_str())?;
                let tagged = tags::matches(&wanted_tags, &tags);
                if tagged {
                    kept.push(i);
                }
            }
            all = kept;
        }
        let window = paging.window(all.len());
        let mut page = Vec::with_capacity(window.range.len());
        for i in &all[window.range.clone()] {
            let tags = tx.resource_tags(TaggedType::Instance, i.id.as_str())?;
            page.push(instance_json(i, &call.ctx.region, &tags));
        }
        let mut body = paging.fields(&window, all.len());
        body["Instances"] = json!({"Instance": page});
        Ok(body)
    })
}

/// `StartInstance` / `StopInstance`.
pub(super) fn set_status(call: &Call, status: InstanceStatus) -> Result<Reply> {
    let id: InstanceId = call.params.typed("InstanceId")?;
    power_options(call.params)?;
    call.command(|tx| tx.set_instance_status(&id, status))
}

/// The options of starting, stopping and rebooting. No guest runs here, so a forced and a
/// graceful stop or reboot are one and the same (`ForceStop`, `ForceReboot`, `ConfirmStop`
/// are honoured whichever way); what would need a guest or billing is accepted only at
/// ECS's default: no hibernation, no local disk reset, `StoppedMode=KeepCharging`.
fn power_options(p: &Params) -> Result<()> {
    for flag in ["ForceStop", "ForceReboot", "ConfirmStop"] {
        p.flag(flag)?;
    }
    p.fixed("Hibernate", "false")?;
    p.fixed("InitLocalDisk", "false")?;
    p.fixed("StoppedMode", "KeepCharging")
}

/// The instances of a batch action (`InstanceId.N`, 1 to 100), all or none: a batch is one
/// command (ECS's `BatchOptimization=AllTogether`, its default; `SuccessFirst` is refused
/// rather than half-applied).
fn batch(p: &Params) -> Result<Vec<InstanceId>> {
    if let Some(mode) = p.opt("BatchOptimization").filter(|m| m != "AllTogether") {
        return Err(ServerError::invalid("BatchOptimization", mode));
    }
    let ids: Vec<InstanceId> = p.typed_list("InstanceId")?;
    if ids.is_empty() {
        return Err(ModelError::Missing("InstanceId.N").into());
    }
    if ids.len() > INSTANCES_PER_RUN as usize {
        return Err(ServerError::invalid("InstanceId.N", ids.len().to_string()));
    }
    Ok(ids)
}

/// `StartInstances` / `StopInstances`: every instance changes status, or none does.
pub(super) fn set_status_all(call: &Call, status: InstanceStatus) -> Result<Reply> {
    power_options(call.params)?;
    let ids = batch(call.params)?;
    call.command_with(|tx| {
        let mut responses = Vec::with_capacity(ids.len());
        for id in &ids {
            let before = tx.instance(id)?.status;
            tx.set_instance_status(id, status)?;
            responses.push(json!({
                "InstanceId": id.to_string(), "Code": "200", "Message": "success",
                "PreviousStatus": before.as_wire(), "CurrentStatus": status.as_wire(),
            }));
        }
        Ok(json!({"InstanceResponses": {"InstanceResponse": responses}}))
    })
}

/// `RebootInstance` / `RebootInstances`: a running instance stays running (an instance's
/// enforcement does not depend on its guest); anything else is `IncorrectInstanceStatus`.
pub(super) fn reboot(call: &Call, many: bool) -> Result<Reply> {
    power_options(call.params)?;
    let ids = if many {
        batch(call.params)?
    } else {
        vec![call.params.typed("InstanceId")?]
    };
    call.command_with(|tx| {
        let mut responses = Vec::with_capacity(ids.len());
        for id in &ids {
            if tx.instance(id)?.status != InstanceStatus::Running {
                return Err(control::ControlError::IncorrectInstanceStatus);
            }
            responses.push(json!({
                "InstanceId": id.to_string(), "Code": "200", "Message": "success",
                "PreviousStatus": "Running", "CurrentStatus": "Running",
            }));
        }
        Ok(if many {
            json!({"InstanceResponses": {"InstanceResponse": responses}})
        } else {
            json!({})
        })
    })
}

/// `DeleteInstances`: all of them or none (`Force` deletes running ones).
pub(super) fn delete_all(call: &Call) -> Result<Reply> {
    let ids = batch(call.params)?;
    let force = call.params.flag("Force")?;
    call.command(|tx| ids.iter().try_for_each(|id| tx.delete_instance(id, force)))
}

/// `DeleteInstance` (`Force` deletes a running one).
pub(super) fn delete(call: &Call) -> Result<Reply> {
    let id: InstanceId = call.params.typed("InstanceId")?;
    let force = call.params.flag("Force")?;
    call.command(|tx| tx.delete_instance(&id, force))
}

/// `ModifyInstanceAttribute`: name, description, host name, user data, the whole group
/// list, and the attributes ECS lets it change (deletion protection, credit mode).
pub(super) fn modify_attribute(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: InstanceId = p.typed("InstanceId")?;
    let groups: Vec<SecurityGroupId> = p.typed_list("SecurityGroupIds")?;
    let changes = control::InstanceChanges {
        groups: (!groups.is_empty()).then_some(groups),
        name: instance_name(p)?,
        description: description(p)?,
        host_name: p.opt("HostName").map(host_name).transpose()?,
        user_data: p.bounded("UserData", USER_DATA_LENGTH)?,
        options: super::options::parse_changes(p)?,
    };
    p.fixed("EnableJumboFrame", "false")?;
    call.command(|tx| tx.modify_instance(&id, changes))
}

/// What a request names: an instance (`InstanceId`) or a network interface
/// (`NetworkInterfaceId`), never both.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// `InstanceId`.
    Instance(InstanceId),
    /// `NetworkInterfaceId`.
    Interface(NetworkInterfaceId),
}

/// The instance or interface a request names.
pub(crate) fn target(p: &Params) -> Result<Target> {
    match (p.parsed("InstanceId")?, p.parsed("NetworkInterfaceId")?) {
        (Some(i), None) => Ok(Target::Instance(i)),
        (None, Some(n)) => Ok(Target::Interface(n)),
        (Some(_), Some(_)) => Err(ModelError::Conflict("InstanceId", "NetworkInterfaceId").into()),
        (None, None) => Err(ModelError::Missing("InstanceId").into()),
    }
}

/// `JoinSecurityGroup`.
pub(super) fn join(call: &Call) -> Result<Reply> {
    membership(call, true)
}

/// `LeaveSecurityGroup`.
pub(super) fn leave(call: &Call) -> Result<Reply> {
    membership(call, false)
}

/// Join or leave, by instance or by interface.
fn membership(call: &Call, join: bool) -> Result<Reply> {
    let target = target(call.params)?;
    let group: SecurityGroupId = call.params.typed("SecurityGroupId")?;
    call.command(|tx| match &target {
        Target::Instance(i) if join => tx.join(i, &group),
        Target::Instance(i) => tx.leave(i, &group),
        Target::Interface(n) => tx.interface_membership(n, &group, join),
    })
}

/// `DescribeInstanceAttribute`: one instance, its fields at the top of the answer (what
/// Terraform's `alicloud_instance` reads).
pub(super) fn describe_attribute(call: &Call) -> Result<Reply> {
    let id: InstanceId = call.params.typed("InstanceId")?;
    call.read(|tx| {
        let i = tx.instance(&id)?;
        let tags = tx.resource_tags(TaggedType::Instance, i.id.as_str())?;
        let mut out = instance_json(&i, &call.ctx.region, &tags);
        // The attribute answer's own fields: no jumbo frames or network encryption here.
        out["EnableJumboFrame"] = json!(false);
        out["EnableNetworkEncryption"] = json!(false);
        out["NetworkOptions"] = json!({
            "BandwidthWeighting": "",
            "EnableJumboFrame": false,
            "EnableNetworkEncryption": false,
        });
        Ok(out)
    })
}

/// `DescribeInstanceStatus`: the caller's instances and their status, paged by
/// `PageNumber` / `PageSize` (filters `ZoneId`, `InstanceId.N`).
pub(super) fn describe_status(call: &Call) -> Result<Reply> {
    let p = call.params;
    let ids: Vec<InstanceId> = p.typed_list("InstanceId")?;
    let zone = p.opt("ZoneId");
    let paging = Paging::parse(p)?;
    call.read(|tx| {
        let all: Vec<Value> = tx
            .instances()?
            .into_iter()
            .filter(|i| ids.is_empty() || ids.contains(&i.id))
            .filter(|i| zone.as_ref().is_none_or(|z| &i.zone_id == z))
            .map(|i| json!({"InstanceId": i.id.to_string(), "Status": i.status.as_wire()}))
            .collect();
        let window = paging.window(all.len());
        let mut body = paging.fields(&window, all.len());
        body["InstanceStatuses"] = json!({"InstanceStatus": all[window.range.clone()]});
        Ok(body)
    })
}

/// `DescribeUserData`.
pub(super) fn describe_user_data(call: &Call) -> Result<Reply> {
    let id: InstanceId = call.params.typed("InstanceId")?;
    call.read(|tx| {
        let data = tx.user_data(&id)?;
        Ok(json!({"InstanceId": id.to_string(), "RegionId": call.ctx.region, "UserData": data}))
    })
}

/// The instances a request names by a JSON array (`InstanceIds`), a list (`InstanceId.N`)
/// or one `InstanceId`, each checked to be the caller's.
fn named_instances(call: &Call) -> Result<Vec<InstanceId>> {
    let p = call.params;
    let mut ids: Vec<InstanceId> = p.typed_list("InstanceId")?;
    ids.extend(p.parsed::<InstanceId>("InstanceId")?);
    if let Some(list) = p.opt("InstanceIds") {
        let parsed: Vec<String> =
            serde_json::from_str(&list).map_err(|_| ServerError::invalid("InstanceIds", list))?;
        for s in parsed {
            ids.push(s.parse()?);
        }
    }
    call.query(|tx| ids.iter().try_for_each(|i| tx.instance(i).map(drop)))?;
    Ok(ids)
}

/// One instance's entry in a read of a feature Stockade does not model, or none.
type PerInstance<'a> = &'a dyn Fn(&Tx, &InstanceRecord) -> control::Result<Option<Value>>;

/// Reads of instance features Stockade does not model, answered truthfully, one entry per
/// named instance (every instance of the caller when none is named), paged as ECS pages
/// them: what an ECS instance without the feature answers. Terraform's `alicloud_instance`
/// treats an empty maintenance, attachment or system-disk answer as the instance being gone,
/// so those answer an entry for every instance. Named instances must exist, so a deleted one
/// answers `NotFound`.
pub(super) fn describe_per_instance(
    call: &Call,
    list: &'static str,
    item: &'static str,
    entry: PerInstance<'_>,
) -> Result<Reply> {
    let named = named_instances(call)?;
    let paging = Paging::parse(call.params)?;
    call.read(|tx| {
        let mut all = Vec::new();
        for i in tx.instances()? {
            if named.is_empty() || named.contains(&i.id) {
                all.extend(entry(tx, &i)?);
            }
        }
        let window = paging.window(all.len());
        let mut body = paging.fields(&window, all.len());
        body[list] = json!({ item: all[window.range.clone()] });
        body["RegionId"] = json!(call.ctx.region);
        Ok(body)
    })
}

/// `DescribeInstanceRamRole`: no instance has a RAM role here.
pub(super) const NO_RAM_ROLE: PerInstance<'static> = &|_, _| Ok(None);

/// `DescribeInstanceMaintenanceAttributes`: ECS's defaults (recover automatically, no
/// notification, no window); nothing is ever maintained here.
pub(super) const MAINTENANCE: PerInstance<'static> = &|_, i| {
    Ok(Some(json!({
        "InstanceId": i.id.to_string(),
        "ActionOnMaintenance": {
            "Value": "AutoRecover",
            "DefaultValue": "AutoRecover",
            "SupportedValues": {"SupportedValue": ["Stop", "AutoRecover", "AutoRedeploy"]},
        },
        "NotifyOnMaintenance": false,
        "MaintenanceWindows": {"MaintenanceWindow": []},
    })))
};

/// `DescribeInstanceAttachmentAttributes`: no instance is in a private pool.
pub(super) const ATTACHMENT: PerInstance<'static> = &|_, i| {
    Ok(Some(json!({
        "InstanceId": i.id.to_string(),
        "PrivatePoolOptionsMatchCriteria": "None",
        "PrivatePoolOptionsId": "",
    })))
};

/// `DescribeDisks`: each instance's system disk as it was asked for (`SystemDisk.*`, id
/// `d-` and the instance id's body); Stockade has no data disks (`DiskType=data` answers
/// none). `DiskIds` (a JSON array) and `DiskType` filter.
pub(super) fn describe_disks(call: &Call) -> Result<Reply> {
    let p = call.params;
    let ids: Option<Vec<String>> = p
        .opt("DiskIds")
        .map(|l| serde_json::from_str(&l).map_err(|_| ServerError::invalid("DiskIds", l)))
        .transpose()?;
    if p.opt("DiskType").is_some_and(|t| t == "data") {
        return describe_per_instance(call, "Disks", "Disk", NO_RAM_ROLE);
    }
    let disk = |tx: &Tx, i: &InstanceRecord| -> control::Result<Option<Value>> {
        let id = format!("d-{}", i.id.as_str().trim_start_matches("i-"));
        if ids.as_ref().is_some_and(|ids| !ids.contains(&id)) {
            return Ok(None);
        }
        let d = tx.system_disk(&i.id)?;
        let mut out = json!({
            "DiskId": id,
            "InstanceId": i.id.to_string(),
            "Type": "system",
            "Category": d.category,
            "Size": d.size_gib,
            "DiskName": d.name,
            "Description": d.description,
            "Status": "In_use",
            "Device": "/dev/xvda",
            "ZoneId": i.zone_id,
            "ImageId": i.image_id,
            "Portable": false,
            "DeleteWithInstance": true,
            "Encrypted": false,
            "KMSKeyId": "",
            "AutoSnapshotPolicyId": "",
            "StorageClusterId": "",
            "CreationTime": i.created_at,
            "ResourceGroupId": i.resource_group_id.as_ref().map(|r| r.to_string()).unwrap_or_default(),
            "RegionId": call.ctx.region,
            // A system disk is attached when its instance is made and never detached.
            "AttachedTime": i.created_at,
            "DetachedTime": "",
            "Attachments": {"Attachment": [{"InstanceId": i.id.to_string(), "Device": "/dev/xvda", "AttachedTime": i.created_at}]},
            "MountInstances": {"MountInstance": []},
            "MountInstanceNum": 0,
            "MultiAttach": "Disabled",
            "SerialNumber": id.trim_start_matches("d-"),
            "PerformanceLevel": if d.category == "cloud_essd" { "PL1" } else { "" },
            "Tags": {"Tag": []},
        });
        // No snapshots, storage sets, billing, provisioned performance or locks for disks
        // here: what a pay-as-you-go disk without them answers.
        super::extend(
            &mut out,
            json!({
                "DiskChargeType": "PostPaid",
                "ExpiredTime": "2099-12-31T15:59Z",
                "ProvisionedIops": 0,
                "BurstingEnabled": false,
                "IOPS": 0,
                "IOPSRead": 0,
                "IOPSWrite": 0,
                "Throughput": 0,
                "ThroughputRead": 0,
                "ThroughputWrite": 0,
                "BdfId": "",
                "ProductCode": "",
                "SourceDiskId": "",
                "SourceSnapshotId": "",
                "StorageSetId": "",
                "StorageSetPartitionNumber": 0,
                "DeleteAutoSnapshot": false,
                "EnableAutoSnapshot": false,
                "EnableAutomatedSnapshotPolicy": false,
                "DataSource": {"Id": "", "Type": ""},
                "Placement": {"ZoneIds": ""},
                "OperationLocks": {"OperationLock": []},
            }),
        );
        Ok(Some(out))
    };
    describe_per_instance(call, "Disks", "Disk", &disk)
}

/// `AllocatePublicIpAddress`: the instance's public address (`IpAddress`), assigned from
/// the pool if it has none. Choosing the address (`IpAddress`, whitelisted users only in
/// ECS) and a classic `VlanId` are refused: the pool chooses, and there are no VLANs here.
pub(super) fn allocate_public_ip(call: &Call) -> Result<Reply> {
    let p = call.params;
    let id: InstanceId = p.typed("InstanceId")?;
    for chosen in ["IpAddress", "VlanId"] {
        if p.opt(chosen).is_some() {
            return Err(ServerError::unsupported(chosen));
        }
    }
    call.command_with(|tx| {
        let a = tx.allocate_public_ip(&id)?;
        Ok(json!({"IpAddress": a.to_string()}))
    })
}

/// `ModifyInstanceVpcAttribute`: a stopped instance to another vSwitch (`VSwitchId`), at
/// `PrivateIpAddress` or a free address, or into another VPC (`VpcId` with that VPC's
/// `SecurityGroupId.N`).
pub(super) fn modify_vpc(call: &Call) -> Result<Reply> {
    let p = call.params;
    let instance: InstanceId = p.typed("InstanceId")?;
    let vswitch: VSwitchId = p.typed("VSwitchId")?;
    let private_ip = private_ip(p)?;
    let vpc: Option<VpcId> = p.parsed("VpcId")?;
    let groups: Vec<SecurityGroupId> = p.typed_list("SecurityGroupId")?;
    call.command(|tx| {
        tx.modify_instance_vpc(&instance, &vswitch, private_ip, vpc.as_ref(), &groups)
    })
}

#[cfg(test)]
mod sizing_tests {
    #[test]
    fn sizes_follow_ecs_type_names() {
        assert_eq!(super::sizing("ecs.g7.large"), (2, 8192));
        assert_eq!(super::sizing("ecs.c6.2xlarge"), (8, 16384));
        assert_eq!(super::sizing("ecs.hfr7.xlarge"), (4, 32768));
        assert_eq!(super::sizing("ecs.t6-c1m1.large"), (2, 0));
        assert_eq!(super::sizing("custom"), (0, 0));
    }
}
