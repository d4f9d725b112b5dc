//! Prefix and port range lists on real packets: a rule naming a list admits exactly its
//! entries, and an entry change rewrites no chain (the agent's flat rendering adds the tree
//! nodes of the new entries and drops the old ones; a linear one updates a set).

use std::collections::BTreeMap;
use std::process::Command;

use crate::harness::{skipped, Lab};

/// The policy chains of a host's table (everything but sets and maps), as the kernel lists
/// them, by name.
fn chains(lab: &Lab, host: &str) -> BTreeMap<String, String> {
    let ns = &lab.hosts.iter().find(|(id, _)| id == host).unwrap().1;
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "table", "inet", "stockade",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("\tchain ")
        .skip(1)
        .map(|c| {
            let (name, body) = c.split_once(' ').unwrap();
            (name.to_string(), body.to_string())
        })
        .collect()
}

/// Every chain the table held before still holds the same statements, if it is still
/// there; the chains the dispatch maps go to all are.
fn assert_no_chain_rewritten(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) {
    for (name, body) in before {
        match after.get(name) {
            Some(now) => assert_eq!(body, now, "chain {name} was rewritten"),
            None => assert!(name.contains("__"), "chain {name} is gone"),
        }
    }
}

#[test]
fn list_rules_hold_and_entry_changes_rewrite_no_chain() {
    if skipped() {
        return;
    }
    let lab = Lab::up('p', 2, 3, 0);
    let (a0, a1, a2) = (lab.member(0), lab.member(1), lab.member(2));
    let created = lab.call(&[
        ("Action", "CreatePrefixList"),
        ("PrefixListName", "trusted"),
        ("AddressFamily", "IPv4"),
        ("MaxEntries", "5"),
        ("Entry.1.Cidr", &format!("{}/32", a0.private_ip)),
    ]);
    let pl = created["PrefixListId"].as_str().unwrap().to_string();
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &lab.default_group("vpc")),
        ("IpProtocol", "tcp"),
        ("PortRange", "80/80"),
        ("SourcePrefixListId", &pl),
    ]);
    lab.wait_applied();
    let probe = |n: usize| lab.probe(Some(n), &a1.private_ip, "tcp", 80);
    assert_eq!((probe(0), probe(2)), (true, false), "{}", lab.tables());
    let before = chains(&lab, &a1.host);
    lab.call(&[
        ("Action", "ModifyPrefixList"),
        ("PrefixListId", &pl),
        ("AddEntry.1.Cidr", &format!("{}/32", a2.private_ip)),
        ("RemoveEntry.1.Cidr", &format!("{}/32", a0.private_ip)),
    ]);
    lab.wait_applied();
    assert_eq!(
        (probe(0), probe(2)),
        (false, true),
        "the list's new entries decide\n{}",
        lab.tables()
    );
    assert_no_chain_rewritten(&before, &chains(&lab, &a1.host));

    // A port range list: overlapping entries (merged into one interval set), then entries
    // swapped, again without touching a chain.
    let created = lab.call(&[
        ("Action", "CreatePortRangeList"),
        ("PortRangeListName", "web"),
        ("MaxEntries", "5"),
        ("Entry.1.PortRange", "8080/8090"),
        ("Entry.2.PortRange", "8085/8085"),
    ]);
    let prl = created["PortRangeListId"].as_str().unwrap().to_string();
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &lab.default_group("vpc")),
        ("Permissions.1.IpProtocol", "tcp"),
        ("Permissions.1.PortRangeListId", &prl),
        (
            "Permissions.1.SourceCidrIp",
            &format!("{}/32", a0.private_ip),
        ),
    ]);
    lab.wait_applied();
    let port = |p: u16| lab.probe(Some(0), &a1.private_ip, "tcp", p);
    assert_eq!(
        (port(8080), port(8090), port(8091), port(9000)),
        (true, true, false, false),
        "{}",
        lab.tables()
    );
    let before = chains(&lab, &a1.host);
    lab.call(&[
        ("Action", "ModifyPortRangeList"),
        ("PortRangeListId", &prl),
        ("AddEntry.1.PortRange", "9000/9000"),
        ("RemoveEntry.1.PortRange", "8080/8090"),
    ]);
    lab.wait_applied();
    assert_eq!(
        (port(8080), port(8085), port(9000)),
        (false, true, true),
        "the list's new entries decide\n{}",
        lab.tables()
    );
    assert_no_chain_rewritten(&before, &chains(&lab, &a1.host));
}
