//! `stockade agent`: the feed follower and the enforcement loop, wired together.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use model::MemberId;
use netfilter::{Backend, NftCli};
use serde_json::{json, Value};

use crate::feed::{FeedClient, Follower, Update};
use crate::{conntrack, interfaces, AgentError, Enforcer, Metrics, Outcome};

/// How the agent runs (the flags of `stockade agent`).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The control plane, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The agent token the server was started with.
    pub token: String,
    /// This host's name: the interfaces the operator bound to it are enforced here.
    pub host_id: String,
    /// The region (the server's default when `None`).
    pub region: Option<String>,
    /// How often the table is checked for drift and interfaces are looked up again: the
    /// bound on how long a hand edit or a new interface goes unnoticed.
    pub reconcile: Duration,
    /// Whether tracked connections no longer allowed are deleted after a change.
    pub cut_connections: bool,
    /// The host's network namespace when it is not the agent's own (lab mode).
    pub netns: Option<String>,
    /// How policy chains are written.
    pub rendering: nft::Rendering,
    /// How often the rule hit counters are read and, when they counted anything, reported.
    pub hit_interval: Duration,
}

/// Runs the agent until the process ends, counting into `metrics`. Returns only on an error
/// that leaves it nothing to do (the feed thread gone).
pub fn run(config: AgentConfig, metrics: Arc<Metrics>) -> Result<(), AgentError> {
    let client = FeedClient::new(
        &config.server,
        &config.token,
        &config.host_id,
        config.region.clone(),
    );
    let (tx, rx) = mpsc::channel::<Update>();
    let feed = client.clone();
    // Set when an update could not be applied: the feed thread then hands on the whole
    // share it holds, and member updates are skipped until one is taken.
    let resync = Arc::new(AtomicBool::new(false));
    let wanted = resync.clone();
    thread::spawn(move || follow(&feed, &tx, &wanted));
    let netns = config.netns.as_deref();
    let nft = netns.map_or_else(NftCli::default, NftCli::in_netns);
    tracing::info!(
        library = nft.uses_library(),
        "nftables programmed through {}",
        if nft.uses_library() {
            "libnftables in this process"
        } else {
            "the nft program"
        }
    );
    let mut enforcer = Enforcer::new(nft);
    enforcer.set_rendering(config.rendering);
    let mut last_error: Option<String> = None;
    // An update taken from the queue while deciding whether to end connections and report now.
    let mut carried: Option<Update> = None;
    // Tracked connections are owed an ending (a policy was applied, not yet ended by), and the
    // server a report; since when.
    let (mut cut_owed, mut report_owed, mut owed_since) = (false, None, None);
    // The last transaction's outcome, for reports made for hit counts alone.
    let mut last_outcome = Outcome::default();
    let mut hits_read = Instant::now();
    loop {
        let mut new_policy = false;
        let mut tick = false;
        let received = match carried.take() {
            Some(update) => Ok(update),
            None => rx.recv_timeout(config.reconcile),
        };
        match received {
            Ok(first) => {
                // Updates queued are applied in order, from the last whole share on.
                let mut queued: Vec<Update> = std::iter::once(first).chain(rx.try_iter()).collect();
                if let Some(whole) = queued.iter().rposition(|u| matches!(u, Update::Whole(_))) {
                    queued.drain(..whole);
                }
                for update in queued {
                    let revision = update.revision();
                    let kind = match update {
                        Update::Whole(_) => "share",
                        Update::Members { .. } => "members",
                    };
                    let result = match update {
                        Update::Whole(p) => enforcer
                            .set_policy(p)
                            .inspect(|()| resync.store(false, Ordering::SeqCst)),
                        // Relative to a share this agent does not hold (it failed to
                        // follow): wait for the whole.
                        Update::Members { base, .. }
                            if resync.load(Ordering::SeqCst)
                                || Some(base) != enforcer.revision() =>
                        {
                            resync.store(true, Ordering::SeqCst);
                            metrics.update("skipped");
                            continue;
                        }
                        Update::Members {
                            revision,
                            removed,
                            changed,
                            ..
                        } => enforcer.update_members(revision, removed, changed),
                    };
                    metrics.update(if result.is_ok() { kind } else { "refused" });
                    match result {
                        Ok(()) => new_policy = true,
                        Err(e) => {
                            // Keep enforcing the last good policy; a whole share follows.
                            tracing::error!(revision, error = %e, "policy refused");
                            last_error = Some(e.to_string());
                            resync.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => tick = true,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(AgentError::Feed("the feed thread ended".into()))
            }
        }
        let started = Instant::now();
        let to_report = match pass(&mut enforcer, netns, tick, &metrics) {
            Ok(Some(outcome)) => {
                metrics.transaction(
                    if outcome.full { "full" } else { "diff" },
                    true,
                    outcome.enforced_in,
                );
                metrics.failed_closed(outcome.failed.len() + enforcer.unattributed().len());
                // A new policy, or devices that came, went or were isolated.
                cut_owed |= config.cut_connections;
                tracing::info!(
                    revision = enforcer.revision(),
                    full = outcome.full,
                    failed = outcome.failed.len(),
                    enforced_ms = outcome.enforced_in.as_secs_f64() * 1e3,
                    took_ms = started.elapsed().as_millis() as u64,
                    "programmed"
                );
                last_error = None;
                Some(outcome)
            }
            Ok(None) => new_policy.then(Outcome::default),
            Err(e) => {
                metrics.transaction("unknown", false, started.elapsed());
                tracing::error!(error = %e, "programming failed; the previous table stays");
                last_error = Some(e.to_string());
                Some(Outcome::default())
            }
        };
        metrics.in_force(enforcer.revision());
        if let Some(outcome) = &to_report {
            last_outcome = outcome.clone();
        }
        report_owed = to_report.or(report_owed);
        if tick && hits_read.elapsed() >= config.hit_interval {
            hits_read = Instant::now();
            match enforcer.read_hits() {
                Ok(()) if enforcer.hits().is_pending() && report_owed.is_none() => {
                    report_owed = Some(last_outcome.clone());
                }
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "hit counters could not be read"),
            }
        }
        if !cut_owed && report_owed.is_none() {
            continue;
        }
        // A newer update waiting goes first: the ending after it judges the flows by the newest
        // policy, the report tells the newest revision, and both now would hold it back by
        // two conntrack listings and a request (tens of milliseconds). Deferred at most
        // `DEFERRED_AT_MOST`, and always done before the report (a host that reported a
        // revision has ended what it disallows).
        let since = *owed_since.get_or_insert(started);
        if let Ok(update) = rx.try_recv() {
            carried = Some(update);
            if since.elapsed() < DEFERRED_AT_MOST {
                continue;
            }
        }
        owed_since = None;
        if std::mem::take(&mut cut_owed) {
            if let Err(e) = end_disallowed(&mut enforcer, netns, &metrics) {
                tracing::error!(error = %e, "tracked connections could not be judged");
                last_error = Some(e.to_string());
            }
        }
        if let Some(outcome) = report_owed.take() {
            let delivered = report(&client, &config, &mut enforcer, &outcome, &last_error);
            metrics.report(delivered);
        }
    }
}

/// The longest ending tracked connections and a report wait for updates arriving one
/// after another.
const DEFERRED_AT_MOST: Duration = Duration::from_millis(250);

/// Deletes the tracked connections the policy held no longer allows.
fn end_disallowed<B: Backend>(
    enforcer: &mut Enforcer<B>,
    netns: Option<&str>,
    metrics: &Metrics,
) -> Result<(), AgentError> {
    if enforcer.engine().is_none() {
        return Ok(());
    }
    // In this process where the backend can (no process started per change), else
    // `conntrack -L`.
    let tracked = match enforcer.backend().tracked_connections() {
        Some(listed) => listed?,
        None => conntrack::list(netns)?,
    };
    let Some(engine) = enforcer.engine() else {
        return Ok(());
    };
    // A contested interface's devices get no packet, established flows included
    // (`Ruleset::isolate`); its tracked connections all go too.
    let contested = enforcer.contested_addresses();
    let (mut gone, rest): (Vec<_>, Vec<_>) = tracked.into_iter().partition(|t| {
        contested.contains(&(t.zone, t.source)) || contested.contains(&(t.zone, t.destination))
    });
    gone.extend(conntrack::disallowed(
        engine,
        &enforcer.local_addresses(),
        &rest,
    ));
    if !gone.is_empty() {
        let n = conntrack::delete(netns, &gone);
        metrics.ended(n);
        tracing::info!(
            ended = n,
            "tracked connections no longer allowed were ended"
        );
    }
    Ok(())
}

/// Long-polls the feed forever, handing every new policy to the loop. Errors back off
/// (0.2 s doubling to 5 s) and the last policy stays in force meanwhile.
fn follow(client: &FeedClient, tx: &mpsc::Sender<Update>, resync: &AtomicBool) {
    let mut follower = Follower::new(client.clone());
    let mut last = None;
    let mut backoff = Duration::from_millis(200);
    let mut reconnected = false;
    loop {
        // A loop that could not follow by members gets the whole share (at the latest on
        // the next answer, a change or the long poll's end).
        let next = follower
            .next(Duration::from_secs(25))
            .and_then(|p| match p {
                Update::Members { .. } if resync.load(Ordering::SeqCst) => {
                    reconnected = true;
                    follower.whole().map(Update::Whole)
                }
                p => Ok(p),
            });
        match next {
            Ok(p) => {
                backoff = Duration::from_millis(200);
                // After an outage (or when the loop wants the whole share again) the
                // policy is handed on even if unchanged, so the loop takes it and reports
                // again, and a restarted server relearns this host.
                if Some(p.revision()) != last || std::mem::take(&mut reconnected) {
                    last = Some(p.revision());
                    tracing::debug!(
                        revision = p.revision(),
                        members = matches!(p, Update::Members { .. }),
                        "update received"
                    );
                    if tx.send(p).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                reconnected = true;
                tracing::warn!(error = %e, "feed unreachable; keeping the last policy");
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One pass: interfaces, drift, the transaction. Returns the outcome when a transaction
/// was applied.
fn pass<B: Backend>(
    enforcer: &mut Enforcer<B>,
    netns: Option<&str>,
    tick: bool,
    metrics: &Metrics,
) -> Result<Option<Outcome>, AgentError> {
    let Some(policy) = enforcer.policy() else {
        return Ok(None);
    };
    // Interfaces are looked up on every tick and when the placed instances differ from those
    // with known interfaces, not on every policy change: a rule change then costs one
    // transaction and nothing else.
    let placed: BTreeSet<&MemberId> = policy.instances.iter().map(|i| &i.id).collect();
    let attached: BTreeSet<&MemberId> =
        enforcer.attachments().iter().map(|a| &a.instance).collect();
    if tick || placed != attached {
        let found = interfaces::discover(netns, &policy.instances)?;
        if !found.unattributed.is_empty() {
            tracing::warn!(devices = ?found.unattributed, "devices failed closed: no bound interface explains them");
        }
        enforcer.set_attachments(found.attachments);
        enforcer.set_unattributed(found.unattributed);
        enforcer.set_contested(found.contested);
        enforcer.set_overlays(found.overlays);
    }
    if tick && enforcer.check_drift()? {
        metrics.drift_repaired();
        tracing::warn!("the table was changed outside the agent; restoring it");
    }
    let outcome = enforcer.sync()?;
    Ok(outcome.applied.then_some(outcome))
}

/// Sends the status report; whether it was delivered.
fn report<B: Backend>(
    client: &FeedClient,
    config: &AgentConfig,
    enforcer: &mut Enforcer<B>,
    outcome: &Outcome,
    error: &Option<String>,
) -> bool {
    let instances: Vec<Value> = enforcer
        .policy()
        .map(|p| {
            p.instances
                .iter()
                .map(|i| {
                    let interfaces: Vec<Value> = enforcer
                        .attachments()
                        .iter()
                        .filter(|a| a.instance == i.id)
                        .map(|a| json!({"NicType": a.nic_type.as_wire(), "Interface": a.interface}))
                        .collect();
                    json!({
                        "NetworkInterfaceId": i.interface.as_str(),
                        "InstanceId": i.id.as_str(),
                        "PrivateIpAddress": i.private_ip.to_string(),
                        "Interfaces": interfaces,
                        "FailedClosed": outcome.failed.get(&i.id).cloned().unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let unattributed: Vec<Value> = enforcer
        .unattributed()
        .iter()
        .map(|(device, why)| json!({"Interface": device, "Why": why}))
        .collect();
    let body = json!({
        "HostId": config.host_id,
        "RegionId": config.region.clone().unwrap_or_default(),
        "Revision": enforcer.revision(),
        "Instances": instances,
        "Unattributed": unattributed,
        "Error": error.clone().unwrap_or_default(),
        "Hits": enforcer.hits().report(),
    });
    match client.report(&body) {
        Ok(_) => {
            enforcer.hits().delivered();
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "status report not delivered");
            false
        }
    }
}
