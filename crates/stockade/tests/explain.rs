//! `stockade explain` as a user runs it: the binary, the example policy file, real output.

use std::path::PathBuf;
use std::process::{Command, Output};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy.json")
}

fn stockade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(args)
        .output()
        .expect("run stockade")
}

fn explain(policy: &std::path::Path, flow: &[&str]) -> Output {
    let mut args = vec!["explain", "--policy", policy.to_str().unwrap()];
    args.extend_from_slice(flow);
    stockade(&args)
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stockade failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn explains_a_flow_allowed_by_a_group_reference() {
    let out = stdout(&explain(
        &example(),
        &[
            "--from", "i-app1", "--to", "i-db1", "--proto", "tcp", "--port", "3306",
        ],
    ));
    assert_eq!(
        out,
        "Verdict: Accept\n  Egress  at i-app1: Accept (default: no rule matched, basic groups accept outbound traffic)\n  \
         Ingress at i-db1: Accept (rule sgr-dbmysql of sg-db, priority 1 Accept: TCP 3306/3306 from sg-app)\n"
    );
}

#[test]
fn explains_a_default_drop_and_an_egress_rule() {
    let out = stdout(&explain(
        &example(),
        &["--from", "i-web1", "--to", "i-db1", "--port", "3306"],
    ));
    assert!(out.starts_with("Verdict: Drop\n"), "{out}");
    assert!(
        out.contains(
            "Ingress at i-db1: Drop (default: no rule matched, inbound traffic is dropped)"
        ),
        "{out}"
    );
    let out = stdout(&explain(
        &example(),
        &["--from", "i-db1", "--to", "198.51.100.1", "--port", "25"],
    ));
    assert!(out.contains("Egress  at i-db1: Drop (rule sgr-dbnosmtp of sg-db, priority 1 Drop: TCP 25/25 to 0.0.0.0/0)"), "{out}");
}

#[test]
fn json_output_has_the_describe_flow_verdict_shape() {
    for evaluator in ["compiled", "reference"] {
        let out = stdout(&explain(
            &example(),
            &[
                "--from",
                "192.0.2.5",
                "--to",
                "i-web1",
                "--port",
                "22",
                "--format",
                "json",
                "--evaluator",
                evaluator,
            ],
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Verdict"], "Accept");
        let stages = v["Stages"]["Stage"].as_array().unwrap();
        assert_eq!(stages.len(), 1, "only the instance side is a stage");
        assert_eq!(stages[0]["Stage"], "Ingress");
        assert_eq!(stages[0]["DecidedBy"], "Rule");
        assert_eq!(stages[0]["SecurityGroupRuleId"], "sgr-webssh");
        assert_eq!(stages[0]["Priority"], "1");
    }
}

#[test]
fn an_ipv4_rule_does_not_judge_an_ipv6_flow() {
    let v4 = stdout(&explain(
        &example(),
        &["--from", "192.0.2.9", "--to", "i-db1", "--port", "6379"],
    ));
    assert!(
        v4.contains("Ingress at i-db1: Drop (rule sgr-dbnoredis"),
        "{v4}"
    );
    let v6 = stdout(&explain(
        &example(),
        &["--from", "2001:db8:1::7", "--to", "i-db1", "--port", "6379"],
    ));
    assert!(
        v6.contains("Ingress at i-db1: Drop (default: no rule matched"),
        "{v6}"
    );
}

#[test]
fn an_invalid_rule_is_reported_with_its_ecs_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"SecurityGroups":[{"SecurityGroupId":"sg-a","VpcId":"vpc-1","Permissions":[
            {"IpProtocol":"tcp","PortRange":"200/1","SourceCidrIp":"0.0.0.0/0"}]}]}"#,
    )
    .unwrap();
    let out = explain(&path, &["--from", "1.2.3.4", "--to", "i-x", "--port", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("security group sg-a: rule sgr-ar1: InvalidParam.PortRange"),
        "{err}"
    );
}

#[test]
fn unknown_instances_and_missing_ports_are_errors() {
    let out = explain(
        &example(),
        &["--from", "i-nope", "--to", "i-db1", "--port", "1"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidInstanceId.NotFound"));
    let out = explain(&example(), &["--from", "i-web1", "--to", "i-db1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--port is needed"));
}

const RISKY: &str = r#"{"SecurityGroups":[{"SecurityGroupId":"sg-open","VpcId":"vpc-1","Permissions":[
    {"SecurityGroupRuleId":"sgr-ssh","IpProtocol":"tcp","PortRange":"22/22","SourceCidrIp":"0.0.0.0/0"},
    {"SecurityGroupRuleId":"sgr-dropped","IpProtocol":"tcp","PortRange":"3389/3389","SourceCidrIp":"0.0.0.0/0","Priority":"2"},
    {"SecurityGroupRuleId":"sgr-guard","Policy":"drop","IpProtocol":"tcp","PortRange":"3389/3389","SourceCidrIp":"0.0.0.0/0","Priority":"1"}]}],
  "Instances":[{"InstanceId":"i-x","VpcId":"vpc-1","PrivateIpAddress":"198.18.0.1","PublicIpAddress":"198.19.0.1",
    "SecurityGroupIds":["sg-open"]}]}"#;

#[test]
fn audit_reports_findings_after_shadowing_and_gates_on_severity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("risky.json");
    std::fs::write(&path, RISKY).unwrap();
    let p = path.to_str().unwrap();
    let out = stockade(&["audit", "--policy", p]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "no --fail-on: findings do not fail"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("risky-port-open"), "{text}");
    assert!(text.contains("sgr-ssh"), "{text}");
    let json = stockade(&[
        "audit",
        "--policy",
        p,
        "--format",
        "json",
        "--fail-on",
        "high",
    ]);
    assert_eq!(json.status.code(), Some(1), "a High finding fails the gate");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let findings = v["Findings"]["Finding"].as_array().unwrap();
    let risky: Vec<&str> = findings
        .iter()
        .filter(|f| f["Check"] == "risky-port-open")
        .map(|f| f["SecurityGroupRuleId"].as_str().unwrap())
        .collect();
    assert_eq!(
        risky,
        ["sgr-ssh"],
        "3389 is shadowed by the higher-priority drop"
    );
    assert!(findings
        .iter()
        .any(|f| f["Check"] == "shadowed-rule" && f["SecurityGroupRuleId"] == "sgr-dropped"));
    let narrower = stockade(&[
        "audit",
        "--policy",
        p,
        "--risky-ports",
        "3306",
        "--fail-on",
        "high",
    ]);
    assert_eq!(
        narrower.status.code(),
        Some(0),
        "22 is not on the custom list"
    );
}

#[test]
fn exposure_lists_what_an_instance_accepts() {
    let out = stdout(&stockade(&[
        "exposure",
        "--policy",
        example().to_str().unwrap(),
        "--instance",
        "i-db1",
        "--format",
        "json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let exposures = v["Exposures"]["Exposure"].as_array().unwrap();
    let mysql = exposures
        .iter()
        .find(|e| e["SecurityGroupRuleId"] == "sgr-dbmysql")
        .expect("the MySQL rule accepts something");
    assert_eq!(mysql["IpProtocol"], "TCP");
    assert_eq!(mysql["PortRange"], "3306/3306");
    assert_eq!(
        mysql["SourceCidrIps"]["SourceCidrIp"],
        serde_json::json!(["198.18.2.21/32", "198.18.2.22/32"])
    );
    assert_eq!(
        mysql["SourceInstances"]["InstanceId"],
        serde_json::json!(["i-app1", "i-app2"])
    );
    // The drop rule for 6379 (priority 100) overrides even the intra-group default.
    assert!(!exposures.iter().any(|e| e["IpProtocol"] == "TCP" && {
        let (lo, hi) = e["PortRange"].as_str().unwrap().split_once('/').unwrap();
        (lo.parse::<u16>().unwrap()..=hi.parse::<u16>().unwrap()).contains(&6379)
    }));
    let text = stdout(&stockade(&[
        "exposure",
        "--policy",
        example().to_str().unwrap(),
        "--instance",
        "i-web1",
    ]));
    assert!(
        text.contains("TCP    80/80         from 0.0.0.0/0 (rule sgr-webhttp of sg-web)"),
        "{text}"
    );
}

#[test]
fn reach_renders_the_fleet_matrix() {
    let policy = example();
    let p = policy.to_str().unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&stockade(&[
        "reach",
        "--policy",
        p,
        "--format",
        "json",
        "--services",
        "tcp:3306,tcp:80",
    ])))
    .unwrap();
    let class = |instance: &str| {
        v["Classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["Instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i == instance)
            })
            .unwrap()["Id"]
            .clone()
    };
    let edge = |from: &str, to: &str| {
        v["Edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["From"] == class(from) && e["To"] == class(to))
            .map(|e| e["Services"].clone())
    };
    assert_eq!(
        edge("i-app1", "i-db1"),
        Some(serde_json::json!(["tcp:3306"]))
    );
    assert_eq!(
        edge("i-web1", "i-db1"),
        None,
        "web cannot reach the database"
    );
    assert_eq!(
        edge("i-app1", "i-web1"),
        Some(serde_json::json!(["tcp:80"]))
    );
    assert_eq!(
        class("i-app1"),
        class("i-app2"),
        "same groups, same address cell: one class"
    );
    let dot = stdout(&stockade(&["reach", "--policy", p, "--format", "dot"]));
    assert!(
        dot.starts_with("digraph reach {") && dot.contains("tcp:3306"),
        "{dot}"
    );
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("reach.html");
    stdout(&stockade(&[
        "reach",
        "--policy",
        p,
        "--output",
        page.to_str().unwrap(),
    ]));
    let html = std::fs::read_to_string(page).unwrap();
    assert!(
        html.starts_with("<!doctype html>") && html.contains("i-db1") && html.contains("tcp:3306")
    );
    assert_eq!(
        stockade(&["reach", "--policy", p, "--services", "tcp:0"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn exposure_to_the_internet_lists_every_reachable_instance() {
    let p = example();
    let text = stdout(&stockade(&[
        "exposure",
        "--policy",
        p.to_str().unwrap(),
        "--internet",
    ]));
    assert_eq!(
        text,
        "i-web1, i-web2  TCP 22/22 from 192.0.2.0/24\n\
         i-web1, i-web2  TCP 80/80 from anywhere (0.0.0.0/0)\n\
         i-web1, i-web2  TCP 443/443 from anywhere (0.0.0.0/0)\n"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&stockade(&[
        "exposure",
        "--policy",
        p.to_str().unwrap(),
        "--internet",
        "--format",
        "json",
    ])))
    .unwrap();
    let rows = v["Exposed"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        3,
        "the app and db tiers are not reachable from the internet"
    );
    assert!(rows
        .iter()
        .all(|r| r["InstanceIds"] == serde_json::json!(["i-web1", "i-web2"])));
}

#[test]
fn explains_a_flow_to_a_secondary_interface_through_a_port_list() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{
  "SecurityGroups": [
    {"SecurityGroupId": "sg-host", "VpcId": "vpc-lab", "Permissions": []},
    {"SecurityGroupId": "sg-web", "VpcId": "vpc-lab", "InnerAccessPolicy": "Drop", "Permissions": [
      {"SecurityGroupRuleId": "sgr-web", "IpProtocol": "tcp", "PortRangeListId": "prl-web",
       "SourceCidrIp": "0.0.0.0/0"}]}
  ],
  "Instances": [
    {"InstanceId": "i-app1", "VpcId": "vpc-lab", "PrivateIpAddress": "198.18.1.10",
     "SecurityGroupIds": ["sg-host"]},
    {"InstanceId": "i-app1", "NetworkInterfaceId": "eni-app1b", "VpcId": "vpc-lab",
     "PrivateIpAddress": "198.18.2.10", "SecondaryPrivateIpAddresses": ["198.18.2.11"],
     "SecurityGroupIds": ["sg-web"]}
  ],
  "PortRangeLists": [{"PortRangeListId": "prl-web", "Entries": ["8080/8090"]}]
}"#,
    )
    .unwrap();
    let ask = |to: &str, port: &str| {
        stdout(&explain(
            &policy,
            &["--from", "192.0.2.5", "--to", to, "--port", port],
        ))
    };
    let out = ask("eni-app1b", "8085");
    assert!(out.starts_with("Verdict: Accept\n"), "{out}");
    assert!(
        out.contains(
            "rule sgr-web of sg-web, priority 1 Accept: TCP ports of prl-web from 0.0.0.0/0"
        ),
        "{out}"
    );
    assert!(ask("eni-app1b", "8091").starts_with("Verdict: Drop\n"));
    assert!(
        ask("i-app1", "8085").starts_with("Verdict: Drop\n"),
        "the instance's primary address is judged by its own groups"
    );
}
