//! Tenancy, as a property over random two-account fleets: no answer to account B names a
//! resource of account A, except what B itself sent and what ECS's cross-account references
//! allow (a classic group of A that a rule names across accounts).

mod common;

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use common::{ok, Signer};

/// One account's resources.
#[derive(Default)]
struct Fleet {
    vpcs: Vec<String>,
    vswitches: Vec<String>,
    groups: Vec<String>,
    classic_groups: Vec<String>,
    instances: Vec<String>,
    rules: Vec<String>,
    addresses: Vec<String>,
    /// Every network interface: instances' primary ones and interfaces of their own.
    interfaces: Vec<String>,
    macs: Vec<String>,
    prefix_lists: Vec<String>,
    port_range_lists: Vec<String>,
}

impl Fleet {
    fn ids(&self) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = [
            &self.vpcs,
            &self.vswitches,
            &self.groups,
            &self.classic_groups,
            &self.instances,
            &self.rules,
            &self.interfaces,
            &self.prefix_lists,
            &self.port_range_lists,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        // An interface's MAC address names it too.
        ids.extend(self.macs.iter().cloned());
        ids
    }
}

async fn build(app: &axum::Router, sign: Signer, rng: &mut StdRng, fleet: &mut Fleet) {
    let vpc_version = ("Version", "2016-04-28");
    for v in 0..rng.random_range(1..=2) {
        let cidr = format!("10.{v}.0.0/16");
        let vpc = ok(
            app,
            sign,
            &[vpc_version, ("Action", "CreateVpc"), ("CidrBlock", &cidr)],
        )
        .await["VpcId"]
            .as_str()
            .unwrap()
            .to_string();
        let block = format!("10.{v}.1.0/24");
        let vsw = ok(
            app,
            sign,
            &[
                vpc_version,
                ("Action", "CreateVSwitch"),
                ("VpcId", &vpc),
                ("ZoneId", "cn-hangzhou-h"),
                ("CidrBlock", &block),
            ],
        )
        .await["VSwitchId"]
            .as_str()
            .unwrap()
            .to_string();
        for _ in 0..rng.random_range(1..=2) {
            let g = ok(
                app,
                sign,
                &[("Action", "CreateSecurityGroup"), ("VpcId", &vpc)],
            )
            .await["SecurityGroupId"]
                .as_str()
                .unwrap()
                .to_string();
            ok(
                app,
                sign,
                &[
                    ("Action", "AuthorizeSecurityGroup"),
                    ("SecurityGroupId", &g),
                    ("IpProtocol", "tcp"),
                    ("PortRange", "22/22"),
                    ("SourceCidrIp", "0.0.0.0/0"),
                ],
            )
            .await;
            ok(
                app,
                sign,
                &[
                    ("Action", "AuthorizeSecurityGroup"),
                    ("SecurityGroupId", &g),
                    ("IpProtocol", "all"),
                    ("SourceGroupId", &g),
                ],
            )
            .await;
            let i = ok(
                app,
                sign,
                &[
                    ("Action", "RunInstances"),
                    ("VSwitchId", &vsw),
                    ("SecurityGroupId", &g),
                    ("ImageId", "img"),
                    ("InstanceType", "t"),
                    ("Amount", "2"),
                ],
            )
            .await;
            fleet.instances.extend(
                i["InstanceIdSets"]["InstanceIdSet"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string()),
            );
            let eni = ok(
                app,
                sign,
                &[
                    ("Action", "CreateNetworkInterface"),
                    ("VSwitchId", &vsw),
                    ("SecurityGroupId", &g),
                    ("Tag.1.Key", "role"),
                    ("Tag.1.Value", "spare"),
                ],
            )
            .await;
            fleet
                .macs
                .push(eni["MacAddress"].as_str().unwrap().to_string());
            fleet
                .interfaces
                .push(eni["NetworkInterfaceId"].as_str().unwrap().to_string());
            fleet.groups.push(g);
        }
        fleet.vpcs.push(vpc);
        fleet.vswitches.push(vsw);
    }
    let list = ok(
        app,
        sign,
        &[
            ("Action", "CreatePrefixList"),
            ("PrefixListName", "office"),
            ("AddressFamily", "IPv4"),
            ("MaxEntries", "3"),
            ("Entry.1.Cidr", "192.0.2.0/24"),
        ],
    )
    .await["PrefixListId"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        app,
        sign,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &fleet.groups[0]),
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourcePrefixListId", &list),
        ],
    )
    .await;
    fleet.prefix_lists.push(list);
    let ports = ok(
        app,
        sign,
        &[
            ("Action", "CreatePortRangeList"),
            ("PortRangeListName", "web"),
            ("MaxEntries", "3"),
            ("Entry.1.PortRange", "8080/8080"),
        ],
    )
    .await["PortRangeListId"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        app,
        sign,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &fleet.groups[0]),
            ("Permissions.1.IpProtocol", "tcp"),
            ("Permissions.1.PortRangeListId", &ports),
            ("Permissions.1.SourceCidrIp", "192.0.2.0/24"),
        ],
    )
    .await;
    fleet.port_range_lists.push(ports);
    let classic = ok(app, sign, &[("Action", "CreateSecurityGroup")]).await["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        app,
        sign,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &classic),
            ("IpProtocol", "tcp"),
            ("PortRange", "80/80"),
            ("SourceCidrIp", "0.0.0.0/0"),
            ("NicType", "intranet"),
        ],
    )
    .await;
    let i = ok(
        app,
        sign,
        &[
            ("Action", "RunInstances"),
            ("SecurityGroupId", &classic),
            ("ImageId", "img"),
            ("InstanceType", "t"),
            ("InternetMaxBandwidthOut", "1"),
        ],
    )
    .await;
    fleet.instances.push(
        i["InstanceIdSets"]["InstanceIdSet"][0]
            .as_str()
            .unwrap()
            .to_string(),
    );
    fleet.classic_groups.push(classic);
    let tag_target = fleet.groups[0].clone();
    ok(
        app,
        sign,
        &[
            ("Action", "TagResources"),
            ("ResourceType", "securitygroup"),
            ("ResourceId.1", &tag_target),
            ("Tag.1.Key", "env"),
            ("Tag.1.Value", "prod"),
        ],
    )
    .await;
    for g in fleet.groups.iter().chain(&fleet.classic_groups) {
        let attribute = ok(
            app,
            sign,
            &[
                ("Action", "DescribeSecurityGroupAttribute"),
                ("SecurityGroupId", g),
            ],
        )
        .await;
        for p in attribute["Permissions"]["Permission"].as_array().unwrap() {
            fleet
                .rules
                .push(p["SecurityGroupRuleId"].as_str().unwrap().to_string());
        }
    }
    let described = ok(
        app,
        sign,
        &[("Action", "DescribeInstances"), ("PageSize", "100")],
    )
    .await;
    for i in described["Instances"]["Instance"].as_array().unwrap() {
        for n in i["NetworkInterfaces"]["NetworkInterface"]
            .as_array()
            .unwrap()
        {
            fleet
                .interfaces
                .push(n["NetworkInterfaceId"].as_str().unwrap().to_string());
            fleet
                .macs
                .push(n["MacAddress"].as_str().unwrap().to_string());
        }
        for list in [
            &i["VpcAttributes"]["PrivateIpAddress"]["IpAddress"],
            &i["InnerIpAddress"]["IpAddress"],
        ] {
            fleet.addresses.extend(
                list.as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string()),
            );
        }
    }
}

/// Every question B can ask, naming its own resources and A's.
fn questions(rng: &mut StdRng, a: &Fleet, b: &Fleet) -> Vec<Vec<(String, String)>> {
    let p = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let any = |fleet: &Fleet, rng: &mut StdRng| -> String {
        let all: Vec<String> = fleet.ids().into_iter().collect();
        all.choose(rng).unwrap().clone()
    };
    let mut out = vec![
        p(&[("Action", "DescribeSecurityGroups"), ("PageSize", "100")]),
        p(&[("Action", "DescribeInstances"), ("PageSize", "100")]),
        p(&[
            ("Version", "2016-04-28"),
            ("Action", "DescribeVpcs"),
            ("PageSize", "50"),
        ]),
        p(&[
            ("Version", "2016-04-28"),
            ("Action", "DescribeVSwitches"),
            ("PageSize", "50"),
        ]),
        p(&[
            ("Action", "ListTagResources"),
            ("ResourceType", "securitygroup"),
        ]),
        p(&[("Action", "ListTagResources"), ("ResourceType", "instance")]),
        p(&[("Action", "ListTagResources"), ("ResourceType", "eni")]),
        p(&[
            ("Action", "ListTagResources"),
            ("ResourceType", "prefixlist"),
        ]),
        p(&[("Action", "DescribePrefixLists"), ("MaxResults", "100")]),
        p(&[
            ("Action", "ListTagResources"),
            ("ResourceType", "portrangelist"),
        ]),
        p(&[("Action", "DescribePortRangeLists"), ("MaxResults", "100")]),
        p(&[("Action", "DescribeNetworkInterfaces"), ("PageSize", "100")]),
        p(&[
            ("Action", "DescribeNetworkInterfaces"),
            ("PrimaryIpAddress", "10.0.1.2"),
        ]),
        p(&[("Action", "DescribeSecurityGroupAudit")]),
        p(&[("Action", "DescribeReachability")]),
    ];
    for g in b.groups.iter().chain(&b.classic_groups) {
        out.push(p(&[
            ("Action", "DescribeSecurityGroupAttribute"),
            ("SecurityGroupId", g),
        ]));
        out.push(p(&[
            ("Action", "DescribeSecurityGroupReferences"),
            ("SecurityGroupId.1", g),
        ]));
        out.push(p(&[
            ("Action", "DescribeSecurityGroupRuleHits"),
            ("SecurityGroupId", g),
        ]));
        out.push(p(&[
            ("Action", "PreviewSecurityGroupChange"),
            ("ChangeAction", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", g),
            ("IpProtocol", "tcp"),
            ("PortRange", "1/65535"),
            ("SourceCidrIp", "0.0.0.0/0"),
            ("NicType", "intranet"),
        ]));
    }
    for i in &b.instances {
        out.push(p(&[
            ("Action", "DescribeInstanceExposure"),
            ("InstanceId", i),
        ]));
        for target in &a.addresses {
            out.push(p(&[
                ("Action", "DescribeFlowVerdict"),
                ("SourceInstanceId", i),
                ("DestinationIp", target),
                ("IpProtocol", "tcp"),
                ("DestinationPort", "22"),
            ]));
        }
    }
    // Naming A's resources: each must answer as if they did not exist.
    for _ in 0..60 {
        let theirs = any(a, rng);
        let mine_group = b.groups.choose(rng).unwrap().clone();
        let mine_instance = b.instances.choose(rng).unwrap().clone();
        let mine_interface = b.interfaces.choose(rng).unwrap().clone();
        let asks: Vec<Vec<(&str, String)>> = vec![
            vec![
                ("Action", "DescribeSecurityGroupAttribute".into()),
                ("SecurityGroupId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribeSecurityGroups".into()),
                ("SecurityGroupId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribeInstances".into()),
                ("InstanceIds", format!("[\"{theirs}\"]")),
            ],
            vec![
                ("Action", "JoinSecurityGroup".into()),
                ("InstanceId", mine_instance.clone()),
                ("SecurityGroupId", theirs.clone()),
            ],
            vec![
                ("Action", "JoinSecurityGroup".into()),
                ("InstanceId", theirs.clone()),
                ("SecurityGroupId", mine_group.clone()),
            ],
            vec![
                ("Action", "AuthorizeSecurityGroup".into()),
                ("SecurityGroupId", mine_group.clone()),
                ("IpProtocol", "tcp".into()),
                ("PortRange", "1/1".into()),
                ("SourceGroupId", theirs.clone()),
                ("SourceGroupOwnerAccount", "tester".into()),
            ],
            vec![
                ("Action", "TagResources".into()),
                ("ResourceType", "securitygroup".into()),
                ("ResourceId.1", theirs.clone()),
                ("Tag.1.Key", "k".into()),
            ],
            vec![
                ("Action", "DescribeFlowVerdict".into()),
                ("SourceInstanceId", mine_instance.clone()),
                ("DestinationInstanceId", theirs.clone()),
                ("IpProtocol", "icmp".into()),
            ],
            vec![
                ("Action", "DescribeInstanceExposure".into()),
                ("InstanceId", theirs.clone()),
            ],
            vec![
                ("Action", "DeleteSecurityGroup".into()),
                ("SecurityGroupId", theirs.clone()),
            ],
            vec![
                ("Action", "RevokeSecurityGroup".into()),
                ("SecurityGroupId", mine_group.clone()),
                ("SecurityGroupRuleId.1", theirs.clone()),
            ],
            vec![
                ("Version", "2016-04-28".into()),
                ("Action", "DescribeVSwitches".into()),
                ("VpcId", theirs.clone()),
            ],
            vec![
                ("Action", "CreateSecurityGroup".into()),
                ("VpcId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribeNetworkInterfaceAttribute".into()),
                ("NetworkInterfaceId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribePrefixListAttributes".into()),
                ("PrefixListId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribePrefixListAssociations".into()),
                ("PrefixListId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribePrefixLists".into()),
                ("PrefixListId.1", theirs.clone()),
            ],
            vec![
                ("Action", "ModifyPrefixList".into()),
                ("PrefixListId", theirs.clone()),
                ("AddEntry.1.Cidr", "203.0.113.0/24".into()),
            ],
            vec![
                ("Action", "DeletePrefixList".into()),
                ("PrefixListId", theirs.clone()),
            ],
            vec![
                ("Action", "AssignPrivateIpAddresses".into()),
                ("NetworkInterfaceId", theirs.clone()),
                ("SecondaryPrivateIpAddressCount", "1".into()),
            ],
            vec![
                ("Action", "UnassignPrivateIpAddresses".into()),
                ("NetworkInterfaceId", theirs.clone()),
                ("PrivateIpAddress.1", "10.0.1.2".into()),
            ],
            vec![
                ("Action", "DescribeInstanceExposure".into()),
                ("NetworkInterfaceId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribeDisks".into()),
                ("InstanceId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribePortRangeListEntries".into()),
                ("PortRangeListId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribePortRangeListAssociations".into()),
                ("PortRangeListId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribePortRangeLists".into()),
                ("PortRangeListId.1", theirs.clone()),
            ],
            vec![
                ("Action", "ModifyPortRangeList".into()),
                ("PortRangeListId", theirs.clone()),
                ("AddEntry.1.PortRange", "1/65535".into()),
            ],
            vec![
                ("Action", "DeletePortRangeList".into()),
                ("PortRangeListId", theirs.clone()),
            ],
            vec![
                ("Action", "AuthorizeSecurityGroup".into()),
                ("SecurityGroupId", mine_group.clone()),
                ("Permissions.1.IpProtocol", "tcp".into()),
                ("Permissions.1.PortRangeListId", theirs.clone()),
                ("Permissions.1.SourceCidrIp", "0.0.0.0/0".into()),
            ],
            vec![
                ("Action", "AuthorizeSecurityGroup".into()),
                ("SecurityGroupId", mine_group.clone()),
                ("IpProtocol", "tcp".into()),
                ("PortRange", "1/1".into()),
                ("SourcePrefixListId", theirs.clone()),
            ],
            vec![
                ("Action", "DescribeNetworkInterfaces".into()),
                ("NetworkInterfaceId.1", theirs.clone()),
            ],
            vec![
                ("Action", "DescribeNetworkInterfaces".into()),
                ("SecurityGroupId", theirs.clone()),
            ],
            vec![
                ("Action", "ModifyNetworkInterfaceAttribute".into()),
                ("NetworkInterfaceId", mine_interface.clone()),
                ("SecurityGroupId.1", theirs.clone()),
            ],
            vec![
                ("Action", "ModifyNetworkInterfaceAttribute".into()),
                ("NetworkInterfaceId", theirs.clone()),
                ("Description", "mine now".into()),
            ],
            vec![
                ("Action", "JoinSecurityGroup".into()),
                ("NetworkInterfaceId", theirs.clone()),
                ("SecurityGroupId", mine_group.clone()),
            ],
            vec![
                ("Action", "DeleteNetworkInterface".into()),
                ("NetworkInterfaceId", theirs.clone()),
            ],
            vec![
                ("Action", "CreateNetworkInterface".into()),
                ("VSwitchId", theirs.clone()),
                ("SecurityGroupId", mine_group.clone()),
            ],
            vec![
                ("Action", "TagResources".into()),
                ("ResourceType", "eni".into()),
                ("ResourceId.1", theirs.clone()),
                ("Tag.1.Key", "k".into()),
            ],
            vec![
                ("Action", "DescribeFlowVerdict".into()),
                ("SourceNetworkInterfaceId", mine_interface.clone()),
                ("DestinationNetworkInterfaceId", theirs.clone()),
                ("IpProtocol", "icmp".into()),
            ],
        ];
        let ask = asks.choose(rng).unwrap();
        out.push(
            ask.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
    }
    out
}

/// What ECS allows across accounts: a rule of B's classic group names A's classic group.
async fn b_names_as_classic_group(app: &axum::Router, a: &Fleet, b: &Fleet) {
    ok(
        app,
        common::signed_other,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &b.classic_groups[0]),
            ("IpProtocol", "tcp"),
            ("PortRange", "443/443"),
            ("SourceGroupId", &a.classic_groups[0]),
            ("SourceGroupOwnerAccount", "tester"),
        ],
    )
    .await;
}

#[tokio::test]
async fn no_answer_to_one_account_names_anothers_resources() {
    for seed in 0..3u64 {
        let (_dir, app) = common::two_accounts();
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (Fleet::default(), Fleet::default());
        build(&app, common::signed, &mut rng, &mut a).await;
        build(&app, common::signed_other, &mut rng, &mut b).await;
        // What ECS allows across accounts: B's classic group names A's classic group.
        let shared = a.classic_groups[0].clone();
        b_names_as_classic_group(&app, &a, &b).await;
        let theirs = a.ids();
        let mut asked = 0;
        for params in questions(&mut rng, &a, &b) {
            let borrowed: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let (_, body) = common::call(&app, &common::signed_other(&borrowed)).await;
            let text = body.to_string();
            let sent: String = params
                .iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            for id in &theirs {
                if text.contains(id.as_str()) && !sent.contains(id.as_str()) && *id != shared {
                    panic!("seed {seed}: {params:?} answered another account's {id}: {text}");
                }
            }
            asked += 1;
        }
        assert!(asked > 50, "seed {seed}: only {asked} questions");
    }
}

/// A policy with its groups, members and lists in id order (a share is read group by
/// group, the region in creation order; the engine takes them in any order).
fn sorted(mut s: policy::Snapshot) -> policy::Snapshot {
    s.groups.sort_by(|a, b| a.group.id.cmp(&b.group.id));
    s.instances.sort_by(|a, b| a.id.cmp(&b.id));
    s.prefix_lists.sort_by(|a, b| a.id.cmp(&b.id));
    s.port_range_lists.sort_by(|a, b| a.id.cmp(&b.id));
    s
}

/// An account's share, read by queries over what it holds (`Tx::account_policy`, what its
/// analysis compiles), keeps every verdict at its members: its closure there is the
/// region's, over random two-account fleets with a cross-account reference.
#[tokio::test]
async fn an_accounts_share_holds_what_its_verdicts_need() {
    for seed in 10..13u64 {
        let (dir, app) = common::two_accounts();
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (Fleet::default(), Fleet::default());
        build(&app, common::signed, &mut rng, &mut a).await;
        build(&app, common::signed_other, &mut rng, &mut b).await;
        b_names_as_classic_group(&app, &a, &b).await;
        let control = control::Control::open(dir.path(), control::Limits::default()).unwrap();
        let ctx = |account| control::Ctx {
            account,
            region: "cn-hangzhou".into(),
        };
        let any = ctx(model::AccountId::new(1));
        let region = control.read(&any, |tx| tx.region_snapshot()).unwrap();
        let owners: BTreeSet<model::AccountId> =
            region.groups.iter().map(|g| g.group.owner).collect();
        assert_eq!(owners.len(), 2, "seed {seed}: both accounts hold groups");
        for owner in owners {
            let share = control.read(&ctx(owner), |tx| tx.account_policy()).unwrap();
            let mine: BTreeSet<model::MemberId> = (region.instances.iter())
                .filter(|i| i.owner == owner)
                .map(|i| i.id.clone())
                .collect();
            assert!(!mine.is_empty(), "seed {seed}: {owner} has members");
            assert_eq!(
                sorted(share.closure(&mine)),
                sorted(region.closure(&mine)),
                "seed {seed}, account {owner}"
            );
            // Every group of the account is in its share (the audit judges them all),
            // and nothing of the other account but what its rules name and their members.
            for g in region.groups.iter().filter(|g| g.group.owner == owner) {
                assert!(share.groups.contains(g), "seed {seed}: {}", g.group.id);
            }
        }
    }
}

/// The agent feed makes each revision's region policy from the one before, reading again
/// only what the change log names (`Tx::region_snapshot_after`); after random commands of
/// every kind that moves a policy (one or two at a time, refused ones included), it is the
/// policy a whole read gives.
#[tokio::test]
async fn the_feeds_region_made_from_the_last_is_the_whole_read() {
    for seed in 20..23u64 {
        let (dir, app) = common::two_accounts();
        let control = control::Control::open(dir.path(), control::Limits::default()).unwrap();
        let ctx = control::Ctx {
            account: model::AccountId::new(1),
            region: "cn-hangzhou".into(),
        };
        let whole = || control.read(&ctx, |tx| tx.region_snapshot()).unwrap();
        let at = || control.read(&ctx, |tx| tx.revision()).unwrap();
        let (mut last, mut revision) = (whole(), at());
        let mut check = |what: &str| {
            let (now, made) = control
                .read(&ctx, |tx| {
                    Ok((tx.revision()?, tx.region_snapshot_after(&last, revision)?))
                })
                .unwrap();
            let (made, _) = made.unwrap_or_else(|| panic!("seed {seed}: {what}: a whole read"));
            assert_eq!(
                sorted(made.clone()),
                sorted(whole()),
                "seed {seed}: after {what}"
            );
            (last, revision) = (made, now);
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (Fleet::default(), Fleet::default());
        build(&app, common::signed, &mut rng, &mut a).await;
        check("A's fleet");
        build(&app, common::signed_other, &mut rng, &mut b).await;
        check("B's fleet");
        // B's rule names A's classic group (as ECS allows): A's commands move B's share.
        b_names_as_classic_group(&app, &a, &b).await;
        check("B's reference");
        // Each account's share as its analyses keep it: kept while no commit touches it,
        // which must then be exactly the share read afresh.
        let owners: BTreeSet<model::AccountId> =
            whole().groups.iter().map(|g| g.group.owner).collect();
        assert_eq!(owners.len(), 2, "seed {seed}: both accounts hold groups");
        let accounts: Vec<control::Ctx> = owners
            .into_iter()
            .map(|account| control::Ctx {
                account,
                region: "cn-hangzhou".into(),
            })
            .collect();
        let mut shares: Vec<(policy::Snapshot, u64)> = accounts
            .iter()
            .map(|c| {
                control
                    .read(c, |tx| Ok((tx.account_policy()?, tx.revision()?)))
                    .unwrap()
            })
            .collect();
        let (mut kept_shares, mut touched_shares) = (0, 0);
        let mut done = std::collections::BTreeMap::new();
        // Every pairing once, so that joins, leaves, attachments and detachments happen.
        for (action, other, key) in [
            ("JoinSecurityGroup", &a.groups, "SecurityGroupId"),
            ("LeaveSecurityGroup", &a.groups, "SecurityGroupId"),
            (
                "AttachNetworkInterface",
                &a.interfaces,
                "NetworkInterfaceId",
            ),
            (
                "DetachNetworkInterface",
                &a.interfaces,
                "NetworkInterfaceId",
            ),
        ] {
            for i in &a.instances {
                for o in other {
                    let params = [("Action", action), ("InstanceId", i), (key, o)];
                    if common::call(&app, &common::signed(&params))
                        .await
                        .0
                        .is_success()
                    {
                        *done.entry(action.to_string()).or_insert(0) += 1;
                    }
                }
            }
            check(action);
        }
        for step in 0..80 {
            let pick =
                |v: &Vec<String>, rng: &mut StdRng| v.choose(rng).cloned().unwrap_or_default();
            let (i, g, n) = (
                pick(&a.instances, &mut rng),
                pick(&a.groups, &mut rng),
                pick(&a.interfaces, &mut rng),
            );
            let (rule, list, ports) = (
                pick(&a.rules, &mut rng),
                pick(&a.prefix_lists, &mut rng),
                pick(&a.port_range_lists, &mut rng),
            );
            let vsw = pick(&a.vswitches, &mut rng);
            let command: Vec<(&str, String)> = match rng.random_range(0..14) {
                12 => vec![
                    ("Action", "CreateNetworkInterface".into()),
                    ("VSwitchId", vsw),
                    ("SecurityGroupId", g),
                ],
                0 => vec![
                    ("Action", "JoinSecurityGroup".into()),
                    ("InstanceId", i),
                    ("SecurityGroupId", g),
                ],
                1 => vec![
                    ("Action", "LeaveSecurityGroup".into()),
                    ("InstanceId", i),
                    ("SecurityGroupId", g),
                ],
                2 => vec![
                    ("Action", "RevokeSecurityGroup".into()),
                    ("SecurityGroupId", g),
                    ("SecurityGroupRuleId.1", rule),
                ],
                3 => vec![
                    ("Action", "AttachNetworkInterface".into()),
                    ("NetworkInterfaceId", n),
                    ("InstanceId", i),
                ],
                4 => vec![
                    ("Action", "DetachNetworkInterface".into()),
                    ("NetworkInterfaceId", n),
                    ("InstanceId", i),
                ],
                5 => vec![
                    ("Action", "AssignPrivateIpAddresses".into()),
                    ("NetworkInterfaceId", n),
                    ("SecondaryPrivateIpAddressCount", "1".into()),
                ],
                6 => vec![
                    ("Action", "ModifyPrefixList".into()),
                    ("PrefixListId", list),
                    ("AddEntry.1.Cidr", format!("10.{}.0.0/16", 100 + step)),
                ],
                7 => vec![
                    ("Action", "ModifyPortRangeList".into()),
                    ("PortRangeListId", ports),
                    (
                        "AddEntry.1.PortRange",
                        format!("{}/{}", 9000 + step, 9000 + step),
                    ),
                ],
                8 => vec![
                    ("Action", "DeleteInstance".into()),
                    ("InstanceId", i),
                    ("Force", "true".into()),
                ],
                9 => vec![
                    ("Action", "ModifySecurityGroupPolicy".into()),
                    ("SecurityGroupId", g),
                    ("InnerAccessPolicy", "Drop".into()),
                ],
                10 => vec![
                    ("Action", "DeleteNetworkInterface".into()),
                    ("NetworkInterfaceId", n),
                ],
                _ => vec![
                    ("Action", "AuthorizeSecurityGroup".into()),
                    ("SecurityGroupId", g),
                    ("IpProtocol", "tcp".into()),
                    ("PortRange", "1/65535".into()),
                    ("SourcePrefixListId", list),
                ],
            };
            let borrowed: Vec<(&str, &str)> =
                command.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = common::call(&app, &common::signed(&borrowed)).await;
            if let Some(n) = body["NetworkInterfaceId"].as_str() {
                a.interfaces.push(n.to_string());
            }
            if status.is_success() {
                *done.entry(command[0].1.clone()).or_insert(0) += 1;
            }
            // Every other step two commands at once: the log since then names both.
            if step % 2 == 1 {
                check(&format!("{command:?}"));
                for (c, (share, at)) in accounts.iter().zip(&mut shares) {
                    let (touched, now, revision) = control
                        .read(c, |tx| {
                            Ok((
                                tx.share_touched(share, *at)?,
                                tx.account_policy()?,
                                tx.revision()?,
                            ))
                        })
                        .unwrap();
                    if !touched {
                        assert_eq!(
                            *share, now,
                            "seed {seed}: {command:?} moved {}'s share unseen",
                            c.account
                        );
                        kept_shares += 1;
                    } else {
                        touched_shares += 1;
                    }
                    (*share, *at) = (now, revision);
                }
            }
        }
        eprintln!(
            "seed {seed}: done {done:?}, shares kept {kept_shares}, touched {touched_shares}"
        );
        assert!(
            kept_shares > 5 && touched_shares > 5,
            "seed {seed}: shares kept {kept_shares}, touched {touched_shares}"
        );
        assert!(done.len() >= 6, "seed {seed}: only {done:?} succeeded");
    }
}
