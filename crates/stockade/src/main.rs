//! The `stockade` binary: one executable that serves the ECS API, enforces rules on hosts and
//! answers questions about policies.

mod client;
mod lab;
mod reach;
mod serve;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use model::{EcsError as _, FlowPorts, ModelError, NicType, Peer, Permission};
use policy::{
    DecidedBy, Endpoint, Engine, Evaluator, Flow, FlowVerdict, IpFamily, Reference, State,
};

/// ECS-style security groups you can run yourself.
#[derive(Debug, Parser)]
#[command(name = "stockade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the ECS-compatible API server.
    Serve(serve::ServeArgs),
    /// Manage accounts in the store (works with or without a running server).
    #[command(subcommand)]
    Account(serve::AccountCommand),
    /// Audit a policy against the security-group best practices (seed document, Cloud
    /// Config), judging rules after shadowing. Exits 1 when a finding reaches `--fail-on`.
    Audit(AuditArgs),
    /// List every inbound flow an instance accepts: protocol, ports and source blocks, with
    /// the rule that accepts them, computed by the engine.
    Exposure(ExposureArgs),
    /// The fleet reachability matrix: which instances can open which services on which
    /// others, as JSON, Graphviz DOT or an HTML page.
    Reach(ReachArgs),
    /// Ask a running server which flows a change would allow or deny, without applying it
    /// (`PreviewSecurityGroupChange`; credentials from ALIBABA_CLOUD_ACCESS_KEY_ID /
    /// ALIBABA_CLOUD_ACCESS_KEY_SECRET, endpoint from STOCKADE_ENDPOINT).
    Preview(PreviewArgs),
    /// Enforce the security groups of the instances placed on this host with nftables,
    /// following the server's feed (token from STOCKADE_AGENT_TOKEN or --token-file).
    Agent(AgentArgs),
    /// A small cloud on this machine: hosts and instances as network namespaces, real
    /// agents, real packets (needs root).
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Explain what the policy does with one flow: the verdict, and the rule or default that
    /// decided at the source (egress) and at the destination (ingress).
    Explain(ExplainArgs),
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// The API server.
    #[arg(
        long,
        env = "STOCKADE_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// This host's name: it enforces the instances tagged `stockade:host=NAME`.
    #[arg(long)]
    host_id: String,
    /// Region (the server's default when omitted).
    #[arg(long)]
    region: Option<String>,
    /// File holding the agent token (when STOCKADE_AGENT_TOKEN is not set).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Program the nftables of this network namespace instead of the agent's own (lab
    /// mode: the agent stays where the server is reachable).
    #[arg(long)]
    netns: Option<String>,
    /// Milliseconds between drift checks and interface lookups.
    #[arg(long, default_value_t = 1000)]
    reconcile_ms: u64,
    /// Leave established connections alone when a change no longer allows them (by
    /// default they are ended).
    #[arg(long)]
    keep_established: bool,
    /// How policy chains are written: `linear` (one statement per rule; cheap to program)
    /// or `flat` (a tree of map lookups per chain: a new flow's cost does not grow with the
    /// rules, but many-chain hosts take far longer to program).
    #[arg(
        long,
        value_enum,
        env = "STOCKADE_AGENT_RENDERING",
        default_value_t = RenderingArg::Linear
    )]
    rendering: RenderingArg,
    /// Serve the agent's Prometheus metrics (`GET /metrics`) on this address, e.g.
    /// `127.0.0.1:9465`; off when absent. Port 0 picks one and prints it.
    #[arg(long, value_name = "ADDR", env = "STOCKADE_AGENT_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Milliseconds between reads of the rule hit counters (a read that found hits is
    /// reported to the server).
    #[arg(long, default_value_t = 10_000)]
    hit_report_ms: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RenderingArg {
    Linear,
    Flat,
}

#[derive(Debug, clap::Args)]
struct ExplainArgs {
    /// Policy snapshot file (JSON; see docs/reference.md, "Policy files").
    #[arg(long, value_name = "FILE.json")]
    policy: PathBuf,
    /// Source: an instance id (`i-...`), a secondary interface id (`eni-...`, an entry of
    /// the policy's Instances with NetworkInterfaceId) or an IP address.
    #[arg(long, value_name = "INSTANCE|ENI|IP")]
    from: String,
    /// Destination: an instance id, a secondary interface id or an IP address.
    #[arg(long, value_name = "INSTANCE|ENI|IP")]
    to: String,
    /// Protocol: tcp, udp, icmp, icmpv6, gre, or an IANA number.
    #[arg(long, default_value = "tcp")]
    proto: String,
    /// Destination port (TCP and UDP).
    #[arg(long)]
    port: Option<u16>,
    /// Source port (TCP and UDP).
    #[arg(long, default_value_t = 49152)]
    source_port: u16,
    /// Interface of classic-network instances: intranet or internet.
    #[arg(long, default_value = "intranet")]
    nic_type: String,
    /// Ask over IPv6 between two instances (inferred from addresses and ICMPv6 otherwise).
    #[arg(long)]
    ipv6: bool,
    /// Which evaluator answers (they agree; `reference` is the slow, obvious one).
    #[arg(long, value_enum, default_value_t = EvaluatorKind::Compiled)]
    evaluator: EvaluatorKind,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct AuditArgs {
    /// Policy snapshot file (JSON; see docs/reference.md, "Policy files").
    #[arg(long, value_name = "FILE.json")]
    policy: PathBuf,
    /// Ports that must not be open to the internet.
    #[arg(long, value_delimiter = ',', default_value = "22,3389,3306,6379")]
    risky_ports: Vec<u16>,
    /// Exit with status 1 when a finding of this severity or higher exists.
    #[arg(long, value_name = "low|medium|high")]
    fail_on: Option<policy::audit::Severity>,
    /// A leave being planned (repeatable): reported if the plan takes an instance out of
    /// every group.
    #[arg(long, value_name = "INSTANCE:GROUP")]
    planned_leave: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct ExposureArgs {
    /// Policy snapshot file (JSON; see docs/reference.md, "Policy files").
    #[arg(long, value_name = "FILE.json")]
    policy: PathBuf,
    /// The instance.
    #[arg(
        long,
        value_name = "i-...",
        required_unless_present = "internet",
        conflicts_with = "internet"
    )]
    instance: Option<String>,
    /// Instead of one instance, list every instance reachable from the internet, with the
    /// services and the internet blocks that reach it.
    #[arg(long)]
    internet: bool,
    /// Interface of a classic-network instance: intranet or internet.
    #[arg(long, default_value = "intranet")]
    nic_type: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct ReachArgs {
    /// Policy snapshot file (JSON; see docs/reference.md, "Policy files").
    #[arg(long, value_name = "FILE.json")]
    policy: PathBuf,
    /// Services to probe (`tcp:PORT`, `udp:PORT`, `icmp`, `gre`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tcp:22,tcp:3389,tcp:80,tcp:443,tcp:3306,tcp:5432,tcp:6379,icmp"
    )]
    services: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReachFormat::Html)]
    format: ReachFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReachFormat {
    Json,
    Dot,
    Html,
}

#[derive(Debug, clap::Args)]
struct PreviewArgs {
    /// The command to preview: AuthorizeSecurityGroup, RevokeSecurityGroup,
    /// JoinSecurityGroup, LeaveSecurityGroup, ModifySecurityGroupPolicy, ... (their Egress
    /// variants too).
    #[arg(long)]
    action: String,
    /// The command's parameters, as the API names them (repeatable): `--param
    /// SecurityGroupId=sg-... --param Permissions.1.PortRange=22/22`.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Region.
    #[arg(long, default_value = "cn-hangzhou")]
    region: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EvaluatorKind {
    Compiled,
    Reference,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    // `stockade exposure ... | head` closes the pipe early: end quietly, as Unix tools do,
    // instead of panicking in `println!`.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Account(cmd) => serve::account(cmd),
        Command::Explain(args) => explain(&args),
        Command::Exposure(args) => exposure(&args),
        Command::Reach(args) => reach_command(&args),
        Command::Preview(args) => preview(&args),
        Command::Agent(args) => run_agent(args),
        Command::Lab(cmd) => lab::lab(cmd),
        Command::Audit(args) => match audit(&args) {
            Ok(true) => return ExitCode::from(1),
            other => other.map(|_| ()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockade: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn endpoint(s: &str) -> Result<Endpoint> {
    // An instance, or a secondary interface (judged by its own groups at its address).
    if s.starts_with("i-") || s.starts_with("eni-") {
        return Ok(Endpoint::Instance(s.parse().map_err(
            |e: model::ModelError| anyhow::anyhow!("{}: {e}", e.code()),
        )?));
    }
    Ok(Endpoint::Address(s.parse::<IpAddr>().with_context(
        || format!("{s} is neither an instance or interface id nor an IP address"),
    )?))
}

fn explain(args: &ExplainArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("cannot read {}", args.policy.display()))?;
    let snapshot =
        policy::document::parse(&text).with_context(|| format!("{}", args.policy.display()))?;
    let (source, destination) = (endpoint(&args.from)?, endpoint(&args.to)?);
    let l4 =
        FlowPorts::parse(&args.proto, args.port, Some(args.source_port)).map_err(|e| match e {
            ModelError::Missing(_) => anyhow::anyhow!("--port is needed for {}", args.proto),
            e => anyhow::anyhow!("{}: {e}", e.code()),
        })?;
    let nic_type: NicType = args
        .nic_type
        .parse()
        .map_err(|e: model::ModelError| anyhow::anyhow!("{e}"))?;
    let mut flow = Flow::between(source, destination, l4, nic_type);
    if args.ipv6 {
        flow.family = IpFamily::V6;
    }
    let (verdict, state) = match args.evaluator {
        EvaluatorKind::Compiled => {
            let e = Engine::new(&snapshot).map_err(policy_error)?;
            (e.verdict(&flow).map_err(policy_error)?, e.state().clone())
        }
        EvaluatorKind::Reference => {
            let e = Reference::new(&snapshot).map_err(policy_error)?;
            (e.verdict(&flow).map_err(policy_error)?, e.state().clone())
        }
    };
    match args.format {
        Format::Text => print!("{}", render_text(&verdict, &state)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&server::flow_verdict_json(&verdict))?
        ),
    }
    Ok(())
}

fn exposure(args: &ExposureArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("cannot read {}", args.policy.display()))?;
    let snapshot =
        policy::document::parse(&text).with_context(|| format!("{}", args.policy.display()))?;
    let engine = Engine::new(&snapshot).map_err(policy_error)?;
    if args.internet {
        return internet_exposure(&engine, args.format);
    }
    let instance = args.instance.as_deref().unwrap_or_default();
    let id: model::MemberId = instance
        .parse()
        .map_err(|e: model::ModelError| anyhow::anyhow!("{}: {e}", e.code()))?;
    let nic: NicType = args
        .nic_type
        .parse()
        .map_err(|e: model::ModelError| anyhow::anyhow!("{e}"))?;
    let exposed = policy::exposure::exposure(&engine, &id, nic).map_err(policy_error)?;
    // A policy file is its reader's own: every instance in it may be named.
    let json = server::exposure_json(&id, &exposed, &engine, |_| true).map_err(policy_error)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json)?),
        Format::Text if exposed.is_empty() => println!("{id} accepts no inbound flow"),
        Format::Text => {
            println!("{id} accepts:");
            for e in json["Exposures"]["Exposure"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let sources: Vec<&str> = e["SourceCidrIps"]["SourceCidrIp"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str())
                    .collect();
                let by = match e["SecurityGroupRuleId"].as_str() {
                    Some(r) if !r.is_empty() => format!(
                        "rule {r} of {}",
                        e["SecurityGroupId"].as_str().unwrap_or("")
                    ),
                    _ => format!(
                        "{} of {}",
                        e["DecidedBy"].as_str().unwrap_or(""),
                        e["SecurityGroupId"].as_str().unwrap_or("")
                    ),
                };
                println!(
                    "  {:<6} {:<13} from {} ({by})",
                    e["IpProtocol"].as_str().unwrap_or(""),
                    e["PortRange"].as_str().unwrap_or(""),
                    sources.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn reach_command(args: &ReachArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("cannot read {}", args.policy.display()))?;
    let snapshot =
        policy::document::parse(&text).with_context(|| format!("{}", args.policy.display()))?;
    let services = args
        .services
        .iter()
        .map(|s| {
            policy::reach::Service::parse(s)
                .with_context(|| format!("bad service {s}: use tcp:PORT, udp:PORT, icmp or gre"))
        })
        .collect::<Result<Vec<_>>>()?;
    let engine = Engine::new(&snapshot).map_err(policy_error)?;
    let matrix = policy::reach::reach(&engine, &services).map_err(policy_error)?;
    let rendered = match args.format {
        ReachFormat::Json => serde_json::to_string_pretty(&reach::json(&matrix))? + "\n",
        ReachFormat::Dot => reach::dot(&matrix),
        ReachFormat::Html => reach::html(&matrix),
    };
    match &args.output {
        Some(path) => std::fs::write(path, rendered)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{rendered}"),
    }
    Ok(())
}

/// Logs of the long-running commands (`serve`, `agent`) to stderr, filtered by
/// `STOCKADE_LOG` (default `info`), coloured only on a terminal.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STOCKADE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run_agent(args: AgentArgs) -> Result<()> {
    init_logging();
    let token = match (std::env::var("STOCKADE_AGENT_TOKEN"), &args.token_file) {
        (Ok(t), _) if !t.is_empty() => t,
        (_, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .trim()
            .to_string(),
        _ => bail!("set STOCKADE_AGENT_TOKEN or --token-file"),
    };
    let metrics = std::sync::Arc::new(agent::Metrics::default());
    if let Some(addr) = args.metrics_listen {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        println!("metrics on {}", listener.local_addr()?);
        let metrics = metrics.clone();
        std::thread::spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime.block_on(serve::metrics(listener, move || metrics.encode()))
                });
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    agent::run(
        agent::AgentConfig {
            server: args.server,
            token,
            host_id: args.host_id,
            region: args.region,
            reconcile: std::time::Duration::from_millis(args.reconcile_ms.max(50)),
            cut_connections: !args.keep_established,
            netns: args.netns,
            hit_interval: std::time::Duration::from_millis(args.hit_report_ms.max(100)),
            rendering: match args.rendering {
                RenderingArg::Flat => agent::Rendering::Flat,
                RenderingArg::Linear => agent::Rendering::Linear,
            },
        },
        metrics,
    )?;
    Ok(())
}

fn preview(args: &PreviewArgs) -> Result<()> {
    let api = client::Api::from_env()?;
    let mut params = vec![
        ("Action", "PreviewSecurityGroupChange"),
        ("ChangeAction", args.action.as_str()),
        ("RegionId", args.region.as_str()),
    ];
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--param {p}: expected NAME=VALUE"))?;
        params.push((k, v));
    }
    let v = api.call(&params)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Format::Text => {
            let changes = v["Changes"]["Change"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if changes.is_empty() {
                println!("no flow changes verdict");
            }
            for c in changes {
                let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                let list = |a: &serde_json::Value| {
                    a.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let towards = if s("Direction") == "Ingress" {
                    "from"
                } else {
                    "to"
                };
                let instances = list(&c["PeerInstances"]["InstanceId"]);
                println!(
                    "{} {:<8} {:<7} {} {} {towards} {}{}",
                    s("InstanceId"),
                    s("Direction"),
                    s("Effect"),
                    s("IpProtocol"),
                    s("PortRange"),
                    list(&c["PeerCidrIps"]["PeerCidrIp"]),
                    if instances.is_empty() {
                        String::new()
                    } else {
                        format!(" ({instances})")
                    }
                );
            }
        }
    }
    Ok(())
}

/// Every instance reachable from the internet: VPC instances through the exposure of their
/// (only) interface, classic instances through their internet interface.
fn internet_exposure(engine: &Engine, format: Format) -> Result<()> {
    let state = engine.state();
    let mut rows: Vec<(Vec<String>, policy::exposure::Exposed, Vec<ipnet::IpNet>)> = Vec::new();
    let mut add = |instances: Vec<String>, exposed: Vec<policy::exposure::Exposed>| {
        for e in exposed {
            let public = policy::exposure::internet_part(&e.sources);
            if !public.is_empty() {
                rows.push((instances.clone(), e, public));
            }
        }
    };
    for (instances, exposed) in
        policy::exposure::fleet_exposure(engine, NicType::Intranet).map_err(policy_error)?
    {
        // A VPC instance is reachable from the internet only by a public address (its VPC
        // gateway carries it to the instance); without one, internet sources in its rules
        // reach nothing.
        let vpc: Vec<String> = instances
            .iter()
            .filter(|i| {
                state
                    .instance(i)
                    .is_ok_and(|i| i.vpc_id.is_some() && i.public_ip.is_some())
            })
            .map(ToString::to_string)
            .collect();
        if !vpc.is_empty() {
            add(vpc, exposed);
        }
    }
    for i in state
        .instances()
        .filter(|i| i.vpc_id.is_none() && i.public_ip.is_some())
    {
        add(
            vec![i.id.to_string()],
            policy::exposure::exposure(engine, &i.id, NicType::Internet).map_err(policy_error)?,
        );
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    // Only what a rule can name, as the API's exposure answers (no `OTHER`, no port 0 alone).
    rows.retain(|(_, e, _)| e.protocol.rule_port_range(e.ports).is_some());
    let protocol = |e: &policy::exposure::Exposed| e.protocol.as_wire();
    let ports =
        |e: &policy::exposure::Exposed| e.protocol.rule_port_range(e.ports).unwrap_or_default();
    match format {
        Format::Json => {
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|(instances, e, public)| {
                    serde_json::json!({
                        "InstanceIds": instances,
                        "IpProtocol": protocol(e),
                        "PortRange": ports(e),
                        "InternetSourceCidrIps": public.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "DecidedBy": e.decided_by.as_wire(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"Exposed": items}))?
            );
        }
        Format::Text if rows.is_empty() => println!("no instance is reachable from the internet"),
        Format::Text => {
            for (instances, e, public) in &rows {
                let from = if e.sources.iter().any(|n| n.prefix_len() == 0) {
                    "anywhere (0.0.0.0/0)".to_string()
                } else {
                    let shown: Vec<String> =
                        public.iter().take(3).map(ToString::to_string).collect();
                    let more = if public.len() > 3 {
                        format!(" and {} more blocks", public.len() - 3)
                    } else {
                        String::new()
                    };
                    format!("{}{more}", shown.join(", "))
                };
                println!(
                    "{}  {} {} from {from}",
                    instances.join(", "),
                    protocol(e),
                    ports(e)
                );
            }
        }
    }
    Ok(())
}

/// Runs the audit; `Ok(true)` when a finding reaches `--fail-on`.
fn audit(args: &AuditArgs) -> Result<bool> {
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("cannot read {}", args.policy.display()))?;
    let (snapshot, labels) = policy::document::parse_with_labels(&text)
        .with_context(|| format!("{}", args.policy.display()))?;
    let state = State::from_snapshot(&snapshot).map_err(policy_error)?;
    let planned_leaves = args
        .planned_leave
        .iter()
        .map(|p| {
            let (i, g) = p
                .split_once(':')
                .with_context(|| format!("--planned-leave {p}: expected INSTANCE:GROUP"))?;
            let bad =
                |e: model::ModelError| anyhow::anyhow!("--planned-leave {p}: {}: {e}", e.code());
            Ok((i.parse().map_err(bad)?, g.parse().map_err(bad)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let config = policy::audit::AuditConfig {
        risky_ports: args.risky_ports.clone(),
        labels,
        planned_leaves,
        ..Default::default()
    };
    let findings = policy::audit::audit(&state, &config);
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&server::audit_json(&findings))?
        ),
        Format::Text if findings.is_empty() => println!("no findings"),
        Format::Text => {
            println!(
                "{:<8} {:<30} {:<24} {:<26} MESSAGE / FIX",
                "SEVERITY", "CHECK", "GROUP", "RULE"
            );
            for f in &findings {
                let rule = f.rule.as_ref().map_or("-".to_string(), ToString::to_string);
                println!(
                    "{:<8} {:<30} {:<24} {:<26} {}",
                    f.severity.as_str(),
                    f.check,
                    f.group,
                    rule,
                    f.message
                );
                println!("{:<91} fix: {}", "", f.fix);
            }
        }
    }
    Ok(args
        .fail_on
        .is_some_and(|level| findings.iter().any(|f| f.severity >= level)))
}

fn policy_error(e: policy::PolicyError) -> anyhow::Error {
    anyhow::anyhow!("{}: {e}", e.code())
}

/// One line describing a rule, in ECS terms.
fn describe_rule(p: &Permission) -> String {
    let peer = match &p.peer {
        Peer::Cidr(net) => net.to_string(),
        Peer::Group(g) => g.id.to_string(),
        Peer::PrefixList(l) => l.to_string(),
    };
    let (towards, ports) = (
        match p.direction {
            model::Direction::Ingress => "from",
            model::Direction::Egress => "to",
        },
        match &p.port_list {
            Some(list) => format!("ports of {list}"),
            None => p.protocol.port_range_wire(),
        },
    );
    let mut s = format!(
        "{} {} {} {}",
        p.protocol.ip_protocol().as_wire(),
        ports,
        towards,
        peer
    );
    let source_ports = p.protocol.source_port_range_wire();
    if !source_ports.is_empty() {
        s += &format!(" source ports {source_ports}");
    }
    if let Some(local) = p.local {
        s += &format!(" at {local}");
    }
    s
}

fn render_text(v: &FlowVerdict, state: &State) -> String {
    let mut out = format!("Verdict: {}\n", v.verdict.as_wire());
    for s in &v.stages {
        let why = match &s.decided_by {
            DecidedBy::Rule {
                group,
                rule,
                priority,
                policy,
            } => {
                let detail = state
                    .group(group)
                    .ok()
                    .and_then(|g| g.rule(rule))
                    .map(|(_, p)| format!(": {}", describe_rule(p)))
                    .unwrap_or_default();
                format!(
                    "rule {rule} of {group}, priority {priority} {}{detail}",
                    policy.as_wire()
                )
            }
            DecidedBy::InnerAccessPolicy(g) => {
                format!("InnerAccessPolicy of {g}: no rule matched and the peer is a member of {g}, which accepts its members")
            }
            DecidedBy::DefaultIngress => {
                "default: no rule matched, inbound traffic is dropped".to_string()
            }
            DecidedBy::DefaultEgress if s.verdict == model::Policy::Accept => {
                "default: no rule matched, basic groups accept outbound traffic".to_string()
            }
            DecidedBy::DefaultEgress => {
                "default: no rule matched, enterprise groups drop outbound traffic".to_string()
            }
        };
        let stage = match s.direction {
            model::Direction::Egress => "Egress ",
            model::Direction::Ingress => "Ingress",
        };
        out += &format!(
            "  {stage} at {}: {} ({why})\n",
            s.instance,
            s.verdict.as_wire()
        );
    }
    out
}
