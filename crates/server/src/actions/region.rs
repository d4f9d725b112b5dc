//! `DescribeRegions`, `DescribeZones` and `DescribeAccountAttributes`: where this server
//! serves and what it lets an account have.

use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::{Result, ServerError};
use crate::wire::Params;

/// Filters every region and zone here passes: each offers every charge type, spot
/// strategy and resource type, and names are the ids in any language. A filter is checked
/// (a value ECS does not know is refused) and then holds for all.
fn everywhere(p: &Params, filters: &[(&'static str, &[&str])]) -> Result<()> {
    for (name, known) in filters {
        if let Some(v) = p.opt(name) {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(&v)) {
                return Err(ServerError::invalid(name, v));
            }
        }
    }
    Ok(())
}

const LANGUAGES: &[&str] = &["zh-CN", "en-US", "ja"];
const CHARGE_TYPES: &[&str] = &["PrePaid", "PostPaid"];

/// `DescribeRegions`.
pub(super) fn describe_regions(call: &Call) -> Result<Reply> {
    everywhere(
        call.params,
        &[
            ("AcceptLanguage", LANGUAGES),
            ("InstanceChargeType", CHARGE_TYPES),
            (
                "ResourceType",
                &["instance", "disk", "reservedinstance", "scu"],
            ),
        ],
    )?;
    let regions: Vec<Value> = call
        .state
        .regions
        .iter()
        .map(
            |r| json!({"RegionId": r, "LocalName": r, "RegionEndpoint": "", "Status": "available"}),
        )
        .collect();
    Ok(Reply::Body(json!({"Regions": {"Region": regions}})))
}

/// The zones `DescribeZones` lists in each region: `-a` to `-k`, as a large ECS region has.
/// Zones are not modelled otherwise: any id that starts with the region's is accepted.
const ZONE_LETTERS: &str = "abcdefghijk";

/// `DescribeZones`.
pub(super) fn describe_zones(call: &Call) -> Result<Reply> {
    everywhere(
        call.params,
        &[
            ("AcceptLanguage", LANGUAGES),
            ("InstanceChargeType", CHARGE_TYPES),
            (
                "SpotStrategy",
                &["NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo"],
            ),
        ],
    )?;
    // The answer always has every detail `Verbose=true` asks for.
    call.params.flag("Verbose")?;
    let region = &call.ctx.region;
    let zones: Vec<Value> = ZONE_LETTERS
        .chars()
        .map(|c| {
            json!({
                "ZoneId": format!("{region}-{c}"),
                "LocalName": format!("{region}-{c}"),
                "ZoneType": "AvailabilityZone",
                "AvailableResourceCreation": {"ResourceTypes": ["Instance", "VSwitch", "IoOptimized"]},
                "AvailableResources": {"ResourcesInfo": []},
                "AvailableInstanceTypes": {"InstanceTypes": []},
                "AvailableDiskCategories": {"DiskCategories": []},
                "AvailableVolumeCategories": {"VolumeCategories": []},
                "DedicatedHostGenerations": {"DedicatedHostGeneration": []},
                "AvailableDedicatedHostTypes": {"DedicatedHostType": []},
            })
        })
        .collect();
    Ok(Reply::Body(json!({"Zones": {"Zone": zones}})))
}

/// `DescribeAccountAttributes`: the quotas this server enforces, under ECS's attribute
/// names (`AttributeName.N` picks some).
pub(super) fn describe_account_attributes(call: &Call) -> Result<Reply> {
    let wanted = call.params.list("AttributeName");
    // Quotas here are the region's, the same in every zone.
    let _ = call.params.opt("ZoneId");
    let (groups, interfaces) = call.query(|tx| {
        let l = tx.limits();
        Ok((l.groups_per_region, l.interfaces_per_region))
    })?;
    let values = |v: Vec<String>| -> Value {
        // Quotas here are per account and region, for every zone, type and charge type.
        json!({"ValueItem": v.into_iter().map(|v| json!({
            "Value": v,
            "Count": 1,
            "ZoneId": "",
            "InstanceType": "",
            "InstanceChargeType": "",
            "DiskCategory": "",
            "ExpiredTime": "",
        })).collect::<Vec<_>>()})
    };
    let items: Vec<Value> = [
        ("max-security-groups", vec![groups.to_string()]),
        (
            "max-elastic-network-interfaces",
            vec![interfaces.to_string()],
        ),
        (
            "instance-network-type",
            vec!["vpc".into(), "classic".into()],
        ),
    ]
    .into_iter()
    .filter(|(name, _)| wanted.is_empty() || wanted.iter().any(|w| w == name))
    .map(|(name, v)| json!({"AttributeName": name, "AttributeValues": values(v)}))
    .collect();
    Ok(Reply::Body(
        json!({"AccountAttributeItems": {"AccountAttributeItem": items}}),
    ))
}
