//! The server's Prometheus metrics (`stockade serve --metrics-listen`), in the OpenMetrics
//! text format through `prometheus-client`.
//!
//! They are the operator's, served on a listener of their own and never on the API's: the
//! host names and the fleet's request counts are nobody's business who holds only an
//! AccessKey. No family carries an account, a resource id or an address, so what one tenant
//! does shows only in totals, and no request can add a label value outside closed sets
//! (actions of the table, ECS error codes, hosts with an agent token).

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::AppState;

/// An API request's action and the ECS code it was answered with (`OK` on success).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    action: &'static str,
    code: String,
}

/// One action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// One host (an agent).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    host: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 0.25 ms to about 4 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The server's metric families, registered once.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histograms<ActionLabel>,
    commits: Histogram,
    revision: Gauge,
    feed_polls: Gauge,
    host_revision: Family<HostLabel, Gauge>,
    host_lag: Family<HostLabel, Gauge>,
    host_age: Family<HostLabel, Gauge<f64, AtomicU64>>,
    host_failed_closed: Family<HostLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("stockade"),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            commits: latency_histogram(),
            revision: Gauge::default(),
            feed_polls: Gauge::default(),
            host_revision: Family::default(),
            host_lag: Family::default(),
            host_age: Family::default(),
            host_failed_closed: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "requests",
            "API requests by action and the ECS code answered (OK on success; `unknown` for an action outside the table)",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to answer an API request, from its body read to its answer made, by action",
            m.latency.clone(),
        );
        r.register(
            "store_commit_duration_seconds",
            "Time of one committed write transaction, from taking the writer's place to the commit's return",
            m.commits.clone(),
        );
        r.register(
            "revision",
            "The change log's revision this server last read",
            m.revision.clone(),
        );
        r.register(
            "feed_polls",
            "Agent feed requests being answered or waiting for a change (long polls)",
            m.feed_polls.clone(),
        );
        r.register(
            "host_applied_revision",
            "The revision a host's agent last reported applied",
            m.host_revision.clone(),
        );
        r.register(
            "host_lag_revisions",
            "How many revisions a host's agent is behind this server's",
            m.host_lag.clone(),
        );
        r.register(
            "host_report_age_seconds",
            "Seconds since a host's agent was last heard from (report or poll)",
            m.host_age.clone(),
        );
        r.register(
            "host_failed_closed_devices",
            "Devices a host's agent failed closed at its last report (interfaces it could not program, devices no bound interface explains)",
            m.host_failed_closed.clone(),
        );
        m
    }
}

impl Metrics {
    /// Counts one API request and its latency.
    pub(crate) fn request(&self, action: Option<&'static str>, code: &str, took: Duration) {
        let action = action.unwrap_or("unknown");
        self.requests
            .get_or_create(&RequestLabels {
                action,
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&ActionLabel { action })
            .observe(took.as_secs_f64());
    }

    /// The store-commit histogram, for the control plane to observe into.
    pub(crate) fn commits(&self) -> Histogram {
        self.commits.clone()
    }

    /// A feed request began; the guard counts it until dropped.
    pub(crate) fn feed_poll(&self) -> impl Drop + use<> {
        struct Poll(Gauge);
        impl Drop for Poll {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        self.feed_polls.inc();
        Poll(self.feed_polls.clone())
    }

    /// The families in the text format, the gauges read from `state` first.
    pub fn encode(&self, state: &AppState) -> String {
        let revision = state.control.revision().unwrap_or(0);
        self.revision.set(revision as i64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Hosts are read afresh: one that stopped reporting stays (its age grows), and the
        // families hold no host the registry forgot.
        for family in [
            &self.host_revision,
            &self.host_lag,
            &self.host_failed_closed,
        ] {
            family.clear();
        }
        self.host_age.clear();
        let hosts = state.hosts.lock().unwrap_or_else(|e| e.into_inner());
        for (host, (seen, report)) in hosts.iter() {
            let label = HostLabel { host: host.clone() };
            let applied = report["Revision"].as_u64().unwrap_or(0);
            self.host_revision.get_or_create(&label).set(applied as i64);
            self.host_lag
                .get_or_create(&label)
                .set(revision.saturating_sub(applied) as i64);
            self.host_age
                .get_or_create(&label)
                .set(now.saturating_sub(*seen) as f64);
            self.host_failed_closed
                .get_or_create(&label)
                .set(failed_closed(report) as i64);
        }
        drop(hosts);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Interfaces and devices an agent's report says it failed closed (an instance's
/// `FailedClosed` is the reason, empty when it is programmed).
fn failed_closed(report: &Value) -> usize {
    let instances = report["Instances"].as_array().map_or(0, |list| {
        list.iter()
            .filter(|i| {
                i["FailedClosed"]
                    .as_str()
                    .is_some_and(|why| !why.is_empty())
            })
            .count()
    });
    instances + report["Unattributed"].as_array().map_or(0, Vec::len)
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
