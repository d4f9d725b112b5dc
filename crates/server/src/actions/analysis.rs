//! Stockade's own analysis actions: `DescribeFlowVerdict`, `DescribeSecurityGroupAudit`,
//! `DescribeInstanceExposure` and the comparison behind `PreviewSecurityGroupChange`, with
//! the compiled engine they share, and the response bodies the CLI prints too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use control::{Ctx, GroupFilter};
use model::{Direction, FlowPorts, InstanceId, MemberId, ModelError, NicType, SecurityGroupId};
use policy::{DecidedBy, Endpoint, Engine, Evaluator, Flow};
use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::{Result, ServerError};
use crate::wire::Params;
use crate::AppState;

/// Each account's share of the region's policy at the store's last revision, with the
/// engine compiled over it.
///
/// A flow verdict, an exposure or a reachability question of account A is judged at A's
/// instances, and A's share (`Tx::account_policy`: A's groups with their rules, the groups
/// those reference, the members of both, the lists the rules name) keeps every such verdict
/// (its closure at A's members is the region's: property-tested in `policy`, and checked
/// over random fleets in `tests/tenancy.rs`). So the share is read by queries over what it
/// holds, and compiled, in time proportional to it: what another account holds, however
/// large, costs A's questions nothing, and another account's write costs A a look at what
/// the write touched (`Tx::share_touched`), and a read and compilation of A's own share only
/// when it touched that share. No lock is held while reading or compiling.
#[derive(Default)]
pub(crate) struct EngineCache {
    by_account: Mutex<HashMap<(String, model::AccountId), AtRevision<Compiled>>>,
}

/// An account's share and the engine compiled over it.
pub(crate) struct Compiled {
    share: policy::Snapshot,
    engine: Engine,
}

impl std::ops::Deref for Compiled {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

/// A value made at a store revision.
type AtRevision<T> = (u64, Arc<T>);

/// Most accounts' shares kept; past it the cache starts over.
const SHARES_KEPT: usize = 4096;

/// An engine over a stored policy: the store only holds policies the engine accepts, so a
/// refusal here is an internal failure, not the caller's.
fn engine_of(snapshot: &policy::Snapshot) -> Result<Engine> {
    Engine::new(snapshot).map_err(|e| ServerError::internal(format!("stored policy: {e}")))
}

/// The engine over the caller's share at the store's current revision (see
/// [`EngineCache`]): the one kept when no commit since touched the share (another account's
/// write costs one look at the change log), else compiled over the share read again.
fn share(state: &AppState, ctx: &Ctx) -> Result<Arc<Compiled>> {
    let revision = state.control.revision()?;
    let key = (ctx.region.clone(), ctx.account);
    let lock = || {
        (state.engines.by_account)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    };
    let kept = lock().get(&key).cloned();
    let compiled = match kept {
        Some((at, c)) if at == revision => return Ok(c),
        Some((at, c))
            if !state
                .control
                .read(ctx, |tx| tx.share_touched(&c.share, at))? =>
        {
            c
        }
        _ => {
            let share = state.control.read(ctx, |tx| tx.account_policy())?;
            let engine = engine_of(&share)?;
            Arc::new(Compiled { share, engine })
        }
    };
    let mut kept = lock();
    if kept.len() >= SHARES_KEPT {
        kept.clear();
    }
    kept.insert(key, (revision, compiled.clone()));
    Ok(compiled)
}

/// One end of a flow question: an instance, a network interface (the flow crosses it, so
/// it is judged at its instance) or an address; at most one of the three.
enum End {
    Instance(InstanceId),
    Interface(model::NetworkInterfaceId),
    Address(IpAddr),
}

fn endpoint(p: &Params, [instance, interface, ip]: [&'static str; 3]) -> Result<Option<End>> {
    let given: Vec<&'static str> = [instance, interface, ip]
        .into_iter()
        .filter(|name| p.opt(name).is_some())
        .collect();
    if let [first, second, ..] = given[..] {
        return Err(ModelError::Conflict(first, second).into());
    }
    Ok(match given.first() {
        None => None,
        Some(&name) if name == instance => Some(End::Instance(p.typed(instance)?)),
        Some(&name) if name == interface => Some(End::Interface(p.typed(interface)?)),
        Some(_) => {
            let a = p.required(ip)?;
            Some(End::Address(
                a.parse::<IpAddr>()
                    .map_err(|_| ServerError::invalid(ip, a))?,
            ))
        }
    })
}

/// Whether an instance of the region is the caller's: answers name no other account's
/// instances (tenancy), even where their flows are what an answer is about.
fn owned_by(state: &policy::State, account: model::AccountId) -> impl Fn(&MemberId) -> bool + '_ {
    move |id| state.instance(id).is_ok_and(|i| i.owner == account)
}

/// `DescribeFlowVerdict`: the verdict of one flow and what decided it at each instance.
pub(super) fn flow_verdict(call: &Call) -> Result<Reply> {
    let p = call.params;
    let source = endpoint(
        p,
        ["SourceInstanceId", "SourceNetworkInterfaceId", "SourceIp"],
    )?
    .ok_or(ModelError::Missing("SourceInstanceId"))?;
    let destination = endpoint(
        p,
        [
            "DestinationInstanceId",
            "DestinationNetworkInterfaceId",
            "DestinationIp",
        ],
    )?
    .ok_or(ModelError::Missing("DestinationInstanceId"))?;
    let port = |name| Ok::<_, ServerError>(p.number(name, 1, 65535)?.map(|n| n as u16));
    let l4 = FlowPorts::parse(
        &p.required("IpProtocol")?,
        port("DestinationPort")?,
        port("SourcePort")?,
    )?;
    let nic_type: NicType = p.parsed("NicType")?.unwrap_or(NicType::Intranet);
    // Only the caller's instances and interfaces can be asked about; an interface is judged
    // at the instance it is attached to, and names the primary interface of each stage's.
    let (source, destination, interfaces) = call.query(|tx| {
        let mut interfaces = std::collections::HashMap::new();
        let mut resolve = |end: End| -> control::Result<Endpoint> {
            let id = match end {
                End::Address(a) => return Ok(Endpoint::Address(a)),
                End::Instance(id) => id,
                End::Interface(n) => {
                    let record = tx.interface(&n)?;
                    let instance = record
                        .instance
                        .ok_or(control::ControlError::InterfaceNotAttached(n.clone()))?;
                    // A secondary interface is judged by its own groups.
                    if record.kind == control::InterfaceKind::Secondary {
                        return Ok(Endpoint::Instance(MemberId::Interface(n)));
                    }
                    instance
                }
            };
            let i = tx.instance(&id)?;
            if let Some(primary) = i.network_interfaces.first() {
                interfaces.insert(id.clone(), primary.id.clone());
            }
            Ok(Endpoint::Instance(id.into()))
        };
        let (s, d) = (resolve(source)?, resolve(destination)?);
        Ok((s, d, interfaces))
    })?;
    let share = share(call.state, call.ctx)?;
    let mut flow = Flow::between(source, destination, l4, nic_type);
    // `IpVersion` (Stockade's): the family of a flow between two instances, which no
    // address names (4 unless ICMPv6).
    match p.number("IpVersion", 4, 6)? {
        Some(6) => flow.family = policy::IpFamily::V6,
        Some(4) => flow.family = policy::IpFamily::V4,
        Some(v) => return Err(ServerError::invalid("IpVersion", v.to_string())),
        None => {}
    }
    let mut body = flow_verdict_json(&share.verdict(&flow)?);
    for stage in body["Stages"]["Stage"].as_array_mut().into_iter().flatten() {
        if stage["NetworkInterfaceId"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        {
            continue;
        }
        let interface = stage["InstanceId"]
            .as_str()
            .and_then(|i| i.parse::<InstanceId>().ok())
            .and_then(|i| interfaces.get(&i))
            .map(ToString::to_string)
            .unwrap_or_default();
        stage["NetworkInterfaceId"] = json!(interface);
    }
    Ok(Reply::Body(body))
}

/// The `DescribeFlowVerdict` response body (without `RequestId`): the verdict, and per stage
/// what decided it, empty strings where a field does not apply.
pub fn flow_verdict_json(verdict: &policy::FlowVerdict) -> Value {
    let stages: Vec<Value> = verdict
        .stages
        .iter()
        .map(|s| {
            let (group, rule, priority, policy) = match &s.decided_by {
                DecidedBy::Rule { group, rule, priority, policy } => {
                    (group.to_string(), rule.to_string(), priority.to_string(), policy.as_wire().to_string())
                }
                DecidedBy::InnerAccessPolicy(g) => (g.to_string(), String::new(), String::new(), String::new()),
                _ => Default::default(),
            };
            // A secondary interface's stage names its instance and itself.
            let (instance, interface) = match (&s.instance, &s.attached_to) {
                (MemberId::Interface(n), Some(at)) => (at.to_string(), n.to_string()),
                (id, _) => (id.to_string(), String::new()),
            };
            json!({
                "Stage": match s.direction { Direction::Egress => "Egress", Direction::Ingress => "Ingress" },
                "InstanceId": instance,
                "NetworkInterfaceId": interface,
                "Verdict": s.verdict.as_wire(),
                "DecidedBy": s.decided_by.as_wire(),
                "SecurityGroupId": group,
                "SecurityGroupRuleId": rule,
                "Priority": priority,
                "Policy": policy,
            })
        })
        .collect();
    json!({"Verdict": verdict.verdict.as_wire(), "Stages": {"Stage": stages}})
}

/// The findings as the `DescribeSecurityGroupAudit` response body (and `stockade audit
/// --format json`).
pub fn audit_json(findings: &[policy::audit::Finding]) -> Value {
    let items: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "Check": f.check.as_str(),
                "Severity": f.severity.as_str(),
                "SecurityGroupId": f.group.to_string(),
                "SecurityGroupRuleId": f.rule.as_ref().map(ToString::to_string).unwrap_or_default(),
                "Message": f.message,
                "Recommendation": f.fix,
            })
        })
        .collect();
    json!({"TotalCount": items.len(), "Findings": {"Finding": items}})
}

/// `DescribeSecurityGroupAudit`: the audit of the caller's groups in the region
/// (`SecurityGroupId.N` narrows it; `RiskyPorts` is a comma-separated list).
pub(super) fn audit(call: &Call) -> Result<Reply> {
    let p = call.params;
    let only: Vec<SecurityGroupId> = p.typed_list("SecurityGroupId")?;
    let mut config = policy::audit::AuditConfig::default();
    for leave in p.objects("PlannedLeave") {
        let instance = leave
            .opt("InstanceId")
            .ok_or(ModelError::Missing("PlannedLeave.N.InstanceId"))?;
        let group = leave
            .opt("SecurityGroupId")
            .ok_or(ModelError::Missing("PlannedLeave.N.SecurityGroupId"))?;
        config
            .planned_leaves
            .push((instance.parse()?, group.parse()?));
    }
    if let Some(list) = p.opt("RiskyPorts") {
        config.risky_ports = list
            .split(',')
            .map(|s| s.trim().parse::<u16>())
            .collect::<Result<_, _>>()
            .map_err(|_| ServerError::invalid("RiskyPorts", list))?;
    }
    // `unused-rule`: seconds without a hit (30 days unless asked; at most ten years).
    let window = p
        .number("UnusedRuleWindow", 1, 10 * 365 * 86_400)?
        .unwrap_or(30 * 86_400);
    let (mine, referenced, usage) = call.query(|tx| {
        for g in &only {
            tx.group(g)?;
        }
        Ok((
            tx.find_groups(&GroupFilter::default())?,
            tx.groups_referenced_by_others()?,
            tx.rule_usage(window)?,
        ))
    })?;
    config.referenced_elsewhere = referenced;
    config.usage = usage;
    config.labels = mine
        .iter()
        .map(|g| {
            let label = policy::audit::GroupLabel {
                name: g.name.clone(),
                description: g.description.clone(),
                tags: g.tags.len(),
            };
            (g.id.clone(), label)
        })
        .collect();
    let mine: Vec<SecurityGroupId> = mine.into_iter().map(|g| g.id).collect();
    // The caller's share holds its groups (with members or not) and what their rules name.
    let share = share(call.state, call.ctx)?;
    let findings: Vec<policy::audit::Finding> = policy::audit::audit(share.state(), &config)
        .into_iter()
        .filter(|f| mine.contains(&f.group) && (only.is_empty() || only.contains(&f.group)))
        .collect();
    Ok(Reply::Body(audit_json(&findings)))
}

/// An exposure as the `DescribeInstanceExposure` response body (and `stockade exposure
/// --format json`): per accepted (protocol, ports, sources) part, what accepts it and which
/// of the instances `visible` admits can open such flows.
pub fn exposure_json(
    instance: &MemberId,
    exposed: &[policy::exposure::Exposed],
    evaluator: &impl Evaluator,
    visible: impl Fn(&MemberId) -> bool,
) -> Result<Value, policy::PolicyError> {
    let mut items = Vec::with_capacity(exposed.len());
    let state = evaluator.state();
    let owner = state.instance(instance)?.owner;
    let reaching_each = policy::exposure::reaching_all(evaluator, instance, exposed)?;
    for (e, reaching) in exposed.iter().zip(reaching_each) {
        let (group, rule) = match &e.decided_by {
            DecidedBy::Rule { group, rule, .. } => (group.to_string(), rule.to_string()),
            DecidedBy::InnerAccessPolicy(g) => (g.to_string(), String::new()),
            _ => Default::default(),
        };
        // Access through a rule naming another account's group (classic network, as ECS
        // allows) is answered as that group: its members' addresses are that account's.
        let foreign_peer = match &e.decided_by {
            DecidedBy::Rule { group, rule, .. } => {
                state
                    .group(group)?
                    .rule(rule)
                    .and_then(|(_, p)| match &p.peer {
                        model::Peer::Group(peer) => state
                            .group(&peer.id)
                            .ok()
                            .filter(|g| g.group.owner != owner)
                            .map(|g| (peer.id.to_string(), g.group.owner.to_string())),
                        _ => None,
                    })
            }
            _ => None,
        };
        let (sources, peer_group, peer_owner) = match foreign_peer {
            Some((g, o)) => (Vec::new(), g, o),
            None => (
                e.sources.iter().map(ToString::to_string).collect(),
                String::new(),
                String::new(),
            ),
        };
        let reaching: Vec<String> = reaching
            .iter()
            .filter(|i| visible(i))
            .map(ToString::to_string)
            .collect();
        // Only what a rule can name (no `OTHER` class, no port 0 alone).
        let Some(port_range) = e.protocol.rule_port_range(e.ports) else {
            continue;
        };
        items.push(json!({
            "IpProtocol": e.protocol.as_wire(),
            "PortRange": port_range,
            "SourceCidrIps": {"SourceCidrIp": sources},
            "SourceGroupId": peer_group,
            "SourceGroupOwnerId": peer_owner,
            "ExceptSourceGroupIds": {"SecurityGroupId": ids(&e.except)},
            "DecidedBy": e.decided_by.as_wire(),
            "SecurityGroupId": group,
            "SecurityGroupRuleId": rule,
            "SourceInstances": {"InstanceId": reaching},
        }));
    }
    // A secondary interface answers as its instance's, naming the interface too.
    let (instance_id, interface_id) = match (
        instance,
        evaluator.state().instance(instance)?.attached_to.as_ref(),
    ) {
        (MemberId::Interface(n), Some(at)) => (at.to_string(), n.to_string()),
        (id, _) => (id.to_string(), String::new()),
    };
    Ok(json!({
        "InstanceId": instance_id,
        "NetworkInterfaceId": interface_id,
        "Exposures": {"Exposure": items},
    }))
}

/// `DescribeInstanceExposure`: every inbound IPv4 flow one of the caller's instances
/// accepts (`NicType` internet for a classic instance's public interface), or, with
/// `NetworkInterfaceId` instead of `InstanceId`, one of its attached interfaces (a secondary
/// one by its own groups at its own addresses; a primary one is its instance).
pub(super) fn exposure(call: &Call) -> Result<Reply> {
    let p = call.params;
    let nic: NicType = p.parsed("NicType")?.unwrap_or(NicType::Intranet);
    let member = match p.parsed::<model::NetworkInterfaceId>("NetworkInterfaceId")? {
        Some(n) => call.query(|tx| {
            let record = tx.interface(&n)?;
            let instance = record
                .instance
                .ok_or(control::ControlError::InterfaceNotAttached(n.clone()))?;
            Ok(match record.kind {
                control::InterfaceKind::Secondary => MemberId::Interface(n),
                control::InterfaceKind::Primary => MemberId::Instance(instance),
            })
        })?,
        None => {
            let id: InstanceId = p.typed("InstanceId")?;
            call.query(|tx| tx.instance(&id).map(|_| ()))?;
            MemberId::from(id)
        }
    };
    // The same compiled engine DescribeFlowVerdict uses, rebuilt only when the policy moved.
    let share = share(call.state, call.ctx)?;
    let engine = &share.engine;
    let viewer = policy::exposure::Viewer::Account(call.ctx.account);
    let exposed = policy::exposure::exposure_in(engine, &member, nic, Direction::Ingress, viewer)?;
    let mine = owned_by(engine.state(), call.ctx.account);
    Ok(Reply::Body(exposure_json(&member, &exposed, engine, mine)?))
}

/// Group ids as the answers list them.
fn ids(groups: &[SecurityGroupId]) -> Vec<String> {
    groups.iter().map(ToString::to_string).collect()
}

/// The answer of `PreviewSecurityGroupChange`: for each of the caller's instances, the
/// flows (direction, protocol, ports, peers) whose verdict the change flips between the
/// region's policies `before` and `after`.
pub(super) fn preview(
    call: &Call,
    before: &policy::Snapshot,
    after: &policy::Snapshot,
) -> Result<Reply> {
    let (was, will) = (engine_of(before)?, engine_of(after)?);
    let visible = owned_by(will.state(), call.ctx.account);
    // The caller's members in both policies: its instances and the secondary interfaces
    // attached in both. (An interface the change attaches or detaches starts or stops
    // carrying traffic as a whole; its own flows are its exposure, not a flip.)
    let mut mine: Vec<MemberId> =
        call.query(|tx| Ok(tx.instances()?.into_iter().map(|i| i.id.into()).collect()))?;
    let mut interfaces: Vec<MemberId> = will
        .state()
        .instances()
        .filter(|i| i.owner == call.ctx.account && i.attached_to.is_some())
        .filter(|i| was.state().instance(&i.id).is_ok())
        .map(|i| i.id.clone())
        .collect();
    interfaces.sort();
    mine.extend(interfaces);
    let mut items = Vec::new();
    for id in &mine {
        // Only the instances the change can affect are judged: the part of the policy that
        // decides an instance's flows is its closure (its groups with their rules, the
        // groups they name, the members of both, the lists), so where the change left that
        // alike, no flow of the instance flips.
        let local = std::collections::BTreeSet::from([id.clone()]);
        if before.closure(&local) == after.closure(&local) {
            continue;
        }
        // A classic instance with a public address has an internet interface too, with
        // rules of its own.
        let internet = will
            .state()
            .instance(id)
            .is_ok_and(|i| i.network() == model::NetworkType::Classic && i.public_ip.is_some());
        let nics: &[NicType] = if internet {
            &[NicType::Intranet, NicType::Internet]
        } else {
            &[NicType::Intranet]
        };
        for (&nic, direction) in nics
            .iter()
            .flat_map(|n| [(n, Direction::Ingress), (n, Direction::Egress)])
        {
            let viewer = policy::exposure::Viewer::Account(call.ctx.account);
            let flips = policy::exposure::changes_seen(&was, &will, id, nic, direction, viewer)?;
            for c in flips {
                // Only what a rule can name (no `OTHER` class, no port 0 alone).
                let Some(port_range) = c.protocol.rule_port_range(c.ports) else {
                    continue;
                };
                let peers_in: Vec<String> = will
                    .state()
                    .instances()
                    .filter(|i| {
                        &i.id != id
                            && visible(&i.id)
                            && i.intranet_addresses()
                                .any(|a| c.peers.iter().any(|n| n.contains(&a)))
                    })
                    .map(|i| i.id.to_string())
                    .collect();
                let (instance, interface) = match will.state().instance(id).map(|i| &i.attached_to)
                {
                    Ok(Some(at)) => (at.to_string(), id.to_string()),
                    _ => (id.to_string(), String::new()),
                };
                items.push(json!({
                    "InstanceId": instance,
                    "NetworkInterfaceId": interface,
                    "NicType": nic.as_wire(),
                    "Direction": if direction == Direction::Ingress { "Ingress" } else { "Egress" },
                    "Effect": if c.allowed { "Allowed" } else { "Denied" },
                    "IpProtocol": c.protocol.as_wire(),
                    "PortRange": port_range,
                    "PeerCidrIps": {"PeerCidrIp": c.peers.iter().map(ToString::to_string).collect::<Vec<_>>()},
                    "PeerInstances": {"InstanceId": peers_in},
                    "PeerSecurityGroupIds": {"SecurityGroupId": ids(&c.peer_groups)},
                    "ExceptPeerSecurityGroupIds": {"SecurityGroupId": ids(&c.except)},
                }));
            }
        }
    }
    Ok(Reply::Body(
        json!({"TotalCount": items.len(), "Changes": {"Change": items}}),
    ))
}

/// `DescribeReachability` (Stockade's): which classes of the caller's instances can open
/// which services (`Service.N`, `tcp:22` style; SSH, RDP, web, databases and ping by
/// default) on which others. Computed over the caller's share of the region (its instances,
/// the groups they are in and those their rules reference, with their members): verdicts at
/// the caller's instances are the same over it as over the region, and a tenant's question
/// costs what its own fleet costs, not what the region's does. Only the caller's instances
/// are named.
pub(super) fn reachability(call: &Call) -> Result<Reply> {
    let asked = call.params.list("Service");
    let services = if asked.is_empty() {
        policy::reach::Service::defaults()
    } else {
        if asked.len() > policy::reach::MAX_SERVICES {
            return Err(ServerError::invalid("Service", asked.len().to_string()));
        }
        asked
            .iter()
            .map(|s| {
                policy::reach::Service::parse(s).ok_or_else(|| ServerError::invalid("Service", s))
            })
            .collect::<Result<Vec<_>>>()?
    };
    // The caller's share compiled for the flow questions at this revision serves here too.
    let share = share(call.state, call.ctx)?;
    let matrix = policy::reach::reach(&share.engine, &services)?;
    let mine = owned_by(share.state(), call.ctx.account);
    // Classes share one group list, and groups are one account's: a class is all the
    // caller's or none of it.
    let visible: Vec<bool> = matrix
        .classes
        .iter()
        .map(|c| c.instances.iter().all(&mine))
        .collect();
    let shown: Vec<usize> = (0..matrix.classes.len()).filter(|&k| visible[k]).collect();
    // Numbered among the caller's classes only: numbers with gaps would count another
    // account's classes.
    let number: std::collections::HashMap<usize, usize> =
        shown.iter().enumerate().map(|(n, &k)| (k, n)).collect();
    let name = |k: usize| format!("c{}", number[&k]);
    let classes: Vec<Value> = shown
        .iter()
        .map(|&k| {
            let c = &matrix.classes[k];
            json!({
                "ClassId": name(k),
                "SecurityGroupIds": {"SecurityGroupId": c.groups.iter().map(ToString::to_string).collect::<Vec<_>>()},
                "InstanceIds": {"InstanceId": c.instances.iter().map(ToString::to_string).collect::<Vec<_>>()},
            })
        })
        .collect();
    let edges: Vec<Value> = matrix
        .edges()
        .filter(|&(from, to)| visible[from] && visible[to])
        .map(|(from, to)| {
            json!({
                "From": name(from),
                "To": name(to),
                "Services": {"Service": matrix.allowed(from, to).map(|k| matrix.services[k].name()).collect::<Vec<_>>()},
            })
        })
        .collect();
    Ok(Reply::Body(json!({
        "Services": {"Service": services.iter().map(|s| s.name()).collect::<Vec<_>>()},
        "Classes": {"Class": classes},
        "Edges": {"Edge": edges},
    })))
}
