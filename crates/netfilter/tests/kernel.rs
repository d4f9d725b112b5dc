//! The real kernel (in test namespaces) accepting the renderer's full and incremental
//! scripts, through the library and the program alike, set element changes and tracked
//! connections over netlink. Needs root and `nft` (`scripts/test` provides both); set
//! `STOCKADE_SKIP_KERNEL=1` to skip on a machine without them.

// Test namespaces, processes and the example policy file are what this test works with.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::process::Command;

use netfilter::{Backend, NftCli, NftError, Tracked};
use nft::{render, render_as, Rendering};
use policy::Change;

#[path = "../../nft/tests/example/mod.rs"]
mod example;
use example::{attachments, example_state, RENDERINGS};

/// A network namespace for one test, deleted when dropped (even when the test fails).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        let name = format!("sknft-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Netns(name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Needs root and `nft`; `scripts/test` provides both. Set `STOCKADE_SKIP_KERNEL=1` to skip
/// on a machine without them.
#[test]
fn kernel_accepts_full_and_incremental_scripts() {
    if std::env::var_os("STOCKADE_SKIP_KERNEL").is_some() {
        return;
    }
    for (rendering, _) in RENDERINGS {
        kernel_accepts(rendering);
    }
}

fn kernel_accepts(rendering: Rendering) {
    let ns =
        Netns::new("apply").expect("ip netns add (run as root, or set STOCKADE_SKIP_KERNEL=1)");
    let mut nft = NftCli::in_netns(&ns.0);
    let mut state = example_state();
    let atts = attachments(&state);
    let first = render_as(&state, &atts, rendering);
    nft.apply(&first.full_script()).unwrap();
    let listed = nft.list().unwrap();
    assert!(listed.contains("chain in_i_sg_db"), "{listed}");
    // Incremental: a join, a revoke, a leave; each diff applies on top of the last.
    let mut current = first;
    let rule = |id: &str, priority: &str, port: &str| {
        let f = model::PermissionFields {
            priority: Some(priority.into()),
            ip_protocol: Some("tcp".into()),
            port_range: Some(port.into()),
            source_cidr_ip: Some("198.18.9.0/24".into()),
            ..Default::default()
        };
        f.parse(
            id.parse().unwrap(),
            model::Direction::Ingress,
            model::NetworkType::Vpc,
        )
        .unwrap()
    };
    let web = || "sg-web".parse::<model::SecurityGroupId>().unwrap();
    let changes = [
        Change::Join("i-web1".parse().unwrap(), "sg-app".parse().unwrap()),
        // Authorisations are insertions at their place in the order (first, last, middle).
        Change::AddPermission(web(), rule("sgr-first", "1", "7000/7000")),
        Change::AddPermission(web(), rule("sgr-last", "100", "7001/7001")),
        Change::AddPermission(web(), rule("sgr-mid", "50", "7002/7002")),
        Change::RemovePermission(web(), "sgr-first".parse().unwrap()),
        Change::Leave("i-app2".parse().unwrap(), "sg-app".parse().unwrap()),
    ];
    for change in changes {
        // Leaving the last group is the control plane's to refuse; here it is allowed.
        state.apply(&change).unwrap();
        let next = render_as(&state, &atts, rendering);
        let diff = next.diff_script(&current);
        nft.apply(&diff)
            .unwrap_or_else(|e| panic!("{change:?}: {e}\n{diff}"));
        // An authorisation only inserts (linear) or adds nodes and map elements (flat): no
        // chain is flushed, whose rule deletions would wait for an RCU grace period.
        if matches!(change, Change::AddPermission(..)) {
            assert!(
                !diff.contains("flush chain"),
                "an authorisation rewrites no chain:\n{diff}"
            );
        }
        current = next;
        let listed = statements(&nft.list().unwrap());
        // After each step the kernel's chains hold the rendered rules, in order.
        for (name, rules) in &current.chains {
            let chain = nft_chain(&ns.0, name);
            let rendered: Vec<&str> = rules.iter().map(|r| r.text.as_str()).collect();
            assert_eq!(chain, rendered, "{change:?}: chain {name}");
        }
        assert!(!listed.is_empty());
    }
    // Each rule of a linear chain counts into its own counter, made with its first
    // statement and deleted with its last.
    let counters = nft::counters::parse_counters(&nft.list_counters().unwrap());
    let names: Vec<&str> = counters.keys().map(String::as_str).collect();
    let want: Vec<&str> = current.counters().into_iter().collect();
    assert_eq!(names, want);
    if rendering == Rendering::Linear {
        assert!(
            names.contains(&"h_sgr_mid") && !names.contains(&"h_sgr_first"),
            "{names:?}"
        );
    }
    // The table now holds what a fresh full install of the final ruleset holds (the kernel
    // lists chains in creation order, so compare the statements as a multiset).
    let incremental = statements(&nft.list().unwrap());
    nft.apply(&current.full_script()).unwrap();
    assert_eq!(incremental, statements(&nft.list().unwrap()));
    nft.delete_table().unwrap();
    assert_eq!(nft.list().unwrap(), "");
}

/// The rules of one chain as the kernel lists them.
fn nft_chain(ns: &str, chain: &str) -> Vec<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["nft", "list", "chain", "inet", "stockade", chain])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("table") && !l.starts_with("chain") && *l != "}"
        })
        .map(str::to_string)
        .collect()
}

fn statements(listing: &str) -> Vec<String> {
    let mut parts: Vec<String> = listing
        .split(['\n', ',', '{', '}'])
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect();
    parts.sort();
    parts
}

#[test]
fn a_namespace_that_does_not_exist_is_an_error_not_the_hosts_table() {
    // Were the thread not to enter the namespace, nft would silently program this one.
    let mut nft = NftCli::in_netns("stockade-no-such-namespace");
    match nft.list() {
        Err(NftError::Spawn(why)) => assert!(why.contains("no-such-namespace"), "{why}"),
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert!(nft.apply("table inet stockade {}").is_err());
}

/// A member joining and leaving groups on another host changes address sets only: those
/// changes go to the kernel as one netlink batch, with the same effect as the script; a
/// change the kernel refuses applies nothing and the next one still goes through.
#[test]
fn member_changes_reach_the_kernel_without_nft() {
    if std::env::var_os("STOCKADE_SKIP_KERNEL").is_some() {
        return;
    }
    let ns = Netns::new("elements").expect("ip netns add (run as root)");
    let mut nft = NftCli::in_netns(&ns.0);
    let mut state = example_state();
    let atts = attachments(&state);
    let first = render(&state, &atts);
    nft.apply(&first.full_script()).unwrap();
    // A remote member (not attached here) in every group one of ours is in.
    let mut remote = state.instances().next().unwrap().clone();
    remote.id = "i-remote1".parse().unwrap();
    remote.private_ip = "198.18.77.7".parse().unwrap();
    state.apply(&Change::AddInstance(remote.clone())).unwrap();
    let joined = render(&state, &atts);
    let changes = joined
        .element_changes(&first)
        .expect("only set elements change");
    assert!(!changes.is_empty() && changes.iter().all(|c| c.add));
    // Applied over netlink, the kernel's table is the one the script gives.
    nft.apply_elements(&changes, "").unwrap();
    let by_netlink = statements(&nft.list().unwrap());
    nft.apply(&joined.full_script()).unwrap();
    assert_eq!(by_netlink, statements(&nft.list().unwrap()));
    assert!(nft.list().unwrap().contains("198.18.77.7"));

    // It leaves: deletions. Sent twice, the second is refused (the element is gone) and
    // changes nothing; a later change still goes through on a new socket.
    state
        .apply(&Change::RemoveInstance(remote.id.clone()))
        .unwrap();
    let left = render(&state, &atts);
    let changes = left.element_changes(&joined).unwrap();
    assert!(changes.iter().all(|c| !c.add));
    nft.apply_elements(&changes, "").unwrap();
    assert!(!nft.list().unwrap().contains("198.18.77.7"));
    let before = nft.list().unwrap();
    assert!(matches!(
        nft.apply_elements(&changes, ""),
        Err(NftError::Rejected(_))
    ));
    assert_eq!(
        nft.list().unwrap(),
        before,
        "a refused batch applies nothing"
    );
    nft.apply_elements(&joined.element_changes(&left).unwrap(), "")
        .unwrap();
    assert!(nft.list().unwrap().contains("198.18.77.7"));
    // Anything beyond set elements is not an element change.
    let mut other = atts.clone();
    other.pop();
    assert_eq!(render(&state, &other).element_changes(&left), None);
}

/// The generation (what the agent's drift check reads instead of listing the table) moves
/// with every transaction in the namespace, ours or another program's on another table,
/// and with nothing else; another namespace's transactions leave it alone.
#[test]
fn the_generation_moves_with_every_commit_and_only_then() {
    if std::env::var_os("STOCKADE_SKIP_KERNEL").is_some() {
        return;
    }
    let (ns, other) = (
        Netns::new("gen").expect("ip netns add"),
        Netns::new("gen-other").expect("ip netns add"),
    );
    let (mut nft, mut elsewhere) = (NftCli::in_netns(&ns.0), NftCli::in_netns(&other.0));
    let state = example_state();
    let ruleset = render_as(&state, &attachments(&state), Rendering::Linear);
    nft.apply(&ruleset.full_script()).unwrap();
    let first = nft.generation().unwrap().expect("read over netlink");
    nft.list().unwrap();
    assert_eq!(
        nft.generation().unwrap(),
        Some(first),
        "a listing commits nothing"
    );
    elsewhere.apply("table inet other {}\n").unwrap();
    assert_eq!(
        nft.generation().unwrap(),
        Some(first),
        "another namespace's commit"
    );
    let by_hand = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "nft",
            "add",
            "table",
            "ip",
            "someone_else",
        ])
        .status()
        .unwrap();
    assert!(by_hand.success());
    let second = nft.generation().unwrap().unwrap();
    assert_ne!(second, first, "another program's commit, to another table");
    // (A transaction that changes nothing, as `add table` of a table there, commits
    // nothing and moves nothing.)
    nft.apply("add table inet stockade\n").unwrap();
    assert_eq!(nft.generation().unwrap(), Some(second));
    nft.apply("add chain inet stockade probe\n").unwrap();
    assert_ne!(nft.generation().unwrap().unwrap(), second);
}

/// Through the library in this process or the `nft` program, the same script leaves the
/// same table, lists the same, and is refused with the same message.
#[test]
fn the_library_and_the_program_agree() {
    if std::env::var_os("STOCKADE_SKIP_KERNEL").is_some() {
        return;
    }
    let (a, b) = (
        Netns::new("lib").expect("ip netns add"),
        Netns::new("prog").expect("ip netns add"),
    );
    let mut library = NftCli::in_netns(&a.0);
    let mut program = NftCli::in_netns(&b.0).program();
    assert!(
        library.uses_library(),
        "libnftables.so.1 is installed with nftables"
    );
    assert!(!program.uses_library());
    let state = example_state();
    for rendering in [Rendering::Linear, Rendering::Flat] {
        let script = render_as(&state, &attachments(&state), rendering).full_script();
        library.apply(&script).unwrap();
        program.apply(&script).unwrap();
        assert_eq!(library.list().unwrap(), program.list().unwrap());
    }
    let bad = "add rule inet stockade no_such_chain accept\n";
    let (x, y) = (library.apply(bad), program.apply(bad));
    // (The program names its input, `/dev/stdin:1:24-36: `; the library has none.)
    let message = |r: Result<(), NftError>| match r {
        Err(NftError::Rejected(m)) => m.trim_start_matches(|c| c != 'E').to_string(),
        other => panic!("{other:?}"),
    };
    let refused = message(x);
    assert!(
        refused.starts_with("Error: Could not process rule: No such file"),
        "{refused}"
    );
    assert_eq!(refused, message(y));
    assert_eq!(message(library.check(bad)), message(program.check(bad)));
    assert!(library.check("add chain inet stockade fresh\n").is_ok());
    assert!(
        !library.list().unwrap().contains("fresh"),
        "a check applies nothing"
    );
    library.delete_table().unwrap();
    program.delete_table().unwrap();
    assert_eq!(
        (library.list().unwrap(), program.list().unwrap()),
        (String::new(), String::new())
    );
}

/// The namespace's tracked connections as one ctnetlink dump lists them: both families, the
/// original direction, ports only where the protocol has them, the zone; and only that
/// namespace's.
#[test]
fn tracked_connections_are_listed_over_netlink() {
    if std::env::var_os("STOCKADE_SKIP_KERNEL").is_some() {
        return;
    }
    let (ns, other) = (
        Netns::new("ct").expect("ip netns add"),
        Netns::new("ctother").expect("ip netns add"),
    );
    let insert = |ns: &str, args: &str| {
        let ok = Command::new("ip")
            .args(["netns", "exec", ns, "conntrack", "-I"])
            .args(args.split_whitespace())
            .args(["-t", "60"])
            .output()
            .unwrap();
        assert!(ok.status.success(), "{ok:?}");
    };
    insert(
        &ns.0,
        "-s 198.18.0.1 -d 198.18.0.2 -p tcp --sport 1234 --dport 80 --state ESTABLISHED -u SEEN_REPLY -w 5",
    );
    insert(
        &ns.0,
        "-s 2001:2::1 -d 2001:2::2 -p udp --sport 53 --dport 5353",
    );
    insert(
        &ns.0,
        "-s 198.18.0.3 -d 198.18.0.4 -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 77",
    );
    insert(
        &other.0,
        "-s 198.18.9.9 -d 198.18.9.8 -p udp --sport 1 --dport 2",
    );
    let mut listed = NftCli::in_netns(&ns.0)
        .tracked_connections()
        .expect("the real backend lists them")
        .unwrap();
    listed.sort_by_key(|t| (t.protocol, t.source));
    let flow = |protocol, source: &str, destination: &str, ports: (u16, u16), zone| Tracked {
        protocol,
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
        source_port: ports.0,
        destination_port: ports.1,
        zone,
    };
    assert_eq!(
        listed,
        vec![
            flow(1, "198.18.0.3", "198.18.0.4", (0, 0), 0),
            flow(6, "198.18.0.1", "198.18.0.2", (1234, 80), 5),
            flow(17, "2001:2::1", "2001:2::2", (53, 5353), 0),
        ]
    );
}
