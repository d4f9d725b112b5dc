//! Audit scenarios: for each check, a policy that triggers it, one that does not, and where
//! it applies, one where shadowing makes the rule compliant.

mod common;

use common::World;
use policy::audit::{audit, AuditConfig, Severity};
use policy::State;

fn findings(w: &World) -> Vec<(String, String, Option<String>)> {
    let state = State::from_snapshot(&w.snapshot).unwrap();
    audit(&state, &AuditConfig::default())
        .into_iter()
        .map(|f| {
            (
                f.check.to_string(),
                f.group.to_string(),
                f.rule.map(|r| r.to_string()),
            )
        })
        .collect()
}

fn has(w: &World, check: &str, rule: Option<&str>) -> bool {
    findings(w)
        .iter()
        .any(|(c, _, r)| c == check && r.as_deref() == rule)
}

fn used_group(w: &mut World, g: &str) {
    let n = w.snapshot.instances.len();
    w.vpc_instance(&format!("i-user{n}"), &format!("198.18.9.{}", n + 1), &[g]);
}

#[test]
fn ssh_open_to_the_internet_is_a_high_finding_once_a_member_has_a_public_address() {
    let mut w = World::new();
    w.group("sg-a");
    used_group(&mut w, "sg-a");
    let r = w.rule("sg-a", "in accept 1 tcp 22/22 peer=0.0.0.0/0");
    assert!(has(&w, "risky-port-open", Some(&r)));
    // No member has a public address: nothing on the internet reaches it yet.
    let first = |w: &World| {
        let state = State::from_snapshot(&w.snapshot).unwrap();
        let f = audit(&state, &AuditConfig::default()).remove(0);
        (f.severity, f.message)
    };
    let (severity, message) = first(&w);
    assert_eq!(severity, Severity::Medium);
    assert!(
        message.contains("no member has a public address"),
        "{message}"
    );
    // A member with one (its VPC carries the address to it): exposed now.
    w.instance(
        "i-pub",
        Some("vpc-1"),
        "198.18.9.90",
        None,
        Some("198.19.0.90"),
        &["sg-a"],
    );
    let (severity, message) = first(&w);
    assert_eq!(severity, Severity::High);
    assert!(!message.contains("public address"), "{message}");
}

#[test]
fn a_higher_priority_drop_makes_the_risky_port_compliant() {
    let mut w = World::new();
    w.group("sg-a");
    used_group(&mut w, "sg-a");
    w.rule("sg-a", "in drop 1 tcp 22/22 peer=0.0.0.0/0");
    let r = w.rule("sg-a", "in accept 5 tcp 1/1024 peer=0.0.0.0/0");
    assert!(!has(&w, "risky-port-open", Some(&r)));
}

#[test]
fn a_drop_covering_only_part_of_the_internet_does_not() {
    let mut w = World::new();
    w.group("sg-a");
    used_group(&mut w, "sg-a");
    w.rule("sg-a", "in drop 1 tcp 22/22 peer=0.0.0.0/1");
    let r = w.rule("sg-a", "in accept 5 tcp 22/22 peer=0.0.0.0/0");
    assert!(has(&w, "risky-port-open", Some(&r)));
}

#[test]
fn a_narrow_source_is_not_a_risky_port_finding() {
    let mut w = World::new();
    w.group("sg-a");
    used_group(&mut w, "sg-a");
    let r = w.rule("sg-a", "in accept 1 tcp 22/22 peer=203.0.113.0/24");
    assert!(!has(&w, "risky-port-open", Some(&r)));
}

#[test]
fn all_ports_and_all_protocols() {
    let mut w = World::new();
    w.group("sg-a").group("sg-b").group("sg-c");
    for g in ["sg-a", "sg-b", "sg-c"] {
        used_group(&mut w, g);
    }
    let tcp = w.rule("sg-a", "in accept 1 tcp 1/65535 peer=0.0.0.0/0");
    let all = w.rule("sg-b", "in accept 1 all -1/-1 peer=0.0.0.0/0");
    w.rule("sg-c", "in drop 1 all -1/-1 peer=0.0.0.0/0");
    let covered = w.rule("sg-c", "in accept 2 tcp 1/65535 peer=0.0.0.0/0");
    assert!(has(&w, "all-ports-open", Some(&tcp)));
    assert!(has(&w, "all-protocols-open", Some(&all)));
    assert!(
        !has(&w, "all-ports-open", Some(&covered)),
        "shadowed by the drop"
    );
    assert!(has(&w, "shadowed-rule", Some(&covered)));
}

#[test]
fn internal_rules_with_wide_blocks() {
    let mut w = World::new();
    w.group("sg-a");
    used_group(&mut w, "sg-a");
    let ten = w.rule("sg-a", "in accept 1 tcp 8080/8080 peer=10.0.0.0/8");
    let narrow = w.rule("sg-a", "in accept 1 tcp 8081/8081 peer=10.1.2.0/24");
    assert!(has(&w, "internal-rule-too-wide", Some(&ten)));
    assert!(!has(&w, "internal-rule-too-wide", Some(&narrow)));
    // A VPC rule for 0.0.0.0/0 publishes a service; a classic intranet one opens the
    // internal interface to everyone.
    let web = w.rule("sg-a", "in accept 1 tcp 80/80 peer=0.0.0.0/0");
    assert!(!has(&w, "internal-rule-too-wide", Some(&web)));
    let mut c = World::new();
    c.group_with(
        "sg-c",
        model::GroupType::Normal,
        None,
        model::InnerAccessPolicy::Accept,
    );
    c.classic_instance("i-c", "10.0.0.1", None, &["sg-c"]);
    let open = c.rule("sg-c", "in accept 1 tcp 80/80 peer=0.0.0.0/0 nic=intranet");
    let public = c.rule("sg-c", "in accept 1 tcp 81/81 peer=0.0.0.0/0 nic=internet");
    assert!(has(&c, "internal-rule-too-wide", Some(&open)));
    assert!(!has(&c, "internal-rule-too-wide", Some(&public)));
}

#[test]
fn cidr_rules_covering_instances_should_be_group_references() {
    let mut w = World::new();
    w.group("sg-a").group("sg-b");
    w.vpc_instance("i-a", "198.18.1.5", &["sg-a"]);
    w.vpc_instance("i-b", "198.18.2.5", &["sg-b"]);
    let r = w.rule("sg-b", "in accept 1 tcp 5432/5432 peer=198.18.1.0/24");
    let other = w.rule("sg-b", "in accept 1 tcp 5433/5433 peer=192.0.2.0/24");
    assert!(has(&w, "cidr-instead-of-group", Some(&r)));
    assert!(!has(&w, "cidr-instead-of-group", Some(&other)));
}

#[test]
fn shadowed_and_duplicate_rules() {
    let mut w = World::new();
    w.group("sg-a");
    used_group(&mut w, "sg-a");
    w.rule("sg-a", "in accept 1 tcp 1/1000 peer=10.0.0.0/8");
    let dead = w.rule("sg-a", "in drop 50 tcp 22/22 peer=10.1.0.0/16");
    let alive = w.rule("sg-a", "in drop 50 tcp 2000/2000 peer=10.1.0.0/16");
    assert!(
        has(&w, "shadowed-rule", Some(&dead)),
        "a narrow drop below a wide accept is dead"
    );
    assert!(!has(&w, "shadowed-rule", Some(&alive)));
    // A drop at the same priority as an accept wins; the accept is dead where they overlap
    // fully.
    let mut w = World::new();
    w.group("sg-a");
    used_group(&mut w, "sg-a");
    w.rule("sg-a", "in drop 5 tcp 80/80 peer=0.0.0.0/0");
    let tied = w.rule("sg-a", "in accept 5 tcp 80/80 peer=198.51.100.0/24");
    assert!(has(&w, "shadowed-rule", Some(&tied)));
}

#[test]
fn unused_groups() {
    let mut w = World::new();
    w.group("sg-used").group("sg-referenced").group("sg-idle");
    used_group(&mut w, "sg-used");
    w.rule("sg-used", "in accept 1 tcp 1/2 peer=sg-referenced");
    let f = findings(&w);
    assert!(f
        .iter()
        .any(|(c, g, _)| c == "unused-group" && g == "sg-idle"));
    assert!(!f
        .iter()
        .any(|(c, g, _)| c == "unused-group" && g != "sg-idle"));
}

#[test]
fn closeness_to_limits() {
    let mut w = World::new();
    w.group("sg-full");
    used_group(&mut w, "sg-full");
    for port in 1..=160 {
        w.rule(
            "sg-full",
            &format!("in accept 1 tcp {port}/{port} peer=192.0.2.0/24"),
        );
    }
    assert!(has(&w, "near-rule-limit", None));
    std::sync::Arc::make_mut(&mut w.snapshot.groups[0].permissions).truncate(150);
    assert!(!has(&w, "near-rule-limit", None));
}

#[test]
fn one_group_for_most_instances() {
    let mut w = World::new();
    w.group("sg-all").group("sg-other");
    for i in 0..9 {
        w.vpc_instance(
            &format!("i-n{i}"),
            &format!("198.18.0.{}", i + 1),
            &["sg-all"],
        );
    }
    w.vpc_instance("i-odd", "198.18.0.99", &["sg-other"]);
    assert!(findings(&w)
        .iter()
        .any(|(c, g, _)| c == "one-group-for-most-instances" && g == "sg-all"));
}

#[test]
fn groups_need_a_name_and_a_description_or_tags() {
    use policy::audit::GroupLabel;
    let mut w = World::new();
    w.group("sg-a").group("sg-b").group("sg-c");
    for g in ["sg-a", "sg-b", "sg-c"] {
        used_group(&mut w, g);
    }
    let state = State::from_snapshot(&w.snapshot).unwrap();
    let mut cfg = AuditConfig::default();
    let label = |name: &str, description: &str, tags| GroupLabel {
        name: name.into(),
        description: description.into(),
        tags,
    };
    cfg.labels.insert(
        "sg-a".parse().unwrap(),
        label("web", "public web servers", 0),
    );
    cfg.labels
        .insert("sg-b".parse().unwrap(), label("db", "", 2));
    cfg.labels.insert("sg-c".parse().unwrap(), label("", "", 0));
    let flagged: Vec<String> = audit(&state, &cfg)
        .into_iter()
        .filter(|f| f.check == policy::audit::Check::UnlabelledGroup)
        .map(|f| f.group.to_string())
        .collect();
    assert_eq!(flagged, ["sg-c"]);
}

#[test]
fn planned_leaves_that_take_an_instance_out_of_every_group() {
    let mut w = World::new();
    w.group("sg-a").group("sg-b");
    w.vpc_instance("i-two", "198.18.0.1", &["sg-a", "sg-b"]);
    w.vpc_instance("i-one", "198.18.0.2", &["sg-a"]);
    let state = State::from_snapshot(&w.snapshot).unwrap();
    let plan = |leaves: &[(&str, &str)]| {
        let cfg = AuditConfig {
            planned_leaves: leaves
                .iter()
                .map(|(i, g)| (i.parse().unwrap(), g.parse().unwrap()))
                .collect(),
            ..AuditConfig::default()
        };
        audit(&state, &cfg)
            .into_iter()
            .filter(|f| f.check == policy::audit::Check::LeaveRemovesLastGroup)
            .map(|f| f.message)
            .collect::<Vec<_>>()
    };
    assert!(plan(&[("i-two", "sg-a")]).is_empty(), "one group remains");
    assert_eq!(plan(&[("i-two", "sg-a"), ("i-two", "sg-b")]).len(), 1);
    assert_eq!(plan(&[("i-one", "sg-a")]).len(), 1);
    assert_eq!(
        audit(&state, &AuditConfig::default())
            .iter()
            .filter(|f| f.severity == Severity::High)
            .count(),
        0
    );
}

#[test]
fn the_internet_part_of_source_blocks() {
    use policy::exposure::internet_part;
    let nets = |s: &[&str]| {
        s.iter()
            .map(|n| n.parse().unwrap())
            .collect::<Vec<ipnet::IpNet>>()
    };
    assert!(internet_part(&nets(&["10.0.0.0/8", "192.168.1.0/24", "198.18.0.0/15"])).is_empty());
    assert_eq!(
        internet_part(&nets(&["203.0.113.0/24"])),
        nets(&["203.0.113.0/24"])
    );
    let all = internet_part(&nets(&["0.0.0.0/0"]));
    assert!(all.contains(&"8.0.0.0/7".parse().unwrap()), "{all:?}");
    assert!(!all
        .iter()
        .any(|n| n.contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap())));
    assert!(all
        .iter()
        .any(|n| n.contains(&"1.1.1.1".parse::<std::net::IpAddr>().unwrap())));
}

#[test]
fn traffic_decides_what_is_unused_once_counted_long_enough() {
    use policy::audit::RuleUsage;
    let mut w = World::new();
    w.group("sg-a").group("sg-idle").group("sg-empty");
    used_group(&mut w, "sg-a");
    used_group(&mut w, "sg-idle");
    let busy = w.rule("sg-a", "in accept 1 tcp 22/22 peer=10.0.0.0/8");
    let quiet = w.rule("sg-a", "in accept 1 tcp 23/23 peer=10.0.0.0/8");
    let state = State::from_snapshot(&w.snapshot).unwrap();
    let day = 86_400;
    let run = |usage: RuleUsage| {
        let cfg = AuditConfig {
            usage: Some(usage),
            ..AuditConfig::default()
        };
        let mut got: Vec<(String, String, Option<String>)> = audit(&state, &cfg)
            .into_iter()
            .filter(|f| f.check.as_str().starts_with("unused"))
            .map(|f| {
                (
                    f.check.to_string(),
                    f.group.to_string(),
                    f.rule.map(|r| r.to_string()),
                )
            })
            .collect();
        got.sort();
        got
    };
    let counted = |observed: u64| RuleUsage {
        window: 30 * day,
        rules: [
            (busy.parse().unwrap(), (observed, Some(day))),
            (quiet.parse().unwrap(), (observed, None)),
        ]
        .into(),
        groups: [
            ("sg-a".parse().unwrap(), (observed, None)),
            ("sg-idle".parse().unwrap(), (observed, None)),
            ("sg-empty".parse().unwrap(), (observed, None)),
        ]
        .into(),
    };
    let s = |v: &str| v.to_string();
    assert_eq!(
        run(counted(40 * day)),
        vec![
            (s("unused-group"), s("sg-empty"), None),
            (s("unused-group"), s("sg-idle"), None),
            (s("unused-rule"), s("sg-a"), Some(quiet.clone())),
        ],
        "the rule no flow used, the group with a member none of whose decisions came, and \
         the group without members; not the group whose rule decided a flow yesterday"
    );
    assert_eq!(
        run(counted(2 * day)),
        vec![(s("unused-group"), s("sg-empty"), None)],
        "counted for two days of a thirty-day window: nothing is called unused by traffic"
    );
}
