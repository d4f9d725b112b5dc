//! The renderer's output for known policies (snapshot tests). The real kernel accepting its
//! scripts is the `netfilter` crate's test (`crates/netfilter/tests/kernel.rs`).

// Snapshot files are what this test checks against.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use model::NicType;
use nft::{render, render_as, Attachment, Rendering, Verdict};
use policy::Change;

mod example;
use example::{attachments, example_state, RENDERINGS};

/// Compares with `tests/snapshots/NAME`; `UPDATE_SNAPSHOTS=1` rewrites the file instead.
fn snapshot(name: &str, actual: &str) {
    let path = format!("{}/tests/snapshots/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        expected, actual,
        "snapshot {name} differs; rerun with UPDATE_SNAPSHOTS=1 and review the diff"
    );
}

#[test]
fn example_policy_renders_as_the_snapshot() {
    let state = example_state();
    for (rendering, suffix) in RENDERINGS {
        let ruleset = render_as(&state, &attachments(&state), rendering);
        assert!(ruleset.failed.is_empty(), "{:?}", ruleset.failed);
        snapshot(&format!("example_full{suffix}.nft"), &ruleset.full_script());
    }
    assert_eq!(
        render(&state, &attachments(&state)),
        render_as(&state, &attachments(&state), Rendering::Linear),
        "linear is the default"
    );
}

#[test]
fn a_join_touches_the_member_set_and_the_joiners_own_dispatch_only() {
    for (rendering, suffix) in RENDERINGS {
        let mut state = example_state();
        let atts = attachments(&state);
        let before = render_as(&state, &atts, rendering);
        // i-web1 joins sg-app: its own chains change (new group list), and sg-app's members
        // gain its address (a set element, or a class-map element per chain that reads
        // sg-app); nothing else is rewritten.
        let join = Change::Join("i-web1".parse().unwrap(), "sg-app".parse().unwrap());
        state.apply(&join).unwrap();
        let after = render_as(&state, &atts, rendering);
        snapshot(
            &format!("join_diff{suffix}.nft"),
            &after.diff_script(&before),
        );
        assert_eq!(after.diff_script(&after), "", "no change, no transaction");
    }
}

#[test]
fn unknown_instance_fails_closed() {
    let state = example_state();
    let mut atts = attachments(&state);
    atts.push(Attachment {
        instance: "i-ghost".parse::<model::MemberId>().unwrap(),
        nic_type: NicType::Intranet,
        interface: "vghost".into(),
    });
    let ruleset = render(&state, &atts);
    assert_eq!(ruleset.egress["\"vghost\""], Verdict::Drop);
    assert_eq!(ruleset.ingress["\"vghost\""], Verdict::Drop);
    assert!(ruleset.failed.contains_key(&"i-ghost".parse().unwrap()));
}
