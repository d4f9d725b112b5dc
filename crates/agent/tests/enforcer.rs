//! The enforcement loop's decisions, against the in-memory nftables backend.

use agent::feed::{HostPolicy, Placed};
use agent::Enforcer;
use model::NicType;
use nft::{Attachment, FakeBackend};

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
}
