//! A server, a lab over it, a signed API client, probes and waits.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

const AK: &str = "LTAIlabtests";
const SK: &str = "labtestssecret";
const TOKEN: &str = "lab-test-agent-token";
const EXE: &str = env!("CARGO_BIN_EXE_stockade");

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Whether the kernel tests are skipped on this machine.
pub(crate) fn skipped() -> bool {
    std::env::var_os("STOCKADE_SKIP_KERNEL").is_some()
}

/// Creates an empty database on the PostgreSQL server of `url` (whose role may create
/// databases) and returns its URL.
fn fresh_database(url: &str) -> String {
    let (server, _) = url
        .rsplit_once('/')
        .expect("a postgres:// URL with a database");
    let name = format!(
        "lab_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let rest = server.strip_prefix("postgres://").expect("postgres://");
    let (user, hostport) = rest.split_once('@').expect("user@host:port");
    let (host, port) = hostport.split_once(':').expect("host:port");
    let status = Command::new("psql")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-U",
            user,
            "-d",
            &url[url.rfind('/').unwrap() + 1..],
        ])
        .args(["-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql");
    assert!(status.success(), "cannot create database {name}");
    format!("{server}/{name}")
}

/// An AccessKey pair.
pub(crate) type Keys = (String, String);

/// `stockade account create` on a store: the new account's pair.
fn create_account(store: &[std::ffi::OsString], name: &str, operator: bool) -> Keys {
    let mut c = Command::new(EXE);
    c.args(["account", "create", "--name", name]).args(store);
    if operator {
        c.arg("--operator");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let field = |k: &str| v[k].as_str().unwrap().to_string();
    (field("AccessKeyId"), field("AccessKeySecret"))
}

/// A lab member's addresses and namespace.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub id: String,
    pub host: String,
    pub netns: String,
    pub private_ip: String,
    pub public_ip: String,
    /// Its primary network interface.
    pub eni: String,
    /// Its IPv6 address (VPC members).
    pub ipv6: String,
    /// Whose: 0 for the lab's account, `n` for `tenants[n - 1]`.
    pub tenant: usize,
    /// Its secondary network interface (`lab up --secondary`): id and address.
    pub secondary: Option<(String, String)>,
}

/// A running server with a lab over it; dropping it tears both down.
pub(crate) struct Lab {
    server: Child,
    pub addr: String,
    /// Where the server serves its Prometheus metrics.
    pub metrics: String,
    /// The operator's AccessKey pair.
    pub operator: Keys,
    /// The other tenants' pairs (tenant `n` at `n - 1`).
    pub tenants: Vec<Keys>,
    /// The server's store, as `stockade account` takes it.
    store: Vec<std::ffi::OsString>,
    pub dir: tempfile::TempDir,
    pub lab: Value,
    pub members: Vec<Member>,
    pub hosts: Vec<(String, String)>,
    /// How the lab's agents write chains (`stockade agent --rendering`).
    rendering: &'static str,
    _lock: MutexGuard<'static, ()>,
}

impl Lab {
    /// A server on a free port and a lab of `hosts` hosts, `vpc` VPC instances and
    /// `classic` classic ones. `tag` makes the lab's names unique.
    pub(crate) fn up(tag: char, hosts: usize, vpc: usize, classic: usize) -> Lab {
        Lab::up_with_tenants(tag, hosts, vpc, classic, 0)
    }

    /// [`Lab::up`] with `tenants` more accounts (`lab up --tenant`), each with a VPC of the
    /// same CIDRs and `vpc` instances on the same hosts at the same addresses.
    pub(crate) fn up_with_tenants(
        tag: char,
        hosts: usize,
        vpc: usize,
        classic: usize,
        tenants: usize,
    ) -> Lab {
        Lab::up_with(tag, hosts, vpc, classic, tenants, 0)
    }

    /// [`Lab::up_with_tenants`] where the first `secondary` VPC members also have a
    /// secondary network interface (`lab up --secondary`).
    pub(crate) fn up_with(
        tag: char,
        hosts: usize,
        vpc: usize,
        classic: usize,
        tenants: usize,
        secondary: usize,
    ) -> Lab {
        Lab::up_rendering(tag, hosts, vpc, classic, tenants, secondary, "linear")
    }

    /// [`Lab::up_with`] whose agents write chains in `rendering` (`linear` or `flat`).
    pub(crate) fn up_rendering(
        tag: char,
        hosts: usize,
        vpc: usize,
        classic: usize,
        tenants: usize,
        secondary: usize,
        rendering: &'static str,
    ) -> Lab {
        Lab::start(
            tag,
            [hosts, vpc, classic, tenants, secondary],
            rendering,
            &[],
        )
    }

    /// A lab of `vpc` VPC instances on `hosts` hosts, `lab up` given the `extra` flags too.
    pub(crate) fn up_flags(tag: char, hosts: usize, vpc: usize, extra: &[&str]) -> Lab {
        Lab::start(tag, [hosts, vpc, 0, 0, 0], "linear", extra)
    }

    fn start(
        tag: char,
        [hosts, vpc, classic, tenants, secondary]: [usize; 5],
        rendering: &'static str,
        extra: &[&str],
    ) -> Lab {
        let lock = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let store: Vec<std::ffi::OsString> = match std::env::var("STOCKADE_TEST_DATABASE_URL") {
            // The same suite on PostgreSQL: a fresh database of that server per lab.
            Ok(url) => vec![
                "--database-url".into(),
                fresh_database(&url).into(),
                "--key-file".into(),
                dir.path().join("master.key").into(),
            ],
            Err(_) => vec!["--data-dir".into(), dir.path().join("data").into()],
        };
        let mut server = Command::new(EXE)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(&store)
            .env("STOCKADE_BOOTSTRAP_ACCESS_KEY_ID", AK)
            .env("STOCKADE_BOOTSTRAP_ACCESS_KEY_SECRET", SK)
            .env("STOCKADE_AGENT_TOKEN", TOKEN)
            .env("STOCKADE_METRICS_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
        let mut metrics = String::new();
        let addr = loop {
            let line = lines.next().expect("server output").unwrap();
            if let Some(at) = line.strip_prefix("metrics on ") {
                metrics = at.to_string();
            }
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.to_string();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        // The lab plays the operator (placement is the operator's): the same store as the
        // server, on either backend, as a user of replicas would make one.
        let operator = create_account(&store, "lab-operator", true);
        let mut tenant_args = Vec::new();
        let mut tenant_keys = Vec::new();
        for t in 1..=tenants {
            let keys = create_account(&store, &format!("lab-tenant-{t}"), false);
            let file = dir.path().join(format!("tenant-{t}.json"));
            let json = serde_json::json!({"AccessKeyId": keys.0, "AccessKeySecret": keys.1});
            std::fs::write(&file, json.to_string()).unwrap();
            tenant_args.push("--tenant".to_string());
            tenant_args.push(file.display().to_string());
            tenant_keys.push(keys);
        }
        let name = format!("{tag}{}", std::process::id() % 100_000);
        let mut lab = Lab {
            server,
            addr,
            metrics,
            operator,
            tenants: tenant_keys,
            store,
            dir,
            lab: Value::Null,
            members: Vec::new(),
            hosts: Vec::new(),
            rendering,
            _lock: lock,
        };
        let out = lab
            .stockade(&[
                "lab",
                "up",
                "--name",
                &name,
                "--hosts",
                &hosts.to_string(),
                "--instances",
                &vpc.to_string(),
                "--classic",
                &classic.to_string(),
                "--secondary",
                &secondary.to_string(),
            ])
            .args(extra)
            .args(&tenant_args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "lab up failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("[5/5]"), "progress is shown: {text}");
        lab.lab = serde_json::from_str(
            &std::fs::read_to_string(lab.dir.path().join("lab/lab.json")).unwrap(),
        )
        .unwrap();
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        lab.members = lab.lab["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Member {
                id: s(&m["InstanceId"]),
                host: s(&m["HostId"]),
                netns: s(&m["Netns"]),
                private_ip: s(&m["PrivateIpAddress"]),
                public_ip: s(&m["PublicIpAddress"]),
                eni: s(&m["NetworkInterfaceId"]),
                ipv6: s(&m["Ipv6Address"]),
                tenant: m["Tenant"].as_u64().unwrap_or(0) as usize,
                secondary: m["Secondary"]
                    .as_object()
                    .map(|sec| (s(&sec["NetworkInterfaceId"]), s(&sec["PrivateIpAddress"]))),
            })
            .collect();
        lab.hosts = lab.lab["Hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (s(&h["HostId"]), s(&h["Netns"])))
            .collect();
        lab
    }

    /// `stockade ARGS` with this lab's directory, credentials and endpoint.
    pub(crate) fn stockade(&self, args: &[&str]) -> Command {
        let mut c = Command::new(EXE);
        c.args(args);
        if args[0] == "lab" && args[1] != "probe-batch" {
            c.arg("--lab-dir").arg(self.dir.path().join("lab"));
        }
        c.env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
            .env("STOCKADE_ENDPOINT", format!("http://{}", self.addr))
            .env("STOCKADE_AGENT_TOKEN", TOKEN)
            .env("STOCKADE_AGENT_RENDERING", self.rendering)
            .env("STOCKADE_OPERATOR_ACCESS_KEY_ID", &self.operator.0)
            .env("STOCKADE_OPERATOR_ACCESS_KEY_SECRET", &self.operator.1);
        c
    }

    /// The lab's default security group of a network (`vpc` or `classic`).
    pub(crate) fn default_group(&self, network: &str) -> String {
        let ids = self.lab["SecurityGroupIds"].as_array().unwrap();
        let n = if network == "vpc" { 0 } else { ids.len() - 1 };
        ids[n].as_str().unwrap().to_string()
    }

    pub(crate) fn vpc_id(&self) -> String {
        self.lab["VpcId"].as_str().unwrap().to_string()
    }

    /// A signed API call; `Err` carries the error body.
    pub(crate) fn try_call(&self, params: &[(&str, &str)]) -> Result<Value, Value> {
        self.try_call_as(&(AK.into(), SK.into()), params)
    }

    /// Another account on the lab's server.
    pub(crate) fn account(&self, name: &str) -> Keys {
        create_account(&self.store, name, false)
    }

    /// A call signed by `keys`; `Err` carries the error body.
    pub(crate) fn try_call_as(&self, keys: &Keys, params: &[(&str, &str)]) -> Result<Value, Value> {
        let mut all: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in [("Version", "2014-05-26"), ("RegionId", "cn-hangzhou")] {
            if !all.iter().any(|(key, _)| key == k) {
                all.push((k.into(), v.into()));
            }
        }
        let query = server::auth::signed_v1_query("GET", &keys.0, &keys.1, all);
        let (status, body) = self.http(&format!("/?{query}"), "");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        if status == 200 {
            Ok(v)
        } else {
            Err(v)
        }
    }

    /// A signed API call that must succeed.
    pub(crate) fn call(&self, params: &[(&str, &str)]) -> Value {
        self.try_call(params)
            .unwrap_or_else(|e| panic!("{params:?} failed: {e}"))
    }

    fn http(&self, path_and_query: &str, token: &str) -> (u16, String) {
        let mut request =
            reqwest::blocking::Client::new().get(format!("http://{}{path_and_query}", self.addr));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        let r = request.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// The agent feed's view: the store revision and each host's report.
    fn agent_view(&self) -> (u64, Value) {
        let (_, feed) = self.http("/agent/v1/policy?host=probe&wait=0", TOKEN);
        let revision = serde_json::from_str::<Value>(&feed).unwrap()["Revision"]
            .as_u64()
            .unwrap();
        let (_, hosts) = self.http("/agent/v1/hosts", TOKEN);
        (revision, serde_json::from_str(&hosts).unwrap())
    }

    /// Waits until every host's agent reports the store's current revision; returns how
    /// long that took.
    pub(crate) fn wait_applied(&self) -> Duration {
        let start = Instant::now();
        loop {
            let (revision, hosts) = self.agent_view();
            let done = self.hosts.iter().all(|(id, _)| {
                hosts["Hosts"].as_array().is_some_and(|list| {
                    list.iter().any(|h| {
                        h["HostId"] == id.as_str()
                            && h["Report"]["Revision"]
                                .as_u64()
                                .is_some_and(|r| r >= revision)
                    })
                })
            });
            if done {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "agents did not apply revision {revision}: {hosts}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn member(&self, n: usize) -> &Member {
        &self.members[n]
    }

    /// The namespace of a member index or of the internet client (`None`).
    pub(crate) fn netns(&self, from: Option<usize>) -> String {
        match from {
            Some(n) => self.members[n].netns.clone(),
            None => self.lab["InternetNetns"].as_str().unwrap().to_string(),
        }
    }

    /// Sends probes (`tcp 198.18.1.3 80 0`) from a namespace; true for each that got through.
    pub(crate) fn probe_lines(&self, netns: &str, lines: &[String]) -> Vec<bool> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, EXE, "lab", "probe-batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.join("\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let results: Vec<bool> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l == "1")
            .collect();
        assert_eq!(results.len(), lines.len(), "one answer per probe");
        results
    }

    /// One probe from a member (or the internet) to an address.
    pub(crate) fn probe(&self, from: Option<usize>, to: &str, protocol: &str, port: u16) -> bool {
        self.probe_lines(&self.netns(from), &[format!("{protocol} {to} {port} 0")])[0]
    }

    /// Every host's share of the policy as the feed gives it to the agents (the policy in
    /// force, as ECS-vocabulary JSON), for failure messages.
    pub(crate) fn host_policies(&self) -> String {
        self.hosts
            .iter()
            .map(|(id, _)| {
                let (_, feed) = self.http(&format!("/agent/v1/policy?host={id}"), TOKEN);
                format!("--- {id}\n{feed}\n")
            })
            .collect()
    }

    /// The nftables table of every host, for failure messages.
    pub(crate) fn tables(&self) -> String {
        self.hosts
            .iter()
            .map(|(id, ns)| {
                let out = Command::new("ip")
                    .args([
                        "netns", "exec", ns, "nft", "list", "table", "inet", "stockade",
                    ])
                    .output()
                    .unwrap();
                format!("--- {id} ({ns})\n{}", String::from_utf8_lossy(&out.stdout))
            })
            .collect()
    }

    /// Kills the agent of a host at once (SIGKILL).
    pub(crate) fn kill_agent(&self, host: usize) {
        let pid = self.agent_pid(host);
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        while std::path::Path::new(&format!("/proc/{pid}/exe")).exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn agent_pid(&self, host: usize) -> u32 {
        let lab: Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("lab/lab.json")).unwrap(),
        )
        .unwrap();
        lab["Hosts"][host]["AgentPid"].as_u64().unwrap() as u32
    }

    /// Stops the API server (the agents keep running on their last policy).
    pub(crate) fn stop_server(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.stockade(&["lab", "down"]).output();
        if let Ok(out) = out {
            if !out.status.success() {
                eprintln!("lab down: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A TCP connection from one namespace to an echo server in another, kept open between
/// exchanges (Python, present wherever the SDK suite runs).
pub(crate) struct Connection {
    server: std::process::Child,
    client: std::process::Child,
    lines: BufReader<std::process::ChildStdout>,
}

const ECHO_SERVER: &str = "import socket,sys\ns=socket.socket(socket.AF_INET6);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\ns.bind(('::',int(sys.argv[1])));s.listen(1);print('ready',flush=True)\nc,_=s.accept()\nwhile True:\n d=c.recv(100)\n if not d: break\n c.sendall(d)\n";
const ECHO_CLIENT: &str = "import socket,sys\nc=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2,source_address=('::' if ':' in sys.argv[1] else '0.0.0.0',int(sys.argv[3])))\nfor line in sys.stdin:\n try:\n  c.sendall(b'x');ok=c.recv(10)==b'x'\n except Exception:\n  ok=False\n print('ok' if ok else 'dead',flush=True)\n";

impl Connection {
    pub(crate) fn open(server_ns: &str, client_ns: &str, addr: &str, port: u16) -> Connection {
        Connection::open_from(server_ns, client_ns, addr, port, 0)
    }

    /// [`Connection::open`] from a given source port (0: any).
    pub(crate) fn open_from(
        server_ns: &str,
        client_ns: &str,
        addr: &str,
        port: u16,
        source_port: u16,
    ) -> Connection {
        let mut server = Command::new("ip")
            .args([
                "netns",
                "exec",
                server_ns,
                "python3",
                "-c",
                ECHO_SERVER,
                &port.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        let mut client = Command::new("ip")
            .args([
                "netns",
                "exec",
                client_ns,
                "python3",
                "-c",
                ECHO_CLIENT,
                addr,
                &port.to_string(),
                &source_port.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(client.stdout.take().unwrap());
        Connection {
            server,
            client,
            lines,
        }
    }

    /// One exchange over the open connection.
    pub(crate) fn echo(&mut self) -> bool {
        let stdin = self.client.stdin.as_mut().unwrap();
        if writeln!(stdin, "go").and_then(|()| stdin.flush()).is_err() {
            return false;
        }
        let mut line = String::new();
        self.lines.read_line(&mut line).is_ok() && line.trim() == "ok"
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for p in [&mut self.client, &mut self.server] {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}
