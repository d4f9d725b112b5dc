//! Stockade's control plane: the use cases behind the ECS API, applied to a durable store.
//!
//! Every command runs in one SQLite transaction that checks the ECS constraints against the
//! stored state, writes the change and appends it to the change log, then commits durably;
//! a refused or failed command changes nothing. Commands are serialised through one
//! connection (SQLite has one writer anyway), which is what makes limits hold under
//! concurrent requests. This crate knows SQL but not HTTP; the `server` crate maps requests
//! onto it.

mod addressing;
mod agent_tokens;
mod error;
mod groups;
mod hits;
mod interfaces;
pub mod limits;
mod lists;
mod network;
pub mod pg;
mod policies;
mod port_range_lists;
mod prefix_lists;
mod scope;
pub mod secrets;
pub mod sql;
pub mod store;
mod tags;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use model::AccountId;
use rand::RngExt;
use rusqlite::{Connection, TransactionBehavior};
use serde_json::Value;
use sql::{args, Db};

pub use error::ControlError;
pub use groups::{CreateGroup, GroupFilter, GroupRecord, Revoke, RuleRecord};
pub use hits::{GroupHits, Hit, HitCount, HitSubject, ImplicitDecision};
pub use interfaces::{
    Assigned, CreateInterface, InterfaceChanges, InterfaceFilter, InterfaceKind,
    NetworkInterfaceRecord, Placement, PrefixRequest,
};
pub use limits::Limits;
pub use network::{
    CreateInstances, Grouped, InstanceChanges, InstanceOptions, InstanceRecord, InstanceStatus,
    Ipv6Request, SystemDisk, VSwitchRecord, VpcRecord, DELETION_PROTECTION,
};
pub use port_range_lists::{CreatePortRangeList, PortRangeListRecord};
pub use prefix_lists::{AddressFamily, CreatePrefixList, PrefixListRecord};
pub(crate) use scope::Scope;
pub use secrets::MasterKey;
pub use tags::{tags_match, TaggedType};

/// Result of control operations.
pub type Result<T> = std::result::Result<T, ControlError>;

/// Who is asking, and where: every resource belongs to one account and one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    /// The caller's account.
    pub account: AccountId,
    /// The request's `RegionId`.
    pub region: String,
}

/// An account's first AccessKey pair, as `stockade account create` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Numeric account id.
    pub account_id: AccountId,
    /// Account name.
    pub account_name: String,
    /// AccessKeyId.
    pub access_key_id: String,
    /// AccessKeySecret.
    pub access_key_secret: String,
}

/// A `ClientToken` and a fingerprint of the request it came with: a retry with the same
/// token and parameters gets the first answer again; other parameters are refused.
///
/// The store keeps SHA-256 digests of both (a record is the same size whatever the request
/// carried) for [`CLIENT_TOKEN_DAYS`], after which the token may be used again: ECS keeps
/// tokens for a bounded time too, and a retry comes within minutes, not days.
#[derive(Debug, Clone)]
pub struct ClientToken {
    /// The token.
    pub token: String,
    /// The request's action and parameters (without signature fields), canonically joined.
    pub fingerprint: String,
}

/// How long a `ClientToken` record is kept, in days.
pub const CLIENT_TOKEN_DAYS: i64 = 1;

impl ClientToken {
    /// The digests the store keeps: of the token, and of the request.
    fn digests(&self) -> (String, String) {
        use sha2::Digest as _;
        let hash = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()));
        (hash(&self.token), hash(&self.fingerprint))
    }
}

/// What [`Control::observe_commits`] keeps.
struct CommitObserver(Box<dyn Fn(std::time::Duration) + Send + Sync>);

impl std::fmt::Debug for CommitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitObserver")
    }
}

/// The control plane over one store.
#[derive(Debug)]
pub struct Control {
    backend: Backend,
    limits: Limits,
    /// Seals the AccessKey secrets in the store.
    key: MasterKey,
    /// Write transactions this handle committed: lets the server tell a request that
    /// changed the store from a read without asking the database.
    commits: std::sync::atomic::AtomicU64,
    /// Told the duration of every commit (see [`Control::observe_commits`]).
    commit_observer: std::sync::OnceLock<CommitObserver>,
    /// Regions this handle knows count rule hits already (`record_hits`): an agent's report
    /// without hits then writes nothing.
    counting: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Where the state lives.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // One per `Control`, made once: its size does not matter.
enum Backend {
    /// The embedded store of one process.
    Sqlite {
        conn: Mutex<Connection>,
        /// Read-only connections: WAL lets queries run beside each other and the writer.
        readers: Vec<Mutex<Connection>>,
        next_reader: std::sync::atomic::AtomicUsize,
        path: PathBuf,
        /// Signature nonces (`nonces.db`), and how many were recorded (every 1,024th
        /// recording also forgets the expired ones).
        nonces: Mutex<Connection>,
        recorded: std::sync::atomic::AtomicUsize,
    },
    /// A database shared by several replicas.
    Postgres(pg::PgStore),
}

/// A transaction in the caller's account and region; commands and queries are its methods.
pub struct Tx<'a> {
    db: &'a dyn sql::Db,
    ctx: &'a Ctx,
    limits: &'a Limits,
    /// Whether the command appended to the change log (see [`Control::write`]).
    logged: std::cell::Cell<bool>,
}

/// A free read-only connection, from a rotating start, or the next one to free up.
fn reader<'a>(
    readers: &'a [Mutex<Connection>],
    next: &std::sync::atomic::AtomicUsize,
) -> std::sync::MutexGuard<'a, Connection> {
    let start = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let n = readers.len();
    (0..n)
        .find_map(|i| readers[(start + i) % n].try_lock().ok())
        .unwrap_or_else(|| readers[start % n].lock().unwrap_or_else(|p| p.into_inner()))
}

/// The master key's file in a data directory, by default.
pub const KEY_FILE: &str = "master.key";

/// Creates `dir` if missing and makes it its owner's only (0700).
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| ControlError::Storage(format!("cannot prepare the data directory: {e}")))
}

/// Creates `file` empty and owner-only (0600) if missing, or makes it owner-only, with the
/// WAL and shared-memory files SQLite keeps beside it.
fn private_file(file: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let failed = |e: std::io::Error| {
        ControlError::Storage(format!("cannot protect {}: {e}", file.display()))
    };
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .map_err(failed)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        let path = PathBuf::from(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(failed)?;
        }
    }
    Ok(())
}

/// Read-only connections per store (one per core of the target machines, with headroom).
const READERS: usize = 4;

/// `access_keys.status` of a key that authenticates, and of one that no longer does.
const KEY_ACTIVE: &str = "Active";
const KEY_INACTIVE: &str = "Inactive";

/// The database file inside a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("stockade.db")
}

pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `n` random characters of `alphabet`.
pub(crate) fn random_string(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh resource id body (`sg-` + this), 20 lowercase alphanumerics like ECS ids.
pub(crate) fn new_id_body() -> String {
    random_string(LOWER_ALNUM, 20)
}

impl Tx<'_> {
    /// Refuses to make `more` rows of `table` (resources with `account_id` and `region`)
    /// when the account would then hold more than `limit` of them in the region.
    pub(crate) fn check_quota(
        &self,
        table: &'static str,
        more: usize,
        limit: usize,
        full: ControlError,
    ) -> Result<()> {
        let held = self
            .db
            .query_one(
                &format!("SELECT COUNT(*) FROM {table} WHERE account_id = ?1 AND region = ?2"),
                args![self.ctx.account.get() as i64, &self.ctx.region],
            )?
            .int(0)?;
        if held as usize + more > limit {
            return Err(full);
        }
        Ok(())
    }
}

impl Control {
    /// Opens the store in `data_dir` (created if missing).
    pub fn open(data_dir: &Path, limits: Limits) -> Result<Control> {
        private_dir(data_dir)?;
        let key = MasterKey::load_or_create(&data_dir.join(KEY_FILE))?;
        Control::open_prepared(data_dir, limits, key)
    }

    /// Opens the store in `data_dir` with the master key `key` (kept elsewhere than the
    /// default `DATA_DIR/master.key`).
    pub fn open_with_key(data_dir: &Path, limits: Limits, key: MasterKey) -> Result<Control> {
        private_dir(data_dir)?;
        Control::open_prepared(data_dir, limits, key)
    }

    /// Opens the store in `data_dir`, which `private_dir` has made.
    fn open_prepared(data_dir: &Path, limits: Limits, key: MasterKey) -> Result<Control> {
        let path = database_path(data_dir);
        let nonces_path = data_dir.join("nonces.db");
        // Created owner-only before SQLite opens them: it gives its WAL and shared-memory
        // files the database file's mode.
        for file in [&path, &nonces_path] {
            private_file(file)?;
        }
        let conn = store::open(&path)?;
        let readers = (0..READERS)
            .map(|_| store::open_reader(&path).map(Mutex::new))
            .collect::<rusqlite::Result<_>>()?;
        let nonces = store::open_nonces(&nonces_path)?;
        let control = Control {
            backend: Backend::Sqlite {
                conn: Mutex::new(conn),
                readers,
                next_reader: Default::default(),
                path,
                nonces: Mutex::new(nonces),
                recorded: Default::default(),
            },
            limits,
            key,
            commits: Default::default(),
            commit_observer: Default::default(),
            counting: Default::default(),
        };
        control.open_checks()?;
        Ok(control)
    }

    /// Connects to a PostgreSQL database (`postgres://...`) shared with other replicas,
    /// which must all be given the same master key.
    pub fn open_postgres(url: &str, limits: Limits, key: MasterKey) -> Result<Control> {
        let control = Control {
            backend: Backend::Postgres(pg::PgStore::open(url)?),
            limits,
            key,
            commits: Default::default(),
            commit_observer: Default::default(),
            counting: Default::default(),
        };
        control.open_checks()?;
        Ok(control)
    }

    /// What every open does to a store written by an older build.
    fn open_checks(&self) -> Result<()> {
        self.seal_plain_secrets()?;
        self.ensure_primary_interfaces()
    }

    /// Gives instances stored before interfaces existed their primary interface (looked
    /// for in a read first, so a current store costs no write transaction on open).
    fn ensure_primary_interfaces(&self) -> Result<()> {
        let missing = self.with_read(|db| {
            db.query_one(
                "SELECT EXISTS(SELECT 1 FROM instances i WHERE NOT EXISTS
                     (SELECT 1 FROM network_interfaces n WHERE n.instance_id = i.id))",
                args![],
            )?
            .flag(0)
        })?;
        if missing {
            self.with_write(true, interfaces::backfill_primary)?;
        }
        Ok(())
    }

    /// Seals the secrets a store written before sealing holds in plain text (looked for in
    /// a read first, so an already sealed store costs no write transaction on open).
    fn seal_plain_secrets(&self) -> Result<()> {
        let plain = self.with_read(|db| {
            Ok(db
                .query("SELECT secret FROM access_keys", args![])?
                .iter()
                .any(|r| r.text(0).is_ok_and(|s| !MasterKey::is_sealed(&s))))
        })?;
        if !plain {
            return Ok(());
        }
        self.with_write(true, |db| {
            for row in db.query("SELECT id, secret FROM access_keys", args![])? {
                let (id, secret) = (row.text(0)?, row.text(1)?);
                if !MasterKey::is_sealed(&secret) {
                    db.execute(
                        "UPDATE access_keys SET secret = ?2 WHERE id = ?1",
                        args![&id, self.key.seal(&id, &secret)],
                    )?;
                }
            }
            Ok(())
        })
    }

    /// Records a signature nonce durably (it survives a restart; on PostgreSQL every replica
    /// sees it): false for a replay. Nonces older than `keep_seconds` are forgotten now and
    /// then.
    pub fn remember_nonce(&self, access_key: &str, nonce: &str, keep_seconds: i64) -> Result<bool> {
        match &self.backend {
            Backend::Sqlite {
                nonces, recorded, ..
            } => {
                let now = chrono::Utc::now().timestamp();
                let conn = nonces.lock().unwrap_or_else(|p| p.into_inner());
                let fresh = conn.execute(
                    "INSERT INTO nonces (access_key, nonce, seen_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    rusqlite::params![access_key, nonce, now],
                )? == 1;
                if recorded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .is_multiple_of(1024)
                {
                    conn.execute(
                        "DELETE FROM nonces WHERE seen_at < ?1",
                        rusqlite::params![now - keep_seconds],
                    )?;
                }
                Ok(fresh)
            }
            Backend::Postgres(pg) => pg.remember_nonce(access_key, nonce, keep_seconds),
        }
    }

    /// The database file of the embedded store (`None` on PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Some(path),
            Backend::Postgres(_) => None,
        }
    }

    /// Runs `f` in a read-only snapshot of the store.
    fn with_read<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite {
                readers,
                next_reader,
                ..
            } => {
                let mut conn = reader(readers, next_reader);
                let db = conn.transaction()?;
                f(&*db)
            }
            Backend::Postgres(pg) => pg.read(f),
        }
    }

    /// Runs `f`, a single read statement (atomic by itself), without opening a transaction:
    /// the revision and AccessKey lookups every request makes.
    fn with_statement<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite {
                readers,
                next_reader,
                ..
            } => f(&*reader(readers, next_reader)),
            Backend::Postgres(pg) => pg.read(f),
        }
    }

    /// Runs `f` as the only writer; commits when `commit` (and `f` succeeded).
    fn with_write<T>(&self, commit: bool, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        let out = self.write_transaction(commit, f)?;
        if commit {
            self.commits
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(observe) = self.commit_observer.get() {
                (observe.0)(started.elapsed());
            }
        }
        Ok(out)
    }

    /// Calls `observe` with the duration of every write transaction committed through this
    /// handle from now on (the first observer set stays): how the server's metrics learn
    /// the store's commit latency without the store knowing of metrics.
    pub fn observe_commits(&self, observe: impl Fn(std::time::Duration) + Send + Sync + 'static) {
        let _ = self.commit_observer.set(CommitObserver(Box::new(observe)));
    }

    /// Write transactions committed through this handle so far (other replicas' commits
    /// are not counted: read [`Control::revision`] for those).
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn write_transaction<T>(
        &self,
        commit: bool,
        f: impl FnOnce(&dyn Db) -> Result<T>,
    ) -> Result<T> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => {
                // A panic while holding the lock leaves the connection usable: the
                // transaction it held was rolled back when it was dropped.
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let db = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = f(&*db)?;
                if commit {
                    db.commit()?;
                }
                Ok(out)
            }
            Backend::Postgres(pg) => pg.write(commit, f),
        }
    }

    /// Runs a read-only query in a consistent snapshot (it sees every committed command).
    pub fn read<T>(&self, ctx: &Ctx, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        self.with_read(|db| {
            f(&Tx {
                db,
                ctx,
                limits: &self.limits,
                logged: Default::default(),
            })
        })
    }

    /// The host an agent token was issued for (`IssueAgentToken`), if the token is live.
    pub fn agent_token_host(&self, token: &str) -> Result<Option<model::HostId>> {
        self.with_read(|db| agent_tokens::host_of(db, token))
    }

    /// Runs a command and rolls it back: `DryRun=true` validation with every check a real
    /// run would make.
    pub fn dry_run<T>(&self, ctx: &Ctx, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        self.with_write(false, |db| {
            f(&Tx {
                db,
                ctx,
                limits: &self.limits,
                logged: Default::default(),
            })
        })
    }

    /// Runs a command: all of `f` commits durably, or nothing does, and the change log's
    /// revision moves. With a client token, a repeated request returns the first response
    /// without running `f` again.
    pub fn write(
        &self,
        ctx: &Ctx,
        token: Option<&ClientToken>,
        f: impl FnOnce(&Tx) -> Result<Value>,
    ) -> Result<Value> {
        self.with_write(true, |db| {
            let tx = Tx {
                db,
                ctx,
                limits: &self.limits,
                logged: Default::default(),
            };
            let digests = token.map(ClientToken::digests);
            if let Some((token, fingerprint)) = &digests {
                let expired = chrono::Utc::now() - chrono::Duration::days(CLIENT_TOKEN_DAYS);
                tx.db.execute(
                    "DELETE FROM client_tokens WHERE account_id = ?1 AND created_at < ?2",
                    args![
                        ctx.account.get() as i64,
                        expired.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                    ],
                )?;
                let seen = tx.db.query_opt(
                    "SELECT fingerprint, response FROM client_tokens WHERE account_id = ?1 AND token = ?2",
                    args![ctx.account.get() as i64, token],
                )?;
                if let Some(row) = seen {
                    if &row.text(0)? != fingerprint {
                        return Err(ControlError::IdempotentParameterMismatch);
                    }
                    return Ok(serde_json::from_str(&row.text(1)?).unwrap_or(Value::Null));
                }
            }
            let response = f(&tx)?;
            // Every committed command moves the revision, whether or not it wrote a log entry
            // of its own: the read cache and the agents key on the revision, so a write that
            // did not move it would leave them answering the old state.
            if !tx.logged.get() {
                tx.log("Write", "", serde_json::json!({}))?;
            }
            if let Some((token, fingerprint)) = &digests {
                tx.db.execute(
                    "INSERT INTO client_tokens (account_id, token, fingerprint, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![ctx.account.get() as i64, token, fingerprint, response.to_string(), now()],
                )?;
            }
            Ok(response)
        })
    }

    /// Creates an account with a fresh (or the given) AccessKey pair.
    pub fn create_account(&self, name: &str, key: Option<(String, String)>) -> Result<Credentials> {
        self.insert_account(name, key, false)
    }

    /// Creates an operator account: besides owning resources as any account does, it may
    /// call Stockade's operator actions (placement of every account's interfaces). Only
    /// `stockade account create --operator` and the first start make one; no API request can.
    pub fn create_operator(
        &self,
        name: &str,
        key: Option<(String, String)>,
    ) -> Result<Credentials> {
        self.insert_account(name, key, true)
    }

    fn insert_account(
        &self,
        name: &str,
        key: Option<(String, String)>,
        operator: bool,
    ) -> Result<Credentials> {
        self.with_write(true, |db| {
            let exists = db
                .query_one(
                    "SELECT EXISTS(SELECT 1 FROM accounts WHERE name = ?1)",
                    args![name],
                )?
                .flag(0)?;
            if exists {
                return Err(ControlError::AccountExists(name.to_string()));
            }
            let mut rng = rand::rng();
            let account_id = loop {
                let id = rng.random_range(1_000_000_000_000_000u64..10_000_000_000_000_000);
                let taken = db
                    .query_one(
                        "SELECT EXISTS(SELECT 1 FROM accounts WHERE id = ?1)",
                        args![id as i64],
                    )?
                    .flag(0)?;
                if !taken {
                    break AccountId::new(id);
                }
            };
            db.execute(
                "INSERT INTO accounts (id, name, created_at, operator) VALUES (?1, ?2, ?3, ?4)",
                args![account_id.get() as i64, name, now(), i64::from(operator)],
            )?;
            self.insert_access_key(db, account_id, name, key)
        })
    }

    /// Stores an AccessKey pair (the given one, or a fresh one) of an account, sealed.
    fn insert_access_key(
        &self,
        db: &dyn Db,
        account_id: AccountId,
        name: &str,
        key: Option<(String, String)>,
    ) -> Result<Credentials> {
        let (access_key_id, access_key_secret) = key.unwrap_or_else(|| {
            (
                format!("LTAI{}", random_string(ALNUM, 20)),
                random_string(ALNUM, 30),
            )
        });
        db.execute(
            "INSERT INTO access_keys (id, secret, account_id) VALUES (?1, ?2, ?3)",
            args![
                &access_key_id,
                self.key.seal(&access_key_id, &access_key_secret),
                account_id.get() as i64
            ],
        )?;
        Ok(Credentials {
            account_id,
            account_name: name.to_string(),
            access_key_id,
            access_key_secret,
        })
    }

    /// Whether any account exists (the server bootstraps one on first start otherwise).
    pub fn has_accounts(&self) -> Result<bool> {
        self.with_read(|db| {
            db.query_one("SELECT EXISTS(SELECT 1 FROM accounts)", args![])?
                .flag(0)
        })
    }

    /// Whether an operator account exists (the embedded server makes one on start
    /// otherwise).
    pub fn has_operator(&self) -> Result<bool> {
        self.with_read(|db| {
            db.query_one(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE operator = 1)",
                args![],
            )?
            .flag(0)
        })
    }

    /// The account and secret of an active AccessKeyId.
    pub fn access_key(&self, access_key_id: &str) -> Result<(AccountId, String)> {
        self.with_statement(|db| {
            let row = db
                .query_opt(
                    "SELECT account_id, secret, status FROM access_keys WHERE id = ?1",
                    args![access_key_id],
                )?
                .ok_or(ControlError::AccessKeyNotFound)?;
            if row.text(2)? != KEY_ACTIVE {
                return Err(ControlError::AccessKeyInactive);
            }
            let secret = self.key.open(access_key_id, &row.text(1)?)?;
            Ok((AccountId::new(row.int(0)? as u64), secret))
        })
    }

    /// A new AccessKey pair for the account `name` (the first step of a rotation: the
    /// account's other keys keep working until they are disabled).
    pub fn create_access_key(&self, name: &str) -> Result<Credentials> {
        self.with_write(true, |db| {
            let row = db
                .query_opt("SELECT id FROM accounts WHERE name = ?1", args![name])?
                .ok_or_else(|| ControlError::AccountNotFound(name.to_string()))?;
            let account_id = AccountId::new(row.int(0)? as u64);
            let count = db
                .query_one(
                    "SELECT COUNT(*) FROM access_keys WHERE account_id = ?1",
                    args![account_id.get() as i64],
                )?
                .int(0)?;
            if count as usize >= limits::ACCESS_KEYS_PER_ACCOUNT {
                return Err(ControlError::AccessKeyLimit);
            }
            self.insert_access_key(db, account_id, name, None)
        })
    }

    /// Enables or disables an AccessKey (a disabled key authenticates nothing).
    pub fn set_access_key_active(&self, access_key_id: &str, active: bool) -> Result<()> {
        self.with_write(true, |db| {
            let status = if active { KEY_ACTIVE } else { KEY_INACTIVE };
            let changed = db.execute(
                "UPDATE access_keys SET status = ?2 WHERE id = ?1",
                args![access_key_id, status],
            )?;
            if changed == 0 {
                return Err(ControlError::AccessKeyNotFound);
            }
            Ok(())
        })
    }

    /// Deletes a disabled AccessKey (an active one must be disabled first, so a key in use
    /// is not deleted by mistake).
    pub fn delete_access_key(&self, access_key_id: &str) -> Result<()> {
        self.with_write(true, |db| {
            let row = db
                .query_opt(
                    "SELECT status FROM access_keys WHERE id = ?1",
                    args![access_key_id],
                )?
                .ok_or(ControlError::AccessKeyNotFound)?;
            if row.text(0)? == KEY_ACTIVE {
                return Err(ControlError::AccessKeyActive);
            }
            db.execute(
                "DELETE FROM access_keys WHERE id = ?1",
                args![access_key_id],
            )?;
            Ok(())
        })
    }

    /// The AccessKeys of the account `name`: id and whether active (never the secrets).
    pub fn access_keys(&self, name: &str) -> Result<Vec<(String, bool)>> {
        self.with_read(|db| {
            let rows = db.query(
                "SELECT k.id, k.status FROM access_keys k JOIN accounts a ON a.id = k.account_id
                 WHERE a.name = ?1 ORDER BY k.id",
                args![name],
            )?;
            if rows.is_empty()
                && db
                    .query_opt("SELECT id FROM accounts WHERE name = ?1", args![name])?
                    .is_none()
            {
                return Err(ControlError::AccountNotFound(name.to_string()));
            }
            rows.iter()
                .map(|r| Ok((r.text(0)?, r.text(1)? == KEY_ACTIVE)))
                .collect()
        })
    }

    /// The latest revision of the change log (0 when empty).
    pub fn revision(&self) -> Result<u64> {
        self.with_statement(|db| {
            let row = db.query_one("SELECT MAX(revision) FROM change_log", args![])?;
            Ok(row.opt_int(0)?.unwrap_or(0) as u64)
        })
    }
}

impl Tx<'_> {
    /// The limits this control plane enforces.
    pub fn limits(&self) -> &Limits {
        self.limits
    }

    /// The revision of the state this transaction sees: the last change-log entry.
    pub fn revision(&self) -> Result<u64> {
        let row = self
            .db
            .query_one("SELECT MAX(revision) FROM change_log", args![])?;
        Ok(row.opt_int(0)?.unwrap_or(0) as u64)
    }

    /// Appends one event to the change log (committed with the command).
    fn log(&self, kind: &str, subject: &str, payload: Value) -> Result<()> {
        self.logged.set(true);
        self.db.execute(
            "INSERT INTO change_log (account_id, kind, subject, payload, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            args![self.ctx.account.get() as i64, kind, subject, payload.to_string(), now()],
        )?;
        Ok(())
    }

    /// The account id of an account name (for `SourceGroupOwnerAccount`).
    fn account_by_name(&self, name: &str) -> Result<Option<AccountId>> {
        self.db
            .query_opt("SELECT id FROM accounts WHERE name = ?1", args![name])?
            .map(|r| Ok(AccountId::new(r.int(0)? as u64)))
            .transpose()
    }
}

impl Control {
    /// The region of one of the account's network interfaces (see `instance_region`).
    pub fn interface_region(
        &self,
        account: AccountId,
        interface: &model::NetworkInterfaceId,
    ) -> Result<Option<String>> {
        self.with_read(|db| {
            db.query_opt(
                "SELECT region FROM network_interfaces WHERE id = ?1 AND account_id = ?2",
                args![interface.as_str(), account.get() as i64],
            )?
            .map(|r| r.text(0))
            .transpose()
        })
    }

    /// The region of one of the account's instances (for actions whose request carries no
    /// `RegionId`: the instance names its region, as in ECS).
    pub fn instance_region(
        &self,
        account: AccountId,
        instance: &model::InstanceId,
    ) -> Result<Option<String>> {
        self.with_read(|db| {
            db.query_opt(
                "SELECT region FROM instances WHERE id = ?1 AND account_id = ?2",
                args![instance.as_str(), account.get() as i64],
            )?
            .map(|r| r.text(0))
            .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_token_records_are_digests_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let control = Control::open(dir.path(), Limits::default()).unwrap();
        let creds = control.create_account("tokens", None).unwrap();
        let ctx = Ctx {
            account: creds.account_id,
            region: "cn-hangzhou".into(),
        };
        let account = ctx.account.get() as i64;
        let records = |control: &Control| {
            control
                .read(&ctx, |tx| {
                    let r = tx.db.query_one(
                        "SELECT COUNT(*), COALESCE(MAX(LENGTH(token) + LENGTH(fingerprint)), 0)
                         FROM client_tokens WHERE account_id = ?1",
                        args![account],
                    )?;
                    Ok((r.int(0)?, r.int(1)?))
                })
                .unwrap()
        };
        let token = |token: &str, fingerprint: String| ClientToken {
            token: token.into(),
            fingerprint,
        };
        let nothing = |_: &Tx| Ok(json!({}));
        // A 1 MiB request leaves two 64-character digests.
        let big = token(&"t".repeat(64), "x".repeat(1 << 20));
        control.write(&ctx, Some(&big), nothing).unwrap();
        assert_eq!(records(&control), (1, 128));
        control
            .write(&ctx, None, |tx| {
                tx.db.execute(
                    "UPDATE client_tokens SET created_at = '2000-01-01T00:00:00Z' WHERE account_id = ?1",
                    args![account],
                )?;
                Ok(json!({}))
            })
            .unwrap();
        // The next write with a token drops the expired record; the old token is free again.
        control
            .write(&ctx, Some(&token("u", "y".into())), nothing)
            .unwrap();
        assert_eq!(records(&control).0, 1, "the expired record is gone");
        let reused = token(&"t".repeat(64), "other parameters".into());
        control.write(&ctx, Some(&reused), nothing).unwrap();
        assert_eq!(records(&control).0, 2);
    }
}
