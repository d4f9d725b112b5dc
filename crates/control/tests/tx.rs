//! Table tests of the control plane's commands, run directly on `Control` and `Tx` against
//! the embedded SQLite store and, when `STOCKADE_TEST_DATABASE_URL` names one (as
//! `scripts/test` does), against PostgreSQL: limits, references, dependency checks, the
//! change log and `ClientToken`s. Every case runs in an account of its own, so the cases
//! share one store without seeing each other.

use control::{
    ClientToken, Control, ControlError, CreateGroup, CreateInstances, Ctx, Limits, Result, Revoke,
    Tx,
};
use model::{Direction, GroupType, PermissionFields, RuleSpec, SecurityGroupId, VSwitchId, VpcId};
use serde_json::json;

/// The master key of the PostgreSQL runs (replicas share one).
fn test_key() -> control::MasterKey {
    control::MasterKey::from_hex(&"5a".repeat(32)).unwrap()
}

/// Small limits, so the cases reach them in a few commands.
fn limits() -> Limits {
    Limits {
        rules_per_group: 3,
        group_rules_per_group: 1,
        groups_per_region: 6,
        vpcs_per_region: 3,
        interfaces_per_region: 6,
        interfaces_per_instance: 2,
        secondary_addresses_per_interface: 2,
        prefixes_per_interface: 2,
        prefix_lists_per_region: 2,
        port_range_lists_per_region: 2,
    }
}

/// A fresh account in `cn-hangzhou`.
fn account(control: &Control) -> Ctx {
    let name = format!("tx-{}", uuid_like());
    let creds = control.create_account(&name, None).expect("account");
    Ctx {
        account: creds.account_id,
        region: "cn-hangzhou".into(),
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos()
    )
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn write<T>(control: &Control, ctx: &Ctx, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
    let mut out = None;
    control.write(ctx, None, |tx| {
        out = Some(f(tx)?);
        Ok(json!({}))
    })?;
    Ok(out.expect("ran"))
}

fn tcp(port: u16, source: &str) -> RuleSpec {
    PermissionFields {
        ip_protocol: Some("tcp".into()),
        port_range: Some(format!("{port}/{port}")),
        source_cidr_ip: Some(source.into()),
        ..Default::default()
    }
    .spec(Direction::Ingress)
    .expect("valid rule")
}

fn from_group(group: &SecurityGroupId) -> RuleSpec {
    PermissionFields {
        ip_protocol: Some("all".into()),
        group_id: Some(group.to_string()),
        ..Default::default()
    }
    .spec(Direction::Ingress)
    .expect("valid rule")
}

fn group(control: &Control, ctx: &Ctx, vpc: Option<&VpcId>, kind: GroupType) -> SecurityGroupId {
    write(control, ctx, |tx| {
        tx.create_group(CreateGroup {
            name: "g".into(),
            group_type: kind,
            vpc_id: vpc.cloned(),
            ..Default::default()
        })
    })
    .expect("group")
}

fn network(control: &Control, ctx: &Ctx) -> (VpcId, VSwitchId) {
    write(control, ctx, |tx| {
        let vpc = tx.create_vpc("v", "", "10.0.0.0/16".parse().unwrap(), true)?;
        let vsw = tx.create_vswitch(
            &vpc,
            "cn-hangzhou-h",
            "10.0.1.0/24".parse().unwrap(),
            Some(3),
            "s",
            "",
        )?;
        Ok((vpc, vsw))
    })
    .expect("network")
}

fn instance(
    control: &Control,
    ctx: &Ctx,
    vswitch: &VSwitchId,
    groups: &[SecurityGroupId],
) -> model::InstanceId {
    write(control, ctx, |tx| {
        tx.create_instances(&CreateInstances {
            amount: 1,
            vswitch_id: Some(vswitch.clone()),
            zone_id: None,
            security_groups: groups.to_vec(),
            private_ip: None,
            public_ip: false,
            ipv6: Some(control::Ipv6Request::Any),
            names: Vec::new(),
            description: String::new(),
            image_id: "img".into(),
            instance_type: "ecs.t".into(),
            user_data: String::new(),
            system_disk: Default::default(),
            host_names: Vec::new(),
            resource_group_id: None,
            running: true,
            options: Default::default(),
        })
    })
    .expect("instance")
    .remove(0)
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> String {
    use model::EcsError;
    r.expect_err("refused").code().into_owned()
}

/// Rules per group: a request that would pass the limit adds nothing; duplicates are
/// no-ops that do not count.
fn rule_limits(control: &Control) {
    let ctx = account(control);
    let g = group(control, &ctx, None, GroupType::Normal);
    let add = |rules: Vec<RuleSpec>| write(control, &ctx, |tx| tx.authorize(&g, &rules));
    add(vec![tcp(22, "10.0.0.0/8"), tcp(80, "10.0.0.0/8")]).unwrap();
    assert_eq!(
        code(add(vec![tcp(443, "10.0.0.0/8"), tcp(8080, "10.0.0.0/8")])),
        "AuthorizationLimitExceed"
    );
    add(vec![tcp(22, "10.0.0.0/8"), tcp(443, "10.0.0.0/8")]).unwrap();
    let count = control
        .read(&ctx, |tx| tx.rules(&tx.group(&g)?))
        .unwrap()
        .len();
    assert_eq!(count, 3, "the repeated rule was not added again");
    assert_eq!(
        code(add(vec![tcp(1, "10.0.0.0/8"), tcp(1, "10.0.0.0/8")])),
        "InvalidParam.DuplicatePermissions"
    );
}

/// Group-reference rules per basic group, and the group quota per region.
fn group_limits(control: &Control) {
    let ctx = account(control);
    let a = group(control, &ctx, None, GroupType::Normal);
    let b = group(control, &ctx, None, GroupType::Normal);
    let c = group(control, &ctx, None, GroupType::Normal);
    write(control, &ctx, |tx| tx.authorize(&a, &[from_group(&b)])).unwrap();
    assert_eq!(
        code(write(control, &ctx, |tx| tx.authorize(&a, &[from_group(&c)]))),
        "AuthorizedGroupRule.LimitExceed"
    );
    for _ in 3..6 {
        group(control, &ctx, None, GroupType::Normal);
    }
    let seventh = write(control, &ctx, |tx| tx.create_group(CreateGroup::default()));
    assert_eq!(code(seventh), "QuotaExceed.SecurityGroup");
}

/// References: to a missing group, across VPCs, from and to enterprise groups, and from
/// another account without naming its owner (indistinguishable from a missing group).
fn references(control: &Control) {
    let ctx = account(control);
    let (vpc1, _) = network(control, &ctx);
    let (vpc2, _) = network(control, &ctx);
    let a = group(control, &ctx, Some(&vpc1), GroupType::Normal);
    let other_vpc = group(control, &ctx, Some(&vpc2), GroupType::Normal);
    let enterprise = group(control, &ctx, Some(&vpc1), GroupType::Enterprise);
    let missing: SecurityGroupId = "sg-doesnotexist0000001".parse().unwrap();
    let refer = |from: &SecurityGroupId, to: &SecurityGroupId| {
        write(control, &ctx, |tx| tx.authorize(from, &[from_group(to)]))
    };
    assert_eq!(code(refer(&a, &missing)), "InvalidSourceGroupId.NotFound");
    assert_eq!(code(refer(&a, &other_vpc)), "InvalidSourceGroupId.Mismatch");
    assert_eq!(
        code(refer(&a, &enterprise)),
        "InvalidGroupAuthParameter.OperationDenied"
    );
    assert_eq!(
        code(refer(&enterprise, &a)),
        "InvalidGroupAuthParameter.OperationDenied"
    );
    let stranger = account(control);
    let theirs = group(control, &stranger, None, GroupType::Normal);
    assert_eq!(code(refer(&a, &theirs)), "InvalidSourceGroupId.NotFound");
    assert_eq!(
        code(control.read(&stranger, |tx| tx.group(&a))),
        "InvalidSecurityGroupId.NotFound",
        "another account's group does not exist for this one"
    );
    refer(&a, &a).expect("a rule may reference its own group");
}

/// Dependency checks: a group with members or referenced by another cannot be deleted; a
/// VPC with vSwitches cannot; the last group of an instance cannot be left.
fn dependencies(control: &Control) {
    let ctx = account(control);
    let (vpc, vsw) = network(control, &ctx);
    let a = group(control, &ctx, Some(&vpc), GroupType::Normal);
    let b = group(control, &ctx, Some(&vpc), GroupType::Normal);
    let i = instance(control, &ctx, &vsw, std::slice::from_ref(&a));
    assert_eq!(
        code(write(control, &ctx, |tx| tx.delete_group(&a))),
        "DependencyViolation"
    );
    assert_eq!(
        code(write(control, &ctx, |tx| tx.leave(&i, &a))),
        "InstanceLastSecurityGroup"
    );
    write(control, &ctx, |tx| tx.authorize(&b, &[from_group(&a)])).unwrap();
    write(control, &ctx, |tx| tx.join(&i, &b)).unwrap();
    write(control, &ctx, |tx| tx.leave(&i, &a)).unwrap();
    assert_eq!(
        code(write(control, &ctx, |tx| tx.delete_group(&a))),
        "DependencyViolation"
    );
    write(control, &ctx, |tx| {
        tx.revoke(
            &b,
            Direction::Ingress,
            &Revoke::ByFields(vec![from_group(&a)]),
        )
    })
    .unwrap();
    write(control, &ctx, |tx| tx.delete_group(&a)).expect("unreferenced and empty");
    assert_eq!(
        code(write(control, &ctx, |tx| tx.delete_vpc(&vpc))),
        "DependencyViolation"
    );
}

/// Every committed command moves the change log; a refused one and a dry run leave it.
fn change_log(control: &Control) {
    let ctx = account(control);
    let g = group(control, &ctx, None, GroupType::Normal);
    let at = || control.read(&ctx, |tx| tx.revision()).unwrap();
    let before = at();
    write(control, &ctx, |tx| {
        tx.authorize(&g, &[tcp(22, "10.0.0.0/8")])
    })
    .unwrap();
    let after = at();
    assert!(after > before, "a commit appends to the log");
    let refused = write(control, &ctx, |tx| {
        tx.authorize(&g, &[tcp(23, "10.0.0.0/8")])?;
        tx.delete_group(&"sg-doesnotexist0000001".parse().unwrap())
    });
    assert_eq!(code(refused), "InvalidSecurityGroupId.NotFound");
    control
        .dry_run(&ctx, |tx| tx.authorize(&g, &[tcp(24, "10.0.0.0/8")]))
        .unwrap();
    let rules = control.read(&ctx, |tx| tx.rules(&tx.group(&g)?)).unwrap();
    assert_eq!(
        rules.len(),
        1,
        "neither the refused command nor the dry run left a rule"
    );
    // Nothing else writes to this store meanwhile (one test per store).
    assert_eq!(at(), after, "neither moved the change log");
    // A command that logs nothing of its own (a rename) still moves the revision, which
    // the read cache and the agents key on.
    control.write(&ctx, None, |_| Ok(json!({}))).unwrap();
    assert!(at() > after, "every committed write moves the change log");
}

/// A `ClientToken` makes a retry return the first answer without running again; the same
/// token with other parameters is refused.
fn client_tokens(control: &Control) {
    let ctx = account(control);
    let token = |fingerprint: &str| ClientToken {
        token: "t-1".into(),
        fingerprint: fingerprint.into(),
    };
    let create = |fingerprint: &str| {
        control.write(&ctx, Some(&token(fingerprint)), |tx| {
            let id = tx.create_group(CreateGroup::default())?;
            Ok(json!({"SecurityGroupId": id.to_string()}))
        })
    };
    let first = create("CreateSecurityGroup&a=1").unwrap();
    let again = create("CreateSecurityGroup&a=1").unwrap();
    assert_eq!(first, again);
    let groups = control
        .read(&ctx, |tx| tx.find_groups(&Default::default()))
        .unwrap();
    assert_eq!(groups.len(), 1, "the retry created nothing");
    assert_eq!(
        code(create("CreateSecurityGroup&a=2")),
        "IdempotentParameterMismatch"
    );
    let stranger = account(control);
    let theirs = control
        .write(&stranger, Some(&token("CreateSecurityGroup&a=2")), |tx| {
            let id = tx.create_group(CreateGroup::default())?;
            Ok(json!({"SecurityGroupId": id.to_string()}))
        })
        .expect("tokens are per account");
    assert_ne!(theirs, first);
}

/// Groups per instance: at most five, never the same one twice, never a basic and an
/// enterprise group together.
fn instance_groups(control: &Control) {
    let ctx = account(control);
    let (vpc, vsw) = network(control, &ctx);
    let groups: Vec<SecurityGroupId> = (0..6)
        .map(|_| group(control, &ctx, Some(&vpc), GroupType::Normal))
        .collect();
    let i = instance(control, &ctx, &vsw, &groups[..4]);
    let err = write(control, &ctx, |tx| tx.join(&i, &groups[0]));
    assert!(matches!(err, Err(ControlError::AlreadyMember)));
    write(control, &ctx, |tx| tx.join(&i, &groups[4])).unwrap();
    assert_eq!(
        code(write(control, &ctx, |tx| tx.join(&i, &groups[5]))),
        "InstanceSecurityGroupLimitExceeded"
    );
    let other = account(control);
    let (vpc, vsw) = network(control, &other);
    let basic = group(control, &other, Some(&vpc), GroupType::Normal);
    let enterprise = group(control, &other, Some(&vpc), GroupType::Enterprise);
    let j = instance(control, &other, &vsw, &[basic]);
    assert_eq!(
        code(write(control, &other, |tx| tx.join(&j, &enterprise))),
        "InvalidSecurityGroupType.Mismatch"
    );
}

/// IPv6 blocks: a /56 per VPC from the benchmarking range, drawn per account (so equal
/// across accounts, never within one); a vSwitch's /64 by index; interface addresses from
/// it, unique in the VPC; and network interfaces hold the IPv4 addresses instances check.
fn ipv6_and_interfaces(control: &Control) {
    let (a, b) = (account(control), account(control));
    let (vpc_a, vsw_a) = network(control, &a);
    let (vpc_b, _) = network(control, &b);
    let block = |ctx: &Ctx, vpc: &VpcId| {
        write(control, ctx, |tx| Ok(tx.vpc(vpc)?.ipv6_cidr))
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        block(&a, &vpc_a),
        block(&b, &vpc_b),
        "each account has the whole pool"
    );
    let (vpc_a2, _) = network(control, &a);
    assert_ne!(block(&a, &vpc_a), block(&a, &vpc_a2));
    let g = group(control, &a, Some(&vpc_a), GroupType::Normal);
    let i = instance(control, &a, &vsw_a, std::slice::from_ref(&g));
    let record = write(control, &a, |tx| tx.instance(&i)).unwrap();
    let v6 = record.ipv6.expect("an IPv6 address");
    let sub: ipnet::Ipv6Net = "2001:2:0:3::/64".parse().unwrap();
    assert!(sub.contains(&v6), "{v6} in the vSwitch's /64 (index 3)");
    assert_eq!(record.network_interfaces[0].ipv6, Some(v6));
    let again = write(control, &a, |tx| {
        tx.create_instances(&CreateInstances {
            amount: 1,
            vswitch_id: Some(vsw_a.clone()),
            zone_id: None,
            security_groups: vec![g.clone()],
            private_ip: None,
            public_ip: false,
            ipv6: Some(control::Ipv6Request::Address(v6)),
            names: Vec::new(),
            description: String::new(),
            image_id: "img".into(),
            instance_type: "ecs.t".into(),
            user_data: String::new(),
            system_disk: Default::default(),
            host_names: Vec::new(),
            resource_group_id: None,
            running: true,
            options: Default::default(),
        })
    });
    assert_eq!(code(again), "InvalidIpv6Address.Duplicated");
    // An interface of its own takes an address no instance of the VPC holds, and gives it back.
    let eni = write(control, &a, |tx| {
        tx.create_interface(&control::CreateInterface {
            vswitch_id: vsw_a.clone(),
            security_groups: vec![g.clone()],
            private_ip: Some(record.private_ip),
            name: String::new(),
            description: String::new(),
            secondary_ips: Vec::new(),
            secondary_count: 0,
            prefixes: Default::default(),
            source_dest_check: true,
        })
    });
    assert_eq!(code(eni), "InvalidPrivateIpAddress.Duplicated");
    let eni = write(control, &a, |tx| {
        tx.create_interface(&control::CreateInterface {
            vswitch_id: vsw_a.clone(),
            security_groups: vec![g.clone()],
            private_ip: None,
            name: String::new(),
            description: String::new(),
            secondary_ips: Vec::new(),
            secondary_count: 0,
            prefixes: Default::default(),
            source_dest_check: true,
        })
    })
    .unwrap();
    assert_eq!(
        code(write(control, &a, |tx| tx.delete_group(&g))),
        "DependencyViolation"
    );
    write(control, &a, |tx| tx.delete_interface(&eni)).unwrap();
    assert_eq!(
        code(write(control, &b, |tx| tx.interface(&eni).map(drop))),
        "InvalidNetworkInterfaceId.NotFound"
    );
}

/// Per-account quotas on VPCs and interfaces (instances included): one tenant's use never
/// reaches into another's, and a refused creation creates nothing.
fn quotas(control: &Control) {
    let (a, b) = (account(control), account(control));
    for _ in 0..3 {
        network(control, &a);
    }
    let more = write(control, &a, |tx| {
        tx.create_vpc("v", "", "10.9.0.0/16".parse().unwrap(), false)
    });
    assert_eq!(code(more), "QuotaExceeded.Vpc");
    let (vpc, vsw) = network(control, &b);
    let g = group(control, &b, Some(&vpc), GroupType::Normal);
    for _ in 0..6 {
        instance(control, &b, &vsw, std::slice::from_ref(&g));
    }
    let seventh = write(control, &b, |tx| {
        tx.create_interface(&control::CreateInterface {
            vswitch_id: vsw.clone(),
            security_groups: vec![g.clone()],
            private_ip: None,
            name: String::new(),
            description: String::new(),
            secondary_ips: Vec::new(),
            secondary_count: 0,
            prefixes: Default::default(),
            source_dest_check: true,
        })
    });
    assert_eq!(code(seventh), "QuotaExceed.NetworkInterface");
    // The other account is untouched by both: its instances still fit.
    let vsw_a = write(control, &a, |tx| Ok(tx.vswitches(None, None)?.remove(0).id)).unwrap();
    let vpc_a = write(control, &a, |tx| Ok(tx.vswitch(&vsw_a)?.vpc_id)).unwrap();
    let ga = group(control, &a, Some(&vpc_a), GroupType::Normal);
    instance(control, &a, &vsw_a, &[ga]);
    let count = write(control, &b, |tx| {
        Ok(tx.interfaces(&Default::default())?.len())
    })
    .unwrap();
    assert_eq!(count, 6, "the refused creation left nothing behind");
}

/// A named case.
type Case = (&'static str, fn(&Control));

const CASES: &[Case] = &[
    ("rule limits", rule_limits),
    ("group limits", group_limits),
    ("references", references),
    ("dependencies", dependencies),
    ("change log", change_log),
    ("client tokens", client_tokens),
    ("instance groups", instance_groups),
    ("IPv6 and interfaces", ipv6_and_interfaces),
    ("quotas", quotas),
    ("shares", shares),
];

/// An account's share (`Tx::account_policy`) holds its groups, used or not, with their
/// rules, the groups they name and the members of both, and nothing else of the region;
/// its closure at the account's members is the region's.
fn shares(control: &Control) {
    let (a, b) = (account(control), account(control));
    let mut ids = Vec::new();
    for ctx in [&a, &b] {
        let (vpc, vsw) = network(control, ctx);
        let web = group(control, ctx, Some(&vpc), GroupType::Normal);
        let db = group(control, ctx, Some(&vpc), GroupType::Normal);
        let unused = group(control, ctx, Some(&vpc), GroupType::Normal);
        write(control, ctx, |tx| {
            tx.authorize(&db, &[from_group(&web), tcp(5432, "10.0.0.0/8")])
        })
        .unwrap();
        let i = instance(control, ctx, &vsw, std::slice::from_ref(&web));
        let j = instance(control, ctx, &vsw, std::slice::from_ref(&db));
        ids.push((web, db, unused, i, j));
    }
    let share = control.read(&a, |tx| tx.account_policy()).unwrap();
    let region = control.read(&a, |tx| tx.region_snapshot()).unwrap();
    let (web, db, unused, i, j) = &ids[0];
    let groups: Vec<&SecurityGroupId> = share.groups.iter().map(|g| &g.group.id).collect();
    for g in [web, db, unused] {
        assert!(groups.contains(&g), "{g} in {groups:?}");
    }
    assert_eq!(groups.len(), 3, "only the account's groups: {groups:?}");
    let members: std::collections::BTreeSet<model::MemberId> =
        share.instances.iter().map(|m| m.id.clone()).collect();
    assert_eq!(
        members,
        [i.clone().into(), j.clone().into()].into_iter().collect(),
        "only the account's members"
    );
    let sorted = |mut s: policy::Snapshot| {
        s.groups.sort_by(|x, y| x.group.id.cmp(&y.group.id));
        s.instances.sort_by(|x, y| x.id.cmp(&y.id));
        s
    };
    assert_eq!(
        sorted(share.closure(&members)),
        sorted(region.closure(&members))
    );
    // B's write elsewhere leaves A's share untouched; A's own touches it; the region made
    // from the last one by what the log names is the whole read.
    let at = control.read(&a, |tx| tx.revision()).unwrap();
    let (b_web, b_db, _, _, b_j) = &ids[1];
    write(control, &b, |tx| {
        tx.authorize(b_db, &[tcp(6379, "10.0.0.0/8")])
    })
    .unwrap();
    write(control, &b, |tx| tx.join(b_j, b_web)).unwrap();
    assert!(!control.read(&a, |tx| tx.share_touched(&share, at)).unwrap());
    write(control, &a, |tx| {
        tx.authorize(db, &[tcp(6379, "10.0.0.0/8")])
    })
    .unwrap();
    assert!(control.read(&a, |tx| tx.share_touched(&share, at)).unwrap());
    let (made, _) = control
        .read(&a, |tx| tx.region_snapshot_after(&region, at))
        .unwrap()
        .expect("made from the last");
    let whole = control.read(&a, |tx| tx.region_snapshot()).unwrap();
    assert_eq!(sorted(made), sorted(whole));
    // A list no rule names is in no policy the engine takes; named, it is.
    let list = write(control, &a, |tx| {
        tx.create_prefix_list(&control::CreatePrefixList {
            name: "l".into(),
            description: String::new(),
            family: control::AddressFamily::V4,
            max_entries: 2,
            entries: vec![("192.0.2.0/24".parse().unwrap(), String::new())],
        })
    })
    .unwrap();
    let lists = |s: &policy::Snapshot| s.prefix_lists.iter().any(|l| l.id == list);
    assert!(!lists(&control.read(&a, |tx| tx.account_policy()).unwrap()));
    assert!(!lists(
        &control.read(&a, |tx| tx.region_snapshot()).unwrap()
    ));
    let by_list = PermissionFields {
        ip_protocol: Some("tcp".into()),
        port_range: Some("22/22".into()),
        prefix_list_id: Some(list.to_string()),
        ..Default::default()
    }
    .spec(Direction::Ingress)
    .unwrap();
    write(control, &a, |tx| tx.authorize(web, &[by_list])).unwrap();
    assert!(lists(&control.read(&a, |tx| tx.account_policy()).unwrap()));
    assert!(lists(&control.read(&a, |tx| tx.region_snapshot()).unwrap()));
}

fn run_all(control: &Control, backend: &str) {
    for (name, case) in CASES {
        eprintln!("{backend}: {name}");
        case(control);
    }
}

#[test]
fn commands_hold_their_constraints_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::open(dir.path(), limits()).unwrap();
    run_all(&control, "sqlite");
}

#[test]
fn commands_hold_their_constraints_on_postgres() {
    let Ok(url) = std::env::var("STOCKADE_TEST_DATABASE_URL") else {
        eprintln!("STOCKADE_TEST_DATABASE_URL is not set: the PostgreSQL run is scripts/test's");
        return;
    };
    let control = Control::open_postgres(&url, limits(), test_key()).unwrap();
    run_all(&control, "postgres");
}

/// Records a nonce through `first`, then asks through `second()`, opened afresh (after a
/// restart, or another replica).
fn nonce_replayed_through(first: Control, second: impl FnOnce(Control) -> Control) {
    let nonce = format!("n-{}", uuid_like());
    assert!(
        first.remember_nonce("ak", &nonce, 1800).unwrap(),
        "a new nonce"
    );
    assert!(
        !first.remember_nonce("ak", &nonce, 1800).unwrap(),
        "a replay"
    );
    assert!(
        first.remember_nonce("other-ak", &nonce, 1800).unwrap(),
        "nonces are per key"
    );
    let second = second(first);
    assert!(
        !second.remember_nonce("ak", &nonce, 1800).unwrap(),
        "a replay after restart"
    );
}

#[test]
fn nonces_survive_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let first = Control::open(dir.path(), limits()).unwrap();
    nonce_replayed_through(first, |first| {
        drop(first);
        Control::open(dir.path(), limits()).unwrap()
    });
}

#[test]
fn nonces_survive_a_restart_on_postgres() {
    let Ok(url) = std::env::var("STOCKADE_TEST_DATABASE_URL") else {
        return;
    };
    let first = Control::open_postgres(&url, limits(), test_key()).unwrap();
    nonce_replayed_through(first, |first| {
        drop(first);
        Control::open_postgres(&url, limits(), test_key()).unwrap()
    });
}

#[test]
fn secrets_stored_in_plain_text_are_sealed_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::open(dir.path(), limits()).unwrap();
    control
        .create_account("old", Some(("LTAIold".into(), "plainsecret".into())))
        .unwrap();
    drop(control);
    // As a store written before sealing holds it.
    let db = rusqlite::Connection::open(control::database_path(dir.path())).unwrap();
    db.execute(
        "UPDATE access_keys SET secret = 'plainsecret' WHERE id = 'LTAIold'",
        [],
    )
    .unwrap();
    drop(db);
    let control = Control::open(dir.path(), limits()).unwrap();
    assert_eq!(control.access_key("LTAIold").unwrap().1, "plainsecret");
    let db = rusqlite::Connection::open(control::database_path(dir.path())).unwrap();
    let stored: String = db
        .query_row(
            "SELECT secret FROM access_keys WHERE id = 'LTAIold'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!stored.contains("plainsecret"), "{stored}");
}
