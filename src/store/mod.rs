//! Storage: the only code that touches `sea_orm` and the `entity` crate. The core calls these
//! functions and never builds a query itself.

pub mod attachments;
pub mod calls;
pub mod conversations;
pub mod edits;
pub mod history;
pub mod keys;
pub mod media;
pub mod messages;
mod nodelay;
pub mod notifications;
pub mod reactions;
pub mod redis;
pub mod shared;
pub mod users;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
};

pub use sea_orm::DatabaseConnection as Db;

/// Connects and applies pending migrations, so a fresh SQLite file or an empty PostgreSQL
/// database is ready with no manual step.
pub async fn connect(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let db = open(url, if is_sqlite_url(url) { 8 } else { 20 }).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// One connection of its own for the message writer (see `core::writer`), which then never
/// queues for a pooled connection behind the readers. `None` for an in-memory SQLite database,
/// which a second connection would not see.
pub async fn connect_writer(url: &str) -> Option<Result<DatabaseConnection, sea_orm::DbErr>> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    Some(open(url, 1).await)
}

fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

async fn open(url: &str, max_connections: u32) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false).acquire_timeout(Duration::from_secs(10));
    opts.max_connections(max_connections).min_connections(1);
    if is_sqlite_url(url) {
        // WAL lets readers run beside the single writer; FULL sync makes "acked" mean "on disk"
        // even across a power cut, and group commits (see core::writer) pay for the fsync.
        // A page cache (up to 32 MiB a connection) and memory-mapped reads: indexes of a busy
        // messages table are read all the time, and without them every page read is a
        // `pread` copy from the operating system's cache.
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(15))
                .pragma("cache_size", "-32768")
                .pragma("mmap_size", "268435456")
                // Checkpoint every ~40 MiB of log rather than every 4 MiB: a busy chat rewrites
                // the same index pages batch after batch, and a later checkpoint copies each
                // page once for many commits.
                .pragma("wal_autocheckpoint", "10000")
        });
    }
    if !is_sqlite_url(url) {
        let servers = std::sync::Arc::new(nodelay::server_addrs(url));
        opts.map_sqlx_postgres_pool_opts(move |pool| {
            let servers = servers.clone();
            pool.after_connect(move |_, _| {
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

/// Only runs the migrations (the `switchboard migrate` command).
pub async fn migrate(url: &str) -> Result<(), sea_orm::DbErr> {
    connect(url).await.map(|_| ())
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
