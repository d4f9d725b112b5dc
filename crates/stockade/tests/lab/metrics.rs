//! The server's and the agents' Prometheus metrics, scraped by a real Prometheus (Debian's,
//! `scripts/setup-prometheus`) started here on a free port, and read back through its HTTP
//! query API: what an operator's dashboard would see.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{skipped, Lab};

/// A Prometheus process, stopped when dropped.
struct Prometheus {
    child: Child,
    api: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts one scraping `targets` (job, address) every second.
    fn start(targets: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut jobs: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (job, at) in targets {
            jobs.entry(job).or_default().push(format!("'{at}'"));
        }
        let mut config = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
        for (job, at) in jobs {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                at.join(", ")
            ));
        }
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is installed by scripts/setup-prometheus (scripts/test runs it)");
        Prometheus {
            child,
            api: format!("http://127.0.0.1:{port}/api/v1/query"),
            _dir: dir,
        }
    }

    /// The end of Prometheus's log, for a failure's message.
    fn log(&self) -> String {
        let text =
            std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The instant vector `query` answers now, as (labels, value); empty while Prometheus
    /// is not up yet.
    fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let Ok(answer) = reqwest::blocking::Client::new()
            .get(&self.api)
            .query(&[("query", query)])
            .send()
            .and_then(|r| r.json::<Value>())
        else {
            return Vec::new();
        };
        answer["data"]["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .map(|r| {
                        let value = r["value"][1].as_str().unwrap_or("NaN").parse().unwrap();
                        (r["metric"].clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (up to 30 s) until `query`'s values satisfy `ok`; the last answer.
    fn until(&self, query: &str, ok: impl Fn(&[(Value, f64)]) -> bool) -> Vec<(Value, f64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.query(query);
            if ok(&got) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The one value of a vector (NaN when there is none).
fn one(v: &[(Value, f64)]) -> f64 {
    match v {
        [(_, x)] => *x,
        _ => f64::NAN,
    }
}

#[test]
fn prometheus_scrapes_the_server_and_the_agents() {
    if skipped() {
        return;
    }
    let lab = Lab::up('m', 2, 2, 0);
    let g = lab.default_group("vpc");
    lab.call(&[
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", &g),
        ("IpProtocol", "tcp"),
        ("PortRange", "22/22"),
        ("SourceCidrIp", "10.0.0.0/8"),
    ]);
    let refused = lab.try_call(&[
        ("Action", "DescribeSecurityGroupAttribute"),
        ("SecurityGroupId", "sg-nothing00000000000"),
    ]);
    assert!(refused.is_err());
    lab.wait_applied();
    let agents: Vec<String> = lab.lab["Hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["MetricsAddress"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(agents.len(), 2, "{}", lab.lab);
    let mut targets = vec![("server", lab.metrics.as_str())];
    targets.extend(agents.iter().map(|a| ("agent", a.as_str())));
    let prometheus = Prometheus::start(&targets);

    let up = prometheus.until("up", |v| v.len() == 3 && v.iter().all(|(_, x)| *x == 1.0));
    assert!(
        up.len() == 3 && up.iter().all(|(_, x)| *x == 1.0),
        "the server and both agents are scraped: {up:?}\n{}",
        prometheus.log()
    );
    let authorized = prometheus.until(
        r#"stockade_requests_total{action="AuthorizeSecurityGroup",code="OK"}"#,
        |v| one(v) >= 1.0,
    );
    assert_eq!(one(&authorized), 1.0, "{authorized:?}");
    let not_found = prometheus.until(
        r#"stockade_requests_total{action="DescribeSecurityGroupAttribute",code="InvalidSecurityGroupId.NotFound"}"#,
        |v| one(v) >= 1.0,
    );
    assert_eq!(one(&not_found), 1.0, "refusals count by their ECS code");
    let commits = prometheus.query("stockade_store_commit_duration_seconds_count");
    assert!(one(&commits) >= 1.0, "commits are timed: {commits:?}");

    // Every agent has the server's revision in force, by its own metrics and by the
    // server's view of its reports.
    let revision = one(&prometheus.query("stockade_revision"));
    assert!(revision >= 1.0);
    let applied = prometheus.until(r#"stockade_agent_applied_revision{job="agent"}"#, |v| {
        v.len() == 2 && v.iter().all(|(_, x)| *x == revision)
    });
    assert_eq!(applied.len(), 2, "{applied:?}");
    assert!(
        applied.iter().all(|(_, x)| *x == revision),
        "{applied:?} at {revision}"
    );
    let lag = prometheus.until("stockade_host_lag_revisions", |v| {
        v.len() == 2 && v.iter().all(|(_, x)| *x == 0.0)
    });
    let mut hosts: Vec<&str> = lag.iter().filter_map(|(m, _)| m["host"].as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["h1", "h2"], "one series per host: {lag:?}");
    assert!(lag.iter().all(|(_, x)| *x == 0.0), "{lag:?}");
    let transactions =
        prometheus.query(r#"sum(stockade_agent_transactions_total{result="applied"})"#);
    assert!(one(&transactions) >= 2.0, "{transactions:?}");
    // No family names an account or a resource.
    let series = prometheus.query(r#"{__name__=~"stockade_.+"}"#);
    assert!(!series.is_empty());
    let ids = ["sg-", "sgr-", "i-", "eni-", "vpc-", "vsw-", "pl-"];
    for (labels, _) in &series {
        for (name, value) in labels.as_object().unwrap() {
            let value = value.as_str().unwrap_or_default();
            assert!(
                !ids.iter().any(|p| value.starts_with(p)) && value.parse::<u64>().is_err(),
                "{name}={value} names a resource or an account"
            );
        }
    }
}
