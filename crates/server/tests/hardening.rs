//! Regression tests of the front door, each named after what it guards (issue: "Harden the
//! front door"). In-process over HTTP, as a hostile client would send the requests.

mod common;

use axum::http::StatusCode;
use common::{call, send, setup, signed, v3_request};
use server::auth::V3_SIGNED_HEADERS;

fn code(body: &serde_json::Value) -> &str {
    body["Code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn v3_signatures_must_cover_action_version_date_nonce_body_and_host() {
    let (_dir, app) = setup();
    let all = V3_SIGNED_HEADERS.join(";");
    let (status, body) = send(
        &app,
        v3_request("DescribeRegions", &[], &V3_SIGNED_HEADERS, &all),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for left_out in V3_SIGNED_HEADERS {
        let signed: Vec<&str> = V3_SIGNED_HEADERS
            .iter()
            .copied()
            .filter(|h| *h != left_out)
            .collect();
        let (status, body) = send(
            &app,
            v3_request("DescribeRegions", &[], &signed, &signed.join(";")),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "IncompleteSignature"),
            "signed without {left_out}: {body}"
        );
        assert!(body["Message"].as_str().unwrap().contains(left_out));
    }
    // Only `host` signed: the unsigned action header could be switched to revoke a rule.
    let (_, body) = send(
        &app,
        v3_request(
            "RevokeSecurityGroup",
            &[("RegionId", "cn-hangzhou")],
            &["host"],
            "host",
        ),
    )
    .await;
    assert_eq!(code(&body), "IncompleteSignature");
}

#[tokio::test]
async fn v3_signed_headers_naming_an_empty_header_are_refused() {
    let (_dir, app) = setup();
    let list = format!(";{}", V3_SIGNED_HEADERS.join(";"));
    let (status, body) = send(
        &app,
        v3_request("DescribeRegions", &[], &V3_SIGNED_HEADERS, &list),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "IncompleteSignature")
    );
}

#[tokio::test]
async fn v1_signature_parameters_must_be_hmac_sha1_version_1_0() {
    let (_dir, app) = setup();
    for (name, value, expected) in [
        ("SignatureVersion", "2.0", "InvalidParameter"),
        ("SignatureVersion", "0.1", "InvalidParameter"),
        ("SignatureVersion", "", "MissingParameter"),
        ("SignatureMethod", "", "MissingParameter"),
        ("SignatureMethod", "HMAC-SHA256", "InvalidParameter"),
        ("SignatureType", "BEARERTOKEN", "InvalidParameter"),
    ] {
        // Correctly signed over the odd value: only the check refuses it.
        let (status, body) = call(
            &app,
            &signed(&[("Action", "DescribeRegions"), (name, value)]),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, expected),
            "{name}={value:?}: {body}"
        );
    }
    let (status, _) = call(&app, &signed(&[("Action", "DescribeRegions")])).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn huge_next_tokens_are_an_empty_page_not_a_panic() {
    let (_dir, app) = setup();
    for action in [
        "DescribeSecurityGroups",
        "DescribeInstances",
        "DescribeSecurityGroupAttribute",
        "ListTagResources",
    ] {
        let mut params = vec![
            ("Action", action),
            ("NextToken", "18446744073709551615"),
            ("MaxResults", "10"),
        ];
        if action == "ListTagResources" {
            params.push(("ResourceType", "securitygroup"));
            params.retain(|(k, _)| *k != "MaxResults");
        }
        if action == "DescribeSecurityGroupAttribute" {
            let (_, created) = call(&app, &signed(&[("Action", "CreateSecurityGroup")])).await;
            let id = created["SecurityGroupId"].as_str().unwrap().to_string();
            let mut with_group = params.clone();
            with_group.push(("SecurityGroupId", &id));
            let (status, body) = call(&app, &signed(&with_group)).await;
            assert_eq!(status, StatusCode::OK, "{action}: {body}");
            assert_eq!(body["Permissions"]["Permission"], serde_json::json!([]));
            continue;
        }
        let (status, body) = call(&app, &signed(&params)).await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        assert_eq!(
            body["NextToken"], "",
            "{action}: the last page has no next token"
        );
    }
    let vpc = [
        ("Action", "DescribeVpcs"),
        ("Version", "2016-04-28"),
        ("NextToken", "18446744073709551615"),
        ("MaxResults", "1"),
    ];
    let (status, _) = call(&app, &signed(&vpc)).await;
    assert_eq!(status, StatusCode::OK);
}

/// A VPC instance in a fresh group; answers (instance id, group id).
async fn vpc_instance(app: &axum::Router) -> (String, String) {
    let made = common::vpc_instance(app, signed).await;
    (made.instance, made.group)
}

#[tokio::test]
async fn a_renamed_instance_is_described_by_its_new_name() {
    let (_dir, app) = setup();
    let (instance, _) = vpc_instance(&app).await;
    let ids = format!("[\"{instance}\"]");
    let describe = [
        ("Action", "DescribeInstances"),
        ("InstanceIds", ids.as_str()),
    ];
    let (_, before) = call(&app, &signed(&describe)).await;
    assert_eq!(before["Instances"]["Instance"][0]["InstanceName"], "");
    let (status, body) = call(
        &app,
        &signed(&[
            ("Action", "ModifyInstanceAttribute"),
            ("InstanceId", &instance),
            ("InstanceName", "renamed"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, after) = call(&app, &signed(&describe)).await;
    assert_eq!(after["Instances"]["Instance"][0]["InstanceName"], "renamed");
}

#[tokio::test]
async fn joins_and_leaves_take_the_region_from_the_instance() {
    let (_dir, app) = setup();
    let (instance, first) = vpc_instance(&app).await;
    let (_, i) = call(&app, &signed(&[("Action", "DescribeInstances")])).await;
    let vpc = i["Instances"]["Instance"][0]["VpcAttributes"]["VpcId"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, g) = call(
        &app,
        &signed(&[("Action", "CreateSecurityGroup"), ("VpcId", &vpc)]),
    )
    .await;
    let second = g["SecurityGroupId"].as_str().unwrap().to_string();
    for action in ["JoinSecurityGroup", "LeaveSecurityGroup"] {
        // `RegionId` empty counts as absent (what the SDKs send for an unset field).
        let (status, body) = call(
            &app,
            &signed(&[
                ("Action", action),
                ("RegionId", ""),
                ("InstanceId", &instance),
                ("SecurityGroupId", &second),
            ]),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
    }
    let (_, described) = call(&app, &signed(&[("Action", "DescribeInstances")])).await;
    let eni = described["Instances"]["Instance"][0]["NetworkInterfaces"]["NetworkInterface"][0]
        ["NetworkInterfaceId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = call(
        &app,
        &signed(&[
            ("Action", "JoinSecurityGroup"),
            ("RegionId", ""),
            ("NetworkInterfaceId", &eni),
            ("SecurityGroupId", &second),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "by interface: {body}");
    let (_, groups) = call(&app, &signed(&[("Action", "DescribeInstances")])).await;
    assert_eq!(
        groups["Instances"]["Instance"][0]["SecurityGroupIds"]["SecurityGroupId"],
        serde_json::json!([first, second])
    );
}

#[tokio::test]
async fn captured_requests_are_refused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = common::serve(common::store(dir.path()));
    let v1 = signed(&[("Action", "CreateSecurityGroup")]);
    let all = V3_SIGNED_HEADERS.join(";");
    let v3 = || v3_request("DescribeRegions", &[], &V3_SIGNED_HEADERS, &all);
    let captured_v3 = v3();
    let (head, _) = captured_v3.into_parts();
    let (status, _) = call(&app, &v1).await;
    assert_eq!(status, StatusCode::OK);
    let replay_v3 = || {
        let mut r = axum::http::Request::builder()
            .method("POST")
            .uri(head.uri.clone());
        for (k, v) in &head.headers {
            r = r.header(k, v);
        }
        r.body(axum::body::Body::empty()).unwrap()
    };
    let (status, _) = send(&app, replay_v3()).await;
    assert_eq!(status, StatusCode::OK);
    drop(app);
    // The same store, a new server process.
    let app =
        common::serve(control::Control::open(dir.path(), control::Limits::default()).unwrap());
    let (status, body) = call(&app, &v1).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "SignatureNonceUsed")
    );
    let (status, body) = send(&app, replay_v3()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "SignatureNonceUsed")
    );
    let (_, groups) = call(&app, &signed(&[("Action", "DescribeSecurityGroups")])).await;
    assert_eq!(groups["TotalCount"], 1, "the replay created nothing");
}

/// A classic group open to `tcp/22` from everywhere on the intranet, with one instance;
/// answers (group, instance).
async fn classic_member(
    app: &axum::Router,
    sign: fn(&[(&str, &str)]) -> String,
) -> (String, String) {
    let (_, g) = call(app, &sign(&[("Action", "CreateSecurityGroup")])).await;
    let group = g["SecurityGroupId"].as_str().unwrap().to_string();
    let (status, body) = call(
        app,
        &sign(&[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &group),
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourceCidrIp", "0.0.0.0/0"),
            ("NicType", "intranet"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, i) = call(
        app,
        &sign(&[
            ("Action", "RunInstances"),
            ("SecurityGroupId", &group),
            ("ImageId", "img"),
            ("InstanceType", "ecs.t"),
        ]),
    )
    .await;
    let instance = i["InstanceIdSets"]["InstanceIdSet"][0]
        .as_str()
        .unwrap()
        .to_string();
    (group, instance)
}

/// The first private address of `instance`, asked by its owner.
async fn inner_address(app: &axum::Router, sign: common::Signer, instance: &str) -> String {
    let ids = format!("[\"{instance}\"]");
    let described = common::ok(
        app,
        sign,
        &[("Action", "DescribeInstances"), ("InstanceIds", &ids)],
    )
    .await;
    described["Instances"]["Instance"][0]["InnerIpAddress"]["IpAddress"][0]
        .as_str()
        .unwrap()
        .to_string()
}

/// A rule of the caller's group `mine` admitting TCP `ports` from `theirs`, the other
/// account's group (classic, across accounts as ECS allows), with `extra` fields.
async fn from_theirs(
    app: &axum::Router,
    mine: &str,
    theirs: &str,
    ports: &str,
    extra: &[(&str, &str)],
) {
    let mut params = vec![
        ("Action", "AuthorizeSecurityGroup"),
        ("SecurityGroupId", mine),
        ("IpProtocol", "tcp"),
        ("PortRange", ports),
        ("SourceGroupId", theirs),
        ("SourceGroupOwnerAccount", "other"),
    ];
    params.extend_from_slice(extra);
    ok(app, &params).await;
}

#[tokio::test]
async fn exposure_and_preview_name_no_other_accounts_instances() {
    let (_dir, app) = common::two_accounts();
    let (group, mine) = classic_member(&app, signed).await;
    let (_, my_peer) = classic_member(&app, signed).await;
    let (_, theirs) = classic_member(&app, common::signed_other).await;
    let (status, exposure) = call(
        &app,
        &signed(&[
            ("Action", "DescribeInstanceExposure"),
            ("InstanceId", &mine),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{exposure}");
    let text = exposure.to_string();
    assert!(
        text.contains(&my_peer),
        "the caller's own peer is listed: {text}"
    );
    assert!(
        !text.contains(&theirs),
        "another account's instance leaked: {text}"
    );
    let (status, preview) = call(
        &app,
        &signed(&[
            ("Action", "PreviewSecurityGroupChange"),
            ("ChangeAction", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &group),
            ("IpProtocol", "tcp"),
            ("PortRange", "80/80"),
            ("SourceCidrIp", "0.0.0.0/0"),
            ("NicType", "intranet"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let text = preview.to_string();
    assert!(preview["TotalCount"].as_u64().unwrap() > 0, "{text}");
    assert!(text.contains(&my_peer), "{text}");
    assert!(
        !text.contains(&theirs),
        "another account's instance leaked: {text}"
    );
}

#[tokio::test]
async fn cross_account_references_answer_not_found_unless_ecs_allows_them() {
    let (_dir, app) = common::two_accounts();
    let vpc_group = |sign: fn(&[(&str, &str)]) -> String| {
        let app = app.clone();
        async move {
            let (_, v) = call(
                &app,
                &sign(&[("Version", "2016-04-28"), ("Action", "CreateVpc")]),
            )
            .await;
            let vpc = v["VpcId"].as_str().unwrap().to_string();
            let (_, g) = call(
                &app,
                &sign(&[("Action", "CreateSecurityGroup"), ("VpcId", &vpc)]),
            )
            .await;
            g["SecurityGroupId"].as_str().unwrap().to_string()
        }
    };
    let mine = vpc_group(signed).await;
    let theirs = vpc_group(common::signed_other).await;
    let (classic_mine, _) = classic_member(&app, signed).await;
    let (classic_theirs, _) = classic_member(&app, common::signed_other).await;
    let refer = |group: &str, source: &str, owner: Option<&str>| {
        let mut p = vec![
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", group),
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourceGroupId", source),
        ];
        if let Some(o) = owner {
            p.push(("SourceGroupOwnerAccount", o));
        }
        signed(&p)
    };
    for (group, source, owner) in [
        (&mine, &theirs, Some("other")),
        (&mine, &theirs, None),
        (&mine, &classic_theirs, Some("other")),
        (&classic_mine, &theirs, Some("other")),
        (&classic_mine, &classic_theirs, None),
    ] {
        let (status, body) = call(&app, &refer(group, source, owner)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "InvalidSourceGroupId.NotFound"),
            "{group} <- {source} owner {owner:?}: {body}"
        );
    }
    // Another account's classic group without an owner answers exactly as an id of nothing
    // does, on every path that names a peer group: no existence oracle.
    let rule = |action: &str, peer_field: &str, peer: &str| {
        let mut p = vec![
            ("Action", action),
            ("SecurityGroupId", &classic_mine),
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            (peer_field, peer),
        ];
        if action == "PreviewSecurityGroupChange" {
            p.push(("ChangeAction", "AuthorizeSecurityGroup"));
        }
        signed(&p)
    };
    for (action, peer_field) in [
        ("AuthorizeSecurityGroup", "SourceGroupId"),
        ("AuthorizeSecurityGroupEgress", "DestGroupId"),
        ("PreviewSecurityGroupChange", "SourceGroupId"),
    ] {
        let theirs = call(&app, &rule(action, peer_field, &classic_theirs)).await;
        let nothing = call(&app, &rule(action, peer_field, "sg-bp1nothingnothing000")).await;
        assert_eq!(
            (theirs.0, code(&theirs.1)),
            (nothing.0, code(&nothing.1)),
            "{action}: {} / {}",
            theirs.1,
            nothing.1
        );
        assert_eq!(theirs.0, StatusCode::NOT_FOUND, "{action}: {}", theirs.1);
    }
    // What ECS allows: classic groups of two accounts, the owner named.
    let (status, body) = call(&app, &refer(&classic_mine, &classic_theirs, Some("other"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn classic_instances_cannot_probe_addresses_by_choosing_them() {
    let (_dir, app) = common::two_accounts();
    let (group, _) = classic_member(&app, signed).await;
    let (_, theirs) = classic_member(&app, common::signed_other).await;
    let (_, described) = call(
        &app,
        &common::signed_other(&[("Action", "DescribeInstances")]),
    )
    .await;
    let address = described["Instances"]["Instance"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["InstanceId"] == theirs.as_str())
        .unwrap()["InnerIpAddress"]["IpAddress"][0]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = call(
        &app,
        &signed(&[
            ("Action", "RunInstances"),
            ("SecurityGroupId", &group),
            ("ImageId", "img"),
            ("InstanceType", "ecs.t"),
            ("PrivateIpAddress", &address),
        ]),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "InvalidParameter"),
        "{body}"
    );
}

#[tokio::test]
async fn previews_show_what_a_change_opens_on_the_internet_interface() {
    let (_dir, app) = setup();
    let (_, g) = call(&app, &signed(&[("Action", "CreateSecurityGroup")])).await;
    let group = g["SecurityGroupId"].as_str().unwrap().to_string();
    let (_, i) = call(
        &app,
        &signed(&[
            ("Action", "RunInstances"),
            ("SecurityGroupId", &group),
            ("ImageId", "img"),
            ("InstanceType", "ecs.t"),
            ("InternetMaxBandwidthOut", "5"),
        ]),
    )
    .await;
    let instance = i["InstanceIdSets"]["InstanceIdSet"][0]
        .as_str()
        .unwrap()
        .to_string();
    // A classic rule without NicType is an internet rule.
    let (status, preview) = call(
        &app,
        &signed(&[
            ("Action", "PreviewSecurityGroupChange"),
            ("ChangeAction", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &group),
            ("IpProtocol", "tcp"),
            ("PortRange", "3389/3389"),
            ("SourceCidrIp", "0.0.0.0/0"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let changes = preview["Changes"]["Change"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["InstanceId"] == instance.as_str()
            && c["NicType"] == "internet"
            && c["Effect"] == "Allowed"
            && c["PortRange"] == "3389/3389"
            && c["PeerCidrIps"]["PeerCidrIp"][0] == "0.0.0.0/0"),
        "{preview}"
    );
    assert!(
        changes.iter().all(|c| c["NicType"] == "internet"),
        "no intranet flow flips: {preview}"
    );
}

#[tokio::test]
async fn long_and_control_character_values_are_refused_before_they_are_stored() {
    let (_dir, app) = setup();
    let (instance, _) = vpc_instance(&app).await;
    // Large, yet within the body limit: the parameter limits refuse it, not the body's.
    let huge = "x".repeat(100 << 10);
    let long_name = "n".repeat(129);
    let vpc = ("Version", "2016-04-28");
    let refused = [
        vec![
            ("Action", "ModifyInstanceAttribute"),
            ("InstanceId", &instance),
            ("InstanceName", &huge),
        ],
        vec![
            ("Action", "ModifyInstanceAttribute"),
            ("InstanceId", &instance),
            ("InstanceName", &long_name),
        ],
        vec![
            ("Action", "ModifyInstanceAttribute"),
            ("InstanceId", &instance),
            ("Description", "a\0b"),
        ],
        vec![vpc, ("Action", "CreateVpc"), ("VpcName", &huge)],
        vec![vpc, ("Action", "CreateVpc"), ("VpcName", &long_name)],
        vec![
            vpc,
            ("Action", "CreateVpc"),
            ("Description", "esc\u{1b}[31m"),
        ],
        vec![("Action", "CreateSecurityGroup"), ("Description", "nul\0")],
        vec![
            ("Action", "CreateSecurityGroup"),
            ("Tag.1.Key", "k\0"),
            ("Tag.1.Value", "v"),
        ],
        vec![
            ("Action", "RunInstances"),
            ("ImageId", &long_name),
            ("InstanceType", "t"),
        ],
        vec![
            ("Action", "RunInstances"),
            ("ImageId", "img"),
            ("InstanceType", "t\0"),
        ],
    ];
    for params in &refused {
        let (status, body) = send(&app, common::signed_post(params)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{:?}: {body}",
            &params[1..]
        );
        assert!(code(&body).starts_with("Invalid"), "{body}");
    }
    let (_, vpcs) = call(&app, &signed(&[vpc, ("Action", "DescribeVpcs")])).await;
    assert_eq!(vpcs["TotalCount"], 1, "no refused VPC was created");
    let (_, groups) = call(&app, &signed(&[("Action", "DescribeSecurityGroups")])).await;
    assert_eq!(groups["TotalCount"], 1, "no refused group was created");
    let (_, described) = call(&app, &signed(&[("Action", "DescribeInstances")])).await;
    assert_eq!(described["Instances"]["Instance"][0]["InstanceName"], "");
    assert_eq!(described["TotalCount"], 1);
    // Descriptions may hold tabs and line breaks.
    let (status, _) = call(
        &app,
        &signed(&[
            ("Action", "CreateSecurityGroup"),
            ("Description", "two\nlines\tand a tab"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn xml_errors_never_carry_raw_control_characters() {
    let (_dir, app) = setup();
    let uri = signed(&[
        ("Action", "DescribeRegions"),
        ("Format", "XML"),
        ("Bad\u{1}Name", "x"),
    ]);
    let response = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("<Code>InvalidParameter</Code>"), "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
}

#[tokio::test]
async fn disabled_access_keys_authenticate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let control = std::sync::Arc::new(common::store(dir.path()));
    let state = server::AppState::new(control.clone(), vec!["cn-hangzhou".into()]);
    let app = server::app(std::sync::Arc::new(state));
    let (status, _) = call(&app, &signed(&[("Action", "DescribeRegions")])).await;
    assert_eq!(status, StatusCode::OK);
    control.set_access_key_active(common::AK, false).unwrap();
    let (status, body) = call(&app, &signed(&[("Action", "DescribeRegions")])).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "InvalidAccessKeyId.Inactive")
    );
    control.set_access_key_active(common::AK, true).unwrap();
    let (status, _) = call(&app, &signed(&[("Action", "DescribeRegions")])).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn request_limits_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let state = server::AppState::new(
        std::sync::Arc::new(common::store(dir.path())),
        vec!["cn-hangzhou".into()],
    )
    .with_request_limits(server::wire::RequestLimits {
        max_body: 1 << 20,
        max_parameters: 12,
        max_parameter_length: 64,
    });
    let app = server::app(std::sync::Arc::new(state));
    // A signed request carries 10 parameters of its own.
    let (status, _) = call(&app, &signed(&[("Action", "DescribeRegions")])).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = call(
        &app,
        &signed(&[
            ("Action", "DescribeRegions"),
            ("A", "1"),
            ("B", "2"),
            ("C", "3"),
        ]),
    )
    .await;
    assert_eq!(code(&body), "InvalidParameter");
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("more than 12 parameters"),
        "{body}"
    );
    let long = "d".repeat(65);
    let (_, body) = call(
        &app,
        &signed(&[("Action", "CreateSecurityGroup"), ("Description", &long)]),
    )
    .await;
    assert_eq!(code(&body), "InvalidParameter");
}

/// `call` that must succeed; its answer.
async fn ok(app: &axum::Router, params: &[(&str, &str)]) -> serde_json::Value {
    let (status, body) = call(app, &signed(params)).await;
    assert_eq!(status, StatusCode::OK, "{params:?}: {body}");
    body
}

async fn create_list(app: &axum::Router, kind: &str, max_entries: &str) -> String {
    let params: Vec<(&str, &str)> = match kind {
        "PrefixList" => vec![
            ("Action", "CreatePrefixList"),
            ("PrefixListName", "office"),
            ("AddressFamily", "IPv4"),
            ("MaxEntries", max_entries),
            ("Entry.1.Cidr", "192.0.2.0/24"),
        ],
        _ => vec![
            ("Action", "CreatePortRangeList"),
            ("PortRangeListName", "web"),
            ("MaxEntries", max_entries),
            ("Entry.1.PortRange", "8080/8080"),
        ],
    };
    ok(app, &params).await[format!("{kind}Id")]
        .as_str()
        .unwrap()
        .to_string()
}

/// A rule naming lists weighs their `MaxEntries` (the product for both) against the group's
/// rule limit on every path: authorised light and modified to name heavy lists, it was
/// 400,000 classifier entries another tenant's answers paid for.
#[tokio::test]
async fn a_modified_rule_weighs_its_lists_against_the_group_limit() {
    let (_dir, app) = setup();
    let group = ok(&app, &[("Action", "CreateSecurityGroup")]).await["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    let (small_prefix, small_ports) = (
        create_list(&app, "PrefixList", "1").await,
        create_list(&app, "PortRangeList", "1").await,
    );
    let (big_prefix, big_ports) = (
        create_list(&app, "PrefixList", "200").await,
        create_list(&app, "PortRangeList", "2000").await,
    );
    ok(
        &app,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &group),
            ("IpProtocol", "tcp"),
            ("PortRangeListId", &small_ports),
            ("SourcePrefixListId", &small_prefix),
        ],
    )
    .await;
    let rules = [
        ("Action", "DescribeSecurityGroupAttribute"),
        ("SecurityGroupId", &group),
    ];
    let before = ok(&app, &rules).await["Permissions"].clone();
    let rule = before["Permission"][0]["SecurityGroupRuleId"]
        .as_str()
        .unwrap()
        .to_string();
    for change in [
        vec![("PortRangeListId", big_ports.as_str())],
        vec![
            ("PortRangeListId", big_ports.as_str()),
            ("SourcePrefixListId", big_prefix.as_str()),
        ],
    ] {
        let mut params = vec![
            ("Action", "ModifySecurityGroupRule"),
            ("SecurityGroupId", group.as_str()),
            ("SecurityGroupRuleId", rule.as_str()),
        ];
        params.extend(change);
        let (status, body) = call(&app, &signed(&params)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "AuthorizationLimitExceed"),
            "{body}"
        );
    }
    assert_eq!(
        ok(&app, &rules).await["Permissions"],
        before,
        "nothing changed"
    );
    // Within the limit, the same modification is taken: 200 × 1.
    ok(
        &app,
        &[
            ("Action", "ModifySecurityGroupRule"),
            ("SecurityGroupId", &group),
            ("SecurityGroupRuleId", &rule),
            ("SourcePrefixListId", &big_prefix),
        ],
    )
    .await;
}

/// Prefix lists and port range lists have a quota per account and region, as groups do.
#[tokio::test]
async fn prefix_and_port_range_lists_have_a_quota() {
    let dir = tempfile::tempdir().unwrap();
    let mut limits = control::Limits::default();
    limits.set("prefix-lists-per-region", 2).unwrap();
    limits.set("port-range-lists-per-region", 2).unwrap();
    let control = control::Control::open(dir.path(), limits).unwrap();
    control
        .create_account("tester", Some((common::AK.into(), common::SK.into())))
        .unwrap();
    let state = server::AppState::new(std::sync::Arc::new(control), vec!["cn-hangzhou".into()]);
    let app = server::app(std::sync::Arc::new(state));
    for (kind, code_wanted) in [
        ("PrefixList", "QuotaExceed.PrefixList"),
        ("PortRangeList", "QuotaExceed.PortRangeList"),
    ] {
        let first = create_list(&app, kind, "5").await;
        create_list(&app, kind, "5").await;
        let params = match kind {
            "PrefixList" => vec![
                ("Action", "CreatePrefixList"),
                ("PrefixListName", "third"),
                ("AddressFamily", "IPv4"),
                ("MaxEntries", "5"),
            ],
            _ => vec![
                ("Action", "CreatePortRangeList"),
                ("PortRangeListName", "third"),
                ("MaxEntries", "5"),
            ],
        };
        let (status, body) = call(&app, &signed(&params)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, code_wanted),
            "{body}"
        );
        // A deleted list frees its place.
        let id_name = format!("{kind}Id");
        ok(
            &app,
            &[("Action", &format!("Delete{kind}")), (&id_name, &first)],
        )
        .await;
        ok(&app, &params).await;
    }
}

/// The classic network's addresses are one pool for every account: handed out in order,
/// the next account's address told where the last one's instances were. From a random
/// place instead, an account's addresses say nothing of another's.
#[tokio::test]
async fn classic_addresses_say_nothing_of_another_accounts() {
    let (_dir, app) = common::two_accounts();
    let addresses = |sign: fn(&[(&str, &str)]) -> String| {
        let app = app.clone();
        async move {
            let (_, g) = call(&app, &sign(&[("Action", "CreateSecurityGroup")])).await;
            let group = g["SecurityGroupId"].as_str().unwrap().to_string();
            let (status, made) = call(
                &app,
                &sign(&[
                    ("Action", "RunInstances"),
                    ("SecurityGroupId", &group),
                    ("ImageId", "img"),
                    ("InstanceType", "ecs.t"),
                    ("Amount", "4"),
                    ("InternetMaxBandwidthOut", "10"),
                ]),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{made}");
            let (_, described) = call(&app, &sign(&[("Action", "DescribeInstances")])).await;
            let mut out: Vec<(u32, u32)> = described["Instances"]["Instance"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let ip = |v: &serde_json::Value| {
                        u32::from(
                            v[0].as_str()
                                .unwrap()
                                .parse::<std::net::Ipv4Addr>()
                                .unwrap(),
                        )
                    };
                    (
                        ip(&i["InnerIpAddress"]["IpAddress"]),
                        ip(&i["PublicIpAddress"]["IpAddress"]),
                    )
                })
                .collect();
            out.sort();
            out
        }
    };
    let mine = addresses(signed).await;
    let theirs = addresses(common::signed_other).await;
    let all: Vec<u32> = mine
        .iter()
        .chain(&theirs)
        .flat_map(|(a, b)| [*a, *b])
        .collect();
    let distinct: std::collections::BTreeSet<u32> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "no address is handed out twice");
    // In order, the eight intranet (and public) addresses were eight consecutive ones.
    for pick in [|p: &(u32, u32)| p.0, |p: &(u32, u32)| p.1] {
        let mut both: Vec<u32> = mine.iter().chain(&theirs).map(pick).collect();
        both.sort();
        let consecutive = both.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(consecutive < 3, "addresses in sequence: {both:?}");
    }
}

/// A classic group may admit another account's group (as ECS allows); the exposure of the
/// admitting account's instance then says "from that group", not the other account's
/// members' addresses. Reachability numbers only the caller's classes.
#[tokio::test]
async fn exposure_through_another_accounts_group_names_the_group_not_its_members() {
    let (_dir, app) = common::two_accounts();
    let (mine, my_instance) = classic_member(&app, signed).await;
    let (theirs, their_instance) = classic_member(&app, common::signed_other).await;
    let their_address = inner_address(&app, common::signed_other, &their_instance).await;
    from_theirs(&app, &mine, &theirs, "5432/5432", &[]).await;
    let (status, exposure) = call(
        &app,
        &signed(&[
            ("Action", "DescribeInstanceExposure"),
            ("InstanceId", &my_instance),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{exposure}");
    let text = exposure.to_string();
    assert!(
        !text.contains(&their_address),
        "{their_address} leaked: {text}"
    );
    assert!(!text.contains(&their_instance), "{text}");
    let through = exposure["Exposures"]["Exposure"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["PortRange"] == "5432/5432" && e["DecidedBy"] == "Rule")
        .unwrap_or_else(|| panic!("the admitted port is listed: {text}"));
    assert_eq!(through["SourceGroupId"], theirs.as_str());
    assert_eq!(
        through["SourceCidrIps"]["SourceCidrIp"],
        serde_json::json!([])
    );
    let (status, reach) = call(&app, &signed(&[("Action", "DescribeReachability")])).await;
    assert_eq!(status, StatusCode::OK, "{reach}");
    let ids: Vec<&str> = reach["Classes"]["Class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ClassId"].as_str().unwrap())
        .collect();
    let dense: Vec<String> = (0..ids.len()).map(|n| format!("c{n}")).collect();
    assert_eq!(ids, dense, "class numbers count the caller's classes only");
}

/// A rule dropping another account's group above a rule open to everyone: the exposure
/// and the preview answer the open block whole, naming the group as the exception, never
/// cut around the members' addresses; the audit counts only the caller's addresses in a
/// block.
#[tokio::test]
async fn analysis_never_cuts_around_another_accounts_members() {
    let (_dir, app) = common::two_accounts();
    let (mine, my_instance) = classic_member(&app, signed).await;
    let (theirs, their_instance) = classic_member(&app, common::signed_other).await;
    let their_address = inner_address(&app, common::signed_other, &their_instance).await;
    for ports in ["22/22", "80/80"] {
        from_theirs(
            &app,
            &mine,
            &theirs,
            ports,
            &[("Policy", "drop"), ("Priority", "1")],
        )
        .await;
    }
    let exposure = ok(
        &app,
        &[
            ("Action", "DescribeInstanceExposure"),
            ("InstanceId", &my_instance),
        ],
    )
    .await;
    let text = exposure.to_string();
    assert!(
        !text.contains(&their_address),
        "{their_address} leaked: {text}"
    );
    let ssh: Vec<&serde_json::Value> = exposure["Exposures"]["Exposure"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["PortRange"] == "22/22")
        .collect();
    assert_eq!(ssh.len(), 1, "{text}");
    assert_eq!(
        ssh[0]["SourceCidrIps"]["SourceCidrIp"],
        serde_json::json!(["0.0.0.0/0"]),
        "the open block whole: {text}"
    );
    assert_eq!(
        ssh[0]["ExceptSourceGroupIds"]["SecurityGroupId"],
        serde_json::json!([theirs]),
        "{text}"
    );
    // Opening port 80 to everyone flips it for everyone but the dropped group's members.
    let preview = ok(
        &app,
        &[
            ("Action", "PreviewSecurityGroupChange"),
            ("ChangeAction", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &mine),
            ("IpProtocol", "tcp"),
            ("PortRange", "80/80"),
            ("SourceCidrIp", "0.0.0.0/0"),
            ("NicType", "intranet"),
        ],
    )
    .await;
    let text = preview.to_string();
    assert!(
        !text.contains(&their_address),
        "{their_address} leaked: {text}"
    );
    // (The caller's own instance is a cut: its intra-group access does not flip.)
    let address: std::net::IpAddr = their_address.parse().unwrap();
    let covering = preview["Changes"]["Change"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["PeerCidrIps"]["PeerCidrIp"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| {
                    n.as_str()
                        .unwrap()
                        .parse::<ipnet::IpNet>()
                        .unwrap()
                        .contains(&address)
                })
        })
        .unwrap_or_else(|| panic!("no hole at the member's address: {text}"));
    assert_eq!(
        covering["ExceptPeerSecurityGroupIds"]["SecurityGroupId"],
        serde_json::json!([theirs]),
        "{text}"
    );
    // Revoking the drop of port 22 flips it for the group's members alone: named, not
    // addressed.
    let preview = ok(
        &app,
        &[
            ("Action", "PreviewSecurityGroupChange"),
            ("ChangeAction", "RevokeSecurityGroup"),
            ("SecurityGroupId", &mine),
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourceGroupId", &theirs),
            ("SourceGroupOwnerAccount", "other"),
            ("Policy", "drop"),
            ("Priority", "1"),
        ],
    )
    .await;
    let text = preview.to_string();
    assert!(
        !text.contains(&their_address),
        "{their_address} leaked: {text}"
    );
    let change = &preview["Changes"]["Change"][0];
    assert_eq!(preview["TotalCount"], 1, "{text}");
    assert_eq!(change["Effect"], "Allowed", "{text}");
    assert_eq!(change["PeerCidrIps"]["PeerCidrIp"], serde_json::json!([]));
    assert_eq!(
        change["PeerSecurityGroupIds"]["SecurityGroupId"],
        serde_json::json!([theirs])
    );
    // A block of the classic pool holds one address of the caller's, whatever the other
    // account holds there.
    ok(
        &app,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &mine),
            ("IpProtocol", "tcp"),
            ("PortRange", "23/23"),
            ("SourceCidrIp", "198.18.192.0/18"),
            ("NicType", "intranet"),
        ],
    )
    .await;
    let audit = ok(
        &app,
        &[
            ("Action", "DescribeSecurityGroupAudit"),
            ("SecurityGroupId.1", &mine),
        ],
    )
    .await;
    let finding = audit["Findings"]["Finding"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["Check"] == "cidr-instead-of-group")
        .unwrap_or_else(|| panic!("{audit}"));
    assert!(
        finding["Message"]
            .as_str()
            .unwrap()
            .contains("holds 1 instance"),
        "{finding}"
    );
}

/// A's compiled share is kept across other accounts' writes only while none touches it: an
/// instance of B joining the group A's rule names changes A's verdict at once.
#[tokio::test]
async fn another_accounts_join_of_a_named_group_reaches_the_callers_verdicts() {
    let (_dir, app) = common::two_accounts();
    let (mine, my_instance) = classic_member(&app, signed).await;
    let (theirs, _) = classic_member(&app, common::signed_other).await;
    let (elsewhere, newcomer) = classic_member(&app, common::signed_other).await;
    from_theirs(&app, &mine, &theirs, "5432/5432", &[]).await;
    let address = inner_address(&app, common::signed_other, &newcomer).await;
    let verdict = || {
        let (app, address, my_instance) = (app.clone(), address.clone(), my_instance.clone());
        async move {
            let body = ok(
                &app,
                &[
                    ("Action", "DescribeFlowVerdict"),
                    ("SourceIp", &address),
                    ("DestinationInstanceId", &my_instance),
                    ("IpProtocol", "tcp"),
                    ("DestinationPort", "5432"),
                ],
            )
            .await;
            body["Verdict"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(verdict().await, "Drop", "{newcomer} is not in {theirs} yet");
    // Writes of B elsewhere leave A's share (and its verdict) as it was.
    common::ok(
        &app,
        common::signed_other,
        &[
            ("Action", "AuthorizeSecurityGroup"),
            ("SecurityGroupId", &elsewhere),
            ("IpProtocol", "udp"),
            ("PortRange", "53/53"),
            ("SourceCidrIp", "10.0.0.0/8"),
        ],
    )
    .await;
    assert_eq!(verdict().await, "Drop");
    common::ok(
        &app,
        common::signed_other,
        &[
            ("Action", "JoinSecurityGroup"),
            ("InstanceId", &newcomer),
            ("SecurityGroupId", &theirs),
        ],
    )
    .await;
    assert_eq!(verdict().await, "Accept", "the join reaches A's verdict");
}

/// A list change counts the list as it will be: an entry removed twice in one request is
/// refused (it once let a 2-entry list hold 3, and `[a]` minus `[a, a]` underflowed), and the
/// refusal leaves the list as it was.
#[tokio::test]
async fn list_changes_count_the_list_as_it_will_be() {
    let (_dir, app) = setup();
    for (kind, field, a, b, c, d) in [
        (
            "PrefixList",
            "Cidr",
            "192.0.2.0/24",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "198.18.0.0/24",
        ),
        (
            "PortRangeList",
            "PortRange",
            "8080/8080",
            "22/22",
            "80/80",
            "443/443",
        ),
    ] {
        let id = create_list(&app, kind, "2").await;
        let id_field = format!("{kind}Id");
        let (action, entry) = (format!("Modify{kind}"), |n: u8| {
            format!("AddEntry.{n}.{field}")
        });
        let remove = |n: u8| format!("RemoveEntry.{n}.{field}");
        ok(
            &app,
            &[("Action", &action), (&id_field, &id), (&entry(1), b)],
        )
        .await;
        for params in [
            // [a, b] minus [a, a] plus [c, d] would be [b, c, d].
            vec![(remove(1), a), (remove(2), a), (entry(1), c), (entry(2), d)],
            vec![(remove(1), b), (remove(2), b)],
        ] {
            let mut request = vec![
                ("Action", action.as_str()),
                (id_field.as_str(), id.as_str()),
            ];
            request.extend(params.iter().map(|(k, v)| (k.as_str(), *v)));
            let (status, body) = call(&app, &signed(&request)).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::BAD_REQUEST, "InvalidEntry.Duplicated"),
                "{request:?}: {body}"
            );
        }
        // Three entries where two fit: refused as full, whatever the arithmetic of the request.
        let (status, body) = call(
            &app,
            &signed(&[
                ("Action", &action),
                (&id_field, &id),
                (&remove(1), a),
                (&entry(1), c),
                (&entry(2), d),
            ]),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (describe, entries) = match kind {
            "PrefixList" => ("DescribePrefixListAttributes", "/Entries/Entry"),
            _ => ("DescribePortRangeListEntries", "/Entries"),
        };
        let v = ok(&app, &[("Action", describe), (&id_field, &id)]).await;
        let mut held: Vec<&str> = v
            .pointer(entries)
            .and_then(|e| e.as_array())
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|e| e[field].as_str().unwrap())
            .collect();
        held.sort_unstable();
        let mut expected = [a, b];
        expected.sort_unstable();
        assert_eq!(held, expected, "{kind}: {v}");
    }
}

/// What this stop added, tried as another account would: it cannot turn off the source
/// check of A's interface, give A's instance a public address, lift A's deletion protection,
/// nor learn that any of them exists (each answers as an id of nothing does); public
/// addresses are one pool, so B's never equals A's.
#[tokio::test]
async fn another_account_cannot_forward_publish_or_unprotect_anything_of_the_first() {
    let (_dir, app) = common::two_accounts();
    let a = common::vpc_instance(&app, signed).await;
    let b = common::vpc_instance(&app, common::signed_other).await;
    let eni = |sign: common::Signer, instance: &str| {
        let app = app.clone();
        let instance = instance.to_string();
        async move {
            let v = common::ok(
                &app,
                sign,
                &[
                    ("Action", "DescribeNetworkInterfaces"),
                    ("InstanceId", &instance),
                ],
            )
            .await;
            common::text(
                &v,
                "/NetworkInterfaceSets/NetworkInterfaceSet/0/NetworkInterfaceId",
            )
        }
    };
    let a_eni = eni(signed, &a.instance).await;
    common::ok(
        &app,
        signed,
        &[
            ("Action", "ModifyInstanceAttribute"),
            ("InstanceId", &a.instance),
            ("DeletionProtection", "true"),
        ],
    )
    .await;
    let nothing_eni = "eni-bp1nothingnothing000";
    let nothing_instance = "i-bp1nothingnothing000";
    for (theirs, nothing, params) in [
        (
            a_eni.as_str(),
            nothing_eni,
            vec![
                ("Action", "ModifyNetworkInterfaceAttribute"),
                ("SourceDestCheck", "false"),
            ],
        ),
        (
            a.instance.as_str(),
            nothing_instance,
            vec![("Action", "AllocatePublicIpAddress")],
        ),
        (
            a.instance.as_str(),
            nothing_instance,
            vec![
                ("Action", "ModifyInstanceAttribute"),
                ("DeletionProtection", "false"),
            ],
        ),
    ] {
        let id_field = if theirs.starts_with("eni-") {
            "NetworkInterfaceId"
        } else {
            "InstanceId"
        };
        let ask = |id: &str| {
            let mut p = params.clone();
            p.push((id_field, id));
            common::signed_other(&p)
        };
        let (status, body) = call(&app, &ask(theirs)).await;
        let (status_nothing, body_nothing) = call(&app, &ask(nothing)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{params:?}: {body}");
        assert_eq!(
            (status, code(&body)),
            (status_nothing, code(&body_nothing)),
            "{params:?}"
        );
    }
    // A's protection and check stand.
    let (status, body) = call(
        &app,
        &signed(&[
            ("Action", "DeleteInstance"),
            ("InstanceId", &a.instance),
            ("Force", "true"),
        ]),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "InvalidOperation.DeletionProtection")
    );
    let described = common::ok(
        &app,
        signed,
        &[
            ("Action", "DescribeNetworkInterfaceAttribute"),
            ("NetworkInterfaceId", &a_eni),
        ],
    )
    .await;
    assert_eq!(described["SourceDestCheck"], true, "{described}");
    // Public addresses: one pool for every account.
    let public = |sign: common::Signer, vswitch: String, group: String| {
        let app = app.clone();
        async move {
            let v = common::ok(
                &app,
                sign,
                &[
                    ("Action", "RunInstances"),
                    ("VSwitchId", &vswitch),
                    ("SecurityGroupId", &group),
                    ("ImageId", "img"),
                    ("InstanceType", "ecs.t"),
                    ("Amount", "20"),
                    ("InternetMaxBandwidthOut", "1"),
                ],
            )
            .await;
            let ids = v["InstanceIdSets"]["InstanceIdSet"].to_string();
            let d = common::ok(
                &app,
                sign,
                &[
                    ("Action", "DescribeInstances"),
                    ("InstanceIds", &ids),
                    ("PageSize", "100"),
                ],
            )
            .await;
            d["Instances"]["Instance"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    i["PublicIpAddress"]["IpAddress"][0]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect::<std::collections::BTreeSet<String>>()
        }
    };
    let mine = public(signed, a.vswitch, a.group).await;
    let theirs = public(common::signed_other, b.vswitch, b.group).await;
    assert_eq!((mine.len(), theirs.len()), (20, 20));
    assert!(mine.is_disjoint(&theirs), "{mine:?} / {theirs:?}");
}
