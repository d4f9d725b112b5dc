//! Rule hit counts on real packets: probes decided by a rule raise that rule's count and no
//! other, the implicit decisions count too, the totals survive an agent restart and a
//! replacement of the whole table, another account sees none of them, and the audit calls a
//! rule that decides nothing unused.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{skipped, Lab};

/// Flows decided so far, per rule id and per implicit decision, of `group`.
fn counts(lab: &Lab, group: &str) -> BTreeMap<String, u64> {
    let got = lab.call(&[
        ("Action", "DescribeSecurityGroupRuleHits"),
        ("SecurityGroupId", group),
    ]);
    let mut out = BTreeMap::new();
    for r in got["RuleHits"]["RuleHit"].as_array().unwrap() {
        out.insert(
            r["SecurityGroupRuleId"].as_str().unwrap().to_string(),
            r["NewFlows"].as_u64().unwrap(),
        );
    }
    for r in got["ImplicitHits"]["ImplicitHit"].as_array().unwrap() {
        out.insert(
            r["Decision"].as_str().unwrap().to_string(),
            r["NewFlows"].as_u64().unwrap(),
        );
    }
    out
}

/// Waits (up to 15 s: agents read their counters every second) until `group`'s counts are
/// `before` plus `added`, and returns them.
fn grown(
    lab: &Lab,
    group: &str,
    before: &BTreeMap<String, u64>,
    added: &[(&str, u64)],
) -> BTreeMap<String, u64> {
    let mut want = before.clone();
    for (k, n) in added {
        *want.entry(k.to_string()).or_default() += n;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = counts(lab, group);
        if now == want || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The id of the group's rule with this port range.
fn rule_id(lab: &Lab, group: &str, port_range: &str) -> String {
    let attr = lab.call(&[
        ("Action", "DescribeSecurityGroupAttribute"),
        ("SecurityGroupId", group),
    ]);
    attr["Permissions"]["Permission"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["PortRange"] == port_range)
        .map(|p| p["SecurityGroupRuleId"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn rules_count_the_flows_they_decide_on_real_packets() {
    if skipped() {
        return;
    }
    // A0 (h1) to A1 (h2), in the lab's group: 22 accepted and 23 dropped by rules, 80 by
    // the group's intra-group accept (turned on here: the lab's groups start without it;
    // then, with it off again, by the default drop).
    let lab = Lab::up_with_tenants('k', 2, 2, 0, 1);
    let g = lab.default_group("vpc");
    let (a0, a1) = (lab.member(0), lab.member(1));
    assert_eq!(a0.tenant + a1.tenant, 0);
    let from = format!("{}/32", a0.private_ip);
    for (policy, port) in [
        ("accept", "22/22"),
        ("drop", "23/23"),
        ("accept", "9999/9999"),
    ] {
        lab.call(&[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &g),
            ("IpProtocol", "tcp"),
            ("PortRange", port),
            ("Policy", policy),
            ("SourceCidrIp", &from),
        ]);
    }
    lab.call(&[
        ("Action", "ModifySecurityGroupPolicy"),
        ("SecurityGroupId", &g),
        ("InnerAccessPolicy", "Accept"),
    ]);
    lab.wait_applied();
    let (r22, r23, r9999) = (
        rule_id(&lab, &g, "22/22"),
        rule_id(&lab, &g, "23/23"),
        rule_id(&lab, &g, "9999/9999"),
    );
    let probe = |port: u16| lab.probe(Some(0), &a1.private_ip, "tcp", port);
    let before = counts(&lab, &g);
    assert_eq!(
        (before[&r22], before[&r23], before[&r9999]),
        (0, 0, 0),
        "new rules have decided nothing: {before:?}"
    );
    assert_eq!(
        [
            probe(22),
            probe(22),
            probe(22),
            probe(23),
            probe(23),
            probe(80)
        ],
        [true, true, true, false, false, true]
    );
    // Every flow also left A0 by its egress default (no egress rule).
    let after = grown(
        &lab,
        &g,
        &before,
        &[
            (&r22, 3),
            (&r23, 2),
            ("InnerAccessPolicy", 1),
            ("DefaultEgress", 6),
        ],
    );
    let mut want = before.clone();
    for (k, n) in [
        (r22.as_str(), 3),
        (r23.as_str(), 2),
        ("InnerAccessPolicy", 1),
        ("DefaultEgress", 6),
    ] {
        *want.get_mut(k).unwrap() += n;
    }
    assert_eq!(
        after,
        want,
        "each probe counts at the rule that decided it, and only there\n{}",
        lab.tables()
    );
    let detail = lab.call(&[
        ("Action", "DescribeSecurityGroupRuleHits"),
        ("SecurityGroupId", &g),
        ("SecurityGroupRuleId.1", &r22),
    ]);
    let [hit] = detail["RuleHits"]["RuleHit"].as_array().unwrap().as_slice() else {
        panic!("one rule asked for, one answered: {detail}");
    };
    assert!(
        !hit["FirstHitTime"].as_str().unwrap().is_empty()
            && hit["LastHitTime"].as_str().unwrap() >= hit["FirstHitTime"].as_str().unwrap()
            && !detail["CountingSince"].as_str().unwrap().is_empty(),
        "{detail}"
    );

    // Intra-group access off: the same flow now ends at the default drop.
    lab.call(&[
        ("Action", "ModifySecurityGroupPolicy"),
        ("SecurityGroupId", &g),
        ("InnerAccessPolicy", "Drop"),
    ]);
    lab.wait_applied();
    assert!(!probe(80));
    let after = grown(
        &lab,
        &g,
        &after,
        &[("DefaultIngress", 1), ("DefaultEgress", 1)],
    );

    // The agent of h2 restarts, then the table is replaced whole (deleted by hand: drift):
    // the totals stay, and new flows add to them once each.
    let restarted = lab
        .stockade(&["lab", "restart-agent", "--host", "h2"])
        .output()
        .unwrap();
    assert!(restarted.status.success());
    lab.wait_applied();
    assert!(probe(22));
    let after = grown(&lab, &g, &after, &[(&r22, 1), ("DefaultEgress", 1)]);
    assert_eq!(after[&r22], before[&r22] + 4, "{after:?}");
    let h2 = &lab.hosts.iter().find(|(h, _)| h == "h2").unwrap().1;
    let deleted = Command::new("ip")
        .args([
            "netns", "exec", h2, "nft", "delete", "table", "inet", "stockade",
        ])
        .status()
        .unwrap();
    assert!(deleted.success());
    // The agent notices within its reconcile interval and puts the table back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let table_back = || {
        Command::new("ip")
            .args([
                "netns", "exec", h2, "nft", "list", "chain", "inet", "stockade", "forward",
            ])
            .output()
            .unwrap()
            .status
            .success()
    };
    while !table_back() {
        assert!(Instant::now() < deadline, "the table came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(probe(22));
    let after = grown(&lab, &g, &after, &[(&r22, 1), ("DefaultEgress", 1)]);
    assert_eq!(after[&r22], before[&r22] + 5, "{after:?}");

    // Another account sees none of it, and its own group counted nothing of A's traffic.
    let b = &lab.tenants[0];
    let theirs = lab.try_call_as(
        b,
        &[
            ("Action", "DescribeSecurityGroupRuleHits"),
            ("SecurityGroupId", &g),
        ],
    );
    assert_eq!(
        theirs.unwrap_err()["Code"],
        "InvalidSecurityGroupId.NotFound"
    );
    let b_group = lab.lab["Tenants"][0]["SecurityGroupIds"][0]
        .as_str()
        .unwrap();
    let own = lab
        .try_call_as(
            b,
            &[
                ("Action", "DescribeSecurityGroupRuleHits"),
                ("SecurityGroupId", b_group),
            ],
        )
        .unwrap();
    let implicit: Vec<&Value> = own["ImplicitHits"]["ImplicitHit"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert!(
        implicit.iter().all(|h| h["NewFlows"] == 0),
        "B's instances sent and received nothing: {own}"
    );

    // The audit: the rule that never decided a flow is unused once counted for the window;
    // the others decided one within it. A group A1 joins that decides nothing (its flows
    // are all decided by the first group's rules) is unused though it has a member.
    let vpc = lab.vpc_id();
    let idle = lab.call(&[
        ("Action", "CreateSecurityGroup"),
        ("VpcId", &vpc),
        ("SecurityGroupName", "idle"),
    ])["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    lab.call(&[
        ("Action", "JoinSecurityGroup"),
        ("InstanceId", &a1.id),
        ("SecurityGroupId", &idle),
    ]);
    lab.wait_applied();
    std::thread::sleep(Duration::from_secs(3));
    assert!(probe(22) && !probe(23));
    let _ = grown(
        &lab,
        &g,
        &after,
        &[(&r22, 1), (&r23, 1), ("DefaultEgress", 2)],
    );
    let audit = lab.call(&[
        ("Action", "DescribeSecurityGroupAudit"),
        ("SecurityGroupId.1", &g),
        ("SecurityGroupId.2", &idle),
        ("UnusedRuleWindow", "3"),
    ]);
    // What the findings of one check name (their `field`).
    let found = |check: &str, field: &str| -> Vec<String> {
        audit["Findings"]["Finding"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["Check"] == check)
            .map(|f| f[field].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        found("unused-rule", "SecurityGroupRuleId"),
        std::slice::from_ref(&r9999),
        "{audit}"
    );
    assert_eq!(
        found("unused-group", "SecurityGroupId"),
        std::slice::from_ref(&idle),
        "{audit}"
    );
    let fresh = lab.call(&[
        ("Action", "DescribeSecurityGroupAudit"),
        ("SecurityGroupId.1", &g),
    ]);
    assert!(
        !fresh.to_string().contains("unused-rule"),
        "with the default window of 30 days, a lab minutes old calls nothing unused"
    );
}
