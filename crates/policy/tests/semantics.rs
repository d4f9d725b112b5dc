//! One named scenario per semantic point of DESIGN.md §4, each checked against both the
//! reference and the compiled evaluator. Read a test as: the policy, the flow, and the
//! expected verdict with what decided each stage.
//!
//! Point 1 (connection tracking: only the first packet of a flow is judged) is the kernel's
//! part; the engine judges new flows, and the agent's end-to-end suite checks the rest.

mod common;

use common::{check, check_both, World};
use model::{EcsError as _, GroupType, InnerAccessPolicy, NetworkType};
use policy::{Change, Engine, Reference};

fn two_instances() -> World {
    let mut w = World::new();
    w.group("sg-web").group("sg-db");
    w.vpc_instance("i-web", "198.18.0.1", &["sg-web"]);
    w.vpc_instance("i-db", "198.18.0.2", &["sg-db"]);
    w
}

// ---- Step 5: defaults of basic groups -------------------------------------------------

#[test]
fn basic_group_drops_inbound_from_outside_by_default() {
    let w = two_instances();
    check(
        &w,
        "203.0.113.9 i-web tcp 22",
        "Drop | ingress i-web Drop DefaultIngress",
    );
}

#[test]
fn basic_group_accepts_all_outbound_by_default() {
    let w = two_instances();
    check(
        &w,
        "i-web 203.0.113.9 tcp 443",
        "Accept | egress i-web Accept DefaultEgress",
    );
}

#[test]
fn members_of_one_basic_group_reach_each_other_by_default() {
    let mut w = two_instances();
    w.vpc_instance("i-web2", "198.18.0.3", &["sg-web"]);
    check(
        &w,
        "i-web2 i-web tcp 8080",
        "Accept | egress i-web2 Accept DefaultEgress | ingress i-web Accept InnerAccessPolicy sg-web",
    );
}

#[test]
fn instances_in_different_groups_are_isolated_by_default() {
    let w = two_instances();
    check(
        &w,
        "i-web i-db tcp 3306",
        "Drop | egress i-web Accept DefaultEgress | ingress i-db Drop DefaultIngress",
    );
}

#[test]
fn inner_access_policy_drop_isolates_members() {
    let mut w = World::new();
    w.group_with(
        "sg-iso",
        GroupType::Normal,
        Some("vpc-1"),
        InnerAccessPolicy::Drop,
    );
    w.vpc_instance("i-a", "198.18.0.1", &["sg-iso"])
        .vpc_instance("i-b", "198.18.0.2", &["sg-iso"]);
    check(
        &w,
        "i-a i-b tcp 22",
        "Drop | egress i-a Accept DefaultEgress | ingress i-b Drop DefaultIngress",
    );
}

#[test]
fn inner_access_is_granted_by_any_shared_accepting_group() {
    let mut w = World::new();
    w.group_with(
        "sg-iso",
        GroupType::Normal,
        Some("vpc-1"),
        InnerAccessPolicy::Drop,
    );
    w.group("sg-open");
    w.vpc_instance("i-a", "198.18.0.1", &["sg-iso", "sg-open"]);
    w.vpc_instance("i-b", "198.18.0.2", &["sg-iso", "sg-open"]);
    check(
        &w,
        "i-a i-b udp 53",
        "Accept | egress i-a Accept DefaultEgress | ingress i-b Accept InnerAccessPolicy sg-open",
    );
}

#[test]
fn an_explicit_rule_overrides_inner_access_accept() {
    let mut w = World::new();
    w.group("sg-a");
    let r = w.rule("sg-a", "in drop 100 tcp 22/22 peer=198.18.0.0/16");
    w.vpc_instance("i-a", "198.18.0.1", &["sg-a"])
        .vpc_instance("i-b", "198.18.0.2", &["sg-a"]);
    check(
        &w,
        "i-a i-b tcp 22",
        &format!("Drop | egress i-a Accept DefaultEgress | ingress i-b Drop {r}"),
    );
}

#[test]
fn inner_access_is_intranet_only_on_the_classic_network() {
    let mut w = World::new();
    w.group_with("sg-c", GroupType::Normal, None, InnerAccessPolicy::Accept);
    w.classic_instance("i-a", "10.0.0.1", Some("203.0.113.1"), &["sg-c"]);
    w.classic_instance("i-b", "10.0.0.2", Some("203.0.113.2"), &["sg-c"]);
    check(
        &w,
        "i-a i-b tcp 80",
        "Accept | egress i-a Accept DefaultEgress | ingress i-b Accept InnerAccessPolicy sg-c",
    );
    check(
        &w,
        "i-a i-b tcp 80 nic=internet",
        "Drop | egress i-a Accept DefaultEgress | ingress i-b Drop DefaultIngress",
    );
}

// ---- Step 5: defaults of enterprise groups ----------------------------------------------

#[test]
fn enterprise_group_drops_inbound_and_outbound_by_default() {
    let mut w = World::new();
    w.group_with(
        "sg-ent",
        GroupType::Enterprise,
        Some("vpc-1"),
        InnerAccessPolicy::Accept,
    );
    w.vpc_instance("i-a", "198.18.0.1", &["sg-ent"]);
    check(
        &w,
        "i-a 203.0.113.9 tcp 443",
        "Drop | egress i-a Drop DefaultEgress",
    );
    check(
        &w,
        "203.0.113.9 i-a tcp 443",
        "Drop | ingress i-a Drop DefaultIngress",
    );
}

#[test]
fn enterprise_group_members_are_isolated_whatever_the_inner_policy_says() {
    let mut w = World::new();
    w.group_with(
        "sg-ent",
        GroupType::Enterprise,
        Some("vpc-1"),
        InnerAccessPolicy::Accept,
    );
    w.rule("sg-ent", "out accept 1 all -1/-1 peer=0.0.0.0/0");
    w.vpc_instance("i-a", "198.18.0.1", &["sg-ent"])
        .vpc_instance("i-b", "198.18.0.2", &["sg-ent"]);
    check(
        &w,
        "i-a i-b tcp 22",
        "Drop | egress i-a Accept sgr-1 | ingress i-b Drop DefaultIngress",
    );
}

#[test]
fn enterprise_group_rules_open_what_they_name() {
    let mut w = World::new();
    w.group_with(
        "sg-ent",
        GroupType::Enterprise,
        Some("vpc-1"),
        InnerAccessPolicy::Drop,
    );
    let r = w.rule("sg-ent", "in accept 1 tcp 443/443 peer=0.0.0.0/0");
    w.vpc_instance("i-a", "198.18.0.1", &["sg-ent"]);
    check(
        &w,
        "203.0.113.9 i-a tcp 443",
        &format!("Accept | ingress i-a Accept {r}"),
    );
}

// ---- Steps 3 and 4: ordering and first match --------------------------------------------

#[test]
fn higher_priority_accept_beats_lower_priority_drop() {
    let mut w = two_instances();
    w.rule("sg-web", "in drop 10 tcp 1/65535 peer=0.0.0.0/0");
    let accept = w.rule("sg-web", "in accept 5 tcp 22/22 peer=203.0.113.0/24");
    check(
        &w,
        "203.0.113.9 i-web tcp 22",
        &format!("Accept | ingress i-web Accept {accept}"),
    );
    check(
        &w,
        "203.0.113.9 i-web tcp 23",
        "Drop | ingress i-web Drop sgr-1",
    );
}

#[test]
fn higher_priority_drop_beats_lower_priority_accept() {
    let mut w = two_instances();
    w.rule("sg-web", "in accept 50 tcp 1/65535 peer=0.0.0.0/0");
    let drop = w.rule("sg-web", "in drop 1 tcp 22/22 peer=0.0.0.0/0");
    check(
        &w,
        "203.0.113.9 i-web tcp 22",
        &format!("Drop | ingress i-web Drop {drop}"),
    );
}

#[test]
fn drop_at_priority_5_beats_accept_at_priority_5_from_another_group() {
    let mut w = World::new();
    w.group("sg-allow").group("sg-deny");
    w.rule("sg-allow", "in accept 5 tcp 22/22 peer=0.0.0.0/0");
    let drop = w.rule("sg-deny", "in drop 5 tcp 22/22 peer=203.0.113.0/24");
    w.vpc_instance("i-a", "198.18.0.1", &["sg-allow", "sg-deny"]);
    check(
        &w,
        "203.0.113.9 i-a tcp 22",
        &format!("Drop | ingress i-a Drop {drop}"),
    );
    check(
        &w,
        "198.51.100.1 i-a tcp 22",
        "Accept | ingress i-a Accept sgr-1",
    );
}

#[test]
fn drop_beats_accept_at_equal_priority_within_one_group_whatever_the_age() {
    let mut w = two_instances();
    w.rule("sg-web", "in accept 7 udp 53/53 peer=0.0.0.0/0");
    let drop = w.rule("sg-web", "in drop 7 udp 1/1024 peer=0.0.0.0/0");
    check(
        &w,
        "203.0.113.9 i-web udp 53",
        &format!("Drop | ingress i-web Drop {drop}"),
    );
}

#[test]
fn equal_priority_and_policy_ties_go_to_the_earlier_group_in_the_instance_list() {
    let mut w = World::new();
    w.group("sg-first").group("sg-second");
    let second = w.rule("sg-second", "in accept 3 tcp 80/80 peer=0.0.0.0/0");
    let first = w.rule("sg-first", "in accept 3 tcp 80/80 peer=0.0.0.0/0");
    w.vpc_instance("i-a", "198.18.0.1", &["sg-first", "sg-second"]);
    w.vpc_instance("i-b", "198.18.0.2", &["sg-second", "sg-first"]);
    check(
        &w,
        "203.0.113.9 i-a tcp 80",
        &format!("Accept | ingress i-a Accept {first}"),
    );
    check(
        &w,
        "203.0.113.9 i-b tcp 80",
        &format!("Accept | ingress i-b Accept {second}"),
    );
}

#[test]
fn equal_ties_within_one_group_go_to_the_older_rule() {
    let mut w = two_instances();
    let older = w.rule("sg-web", "in accept 3 tcp 80/80 peer=0.0.0.0/0");
    w.rule("sg-web", "in accept 3 tcp 1/65535 peer=203.0.113.0/24");
    check(
        &w,
        "203.0.113.9 i-web tcp 80",
        &format!("Accept | ingress i-web Accept {older}"),
    );
}

#[test]
fn rules_from_every_group_of_the_instance_are_combined() {
    let mut w = World::new();
    w.group("sg-ssh").group("sg-http");
    let ssh = w.rule("sg-ssh", "in accept 1 tcp 22/22 peer=0.0.0.0/0");
    let http = w.rule("sg-http", "in accept 1 tcp 80/80 peer=0.0.0.0/0");
    w.vpc_instance("i-a", "198.18.0.1", &["sg-ssh", "sg-http"]);
    check(
        &w,
        "203.0.113.9 i-a tcp 22",
        &format!("Accept | ingress i-a Accept {ssh}"),
    );
    check(
        &w,
        "203.0.113.9 i-a tcp 80",
        &format!("Accept | ingress i-a Accept {http}"),
    );
    check(
        &w,
        "203.0.113.9 i-a tcp 81",
        "Drop | ingress i-a Drop DefaultIngress",
    );
}

#[test]
fn rules_of_the_other_direction_do_not_apply() {
    let mut w = two_instances();
    w.rule("sg-web", "out drop 1 all -1/-1 peer=0.0.0.0/0");
    check(
        &w,
        "203.0.113.9 i-web tcp 22",
        "Drop | ingress i-web Drop DefaultIngress",
    );
    check(
        &w,
        "i-web 203.0.113.9 tcp 22",
        "Drop | egress i-web Drop sgr-1",
    );
}

#[test]
fn protocol_must_match() {
    let mut w = two_instances();
    let r = w.rule("sg-web", "in accept 1 udp 53/53 peer=0.0.0.0/0");
    check(
        &w,
        "203.0.113.9 i-web tcp 53",
        "Drop | ingress i-web Drop DefaultIngress",
    );
    check(
        &w,
        "203.0.113.9 i-web udp 53",
        &format!("Accept | ingress i-web Accept {r}"),
    );
}

#[test]
fn protocol_all_matches_every_protocol_and_port() {
    let mut w = two_instances();
    let r = w.rule("sg-web", "in accept 1 all -1/-1 peer=203.0.113.0/24");
    for f in ["tcp 1", "udp 65535", "icmp", "gre"] {
        check(
            &w,
            &format!("203.0.113.9 i-web {f}"),
            &format!("Accept | ingress i-web Accept {r}"),
        );
    }
}

#[test]
fn icmp_rules_match_icmp_only() {
    let mut w = two_instances();
    let r = w.rule("sg-web", "in accept 1 icmp -1/-1 peer=0.0.0.0/0");
    check(
        &w,
        "203.0.113.9 i-web icmp",
        &format!("Accept | ingress i-web Accept {r}"),
    );
    check(
        &w,
        "203.0.113.9 i-web tcp 7",
        "Drop | ingress i-web Drop DefaultIngress",
    );
}

#[test]
fn port_range_bounds_are_inclusive() {
    let mut w = two_instances();
    let r = w.rule("sg-web", "in accept 1 tcp 8000/8010 peer=0.0.0.0/0");
    check(
        &w,
        "203.0.113.9 i-web tcp 8000",
        &format!("Accept | ingress i-web Accept {r}"),
    );
    check(
        &w,
        "203.0.113.9 i-web tcp 8010",
        &format!("Accept | ingress i-web Accept {r}"),
    );
    check(
        &w,
        "203.0.113.9 i-web tcp 7999",
        "Drop | ingress i-web Drop DefaultIngress",
    );
    check(
        &w,
        "203.0.113.9 i-web tcp 8011",
        "Drop | ingress i-web Drop DefaultIngress",
    );
}

#[test]
fn source_port_range_of_a_quintuple_rule_must_match() {
    let mut w = two_instances();
    let r = w.rule(
        "sg-web",
        "in accept 1 tcp 443/443 peer=0.0.0.0/0 sport=1024/65535",
    );
    check(
        &w,
        "203.0.113.9 i-web tcp 443 sport=50000",
        &format!("Accept | ingress i-web Accept {r}"),
    );
    check(
        &w,
        "203.0.113.9 i-web tcp 443 sport=80",
        "Drop | ingress i-web Drop DefaultIngress",
    );
}

#[test]
fn peer_cidr_must_contain_the_other_end() {
    let mut w = two_instances();
    let r = w.rule("sg-web", "in accept 1 tcp 22/22 peer=203.0.113.0/24");
    check(
        &w,
        "203.0.113.255 i-web tcp 22",
        &format!("Accept | ingress i-web Accept {r}"),
    );
    check(
        &w,
        "203.0.114.0 i-web tcp 22",
        "Drop | ingress i-web Drop DefaultIngress",
    );
}

#[test]
fn local_cidr_of_a_quintuple_rule_restricts_the_instance_address() {
    let mut w = two_instances();
    w.vpc_instance("i-web3", "198.18.1.3", &["sg-web"]);
    let r = w.rule(
        "sg-web",
        "in accept 1 tcp 80/80 peer=0.0.0.0/0 local=198.18.0.0/24",
    );
    check(
        &w,
        "203.0.113.9 i-web tcp 80",
        &format!("Accept | ingress i-web Accept {r}"),
    );
    check(
        &w,
        "203.0.113.9 i-web3 tcp 80",
        "Drop | ingress i-web3 Drop DefaultIngress",
    );
}

#[test]
fn egress_rules_match_the_destination_as_peer() {
    let mut w = two_instances();
    w.rule("sg-web", "out drop 1 tcp 25/25 peer=0.0.0.0/0");
    check(
        &w,
        "i-web 203.0.113.9 tcp 25",
        "Drop | egress i-web Drop sgr-1",
    );
    check(
        &w,
        "i-web 203.0.113.9 tcp 26",
        "Accept | egress i-web Accept DefaultEgress",
    );
}

// ---- Step 2: interfaces -------------------------------------------------------------------

#[test]
fn classic_internet_rules_judge_only_the_internet_interface() {
    let mut w = World::new();
    w.group_with("sg-c", GroupType::Normal, None, InnerAccessPolicy::Accept);
    let internet = w.rule("sg-c", "in accept 1 tcp 80/80 peer=0.0.0.0/0 nic=internet");
    let intranet = w.rule("sg-c", "in accept 1 tcp 22/22 peer=10.0.0.0/8 nic=intranet");
    w.classic_instance("i-a", "10.0.0.1", Some("203.0.113.1"), &["sg-c"]);
    check(
        &w,
        "198.51.100.7 i-a tcp 80 nic=internet",
        &format!("Accept | ingress i-a Accept {internet}"),
    );
    check(
        &w,
        "10.9.9.9 i-a tcp 80",
        "Drop | ingress i-a Drop DefaultIngress",
    );
    check(
        &w,
        "10.9.9.9 i-a tcp 22",
        &format!("Accept | ingress i-a Accept {intranet}"),
    );
    check(
        &w,
        "198.51.100.7 i-a tcp 22 nic=internet",
        "Drop | ingress i-a Drop DefaultIngress",
    );
}

#[test]
fn classic_internet_traffic_uses_the_public_address() {
    let mut w = World::new();
    w.group_with("sg-c", GroupType::Normal, None, InnerAccessPolicy::Accept);
    let r = w.rule(
        "sg-c",
        "in accept 1 tcp 80/80 peer=198.51.100.0/24 local=203.0.113.1 nic=internet",
    );
    w.classic_instance("i-a", "10.0.0.1", Some("203.0.113.1"), &["sg-c"]);
    w.classic_instance("i-private", "10.0.0.2", None, &["sg-c"]);
    check(
        &w,
        "198.51.100.7 i-a tcp 80 nic=internet",
        &format!("Accept | ingress i-a Accept {r}"),
    );
    check(
        &w,
        "198.51.100.7 i-private tcp 80 nic=internet",
        "error InvalidParameter",
    );
}

#[test]
fn vpc_rules_are_intranet_and_judge_all_of_a_vpc_instance_traffic() {
    let mut w = two_instances();
    let r = w.rule(
        "sg-web",
        "in accept 1 tcp 443/443 peer=0.0.0.0/0 nic=intranet",
    );
    check(
        &w,
        "198.51.100.7 i-web tcp 443",
        &format!("Accept | ingress i-web Accept {r}"),
    );
    check(
        &w,
        "198.51.100.7 i-web tcp 443 nic=internet",
        &format!("Accept | ingress i-web Accept {r}"),
    );
}

// ---- Step 6: both stages ------------------------------------------------------------------

#[test]
fn a_flow_between_instances_needs_source_egress_and_destination_ingress() {
    let mut w = two_instances();
    let open = w.rule("sg-db", "in accept 1 tcp 3306/3306 peer=sg-web");
    let block = w.rule("sg-web", "out drop 1 tcp 3306/3306 peer=198.18.0.2");
    check(
        &w,
        "i-web i-db tcp 3306",
        &format!("Drop | egress i-web Drop {block} | ingress i-db Accept {open}"),
    );
}

#[test]
fn a_flow_needs_at_least_one_instance() {
    let w = two_instances();
    check(&w, "192.0.2.1 192.0.2.2 tcp 1", "error InvalidParameter");
}

// ---- Group references ---------------------------------------------------------------------

#[test]
fn a_group_reference_matches_the_private_addresses_of_its_members() {
    let mut w = two_instances();
    let r = w.rule("sg-db", "in accept 1 tcp 3306/3306 peer=sg-web");
    check(
        &w,
        "i-web i-db tcp 3306",
        &format!("Accept | egress i-web Accept DefaultEgress | ingress i-db Accept {r}"),
    );
    check(
        &w,
        "198.18.0.1 i-db tcp 3306",
        &format!("Accept | ingress i-db Accept {r}"),
    );
    check(
        &w,
        "198.18.0.9 i-db tcp 3306",
        "Drop | ingress i-db Drop DefaultIngress",
    );
}

#[test]
fn a_member_joining_a_referenced_group_gains_access_without_rule_changes() {
    let mut w = two_instances();
    let r = w.rule("sg-db", "in accept 1 tcp 3306/3306 peer=sg-web");
    w.group("sg-batch");
    w.vpc_instance("i-batch", "198.18.0.7", &["sg-batch"]);
    let mut reference = Reference::new(&w.snapshot).unwrap();
    let mut engine = Engine::new(&w.snapshot).unwrap();
    let denied = "Drop | egress i-batch Accept DefaultEgress | ingress i-db Drop DefaultIngress";
    check_both(&reference, &engine, "i-batch i-db tcp 3306", denied);
    let join = Change::Join("i-batch".parse().unwrap(), "sg-web".parse().unwrap());
    reference.apply(&join).unwrap();
    engine.apply(&join).unwrap();
    check_both(
        &reference,
        &engine,
        "i-batch i-db tcp 3306",
        &format!("Accept | egress i-batch Accept DefaultEgress | ingress i-db Accept {r}"),
    );
    let leave = Change::Leave("i-batch".parse().unwrap(), "sg-web".parse().unwrap());
    reference.apply(&leave).unwrap();
    engine.apply(&leave).unwrap();
    check_both(&reference, &engine, "i-batch i-db tcp 3306", denied);
}

#[test]
fn a_rule_may_reference_its_own_group_even_when_members_are_isolated() {
    let mut w = World::new();
    w.group_with(
        "sg-iso",
        GroupType::Normal,
        Some("vpc-1"),
        InnerAccessPolicy::Drop,
    );
    let r = w.rule("sg-iso", "in accept 1 tcp 22/22 peer=sg-iso");
    w.vpc_instance("i-a", "198.18.0.1", &["sg-iso"])
        .vpc_instance("i-b", "198.18.0.2", &["sg-iso"]);
    check(
        &w,
        "i-a i-b tcp 22",
        &format!("Accept | egress i-a Accept DefaultEgress | ingress i-b Accept {r}"),
    );
    check(
        &w,
        "i-a i-b tcp 23",
        "Drop | egress i-a Accept DefaultEgress | ingress i-b Drop DefaultIngress",
    );
}

#[test]
fn a_group_reference_across_accounts_matches_the_other_accounts_members() {
    let mut w = two_instances();
    w.group("sg-partner");
    w.snapshot.groups.last_mut().unwrap().group.owner =
        model::AccountId::new(2_000_000_000_000_002);
    w.vpc_instance("i-partner", "198.18.0.50", &["sg-partner"]);
    w.snapshot.instances.last_mut().unwrap().owner = model::AccountId::new(2_000_000_000_000_002);
    let r = w.rule(
        "sg-db",
        "in accept 1 tcp 5432/5432 peer=sg-partner owner=2000000000000002",
    );
    check(
        &w,
        "i-partner i-db tcp 5432",
        &format!("Accept | egress i-partner Accept DefaultEgress | ingress i-db Accept {r}"),
    );
}

#[test]
fn group_references_do_not_match_public_addresses() {
    let mut w = World::new();
    w.group_with("sg-c", GroupType::Normal, None, InnerAccessPolicy::Drop);
    w.group_with("sg-d", GroupType::Normal, None, InnerAccessPolicy::Drop);
    w.rule("sg-d", "in accept 1 tcp 22/22 peer=sg-c");
    w.classic_instance("i-c", "10.0.0.1", Some("203.0.113.1"), &["sg-c"]);
    w.classic_instance("i-d", "10.0.0.2", Some("203.0.113.2"), &["sg-d"]);
    check(
        &w,
        "203.0.113.1 i-d tcp 22 nic=internet",
        "Drop | ingress i-d Drop DefaultIngress",
    );
}

#[test]
fn a_prefix_list_peer_matches_any_of_its_entries() {
    let mut w = two_instances();
    w.prefix_list("pl-office", &["192.0.2.0/24", "198.51.100.0/24"]);
    let r = w.rule("sg-web", "in accept 1 tcp 22/22 peer=pl-office");
    check(
        &w,
        "198.51.100.3 i-web tcp 22",
        &format!("Accept | ingress i-web Accept {r}"),
    );
    check(
        &w,
        "203.0.113.3 i-web tcp 22",
        "Drop | ingress i-web Drop DefaultIngress",
    );
}

// ---- IPv6 -----------------------------------------------------------------------------------

#[test]
fn ipv6_rules_judge_ipv6_flows_only() {
    let mut w = World::new();
    w.group("sg-6");
    let v6 = w.rule("sg-6", "in accept 1 tcp 443/443 peer=2001:db8::/32");
    let icmp6 = w.rule("sg-6", "in accept 1 icmpv6 -1/-1 peer=::/0");
    w.instance(
        "i-6",
        Some("vpc-1"),
        "198.18.0.6",
        Some("fd00::6"),
        None,
        &["sg-6"],
    );
    check(
        &w,
        "2001:db8::1 i-6 tcp 443",
        &format!("Accept | ingress i-6 Accept {v6}"),
    );
    check(
        &w,
        "2001:db9::1 i-6 tcp 443",
        "Drop | ingress i-6 Drop DefaultIngress",
    );
    check(
        &w,
        "2001:db8::1 i-6 icmpv6",
        &format!("Accept | ingress i-6 Accept {icmp6}"),
    );
    check(
        &w,
        "192.0.2.1 i-6 tcp 443",
        "Drop | ingress i-6 Drop DefaultIngress",
    );
}

#[test]
fn group_references_match_ipv6_addresses_of_members() {
    let mut w = World::new();
    w.group_with(
        "sg-a",
        GroupType::Normal,
        Some("vpc-1"),
        InnerAccessPolicy::Drop,
    );
    w.group_with(
        "sg-b",
        GroupType::Normal,
        Some("vpc-1"),
        InnerAccessPolicy::Drop,
    );
    let r = w.rule("sg-b", "in accept 1 tcp 80/80 peer=sg-a");
    w.instance(
        "i-a",
        Some("vpc-1"),
        "198.18.0.1",
        Some("fd00::1"),
        None,
        &["sg-a"],
    );
    w.instance(
        "i-b",
        Some("vpc-1"),
        "198.18.0.2",
        Some("fd00::2"),
        None,
        &["sg-b"],
    );
    check(
        &w,
        "i-a i-b tcp 80 family=v6",
        &format!("Accept | egress i-a Accept DefaultEgress | ingress i-b Accept {r}"),
    );
}

// ---- Incremental changes -------------------------------------------------------------------

#[test]
fn revoking_a_rule_restores_what_it_shadowed() {
    let mut w = two_instances();
    let drop = w.rule("sg-web", "in drop 1 all -1/-1 peer=0.0.0.0/0");
    let accept = w.rule("sg-web", "in accept 2 tcp 22/22 peer=0.0.0.0/0");
    let mut reference = Reference::new(&w.snapshot).unwrap();
    let mut engine = Engine::new(&w.snapshot).unwrap();
    check_both(
        &reference,
        &engine,
        "203.0.113.9 i-web tcp 22",
        &format!("Drop | ingress i-web Drop {drop}"),
    );
    let revoke = Change::RemovePermission("sg-web".parse().unwrap(), drop.parse().unwrap());
    reference.apply(&revoke).unwrap();
    engine.apply(&revoke).unwrap();
    check_both(
        &reference,
        &engine,
        "203.0.113.9 i-web tcp 22",
        &format!("Accept | ingress i-web Accept {accept}"),
    );
    let add = w.rule_change(
        "sg-web",
        "in drop 1 tcp 22/22 peer=203.0.113.9",
        NetworkType::Vpc,
    );
    reference.apply(&add).unwrap();
    engine.apply(&add).unwrap();
    check_both(
        &reference,
        &engine,
        "203.0.113.9 i-web tcp 22",
        "Drop | ingress i-web Drop sgr-3",
    );
}

#[test]
fn a_failed_change_changes_nothing() {
    let w = two_instances();
    let mut engine = Engine::new(&w.snapshot).unwrap();
    let reference = Reference::new(&w.snapshot).unwrap();
    let err = engine
        .apply(&Change::Join(
            "i-web".parse().unwrap(),
            "sg-web".parse().unwrap(),
        ))
        .unwrap_err();
    assert_eq!(err.code(), "InvalidInstanceId.AlreadyExists");
    let err = engine
        .apply(&Change::Leave(
            "i-web".parse().unwrap(),
            "sg-nope".parse().unwrap(),
        ))
        .unwrap_err();
    assert_eq!(err.code(), "InvalidSecurityGroupId.NotFound");
    check_both(
        &reference,
        &engine,
        "i-web i-db tcp 1",
        "Drop | egress i-web Accept DefaultEgress | ingress i-db Drop DefaultIngress",
    );
}
