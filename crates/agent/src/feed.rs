//! The control plane's agent feed, as the agent sees it (the server side is
//! `server::agents`).

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;
use model::{InstanceId, MemberId, NetworkInterfaceId};
use policy::delta::{self, Answer, Items};
use policy::Snapshot;
use serde_json::Value;

use crate::AgentError;

/// A network interface bound to this host, and its instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The interface: the label of its device.
    pub interface: NetworkInterfaceId,
    /// The member whose groups judge it: its instance (a primary interface) or itself (a
    /// secondary one).
    pub id: MemberId,
    /// Its intranet address.
    pub private_ip: Ipv4Addr,
    /// Its internet address (classic network), if any.
    pub public_ip: Option<Ipv4Addr>,
}

/// The host's share of the policy at one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPolicy {
    /// The store revision it reflects.
    pub revision: u64,
    /// The interfaces bound here.
    pub instances: Vec<Placed>,
    /// Their groups, the groups those reference, and the members of both.
    pub snapshot: Snapshot,
}

impl HostPolicy {
    /// Reads a feed answer (validating the policy with the same parser as the CLI's files).
    pub fn from_json(v: &Value) -> Result<HostPolicy, AgentError> {
        let bad = |what: &str| AgentError::Feed(format!("feed answer without {what}"));
        let revision = v["Revision"].as_u64().ok_or_else(|| bad("Revision"))?;
        let instances = v["NetworkInterfaces"]
            .as_array()
            .ok_or_else(|| bad("NetworkInterfaces"))?
            .iter()
            .map(|i| {
                let text = |k: &str| i[k].as_str().unwrap_or_default();
                Ok(Placed {
                    interface: text("NetworkInterfaceId")
                        .parse()
                        .map_err(|_| bad("a valid NetworkInterfaceId"))?,
                    // `MemberId` (a secondary interface judged by its own groups), else
                    // `InstanceId` (servers before secondary interfaces).
                    id: match text("MemberId") {
                        "" => text("InstanceId").parse::<InstanceId>().map(MemberId::from),
                        member => member.parse::<MemberId>(),
                    }
                    .map_err(|_| bad("a valid MemberId or InstanceId"))?,
                    private_ip: text("PrivateIpAddress")
                        .parse()
                        .map_err(|_| bad("a valid PrivateIpAddress"))?,
                    public_ip: text("PublicIpAddress").parse().ok(),
                })
            })
            .collect::<Result<_, AgentError>>()?;
        let snapshot = policy::document::parse(&v["Policy"].to_string())
            .map_err(|e| AgentError::Policy(e.to_string()))?;
        Ok(HostPolicy {
            revision,
            instances,
            snapshot,
        })
    }
}

/// A client of one server's feed.
#[derive(Debug, Clone)]
pub struct FeedClient {
    http: reqwest::blocking::Client,
    server: String,
    token: String,
    host: String,
    region: Option<String>,
}

impl FeedClient {
    /// A client for `host` at `server` (`http://127.0.0.1:8080`).
    pub fn new(server: &str, token: &str, host: &str, region: Option<String>) -> FeedClient {
        FeedClient {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .expect("an HTTP client without TLS always builds"),
            server: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            host: host.to_string(),
            region,
        }
    }

    /// The policy at the first revision after `after` (at once when `after` is `None`),
    /// waiting at most `wait` for one; on timeout the current policy comes back.
    pub fn poll(&self, after: Option<u64>, wait: Duration) -> Result<HostPolicy, AgentError> {
        let body = self.answer(after, wait, false)?;
        let v = serde_json::from_slice(&body).map_err(|e| AgentError::Feed(e.to_string()))?;
        HostPolicy::from_json(&v)
    }

    /// A poll's revision and size in bytes, its share read as items but not compiled.
    pub fn poll_raw(&self, after: Option<u64>, wait: Duration) -> Result<(u64, usize), AgentError> {
        let body = self.answer(after, wait, false)?;
        let (revision, _) =
            delta::read_answer(&body).map_err(|e| AgentError::Feed(e.to_string()))?;
        Ok((revision, body.len()))
    }

    /// A client for another host sharing this one's connections (one process standing in
    /// for many hosts, as the feed benchmark does).
    pub fn for_host(&self, host: &str) -> FeedClient {
        FeedClient {
            host: host.to_string(),
            ..self.clone()
        }
    }

    /// The text of the answer to a poll (a delta when `delta` and the server can).
    fn answer(&self, after: Option<u64>, wait: Duration, delta: bool) -> Result<Bytes, AgentError> {
        let mut query = vec![
            ("host", self.host.clone()),
            ("wait", wait.as_secs().to_string()),
        ];
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        if let Some(r) = &self.region {
            query.push(("region", r.clone()));
        }
        if delta {
            query.push(("delta", "1".into()));
        }
        self.send_text(
            self.http
                .get(format!("{}/agent/v1/policy", self.server))
                .query(&query),
        )
    }

    /// Reports what the agent enforces.
    pub fn report(&self, report: &Value) -> Result<(), AgentError> {
        self.send(
            self.http
                .post(format!("{}/agent/v1/status", self.server))
                .json(report),
        )
        .map(drop)
    }

    /// Every host's last report (for `stockade lab status`).
    pub fn hosts(&self) -> Result<Value, AgentError> {
        self.send(self.http.get(format!("{}/agent/v1/hosts", self.server)))
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Result<Value, AgentError> {
        let body = self.send_text(request)?;
        serde_json::from_slice(&body).map_err(|e| AgentError::Feed(e.to_string()))
    }

    /// The body of a successful answer; an error answer's ECS code and message as the error.
    fn send_text(&self, request: reqwest::blocking::RequestBuilder) -> Result<Bytes, AgentError> {
        let r = request
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| AgentError::Feed(e.to_string()))?;
        let status = r.status();
        let body = r.bytes().map_err(|e| AgentError::Feed(e.to_string()))?;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(AgentError::Feed(format!(
                "{status}: {} {}",
                v["Code"].as_str().unwrap_or_default(),
                v["Message"].as_str().unwrap_or_default()
            )));
        }
        Ok(body)
    }
}

/// Follows the feed by deltas: holds the items of the last share received, asks for what
/// changed since, and rebuilds the share from them (`policy::delta`). Whenever a delta does
/// not fit what is held, it drops what it holds and asks for the whole share.
#[derive(Debug)]
pub struct Follower {
    client: FeedClient,
    held: Option<(u64, Items)>,
    received: usize,
}

impl Follower {
    /// A follower holding nothing yet: its first poll brings the whole share.
    pub fn new(client: FeedClient) -> Follower {
        Follower {
            client,
            held: None,
            received: 0,
        }
    }

    /// The revision of the share held.
    pub fn revision(&self) -> Option<u64> {
        self.held.as_ref().map(|(r, _)| *r)
    }

    /// Bytes of feed answers received so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// The share at the first revision after the one held (at once when nothing is held),
    /// waiting at most `wait`; on timeout the share held comes back.
    pub fn next(&mut self, wait: Duration) -> Result<HostPolicy, AgentError> {
        let (revision, items) = self.next_items(wait)?;
        let policy = serde_json::from_str(&items.to_answer())
            .map_err(|e| AgentError::Feed(e.to_string()))
            .and_then(|mut whole: Value| {
                whole["Revision"] = revision.into();
                HostPolicy::from_json(&whole)
            });
        if policy.is_err() {
            // Hold nothing: the next poll brings the whole share again, as it would have
            // without deltas.
            self.held = None;
        }
        policy
    }

    /// [`Follower::next`] without parsing the share: its revision and items as held.
    pub fn next_items(&mut self, wait: Duration) -> Result<(u64, &Items), AgentError> {
        let body = self.client.answer(self.revision(), wait, true)?;
        self.received += body.len();
        let malformed = |e: delta::DeltaError| AgentError::Feed(e.to_string());
        let (revision, answer) = delta::read_answer(&body).map_err(malformed)?;
        let items = match (answer, self.held.take()) {
            (Answer::Whole(items), _) => items,
            (Answer::Delta(delta), Some((held, mut items))) => match items.apply(delta, held) {
                Ok(()) => items,
                Err(e) => {
                    tracing::warn!(error = %e, "feed delta does not fit; asking for the whole share");
                    return self.next_items(wait);
                }
            },
            (Answer::Delta(_), None) => {
                return Err(AgentError::Feed(
                    "a delta came without a share to apply it to".into(),
                ))
            }
        };
        let (revision, items) = self.held.insert((revision, items));
        Ok((*revision, items))
    }
}
