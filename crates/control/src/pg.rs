//! The PostgreSQL backend: the same commands and queries (written against [`Db`]) on a
//! shared database, so several `stockade serve` replicas can serve one region.
//!
//! - **Statements**: the portable SQL of the commands, with `?N` rewritten to `$N`; values
//!   are converted to whatever type PostgreSQL inferred for each parameter.
//! - **Writes** are serialised across every replica by a transaction-scoped advisory lock
//!   taken first in each write transaction (`pg_advisory_xact_lock`). The ECS limit checks
//!   read-then-write (count members, then insert), and under the lock no other write can
//!   interleave, wherever it runs: twenty racing `JoinSecurityGroup` calls on two replicas
//!   still leave an instance in five groups. The change log's sequence therefore also gives
//!   commit order, which the agent feed and the read cache rely on.
//! - **Reads** run in `REPEATABLE READ, READ ONLY` transactions: one consistent snapshot
//!   per request, never blocked by writers.
//! - **Durability**: a commit returns once PostgreSQL has flushed it (its default
//!   `synchronous_commit = on`).
//! - **Migrations**: the SQLite schema with PostgreSQL types, recorded in
//!   `stockade_schema`, run under an advisory lock so replicas starting together do not race.

use std::cell::RefCell;
use std::error::Error;
use std::sync::Mutex;

use std::collections::HashMap;

use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use crate::sql::{Db, Row, Value};
use crate::{ControlError, Result};

/// Connections per replica.
const POOL: usize = 8;
/// Advisory lock keys: one for writes, one for migrations.
const WRITE_LOCK: i64 = 0x5354_4f43_4b41_4445; // "STOCKADE"
const MIGRATE_LOCK: i64 = WRITE_LOCK + 1;

fn storage(e: impl std::fmt::Display) -> ControlError {
    ControlError::Storage(e.to_string())
}

/// A PostgreSQL error with the server's message (its `Display` says only "db error").
fn pg_error(e: &postgres::Error, sql: &str) -> ControlError {
    match e.as_db_error() {
        Some(db) => ControlError::Storage(format!("{} {}: {sql}", db.code().code(), db.message())),
        None => ControlError::Storage(format!("{e}: {sql}")),
    }
}

/// A pool of connections to one database.
pub struct PgStore {
    pool: Vec<Mutex<Conn>>,
    next: std::sync::atomic::AtomicUsize,
    /// Nonces recorded by this replica: every 1,024th also forgets the expired ones.
    nonces: std::sync::atomic::AtomicUsize,
}

/// A connection and the statements prepared on it (a statement is parsed once per
/// connection, then each use is one round trip).
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// The synchronous client runs its own small runtime and must not be dropped on an async
/// runtime's thread (the server drops its state at the end of `block_on`): close the
/// connections on a plain thread.
impl Drop for PgStore {
    fn drop(&mut self) {
        let pool = std::mem::take(&mut self.pool);
        let _ = std::thread::spawn(move || drop(pool)).join();
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({} connections)", self.pool.len())
    }
}

impl PgStore {
    /// Connects (`postgres://user@host:port/db`) and brings the schema up to date.
    pub fn open(url: &str) -> Result<PgStore> {
        let pool = (0..POOL)
            .map(|_| {
                Client::connect(url, NoTls).map(|client| {
                    Mutex::new(Conn {
                        client,
                        statements: HashMap::new(),
                    })
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| storage(format!("cannot connect to {}: {e}", redact(url))))?;
        let store = PgStore {
            pool,
            next: Default::default(),
            nonces: Default::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn client(&self) -> std::sync::MutexGuard<'_, Conn> {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = self.pool.len();
        (0..n)
            .find_map(|i| self.pool[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.pool[start % n]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            })
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.client();
        let mut tx = conn.client.transaction().map_err(storage)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
            .map_err(storage)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS stockade_schema (version BIGINT NOT NULL)")
            .map_err(storage)?;
        let version: i64 = tx
            .query_opt("SELECT version FROM stockade_schema", &[])
            .map_err(storage)?
            .map_or(0, |r| r.get(0));
        for (i, sql) in crate::store::MIGRATIONS
            .iter()
            .enumerate()
            .skip(version as usize)
        {
            tx.batch_execute(&postgres_ddl(sql)).map_err(storage)?;
            tx.execute("DELETE FROM stockade_schema", &[])
                .map_err(storage)?;
            tx.execute(
                "INSERT INTO stockade_schema (version) VALUES ($1)",
                &[&(i as i64 + 1)],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    /// Runs `f` in a consistent read-only snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        let mut conn = self.client();
        let Conn { client, statements } = &mut *conn;
        let tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(storage)?;
        let tx = PgTx::new(tx, statements);
        let out = f(&tx);
        drop(tx);
        out
    }

    /// Records a signature nonce; false when it was already recorded (a replay). Forgets
    /// nonces older than `keep_seconds` now and then.
    pub fn remember_nonce(&self, access_key: &str, nonce: &str, keep_seconds: i64) -> Result<bool> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut conn = self.client();
        let client = &mut conn.client;
        let sql = "INSERT INTO nonces (access_key, nonce, seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let fresh = client
            .execute(sql, &[&access_key, &nonce, &now])
            .map_err(|e| pg_error(&e, sql))?
            == 1;
        if self
            .nonces
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(1024)
        {
            let sql = "DELETE FROM nonces WHERE seen_at < $1";
            client
                .execute(sql, &[&(now - keep_seconds)])
                .map_err(|e| pg_error(&e, sql))?;
        }
        Ok(fresh)
    }

    /// Runs `f` holding the write lock; commits when `commit`, else rolls back.
    pub fn write<T>(&self, commit: bool, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        let mut conn = self.client();
        let Conn { client, statements } = &mut *conn;
        let mut tx = client.transaction().map_err(storage)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .map_err(storage)?;
        let tx = PgTx::new(tx, statements);
        let out = f(&tx)?;
        if commit {
            tx.tx.into_inner().commit().map_err(storage)?;
        }
        Ok(out)
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let auth = &url[scheme + 3..at];
            let user = auth.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// SQLite DDL in PostgreSQL's types: 64-bit integers, sequences for the ordering columns.
fn postgres_ddl(sql: &str) -> String {
    sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
}

/// `?N` placeholders (the commands' portable form) as `$N`.
fn postgres_sql(sql: &str) -> String {
    sql.replace('?', "$")
}

/// One PostgreSQL transaction, with its connection's prepared statements.
pub struct PgTx<'a> {
    tx: RefCell<postgres::Transaction<'a>>,
    statements: RefCell<&'a mut HashMap<String, Statement>>,
}

impl<'a> PgTx<'a> {
    fn new(tx: postgres::Transaction<'a>, statements: &'a mut HashMap<String, Statement>) -> Self {
        PgTx {
            tx: RefCell::new(tx),
            statements: RefCell::new(statements),
        }
    }

    /// The statement for `sql`, prepared on first use.
    fn statement(&self, sql: &str) -> Result<Statement> {
        let mut statements = self.statements.borrow_mut();
        if let Some(s) = statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self
            .tx
            .borrow_mut()
            .prepare(&postgres_sql(sql))
            .map_err(|e| pg_error(&e, sql))?;
        statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

impl Db for PgTx<'_> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let n = self
            .tx
            .borrow_mut()
            .execute(&statement, &params)
            .map_err(|e| pg_error(&e, sql))?;
        Ok(n as usize)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let rows = self
            .tx
            .borrow_mut()
            .query(&statement, &params)
            .map_err(|e| pg_error(&e, sql))?;
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let columns: std::sync::Arc<[String]> = first
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        rows.iter()
            .map(|r| {
                let values = r
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| column_value(r, i, c.type_()))
                    .collect::<Result<_>>()?;
                Ok(Row::new(columns.clone(), values))
            })
            .collect()
    }
}

fn column_value(r: &postgres::Row, i: usize, ty: &Type) -> Result<Value> {
    let v = match *ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i).map(Value::from),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(i64::from).into()),
        Type::INT2 => r
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(i64::from).into()),
        Type::BOOL => r.try_get::<_, Option<bool>>(i).map(Value::from),
        _ => r.try_get::<_, Option<String>>(i).map(Value::from),
    };
    v.map_err(storage)
}

/// Values take the type PostgreSQL inferred for their parameter.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_string().to_sql(ty, out),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                Type::INT4 => s.parse::<i32>()?.to_sql(ty, out),
                _ => s.as_str().to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}
