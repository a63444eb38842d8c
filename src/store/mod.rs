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
                // A statement that may fail halfway inside a transaction (every multi-row
                // `INSERT` of a batch, the `UPDATE … FROM (VALUES …)`) keeps a statement
                // journal, which SQLite spills to a temporary file past 64 KiB: created, written
                // page by page and deleted once per batch, as many writes as the log itself.
                // In memory it is a copy. Sorts and `IN` lists' temporary tables stay there too.
                .pragma("temp_store", "memory")
                .pragma("mmap_size", mmap_size.clone())
                // Checkpoint every ~40 MiB of log rather than every 4 MiB: a busy chat rewrites
                // the same index pages batch after batch, and a later checkpoint copies each
                // page once for many commits.
                .pragma("wal_autocheckpoint", "10000")
        });
        let health = settings.health.clone();
        opts.map_sqlx_sqlite_pool_opts(move |pool| {
            let health = health.clone();
            pool.after_connect(|conn, _| Box::pin(keep_query_plans(conn)))
                .after_release(move |conn, _| keep_sqlite_connection(conn, health.clone()))
        });
    }
    if !is_sqlite_url(url) {
        let walker = nodelay::Walker::spawn(nodelay::server_addrs(url));
        let health = settings.health.clone();
        opts.map_sqlx_postgres_pool_opts(move |pool| {
            let walker = walker.clone();
            let health = health.clone();
            pool.after_release(move |conn, _| {
                discard_if_in_transaction::<sqlx::Postgres>(conn, health.clone(), "postgres")
            })
            .after_connect(move |_, _| {
                // Never waited for: see `nodelay::Walker`.
                walker.request();
                Box::pin(async { Ok(()) })
            })
        });
    }
    Database::connect(opts).await
}

/// `after_connect` for SQLite: prepared statements keep their query plan whatever values are
/// bound to them (SQLite's "query planner stability guarantee").
///
/// Without it, a statement whose plan looked at a bound value is thrown away and prepared
/// again every time that value is bound anew. Every `LIMIT ?` does that (SeaORM's `one()`
/// binds its `LIMIT 1`), as do bound values compared with a partial index or a `LIKE`
/// pattern: callgrind found 97 % of SQLite's statement preparation on a reconnect to be such
/// re-preparation, ~20 % of the reconnect's instructions. Switchboard never runs `ANALYZE`,
/// so no plan gains anything from looking at the values.
async fn keep_query_plans(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let mut now_enabled: std::ffi::c_int = 0;
    // SAFETY: the handle is locked for the call and stays open; QPSG takes an int and an
    // int pointer, which outlives the call.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            handle.as_raw_handle().as_ptr(),
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            &mut now_enabled as *mut std::ffi::c_int,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK || now_enabled != 1 {
        // Only slower, never wrong: keep the connection.
        tracing::warn!(rc, "SQLite would not keep query plans stable (SQLITE_DBCONFIG_ENABLE_QPSG)");
    }
    Ok(())
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

/// How many connections the pool may open.
pub fn pool_size(db: &DatabaseConnection) -> u32 {
    match db.get_database_backend() {
        DbBackend::Postgres => db.get_postgres_connection_pool().options().get_max_connections(),
        DbBackend::Sqlite => db.get_sqlite_connection_pool().options().get_max_connections(),
        _ => 1,
    }
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
            // Written in place: a batch's statements have thousands of placeholders, and one
            // `String` each was a tenth of the writer's work per message (callgrind).
            push_placeholder(&mut sql, backend, values.len());
        }
        sql.push(')');
    }
    (sql, values)
}

/// The `n`th placeholder (from 1) of a statement, for [`values_list`] and its neighbours.
pub(crate) fn placeholder(backend: DbBackend, n: usize) -> String {
    let mut sql = String::with_capacity(6);
    push_placeholder(&mut sql, backend, n);
    sql
}

/// Appends the `n`th placeholder (from 1) to `sql`.
fn push_placeholder(sql: &mut String, backend: DbBackend, n: usize) {
    match backend {
        DbBackend::Postgres => {
            use std::fmt::Write as _;
            // Writing to a `String` cannot fail.
            let _ = write!(sql, "${n}");
        }
        _ => sql.push('?'),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use super::*;

    /// Re-preparations counted by SQLite over every statement sqlx keeps on the connection.
    async fn reprepared(db: &DatabaseConnection) -> i64 {
        let pool = db.get_sqlite_connection_pool();
        let mut conn = pool.acquire().await.expect("a pooled connection");
        let mut handle = conn.lock_handle().await.expect("the raw handle");
        let raw = handle.as_raw_handle().as_ptr();
        let mut total = 0i64;
        // SAFETY: the handle is locked for the walk; statements are only read, none finalized.
        unsafe {
            let mut stmt = libsqlite3_sys::sqlite3_next_stmt(raw, std::ptr::null_mut());
            while !stmt.is_null() {
                total += i64::from(libsqlite3_sys::sqlite3_stmt_status(
                    stmt,
                    libsqlite3_sys::SQLITE_STMTSTATUS_REPREPARE,
                    0,
                ));
                stmt = libsqlite3_sys::sqlite3_next_stmt(raw, stmt);
            }
        }
        total
    }

    /// The files this process holds open whose path contains `part` (deleted ones too).
    fn open_files_named(part: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
        entries
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|target| target.display().to_string())
            .filter(|target| target.contains(part))
            .collect()
    }

    #[tokio::test]
    async fn a_large_batch_keeps_its_statement_journal_in_memory() {
        assert!(std::path::Path::new("/proc/self/fd").exists(), "this test reads /proc/self/fd (Linux)");
        let dir = tempfile::tempdir().expect("a scratch directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("journal.db").display());
        let db = open(&Settings::new(&url), 1).await.expect("opens");
        db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v TEXT NOT NULL)")
            .await
            .expect("creates");
        let insert = |suffix: &'static str| {
            let rows =
                (0..4000).map(move |i| [sea_orm::Value::from(format!("key-{i:06}{suffix}")), "x".repeat(200).into()]);
            let (list, values) = values_list(DbBackend::Sqlite, Vec::new(), rows);
            Statement::from_sql_and_values(DbBackend::Sqlite, format!("INSERT INTO t (k, v) VALUES {list}"), values)
        };
        db.execute_raw(insert("")).await.expect("inserts the first rows");
        let txn = begin_write(&db).await.expect("begins");
        // Rows whose keys fall between the first ones, in one statement that may fail halfway
        // (two unique keys): it changes ~1 MiB of existing pages, whose old contents SQLite
        // keeps in a statement journal, on disk past 64 KiB unless told otherwise.
        txn.execute_raw(insert("-between")).await.expect("inserts");
        // SQLite names its temporary files `etilqs_…` and deletes them at once: only the open
        // descriptor shows one, while the transaction lasts.
        let temporary = open_files_named("etilqs_");
        txn.commit().await.expect("commits");
        assert!(temporary.is_empty(), "the batch wrote a temporary file: {temporary:?}");
    }

    #[tokio::test]
    async fn a_bound_limit_does_not_reprepare_the_statement_at_every_run() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("plans.db").display());
        let db = open(&Settings::new(&url), 1).await.expect("opens");
        db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)").await.expect("creates");
        for limit in 1..=20i64 {
            let stmt = Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT id, v FROM t WHERE id > ? ORDER BY id LIMIT ?",
                [limit.into(), limit.into()],
            );
            db.query_all_raw(stmt).await.expect("selects");
        }
        assert_eq!(reprepared(&db).await, 0, "a statement was prepared again for a new bound value");
    }
}
