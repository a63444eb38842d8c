//! Storage: the only code that touches `sea_orm` and the `entity` crate. The core calls these
//! functions and never builds a query itself.

pub mod attachments;
pub mod calls;
pub mod conversations;
pub mod convert;
pub mod devices;
pub mod edits;
pub mod health;
pub mod history;
pub mod keys;
pub mod media;
pub mod messages;
mod nodelay;
pub mod notifications;
pub mod prekeys;
pub mod queues;
pub mod reactions;
pub mod redis;
pub mod sessions;
pub mod shared;
pub mod users;

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::{
        self,
        sqlite::{SqliteJournalMode, SqliteSynchronous},
        Connection as _,
    },
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
};

pub use sea_orm::DatabaseConnection as Db;

use self::health::StorageHealth;

/// How connections are opened: the same for the pool and the message writer's own connection.
#[derive(Clone)]
pub struct Settings {
    pub url: String,
    /// `SQLITE_MMAP_SIZE`: bytes of the database file SQLite reads through a memory map.
    pub sqlite_mmap_size: u64,
    /// Told about every connection thrown away in a broken state.
    pub health: Arc<StorageHealth>,
}

impl Settings {
    /// Defaults for tools that only migrate or inspect a database.
    pub fn new(url: &str) -> Self {
        Self { url: url.to_string(), sqlite_mmap_size: DEFAULT_SQLITE_MMAP_SIZE, health: Arc::default() }
    }
}

/// 256 MiB: the indexes of a busy messages table stay mapped instead of being copied in by
/// `pread` on every page read.
pub const DEFAULT_SQLITE_MMAP_SIZE: u64 = 256 * 1024 * 1024;

/// Connects and applies pending migrations, so a fresh SQLite file or an empty PostgreSQL
/// database is ready with no manual step.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let db = open(settings, if is_sqlite_url(&settings.url) { 8 } else { 20 }).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// One connection of its own for the message writer (see `core::writer`), which then never
/// queues for a pooled connection behind the readers. `None` for an in-memory SQLite database,
/// which a second connection would not see.
pub async fn connect_writer(settings: &Settings) -> Option<Result<DatabaseConnection, sea_orm::DbErr>> {
    let url = &settings.url;
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    Some(open(settings, 1).await)
}

fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

async fn open(settings: &Settings, max_connections: u32) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let url = settings.url.as_str();
    let mut opts = ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false).acquire_timeout(Duration::from_secs(10));
    opts.max_connections(max_connections).min_connections(1);
    if is_sqlite_url(url) {
        // WAL lets readers run beside the single writer; FULL sync makes "acked" mean "on disk"
        // even across a power cut, and group commits (see core::writer) pay for the fsync.
        // A page cache (up to 32 MiB a connection) and memory-mapped reads: indexes of a busy
        // messages table are read all the time, and without them every page read is a
        // `pread` copy from the operating system's cache.
        let mmap_size = settings.sqlite_mmap_size.to_string();
        opts.map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(15))
                .pragma("cache_size", "-32768")
                .pragma("mmap_size", mmap_size.clone())
                // Checkpoint every ~40 MiB of log rather than every 4 MiB: a busy chat rewrites
                // the same index pages batch after batch, and a later checkpoint copies each
                // page once for many commits.
                .pragma("wal_autocheckpoint", "10000")
        });
        let health = settings.health.clone();
        opts.map_sqlx_sqlite_pool_opts(move |pool| {
            let health = health.clone();
            pool.after_release(move |conn, _| keep_sqlite_connection(conn, health.clone()))
        });
    }
    if !is_sqlite_url(url) {
        let servers = std::sync::Arc::new(nodelay::server_addrs(url));
        let health = settings.health.clone();
        opts.map_sqlx_postgres_pool_opts(move |pool| {
            let servers = servers.clone();
            let health = health.clone();
            pool.after_release(move |conn, _| {
                discard_if_in_transaction::<sqlx::Postgres>(conn, health.clone(), "postgres")
            })
            .after_connect(move |_, _| {
                let servers = servers.clone();
                // A walk over every descriptor of the process (tens of thousands with many
                // clients connected): off the runtime's threads.
                Box::pin(async move {
                    let _ = tokio::task::spawn_blocking(move || nodelay::set_on_connections_to(&servers)).await;
                    Ok(())
                })
            })
        });
    }
    Database::connect(opts).await
}

/// `after_release` for every pool: a connection goes back only when no transaction is open on
/// it. A transaction whose COMMIT failed (a disk I/O error, say) and whose ROLLBACK failed too
/// stays open on its connection; the next `begin` on that connection only opens a savepoint
/// inside it, so everything written afterwards "commits" into a transaction that never ends,
/// holding SQLite's write lock. Such a connection is closed (which rolls back) and the pool
/// opens a fresh one.
fn discard_if_in_transaction<'c, DB>(
    conn: &'c mut DB::Connection,
    health: Arc<StorageHealth>,
    backend: &'static str,
) -> BoxFuture<'c, Result<bool, sqlx::Error>>
where
    DB: sqlx::Database,
{
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // A dropped transaction queues its ROLLBACK; a round trip lets it run first.
        conn.ping().await?;
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        health.connection_discarded(backend);
        Ok(false)
    })
}

/// `after_release` for SQLite: [`discard_if_in_transaction`], and after a recent storage
/// fault also a check that the connection can still write. A connection opened while the
/// write-ahead log could not be written (the pool replaces a discarded connection at once)
/// falls back to read-only for good: every write on it would fail after the fault is gone.
fn keep_sqlite_connection(
    conn: &mut sqlx::SqliteConnection,
    health: Arc<StorageHealth>,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if !discard_if_in_transaction::<sqlx::Sqlite>(conn, health.clone(), "sqlite").await? {
            return Ok(false);
        }
        if !health.failed_recently() {
            return Ok(true);
        }
        let mut handle = conn.lock_handle().await?;
        // SAFETY: the handle is locked for the call and stays open; the name is NUL-terminated.
        let read_only =
            unsafe { libsqlite3_sys::sqlite3_db_readonly(handle.as_raw_handle().as_ptr(), c"main".as_ptr()) };
        if read_only == 1 {
            health.connection_discarded("sqlite (read-only after a fault)");
            return Ok(false);
        }
        Ok(true)
    })
}

/// Only runs the migrations (the `switchboard migrate` command).
pub async fn migrate(url: &str) -> Result<(), sea_orm::DbErr> {
    connect(&Settings::new(url)).await.map(|_| ())
}

/// Cheap reachability probe for `/health`.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.execute_unprepared("SELECT 1").await.is_ok()
}

/// Starts a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later fails at once
/// with SQLITE_BUSY when another writer got in between, without waiting on the busy timeout.
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    if is_postgres(db) {
        return db.begin().await;
    }
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

pub(crate) fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// The rows of a `VALUES` list and the values bound to them, after `leading` values bound
/// earlier in the statement: `(?, ?), (?, ?)` on SQLite, `($2, $3), ($4, $5)` on PostgreSQL
/// after one leading value. For the few statements sea-query cannot build: an
/// `UPDATE … FROM (VALUES …)` writes each row's own value for a whole batch in one statement,
/// where sea-query would need one per row.
pub(crate) fn values_list<const N: usize>(
    backend: DbBackend,
    leading: Vec<sea_orm::Value>,
    rows: impl ExactSizeIterator<Item = [sea_orm::Value; N]>,
) -> (String, Vec<sea_orm::Value>) {
    let mut sql = String::with_capacity(rows.len() * N * 5);
    let mut values = leading;
    values.reserve(rows.len() * N);
    for (i, row) in rows.enumerate() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for (col, value) in row.into_iter().enumerate() {
            if col > 0 {
                sql.push_str(", ");
            }
            values.push(value);
            sql.push_str(&placeholder(backend, values.len()));
        }
        sql.push(')');
    }
    (sql, values)
}

/// The `n`th placeholder (from 1) of a statement, for [`values_list`] and its neighbours.
pub(crate) fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_string(),
    }
}
