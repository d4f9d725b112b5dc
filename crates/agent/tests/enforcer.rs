//! The enforcement loop's decisions, against the in-memory nftables backend.

use agent::feed::{HostPolicy, Placed};
use agent::Enforcer;
use model::NicType;
use netfilter::FakeBackend;
use nft::Attachment;

fn policy(revision: u64, edit: impl FnOnce(&mut policy::Snapshot)) -> HostPolicy {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/policy.json"
    ))
    .unwrap();
    let mut snapshot = policy::document::parse(&text).unwrap();
    edit(&mut snapshot);
    let instances = snapshot
        .instances
        .iter()
        .map(|i| Placed {
            interface: format!("eni-{}", &i.id.as_str()[2..]).parse().unwrap(),
            id: i.id.clone(),
            private_ip: i.private_ip,
            public_ip: i.public_ip,
        })
        .collect();
    HostPolicy {
        revision,
        instances,
        snapshot,
    }
}

fn attachments(p: &HostPolicy) -> Vec<Attachment> {
    p.instances
        .iter()
        .map(|i| Attachment {
            instance: i.id.clone(),
            nic_type: NicType::Intranet,
            interface: format!("v{}", &i.id.as_str()[2..]),
        })
        .collect()
}

fn enforcer(p: HostPolicy) -> Enforcer<FakeBackend> {
    let mut e = Enforcer::new(FakeBackend::default());
    let atts = attachments(&p);
    e.set_policy(p).unwrap();
    e.set_attachments(atts);
    e
}

#[test]
fn nothing_is_applied_before_a_policy_arrives() {
    // A restarted agent leaves the previous run's table in force until it knows better.
    let mut e = Enforcer::new(FakeBackend::default());
    assert!(!e.sync().unwrap().applied);
    assert!(e.backend().applied.is_empty());
}

#[test]
fn first_sync_replaces_the_table_then_changes_are_diffs() {
    // The join below is an element update in either rendering: a member-set element when
    // chains are linear, a class-map element (address → its class's chain) when flat.
    let joined = [
        (
            nft::Rendering::Linear,
            "add element inet stockade g4_sg_db { 198.18.2.22 }",
        ),
        (
            nft::Rendering::Flat,
            "add element inet stockade in_i_sg_db__k4 { 198.18.2.22 : goto in_i_sg_db__",
        ),
    ];
    for (rendering, element) in joined {
        let mut e = enforcer(policy(1, |_| {}));
        e.set_rendering(rendering);
        let first = e.sync().unwrap();
        assert!(first.applied && first.full);
        assert!(e.backend().applied[0].starts_with("table inet stockade {}\ndelete table"));
        // Same policy again: no transaction at all.
        assert!(!e.sync().unwrap().applied);
        assert_eq!(e.backend().applied.len(), 1);
        // i-app2 joins sg-db: a diff, not a replacement.
        e.set_policy(policy(2, |s| {
            let app2 = s
                .instances
                .iter_mut()
                .find(|i| i.id.as_str() == "i-app2")
                .unwrap();
            app2.security_groups.push("sg-db".parse().unwrap());
        }))
        .unwrap();
        let second = e.sync().unwrap();
        assert!(second.applied && !second.full);
        let diff = e.backend().applied[1].clone();
        assert!(diff.contains(element), "{rendering:?}: {diff}");
        assert!(!diff.contains("delete table"), "{diff}");
        assert!(!diff.contains("flush"), "{diff}");
    }
}

#[test]
fn drift_is_repaired_with_a_full_replacement() {
    let mut e = enforcer(policy(1, |_| {}));
    e.sync().unwrap();
    assert!(!e.check_drift().unwrap());
    e.backend().listing = "table inet stockade { }".into(); // flushed by hand
    assert!(e.check_drift().unwrap());
    let repair = e.sync().unwrap();
    assert!(repair.applied && repair.full);
    assert!(!e.check_drift().unwrap());
}

#[test]
fn an_instance_the_kernel_refuses_fails_closed_and_the_rest_is_enforced() {
    let mut e = enforcer(policy(1, |_| {}));
    // The kernel refuses anything that mentions sg-db's chains (as it would a bad rule).
    e.backend().reject = Some("in_i_sg_db".into());
    let outcome = e.sync().unwrap();
    assert!(outcome.applied);
    assert_eq!(
        outcome
            .failed
            .keys()
            .map(|i| i.as_str())
            .collect::<Vec<_>>(),
        ["i-db1"]
    );
    let table = e.backend().applied.last().unwrap().clone();
    assert!(table.contains("\"vdb1\" : drop"), "{table}");
    assert!(table.contains("\"vweb1\" : jump eg_i_sg_web"), "{table}");
    assert!(!table.contains("in_i_sg_db"), "{table}");
}

#[test]
fn an_inconsistent_policy_is_refused_and_the_last_one_kept() {
    let mut e = enforcer(policy(1, |_| {}));
    e.sync().unwrap();
    let broken = policy(2, |s| {
        s.instances[0]
            .security_groups
            .push("sg-missing".parse().unwrap());
    });
    assert!(e.set_policy(broken).is_err());
    assert_eq!(e.revision(), Some(1));
    assert!(!e.sync().unwrap().applied);
}

#[test]
fn membership_changes_update_the_state_as_a_rebuild_would() {
    // Instances join, leave, reorder their groups and disappear; then a forced full
    // replacement must write exactly what a fresh enforcer writes for the final policy.
    let mut e = enforcer(policy(1, |_| {}));
    e.sync().unwrap();
    let last = policy(2, |s| {
        let find = |s: &mut policy::Snapshot, id: &str| {
            s.instances
                .iter()
                .position(|i| i.id.as_str() == id)
                .unwrap()
        };
        let web1 = find(s, "i-web1");
        s.instances[web1].security_groups =
            vec!["sg-app".parse().unwrap(), "sg-web".parse().unwrap()];
        let db1 = find(s, "i-db1");
        s.instances[db1]
            .security_groups
            .push("sg-web".parse().unwrap());
        let app2 = find(s, "i-app2");
        s.instances.remove(app2);
    });
    e.set_policy(last.clone()).unwrap();
    assert!(!e.sync().unwrap().full, "a diff");
    // What the diff was computed for (reusing unchanged chains and sets) is what a fresh
    // rendering of the final policy gives.
    let fresh_state = policy::State::from_snapshot(&last.snapshot).unwrap();
    let atts1 = attachments(&policy(1, |_| {}));
    // (Zones are the enforcer's, not the renderer's: compared without them.)
    let without_zones = e.applied().map(|r| nft::Ruleset {
        zones: nft::Zones::default(),
        ..r.clone()
    });
    assert_eq!(without_zones, Some(nft::render(&fresh_state, &atts1)));
    e.backend().listing = "edited by hand".into();
    assert!(e.check_drift().unwrap());
    e.sync().unwrap();
    let incremental = e.backend().applied.last().unwrap().clone();

    let mut fresh = Enforcer::new(FakeBackend::default());
    let atts = attachments(&policy(1, |_| {}));
    fresh.set_policy(last).unwrap();
    fresh.set_attachments(atts);
    fresh.sync().unwrap();
    assert_eq!(&incremental, fresh.backend().applied.last().unwrap());
}

#[test]
fn a_device_no_bound_interface_explains_gets_no_traffic_either_way() {
    let mut e = enforcer(policy(1, |_| {}));
    e.sync().unwrap();
    // Two devices claim i-app2's interface: the agent cannot tell which is the instance's,
    // so neither is judged by its chains; both are dropped, and the rest stays enforced.
    let app2 = e
        .attachments()
        .iter()
        .find(|a| a.instance.as_str() == "i-app2")
        .unwrap()
        .clone();
    let others: Vec<Attachment> = e
        .attachments()
        .iter()
        .filter(|a| a.instance != app2.instance)
        .cloned()
        .collect();
    e.set_attachments(others);
    e.set_unattributed(vec![
        (app2.interface.clone(), "2 devices are labelled".into()),
        ("vfake".into(), "2 devices are labelled".into()),
    ]);
    let out = e.sync().unwrap();
    assert!(out.applied && !out.full);
    let applied = e.applied().unwrap();
    for device in [app2.interface.as_str(), "vfake"] {
        let key = format!("\"{device}\"");
        assert_eq!(applied.egress[&key], nft::Verdict::Drop);
        assert_eq!(applied.ingress[&key], nft::Verdict::Drop);
    }
    assert_eq!(applied.isolated.len(), 2);
    assert!(applied
        .egress
        .iter()
        .any(|(_, v)| matches!(v, nft::Verdict::Jump(_))));
    let script = e.backend().applied.last().unwrap().clone();
    assert!(script.contains("vfake"), "{script}");
    // Isolation is total: both devices are in the `isolated` sets, dropped before the
    // established accept and at the host, and i-app2's tracked connections are cut.
    assert!(
        script.contains("add element inet stockade isolated")
            && script.contains("add element arp stockade isolated"),
        "{script}"
    );
    assert!(e.contested_addresses().is_empty());
    e.set_contested(vec![(app2.instance.clone(), app2.nic_type)]);
    let app2_addresses: Vec<std::net::IpAddr> = e
        .contested_addresses()
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let modelled = e
        .policy()
        .unwrap()
        .instances
        .iter()
        .find(|i| i.id == app2.instance)
        .unwrap()
        .private_ip;
    assert!(
        app2_addresses.contains(&modelled.into()),
        "{app2_addresses:?}"
    );
}

/// What a fresh enforcer holds for `p` with `atts` (zones aside: they are allocated per
/// enforcer), to compare an incrementally updated one with.
fn fresh_rendering(p: &HostPolicy, atts: &[Attachment]) -> nft::Ruleset {
    let state = policy::State::from_snapshot(&p.snapshot).unwrap();
    nft::render(&state, atts)
}

fn without_zones(e: &Enforcer<FakeBackend>) -> nft::Ruleset {
    nft::Ruleset {
        zones: nft::Zones::default(),
        ..e.applied().unwrap().clone()
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Members not bound here join, leave, reorder and vanish, told one by one as the feed
    /// tells them (`update_members`): every sync writes set elements alone, and leaves the
    /// enforcer holding what a fresh rendering of the same policy gives.
    #[test]
    fn remote_member_changes_write_only_set_elements_and_match_a_fresh_rendering(
        steps in proptest::collection::vec((0usize..4, proptest::collection::vec(0usize..3, 0..4)), 1..8)
    ) {
        let groups = ["sg-web", "sg-app", "sg-db"];
        let mut p = policy(1, |_| {});
        // Bound here: web1 and db1; the others are remote members.
        let atts: Vec<Attachment> = attachments(&p)
            .into_iter()
            .filter(|a| ["i-web1", "i-db1"].contains(&a.instance.as_str()))
            .collect();
        let mut e = Enforcer::new(FakeBackend::default());
        e.set_policy(p.clone()).unwrap();
        e.set_attachments(atts.clone());
        e.sync().unwrap();
        let remote = ["i-web2", "i-app1", "i-app2", "i-new9"];
        for (n, (who, in_groups)) in steps.into_iter().enumerate() {
            let id: model::MemberId = remote[who].parse().unwrap();
            let revision = n as u64 + 2;
            let mut gone = Vec::new();
            let mut changed = Vec::new();
            p.snapshot.instances.retain(|i| i.id != id);
            if in_groups.is_empty() && who % 2 == 0 {
                gone.push(id);
            } else {
                let mut g: Vec<model::SecurityGroupId> = Vec::new();
                for k in in_groups {
                    let group = groups[k].parse().unwrap();
                    if !g.contains(&group) {
                        g.push(group);
                    }
                }
                let instance = model::Instance {
                    id,
                    attached_to: None,
                    owner: p.snapshot.instances[0].owner,
                    vpc_id: Some("vpc-lab".parse().unwrap()),
                    private_ip: std::net::Ipv4Addr::new(198, 18, 9, 100 + who as u8),
                    secondary_ips: Vec::new(),
                    ipv4_prefixes: Vec::new(),
                    ipv6: None,
                    public_ip: None,
                    source_dest_check: true,
                    security_groups: g,
                };
                p.snapshot.instances.push(instance.clone());
                changed.push(instance);
            }
            p.revision = revision;
            e.update_members(revision, gone, changed).unwrap();
            let before = e.backend().applied.len();
            let outcome = e.sync().unwrap();
            proptest::prop_assert!(!outcome.full);
            for script in &e.backend().applied[before..] {
                for line in script.lines() {
                    proptest::prop_assert!(
                        line.starts_with("add element ") || line.starts_with("delete element "),
                        "{line}"
                    );
                }
            }
            proptest::prop_assert_eq!(e.revision(), Some(revision));
            proptest::prop_assert_eq!(without_zones(&e), fresh_rendering(&p, &atts));
        }
    }
}

#[test]
fn a_change_of_a_member_bound_here_renders_its_chains_again() {
    let p = policy(1, |_| {});
    let atts = attachments(&p);
    let mut e = enforcer(p.clone());
    e.sync().unwrap();
    // web1 (bound here) joins sg-app: its chains change, not only sets.
    let mut web1 = p.snapshot.instances[0].clone();
    assert_eq!(web1.id.as_str(), "i-web1");
    web1.security_groups.push("sg-app".parse().unwrap());
    e.update_members(2, Vec::new(), vec![web1.clone()]).unwrap();
    e.sync().unwrap();
    let diff = e.backend().applied.last().unwrap().clone();
    assert!(diff.contains("eg_i_sg_web_sg_app"), "{diff}");
    let last = policy(2, |s| s.instances[0] = web1);
    assert_eq!(without_zones(&e), fresh_rendering(&last, &atts));
}

#[test]
fn a_member_change_that_does_not_fit_is_refused_and_the_policy_kept() {
    let p = policy(1, |_| {});
    let mut e = enforcer(p.clone());
    e.sync().unwrap();
    let held = e.applied().unwrap().clone();
    let mut app2 = p.snapshot.instances[3].clone();
    app2.security_groups.push("sg-missing".parse().unwrap());
    assert!(e.update_members(2, Vec::new(), vec![app2]).is_err());
    assert_eq!(e.revision(), Some(1));
    assert!(!e.sync().unwrap().applied);
    assert_eq!(e.applied(), Some(&held));
    // A later whole share is taken as usual.
    e.set_policy(policy(3, |_| {})).unwrap();
    assert_eq!(e.revision(), Some(3));
}

#[test]
fn with_a_generation_drift_is_seen_from_it_and_the_listing_taken_off_the_change_path() {
    let mut e = Enforcer::new(FakeBackend {
        generation: Some(7),
        ..FakeBackend::default()
    });
    let p = policy(1, |_| {});
    let atts = attachments(&p);
    e.set_policy(p).unwrap();
    e.set_attachments(atts);
    e.sync().unwrap();
    // The generation unchanged: no drift, whatever a listing would say (the kernel moves it
    // with every commit), and the listing taken now is what later checks compare with.
    assert!(!e.check_drift().unwrap());
    let listed = e.backend().listing.clone();
    e.backend().listing = "not read".into();
    assert!(!e.check_drift().unwrap());
    e.backend().listing = listed;
    // Another program commits to another table: the generation moves, the table does not.
    e.backend().generation = Some(100);
    assert!(!e.check_drift().unwrap());
    // A hand edit of ours: both move.
    e.backend().generation = Some(101);
    e.backend().listing = "table inet stockade { }".into();
    assert!(e.check_drift().unwrap());
    assert!(e.sync().unwrap().full);
    // Edited before any check took the listing: nothing tells the edit from another
    // table's, so the table is replaced.
    e.backend().generation = Some(200);
    assert!(e.check_drift().unwrap());
    assert!(e.sync().unwrap().full);
}
