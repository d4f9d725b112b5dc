//! The agent feed in-process: token checks, the host's share, the long poll waking on a
//! commit, status reports.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{get, setup, signed, signed_operator, signed_other, two_accounts, TOKEN};
use serde_json::Value;
use tower::ServiceExt;

/// The primary interface of each instance, from `DescribeInstances`.
async fn primary_interfaces(app: &axum::Router, ids: &[String]) -> Vec<String> {
    let list = serde_json::to_string(ids).unwrap();
    let described = api(
        app,
        &[("Action", "DescribeInstances"), ("InstanceIds", &list)],
    )
    .await;
    ids.iter()
        .map(|id| {
            let i = described["Instances"]["Instance"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["InstanceId"] == id.as_str())
                .unwrap();
            let nics = i["NetworkInterfaces"]["NetworkInterface"]
                .as_array()
                .unwrap();
            assert_eq!(nics.len(), 1);
            assert_eq!(nics[0]["Type"], "Primary");
            assert!(nics[0]["MacAddress"]
                .as_str()
                .unwrap()
                .starts_with("00:16:3e:"));
            nics[0]["NetworkInterfaceId"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The operator binds (or unbinds) an interface.
async fn place(app: &axum::Router, eni: &str, host: Option<&str>) -> Value {
    let mut params = vec![
        ("Version", "2014-05-26"),
        ("RegionId", "cn-hangzhou"),
        ("NetworkInterfaceId", eni),
    ];
    match host {
        Some(h) => params.extend([("Action", "PlaceNetworkInterface"), ("HostId", h)]),
        None => params.push(("Action", "UnplaceNetworkInterface")),
    }
    let (status, body) = get(app, &signed_operator(&params), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A VPC-product request that must succeed.
async fn vpc_call(app: &axum::Router, params: &[(&str, &str)]) -> Value {
    let mut all = params.to_vec();
    all.push(("Version", "2016-04-28"));
    all.push(("RegionId", "cn-hangzhou"));
    common::ok(app, signed, &all).await
}

async fn api(app: &axum::Router, params: &[(&str, &str)]) -> Value {
    let mut all = params.to_vec();
    all.push(("Version", "2014-05-26"));
    all.push(("RegionId", "cn-hangzhou"));
    let (status, body) = get(app, &signed(&all), None).await;
    assert_eq!(status, StatusCode::OK, "{params:?}: {body}");
    body
}

/// A new group and an instance in it: their ids.
async fn group_and_instance(app: &axum::Router) -> (String, String) {
    let sg = api(app, &[("Action", "CreateSecurityGroup")]).await["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    let run = api(
        app,
        &[
            ("Action", "RunInstances"),
            ("ImageId", "img"),
            ("InstanceType", "t"),
            ("SecurityGroupId", &sg),
        ],
    )
    .await;
    let id = run["InstanceIdSets"]["InstanceIdSet"][0]
        .as_str()
        .unwrap()
        .to_string();
    (sg, id)
}

#[tokio::test]
async fn agents_need_the_token() {
    let (_dir, app) = setup();
    for token in [None, Some("wrong")] {
        let (status, body) = get(&app, "/agent/v1/policy?host=h1", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["Code"], "InvalidAgentToken");
        assert!(body["RequestId"].is_string());
    }
    let (status, body) = get(&app, "/agent/v1/policy?host=h1&region=nowhere", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["Code"], "InvalidRegionId.NotFound");
}

#[tokio::test]
async fn the_feed_carries_the_hosts_instances_and_wakes_on_a_commit() {
    let (_dir, app) = setup();
    let sg = api(&app, &[("Action", "CreateSecurityGroup")]).await["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    let run = api(
        &app,
        &[
            ("Action", "RunInstances"),
            ("ImageId", "img"),
            ("InstanceType", "t"),
            ("SecurityGroupId", &sg),
            ("Amount", "2"),
        ],
    )
    .await;
    let ids: Vec<String> = run["InstanceIdSets"]["InstanceIdSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let enis = primary_interfaces(&app, &ids).await;
    place(&app, &enis[0], Some("h1")).await;
    let (status, feed) = get(&app, "/agent/v1/policy?host=h1", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let placed: Vec<(&str, &str)> = feed["NetworkInterfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["NetworkInterfaceId"].as_str().unwrap(),
                i["InstanceId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [(enis[0].as_str(), ids[0].as_str())],
        "only the interface the operator bound to h1"
    );
    let policy = policy::document::parse(&feed["Policy"].to_string()).unwrap();
    assert_eq!(policy.groups[0].group.id.as_str(), sg);
    let revision = feed["Revision"].as_u64().unwrap();

    // Nothing new: the poll waits out its `wait`.
    let start = Instant::now();
    let uri = format!("/agent/v1/policy?host=h1&after={revision}&wait=1");
    let (_, same) = get(&app, &uri, Some(TOKEN)).await;
    assert_eq!(same["Revision"].as_u64(), Some(revision));
    assert!(start.elapsed() >= Duration::from_millis(900));

    // A commit wakes a waiting poll at once, with the new revision.
    let waiting = {
        let app = app.clone();
        let uri = format!("/agent/v1/policy?host=h1&after={revision}&wait=30");
        tokio::spawn(async move { get(&app, &uri, Some(TOKEN)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    api(
        &app,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &sg),
            ("IpProtocol", "tcp"),
            ("PortRange", "80/80"),
            ("SourceCidrIp", "198.18.0.0/16"),
        ],
    )
    .await;
    let (_, woken) = waiting.await.unwrap();
    assert!(woken["Revision"].as_u64().unwrap() > revision);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "woken by the commit"
    );
    assert_eq!(
        woken["Policy"]["SecurityGroups"][0]["Permissions"][0]["PortRange"],
        "80/80"
    );

    // Reports are listed per host.
    let report = Request::post("/agent/v1/status")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"HostId":"h1","Revision":7}"#))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(report).await.unwrap().status(),
        StatusCode::OK
    );
    let (_, hosts) = get(&app, "/agent/v1/hosts", Some(TOKEN)).await;
    let h1 = hosts["Hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["HostId"] == "h1")
        .unwrap();
    assert_eq!(h1["Report"]["Revision"], 7);
}

#[tokio::test]
async fn malformed_feed_requests_get_ecs_bodies_after_the_token_check() {
    let (_dir, app) = setup();
    for uri in [
        "/agent/v1/policy?after=notanumber",
        "/agent/v1/policy?host=h&wait=-1",
    ] {
        let (status, body) = get(&app, uri, None).await;
        assert_eq!(
            (status, body["Code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("InvalidAgentToken")),
            "{uri}: {body}"
        );
        let (status, body) = get(&app, uri, Some(TOKEN)).await;
        assert_eq!(
            (status, body["Code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("InvalidParameter")),
            "{uri}: {body}"
        );
        assert!(body["RequestId"].is_string());
    }
    for token in [None, Some(TOKEN)] {
        let mut request =
            Request::post("/agent/v1/status").header("content-type", "application/json");
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from("{not json")).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).expect("an ECS JSON body");
        let expected = if token.is_some() {
            "InvalidParameter"
        } else {
            "InvalidAgentToken"
        };
        assert_eq!(body["Code"], expected, "{status}: {body}");
    }
}

#[tokio::test]
async fn placement_is_the_operators_and_no_tag_can_place() {
    let (_dir, app) = two_accounts();
    let (_, id) = group_and_instance(&app).await;
    let eni = primary_interfaces(&app, std::slice::from_ref(&id))
        .await
        .remove(0);
    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut p = vec![("Version", "2014-05-26"), ("RegionId", "cn-hangzhou")];
        p.extend_from_slice(extra);
        p
    }

    // The owner itself cannot place its interface, read placements, or use the old tag.
    for (sign, who) in [
        (signed as common::Signer, "owner"),
        (signed_other, "another tenant"),
    ] {
        for params in [
            with(&[
                ("Action", "PlaceNetworkInterface"),
                ("NetworkInterfaceId", eni.as_str()),
                ("HostId", "h1"),
            ]),
            with(&[
                ("Action", "UnplaceNetworkInterface"),
                ("NetworkInterfaceId", eni.as_str()),
            ]),
            with(&[("Action", "DescribeNetworkInterfacePlacements")]),
        ] {
            let (status, body) = get(&app, &sign(&params), None).await;
            assert_eq!(
                (status, body["Code"].as_str()),
                (StatusCode::FORBIDDEN, Some("Forbidden.RAM")),
                "{who}: {params:?}: {body}"
            );
        }
    }
    let (status, body) = get(
        &app,
        &signed(&with(&[
            ("Action", "TagResources"),
            ("ResourceType", "instance"),
            ("ResourceId.1", id.as_str()),
            ("Tag.1.Key", "stockade:host"),
            ("Tag.1.Value", "h1"),
        ])),
        None,
    )
    .await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidTagKey.Malformed")),
        "{body}"
    );
    let (_, feed) = get(&app, "/agent/v1/policy?host=h1", Some(TOKEN)).await;
    assert_eq!(feed["NetworkInterfaces"], serde_json::json!([]));

    // The operator binds it, sees it, and unbinds it; bad ids and host names are refused.
    place(&app, &eni, Some("h1")).await;
    let (_, listed) = get(
        &app,
        &signed_operator(&with(&[
            ("Action", "DescribeNetworkInterfacePlacements"),
            ("HostId", "h1"),
        ])),
        None,
    )
    .await;
    let rows = listed["Placements"]["Placement"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["NetworkInterfaceId"], eni.as_str());
    assert_eq!(rows[0]["InstanceId"], id.as_str());
    assert_eq!(rows[0]["HostId"], "h1");
    let (_, feed) = get(&app, "/agent/v1/policy?host=h1", Some(TOKEN)).await;
    assert_eq!(feed["NetworkInterfaces"].as_array().unwrap().len(), 1);
    place(&app, &eni, None).await;
    let (_, feed) = get(&app, "/agent/v1/policy?host=h1", Some(TOKEN)).await;
    assert_eq!(feed["NetworkInterfaces"], serde_json::json!([]));
    for (params, status, code) in [
        (
            with(&[
                ("Action", "PlaceNetworkInterface"),
                ("NetworkInterfaceId", "eni-nosuch"),
                ("HostId", "h1"),
            ]),
            StatusCode::NOT_FOUND,
            "InvalidNetworkInterfaceId.NotFound",
        ),
        (
            with(&[
                ("Action", "PlaceNetworkInterface"),
                ("NetworkInterfaceId", eni.as_str()),
                ("HostId", "h 1"),
            ]),
            StatusCode::BAD_REQUEST,
            "InvalidHostId.Malformed",
        ),
        (
            with(&[
                ("Action", "PlaceNetworkInterface"),
                ("NetworkInterfaceId", "i-abc"),
                ("HostId", "h1"),
            ]),
            StatusCode::BAD_REQUEST,
            "InvalidNetworkInterfaceId.Malformed",
        ),
        (
            with(&[
                ("Action", "PlaceNetworkInterface"),
                ("NetworkInterfaceId", eni.as_str()),
            ]),
            StatusCode::BAD_REQUEST,
            "MissingParameter",
        ),
    ] {
        let (got, body) = get(&app, &signed_operator(&params), None).await;
        assert_eq!(
            (got, body["Code"].as_str()),
            (status, Some(code)),
            "{params:?}: {body}"
        );
    }
    let (status, body) = get(&app, "/agent/v1/policy?host=h%201", Some(TOKEN)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidHostId.Malformed"))
    );

    // An interface of its own (attached to nothing) can be bound too; it carries no traffic,
    // so the feed leaves it out, and the placements list it without an instance.
    let vpc = vpc_call(
        &app,
        &[("Action", "CreateVpc"), ("CidrBlock", "10.5.0.0/16")],
    )
    .await["VpcId"]
        .as_str()
        .unwrap()
        .to_string();
    let vsw = vpc_call(
        &app,
        &[
            ("Action", "CreateVSwitch"),
            ("VpcId", &vpc),
            ("ZoneId", "cn-hangzhou-h"),
            ("CidrBlock", "10.5.1.0/24"),
        ],
    )
    .await["VSwitchId"]
        .as_str()
        .unwrap()
        .to_string();
    let vsg = api(&app, &[("Action", "CreateSecurityGroup"), ("VpcId", &vpc)]).await
        ["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    let loose = api(
        &app,
        &[
            ("Action", "CreateNetworkInterface"),
            ("VSwitchId", &vsw),
            ("SecurityGroupId", &vsg),
        ],
    )
    .await["NetworkInterfaceId"]
        .as_str()
        .unwrap()
        .to_string();
    place(&app, &loose, Some("h2")).await;
    let (status, feed) = get(&app, "/agent/v1/policy?host=h2", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    assert_eq!(feed["NetworkInterfaces"], serde_json::json!([]));
    let (_, listed) = get(
        &app,
        &signed_operator(&with(&[
            ("Action", "DescribeNetworkInterfacePlacements"),
            ("HostId", "h2"),
        ])),
        None,
    )
    .await;
    let rows = listed["Placements"]["Placement"].as_array().unwrap();
    assert_eq!(
        (
            rows[0]["NetworkInterfaceId"].as_str(),
            rows[0]["InstanceId"].as_str()
        ),
        (Some(loose.as_str()), Some(""))
    );

    // Deleting the instance removes its interface and so its placement.
    place(&app, &eni, Some("h1")).await;
    api(
        &app,
        &[
            ("Action", "DeleteInstance"),
            ("InstanceId", &id),
            ("Force", "true"),
        ],
    )
    .await;
    let (_, feed) = get(&app, "/agent/v1/policy?host=h1", Some(TOKEN)).await;
    assert_eq!(feed["NetworkInterfaces"], serde_json::json!([]));
}

/// The share as the agent holds it: items by key, whether it came whole or as deltas.
fn items(answer: &Value) -> policy::delta::Items {
    policy::delta::Items::of(answer.to_string().as_bytes()).unwrap()
}

#[tokio::test]
async fn a_delta_carries_what_changed_and_rebuilds_the_whole_share() {
    let (_dir, app) = setup();
    let mut groups = Vec::new();
    for _ in 0..3 {
        let sg = api(&app, &[("Action", "CreateSecurityGroup")]).await["SecurityGroupId"]
            .as_str()
            .unwrap()
            .to_string();
        groups.push(sg);
    }
    let mut ids = Vec::new();
    for sg in &groups {
        let run = api(
            &app,
            &[
                ("Action", "RunInstances"),
                ("ImageId", "img"),
                ("InstanceType", "t"),
                ("SecurityGroupId", sg),
            ],
        )
        .await;
        ids.push(
            run["InstanceIdSets"]["InstanceIdSet"][0]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let enis = primary_interfaces(&app, &ids).await;
    for eni in &enis[..2] {
        place(&app, eni, Some("h1")).await;
    }
    let poll = |after: Option<u64>, delta: bool| {
        let app = app.clone();
        async move {
            let mut uri = "/agent/v1/policy?host=h1&wait=1".to_string();
            if let Some(a) = after {
                uri += &format!("&after={a}");
            }
            if delta {
                uri += "&delta=1";
            }
            let (status, body) = get(&app, &uri, Some(TOKEN)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    // The first poll (nothing held) is the whole share, delta or not.
    let first = poll(None, true).await;
    assert!(first.get("Delta").is_none(), "{first}");
    let mut held = items(&first);
    let r0 = first["Revision"].as_u64().unwrap();

    // A rule in one group of the share: the delta is that group alone.
    api(
        &app,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &groups[0]),
            ("IpProtocol", "tcp"),
            ("PortRange", "443/443"),
            ("SourceCidrIp", "198.18.0.0/16"),
        ],
    )
    .await;
    let delta = poll(Some(r0), true).await;
    let r1 = delta["Revision"].as_u64().unwrap();
    assert!(r1 > r0);
    let d = &delta["Delta"];
    assert_eq!(d["Base"].as_u64(), Some(r0), "{delta}");
    let changed = d["Changed"]["SecurityGroups"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{delta}");
    assert_eq!(changed[0]["SecurityGroupId"], groups[0].as_str());
    assert!(d["Changed"]["Instances"].is_null() && d["Removed"].as_object().unwrap().is_empty());
    assert!(delta.get("Policy").is_none());
    held.apply(policy::delta::Delta::parse(&d.to_string()).unwrap(), r0)
        .unwrap();
    let whole = poll(None, false).await;
    assert_eq!(held, items(&whole), "the delta rebuilds the share at {r1}");
    assert!(delta.to_string().len() * 2 < whole.to_string().len());

    // An interface leaves the host, another comes: removals and additions, and the group
    // of the instance that left goes with it.
    place(&app, &enis[1], None).await;
    place(&app, &enis[2], Some("h1")).await;
    let delta = poll(Some(r1), true).await;
    let d = &delta["Delta"];
    let r2 = delta["Revision"].as_u64().unwrap();
    assert_eq!(
        d["Removed"]["NetworkInterfaces"],
        serde_json::json!([enis[1]])
    );
    assert_eq!(
        d["Removed"]["SecurityGroups"],
        serde_json::json!([groups[1]])
    );
    assert_eq!(
        d["Changed"]["NetworkInterfaces"][0]["NetworkInterfaceId"],
        enis[2].as_str()
    );
    held.apply(policy::delta::Delta::parse(&d.to_string()).unwrap(), r1)
        .unwrap();
    assert_eq!(held, items(&poll(None, false).await));

    // Nothing new: the poll times out with an empty delta.
    let same = poll(Some(r2), true).await;
    assert_eq!(same["Revision"].as_u64(), Some(r2));
    assert!(
        same["Delta"]["Changed"].as_object().unwrap().is_empty(),
        "{same}"
    );

    // A base the server does not remember (older than its last answer to the host, or a
    // revision it never answered at) gets the whole share.
    for stale in [r0, r2 + 1000] {
        let whole = poll(Some(stale), true).await;
        assert!(
            whole.get("Delta").is_none() && whole["Policy"].is_object(),
            "{whole}"
        );
    }
    // Deltas are the agents' alone: without the agent token (none, a wrong one, or an
    // account's AccessKey secret in its place) a poll is refused before anything is read,
    // and a refused poll leaves the host's digest as it was.
    for token in [None, Some("wrong"), Some(common::SK)] {
        let uri = format!("/agent/v1/policy?host=h1&after={r2}&delta=1&wait=0");
        let (status, body) = get(&app, &uri, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["Code"], "InvalidAgentToken");
        assert!(body.get("Delta").is_none() && body.get("Policy").is_none());
    }
    let still = poll(Some(r2), true).await;
    assert!(
        still["Delta"].is_object(),
        "the digest at {r2} is still the base: {still}"
    );
    // Another host's remembered answer is never a base for this one.
    let (_, other) = get(
        &app,
        &format!("/agent/v1/policy?host=h2&after={r2}&delta=1&wait=1"),
        Some(TOKEN),
    )
    .await;
    assert!(other.get("Delta").is_none(), "{other}");

    // An instance elsewhere joins a group of the share, then leaves it: deltas of that one
    // member, which the agent applies without reading the share again.
    let mut held_at = r2;
    for (action, present) in [("JoinSecurityGroup", true), ("LeaveSecurityGroup", false)] {
        api(
            &app,
            &[
                ("Action", action),
                ("InstanceId", &ids[1]),
                ("SecurityGroupId", &groups[0]),
            ],
        )
        .await;
        let delta = poll(Some(held_at), true).await;
        let d = &delta["Delta"];
        let touched = held
            .apply(
                policy::delta::Delta::parse(&d.to_string()).unwrap(),
                held_at,
            )
            .unwrap();
        held_at = delta["Revision"].as_u64().unwrap();
        let keys = touched.members_only().expect("members alone");
        assert_eq!(keys.iter().collect::<Vec<_>>(), [&ids[1]], "{delta}");
        assert_eq!(held.member(&ids[1]).is_some(), present, "{delta}");
        assert_eq!(held, items(&poll(None, false).await));
    }
}

/// A burst of concurrent writes (refreshes after commits are coalesced) still ends with
/// the feed at the last revision, every rule in it, and a waiting poll woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_commits_ends_with_the_feed_at_the_last_revision() {
    let (_dir, app) = setup();
    let (sg, id) = group_and_instance(&app).await;
    let eni = primary_interfaces(&app, &[id]).await.remove(0);
    place(&app, &eni, Some("h1")).await;
    let (_, first) = get(&app, "/agent/v1/policy?host=h1", Some(TOKEN)).await;
    let before = first["Revision"].as_u64().unwrap();
    let waiting = {
        let app = app.clone();
        let uri = format!("/agent/v1/policy?host=h1&after={before}&wait=30");
        tokio::spawn(async move { get(&app, &uri, Some(TOKEN)).await })
    };
    let writes: Vec<_> = (0..40)
        .map(|port| {
            let (app, sg) = (app.clone(), sg.clone());
            tokio::spawn(async move {
                let range = format!("{0}/{0}", 1000 + port);
                api(
                    &app,
                    &[
                        ("Action", "AuthorizeSecurityGroup"),
                        ("SecurityGroupId", &sg),
                        ("IpProtocol", "tcp"),
                        ("PortRange", &range),
                        ("SourceCidrIp", "198.18.0.0/16"),
                    ],
                )
                .await
            })
        })
        .collect();
    for w in writes {
        w.await.unwrap();
    }
    let (_, woken) = waiting.await.unwrap();
    assert!(woken["Revision"].as_u64().unwrap() > before);
    let (_, last) = get(&app, "/agent/v1/policy?host=h1", Some(TOKEN)).await;
    let group = last["Policy"]["SecurityGroups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["SecurityGroupId"] == sg.as_str())
        .unwrap()
        .clone();
    assert_eq!(group["Permissions"].as_array().unwrap().len(), 40);
    // Nothing newer comes: the feed's revision is the store's last.
    let uri = format!("/agent/v1/policy?host=h1&after={}&wait=1", last["Revision"]);
    let (_, same) = get(&app, &uri, Some(TOKEN)).await;
    assert_eq!(same["Revision"], last["Revision"]);
}

/// An agent token the operator issues for a host.
async fn issue(app: &axum::Router, action: &str, host: &str) -> (StatusCode, Value) {
    let params = [
        ("Version", "2014-05-26"),
        ("Action", action),
        ("HostId", host),
    ];
    get(app, &signed_operator(&params), None).await
}

/// A status report of `host`, with `token`.
async fn report(app: &axum::Router, token: &str, host: &str) -> StatusCode {
    let request = Request::post("/agent/v1/status")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(format!(r#"{{"HostId":"{host}","Revision":1}}"#)))
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn a_hosts_agent_token_reads_and_reports_for_that_host_only_until_revoked() {
    let (_dir, app) = setup();
    let (_, instance) = group_and_instance(&app).await;
    let eni = primary_interfaces(&app, &[instance]).await.remove(0);
    place(&app, &eni, Some("h2")).await;
    // Tenants may neither issue nor revoke; the operator's token is answered once.
    let params = [
        ("Version", "2014-05-26"),
        ("Action", "IssueAgentToken"),
        ("HostId", "h1"),
    ];
    let (status, body) = get(&app, &signed(&params), None).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (StatusCode::FORBIDDEN, Some("Forbidden.RAM"))
    );
    let (status, h1) = issue(&app, "IssueAgentToken", "h1").await;
    assert_eq!(status, StatusCode::OK, "{h1}");
    let h1 = h1["AgentToken"].as_str().unwrap().to_string();
    let (_, h2) = issue(&app, "IssueAgentToken", "h2").await;
    let h2 = h2["AgentToken"].as_str().unwrap().to_string();
    assert_ne!(h1, h2);

    // h1's token reads h1's share, not h2's, and reports for h1 only.
    let (status, own) = get(&app, "/agent/v1/policy?host=h1", Some(&h1)).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    let (status, body) = get(&app, "/agent/v1/policy?host=h2", Some(&h1)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (StatusCode::FORBIDDEN, Some("Forbidden.AgentToken"))
    );
    assert!(!body.to_string().contains(&eni), "{body}");
    let (status, theirs) = get(&app, "/agent/v1/policy?host=h2", Some(&h2)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(theirs.to_string().contains(&eni), "h2 reads its interface");
    assert_eq!(report(&app, &h1, "h1").await, StatusCode::OK);
    assert_eq!(report(&app, &h1, "h2").await, StatusCode::FORBIDDEN);
    // Every host's reports are the fleet's to read.
    let (status, _) = get(&app, "/agent/v1/hosts", Some(&h1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(&app, "/agent/v1/hosts", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);

    // Rotation: a new token for h1 ends the old one; revocation ends the new one.
    let (_, rotated) = issue(&app, "IssueAgentToken", "h1").await;
    let rotated = rotated["AgentToken"].as_str().unwrap().to_string();
    let (status, _) = get(&app, "/agent/v1/policy?host=h1", Some(&h1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(&app, "/agent/v1/policy?host=h1", Some(&rotated)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = issue(&app, "RevokeAgentToken", "h1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&app, "/agent/v1/policy?host=h1", Some(&rotated)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = issue(&app, "RevokeAgentToken", "h1").await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (StatusCode::NOT_FOUND, Some("InvalidHostId.NotFound"))
    );
    // A ClientToken would keep the credential in the store to answer a retry: refused.
    let params = [
        ("Version", "2014-05-26"),
        ("Action", "IssueAgentToken"),
        ("HostId", "h3"),
        ("ClientToken", "retry-1"),
    ];
    let (status, _) = get(&app, &signed_operator(&params), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A status report of `host` carrying hits, with `token`.
async fn report_hits(app: &axum::Router, token: &str, host: &str, hits: Value) -> StatusCode {
    let body = serde_json::json!({"HostId": host, "Revision": 1, "Hits": hits});
    let request = Request::post("/agent/v1/status")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn a_host_adds_hit_counts_only_to_the_groups_of_instances_it_carries() {
    let (_dir, app) = two_accounts();
    let (sg, instance) = group_and_instance(&app).await;
    let eni = primary_interfaces(&app, &[instance]).await.remove(0);
    place(&app, &eni, Some("h2")).await;
    api(
        &app,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &sg),
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourceCidrIp", "10.0.0.0/8"),
        ],
    )
    .await;
    let rule = api(
        &app,
        &[
            ("Action", "DescribeSecurityGroupAttribute"),
            ("SecurityGroupId", &sg),
        ],
    )
    .await["Permissions"]["Permission"][0]["SecurityGroupRuleId"]
        .as_str()
        .unwrap()
        .to_string();
    // The feed has made the region's policy with the placement (as agents' polls do).
    let (status, _) = get(&app, "/agent/v1/policy?host=h2", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, h1) = issue(&app, "IssueAgentToken", "h1").await;
    let (_, h2) = issue(&app, "IssueAgentToken", "h2").await;
    let (h1, h2) = (
        h1["AgentToken"].as_str().unwrap().to_string(),
        h2["AgentToken"].as_str().unwrap().to_string(),
    );
    let hits = |n: u64| {
        serde_json::json!([
            {"SecurityGroupRuleId": rule, "Packets": n, "Bytes": n * 60, "FirstHit": 1_800_000_000u64, "LastHit": 1_800_000_001u64},
            {"SecurityGroupIds": [sg], "Decision": "DefaultIngress", "Packets": n, "Bytes": n * 60, "FirstHit": 1_800_000_000u64, "LastHit": 1_800_000_001u64},
        ])
    };
    let counts = || async {
        let got = api(
            &app,
            &[
                ("Action", "DescribeSecurityGroupRuleHits"),
                ("SecurityGroupId", &sg),
            ],
        )
        .await;
        let default = got["ImplicitHits"]["ImplicitHit"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["Decision"] == "DefaultIngress")
            .unwrap()["NewFlows"]
            .as_u64()
            .unwrap();
        (
            got["RuleHits"]["RuleHit"][0]["NewFlows"].as_u64().unwrap(),
            default,
        )
    };
    // h1 carries none of the group's instances: its report is taken, its counts dropped.
    assert_eq!(
        report_hits(&app, &h1, "h1", hits(1000)).await,
        StatusCode::OK
    );
    assert_eq!(counts().await, (0, 0));
    // h2 carries one: counted, and added to on every report.
    assert_eq!(report_hits(&app, &h2, "h2", hits(3)).await, StatusCode::OK);
    assert_eq!(report_hits(&app, &h2, "h2", hits(2)).await, StatusCode::OK);
    assert_eq!(counts().await, (5, 5));
    // Not another host's name with h2's token, and not a tenant's read of the counts.
    assert_eq!(
        report_hits(&app, &h2, "h1", hits(1)).await,
        StatusCode::FORBIDDEN
    );
    let params = [
        ("Version", "2014-05-26"),
        ("RegionId", "cn-hangzhou"),
        ("Action", "DescribeSecurityGroupRuleHits"),
        ("SecurityGroupId", sg.as_str()),
    ];
    let (status, body) = get(&app, &signed_other(&params), None).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("InvalidSecurityGroupId.NotFound")
        ),
        "{body}"
    );
}
