//! The HTTP layer end to end in-process (`app().oneshot(...)`): signing, dispatch, errors,
//! atomic limits under concurrent requests.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{call, serve, setup, signed, store};
use serde_json::Value;
use server::auth;
use tower::ServiceExt;

#[tokio::test]
async fn healthz_answers() {
    let (_dir, app) = setup();
    let r = app
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_signed_request_is_answered_with_a_request_id() {
    let (_dir, app) = setup();
    let (status, body) = call(&app, &signed(&[("Action", "DescribeRegions")])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["RequestId"].as_str().unwrap().len(), 36);
    assert_eq!(body["Regions"]["Region"][0]["RegionId"], "cn-hangzhou");
}

#[tokio::test]
async fn errors_have_the_ecs_shape() {
    let (_dir, app) = setup();
    let (status, body) = call(
        &app,
        &signed(&[
            ("Action", "DeleteSecurityGroup"),
            ("SecurityGroupId", "sg-nothing"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["Code"], "InvalidSecurityGroupId.NotFound");
    for field in ["RequestId", "HostId", "Message", "Recommend"] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
    let (status, body) = call(&app, &signed(&[("Action", "DeleteSecurityGroup")])).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("MissingParameter"))
    );
    let tampered =
        signed(&[("Action", "DescribeRegions")]).replace("DescribeRegions", "DescribeRegionz");
    let (status, body) = call(&app, &tampered).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("SignatureDoesNotMatch"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_authorizations_never_exceed_the_rule_limit() {
    let (_dir, app) = setup();
    let (_, created) = call(&app, &signed(&[("Action", "CreateSecurityGroup")])).await;
    let sg = created["SecurityGroupId"].as_str().unwrap().to_string();
    // 30 requests of 10 distinct rules each race for the 200-rule limit: exactly 20 win.
    let mut tasks = Vec::new();
    for batch in 0..30u16 {
        let (app, sg) = (app.clone(), sg.clone());
        tasks.push(tokio::spawn(async move {
            let ports: Vec<(String, String)> = (0..10u16)
                .flat_map(|i| {
                    let port = 1 + batch * 10 + i;
                    [
                        (
                            format!("Permissions.{}.IpProtocol", i + 1),
                            "tcp".to_string(),
                        ),
                        (
                            format!("Permissions.{}.PortRange", i + 1),
                            format!("{port}/{port}"),
                        ),
                        (
                            format!("Permissions.{}.SourceCidrIp", i + 1),
                            "0.0.0.0/0".to_string(),
                        ),
                    ]
                })
                .collect();
            let mut params: Vec<(&str, &str)> = vec![
                ("Action", "AuthorizeSecurityGroup"),
                ("SecurityGroupId", &sg),
            ];
            params.extend(ports.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            call(&app, &signed(&params)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(body["Code"], "AuthorizationLimitExceed");
        }
    }
    assert_eq!(ok, 20);
    let (_, attr) = call(
        &app,
        &signed(&[
            ("Action", "DescribeSecurityGroupAttribute"),
            ("SecurityGroupId", &sg),
            ("MaxResults", "1000"),
        ]),
    )
    .await;
    assert_eq!(
        attr["Permissions"]["Permission"].as_array().unwrap().len(),
        200
    );
}

async fn vpc_call(app: &axum::Router, params: &[(&str, &str)]) -> Value {
    let mut p = params.to_vec();
    p.push(("Version", "2016-04-28"));
    let (status, body) = call(app, &signed(&p)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_joins_leave_an_instance_in_exactly_five_groups() {
    let (_dir, app) = setup();
    let vpc = vpc_call(
        &app,
        &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")],
    )
    .await;
    let vpc = vpc["VpcId"].as_str().unwrap().to_string();
    let vsw = vpc_call(
        &app,
        &[
            ("Action", "CreateVSwitch"),
            ("VpcId", &vpc),
            ("ZoneId", "cn-hangzhou-h"),
            ("CidrBlock", "10.0.1.0/24"),
        ],
    )
    .await;
    let vsw = vsw["VSwitchId"].as_str().unwrap().to_string();
    let mut groups = Vec::new();
    for _ in 0..21 {
        let (_, g) = call(
            &app,
            &signed(&[("Action", "CreateSecurityGroup"), ("VpcId", &vpc)]),
        )
        .await;
        groups.push(g["SecurityGroupId"].as_str().unwrap().to_string());
    }
    let (status, run) = call(
        &app,
        &signed(&[
            ("Action", "RunInstances"),
            ("ImageId", "img"),
            ("InstanceType", "t"),
            ("VSwitchId", &vsw),
            ("SecurityGroupId", &groups[0]),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let instance = run["InstanceIdSets"]["InstanceIdSet"][0]
        .as_str()
        .unwrap()
        .to_string();
    let tasks: Vec<_> = groups[1..]
        .iter()
        .map(|g| {
            let (app, g, instance) = (app.clone(), g.clone(), instance.clone());
            tokio::spawn(async move {
                call(
                    &app,
                    &signed(&[
                        ("Action", "JoinSecurityGroup"),
                        ("InstanceId", &instance),
                        ("SecurityGroupId", &g),
                    ]),
                )
                .await
            })
        })
        .collect();
    let mut joined = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::OK {
            joined += 1;
        } else {
            assert_eq!(body["Code"], "InstanceSecurityGroupLimitExceeded");
        }
    }
    assert_eq!(joined, 4);
    let ids = format!("[\"{instance}\"]");
    let (_, described) = call(
        &app,
        &signed(&[("Action", "DescribeInstances"), ("InstanceIds", &ids)]),
    )
    .await;
    let member_of = described["Instances"]["Instance"][0]["SecurityGroupIds"]["SecurityGroupId"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(member_of, 5);
}

#[tokio::test]
async fn repeated_reads_are_served_again_until_the_store_changes() {
    let (_dir, app) = setup();
    let (_, created) = call(
        &app,
        &signed(&[
            ("Action", "CreateSecurityGroup"),
            ("RegionId", "cn-hangzhou"),
        ]),
    )
    .await;
    let sg = created["SecurityGroupId"].as_str().unwrap().to_string();
    let describe = || {
        signed(&[
            ("Action", "DescribeSecurityGroupAttribute"),
            ("RegionId", "cn-hangzhou"),
            ("SecurityGroupId", &sg),
        ])
    };
    let (s1, first) = call(&app, &describe()).await;
    let (s2, second) = call(&app, &describe()).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_ne!(
        first["RequestId"], second["RequestId"],
        "each answer has its own id"
    );
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("RequestId");
        v
    };
    assert_eq!(strip(first.clone()), strip(second));
    assert_eq!(
        first.as_object().unwrap().keys().next().unwrap(),
        "RequestId"
    );
    // A change is visible at once.
    let (status, _) = call(
        &app,
        &signed(&[
            ("Action", "AuthorizeSecurityGroup"),
            ("RegionId", "cn-hangzhou"),
            ("SecurityGroupId", &sg),
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourceCidrIp", "198.18.0.0/16"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, third) = call(&app, &describe()).await;
    assert_eq!(third["Permissions"]["Permission"][0]["PortRange"], "22/22");
}

#[tokio::test]
async fn cached_reads_stay_within_their_account() {
    let dir = tempfile::tempdir().unwrap();
    let control = store(dir.path());
    control
        .create_account("other", Some(("LTAIother".into(), "othersecret".into())))
        .unwrap();
    let app = serve(control);
    let (_, created) = call(
        &app,
        &signed(&[
            ("Action", "CreateSecurityGroup"),
            ("RegionId", "cn-hangzhou"),
        ]),
    )
    .await;
    let sg = created["SecurityGroupId"].as_str().unwrap().to_string();
    let params = [
        ("Action", "DescribeSecurityGroupAttribute"),
        ("RegionId", "cn-hangzhou"),
        ("SecurityGroupId", sg.as_str()),
    ];
    let (status, _) = call(&app, &signed(&params)).await;
    assert_eq!(status, StatusCode::OK);
    let other = params.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let uri = format!(
        "/?{}",
        auth::signed_v1_query("GET", "LTAIother", "othersecret", other)
    );
    let (status, body) = call(&app, &uri).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
