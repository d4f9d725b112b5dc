//! `stockade preview` against a real `stockade serve`: the change is previewed, not applied.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const AK: &str = "LTAIpreviewcli";
const SK: &str = "previewclisecret";

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .env("STOCKADE_BOOTSTRAP_ACCESS_KEY_ID", AK)
        .env("STOCKADE_BOOTSTRAP_ACCESS_KEY_SECRET", SK)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_string();
        }
    };
    Server {
        child,
        addr,
        _dir: dir,
    }
}

/// A signed API call over a plain socket; returns the JSON body.
fn call(server: &Server, params: &[(&str, &str)]) -> serde_json::Value {
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let query = server::auth::signed_v1_query("GET", AK, SK, params);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "GET /?{query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {response}"))
}

fn preview(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stockade"))
        .arg("preview")
        .args(args)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .env("STOCKADE_ENDPOINT", format!("http://{}", server.addr))
        .output()
        .unwrap()
}

#[test]
fn preview_reports_the_flows_a_change_would_open_and_applies_nothing() {
    let server = start();
    let vpc = call(
        &server,
        &[
            ("Action", "CreateVpc"),
            ("Version", "2016-04-28"),
            ("CidrBlock", "10.5.0.0/16"),
        ],
    );
    let vpc = vpc["VpcId"].as_str().unwrap().to_string();
    let vsw = call(
        &server,
        &[
            ("Action", "CreateVSwitch"),
            ("Version", "2016-04-28"),
            ("VpcId", &vpc),
            ("ZoneId", "cn-hangzhou-b"),
            ("CidrBlock", "10.5.1.0/24"),
        ],
    );
    let vsw = vsw["VSwitchId"].as_str().unwrap().to_string();
    let db = call(
        &server,
        &[("Action", "CreateSecurityGroup"), ("VpcId", &vpc)],
    )["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    let run = call(
        &server,
        &[
            ("Action", "RunInstances"),
            ("ImageId", "i"),
            ("InstanceType", "t"),
            ("VSwitchId", &vsw),
            ("SecurityGroupId", &db),
        ],
    );
    let instance = run["InstanceIdSets"]["InstanceIdSet"][0]
        .as_str()
        .unwrap()
        .to_string();
    let out = preview(
        &server,
        &[
            "--action",
            "AuthorizeSecurityGroup",
            "--param",
            &format!("SecurityGroupId={db}"),
            "--param",
            "Permissions.1.IpProtocol=tcp",
            "--param",
            "Permissions.1.PortRange=5432/5432",
            "--param",
            "Permissions.1.SourceCidrIp=192.0.2.0/24",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("{instance} Ingress  Allowed TCP 5432/5432 from 192.0.2.0/24")
    );
    let rules = call(
        &server,
        &[
            ("Action", "DescribeSecurityGroupAttribute"),
            ("SecurityGroupId", &db),
        ],
    );
    assert_eq!(
        rules["Permissions"]["Permission"].as_array().unwrap().len(),
        0,
        "nothing applied"
    );
    let refused = preview(
        &server,
        &[
            "--action",
            "LeaveSecurityGroup",
            "--param",
            &format!("InstanceId={instance}"),
            "--param",
            &format!("SecurityGroupId={db}"),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("InstanceLastSecurityGroup"));
}
