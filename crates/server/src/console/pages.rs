//! The console's HTML: one function per page, over the JSON answers of the API's actions.
//! `maud` escapes every interpolated value, so tenant strings (names, descriptions, tags)
//! are text, never markup; nothing here writes a script or a style attribute.

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::{items, text, Frame, Notice};
use crate::actions::Action;

/// The plain-words name of a change, for its outcome notice.
pub(crate) fn describe_action(action: Action) -> &'static str {
    match action {
        Action::AuthorizeSecurityGroup => "The inbound rule",
        Action::AuthorizeSecurityGroupEgress => "The outbound rule",
        Action::RevokeSecurityGroup | Action::RevokeSecurityGroupEgress => "The rule deletion",
        Action::ModifySecurityGroupRule | Action::ModifySecurityGroupEgressRule => {
            "The rule change"
        }
        Action::ModifySecurityGroupAttribute => "The name and description",
        Action::ModifySecurityGroupPolicy => "The intra-group policy",
        Action::DeleteSecurityGroup => "The group deletion",
        Action::JoinSecurityGroup => "The join",
        Action::LeaveSecurityGroup => "The leave",
        Action::TagResources => "The tag",
        Action::UntagResources => "The tag removal",
        Action::CreatePrefixList => "The prefix list",
        Action::ModifyPrefixList => "The entry change",
        Action::DeletePrefixList => "The prefix list deletion",
        Action::AttachNetworkInterface => "The attachment",
        Action::DetachNetworkInterface => "The detachment",
        _ => "The change",
    }
}

const NAV: [(&str, &str); 7] = [
    ("/console/groups", "Security groups"),
    ("/console/instances", "Instances"),
    ("/console/flow", "Check a flow"),
    ("/console/exposure", "Exposure"),
    ("/console/prefix-lists", "Prefix lists"),
    ("/console/audit", "Audit"),
    ("/console/map", "Reachability map"),
];

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · Stockade console" }
        link rel="icon" href="data:,";
        link rel="stylesheet" href="/console/assets/console.css";
        script src="/console/assets/console.js" defer {}
    }
}

fn notice(n: &Option<Notice>) -> Markup {
    html! {
        @match n {
            Some(Notice::Done(m)) => div.notice.ok role="status" { (m) },
            Some(Notice::Failed { code, message }) => div.notice.error role="alert" {
                strong { (code) } ": " (message)
            },
            None => {},
        }
    }
}

/// A signed-in page.
fn layout(frame: &Frame, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    a.brand href="/console/groups" { "Stockade" }
                    nav aria-label="Main" {
                        ul {
                            @for (href, label) in NAV {
                                li {
                                    @if frame.here.starts_with(href) {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    span.who { "Region " (frame.region) " · key " (frame.account_key) }
                    form.signout method="post" action="/console/signout" {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                main #main {
                    h1 { (title) }
                    (notice(&frame.flash))
                    (body)
                }
            }
        }
    }
}

/// The sign-in form.
pub(crate) fn signin(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head("Sign in")) }
            body.signin {
                main #main {
                    h1 { "Sign in to the Stockade console" }
                    @if let Some(e) = error { div.notice.error role="alert" { (e) } }
                    form method="post" action="/console/signin" {
                        label for="ak" { "AccessKey ID" }
                        input #ak name="AccessKeyId" autocomplete="username" required;
                        label for="secret" { "AccessKey secret" }
                        input #secret name="AccessKeySecret" type="password" autocomplete="current-password" required;
                        button type="submit" { "Sign in" }
                    }
                    p.hint { "The secret is checked once and kept by no page: the browser holds only a session cookie." }
                }
            }
        }
    }
}

/// A refusal of a forged or stale form.
pub(crate) fn refused(why: &str) -> Markup {
    problem("Request refused", why)
}

/// A page for a request the console cannot answer otherwise: `title` and why, with a way back.
pub(crate) fn problem(title: &str, why: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body { main #main { h1 { (title) } div.notice.error role="alert" { (why) } p { a href="/console/groups" { "Back to the console" } } } }
        }
    }
}

/// A group that does not exist for this account (another account's ids show nothing more).
pub(crate) fn missing(frame: &Frame, id: &str) -> Markup {
    layout(
        frame,
        "Security group not found",
        html! { p { "No security group " code { (id) } " in this region of your account." } },
    )
}

fn csrf(frame: &Frame) -> Markup {
    html! { input type="hidden" name="csrf" value=(frame.csrf); }
}

/// A one-button form running an action through `/console/do`.
fn action_button(
    frame: &Frame,
    action: Action,
    fields: &[(&str, &str)],
    label: &str,
    disabled: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action="/console/do" {
            (csrf(frame))
            input type="hidden" name="Action" value=(action.name());
            input type="hidden" name="return" value=(frame.here);
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            @if let Some(why) = disabled {
                button type="submit" disabled title=(why) aria-label=(format!("{label} (unavailable: {why})")) { (label) }
            } @else {
                button type="submit" { (label) }
            }
        }
    }
}

fn tags(v: &Value) -> Vec<(String, String)> {
    items(v, "Tags", "Tag")
        .iter()
        .map(|t| (text(t, "TagKey"), text(t, "TagValue")))
        .collect()
}

fn select(id: &str, name: &str, label: &str, options: &[(String, String)], chosen: &str) -> Markup {
    html! {
        label for=(id) { (label) }
        select #(id) name=(name) {
            @for (value, shown) in options {
                @if value == chosen {
                    option value=(value) selected { (shown) }
                } @else {
                    option value=(value) { (shown) }
                }
            }
        }
    }
}

/// `GET /console/groups`.
pub(crate) fn groups(frame: &Frame, q: &[(String, String)], list: &Value, vpcs: &Value) -> Markup {
    let get = |n: &str| super::field(q, n).to_string();
    let mut vpc_options = vec![(String::new(), "Any".to_string())];
    for v in items(vpcs, "Vpcs", "Vpc") {
        let id = text(v, "VpcId");
        vpc_options.push((id.clone(), format!("{id} {}", text(v, "VpcName"))));
    }
    let types = [
        (String::new(), "Any".to_string()),
        ("normal".to_string(), "Basic (normal)".to_string()),
        (
            "enterprise".to_string(),
            "Advanced (enterprise)".to_string(),
        ),
    ];
    let groups = items(list, "SecurityGroups", "SecurityGroup");
    let mut create_vpcs = vpc_options.clone();
    create_vpcs[0] = (String::new(), "None (classic network)".to_string());
    layout(
        frame,
        "Security groups",
        html! {
            form.filters method="get" action="/console/groups" aria-label="Filter security groups" {
                (select("f-vpc", "VpcId", "VPC", &vpc_options, &get("VpcId")))
                label for="f-name" { "Name" }
                input #f-name name="SecurityGroupName" value=(get("SecurityGroupName"));
                label for="f-tagkey" { "Tag key" }
                input #f-tagkey name="TagKey" value=(get("TagKey"));
                label for="f-tagvalue" { "Tag value" }
                input #f-tagvalue name="TagValue" value=(get("TagValue"));
                (select("f-type", "SecurityGroupType", "Type", &types, &get("SecurityGroupType")))
                button type="submit" { "Filter" }
            }
            table {
                caption { (groups.len()) " security groups" }
                thead { tr { th scope="col" { "ID" } th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "VPC" } th scope="col" { "Rules" } th scope="col" { "Members" } th scope="col" { "Tags" } th scope="col" { "Description" } } }
                tbody {
                    @for g in groups {
                        tr {
                            td { a href=(format!("/console/groups/{}", text(g, "SecurityGroupId"))) { (text(g, "SecurityGroupId")) } }
                            td.name { (text(g, "SecurityGroupName")) }
                            td { (text(g, "SecurityGroupType")) }
                            td { (text(g, "VpcId")) }
                            td.num { (text(g, "RuleCount")) }
                            td.num { (text(g, "EcsCount")) }
                            td { @for (k, v) in tags(g) { span.tag { (k) "=" (v) } " " } }
                            td.description { (text(g, "Description")) }
                        }
                    }
                }
            }
            section aria-labelledby="create-h" {
                h2 #create-h { "Create a security group" }
                form.stacked method="post" action="/console/groups" {
                    (csrf(frame))
                    label for="c-name" { "Name" }
                    input #c-name name="SecurityGroupName" maxlength="128" placeholder="sg-web";
                    label for="c-description" { "Description" }
                    input #c-description name="Description" maxlength="256";
                    (select("c-vpc", "VpcId", "VPC", &create_vpcs, ""))
                    (select("c-type", "SecurityGroupType", "Type", &types[1..], "normal"))
                    label for="c-tagkey" { "Tag key (optional)" }
                    input #c-tagkey name="TagKey" maxlength="128";
                    label for="c-tagvalue" { "Tag value" }
                    input #c-tagvalue name="TagValue" maxlength="128";
                    button type="submit" { "Create" }
                }
            }
        },
    )
}

/// What the group page shows.
pub(crate) struct GroupView<'a> {
    pub(crate) attribute: &'a Value,
    pub(crate) summary: &'a Value,
    pub(crate) members: &'a [Value],
    pub(crate) instances: &'a [Value],
    pub(crate) references: &'a [Value],
    /// The rule being edited, if any.
    pub(crate) editing: &'a str,
    /// `DescribeSecurityGroupRuleHits`'s answer: what each rule decided on real packets.
    pub(crate) hits: &'a Value,
}

/// A count of decisions as a cell says it: `12 flows, last 2026-12-08T04:00:00Z`.
fn hits_cell(hit: Option<&Value>) -> String {
    let flows = hit.and_then(|h| h["NewFlows"].as_u64()).unwrap_or(0);
    match flows {
        0 => "none".into(),
        1 => format!(
            "1 flow, last {}",
            text(hit.unwrap_or(&Value::Null), "LastHitTime")
        ),
        n => format!(
            "{n} flows, last {}",
            text(hit.unwrap_or(&Value::Null), "LastHitTime")
        ),
    }
}

/// The permissions of one direction, in the order the engine applies them within the group.
fn in_engine_order<'a>(permissions: &'a [Value], direction: &str) -> Vec<&'a Value> {
    let mut rules: Vec<&Value> = permissions
        .iter()
        .filter(|p| text(p, "Direction") == direction)
        .collect();
    // The answer lists rules in creation order; a stable sort by precedence leaves that
    // order among equals, exactly as the engine breaks ties inside one group.
    rules.sort_by_key(|p| {
        let priority = text(p, "Priority")
            .parse::<model::Priority>()
            .unwrap_or(model::Priority::LOWEST);
        let policy = text(p, "Policy")
            .parse::<model::Policy>()
            .unwrap_or(model::Policy::Accept);
        model::precedence(priority, policy)
    });
    rules
}

/// The wire field names of a rule's two sides in one direction: the peer's (`Source…` for
/// inbound, `Dest…` for outbound) and the instance's own.
struct Sides {
    peer: &'static str,
    peer_v6: &'static str,
    local: &'static str,
    local_v6: &'static str,
}

impl Sides {
    fn of(direction: &str) -> Sides {
        if direction == "ingress" {
            Sides {
                peer: "Source",
                peer_v6: "Ipv6SourceCidrIp",
                local: "DestCidrIp",
                local_v6: "Ipv6DestCidrIp",
            }
        } else {
            Sides {
                peer: "Dest",
                peer_v6: "Ipv6DestCidrIp",
                local: "SourceCidrIp",
                local_v6: "Ipv6SourceCidrIp",
            }
        }
    }
}

/// The instance's own side of a quintuple rule (the destination of inbound traffic, the
/// source of outbound), if the rule names one.
fn local_side(p: &Value, direction: &str) -> String {
    let f = Sides::of(direction);
    [text(p, f.local), text(p, f.local_v6)]
        .into_iter()
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

/// The peer of a rule as shown: a CIDR, a group (linked) or a prefix list, and the local
/// block when the rule has one.
fn peer(p: &Value, direction: &str) -> Markup {
    let local = local_side(p, direction);
    html! {
        (peer_only(p, direction))
        @if !local.is_empty() { br; span.hint { "local " code { (local) } } }
    }
}

fn peer_only(p: &Value, direction: &str) -> Markup {
    let Sides {
        peer: side,
        peer_v6: v6,
        ..
    } = Sides::of(direction);
    let group = text(p, &format!("{side}GroupId"));
    let list = text(p, &format!("{side}PrefixListId"));
    html! {
        @if !group.is_empty() {
            "group " a href=(format!("/console/groups/{group}")) { (group) }
            " " span.name { (text(p, &format!("{side}GroupName"))) }
        } @else if !list.is_empty() {
            "prefix list " code { (list) }
        } @else if !text(p, v6).is_empty() {
            code { (text(p, v6)) }
        } @else {
            code { (text(p, &format!("{side}CidrIp"))) }
        }
    }
}

fn peer_kind_and_value(p: &Value, direction: &str) -> (&'static str, String) {
    let Sides {
        peer: side,
        peer_v6: v6,
        ..
    } = Sides::of(direction);
    for (kind, name) in [
        ("group", format!("{side}GroupId")),
        ("prefixlist", format!("{side}PrefixListId")),
        ("ipv6", v6.to_string()),
        ("cidr", format!("{side}CidrIp")),
    ] {
        let v = text(p, &name);
        if !v.is_empty() {
            return (kind, v);
        }
    }
    ("cidr", String::new())
}

fn rules_table(
    frame: &Frame,
    group: &str,
    rules: &[&Value],
    direction: &str,
    hits: &[Value],
) -> Markup {
    let hit = |id: &str| hits.iter().find(|h| text(h, "SecurityGroupRuleId") == id);
    let (title, peer_label, revoke) = if direction == "ingress" {
        ("Inbound rules", "Source", Action::RevokeSecurityGroup)
    } else {
        (
            "Outbound rules",
            "Destination",
            Action::RevokeSecurityGroupEgress,
        )
    };
    html! {
        table.rules data-direction=(direction) {
            caption { (title) ", in the order they apply (priority 1 first, drop before accept, then oldest first)" }
            thead { tr {
                th scope="col" { "#" } th scope="col" { "Priority" } th scope="col" { "Policy" } th scope="col" { "Protocol" }
                th scope="col" { "Port range" } th scope="col" { (peer_label) } th scope="col" { "Source ports" } th scope="col" { "NIC" }
                th scope="col" { "Description" } th scope="col" { "Rule" } th scope="col" { "Decided" } th scope="col" { "Actions" }
            } }
            tbody {
                @if rules.is_empty() { tr { td colspan="12" { "No rules: " @if direction == "ingress" { "all inbound traffic is dropped, except as the intra-group policy allows." } @else { "all outbound traffic is accepted." } } } }
                @for (n, p) in rules.iter().enumerate() {
                    @let id = text(p, "SecurityGroupRuleId");
                    tr id=(id) class=(text(p, "Policy").to_ascii_lowercase()) {
                        td.num { (n + 1) }
                        td.num { (text(p, "Priority")) }
                        td { (text(p, "Policy")) }
                        td { (text(p, "IpProtocol")) }
                        td { @if text(p, "PortRangeListId").is_empty() { (text(p, "PortRange")) } @else {
                            "list " code { (text(p, "PortRangeListId")) } " " (text(p, "PortRangeListName"))
                        } }
                        td { (peer(p, direction)) }
                        td { (text(p, "SourcePortRange")) }
                        td { (text(p, "NicType")) }
                        td.description { (text(p, "Description")) }
                        td { code { (id) } }
                        td.hits { (hits_cell(hit(&id))) }
                        td {
                            a href=(format!("/console/groups/{group}?edit={id}#rule-form")) aria-label=(format!("Edit rule {id}")) { "Edit" }
                            " "
                            (action_button(frame, revoke, &[("SecurityGroupId", group), ("SecurityGroupRuleId.1", &id)], "Delete", None))
                        }
                    }
                }
            }
        }
    }
}

fn rule_form(frame: &Frame, group: &str, editing: Option<&Value>) -> Markup {
    let get = |n: &str| editing.map(|p| text(p, n)).unwrap_or_default();
    let direction = editing.map_or("ingress".to_string(), |p| text(p, "Direction"));
    let (kind, value) = editing.map_or(("cidr", String::new()), |p| {
        peer_kind_and_value(p, &direction)
    });
    let opt = |v: &str, l: &str| (v.to_string(), l.to_string());
    let protocols = [
        opt("TCP", "TCP"),
        opt("UDP", "UDP"),
        opt("ICMP", "ICMP"),
        opt("ICMPv6", "ICMPv6"),
        opt("GRE", "GRE"),
        opt("ALL", "All protocols"),
    ];
    let protocol = if editing.is_some() {
        get("IpProtocol")
            .to_ascii_uppercase()
            .replace("ICMPV6", "ICMPv6")
    } else {
        "TCP".to_string()
    };
    let policy = if editing.is_some() {
        get("Policy").to_ascii_lowercase()
    } else {
        "accept".to_string()
    };
    let priority = if editing.is_some() {
        get("Priority")
    } else {
        "1".to_string()
    };
    let nic = if editing.is_some() {
        get("NicType")
    } else {
        "intranet".to_string()
    };
    html! {
        section #rule-form aria-labelledby="rule-h" {
            @if let Some(p) = editing {
                h2 #rule-h { "Edit rule " (text(p, "SecurityGroupRuleId")) }
            } @else {
                h2 #rule-h { "Add a rule" }
            }
            form.stacked method="post" action=(format!("/console/groups/{group}/rules")) {
                (csrf(frame))
                @if let Some(p) = editing {
                    input type="hidden" name="SecurityGroupRuleId" value=(text(p, "SecurityGroupRuleId"));
                    input type="hidden" name="Direction" value=(direction);
                    p { "Direction: " (if direction == "ingress" { "inbound" } else { "outbound" }) }
                } @else {
                    (select("r-direction", "Direction", "Direction", &[opt("ingress", "Inbound"), opt("egress", "Outbound")], &direction))
                }
                (select("r-policy", "Policy", "Policy", &[opt("accept", "Accept"), opt("drop", "Drop")], &policy))
                label for="r-priority" { "Priority (1 is applied first, up to 100)" }
                input #r-priority name="Priority" type="number" min="1" max="100" step="1" required value=(priority);
                (select("r-protocol", "IpProtocol", "Protocol", &protocols, &protocol))
                label for="r-ports" { "Port range (start/end; -1/-1 for ICMP, GRE and all)" }
                input #r-ports name="PortRange" pattern="-1/-1|[0-9]{1,5}/[0-9]{1,5}" placeholder="80/80" value=(get("PortRange"));
                label for="r-portlist" { "Port list (optional, TCP and UDP: a prl- id whose ranges are the ports, instead of the port range)" }
                input #r-portlist name="PortRangeListId" pattern="prl-[A-Za-z0-9]+" value=(get("PortRangeListId"));
                (select("r-peerkind", "PeerKind", "Peer type", &[opt("cidr", "IPv4 CIDR block"), opt("ipv6", "IPv6 CIDR block"), opt("group", "Security group"), opt("prefixlist", "Prefix list")], kind))
                label for="r-peer" { "Peer (address block, group id or prefix list id)" }
                input #r-peer name="Peer" required placeholder="0.0.0.0/0" value=(value);
                label for="r-local" { "Local address block (optional: this side's addresses the rule covers)" }
                input #r-local name="Local" value=(editing.map(|p| local_side(p, &direction)).unwrap_or_default());
                label for="r-sports" { "Source port range (optional)" }
                input #r-sports name="SourcePortRange" pattern="-1/-1|[0-9]{1,5}/[0-9]{1,5}" value=(get("SourcePortRange"));
                (select("r-nic", "NicType", "NIC type", &[opt("intranet", "Intranet"), opt("internet", "Internet (classic network)")], &nic))
                label for="r-description" { "Description" }
                input #r-description name="Description" maxlength="512" value=(get("Description"));
                button type="submit" { @if editing.is_some() { "Preview the change" } @else { "Preview the new rule" } }
                @if editing.is_some() { " " a href=(format!("/console/groups/{group}")) { "Cancel" } }
            }
        }
    }
}

fn group_list(v: &Value) -> Vec<String> {
    v["SecurityGroupIds"]["SecurityGroupId"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn private_ip(i: &Value) -> String {
    let vpc = &i["VpcAttributes"]["PrivateIpAddress"]["IpAddress"];
    let inner = &i["InnerIpAddress"]["IpAddress"];
    [vpc, inner]
        .iter()
        .filter_map(|a| a.as_array())
        .flatten()
        .filter_map(|a| a.as_str())
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Why the last group cannot be left, said before the button is pressed.
const LAST_GROUP: &str = "an instance must stay in at least one security group: join another first";

/// `GET /console/groups/{id}`.
pub(crate) fn group(frame: &Frame, view: &GroupView) -> Markup {
    let a = view.attribute;
    let id = text(a, "SecurityGroupId");
    let permissions = items(a, "Permissions", "Permission");
    let inbound = in_engine_order(permissions, "ingress");
    let outbound = in_engine_order(permissions, "egress");
    let editing = permissions
        .iter()
        .find(|p| !view.editing.is_empty() && text(p, "SecurityGroupRuleId") == view.editing);
    let vpc = text(a, "VpcId");
    let member_ids: Vec<String> = view.members.iter().map(|i| text(i, "InstanceId")).collect();
    let joinable: Vec<(String, String)> = view
        .instances
        .iter()
        .filter(|i| {
            !member_ids.contains(&text(i, "InstanceId"))
                && text(&i["VpcAttributes"], "VpcId") == vpc
        })
        .map(|i| {
            (
                text(i, "InstanceId"),
                format!("{} {}", text(i, "InstanceId"), text(i, "InstanceName")),
            )
        })
        .collect();
    let title = format!("Security group {id}");
    let tag_list = tags(view.summary);
    let policy = text(a, "InnerAccessPolicy");
    layout(
        frame,
        &title,
        html! {
            dl.attributes {
                dt { "Name" } dd.name { (text(a, "SecurityGroupName")) }
                dt { "Description" } dd.description { (text(a, "Description")) }
                dt { "VPC" } dd { @if vpc.is_empty() { "classic network" } @else { (vpc) } }
                dt { "Type" } dd { (text(view.summary, "SecurityGroupType")) }
                dt { "Intra-group policy" } dd { (policy) " (members " @if policy == "Accept" { "reach" } @else { "do not reach" } " each other when no rule decides)" }
                dt { "Tags" } dd { @for (k, v) in &tag_list { span.tag { (k) "=" (v) } " " } }
            }
            @let rule_hits = items(view.hits, "RuleHits", "RuleHit");
            (rules_table(frame, &id, &inbound, "ingress", rule_hits))
            (rules_table(frame, &id, &outbound, "egress", rule_hits))
            @let implicit = items(view.hits, "ImplicitHits", "ImplicitHit");
            @let since = text(view.hits, "CountingSince");
            p.hits-summary {
                "Decided without a rule: "
                @for (n, (decision, label)) in [("InnerAccessPolicy", "intra-group accept"), ("DefaultIngress", "default inbound drop"), ("DefaultEgress", "default outbound")].into_iter().enumerate() {
                    @if n > 0 { "; " }
                    (label) " " (hits_cell(implicit.iter().find(|h| text(h, "Decision") == decision)))
                }
                ". "
                @if since.is_empty() { "No agent has counted yet." } @else { "Counted on real packets since " (since) "." }
            }
            (rule_form(frame, &id, editing))
            section aria-labelledby="members-h" {
                h2 #members-h { "Members" }
                table {
                    caption { (view.members.len()) " instances in this group" }
                    thead { tr { th scope="col" { "Instance" } th scope="col" { "Name" } th scope="col" { "Private address" } th scope="col" { "Its groups, in order" } th scope="col" { "Actions" } } }
                    tbody {
                        @for i in view.members {
                            @let iid = text(i, "InstanceId");
                            @let groups = group_list(i);
                            tr {
                                td { (iid) }
                                td.name { (text(i, "InstanceName")) }
                                td { (private_ip(i)) }
                                td { (groups.join(", ")) }
                                td { (action_button(frame, Action::LeaveSecurityGroup, &[("InstanceId", &iid), ("SecurityGroupId", &id)], "Leave", (groups.len() <= 1).then_some(LAST_GROUP))) }
                            }
                        }
                    }
                }
                @if joinable.is_empty() {
                    p { "No other instance of this network can join." }
                } @else {
                    form.inline method="post" action="/console/do" {
                        (csrf(frame))
                        input type="hidden" name="Action" value=(Action::JoinSecurityGroup.name());
                        input type="hidden" name="return" value=(frame.here);
                        input type="hidden" name="SecurityGroupId" value=(id);
                        (select("j-instance", "InstanceId", "Add an instance", &joinable, ""))
                        button type="submit" { "Preview the join" }
                    }
                }
            }
            section aria-labelledby="refs-h" {
                h2 #refs-h { "Referenced by" }
                @let referencing: Vec<&Value> = view.references.iter().flat_map(|r| items(r, "ReferencingSecurityGroups", "ReferencingSecurityGroup")).collect();
                @if referencing.is_empty() { p { "No other group's rules name this group." } }
                ul { @for r in referencing { li { a href=(format!("/console/groups/{}", text(r, "SecurityGroupId"))) { (text(r, "SecurityGroupId")) } " (account " (text(r, "AliUid")) ")" } } }
            }
            section aria-labelledby="settings-h" {
                h2 #settings-h { "Settings" }
                form.stacked method="post" action="/console/do" {
                    (csrf(frame))
                    input type="hidden" name="Action" value=(Action::ModifySecurityGroupAttribute.name());
                    input type="hidden" name="return" value=(frame.here);
                    input type="hidden" name="SecurityGroupId" value=(id);
                    label for="m-name" { "Name" }
                    input #m-name name="SecurityGroupName" maxlength="128" value=(text(a, "SecurityGroupName"));
                    label for="m-description" { "Description" }
                    input #m-description name="Description" maxlength="256" value=(text(a, "Description"));
                    button type="submit" { "Save name and description" }
                }
                form.inline method="post" action="/console/do" {
                    (csrf(frame))
                    input type="hidden" name="Action" value=(Action::ModifySecurityGroupPolicy.name());
                    input type="hidden" name="return" value=(frame.here);
                    input type="hidden" name="SecurityGroupId" value=(id);
                    (select("m-policy", "InnerAccessPolicy", "Intra-group policy", &[("Accept".into(), "Accept: members reach each other".into()), ("Drop".into(), "Drop: members are isolated".into())], &policy))
                    button type="submit" { "Preview the policy change" }
                }
                form.inline method="post" action="/console/do" {
                    (csrf(frame))
                    input type="hidden" name="Action" value=(Action::TagResources.name());
                    input type="hidden" name="return" value=(frame.here);
                    input type="hidden" name="ResourceType" value="securitygroup";
                    input type="hidden" name="ResourceId.1" value=(id);
                    label for="t-key" { "Tag key" }
                    input #t-key name="Tag.1.Key" required maxlength="128";
                    label for="t-value" { "Tag value" }
                    input #t-value name="Tag.1.Value" maxlength="128";
                    button type="submit" { "Add tag" }
                }
                @for (k, _) in &tag_list {
                    (action_button(frame, Action::UntagResources, &[("ResourceType", "securitygroup"), ("ResourceId.1", &id), ("TagKey.1", k)], &format!("Remove tag {k}"), None))
                }
            }
            section aria-labelledby="delete-h" {
                h2 #delete-h { "Delete" }
                @if !view.members.is_empty() {
                    p { "This group still has " (view.members.len()) " member(s): ECS refuses to delete it (" code { "DependencyViolation" } ") until every instance has left." }
                }
                @if !view.references.iter().all(|r| items(r, "ReferencingSecurityGroups", "ReferencingSecurityGroup").is_empty()) {
                    p { "Other groups' rules name this group: ECS refuses the deletion until those rules are gone." }
                }
                div.danger { (action_button(frame, Action::DeleteSecurityGroup, &[("SecurityGroupId", &id)], "Delete this group", None)) }
            }
        },
    )
}

/// A change's preview: the flows it would flip, and the button that applies it.
pub(crate) fn preview(
    frame: &Frame,
    action: Action,
    fields: &[(String, String)],
    flips: &Value,
) -> Markup {
    let changes = items(flips, "Changes", "Change");
    layout(
        frame,
        "Preview the change",
        html! {
            p { (describe_action(action)) " (" code { (action.name()) } ") would change " strong { (changes.len()) } " flow verdict(s) of your instances." }
            table.flips {
                caption { "Flows whose verdict would flip" }
                thead { tr { th scope="col" { "Instance" } th scope="col" { "Direction" } th scope="col" { "Becomes" } th scope="col" { "Protocol" } th scope="col" { "Ports" } th scope="col" { "Peers" } th scope="col" { "Peer instances" } } }
                tbody {
                    @if changes.is_empty() { tr { td colspan="7" { "No flow changes verdict." } } }
                    @for c in changes {
                        tr class=(text(c, "Effect").to_ascii_lowercase()) {
                            td { (text(c, "InstanceId")) }
                            td { (text(c, "Direction")) " (" (text(c, "NicType")) ")" }
                            td { strong { (text(c, "Effect")) } }
                            td { (text(c, "IpProtocol")) }
                            td { (text(c, "PortRange")) }
                            td {
                                (cidrs(c["PeerCidrIps"]["PeerCidrIp"].as_array().map_or(&[], Vec::as_slice)))
                                (members_of(&c["PeerSecurityGroupIds"]["SecurityGroupId"], &c["ExceptPeerSecurityGroupIds"]["SecurityGroupId"]))
                            }
                            td { @for p in c["PeerInstances"]["InstanceId"].as_array().into_iter().flatten() { (p.as_str().unwrap_or_default()) " " } }
                        }
                    }
                }
            }
            form.inline method="post" action="/console/do" {
                (csrf(frame))
                input type="hidden" name="Action" value=(action.name());
                input type="hidden" name="return" value=(frame.here);
                input type="hidden" name="confirm" value="1";
                @for (k, v) in fields { @if !v.is_empty() { input type="hidden" name=(k) value=(v); } }
                button type="submit" #apply { "Apply the change" }
            }
            " " a href=(frame.here) { "Cancel" }
        },
    )
}

/// Address blocks; a long list (the engine's exact cut of the address space) is folded
/// behind its first few.
/// Peers named by their groups (another account's, whose addresses are not the caller's to
/// see), and the groups whose members a block does not cover as its row says.
fn members_of(groups: &Value, except: &Value) -> Markup {
    let names = |v: &Value| -> Vec<String> {
        (v.as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect()
    };
    html! {
        @for g in names(groups) { "members of " code { (g) } " " }
        @for g in names(except) { "except members of " code { (g) } " " }
    }
}

fn cidrs(list: &[Value]) -> Markup {
    const SHOWN: usize = 4;
    let all: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    html! {
        @for c in all.iter().take(SHOWN) { code { (c) } " " }
        @if all.len() > SHOWN {
            details {
                summary { "and " (all.len() - SHOWN) " more blocks" }
                @for c in &all[SHOWN..] { code { (c) } " " }
            }
        }
    }
}

/// The network interfaces table: each interface's groups in order, joined and left by
/// `NetworkInterfaceId` (a primary interface's groups are its instance's).
fn interfaces_table(
    frame: &Frame,
    interfaces: &[Value],
    instances: &[Value],
    groups: &[Value],
) -> Markup {
    html! {
        table.interfaces {
            caption { (interfaces.len()) " network interfaces" }
            thead { tr { th scope="col" { "Interface" } th scope="col" { "Type" } th scope="col" { "Instance" } th scope="col" { "Status" } th scope="col" { "Private address" } th scope="col" { "IPv6" } th scope="col" { "Security groups, in order" } th scope="col" { "Join" } th scope="col" { "Attachment" } } }
            tbody {
                @for n in interfaces {
                    @let nid = text(n, "NetworkInterfaceId");
                    @let mine = group_list(n);
                    @let vpc = text(n, "VpcId");
                    @let joinable: Vec<(String, String)> = groups.iter()
                        .filter(|g| text(g, "VpcId") == vpc && !mine.contains(&text(g, "SecurityGroupId")))
                        .map(|g| (text(g, "SecurityGroupId"), format!("{} {}", text(g, "SecurityGroupId"), text(g, "SecurityGroupName"))))
                        .collect();
                    tr id=(nid) {
                        td { (nid) " " span.name.hint { (text(n, "NetworkInterfaceName")) } }
                        td { (text(n, "Type")) }
                        td { (text(n, "InstanceId")) }
                        td { (text(n, "Status")) }
                        td { (text(n, "PrivateIpAddress")) }
                        td { @for a in n["Ipv6Sets"]["Ipv6Set"].as_array().into_iter().flatten() { code { (text(a, "Ipv6Address")) } " " } }
                        td {
                            ol {
                                @for g in &mine {
                                    li {
                                        a href=(format!("/console/groups/{g}")) { (g) } " "
                                        (action_button(frame, Action::LeaveSecurityGroup, &[("NetworkInterfaceId", &nid), ("SecurityGroupId", g)], &format!("Leave {g}"), (mine.len() <= 1).then_some(LAST_GROUP)))
                                    }
                                }
                            }
                        }
                        td {
                            (join_form(frame, "NetworkInterfaceId", &nid, &joinable))
                        }
                        td { (attachment(frame, n, instances)) }
                    }
                }
            }
        }
    }
}

/// `JoinSecurityGroup` of one instance or interface (`target` names which parameter), into
/// one of the `joinable` groups.
fn join_form(frame: &Frame, target: &str, id: &str, joinable: &[(String, String)]) -> Markup {
    html! {
        @if joinable.is_empty() { "—" } @else {
            form.inline method="post" action="/console/do" {
                (csrf(frame))
                input type="hidden" name="Action" value=(Action::JoinSecurityGroup.name());
                input type="hidden" name="return" value=(frame.here);
                input type="hidden" name=(target) value=(id);
                (select(&format!("join-{id}"), "SecurityGroupId", &format!("Group for {id}"), joinable, ""))
                button type="submit" { "Preview the join" }
            }
        }
    }
}

/// Attach an `Available` secondary interface to an instance of its VPC, or detach an
/// attached one; a primary interface stays with its instance.
fn attachment(frame: &Frame, n: &Value, instances: &[Value]) -> Markup {
    let nid = text(n, "NetworkInterfaceId");
    let attached = text(n, "InstanceId");
    let vpc = text(n, "VpcId");
    let candidates: Vec<(String, String)> = instances
        .iter()
        .filter(|i| {
            text(&i["VpcAttributes"], "VpcId") == vpc && text(i, "ZoneId") == text(n, "ZoneId")
        })
        .map(|i| {
            (
                text(i, "InstanceId"),
                format!("{} {}", text(i, "InstanceId"), text(i, "InstanceName")),
            )
        })
        .collect();
    html! {
        @if text(n, "Type") == "Primary" {
            "primary: stays with its instance"
        } @else if !attached.is_empty() {
            (action_button(frame, Action::DetachNetworkInterface, &[("NetworkInterfaceId", &nid), ("InstanceId", &attached)], &format!("Detach from {attached}"), None))
        } @else if candidates.is_empty() {
            "no instance of its VPC and zone"
        } @else {
            form.inline method="post" action="/console/do" {
                (csrf(frame))
                input type="hidden" name="Action" value=(Action::AttachNetworkInterface.name());
                input type="hidden" name="return" value=(frame.here);
                input type="hidden" name="NetworkInterfaceId" value=(nid);
                (select(&format!("attach-{nid}"), "InstanceId", &format!("Instance for {nid}"), &candidates, ""))
                button type="submit" { "Attach" }
            }
        }
    }
}

/// `GET /console/instances`.
pub(crate) fn instances(
    frame: &Frame,
    list: &[Value],
    interfaces: &[Value],
    groups: &[Value],
) -> Markup {
    layout(
        frame,
        "Instances",
        html! {
            table {
                caption { (list.len()) " instances" }
                thead { tr { th scope="col" { "Instance" } th scope="col" { "Name" } th scope="col" { "Network" } th scope="col" { "Private address" } th scope="col" { "Status" } th scope="col" { "Security groups, in order" } th scope="col" { "Join" } } }
                tbody {
                    @for i in list {
                        @let iid = text(i, "InstanceId");
                        @let mine = group_list(i);
                        @let vpc = text(&i["VpcAttributes"], "VpcId");
                        @let joinable: Vec<(String, String)> = groups.iter()
                            .filter(|g| text(g, "VpcId") == vpc && !mine.contains(&text(g, "SecurityGroupId")))
                            .map(|g| (text(g, "SecurityGroupId"), format!("{} {}", text(g, "SecurityGroupId"), text(g, "SecurityGroupName"))))
                            .collect();
                        tr id=(iid) {
                            td { (iid) }
                            td.name { (text(i, "InstanceName")) }
                            td { @if vpc.is_empty() { "classic" } @else { (vpc) } }
                            td { (private_ip(i)) }
                            td { (text(i, "Status")) }
                            td {
                                ol {
                                    @for g in &mine {
                                        li {
                                            a href=(format!("/console/groups/{g}")) { (g) } " "
                                            (action_button(frame, Action::LeaveSecurityGroup, &[("InstanceId", &iid), ("SecurityGroupId", g)], &format!("Leave {g}"), (mine.len() <= 1).then_some(LAST_GROUP)))
                                        }
                                    }
                                }
                                @if mine.len() <= 1 { p.hint { "Its only group cannot be left: " (LAST_GROUP) "." } }
                            }
                            td {
                                (join_form(frame, "InstanceId", &iid, &joinable))
                            }
                        }
                    }
                }
            }
            h2 { "Network interfaces" }
            p.hint { "Security groups are enforced per interface; a primary interface's groups are its instance's." }
            (interfaces_table(frame, interfaces, list, groups))
        },
    )
}

/// `GET /console/flow`.
pub(crate) fn flow(
    frame: &Frame,
    q: &[(String, String)],
    list: &[Value],
    verdict: Option<&Value>,
) -> Markup {
    let get = |n: &str| super::field(q, n).to_string();
    let opt = |v: &str, l: &str| (v.to_string(), l.to_string());
    let protocol = if get("IpProtocol").is_empty() {
        "tcp".to_string()
    } else {
        get("IpProtocol")
    };
    html_flow(
        frame,
        list,
        &get("Source"),
        &get("Destination"),
        &protocol,
        &get("DestinationPort"),
        &get("SourcePort"),
        &get("NicType"),
        verdict,
        &[
            opt("tcp", "TCP"),
            opt("udp", "UDP"),
            opt("icmp", "ICMP"),
            opt("icmpv6", "ICMPv6"),
            opt("gre", "GRE"),
        ],
    )
}

#[allow(clippy::too_many_arguments)]
fn html_flow(
    frame: &Frame,
    list: &[Value],
    source: &str,
    destination: &str,
    protocol: &str,
    port: &str,
    source_port: &str,
    nic: &str,
    verdict: Option<&Value>,
    protocols: &[(String, String)],
) -> Markup {
    layout(
        frame,
        "Check a flow",
        html! {
            datalist #ends {
                @for i in list { option value=(text(i, "InstanceId")) { (text(i, "InstanceName")) " " (private_ip(i)) } }
            }
            form.stacked method="get" action="/console/flow" {
                label for="fl-source" { "Source (instance id or address)" }
                input #fl-source name="Source" list="ends" required value=(source);
                label for="fl-destination" { "Destination (instance id or address)" }
                input #fl-destination name="Destination" list="ends" required value=(destination);
                (select("fl-protocol", "IpProtocol", "Protocol", protocols, protocol))
                label for="fl-port" { "Destination port (TCP and UDP)" }
                input #fl-port name="DestinationPort" type="number" min="0" max="65535" value=(port);
                label for="fl-sport" { "Source port (optional)" }
                input #fl-sport name="SourcePort" type="number" min="0" max="65535" value=(source_port);
                (select("fl-nic", "NicType", "NIC type", &[("intranet".into(), "Intranet".into()), ("internet".into(), "Internet (classic network)".into())], if nic.is_empty() { "intranet" } else { nic }))
                button type="submit" { "Check" }
            }
            @if let Some(v) = verdict {
                section.verdict aria-labelledby="verdict-h" {
                    h2 #verdict-h class=(text(v, "Verdict").to_ascii_lowercase()) { "Verdict: " (text(v, "Verdict")) }
                    table {
                        caption { "Each stage the first packet crosses" }
                        thead { tr { th scope="col" { "Stage" } th scope="col" { "At" } th scope="col" { "Verdict" } th scope="col" { "Decided by" } th scope="col" { "Rule" } th scope="col" { "Priority" } } }
                        tbody {
                            @for s in items(v, "Stages", "Stage") {
                                @let group = text(s, "SecurityGroupId");
                                @let rule = text(s, "SecurityGroupRuleId");
                                tr {
                                    td { (text(s, "Stage")) }
                                    td { (text(s, "InstanceId")) " " span.hint { (text(s, "NetworkInterfaceId")) } }
                                    td { strong { (text(s, "Verdict")) } }
                                    td { (decided_by(&text(s, "DecidedBy"))) }
                                    td {
                                        @if !rule.is_empty() {
                                            a.rule-link href=(format!("/console/groups/{group}#{rule}")) { (rule) } " in " (group)
                                        } @else if !group.is_empty() {
                                            a href=(format!("/console/groups/{group}")) { (group) }
                                        }
                                    }
                                    td { (text(s, "Priority")) " " (text(s, "Policy")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn decided_by(wire: &str) -> &'static str {
    match wire {
        "Rule" => "a rule",
        "InnerAccessPolicy" => "the intra-group policy",
        "DefaultIngress" => "no rule: inbound default (drop)",
        "DefaultEgress" => "no rule: outbound default (accept)",
        _ => "—",
    }
}

/// Whether a source block reaches the internet, as `stockade exposure --internet` reads it.
fn from_internet(cidr: &str) -> bool {
    cidr.parse::<ipnet::IpNet>()
        .is_ok_and(|net| !policy::exposure::internet_part(&[net]).is_empty())
}

/// `GET /console/exposure`.
pub(crate) fn exposure(
    frame: &Frame,
    list: &[Value],
    exposed: &[(String, Value)],
    chosen: &str,
) -> Markup {
    let internet: Vec<(&String, &Value)> = exposed
        .iter()
        .flat_map(|(id, e)| {
            items(e, "Exposures", "Exposure")
                .iter()
                .map(move |x| (id, x))
        })
        .filter(|(_, x)| {
            x["SourceCidrIps"]["SourceCidrIp"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| from_internet(c.as_str().unwrap_or_default()))
        })
        .collect();
    let options: Vec<(String, String)> = list
        .iter()
        .map(|i| {
            (
                text(i, "InstanceId"),
                format!("{} {}", text(i, "InstanceId"), text(i, "InstanceName")),
            )
        })
        .collect();
    let detail = exposed.iter().find(|(id, _)| id == chosen);
    layout(
        frame,
        "Exposure",
        html! {
            section aria-labelledby="internet-h" {
                h2 #internet-h { "Open to the internet" }
                table {
                    caption { (internet.len()) " inbound openings from the internet (addresses outside private, shared, loopback, link-local, benchmarking, multicast and reserved space)" }
                    thead { tr { th scope="col" { "Instance" } th scope="col" { "Protocol" } th scope="col" { "Ports" } th scope="col" { "From" } th scope="col" { "Rule" } } }
                    tbody { @for (id, x) in &internet { (exposure_row(id, x)) } }
                }
            }
            form.inline method="get" action="/console/exposure" {
                (select("ex-instance", "InstanceId", "Instance", &options, chosen))
                button type="submit" { "Show its exposure" }
            }
            @if let Some((id, e)) = detail {
                table {
                    caption { "Every inbound flow " (id) " accepts" }
                    thead { tr { th scope="col" { "Instance" } th scope="col" { "Protocol" } th scope="col" { "Ports" } th scope="col" { "From" } th scope="col" { "Rule" } } }
                    tbody { @for x in items(e, "Exposures", "Exposure") { (exposure_row(id, x)) } }
                }
            }
        },
    )
}

fn exposure_row(id: &str, x: &Value) -> Markup {
    let group = text(x, "SecurityGroupId");
    let rule = text(x, "SecurityGroupRuleId");
    html! {
        tr {
            td { (id) }
            td { (text(x, "IpProtocol")) }
            td { (text(x, "PortRange")) }
            td {
                (cidrs(x["SourceCidrIps"]["SourceCidrIp"].as_array().map_or(&[], Vec::as_slice)))
                (members_of(&serde_json::json!([text(x, "SourceGroupId")]), &x["ExceptSourceGroupIds"]["SecurityGroupId"]))
            }
            td {
                @if rule.is_empty() { (decided_by(&text(x, "DecidedBy"))) " " (group) }
                @else { a href=(format!("/console/groups/{group}#{rule}")) { (rule) } }
            }
        }
    }
}

/// `GET /console/audit`.
pub(crate) fn audit(frame: &Frame, findings: &[Value]) -> Markup {
    let rank = |s: &str| match s {
        "high" | "High" => 0,
        "medium" | "Medium" => 1,
        _ => 2,
    };
    let mut sorted: Vec<&Value> = findings.iter().collect();
    sorted.sort_by_key(|f| rank(&text(f, "Severity")));
    layout(
        frame,
        "Audit",
        html! {
            p { "The seed's best practices, checked over your groups in this region." }
            table.findings {
                caption { (findings.len()) " findings, most severe first" }
                thead { tr { th scope="col" { "Severity" } th scope="col" { "Check" } th scope="col" { "Where" } th scope="col" { "Finding" } th scope="col" { "Fix" } } }
                tbody {
                    @for f in sorted {
                        @let group = text(f, "SecurityGroupId");
                        @let rule = text(f, "SecurityGroupRuleId");
                        tr class=(text(f, "Severity").to_ascii_lowercase()) {
                            td { (text(f, "Severity")) }
                            td { code { (text(f, "Check")) } }
                            td {
                                @if rule.is_empty() { a href=(format!("/console/groups/{group}")) { (group) } }
                                @else { a href=(format!("/console/groups/{group}#{rule}")) { (rule) } " in " (group) }
                            }
                            td { (text(f, "Message")) }
                            td { (text(f, "Recommendation")) }
                        }
                    }
                }
            }
        },
    )
}

/// `GET /console/prefix-lists`: each list with its entries (added and removed with a
/// preview: an entry change changes every rule naming the list), and the creation form.
pub(crate) fn prefix_lists(frame: &Frame, lists: &[Value]) -> Markup {
    layout(
        frame,
        "Prefix lists",
        html! {
            @if lists.is_empty() { p { "No prefix list in this region yet." } }
            @for l in lists {
                @let id = text(l, "PrefixListId");
                section.prefix-list aria-labelledby=(format!("h-{id}")) {
                    h2 #(format!("h-{id}")) { (id) " " span.name { (text(l, "PrefixListName")) } }
                    p.description { (text(l, "Description")) }
                    p.hint { (text(l, "AddressFamily")) ", at most " (text(l, "MaxEntries")) " entries" }
                    table {
                        caption { "Entries of " (id) }
                        thead { tr { th scope="col" { "Block" } th scope="col" { "Description" } th scope="col" { "Actions" } } }
                        tbody {
                            @for e in items(l, "Entries", "Entry") {
                                @let cidr = text(e, "Cidr");
                                tr {
                                    td { code { (cidr) } }
                                    td.description { (text(e, "Description")) }
                                    td { (action_button(frame, Action::ModifyPrefixList, &[("PrefixListId", &id), ("RemoveEntry.1.Cidr", &cidr)], &format!("Remove {cidr}"), None)) }
                                }
                            }
                        }
                    }
                    form.inline method="post" action="/console/do" {
                        (csrf(frame))
                        input type="hidden" name="Action" value=(Action::ModifyPrefixList.name());
                        input type="hidden" name="return" value=(frame.here);
                        input type="hidden" name="PrefixListId" value=(id);
                        label for=(format!("add-{id}")) { "Add block" }
                        input id=(format!("add-{id}")) name="AddEntry.1.Cidr" required placeholder="203.0.113.0/24";
                        label for=(format!("add-d-{id}")) { "Description" }
                        input id=(format!("add-d-{id}")) name="AddEntry.1.Description" maxlength="32";
                        button type="submit" { "Preview the entry" }
                    }
                    div.danger { (action_button(frame, Action::DeletePrefixList, &[("PrefixListId", &id)], &format!("Delete {id}"), None)) }
                }
            }
            section aria-labelledby="create-pl" {
                h2 #create-pl { "Create a prefix list" }
                form.stacked method="post" action="/console/do" {
                    (csrf(frame))
                    input type="hidden" name="Action" value=(Action::CreatePrefixList.name());
                    input type="hidden" name="return" value=(frame.here);
                    label for="pl-name" { "Name" }
                    input #pl-name name="PrefixListName" required maxlength="128";
                    label for="pl-description" { "Description" }
                    input #pl-description name="Description" maxlength="256";
                    (select("pl-family", "AddressFamily", "Address family", &[("IPv4".into(), "IPv4".into()), ("IPv6".into(), "IPv6".into())], "IPv4"))
                    label for="pl-max" { "Most entries" }
                    input #pl-max name="MaxEntries" type="number" min="1" max="200" required value="10";
                    label for="pl-entry" { "First block (optional)" }
                    input #pl-entry name="Entry.1.Cidr";
                    button type="submit" { "Create" }
                }
            }
        },
    )
}

/// Most edges drawn in the map's picture (the table below it lists them all): past this a
/// picture is no longer readable, and the page would weigh megabytes.
const MAX_DRAWN_EDGES: usize = 4000;

/// `GET /console/map`: the reachability matrix as a picture (classes on a circle, one arrow
/// per reaching pair, zoomable by `console.js`) and as tables.
pub(crate) fn map(frame: &Frame, reach: &Value, chosen: &[String]) -> Markup {
    let classes = items(reach, "Classes", "Class");
    let edges = items(reach, "Edges", "Edge");
    let services: Vec<String> = reach["Services"]["Service"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let n = classes.len().max(1);
    let (w, h) = (180.0_f64, 54.0_f64);
    // Nodes on a circle whose circumference gives each one room.
    let radius = ((n as f64) * (w + 40.0) / std::f64::consts::TAU).max(180.0);
    let centre = radius + w;
    let size = 2.0 * centre;
    let at: std::collections::HashMap<String, (f64, f64)> = classes
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let a = std::f64::consts::TAU * (k as f64) / (n as f64) - std::f64::consts::FRAC_PI_2;
            (
                text(c, "ClassId"),
                (centre + radius * a.cos(), centre + radius * a.sin()),
            )
        })
        .collect();
    let drawn = &edges[..edges.len().min(MAX_DRAWN_EDGES)];
    let label = |v: &Value, outer: &str, inner: &str| -> Vec<String> {
        v[outer][inner]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let defaults = [
        "tcp:22", "tcp:3389", "tcp:80", "tcp:443", "tcp:3306", "tcp:5432", "tcp:6379", "icmp",
    ];
    layout(
        frame,
        "Reachability map",
        html! {
            p { "Instances that no verdict tells apart form one class; an arrow means members of one class can open the listed services on members of the other (IPv4, intranet)." }
            form.inline method="get" action="/console/map" aria-label="Services probed" {
                fieldset {
                    legend { "Services" }
                    @for s in defaults {
                        @let id = format!("svc-{}", s.replace(':', "-"));
                        @if chosen.is_empty() || chosen.iter().any(|c| c == s) {
                            input type="checkbox" id=(id) name="Service" value=(s) checked;
                        } @else {
                            input type="checkbox" id=(id) name="Service" value=(s);
                        }
                        label for=(id) { (s) }
                    }
                }
                button type="submit" { "Draw" }
            }
            div.map-tools {
                button type="button" #zoom-in { "Zoom in" }
                button type="button" #zoom-out { "Zoom out" }
                button type="button" #zoom-reset { "Reset view" }
                span.hint { "Drag to pan, wheel to zoom; focus a class to see its arrows." }
            }
            @if edges.len() > drawn.len() {
                p.hint { "The picture draws the first " (drawn.len()) " of " (edges.len()) " arrows; the table lists them all." }
            }
            svg #map role="group" aria-labelledby="map-title" viewBox=(format!("0 0 {size:.0} {size:.0}")) xmlns="http://www.w3.org/2000/svg" {
                title #map-title { (classes.len()) " classes, " (edges.len()) " reaching pairs over " (services.join(", ")) }
                defs {
                    marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                        path d="M 0 0 L 10 5 L 0 10 z" {}
                    }
                }
                g.edges {
                    @for e in drawn {
                        @let (from, to) = (text(e, "From"), text(e, "To"));
                        @let tip = format!("{from} → {to}: {}", label(e, "Services", "Service").join(", "));
                        @if let (Some(&(x1, y1)), Some(&(x2, y2))) = (at.get(&from), at.get(&to)) {
                            @if from == to {
                                path.edge data-from=(from) data-to=(to) d=(format!("M {:.1} {:.1} c -60 -70 60 -70 20 0", x1 - 10.0, y1 - h / 2.0)) marker-end="url(#arrow)" { title { (tip) } }
                            } @else {
                                @let (dx, dy) = (x2 - x1, y2 - y1);
                                @let len = (dx * dx + dy * dy).sqrt().max(1.0);
                                // Stop at the box's edge, not its centre.
                                @let cut = ((w / 2.0) / (dx.abs() / len).max(1e-6)).min((h / 2.0) / (dy.abs() / len).max(1e-6)) + 3.0;
                                line.edge data-from=(from) data-to=(to) x1=(format!("{x1:.1}")) y1=(format!("{y1:.1}")) x2=(format!("{:.1}", x2 - dx / len * cut)) y2=(format!("{:.1}", y2 - dy / len * cut)) marker-end="url(#arrow)" { title { (tip) } }
                            }
                        }
                    }
                }
                g.nodes {
                    @for c in classes {
                        @let id = text(c, "ClassId");
                        @let (x, y) = at[&id];
                        @let members = label(c, "InstanceIds", "InstanceId");
                        @let groups = label(c, "SecurityGroupIds", "SecurityGroupId");
                        a.node href=(format!("#class-{id}")) data-class=(id) {
                            title { (id) ": " (members.len()) " instances in " (groups.join(", ")) }
                            rect x=(format!("{:.1}", x - w / 2.0)) y=(format!("{:.1}", y - h / 2.0)) width=(w) height=(h) rx="6" {}
                            text x=(format!("{x:.1}")) y=(format!("{:.1}", y - 6.0)) { (id) " · " (members.len()) " instance" @if members.len() != 1 { "s" } }
                            text.groups x=(format!("{x:.1}")) y=(format!("{:.1}", y + 14.0)) { @if groups.len() > 1 { "+" (groups.len() - 1) " · " } (groups.last().cloned().unwrap_or_default()) }
                        }
                    }
                }
            }
            table.reach-edges {
                caption { (edges.len()) " reaching pairs" }
                thead { tr { th scope="col" { "From class" } th scope="col" { "To class" } th scope="col" { "Services" } } }
                tbody { @for e in edges { tr { td { a href=(format!("#class-{}", text(e, "From"))) { (text(e, "From")) } } td { a href=(format!("#class-{}", text(e, "To"))) { (text(e, "To")) } } td { (label(e, "Services", "Service").join(", ")) } } } }
            }
            table.reach-classes {
                caption { (classes.len()) " classes" }
                thead { tr { th scope="col" { "Class" } th scope="col" { "Security groups, in order" } th scope="col" { "Instances" } } }
                tbody {
                    @for c in classes {
                        @let id = text(c, "ClassId");
                        tr id=(format!("class-{id}")) {
                            td { (id) }
                            td { @for g in label(c, "SecurityGroupIds", "SecurityGroupId") { a href=(format!("/console/groups/{g}")) { (g) } " " } }
                            td { (label(c, "InstanceIds", "InstanceId").join(", ")) }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_strings_are_text_not_markup() {
        let hostile = "<img src=x onerror=alert(1)>";
        let page = signin(Some(hostile)).into_string();
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{page}"
        );
        assert!(!page.contains(hostile));
    }

    #[test]
    fn rules_are_listed_in_engine_order() {
        let rule = |id: &str, priority: &str, policy: &str| serde_json::json!({"SecurityGroupRuleId": id, "Direction": "ingress", "Priority": priority, "Policy": policy});
        let created = [
            rule("a", "1", "Accept"),
            rule("b", "1", "Drop"),
            rule("c", "100", "Drop"),
            rule("d", "1", "Accept"),
        ];
        let order: Vec<String> = in_engine_order(&created, "ingress")
            .iter()
            .map(|p| text(p, "SecurityGroupRuleId"))
            .collect();
        assert_eq!(order, ["b", "a", "d", "c"]);
    }

    #[test]
    fn internet_means_beyond_private_ranges() {
        assert!(from_internet("0.0.0.0/0"));
        assert!(
            !from_internet("198.18.0.0/15"),
            "benchmarking space: the labs"
        );
        assert!(!from_internet("10.1.0.0/16"));
        assert!(!from_internet("192.168.0.0/24"));
    }
}
