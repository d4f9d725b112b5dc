//! Audit: the seed document's best practices and Alibaba Cloud Config's security-group rules,
//! judged on the semantics rather than rule by rule.
//!
//! A rule that opens a risky port to the internet is only a finding if some packet can reach
//! it: a higher-priority drop that covers it makes it compliant, and a narrow drop below a
//! wide accept is dead. Reachability is decided by probing: the peer-address and port spaces
//! are cut at every boundary of the group's rules, and one packet per elementary cell is
//! evaluated in precedence order, which is exact for CIDR rules. Rules with a local-address
//! or source-port filter, and group or prefix-list peers, are not taken to shadow anything
//! (they may not cover the cell), so a finding is never hidden by a partial cover.
//!
//! Rules are judged per group, as Cloud Config does: an instance in several groups combines
//! them, which the flow verdicts (and the exposure report to come) answer exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use model::{
    Direction, GroupType, IpProtocol, NicType, Peer, Permission, Policy, SecurityGroupId,
    SecurityGroupRuleId,
};

use crate::state::{GroupEntry, State};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Hygiene.
    Low,
    /// Risky; fix soon.
    Medium,
    /// Exposed now.
    High,
}

impl Severity {
    /// Wire and CLI form.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            _ => Err(format!("unknown severity {s}: use low, medium or high")),
        }
    }
}

/// The audit's checks, a closed set: each finding names the one that made it.
macro_rules! checks {
    ($($variant:ident => $wire:literal,)*) => {
        /// One of the audit's checks.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Check {
            $(
                #[doc = concat!("`", $wire, "`.")]
                $variant,
            )*
        }

        impl Check {
            /// Every check, in the order the audit runs them.
            pub const ALL: &'static [Check] = &[$(Check::$variant),*];

            /// Its name in answers (`Check` of `DescribeSecurityGroupAudit`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Check::$variant => $wire,)*
                }
            }
        }
    };
}

checks! {
    RiskyPortOpen => "risky-port-open",
    AllProtocolsOpen => "all-protocols-open",
    AllPortsOpen => "all-ports-open",
    InternalRuleTooWide => "internal-rule-too-wide",
    CidrInsteadOfGroup => "cidr-instead-of-group",
    DuplicateRule => "duplicate-rule",
    ShadowedRule => "shadowed-rule",
    NearRuleLimit => "near-rule-limit",
    NearGroupReferenceLimit => "near-group-reference-limit",
    NearMemberLimit => "near-member-limit",
    UnlabelledGroup => "unlabelled-group",
    UnusedGroup => "unused-group",
    LeaveRemovesLastGroup => "leave-removes-last-group",
    OneGroupForMostInstances => "one-group-for-most-instances",
    UnusedRule => "unused-rule",
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The check that made it.
    pub check: Check,
    /// How serious.
    pub severity: Severity,
    /// The group concerned.
    pub group: SecurityGroupId,
    /// The rule concerned, if one.
    pub rule: Option<SecurityGroupRuleId>,
    /// One line: what is wrong.
    pub message: String,
    /// One line: how to fix it.
    pub fix: String,
}

/// Audit settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Ports that must not be open to the internet (Cloud Config's default list plus the
    /// seed's databases).
    pub risky_ports: Vec<u16>,
    /// Rules per group (ECS limit).
    pub rules_per_group: usize,
    /// Group-reference rules per basic group.
    pub group_rules_per_group: usize,
    /// Instances per basic group.
    pub members_per_group: usize,
    /// Fraction of a limit that counts as close.
    pub near_limit: f64,
    /// What the control plane knows of each group's name, description and tags (the policy
    /// state does not carry them); groups absent here are not checked for labels.
    pub labels: BTreeMap<SecurityGroupId, GroupLabel>,
    /// Leaves being planned, `(instance, group)`: an instance that would be left in no
    /// group is reported.
    pub planned_leaves: Vec<(model::MemberId, SecurityGroupId)>,
    /// Groups that rules the state does not hold reference (an audit over one account's
    /// share does not hold the other accounts' rules naming its groups): not unused.
    pub referenced_elsewhere: BTreeSet<SecurityGroupId>,
    /// What the hosts counted of the rules' decisions on real packets; `None` (offline,
    /// from a policy file) skips `unused-rule`.
    pub usage: Option<RuleUsage>,
}

/// The hit counts `unused-rule` reads: a rule that decided no flow for `window` seconds is
/// reported, once its decisions have been counted that long (a rule made yesterday, or a
/// server that began counting an hour ago, calls nothing unused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleUsage {
    /// Seconds without a hit that make a rule unused.
    pub window: u64,
    /// Per rule: seconds its decisions have been counted (since counting began or it was
    /// made, whichever is later), and seconds since its last hit (`None`: never).
    pub rules: BTreeMap<SecurityGroupRuleId, (u64, Option<u64>)>,
    /// Per group: the same for the group's decisions without a rule (intra-group accepts,
    /// defaults); with its rules', what `unused-group` weighs for a group with members.
    pub groups: BTreeMap<SecurityGroupId, (u64, Option<u64>)>,
}

/// `2d 3h`, `5h`, `40m`: a duration as a finding says it.
fn span(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, h) => format!("{h}h"),
        (d, 0) => format!("{d}d"),
        (d, h) => format!("{d}d {h}h"),
    }
}

/// `unused-rule`: rules that decided no flow within the window, counted for at least as
/// long; and `unused-group` for a group with members none of whose decisions, by rule or
/// not, came within it (a group without members is the other `unused-group`).
fn unused_by_traffic(state: &State, usage: &RuleUsage, out: &mut Vec<Finding>) {
    let recent = |since: Option<u64>| since.is_some_and(|s| s < usage.window);
    for g in state.groups() {
        let rules_recent = g
            .rules()
            .any(|(_, p)| usage.rules.get(&p.id).is_some_and(|(_, s)| recent(*s)));
        if let Some(&(observed, since_hit)) = usage.groups.get(&g.group.id) {
            if !g.members.is_empty()
                && observed >= usage.window
                && !recent(since_hit)
                && !rules_recent
            {
                out.push(Finding {
                    check: Check::UnusedGroup,
                    severity: Severity::Low,
                    group: g.group.id.clone(),
                    rule: None,
                    message: format!(
                        "{} has {} but decided no flow in the last {} (counted for {})",
                        g.group.id,
                        match g.members.len() {
                            1 => "1 instance".to_string(),
                            n => format!("{n} instances"),
                        },
                        span(usage.window),
                        span(observed)
                    ),
                    fix: "check whether its instances still need it; if not, have them leave and delete it".into(),
                });
            }
        }
        for (_, p) in g.rules() {
            let Some(&(observed, since_hit)) = usage.rules.get(&p.id) else {
                continue;
            };
            if observed < usage.window || recent(since_hit) {
                continue;
            }
            let last = match since_hit {
                Some(s) => format!("its last {} ago", span(s)),
                None => "none ever".into(),
            };
            out.push(Finding {
                check: Check::UnusedRule,
                severity: Severity::Low,
                group: g.group.id.clone(),
                rule: Some(p.id.clone()),
                message: format!(
                    "{} decided no flow in the last {} ({last}; its hits counted for {})",
                    p.id,
                    span(usage.window),
                    span(observed)
                ),
                fix: "revoke it if nothing needs it, or note in its description what rare traffic it is for".into(),
            });
        }
    }
}

/// A group's human-facing labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupLabel {
    /// `SecurityGroupName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// Number of tags.
    pub tags: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            risky_ports: vec![22, 3389, 3306, 6379],
            rules_per_group: 200,
            group_rules_per_group: 20,
            members_per_group: 2000,
            near_limit: 0.8,
            labels: BTreeMap::new(),
            planned_leaves: Vec::new(),
            referenced_elsewhere: BTreeSet::new(),
            usage: None,
        }
    }
}

fn is_anywhere(p: &Permission) -> bool {
    matches!(&p.peer, Peer::Cidr(n) if n.prefix_len() == 0)
}

/// Whether the rule matches every local address and source port of its protocol and
/// destination range: what a rule must be for the probes to show it can cover another. A
/// port-list rule is never counted, so it is never taken to shadow anything (conservative:
/// the audit then misses a shadowing rather than reporting a false one).
fn is_unrestricted(p: &Permission) -> bool {
    p.local.is_none()
        && p.port_list.is_none()
        && p.protocol
            .ports()
            .is_none_or(|ports| ports.source.is_none())
}

/// A group's rules of one direction, in precedence order.
fn ordered(group: &GroupEntry, direction: Direction) -> Vec<(u64, &Permission)> {
    let mut rules: Vec<(u64, &Permission)> = group
        .rules()
        .filter(|(_, p)| p.direction == direction)
        .collect();
    rules.sort_by_key(|(seq, p)| (p.priority, p.policy == Policy::Accept, *seq));
    rules
}

/// The probe addresses of `within`: the first address of every cell that the CIDR peers of
/// `rules` cut it into.
fn address_probes(rules: &[(u64, &Permission)], within: &IpNet) -> Vec<IpAddr> {
    let key = |a: IpAddr| -> u128 {
        match a {
            IpAddr::V4(v) => u128::from(u32::from(v)),
            IpAddr::V6(v) => u128::from(v),
        }
    };
    let back = |k: u128| -> IpAddr {
        match within {
            IpNet::V4(_) => IpAddr::V4((k as u32).into()),
            IpNet::V6(_) => IpAddr::V6(k.into()),
        }
    };
    let (lo, hi) = (key(within.network()), key(within.broadcast()));
    let mut cuts = BTreeSet::from([lo]);
    for (_, p) in rules {
        if let Peer::Cidr(n) = &p.peer {
            if matches!(n, IpNet::V4(_)) == matches!(within, IpNet::V4(_)) {
                let (a, b) = (key(n.network()), key(n.broadcast()));
                if a > lo && a <= hi {
                    cuts.insert(a);
                }
                if b < hi && b >= lo {
                    cuts.insert(b + 1);
                }
            }
        }
    }
    cuts.into_iter().map(back).collect()
}

/// The probe ports of `[lo, hi]`, cut at every port boundary of `rules`.
fn port_probes(rules: &[(u64, &Permission)], lo: u16, hi: u16) -> Vec<u16> {
    let mut cuts = BTreeSet::from([lo]);
    for (_, p) in rules {
        // A port-list rule never covers another (see `is_unrestricted`): no cuts of its own.
        if let Some(ports) = p.protocol.ports().filter(|_| p.port_list.is_none()) {
            let (a, b) = (ports.destination.start(), ports.destination.end());
            if a > lo && a <= hi {
                cuts.insert(a);
            }
            if b < hi && b >= lo {
                cuts.insert(b + 1);
            }
        }
    }
    cuts.into_iter().collect()
}

/// Whether `target` decides some packet among the probes (peer address × protocol × port)
/// when only the group's unrestricted CIDR rules can come before it.
fn reachable(
    rules: &[(u64, &Permission)],
    target: &Permission,
    protocols: &[u8],
    ports: &[u16],
) -> bool {
    let Peer::Cidr(net) = &target.peer else {
        return true;
    };
    let addresses = address_probes(rules, net);
    for &proto in protocols {
        for &port in ports {
            for &addr in &addresses {
                let first = rules.iter().map(|(_, p)| *p).find(|p| {
                    std::ptr::eq(*p, target)
                        || (is_unrestricted(p)
                            && p.nic_type == target.nic_type
                            && matches!(&p.peer, Peer::Cidr(n) if n.contains(&addr))
                            && p.protocol.matches(proto, 0, port))
                });
                if first.is_some_and(|p| std::ptr::eq(p, target)) {
                    return true;
                }
            }
        }
    }
    false
}

/// The probe ports of every range, each cut at the port boundaries of `rules`.
fn range_probes(rules: &[(u64, &Permission)], ranges: &[(u16, u16)]) -> Vec<u16> {
    ranges
        .iter()
        .flat_map(|&(lo, hi)| port_probes(rules, lo, hi))
        .collect()
}

/// The protocols and destination port ranges a rule covers, for probing: TCP/UDP with their
/// range (or their port list's entries), or every protocol with ports 0 for the rest.
fn space(state: &State, p: &Permission) -> (Vec<u8>, Vec<(u16, u16)>) {
    let ranges = || -> Vec<(u16, u16)> {
        state.destination_ports(p).map_or(vec![(1, 65535)], |rs| {
            rs.iter().map(|r| (r.start(), r.end())).collect()
        })
    };
    match p.protocol.ip_protocol() {
        IpProtocol::Tcp => (vec![model::ip_proto::TCP], ranges()),
        IpProtocol::Udp => (vec![model::ip_proto::UDP], ranges()),
        IpProtocol::All => (
            vec![
                model::ip_proto::TCP,
                model::ip_proto::UDP,
                model::ip_proto::ICMP,
                model::ip_proto::GRE,
            ],
            vec![(0, 65535)],
        ),
        other => (vec![other.number().unwrap_or(0)], vec![(0, 0)]),
    }
}

/// Runs every check over the state's groups. Findings are sorted by severity (highest
/// first), then group and rule.
pub fn audit(state: &State, cfg: &AuditConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut referenced: BTreeSet<&SecurityGroupId> = cfg.referenced_elsewhere.iter().collect();
    for g in state.groups() {
        for (_, p) in g.rules() {
            if let Peer::Group(r) = &p.peer {
                referenced.insert(&r.id);
            }
        }
    }
    // The intranet addresses per owner and network: a rule's block is judged against its
    // own account's instances in its group's network only (another account's addresses are
    // not the rule's business, and an audit must not count them).
    let mut private_ips: HashMap<(model::AccountId, Option<&model::VpcId>), Vec<IpAddr>> =
        HashMap::new();
    for i in state.instances() {
        (private_ips.entry((i.owner, i.vpc_id.as_ref())).or_default())
            .extend(i.intranet_addresses());
    }
    for g in state.groups() {
        let gid = &g.group.id;
        let ingress = ordered(g, Direction::Ingress);
        let mut finding =
            |check, severity, rule: Option<&Permission>, message: String, fix: &str| {
                out.push(Finding {
                    check,
                    severity,
                    group: gid.clone(),
                    rule: rule.map(|p| p.id.clone()),
                    message,
                    fix: fix.to_string(),
                })
            };
        // Whether the internet reaches the group's members at all: by a public address
        // (a VPC's gateway carries it to the member; a classic member's internet interface
        // holds it). A classic intranet rule for 0.0.0.0/0 opens the member to the whole
        // classic network instead, every account's instances: exposed either way.
        let public_path = g
            .members
            .iter()
            .any(|m| state.instance(m).is_ok_and(|i| i.public_ip.is_some()));
        let exposed_now = |p: &Permission| {
            public_path || (g.group.vpc_id.is_none() && p.nic_type == NicType::Intranet)
        };
        for (_, p) in &ingress {
            let p = *p;
            let (protocols, ranges) = space(state, p);
            // Open to anywhere but reached by nothing outside now: a finding still (a member
            // given a public address is exposed at once), one level lower, and saying why.
            let (severity, unreached) = if exposed_now(p) {
                (Severity::High, "")
            } else {
                (
                    Severity::Medium,
                    "; no member has a public address, so nothing on the internet reaches it yet",
                )
            };
            if p.policy == Policy::Accept && is_anywhere(p) {
                let risky: Vec<u16> = cfg
                    .risky_ports
                    .iter()
                    .copied()
                    .filter(|port| {
                        ranges.iter().any(|(lo, hi)| (lo..=hi).contains(&port))
                            && protocols.contains(&model::ip_proto::TCP)
                    })
                    .filter(|port| reachable(&ingress, p, &[model::ip_proto::TCP], &[*port]))
                    .collect();
                if !risky.is_empty() {
                    finding(
                        Check::RiskyPortOpen,
                        severity,
                        Some(p),
                        format!("{} opens risky port(s) {:?} to {}{unreached}", p.id, risky, p.peer_display()),
                        "restrict the source to known addresses or groups, or add a higher-priority drop",
                    );
                }
                if p.protocol.ip_protocol() == IpProtocol::All
                    && reachable(&ingress, p, &protocols, &range_probes(&ingress, &ranges))
                {
                    finding(
                        Check::AllProtocolsOpen,
                        severity,
                        Some(p),
                        format!(
                            "{} accepts every protocol from {}{unreached}",
                            p.id,
                            p.peer_display()
                        ),
                        "authorize only the protocols and ports the service needs",
                    );
                } else if ranges == [(1, 65535)]
                    && reachable(&ingress, p, &protocols, &range_probes(&ingress, &ranges))
                {
                    finding(
                        Check::AllPortsOpen,
                        severity,
                        Some(p),
                        format!(
                            "{} opens every {} port to {}{unreached}",
                            p.id,
                            p.protocol.ip_protocol().as_wire(),
                            p.peer_display()
                        ),
                        "authorize only the ports the service needs",
                    );
                }
            }
            let internal = p.nic_type == NicType::Intranet;
            // In a VPC every rule is intranet and 0.0.0.0/0 is how a service is published (the
            // risky-port checks judge that); on the classic network an intranet rule for
            // 0.0.0.0/0 opens the internal interface to everyone.
            let classic = g.group.vpc_id.is_none();
            let too_wide = matches!(&p.peer, Peer::Cidr(n)
                if (n.prefix_len() == 0 && classic) || *n == "10.0.0.0/8".parse::<IpNet>().expect("literal"));
            if internal && p.policy == Policy::Accept && too_wide {
                finding(
                    Check::InternalRuleTooWide,
                    Severity::Medium,
                    Some(p),
                    format!(
                        "{} authorizes {} on the internal network",
                        p.id,
                        p.peer_display()
                    ),
                    "authorize the security groups that need access instead of a wide CIDR block",
                );
            } else if internal && p.policy == Policy::Accept {
                // A /0 publishes a service; narrower blocks that hold instances name them.
                if let Peer::Cidr(n) = &p.peer {
                    let covered = (private_ips.get(&(g.group.owner, g.group.vpc_id.as_ref())))
                        .map_or(0, |ips| ips.iter().filter(|a| n.contains(*a)).count());
                    if covered > 0 && n.prefix_len() > 0 {
                        finding(
                            Check::CidrInsteadOfGroup,
                            Severity::Low,
                            Some(p),
                            format!("{} authorizes {n}, which holds {covered} instance address(es)", p.id),
                            "authorize the instances' security group: private addresses change, memberships follow",
                        );
                    }
                }
            }
        }
        for direction in [Direction::Ingress, Direction::Egress] {
            let rules = ordered(g, direction);
            for (i, (_, p)) in rules.iter().enumerate() {
                if let Some((_, twin)) = rules[..i].iter().find(|(_, q)| q.same_rule(p)) {
                    finding(
                        Check::DuplicateRule,
                        Severity::Low,
                        Some(p),
                        format!("{} repeats {}", p.id, twin.id),
                        "revoke the duplicate",
                    );
                    continue;
                }
                let (protocols, ranges) = space(state, p);
                if matches!(p.peer, Peer::Cidr(_))
                    && is_unrestricted(p)
                    && !reachable(&rules, p, &protocols, &range_probes(&rules, &ranges))
                {
                    finding(
                        Check::ShadowedRule,
                        Severity::Low,
                        Some(p),
                        format!("{} can never decide: higher-priority rules cover everything it matches", p.id),
                        "revoke it, or raise its priority if it was meant to win",
                    );
                }
            }
        }
        let members = g.members.len();
        let group_rules = g
            .rules()
            .filter(|(_, p)| matches!(p.peer, Peer::Group(_)))
            .count();
        let near = |used: usize, limit: usize| used as f64 >= cfg.near_limit * limit as f64;
        if near(g.len(), cfg.rules_per_group) {
            finding(
                Check::NearRuleLimit,
                Severity::Medium,
                None,
                format!("{gid} has {} of {} rules", g.len(), cfg.rules_per_group),
                "split the rules over several groups",
            );
        }
        if g.group.group_type == GroupType::Normal && near(group_rules, cfg.group_rules_per_group) {
            finding(
                Check::NearGroupReferenceLimit,
                Severity::Medium,
                None,
                format!(
                    "{gid} has {group_rules} of {} group-reference rules",
                    cfg.group_rules_per_group
                ),
                "group the referenced instances into fewer groups",
            );
        }
        if g.group.group_type == GroupType::Normal && near(members, cfg.members_per_group) {
            finding(
                Check::NearMemberLimit,
                Severity::Medium,
                None,
                format!("{gid} has {members} of {} instances", cfg.members_per_group),
                "use an enterprise group or split the fleet",
            );
        }
        if let Some(label) = cfg.labels.get(gid) {
            if label.name.trim().is_empty()
                || (label.description.trim().is_empty() && label.tags == 0)
            {
                finding(
                    Check::UnlabelledGroup,
                    Severity::Low,
                    None,
                    format!("{gid} has no name, or neither a description nor tags"),
                    "name the group after its role and describe it or tag it, so its rules can be reviewed",
                );
            }
        }
        if members == 0 && !referenced.contains(gid) {
            finding(
                Check::UnusedGroup,
                Severity::Low,
                None,
                format!("{gid} has no instances and no rule references it"),
                "delete it so that nobody joins it by mistake",
            );
        }
    }
    // Planned leaves that would leave an instance in no group (ECS refuses the last one with
    // InstanceLastSecurityGroup; the plan as a whole is what matters).
    let mut planned: BTreeMap<&model::MemberId, BTreeSet<&SecurityGroupId>> = BTreeMap::new();
    for (i, g) in &cfg.planned_leaves {
        planned.entry(i).or_default().insert(g);
    }
    for (id, leaving) in planned {
        let Ok(instance) = state.instance(id) else {
            continue;
        };
        let remaining = instance
            .security_groups
            .iter()
            .filter(|g| !leaving.contains(g))
            .count();
        if remaining == 0 {
            if let Some(last) = instance.security_groups.last() {
                out.push(Finding {
                    check: Check::LeaveRemovesLastGroup,
                    severity: Severity::High,
                    group: last.clone(),
                    rule: None,
                    message: format!("the planned leaves would take {id} out of every group"),
                    fix: "join the instance to its new group before it leaves the old ones".into(),
                });
            }
        }
    }
    // One group holding most instances of an account.
    let mut per_account: HashMap<model::AccountId, (usize, HashMap<&SecurityGroupId, usize>)> =
        HashMap::new();
    for i in state.instances() {
        let entry = per_account.entry(i.owner).or_default();
        entry.0 += 1;
        for g in &i.security_groups {
            *entry.1.entry(g).or_default() += 1;
        }
    }
    for (total, groups) in per_account.values() {
        for (g, n) in groups {
            if *total >= 10 && *n * 2 > *total {
                out.push(Finding {
                    check: Check::OneGroupForMostInstances,
                    severity: Severity::Medium,
                    group: (*g).clone(),
                    rule: None,
                    message: format!("{g} holds {n} of the account's {total} instances"),
                    fix: "give each role its own group with rules for that role".into(),
                });
            }
        }
    }
    if let Some(usage) = &cfg.usage {
        unused_by_traffic(state, usage, &mut out);
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.group.cmp(&b.group))
            .then_with(|| a.rule.cmp(&b.rule))
    });
    out
}

trait PeerDisplay {
    fn peer_display(&self) -> String;
}

impl PeerDisplay for Permission {
    fn peer_display(&self) -> String {
        match &self.peer {
            Peer::Cidr(n) => n.to_string(),
            Peer::Group(g) => g.id.to_string(),
            Peer::PrefixList(l) => l.to_string(),
        }
    }
}
