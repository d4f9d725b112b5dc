//! `stockade serve` and `stockade account`: the API server over the embedded store, and
//! account management on the same store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use control::{Control, Limits, MasterKey};
use model::EcsError as _;
use serde_json::json;

/// Where the store lives: the embedded SQLite data directory, or (later) PostgreSQL.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// Directory of the embedded SQLite store.
    #[arg(long, default_value = "./stockade-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// PostgreSQL connection URL (instead of the embedded store).
    #[arg(long, value_name = "postgres://...", conflicts_with = "data_dir")]
    database_url: Option<String>,
    /// The master key that seals AccessKey secrets in the store (created if missing, mode
    /// 0600). Default: `DATA_DIR/master.key`, or `./stockade-master.key` with
    /// `--database-url` (every replica, and `stockade account`, must be given the same one).
    #[arg(long, value_name = "FILE", env = "STOCKADE_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// A configurable limit other than its default (repeatable): rules-per-group,
    /// group-rules-per-group, groups-per-region, vpcs-per-region, interfaces-per-region,
    /// interfaces-per-instance, secondary-addresses-per-interface, prefixes-per-interface,
    /// prefix-lists-per-region, port-range-lists-per-region.
    #[arg(long = "limit", value_name = "NAME=N")]
    limits: Vec<String>,
}

impl StoreArgs {
    /// The defaults with every `--limit` applied.
    fn limits(&self) -> Result<Limits> {
        let mut limits = Limits::default();
        for l in &self.limits {
            let (name, value) = l
                .split_once('=')
                .with_context(|| format!("--limit {l}: expected NAME=N"))?;
            let value: usize = value
                .parse()
                .with_context(|| format!("--limit {l}: {value} is not a number"))?;
            limits.set(name, value).map_err(anyhow::Error::msg)?;
        }
        Ok(limits)
    }

    fn open(&self) -> Result<Control> {
        let limits = self.limits()?;
        let key = |default: PathBuf| {
            let path = self.key_file.clone().unwrap_or(default);
            MasterKey::load_or_create(&path).map_err(store_error)
        };
        if let Some(url) = &self.database_url {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                bail!("--database-url must be a postgres:// URL");
            }
            let key = key(PathBuf::from("stockade-master.key"))?;
            return Control::open_postgres(url, limits, key)
                .map_err(store_error)
                .context("cannot open the PostgreSQL store");
        }
        match &self.key_file {
            Some(_) => Control::open_with_key(&self.data_dir, limits, key(PathBuf::new())?)
                .map_err(store_error),
            None => Control::open(&self.data_dir, limits).map_err(store_error),
        }
        .with_context(|| format!("cannot open the store in {}", self.data_dir.display()))
    }
}

/// A control-plane error for the operator: its code and message, or a store failure's cause
/// (which API answers never show, but the operator at the console must see).
fn store_error(e: control::ControlError) -> anyhow::Error {
    match e {
        control::ControlError::Storage(cause) => anyhow::anyhow!("{cause}"),
        e => anyhow::anyhow!("{}: {e}", e.code()),
    }
}

/// `stockade serve` flags (DESIGN.md §5).
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve the server's Prometheus metrics (`GET /metrics`) on this address, e.g.
    /// `127.0.0.1:9464`; off when absent. A listener of its own, never the API's: the
    /// metrics are the operator's. Port 0 picks one and prints it.
    #[arg(long, value_name = "ADDR", env = "STOCKADE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    store: StoreArgs,
    /// Regions served, comma-separated (the first is the default).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cn-hangzhou,cn-shanghai,cn-beijing,cn-shenzhen"
    )]
    regions: Vec<String>,
    /// Seconds a connection may take to send a request head (also closes idle keep-alive
    /// connections).
    #[arg(long, default_value_t = 10, env = "STOCKADE_HEADER_READ_TIMEOUT")]
    header_read_timeout: u64,
    /// Connections open at once (lowered to fit the process's file-descriptor limit).
    #[arg(long, default_value_t = 16384, env = "STOCKADE_MAX_CONNECTIONS")]
    max_connections: usize,
    /// Connections open at once from one peer address.
    #[arg(long, default_value_t = 256, env = "STOCKADE_MAX_CONNECTIONS_PER_PEER")]
    max_connections_per_peer: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20, env = "STOCKADE_MAX_BODY_BYTES")]
    max_body_bytes: usize,
    /// Most parameters in one request.
    #[arg(long, default_value_t = control::limits::PARAMETERS_PER_REQUEST, env = "STOCKADE_MAX_PARAMETERS")]
    max_parameters: usize,
    /// Longest parameter value, in bytes.
    #[arg(long, default_value_t = control::limits::PARAMETER_LENGTH, env = "STOCKADE_MAX_PARAMETER_LENGTH")]
    max_parameter_length: usize,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs `--tls-key`.
    #[arg(long, env = "STOCKADE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "STOCKADE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

/// `stockade account ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account and print its id and first AccessKey pair as one JSON object.
    Create {
        /// Account name.
        #[arg(long)]
        name: String,
        /// An operator account: it may also bind every account's network interfaces to
        /// hosts (`PlaceNetworkInterface`), which no tenant can.
        #[arg(long)]
        operator: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage an account's AccessKeys: rotate by creating a new pair, moving clients to it,
    /// disabling the old one, then deleting it.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// `stockade account key ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeyCommand {
    /// A new AccessKey pair for the account (at most two), printed once as JSON.
    Create {
        /// Account name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the account's AccessKeyIds and whether each is active (never the secrets).
    List {
        /// Account name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable an AccessKey: requests signed with it are refused.
    Disable {
        /// The AccessKeyId.
        #[arg(long)]
        access_key_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled AccessKey again.
    Enable {
        /// The AccessKeyId.
        #[arg(long)]
        access_key_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a disabled AccessKey.
    Delete {
        /// The AccessKeyId.
        #[arg(long)]
        access_key_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The pair as `stockade account create` prints it.
fn credentials_json(c: &control::Credentials) -> serde_json::Value {
    json!({
        "AccountId": c.account_id.to_string(),
        "AccountName": c.account_name,
        "AccessKeyId": c.access_key_id,
        "AccessKeySecret": c.access_key_secret,
    })
}

pub(crate) fn account(cmd: AccountCommand) -> Result<()> {
    match cmd {
        AccountCommand::Create {
            name,
            operator,
            store,
        } => {
            let control = store.open()?;
            let c = if operator {
                control.create_operator(&name, None)
            } else {
                control.create_account(&name, None)
            }
            .map_err(store_error)?;
            println!("{}", credentials_json(&c));
        }
        AccountCommand::Key(KeyCommand::Create { name, store }) => {
            let c = store
                .open()?
                .create_access_key(&name)
                .map_err(store_error)?;
            println!("{}", credentials_json(&c));
        }
        AccountCommand::Key(KeyCommand::List { name, store }) => {
            let keys: Vec<serde_json::Value> = store
                .open()?
                .access_keys(&name)
                .map_err(store_error)?
                .into_iter()
                .map(|(id, active)| {
                    json!({"AccessKeyId": id, "Status": if active { "Active" } else { "Inactive" }})
                })
                .collect();
            println!("{}", json!({"AccessKeys": keys}));
        }
        AccountCommand::Key(KeyCommand::Disable {
            access_key_id,
            store,
        }) => store
            .open()?
            .set_access_key_active(&access_key_id, false)
            .map_err(store_error)?,
        AccountCommand::Key(KeyCommand::Enable {
            access_key_id,
            store,
        }) => store
            .open()?
            .set_access_key_active(&access_key_id, true)
            .map_err(store_error)?,
        AccountCommand::Key(KeyCommand::Delete {
            access_key_id,
            store,
        }) => store
            .open()?
            .delete_access_key(&access_key_id)
            .map_err(store_error)?,
    }
    Ok(())
}

pub(crate) fn serve(args: ServeArgs) -> Result<()> {
    crate::init_logging();
    if args.regions.is_empty() {
        bail!("--regions needs at least one region");
    }
    let control = Arc::new(args.store.open()?);
    if !control.has_accounts().map_err(store_error)? {
        let key = match (
            std::env::var("STOCKADE_BOOTSTRAP_ACCESS_KEY_ID"),
            std::env::var("STOCKADE_BOOTSTRAP_ACCESS_KEY_SECRET"),
        ) {
            (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Some((id, secret)),
            _ => None,
        };
        let given = key.is_some();
        let c = control
            .create_account("default", key)
            .map_err(store_error)?;
        println!("created account default ({})", c.account_id);
        if !given {
            // Printed once: the secret is not shown again.
            println!("AccessKeyId: {}", c.access_key_id);
            println!("AccessKeySecret: {}", c.access_key_secret);
        }
    }
    operator_key(&args.store, &control)?;
    let token = agent_token(&args.store)?;
    // Read before listening: a bad certificate is a start-up error, not a failed handshake.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(server::http::Tls::from_pem_files(cert, key).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let mut state = server::AppState::new(control, args.regions).with_request_limits(
            server::wire::RequestLimits {
                max_body: args.max_body_bytes,
                max_parameters: args.max_parameters,
                max_parameter_length: args.max_parameter_length,
            },
        );
        if let Some(token) = token {
            state = state.with_agent_token(token);
        }
        if tls.is_some() {
            state = state.with_https();
        }
        let state = Arc::new(state);
        if let Some(at) = args.metrics_listen {
            let listener = std::net::TcpListener::bind(at)
                .with_context(|| format!("cannot listen on {at} for metrics"))?;
            println!("metrics on {}", listener.local_addr()?);
            let state = state.clone();
            tokio::spawn(async move {
                let encode = move || state.metrics.encode(&state);
                if let Err(e) = metrics(listener, encode).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            });
        }
        tracing::info!("listening on {addr}");
        println!("listening on {addr}");
        let limits = server::http::HttpLimits {
            header_read_timeout: std::time::Duration::from_secs(args.header_read_timeout.max(1)),
            max_connections: args.max_connections.max(1),
            max_connections_per_peer: args.max_connections_per_peer.max(1),
        }
        .within_descriptors(server::http::descriptor_limit());
        tracing::info!(?limits, "HTTP limits");
        let closing = state.clone();
        server::http::serve_with(listener, server::app(state), limits, tls, async move {
            shutdown().await;
            // Agents' long polls answer now instead of holding the drain open.
            closing.close();
        })
        .await?;
        Ok(())
    })
}

/// Serves `GET /metrics` with `encode`'s text (the OpenMetrics format) on `listener` until
/// the process ends; `stockade serve` and `stockade agent` both do.
pub(crate) async fn metrics(
    listener: std::net::TcpListener,
    encode: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let encode = encode.clone();
            async move {
                let text = tokio::task::spawn_blocking(encode)
                    .await
                    .unwrap_or_default();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        server::metrics::CONTENT_TYPE,
                    )],
                    text,
                )
            }
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// The token agents must present: `STOCKADE_AGENT_TOKEN`, or else one kept in
/// `DATA_DIR/agent-token` (created on first start, readable by its owner only), so that a lab
/// on the same machine finds it without configuration.
fn agent_token(store: &StoreArgs) -> Result<Option<String>> {
    if let Ok(t) = std::env::var("STOCKADE_AGENT_TOKEN") {
        if !t.is_empty() {
            return Ok(Some(t));
        }
    }
    if store.database_url.is_some() {
        // Replicas share no directory: they must be given one token.
        println!("STOCKADE_AGENT_TOKEN is not set: the agent feed is disabled");
        return Ok(None);
    }
    let path = store.data_dir.join("agent-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(Some(t.trim().to_string()));
    }
    let token = uuid_like();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut f, token.as_bytes())?;
    println!("agent token written to {}", path.display());
    Ok(Some(token))
}

/// The embedded store's operator: when it has none, one named `operator` is made and its
/// AccessKey pair written to `DATA_DIR/operator-key` (JSON as `stockade account create`
/// prints it, readable by its owner only), where `stockade lab` finds it. Replicas on
/// PostgreSQL share no directory: their operator is made with `stockade account create
/// --operator`.
fn operator_key(store: &StoreArgs, control: &Control) -> Result<()> {
    if store.database_url.is_some() || control.has_operator().map_err(store_error)? {
        return Ok(());
    }
    let c = match control.create_operator("operator", None) {
        Ok(c) => c,
        Err(control::ControlError::AccountExists(_)) => {
            println!(
                "an account named operator exists and is not an operator: make one with \
                 `stockade account create --name NAME --operator`"
            );
            return Ok(());
        }
        Err(e) => return Err(store_error(e)),
    };
    let path = store.data_dir.join("operator-key");
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut f, credentials_json(&c).to_string().as_bytes())?;
    println!(
        "created operator account operator ({}); its key is in {}",
        c.account_id,
        path.display()
    );
    Ok(())
}

/// 32 random hex digits.
fn uuid_like() -> String {
    use rand::RngExt;
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Resolves on Ctrl-C or SIGTERM: in-flight requests finish (their commits are durable
/// either way), then the server exits.
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
