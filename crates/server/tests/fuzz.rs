//! A fuzzer over the wire layer and the action dispatch, bounded for the test suite: random
//! requests (every action and unknown ones; known and unknown parameter names; ids of the
//! caller's resources, of nothing, and malformed; numbers at and past their bounds; long,
//! empty and control-character values; lists and `Permissions.N` objects), signed so that
//! they reach the actions. For every request: never a 5xx, always an ECS error body of the
//! right shape when refused, and a refused request changes nothing (the store's revision
//! stands still).
//!
//! `STOCKADE_FUZZ_REQUESTS` sets how many (100,000 by default); `STOCKADE_FUZZ_SEED` the seed.

mod common;

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use server::Action;

/// Parameter names the actions read, and some they do not.
const NAMES: &[&str] = &[
    "RegionId",
    "SecurityGroupId",
    "SecurityGroupIds",
    "SecurityGroupName",
    "Description",
    "SecurityGroupType",
    "VpcId",
    "VSwitchId",
    "ZoneId",
    "CidrBlock",
    "VpcName",
    "VSwitchName",
    "InstanceId",
    "InstanceIds",
    "InstanceName",
    "ImageId",
    "InstanceType",
    "Amount",
    "PrivateIpAddress",
    "InternetMaxBandwidthOut",
    "NetworkInterfaceId",
    "InnerAccessPolicy",
    "IpProtocol",
    "PortRange",
    "SourcePortRange",
    "SourceCidrIp",
    "DestCidrIp",
    "Ipv6SourceCidrIp",
    "Ipv6DestCidrIp",
    "SourceGroupId",
    "DestGroupId",
    "SourceGroupOwnerAccount",
    "SourceGroupOwnerId",
    "SourcePrefixListId",
    "Policy",
    "Priority",
    "NicType",
    "SecurityGroupRuleId",
    "SecurityGroupRuleId.1",
    "SecurityGroupRuleId.2",
    "Permissions.1.IpProtocol",
    "Permissions.1.PortRange",
    "Permissions.1.SourceCidrIp",
    "Permissions.2.IpProtocol",
    "Permissions.1.Priority",
    "SecurityGroupIds.1",
    "SecurityGroupId.1",
    "ResourceType",
    "ResourceId.1",
    "Tag.1.Key",
    "Tag.1.Value",
    "TagKey.1",
    "All",
    "Force",
    "DryRun",
    "ClientToken",
    "MaxResults",
    "NextToken",
    "PageNumber",
    "PageSize",
    "Direction",
    "NetworkType",
    "Status",
    "SourceInstanceId",
    "DestinationInstanceId",
    "SourceIp",
    "DestinationIp",
    "DestinationPort",
    "SourcePort",
    "ChangeAction",
    "RiskyPorts",
    "PlannedLeave.1.InstanceId",
    "PlannedLeave.1.SecurityGroupId",
    "Format",
    "Unknown",
];

/// Values: well-formed and not, at and past bounds, hostile.
const VALUES: &[&str] = &[
    "",
    " ",
    "0",
    "1",
    "-1",
    "2",
    "100",
    "101",
    "65535",
    "65536",
    "4294967295",
    "18446744073709551615",
    "99999999999999999999999",
    "1.5",
    "true",
    "false",
    "TRUE",
    "yes",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "gre",
    "all",
    "ALL",
    "sctp",
    "6",
    "22/22",
    "1/65535",
    "-1/-1",
    "200/1",
    "0/0",
    "+80/+80",
    "a/b",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "10.0.1.5",
    "::/0",
    "2001:db8::/32",
    "999.1.1.1/8",
    "10.0.0.0/33",
    "accept",
    "drop",
    "Accept",
    "Drop",
    "intranet",
    "internet",
    "ingress",
    "egress",
    "normal",
    "enterprise",
    "vpc",
    "classic",
    "securitygroup",
    "instance",
    "cn-hangzhou",
    "cn-hangzhou-h",
    "cn-nowhere",
    "sg-",
    "sg-x",
    "i-",
    "vpc-",
    "vsw-",
    "sgr-",
    "eni-",
    "pl-",
    "sg-doesnotexist00000001",
    "i-doesnotexist000000001",
    "[\"sg-a\",\"sg-b\"]",
    "[1,2]",
    "[",
    "{}",
    "null",
    "AuthorizeSecurityGroup",
    "RevokeSecurityGroup",
    "JoinSecurityGroup",
    "DeleteSecurityGroup",
    "DescribeRegions",
    "ecs.t6",
    "img",
    "default",
    "1234567890123456",
    "%00",
    "\u{0}",
    "\u{1b}[31m",
    "数据",
    "http://x",
    "<xml>&amp;",
    "a b",
    "tag",
    "aliyunkey",
];

/// Resources of the caller that requests can name (ids are the likeliest to reach deep).
struct Fixture {
    ids: Vec<String>,
}

async fn fixture(app: &axum::Router) -> Fixture {
    let sign: common::Signer = common::signed;
    let made = common::vpc_instance(app, sign).await;
    let classic = common::text(
        &common::ok(app, sign, &[("Action", "CreateSecurityGroup")]).await,
        "/SecurityGroupId",
    );
    common::ok(
        app,
        sign,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &made.group),
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourceCidrIp", "10.0.0.0/8"),
        ],
    )
    .await;
    let attribute = common::ok(
        app,
        sign,
        &[
            ("Action", "DescribeSecurityGroupAttribute"),
            ("SecurityGroupId", &made.group),
        ],
    )
    .await;
    let rule = common::text(&attribute, "/Permissions/Permission/0/SecurityGroupRuleId");
    let eni = format!("eni-{}", &made.instance[2..]);
    Fixture {
        ids: vec![
            made.vpc,
            made.vswitch,
            made.group,
            classic,
            rule,
            made.instance,
            eni,
        ],
    }
}

/// A value for `name`: often one of its kind (an id of the caller's with the right prefix,
/// a protocol, a port range), else anything.
fn value_for(name: &str, rng: &mut StdRng, fixture: &Fixture) -> String {
    let prefix = match name {
        n if n.contains("GroupRuleId") => Some("sgr-"),
        n if n.contains("GroupId") || n.starts_with("SecurityGroupIds") => Some("sg-"),
        n if n.contains("InstanceId") || n.starts_with("ResourceId") => Some("i-"),
        "VpcId" => Some("vpc-"),
        "VSwitchId" => Some("vsw-"),
        "NetworkInterfaceId" => Some("eni-"),
        _ => None,
    };
    let kind: &[&str] = match name {
        n if n.ends_with("IpProtocol") => {
            &["tcp", "udp", "icmp", "gre", "all", "icmpv6", "TCP", "x"]
        }
        n if n.ends_with("PortRange") => {
            &["22/22", "1/65535", "-1/-1", "80/8080", "0/1", "9/8", "22"]
        }
        n if n.ends_with("CidrIp") || n.ends_with("Ip") => &[
            "10.0.0.0/8",
            "0.0.0.0/0",
            "10.0.1.9",
            "::/0",
            "2001:db8::/64",
            "10.0.0.0/99",
        ],
        "Policy" => &["accept", "drop", "deny"],
        n if n.ends_with("Priority") => &["1", "100", "0", "101", "50"],
        "NicType" => &["intranet", "internet", "wan"],
        "ResourceType" => &["securitygroup", "instance", "disk"],
        "ChangeAction" => &[
            "AuthorizeSecurityGroup",
            "RevokeSecurityGroup",
            "JoinSecurityGroup",
            "DescribeRegions",
        ],
        "CidrBlock" => &[
            "10.0.2.0/24",
            "10.0.0.0/16",
            "172.16.0.0/12",
            "10.0.1.0/24",
            "bad",
        ],
        _ => &[],
    };
    if rng.random_bool(0.6) {
        if let Some(prefix) = prefix {
            if let Some(id) = fixture.ids.iter().find(|i| i.starts_with(prefix)) {
                return id.clone();
            }
        }
        if let Some(v) = kind.choose(rng) {
            return v.to_string();
        }
    }
    value(rng, fixture)
}

fn value(rng: &mut StdRng, fixture: &Fixture) -> String {
    match rng.random_range(0..10) {
        0..=3 => fixture.ids.choose(rng).unwrap().clone(),
        4 => "x".repeat(rng.random_range(0..2_000)),
        5 => format!("[\"{}\"]", fixture.ids.choose(rng).unwrap()),
        _ => VALUES.choose(rng).unwrap().to_string(),
    }
}

fn request(rng: &mut StdRng, fixture: &Fixture) -> Vec<(String, String)> {
    let action = if rng.random_bool(0.95) {
        *Action::ALL.choose(rng).unwrap()
    } else {
        Action::DescribeRegions
    };
    let mut params = vec![
        (
            "Action".to_string(),
            if rng.random_bool(0.97) {
                action.name().to_string()
            } else {
                VALUES.choose(rng).unwrap().to_string()
            },
        ),
        (
            "Version".to_string(),
            if rng.random_bool(0.97) {
                action.product().version().to_string()
            } else {
                "2099-01-01".into()
            },
        ),
    ];
    params.push((
        "RegionId".into(),
        if rng.random_bool(0.9) {
            "cn-hangzhou".into()
        } else {
            VALUES.choose(rng).unwrap().to_string()
        },
    ));
    // Mostly the parameters an action of this kind reads, so requests get past the
    // "missing parameter" checks to the deeper ones.
    let likely: &[&str] = match action.name() {
        n if n.contains("Rule") || n.contains("Authorize") || n.contains("Revoke") => &[
            "SecurityGroupId",
            "IpProtocol",
            "PortRange",
            "SourceCidrIp",
            "Policy",
            "Priority",
            "NicType",
            "SecurityGroupRuleId",
            "SourceGroupId",
            "DestCidrIp",
            "Permissions.1.IpProtocol",
            "Permissions.1.PortRange",
            "Permissions.1.SourceCidrIp",
        ],
        n if n.contains("Instance") || n.contains("Join") || n.contains("Leave") => &[
            "InstanceId",
            "SecurityGroupId",
            "VSwitchId",
            "ImageId",
            "InstanceType",
            "InstanceName",
            "SecurityGroupIds.1",
            "PrivateIpAddress",
            "Amount",
            "NetworkInterfaceId",
            "NicType",
        ],
        n if n.contains("Vpc") || n.contains("VSwitch") => {
            &["VpcId", "VSwitchId", "ZoneId", "CidrBlock", "VpcName"]
        }
        n if n.contains("Tag") => &[
            "ResourceType",
            "ResourceId.1",
            "Tag.1.Key",
            "Tag.1.Value",
            "TagKey.1",
            "All",
        ],
        n if n.contains("Flow") => &[
            "SourceInstanceId",
            "DestinationInstanceId",
            "SourceIp",
            "DestinationIp",
            "IpProtocol",
            "DestinationPort",
            "SourcePort",
            "NicType",
        ],
        n if n.contains("Preview") => &[
            "ChangeAction",
            "SecurityGroupId",
            "IpProtocol",
            "PortRange",
            "SourceCidrIp",
            "InstanceId",
        ],
        _ => &[
            "SecurityGroupId",
            "SecurityGroupName",
            "Description",
            "VpcId",
            "MaxResults",
            "NextToken",
        ],
    };
    for _ in 0..rng.random_range(0..8) {
        let name = if rng.random_bool(0.7) {
            likely.choose(rng)
        } else {
            NAMES.choose(rng)
        };
        let name = name.unwrap().to_string();
        let v = value_for(&name, rng, fixture);
        params.push((name, v));
    }
    params
}

/// Requests per store.
const STORE_EVERY: usize = 5_000;

/// A server over a fresh store with the caller's fixture resources.
struct World {
    _dir: tempfile::TempDir,
    control: std::sync::Arc<control::Control>,
    app: axum::Router,
    fixture: Fixture,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let control = std::sync::Arc::new(common::store(dir.path()));
        let app = server::app(std::sync::Arc::new(server::AppState::new(
            control.clone(),
            vec!["cn-hangzhou".into(), "cn-shanghai".into()],
        )));
        let fixture = fixture(&app).await;
        World {
            _dir: dir,
            control,
            app,
            fixture,
        }
    }
}

#[tokio::test]
async fn random_requests_never_fail_the_server_nor_change_what_they_refuse() {
    let count: usize = std::env::var("STOCKADE_FUZZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = std::env::var("STOCKADE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261201);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    let mut world = None;
    for n in 0..count {
        // A fresh store every few thousand requests: what they create (up to every quota)
        // would otherwise slow the later ones down, not make them any more searching.
        if n % STORE_EVERY == 0 {
            world = Some(World::new().await);
        }
        let World {
            control,
            app,
            fixture,
            ..
        } = world.as_ref().unwrap();
        let params = request(&mut rng, fixture);
        let before = control.revision().unwrap();
        let request = if rng.random_bool(0.5) {
            let borrowed: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            common::signed_post(&borrowed)
        } else {
            let query =
                server::auth::signed_v1_query("GET", common::AK, common::SK, params.clone());
            axum::http::Request::get(format!("/?{query}"))
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let (status, body) = common::send(app, request).await;
        let what = || format!("request {n} (seed {seed}): {params:?} -> {status} {body}");
        assert!(status.as_u16() < 500, "{}", what());
        assert!(body["RequestId"].is_string(), "{}", what());
        if status != StatusCode::OK {
            for field in ["Code", "Message", "HostId", "Recommend"] {
                assert!(body[field].is_string(), "{field}: {}", what());
            }
            assert_eq!(
                control.revision().unwrap(),
                before,
                "a refused request changed the store: {}",
                what()
            );
            *codes
                .entry(body["Code"].as_str().unwrap().to_string())
                .or_default() += 1;
        } else {
            *codes.entry("200".into()).or_default() += 1;
        }
    }
    // The fuzzer must reach past the front door: accepted requests and many distinct refusals.
    assert!(
        codes.get("200").copied().unwrap_or(0) > count / 100,
        "{codes:?}"
    );
    assert!(codes.len() > 25, "{codes:?}");
    eprintln!("{count} requests, answers by code: {codes:?}");
}
