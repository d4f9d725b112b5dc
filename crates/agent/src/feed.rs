//! The control plane's agent feed, as the agent sees it (the server side is
//! `server::agents`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;
use model::{InstanceId, MemberId, NetworkInterfaceId};
use policy::delta::{self, Answer, Items, Touched};
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

/// What one poll of the feed brought.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The whole share.
    Whole(HostPolicy),
    /// Only members changed since the share held (the usual change: an instance joining or
    /// leaving a group): those removed and those new or changed, at `revision`.
    Members {
        /// The revision of the share the change applies to.
        base: u64,
        /// The store revision after the change.
        revision: u64,
        /// Members gone from the share.
        removed: Vec<MemberId>,
        /// Members new to the share or changed, as they are now.
        changed: Vec<model::Instance>,
    },
}

impl Update {
    /// The store revision the update brings the share to.
    pub fn revision(&self) -> u64 {
        match self {
            Update::Whole(p) => p.revision,
            Update::Members { revision, .. } => *revision,
        }
    }
}

/// The update of members `keys` (removed or changed) at `revision`, read from `items`.
fn members(
    base: u64,
    revision: u64,
    keys: &BTreeSet<String>,
    items: &Items,
) -> Result<Update, AgentError> {
    let (mut removed, mut changed) = (Vec::new(), Vec::new());
    for key in keys {
        match items.member(key) {
            Some(text) => changed.push(
                policy::document::parse_instance_item(text)
                    .map_err(|e| AgentError::Policy(e.to_string()))?,
            ),
            None => removed.push(
                key.parse()
                    .map_err(|_| AgentError::Feed(format!("a member key {key}")))?,
            ),
        }
    }
    Ok(Update::Members {
        base,
        revision,
        removed,
        changed,
    })
}

/// Follows the feed by deltas: holds the items of the last share received, asks for what
/// changed since, and rebuilds the share from them (`policy::delta`). Whenever a delta does
/// not fit what is held, it drops what it holds and asks for the whole share.
#[derive(Debug)]
pub struct Follower {
    client: FeedClient,
    held: Option<(u64, Items)>,
    /// What the last answer touched, when it was a delta.
    touched: Option<Touched>,
    received: usize,
}

impl Follower {
    /// A follower holding nothing yet: its first poll brings the whole share.
    pub fn new(client: FeedClient) -> Follower {
        Follower {
            client,
            held: None,
            touched: None,
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

    /// What changed at the first revision after the one held (the whole share at once when
    /// nothing is held), waiting at most `wait`; on timeout an update of nothing, at the
    /// revision held. Only members changed: those members, read alone; anything else: the
    /// whole share, read again.
    pub fn next(&mut self, wait: Duration) -> Result<Update, AgentError> {
        let base = self.revision();
        let revision = self.next_items(wait)?.0;
        let Some((_, items)) = &self.held else {
            unreachable!("next_items holds what it returns");
        };
        if let (Some(keys), Some(base)) =
            (self.touched.as_ref().and_then(Touched::members_only), base)
        {
            let update = members(base, revision, keys, items);
            if update.is_err() {
                self.reset();
            }
            return update;
        }
        self.whole().map(Update::Whole)
    }

    /// The share held, read whole (for an agent that could not apply an update of members
    /// to what it holds).
    pub fn whole(&mut self) -> Result<HostPolicy, AgentError> {
        let Some((revision, items)) = &self.held else {
            return Err(AgentError::Feed("no share held".into()));
        };
        let revision = *revision;
        let policy = serde_json::from_str(&items.to_answer())
            .map_err(|e| AgentError::Feed(e.to_string()))
            .and_then(|mut whole: Value| {
                whole["Revision"] = revision.into();
                HostPolicy::from_json(&whole)
            });
        if policy.is_err() {
            self.reset();
        }
        policy
    }

    /// Holds nothing: the next poll brings the whole share again, as it would have
    /// without deltas (after an answer that could not be read, or an update the agent
    /// could not apply).
    pub fn reset(&mut self) {
        self.held = None;
        self.touched = None;
    }

    /// [`Follower::next`] without parsing the share: its revision and items as held.
    pub fn next_items(&mut self, wait: Duration) -> Result<(u64, &Items), AgentError> {
        let body = self.client.answer(self.revision(), wait, true)?;
        self.received += body.len();
        let malformed = |e: delta::DeltaError| AgentError::Feed(e.to_string());
        let (revision, answer) = delta::read_answer(&body).map_err(malformed)?;
        self.touched = None;
        let items = match (answer, self.held.take()) {
            (Answer::Whole(items), _) => items,
            (Answer::Delta(delta), Some((held, mut items))) => match items.apply(delta, held) {
                Ok(touched) => {
                    self.touched = Some(touched);
                    items
                }
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
