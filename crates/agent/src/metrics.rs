//! The agent's Prometheus metrics (`stockade agent --metrics-listen`), in the OpenMetrics
//! text format through `prometheus-client`. The binary serves them; this crate only counts.
//!
//! Like the server's, they carry no account, resource id or address: a host's operator reads
//! how the agent keeps up, not what the tenants on it do.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// How a transaction went: `full` (the whole table replaced), `diff`, or `unknown` (it failed
/// before it was made); `applied` or `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransactionLabels {
    kind: &'static str,
    result: &'static str,
}

/// What a feed update was: `share` (whole), `members` (a delta), `refused` (not applied, a
/// whole share asked for instead) or `skipped` (relative to a share not held); a report's
/// result, `delivered` or `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpdateLabel {
    kind: &'static str,
}

/// The agent's metric families.
pub struct Metrics {
    registry: Registry,
    applied_revision: Gauge,
    transactions: Family<TransactionLabels, Counter>,
    transaction_seconds: Histogram,
    drift_repairs: Counter,
    failed_closed: Gauge,
    updates: Family<UpdateLabel, Counter>,
    reports: Family<UpdateLabel, Counter>,
    connections_ended: Counter,
    last_applied: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("stockade_agent"),
            applied_revision: Gauge::default(),
            transactions: Family::default(),
            // 0.25 ms to about 8 s: a one-rule diff to a thousand-instance flat table.
            transaction_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            drift_repairs: Counter::default(),
            failed_closed: Gauge::default(),
            updates: Family::default(),
            reports: Family::default(),
            connections_ended: Counter::default(),
            last_applied: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "applied_revision",
            "The revision of the policy in force on this host",
            m.applied_revision.clone(),
        );
        r.register(
            "last_applied_timestamp_seconds",
            "When the last transaction was applied (Unix seconds)",
            m.last_applied.clone(),
        );
        r.register(
            "transactions",
            "nftables transactions by kind (full: the whole table; diff) and result",
            m.transactions.clone(),
        );
        r.register(
            "transaction_duration_seconds",
            "From a sync's start to its transaction in force: rendering, diffing, applying",
            m.transaction_seconds.clone(),
        );
        r.register(
            "drift_repairs",
            "Times the table was found changed outside the agent and restored",
            m.drift_repairs.clone(),
        );
        r.register(
            "failed_closed_devices",
            "Interfaces failed closed at the last transaction and devices no bound interface explains",
            m.failed_closed.clone(),
        );
        r.register(
            "feed_updates",
            "Feed updates taken, by kind (share, members, refused, skipped)",
            m.updates.clone(),
        );
        r.register(
            "reports",
            "Status reports to the server, by result (delivered, failed)",
            m.reports.clone(),
        );
        r.register(
            "connections_ended",
            "Tracked connections ended because the policy no longer allows them",
            m.connections_ended.clone(),
        );
        m
    }
}

impl Metrics {
    /// A transaction applied (`ok`) or refused by the kernel, and how long its sync took.
    pub(crate) fn transaction(&self, kind: &'static str, ok: bool, took: std::time::Duration) {
        let labels = TransactionLabels {
            kind,
            result: if ok { "applied" } else { "failed" },
        };
        self.transactions.get_or_create(&labels).inc();
        if ok {
            self.transaction_seconds.observe(took.as_secs_f64());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_applied.set(now);
        }
    }

    /// The revision in force, after every pass (a revision that changes nothing on this
    /// host is in force without a transaction).
    pub(crate) fn in_force(&self, revision: Option<u64>) {
        if let Some(r) = revision {
            self.applied_revision.set(r as i64);
        }
    }

    /// The devices failed closed, after a transaction.
    pub(crate) fn failed_closed(&self, n: usize) {
        self.failed_closed.set(n as i64);
    }

    /// A drift found and repaired.
    pub(crate) fn drift_repaired(&self) {
        self.drift_repairs.inc();
    }

    /// A feed update taken (`share`, `members`) or refused.
    pub(crate) fn update(&self, kind: &'static str) {
        self.updates.get_or_create(&UpdateLabel { kind }).inc();
    }

    /// A status report sent.
    pub(crate) fn report(&self, delivered: bool) {
        let kind = if delivered { "delivered" } else { "failed" };
        self.reports.get_or_create(&UpdateLabel { kind }).inc();
    }

    /// Tracked connections ended.
    pub(crate) fn ended(&self, n: usize) {
        self.connections_ended.inc_by(n as u64);
    }

    /// The families in the text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
