//! `stockade lab`: a small cloud on one machine. Hosts and instances are network namespaces
//! (see `agent::netns` for the wiring), the instances are real ECS instances of a running
//! server, created through its API; the lab plays the operator: it plugs each instance's
//! device into a host labelled with the id of the instance's network interface, and binds
//! the interface to that host with the operator's `PlaceNetworkInterface`. Each host runs a
//! real agent enforcing the security groups of its interfaces with nftables.
//!
//! `up` records everything it creates in `LAB_DIR/lab.json` as it goes, so `down` can remove
//! a lab that was only half built.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::netns;
use agent::probe::{self, Probe};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Api;

/// `stockade lab ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum LabCommand {
    /// Build the lab: a VPC, instances created through the API (plus classic ones with an
    /// internet interface), host and instance namespaces, and one agent per host.
    Up(UpArgs),
    /// Stop the agents, delete the namespaces and the lab's instances, groups and VPC.
    Down(DirArgs),
    /// Each host (agent, policy revision applied) and instance (address, interfaces).
    Status(DirArgs),
    /// Send one real probe between lab members; exit status 0 when it gets through.
    Probe(ProbeArgs),
    /// Run a command inside an instance's namespace (or `internet`).
    Exec(ExecArgs),
    /// Restart the agent of one host (it resyncs; enforcement stays in place meanwhile).
    RestartAgent(RestartArgs),
    /// Read probes from stdin (`tcp 198.18.1.3 80 0` per line) and print `1` (through) or
    /// `0` (blocked) for each, from the current namespace. Used by `probe` and the tests.
    #[command(hide = true)]
    ProbeBatch {
        /// Milliseconds before a probe counts as blocked.
        #[arg(long, default_value_t = 700)]
        timeout_ms: u64,
        /// Instead: for each line as it arrives, probe again and again until one gets
        /// through, and print the microseconds that took (-1 after 10 s). The agent
        /// benchmark measures propagation with it.
        #[arg(long)]
        until_pass: bool,
    },
}

/// The lab's directory.
#[derive(Debug, clap::Args)]
pub(crate) struct DirArgs {
    /// Where the lab keeps `lab.json` and the agents' logs.
    #[arg(long, default_value = "./stockade-lab")]
    lab_dir: PathBuf,
}

/// `lab up` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Short name (letters and digits, at most 6): prefixes namespaces and interfaces.
    #[arg(long, default_value = "lab")]
    name: String,
    /// Number of hosts (joined by links to the first).
    #[arg(long, default_value_t = 2)]
    hosts: usize,
    /// Number of VPC instances, spread over the hosts.
    #[arg(long, default_value_t = 4)]
    instances: usize,
    /// Number of classic-network instances (intranet and internet interfaces).
    #[arg(long, default_value_t = 1)]
    classic: usize,
    /// Region of the lab's resources.
    #[arg(long, default_value = "cn-hangzhou")]
    region: String,
    /// File holding the server's agent token, when STOCKADE_AGENT_TOKEN is not set.
    #[arg(long, default_value = "./stockade-data/agent-token")]
    agent_token_file: PathBuf,
    /// File holding an operator's AccessKey pair (placement is the operator's), when
    /// STOCKADE_OPERATOR_ACCESS_KEY_ID and _SECRET are not set.
    #[arg(long, default_value = "./stockade-data/operator-key")]
    operator_key_file: PathBuf,
    /// Another tenant (repeatable): a file with its AccessKey pair, as `stockade account
    /// create` prints it. Each gets a VPC with the same CIDRs as the lab's and
    /// `--instances` instances of its own, on the same hosts at the same addresses.
    #[arg(long = "tenant", value_name = "FILE")]
    tenants: Vec<PathBuf>,
    /// Number of the lab's own VPC instances that also get a secondary network interface: a
    /// second device (`eth1`) in the instance's namespace, in a second vSwitch
    /// (198.18.2.0/24) and in a security group of its own (`lab-NAME-eni`, isolated until
    /// rules open it), attached with `AttachNetworkInterface` and placed on the instance's
    /// host.
    #[arg(long, default_value_t = 0)]
    secondary: usize,
    /// The lab's own VPC instances are made with outbound bandwidth, so each gets a public
    /// address, and the lab plugs a third device (`eth2`) into each on its internet side: a
    /// VPC instance's public address reaches it as ECS's gateway would carry it, judged by
    /// its VPC groups' rules.
    #[arg(long)]
    vpc_public: bool,
}

/// `lab probe` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Sender: an instance or network interface id, or `internet`.
    #[arg(long)]
    from: String,
    /// Receiver: an instance or network interface id, `internet`, or an address.
    #[arg(long)]
    to: String,
    /// tcp, udp or icmp.
    #[arg(long, default_value = "tcp")]
    protocol: String,
    /// Destination port (TCP/UDP).
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Source port (TCP/UDP; 0 = any).
    #[arg(long, default_value_t = 0)]
    source_port: u16,
    /// Send to the receiver's internet (public) address instead of its private one.
    #[arg(long)]
    internet: bool,
}

/// `lab exec` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// An instance or network interface id, or `internet`.
    member: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

/// `lab restart-agent` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct RestartArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// The host.
    #[arg(long)]
    host: String,
}

/// What a lab is made of (`lab.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Lab {
    name: String,
    endpoint: String,
    region_id: String,
    agent_token: String,
    vpc_id: String,
    v_switch_id: String,
    security_group_ids: Vec<String>,
    hosts: Vec<Host>,
    instances: Vec<Member>,
    internet_netns: String,
    /// The other tenants (`--tenant`); a member's `Tenant` indexes them from 1.
    tenants: Vec<Tenant>,
    /// The vSwitch of the secondary interfaces (`--secondary`), if any.
    #[serde(default)]
    secondary_v_switch_id: String,
    /// Their security group.
    #[serde(default)]
    secondary_security_group_id: String,
}

/// Another tenant's account and network (the file is the owner's only: it holds their key).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tenant {
    access_key_id: String,
    access_key_secret: String,
    vpc_id: String,
    v_switch_id: String,
    security_group_ids: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Host {
    host_id: String,
    netns: String,
    agent_pid: u32,
    /// Where its agent serves its Prometheus metrics (`--metrics-listen`, a free port).
    #[serde(default)]
    metrics_address: String,
    /// The host's own agent credential (`IssueAgentToken`): its agent reads this host's
    /// share and nothing else. The lab's fleet token is only for `lab status`.
    #[serde(default)]
    agent_token: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Member {
    instance_id: String,
    network_interface_id: String,
    host_id: String,
    netns: String,
    private_ip_address: String,
    public_ip_address: String,
    /// Its IPv6 address (VPC instances).
    #[serde(default)]
    ipv6_address: String,
    network: String,
    /// 0: the lab's own account; n: `Tenants[n - 1]`.
    #[serde(default)]
    tenant: usize,
    /// Its secondary network interface (`--secondary`), if it has one.
    #[serde(default)]
    secondary: Option<SecondaryInterface>,
}

/// A secondary network interface of a lab instance: its id and address (its device is
/// `eth1` in the instance's namespace).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecondaryInterface {
    network_interface_id: String,
    private_ip_address: String,
}

impl Lab {
    fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    fn load(dir: &Path) -> Result<Lab> {
        let path = Lab::path(dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no lab in {} (run `stockade lab up`)", dir.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    fn save(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600) // it holds the agent token
            .open(Lab::path(dir))?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    /// A member by its instance id or the id of one of its network interfaces.
    fn member(&self, id: &str) -> Result<&Member> {
        self.instances
            .iter()
            .find(|m| {
                m.instance_id == id
                    || m.network_interface_id == id
                    || m.secondary
                        .as_ref()
                        .is_some_and(|s| s.network_interface_id == id)
            })
            .with_context(|| format!("{id} is not an instance or interface of this lab"))
    }

    /// The private address `id` names: a secondary interface's own, else the member's.
    fn private_address(&self, id: &str) -> Result<String> {
        let m = self.member(id)?;
        Ok(match &m.secondary {
            Some(s) if s.network_interface_id == id => s.private_ip_address.clone(),
            _ => m.private_ip_address.clone(),
        })
    }

    /// The namespace of an instance or of `internet`.
    fn netns_of(&self, who: &str) -> Result<String> {
        if who == "internet" {
            Ok(self.internet_netns.clone())
        } else {
            Ok(self.member(who)?.netns.clone())
        }
    }
}

/// Runs a lab command.
pub(crate) fn lab(cmd: LabCommand) -> Result<()> {
    match cmd {
        LabCommand::Up(args) => up(&args),
        LabCommand::Down(args) => down(&args.lab_dir),
        LabCommand::Status(args) => status(&args.lab_dir),
        LabCommand::Probe(args) => {
            let lab = Lab::load(&args.dir.lab_dir)?;
            let to = match args.to.as_str() {
                "internet" => netns::INTERNET.to_string(),
                t if t.starts_with("i-") || t.starts_with("eni-") => {
                    let m = lab.member(t)?;
                    if args.internet {
                        if m.public_ip_address.is_empty() {
                            bail!("{t} has no internet address");
                        }
                        m.public_ip_address.clone()
                    } else {
                        lab.private_address(t)?
                    }
                }
                address => address.to_string(),
            };
            let mut line = format!("{} {to} {} {}", args.protocol, args.port, args.source_port);
            // From a secondary interface: sent from its address, so it leaves by its device.
            if args.from.starts_with("eni-") {
                let source = lab.private_address(&args.from)?;
                if source != lab.member(&args.from)?.private_ip_address {
                    line = format!("{line} {source}");
                }
            }
            let probe: Probe = line.parse().map_err(anyhow::Error::msg)?;
            let through = probe_from(&lab.netns_of(&args.from)?, &[probe], 700)?[0];
            println!("{}", if through { "pass" } else { "blocked" });
            if !through {
                std::process::exit(1);
            }
            Ok(())
        }
        LabCommand::Exec(args) => {
            let lab = Lab::load(&args.dir.lab_dir)?;
            let status = Command::new("ip")
                .args(["netns", "exec", &lab.netns_of(&args.member)?])
                .args(&args.command)
                .status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
        LabCommand::RestartAgent(args) => {
            let mut lab = Lab::load(&args.dir.lab_dir)?;
            let dir = args.dir.lab_dir.clone();
            let (endpoint, region) = (lab.endpoint.clone(), lab.region_id.clone());
            let host = lab
                .hosts
                .iter_mut()
                .find(|h| h.host_id == args.host)
                .with_context(|| format!("no host {} in this lab", args.host))?;
            stop_agent(host.agent_pid);
            (host.agent_pid, host.metrics_address) = start_agent(&dir, &endpoint, &region, host)?;
            println!(
                "agent of {} restarted (pid {})",
                host.host_id, host.agent_pid
            );
            lab.save(&dir)
        }
        LabCommand::ProbeBatch {
            timeout_ms,
            until_pass: true,
        } => {
            let mut out = std::io::stdout().lock();
            for line in std::io::stdin().lock().lines() {
                let probe: Probe = line?.parse().map_err(anyhow::Error::msg)?;
                let start = Instant::now();
                let mut took = -1i64;
                while start.elapsed() < Duration::from_secs(10) {
                    if probe::send(&probe, Duration::from_millis(timeout_ms)) {
                        took = start.elapsed().as_micros() as i64;
                        break;
                    }
                }
                writeln!(out, "{took}")?;
                out.flush()?;
            }
            Ok(())
        }
        LabCommand::ProbeBatch { timeout_ms, .. } => {
            let mut probes = Vec::new();
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                if !line.trim().is_empty() {
                    probes.push(line.parse::<Probe>().map_err(anyhow::Error::msg)?);
                }
            }
            let results = probe::send_all(&probes, Duration::from_millis(timeout_ms));
            let mut out = std::io::stdout().lock();
            for r in results {
                writeln!(out, "{}", u8::from(r))?;
            }
            Ok(())
        }
    }
}

/// Sends probes from inside `ns` (by running `lab probe-batch` there).
fn probe_from(ns: &str, probes: &[Probe], timeout_ms: u64) -> Result<Vec<bool>> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args([
            "lab",
            "probe-batch",
            "--timeout-ms",
            &timeout_ms.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let input: String = probes.iter().map(|p| format!("{p}\n")).collect();
    child
        .stdin
        .take()
        .context("probe stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim() == "1")
        .collect())
}

fn step(n: usize, of: usize, what: &str) {
    println!("[{n}/{of}] {what}");
}

fn up(args: &UpArgs) -> Result<()> {
    let name = &args.name;
    if name.is_empty() || name.len() > 6 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("--name must be 1 to 6 letters or digits (it prefixes interface names)");
    }
    if args.hosts == 0 || args.hosts > 9 || args.instances + args.classic == 0 {
        bail!("a lab has 1 to 9 hosts and at least one instance");
    }
    if args.instances + args.classic > 60 {
        bail!("at most 60 instances in a lab");
    }
    let dir = &args.dir.lab_dir;
    if Lab::path(dir).exists() {
        bail!(
            "a lab is already up in {} (run `stockade lab down` first)",
            dir.display()
        );
    }
    netns::ip(&["netns", "list"]).context("the lab needs root and iproute2")?;
    let api = Api::from_env()?;
    let operator = api.operator(&args.operator_key_file)?;
    let token = match std::env::var("STOCKADE_AGENT_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => std::fs::read_to_string(&args.agent_token_file)
            .with_context(|| {
                format!(
                    "set STOCKADE_AGENT_TOKEN or point --agent-token-file at the server's \
                     agent-token ({} not readable)",
                    args.agent_token_file.display()
                )
            })?
            .trim()
            .to_string(),
    };
    std::fs::create_dir_all(dir)?;
    let region = args.region.as_str();
    let mut lab = Lab {
        name: name.clone(),
        endpoint: api.endpoint.clone(),
        region_id: region.to_string(),
        agent_token: token,
        internet_netns: format!("sk-{name}-net"),
        ..Lab::default()
    };
    let steps = 5;
    step(
        1,
        steps,
        "creating the VPCs, vSwitches and security groups through the API",
    );
    // Tenant 0 is the lab's own account; the others bring their keys.
    let mut apis = vec![api.clone()];
    for file in &args.tenants {
        let tenant = api.with_key_file(file)?;
        let (id, secret) = tenant.key();
        lab.tenants.push(Tenant {
            access_key_id: id.to_string(),
            access_key_secret: secret.to_string(),
            ..Tenant::default()
        });
        apis.push(tenant);
    }
    lab.save(dir)?;
    let mut batches = Vec::new();
    for (t, api) in apis.iter().enumerate() {
        let (vpc_id, vsw_id) = create_network(api, region, &format!("lab-{name}-{t}"))?;
        let classic = if t == 0 { args.classic } else { 0 };
        let mut groups = Vec::new();
        for (network, count) in [("vpc", args.instances), ("classic", classic)] {
            if count == 0 {
                continue;
            }
            let sg = create_group(
                api,
                region,
                &format!("lab-{name}-{network}"),
                (network == "vpc").then_some(vpc_id.as_str()),
            )?;
            groups.push(sg.clone());
            batches.push((t, network, count, sg));
        }
        if t == 0 {
            (lab.vpc_id, lab.v_switch_id, lab.security_group_ids) = (vpc_id, vsw_id, groups);
        } else {
            let tenant = &mut lab.tenants[t - 1];
            (tenant.vpc_id, tenant.v_switch_id, tenant.security_group_ids) =
                (vpc_id, vsw_id, groups);
        }
        lab.save(dir)?;
    }
    step(2, steps, "creating the instances and placing them on hosts");
    for (t, network, count, sg) in &batches {
        let amount = count.to_string();
        let vswitch = match t {
            0 => lab.v_switch_id.clone(),
            t => lab.tenants[t - 1].v_switch_id.clone(),
        };
        let mut params = vec![
            ("Action", "RunInstances"),
            ("RegionId", region),
            ("ImageId", "stockade-lab"),
            ("InstanceType", "ecs.lab.small"),
            ("SecurityGroupId", sg.as_str()),
            ("Amount", amount.as_str()),
        ];
        let instance_name = format!("lab-{name}");
        params.push(("InstanceName", &instance_name));
        if *network == "vpc" {
            params.push(("VSwitchId", &vswitch));
            params.push(("Ipv6AddressCount", "1"));
            if args.vpc_public && *t == 0 {
                params.push(("InternetMaxBandwidthOut", "10"));
            }
        } else {
            params.push(("InternetMaxBandwidthOut", "10"));
        }
        let run = apis[*t].call(&params)?;
        // Each tenant's instances are spread over the hosts in the same order, so that
        // overlapping VPCs put equal addresses on the same host.
        let before = lab.instances.iter().filter(|m| m.tenant == *t).count();
        for (n, id) in (before..).zip(
            run["InstanceIdSets"]["InstanceIdSet"]
                .as_array()
                .into_iter()
                .flatten(),
        ) {
            let k = lab.instances.len();
            let id = text(id);
            lab.instances.push(Member {
                host_id: format!("h{}", n % args.hosts + 1),
                netns: format!("sk-{name}-{k}"),
                instance_id: id,
                network: network.to_string(),
                tenant: *t,
                ..Member::default()
            });
        }
        lab.save(dir)?;
    }
    for (t, api) in apis.iter().enumerate() {
        let ids: Vec<String> = lab
            .instances
            .iter()
            .filter(|m| m.tenant == t)
            .map(|m| m.instance_id.clone())
            .collect();
        let described = api.call(&[
            ("Action", "DescribeInstances"),
            ("RegionId", region),
            ("InstanceIds", &serde_json::to_string(&ids)?),
            ("PageSize", "100"),
        ])?;
        for i in described["Instances"]["Instance"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = text(&i["InstanceId"]);
            let first = |v: &Value| {
                v.as_array()
                    .and_then(|a| a.first())
                    .map(text)
                    .unwrap_or_default()
            };
            let private = match first(&i["VpcAttributes"]["PrivateIpAddress"]["IpAddress"]) {
                s if s.is_empty() => first(&i["InnerIpAddress"]["IpAddress"]),
                s => s,
            };
            let public = first(&i["PublicIpAddress"]["IpAddress"]);
            let primary = i["NetworkInterfaces"]["NetworkInterface"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["Type"] == "Primary");
            if let Some(m) = lab.instances.iter_mut().find(|m| m.instance_id == id) {
                m.private_ip_address = private;
                m.public_ip_address = public;
                m.network_interface_id = primary
                    .map(|n| text(&n["NetworkInterfaceId"]))
                    .unwrap_or_default();
                m.ipv6_address = primary
                    .map(|n| text(&n["Ipv6Sets"]["Ipv6Set"][0]["Ipv6Address"]))
                    .unwrap_or_default();
            }
        }
    }
    for m in &lab.instances {
        if m.network_interface_id.is_empty() {
            bail!("{} has no primary network interface", m.instance_id);
        }
        operator.call(&[
            ("Action", "PlaceNetworkInterface"),
            ("RegionId", region),
            ("NetworkInterfaceId", &m.network_interface_id),
            ("HostId", &m.host_id),
        ])?;
    }
    if args.secondary > 0 {
        add_secondary_interfaces(&api, &operator, &mut lab, args.secondary)?;
        lab.save(dir)?;
    }
    step(3, steps, "building host and instance namespaces");
    build_namespaces(&mut lab, args.hosts)?;
    lab.save(dir)?;
    step(
        4,
        steps,
        "starting one agent per host, each with its own credential",
    );
    let (endpoint, region) = (lab.endpoint.clone(), lab.region_id.clone());
    for n in 0..lab.hosts.len() {
        let issued = operator.call(&[
            ("Action", "IssueAgentToken"),
            ("HostId", &lab.hosts[n].host_id),
        ])?;
        lab.hosts[n].agent_token = text(&issued["AgentToken"]);
        (lab.hosts[n].agent_pid, lab.hosts[n].metrics_address) =
            start_agent(dir, &endpoint, &region, &lab.hosts[n])?;
        lab.save(dir)?;
    }
    step(
        5,
        steps,
        "waiting for every agent to enforce the current policy",
    );
    wait_for_agents(&lab, Duration::from_secs(30))?;
    println!();
    print_status(&lab)?;
    println!(
        "\nTry: stockade lab probe --lab-dir {} --from {} --to {} --port 80",
        dir.display(),
        lab.instances[0].instance_id,
        lab.instances.last().map_or("", |m| m.instance_id.as_str())
    );
    Ok(())
}

/// `--secondary`: a second vSwitch and group in the lab's VPC, and for each of the first `n`
/// of the lab's own VPC instances an interface there, attached and placed on its host.
fn add_secondary_interfaces(api: &Api, operator: &Api, lab: &mut Lab, n: usize) -> Result<()> {
    let region = lab.region_id.clone();
    let vsw = api.call(&[
        ("Action", "CreateVSwitch"),
        ("Version", server::VPC_VERSION),
        ("RegionId", &region),
        ("VpcId", &lab.vpc_id),
        ("ZoneId", &format!("{region}-b")),
        ("CidrBlock", SECONDARY_VSWITCH),
    ])?;
    lab.secondary_v_switch_id = text(&vsw["VSwitchId"]);
    lab.secondary_security_group_id = create_group(
        api,
        &region,
        &format!("lab-{}-eni", lab.name),
        Some(&lab.vpc_id),
    )?;
    let members = lab
        .instances
        .iter_mut()
        .filter(|m| m.tenant == 0 && m.network == "vpc")
        .take(n);
    for m in members {
        let made = api.call(&[
            ("Action", "CreateNetworkInterface"),
            ("RegionId", &region),
            ("VSwitchId", &lab.secondary_v_switch_id),
            ("SecurityGroupId", &lab.secondary_security_group_id),
            ("NetworkInterfaceName", &format!("{}-eth1", m.instance_id)),
        ])?;
        let eni = text(&made["NetworkInterfaceId"]);
        api.call(&[
            ("Action", "AttachNetworkInterface"),
            ("RegionId", &region),
            ("NetworkInterfaceId", &eni),
            ("InstanceId", &m.instance_id),
        ])?;
        operator.call(&[
            ("Action", "PlaceNetworkInterface"),
            ("RegionId", &region),
            ("NetworkInterfaceId", &eni),
            ("HostId", &m.host_id),
        ])?;
        m.secondary = Some(SecondaryInterface {
            network_interface_id: eni,
            private_ip_address: text(&made["PrivateIpAddress"]),
        });
    }
    Ok(())
}

/// The vSwitch of the lab's secondary interfaces.
const SECONDARY_VSWITCH: &str = "198.18.2.0/24";

/// A VPC (198.18.0.0/16, and an IPv6 /56) and its vSwitch (198.18.1.0/24 and the VPC's /64
/// number 1, zone `-b`): the same CIDRs for every tenant of the lab, as overlapping VPCs are
/// normal in ECS.
fn create_network(api: &Api, region: &str, name: &str) -> Result<(String, String)> {
    let vpc = api.call(&[
        ("Action", "CreateVpc"),
        ("Version", server::VPC_VERSION),
        ("RegionId", region),
        ("CidrBlock", "198.18.0.0/16"),
        ("VpcName", name),
        ("EnableIpv6", "true"),
    ])?;
    let vpc_id = text(&vpc["VpcId"]);
    let vsw = api.call(&[
        ("Action", "CreateVSwitch"),
        ("Version", server::VPC_VERSION),
        ("RegionId", region),
        ("VpcId", &vpc_id),
        ("ZoneId", &format!("{region}-b")),
        ("CidrBlock", "198.18.1.0/24"),
        ("Ipv6CidrBlock", "1"),
    ])?;
    Ok((vpc_id, text(&vsw["VSwitchId"])))
}

/// A group of the VPC (`None`: classic) whose members are isolated until rules open them.
fn create_group(api: &Api, region: &str, name: &str, vpc: Option<&str>) -> Result<String> {
    let mut params = vec![
        ("Action", "CreateSecurityGroup"),
        ("RegionId", region),
        ("SecurityGroupName", name),
        (
            "Description",
            "Stockade lab: members isolated until rules open them",
        ),
    ];
    if let Some(vpc) = vpc {
        params.push(("VpcId", vpc));
    }
    let sg = text(&api.call(&params)?["SecurityGroupId"]);
    // Isolated by default, so that what passes is what the user's rules open.
    api.call(&[
        ("Action", "ModifySecurityGroupPolicy"),
        ("RegionId", region),
        ("SecurityGroupId", &sg),
        ("InnerAccessPolicy", "Drop"),
    ])?;
    Ok(sg)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Hosts, links, the internet namespace, and every instance plugged into its host.
fn build_namespaces(lab: &mut Lab, hosts: usize) -> Result<()> {
    let name = lab.name.clone();
    for h in 1..=hosts {
        let ns = format!("sk-{name}-h{h}");
        netns::create_host(&ns)?;
        lab.hosts.push(Host {
            host_id: format!("h{h}"),
            netns: ns,
            agent_pid: 0,
            metrics_address: String::new(),
            agent_token: String::new(),
        });
    }
    let hub = lab.hosts[0].netns.clone();
    // next_hop[h]: where the hub sends traffic for host h's instances.
    let mut next_hop = vec![String::new(); 2];
    for (h, other) in lab
        .hosts
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, o)| (i + 1, o))
    {
        next_hop.push(netns::link_hosts(
            &hub,
            &other.netns,
            h as u8,
            (&format!("sk{name}L{h}"), &format!("sk{name}U{h}")),
        )?);
    }
    let internet = lab.internet_netns.clone();
    netns::create_endpoint(&internet)?;
    // The internet's device carries no interface label: it is the host's own uplink.
    netns::plug(
        &hub,
        &internet,
        (&format!("sk{name}net"), "eth0"),
        "",
        netns::INTERNET.parse()?,
        None,
        "default",
        None,
    )?;
    // Every other tenant's VPC: a routing table on each host, and an overlay (VXLAN, one
    // VNI per VPC) from the hub to each other host. The lab's own VPC keeps the hosts' main
    // tables and shared links, which also reach the internet and the classic network.
    let table_of = |tenant: usize| (tenant > 0).then(|| 1000 + tenant as u32);
    let mut overlay_hop = std::collections::BTreeMap::new();
    let mut tunnels = Vec::new();
    for t in 1..=lab.tenants.len() {
        let table = 1000 + t as u32;
        let label = lab.tenants[t - 1].vpc_id.clone();
        netns::vpc_table(&hub, table, None)?;
        for h in 2..=hosts {
            let devices = (format!("sk{name}X{t}{h}"), format!("sk{name}Y{t}{h}"));
            let ((hub_addr, other_addr), ends) = netns::overlay(
                &hub,
                &lab.hosts[h - 1].netns,
                (h as u8, t as u8),
                (&devices.0, &devices.1),
                100 + t as u32,
                (&label, table),
            )?;
            netns::vpc_table(
                &lab.hosts[h - 1].netns,
                table,
                Some((&devices.1, &hub_addr)),
            )?;
            overlay_hop.insert((t, h), (devices.0, other_addr));
            tunnels.extend(ends);
        }
    }
    for host in &lab.hosts {
        netns::overlay_filter(&host.netns, &tunnels)?;
    }
    for (k, m) in lab.instances.iter().enumerate() {
        let host = lab
            .hosts
            .iter()
            .find(|h| h.host_id == m.host_id)
            .context("host")?;
        netns::create_endpoint(&m.netns)?;
        let private = m
            .private_ip_address
            .parse()
            .with_context(|| format!("{} has no private address", m.instance_id))?;
        let eni: model::NetworkInterfaceId = m.network_interface_id.parse()?;
        netns::plug(
            &host.netns,
            &m.netns,
            (&format!("sk{name}{k}i"), "eth0"),
            &agent::interfaces::label(&eni, model::NicType::Intranet),
            private,
            m.ipv6_address.parse().ok(),
            "default",
            table_of(m.tenant),
        )?;
        let public = m.public_ip_address.parse().ok();
        if let Some(public) = public {
            // Internet traffic (the 198.19.0.0/16 side of the lab) leaves by the internet
            // interface with the public address.
            // `eth1` of a VPC instance is its secondary interface's (`--secondary`).
            let device = if m.network == "vpc" { "eth2" } else { "eth1" };
            netns::plug(
                &host.netns,
                &m.netns,
                (&format!("sk{name}{k}p"), device),
                &agent::interfaces::label(&eni, model::NicType::Internet),
                public,
                None,
                "198.19.0.0/16",
                None,
            )?;
        }
        let secondary: Option<std::net::Ipv4Addr> = match &m.secondary {
            Some(s) => {
                let addr = s.private_ip_address.parse()?;
                let eni: model::NetworkInterfaceId = s.network_interface_id.parse()?;
                // `eth1`, on-link to its vSwitch; what it sends from its own address leaves by
                // it (the endpoint's source routing).
                netns::plug(
                    &host.netns,
                    &m.netns,
                    (&format!("sk{name}{k}s"), "eth1"),
                    &agent::interfaces::label(&eni, model::NicType::Intranet),
                    addr,
                    None,
                    SECONDARY_VSWITCH,
                    table_of(m.tenant),
                )?;
                Some(addr)
            }
            None => None,
        };
        let h: usize = m.host_id[1..].parse()?;
        let v6: Option<std::net::IpAddr> = m.ipv6_address.parse().ok();
        match (h, overlay_hop.get(&(m.tenant, h))) {
            (1, _) => {}
            (_, Some((dev, hop))) => {
                for addr in std::iter::once(private.into()).chain(v6) {
                    netns::route_via(&hub, addr, (hop, dev), table_of(m.tenant))?;
                }
            }
            (_, None) => {
                let link = format!("sk{name}L{h}");
                let addresses = std::iter::once(private.into())
                    .chain(public.map(Into::into))
                    .chain(secondary.map(Into::into))
                    .chain(v6);
                for addr in addresses {
                    netns::route_via(&hub, addr, (&next_hop[h], &link), None)?;
                }
            }
        }
    }
    Ok(())
}

/// Starts a host's agent, its metrics on a free local port; its pid and that address.
fn start_agent(dir: &Path, endpoint: &str, region: &str, host: &Host) -> Result<(u32, String)> {
    let path = dir.join(format!("agent-{}.log", host.host_id));
    let log = std::fs::File::create(&path)?;
    let child = Command::new(std::env::current_exe()?)
        .args(["agent", "--server", endpoint, "--host-id", &host.host_id])
        .args(["--region", region, "--netns", &host.netns])
        .args(["--metrics-listen", "127.0.0.1:0", "--hit-report-ms", "1000"])
        .env("STOCKADE_AGENT_TOKEN", &host.agent_token)
        .env_remove("STOCKADE_AGENT_METRICS_LISTEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the agent")?;
    // The agent prints the port it took before anything else.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(at) = text.lines().find_map(|l| l.strip_prefix("metrics on ")) {
            return Ok((child.id(), at.to_string()));
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the agent of {} did not start: see {}",
                host.host_id,
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop_agent(pid: u32) {
    if pid != 0 && Path::new(&format!("/proc/{pid}")).exists() {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        for _ in 0..50 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn feed(lab: &Lab) -> agent::feed::FeedClient {
    agent::feed::FeedClient::new(
        &lab.endpoint,
        &lab.agent_token,
        "lab-status",
        Some(lab.region_id.clone()),
    )
}

/// The store's revision and every host's last report, by host id.
fn reports(lab: &Lab) -> Result<(u64, Value)> {
    let f = feed(lab);
    let revision = f.poll(None, Duration::from_secs(1))?.revision;
    let hosts = f.hosts()?;
    Ok((revision, hosts))
}

fn host_report<'a>(hosts: &'a Value, id: &str) -> Option<&'a Value> {
    hosts["Hosts"]
        .as_array()?
        .iter()
        .find(|h| h["HostId"] == id)
        .map(|h| &h["Report"])
}

fn wait_for_agents(lab: &Lab, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let (revision, hosts) = reports(lab)?;
        let behind: Vec<&str> = lab
            .hosts
            .iter()
            .filter(|h| {
                host_report(&hosts, &h.host_id)
                    .and_then(|r| r["Revision"].as_u64())
                    .is_none_or(|r| r < revision)
            })
            .map(|h| h.host_id.as_str())
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!(
                "agents of {} did not apply revision {revision} in {limit:?}; see the agent \
                 logs in the lab directory",
                behind.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(dir: &Path) -> Result<()> {
    print_status(&Lab::load(dir)?)
}

fn print_status(lab: &Lab) -> Result<()> {
    let (revision, hosts) = reports(lab)?;
    println!(
        "lab {} on {} (store revision {revision})",
        lab.name, lab.endpoint
    );
    println!(
        "{:<6} {:<24} {:<9} {:<9} {:<22} error",
        "HOST", "NETNS", "AGENT", "REVISION", "METRICS"
    );
    for h in &lab.hosts {
        let alive = Path::new(&format!("/proc/{}", h.agent_pid)).exists();
        let report = host_report(&hosts, &h.host_id);
        let applied = report
            .and_then(|r| r["Revision"].as_u64())
            .map_or("-".to_string(), |r| r.to_string());
        let error = report.and_then(|r| r["Error"].as_str()).unwrap_or_default();
        println!(
            "{:<6} {:<24} {:<9} {:<9} {:<22} {error}",
            h.host_id,
            h.netns,
            if alive {
                format!("pid {}", h.agent_pid)
            } else {
                "stopped".into()
            },
            applied,
            h.metrics_address
        );
    }
    println!(
        "\n{:<24} {:<26} {:<5} {:<8} {:<15} {:<15} devices",
        "INSTANCE", "NETWORK INTERFACE", "HOST", "NETWORK", "PRIVATE IP", "PUBLIC IP"
    );
    // Each interface's groups, in order, as its host's agent receives them.
    let mut groups: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for h in &lab.hosts {
        let feed = agent::feed::FeedClient::new(
            &lab.endpoint,
            &lab.agent_token,
            &h.host_id,
            Some(lab.region_id.clone()),
        );
        if let Ok(share) = feed.poll(None, Duration::from_secs(1)) {
            for i in &share.snapshot.instances {
                let list: Vec<String> = i.security_groups.iter().map(ToString::to_string).collect();
                groups.insert(i.id.to_string(), list.join(","));
            }
        }
    }
    for m in &lab.instances {
        let interfaces = host_report(&hosts, &m.host_id)
            .and_then(|r| r["Instances"].as_array())
            .and_then(|list| {
                list.iter()
                    .find(|i| i["InstanceId"] == m.instance_id.as_str())
            })
            .map(|i| {
                let mut s: Vec<String> = i["Interfaces"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| format!("{}={}", text(&a["NicType"]), text(&a["Interface"])))
                    .collect();
                if let Some(why) = i["FailedClosed"].as_str().filter(|w| !w.is_empty()) {
                    s.push(format!("FAILED CLOSED: {why}"));
                }
                s.join(" ")
            })
            .unwrap_or_default();
        let network = match (m.tenant, m.network.as_str()) {
            (0, n) => n.to_string(),
            (t, n) => format!("{n}/t{t}"),
        };
        println!(
            "{:<24} {:<26} {:<5} {:<8} {:<15} {:<15} {interfaces}  groups: {}",
            m.instance_id,
            m.network_interface_id,
            m.host_id,
            network,
            m.private_ip_address,
            m.public_ip_address,
            groups.get(&m.instance_id).map_or("?", String::as_str)
        );
        if !m.ipv6_address.is_empty() {
            println!("{:<24} IPv6 {}", "", m.ipv6_address);
        }
        if let Some(sec) = &m.secondary {
            println!(
                "{:<24} {:<26} {:<5} {:<8} {:<15} {:<15} eth1  groups: {}",
                "  (secondary)",
                sec.network_interface_id,
                m.host_id,
                "vpc",
                sec.private_ip_address,
                "",
                groups
                    .get(&sec.network_interface_id)
                    .map_or("?", String::as_str)
            );
        }
    }
    for h in &lab.hosts {
        let unattributed = host_report(&hosts, &h.host_id)
            .and_then(|r| r["Unattributed"].as_array())
            .into_iter()
            .flatten();
        for u in unattributed {
            println!(
                "{}: device {} FAILED CLOSED: {}",
                h.host_id,
                text(&u["Interface"]),
                text(&u["Why"])
            );
        }
    }
    println!(
        "\ninternet client: {} in {}",
        netns::INTERNET,
        lab.internet_netns
    );
    Ok(())
}

fn down(dir: &Path) -> Result<()> {
    let lab = Lab::load(dir)?;
    println!("[1/3] stopping agents");
    for h in &lab.hosts {
        stop_agent(h.agent_pid);
    }
    println!("[2/3] deleting namespaces");
    let mut namespaces: Vec<&str> = lab.instances.iter().map(|m| m.netns.as_str()).collect();
    namespaces.push(&lab.internet_netns);
    namespaces.extend(lab.hosts.iter().map(|h| h.netns.as_str()));
    for ns in namespaces {
        if let Err(e) = netns::delete(ns) {
            eprintln!("  {ns}: {e}");
        }
    }
    println!("[3/3] deleting the lab's instances, groups, vSwitch and VPC");
    match Api::from_env() {
        Ok(api) => {
            delete_resources(&api, &lab, 0);
            for (t, tenant) in lab.tenants.iter().enumerate() {
                let api = api.with_key(
                    tenant.access_key_id.clone(),
                    tenant.access_key_secret.clone(),
                );
                delete_resources(&api, &lab, t + 1);
            }
        }
        Err(e) => eprintln!("  skipped ({e}); the API resources remain"),
    }
    std::fs::remove_file(Lab::path(dir))?;
    println!("lab {} is down", lab.name);
    Ok(())
}

/// Deletes the instances, groups, vSwitch and VPC of one tenant of the lab.
fn delete_resources(api: &Api, lab: &Lab, tenant: usize) {
    let region = lab.region_id.as_str();
    let report = |what: &str, r: Result<Value>| {
        if let Err(e) = r {
            eprintln!("  {what}: {e:#}");
        }
    };
    for m in lab.instances.iter().filter(|m| m.tenant == tenant) {
        report(
            &m.instance_id,
            api.call(&[
                ("Action", "DeleteInstance"),
                ("InstanceId", &m.instance_id),
                ("Force", "true"),
            ]),
        );
    }
    // Deleting an instance only detaches an interface attached after its creation.
    for s in lab
        .instances
        .iter()
        .filter(|m| m.tenant == tenant)
        .filter_map(|m| m.secondary.as_ref())
    {
        report(
            &s.network_interface_id,
            api.call(&[
                ("Action", "DeleteNetworkInterface"),
                ("RegionId", region),
                ("NetworkInterfaceId", &s.network_interface_id),
            ]),
        );
    }
    let secondary_group = (tenant == 0 && !lab.secondary_security_group_id.is_empty())
        .then_some(&lab.secondary_security_group_id);
    let secondary_vswitch = (tenant == 0).then_some(&lab.secondary_v_switch_id);
    let (groups, vswitch, vpc) = match tenant {
        0 => (&lab.security_group_ids, &lab.v_switch_id, &lab.vpc_id),
        t => {
            let t = &lab.tenants[t - 1];
            (&t.security_group_ids, &t.v_switch_id, &t.vpc_id)
        }
    };
    for sg in groups.iter().chain(secondary_group) {
        report(
            sg,
            api.call(&[
                ("Action", "DeleteSecurityGroup"),
                ("RegionId", region),
                ("SecurityGroupId", sg),
            ]),
        );
    }
    let empty = String::new();
    for (action, key, id) in [
        (
            "DeleteVSwitch",
            "VSwitchId",
            secondary_vswitch.unwrap_or(&empty),
        ),
        ("DeleteVSwitch", "VSwitchId", vswitch),
        ("DeleteVpc", "VpcId", vpc),
    ] {
        if !id.is_empty() {
            report(
                id,
                api.call(&[
                    ("Action", action),
                    ("Version", server::VPC_VERSION),
                    ("RegionId", region),
                    (key, id),
                ]),
            );
        }
    }
}
