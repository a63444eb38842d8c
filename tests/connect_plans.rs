//! The two reads every connect makes, the presence circle (`store::history::contacts`) and a
//! catch-up's cursors (`store::devices::cursors`), and the visibility check of a presence
//! subscription that clients send right after (`store::history::shared_with`), reach rows
//! through index lookups however little the database knows about its tables. A reconnect wave right after a bulk import (or
//! while a database grows fast) meets tables PostgreSQL has not analyzed yet: with the earlier
//! statements it planned hash joins over whole tables and, for prepared statements, a walk of a
//! whole index, and a 19,000-client wave took a minute instead of 20 s.
//!
//! Here: 20,000 users, each in a direct chat with one busy user, never analyzed. Every plan
//! (PostgreSQL: the custom and the generic plan of the prepared statement; SQLite: its query
//! plan) must touch `members`, `conversations` and `device_cursors` only by index conditions,
//! and the reads must still answer right.

mod common;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use serde_json::Value;
use switchboard::store::{
    devices::cursors_query,
    history::{contacts_query, shared_with_query},
};

const USERS: usize = 20_000;
const TABLES: [&str; 3] = ["members", "conversations", "device_cursors"];
const BOUNDED: &str = "by index condition";
const UNBOUNDED: &str = "without index condition";

#[tokio::test]
async fn connect_reads_use_indexes_on_tables_never_analyzed() {
    for backend in common::backends() {
        let (url, _dir, pg_name) = common::fresh_database(backend).await;
        let db = Database::connect(&url).await.expect("connect");
        Migrator::up(&db, None).await.expect("migrate");
        fill(&db).await;

        // They still answer right: the circle of u7 is the busy user, and u7 is owed one
        // message on its default device.
        let rows = db.query_all_raw(contacts_query(db.get_database_backend(), "u7", 500)).await.expect("contacts");
        let circle: Vec<String> = rows.iter().map(|r| r.try_get("", "user_id").expect("user_id")).collect();
        assert_eq!(circle, vec!["busy".to_string()], "{backend}: u7's presence circle");
        let busy = switchboard::store::history::contacts(&db, "busy", 3).await.expect("contacts");
        assert_eq!(busy, vec!["u0", "u1", "u10"], "{backend}: the circle is ordered by id and capped");
        let candidates: [switchboard::domain::UserId; 2] = ["busy".into(), "u8".into()];
        let shared = switchboard::store::history::shared_with(&db, "u7", &candidates).await.expect("shared_with");
        assert_eq!(
            shared,
            vec![switchboard::domain::UserId::from("busy")],
            "{backend}: u7 shares a chat with busy, not with u8"
        );
        let owed = switchboard::store::devices::cursors(&db, "u7", "").await.expect("cursors");
        assert_eq!(owed, vec![("c7".to_string(), 1, 2)], "{backend}: u7's cursor and the chat's last seq");

        let statements = [
            ("contacts", contacts_query(db.get_database_backend(), "u7", 500)),
            ("cursors", cursors_query(db.get_database_backend(), "u7", "")),
            ("shared_with", shared_with_query(db.get_database_backend(), "u7", &["busy".into(), "u8".into()])),
        ];
        for (name, statement) in statements {
            let scans = match backend {
                "postgres" => {
                    let mut scans = postgres_scans(&db, &statement, "force_custom_plan").await;
                    scans.extend(postgres_scans(&db, &statement, "force_generic_plan").await);
                    scans
                }
                _ => sqlite_scans(&db, &statement).await,
            };
            assert!(!scans.is_empty(), "{backend} {name}: the plan was read");
            let unbounded: Vec<&String> = scans.iter().filter(|s| s.contains(UNBOUNDED)).collect();
            assert!(unbounded.is_empty(), "{backend} {name}: reads without an index condition: {unbounded:?}");
        }

        drop(db);
        common::drop_database(pg_name).await;
    }
}

/// 20,000 direct chats between `busy` and `u0`…`u19999`, each with two messages; every member
/// has a default-device cursor at 1. Inserted in plain multi-row statements, never analyzed.
async fn fill(db: &DatabaseConnection) {
    let backend = db.get_database_backend();
    let now = "CURRENT_TIMESTAMP";
    for start in (0..USERS).step_by(500) {
        let ids: Vec<usize> = (start..(start + 500).min(USERS)).collect();
        let list = |row: &dyn Fn(usize) -> String| ids.iter().map(|i| row(*i)).collect::<Vec<_>>().join(", ");
        let statements = [
            format!(
                "INSERT INTO conversations (id, kind, created_by, last_seq, created_at, updated_at) VALUES {}",
                list(&|i| format!("('c{i}', 'direct', 'busy', 2, {now}, {now})"))
            ),
            format!(
                "INSERT INTO members (conversation_id, user_id, role, delivered_seq, read_seq, joined_at) VALUES {}",
                list(&|i| format!("('c{i}', 'busy', 'member', 2, 2, {now}), ('c{i}', 'u{i}', 'member', 1, 1, {now})"))
            ),
            format!(
                "INSERT INTO device_cursors (user_id, device_id, conversation_id, delivered_seq) VALUES {}",
                list(&|i| format!("('busy', '', 'c{i}', 2), ('u{i}', '', 'c{i}', 1)"))
            ),
        ];
        for sql in statements {
            db.execute_raw(Statement::from_string(backend, sql)).await.expect("fill");
        }
    }
}

/// What each scan node of PostgreSQL's plan reads in `TABLES`, as "<node> on <table>" and
/// [`BOUNDED`] or [`UNBOUNDED`], under `plan_cache_mode` (`force_generic_plan`
/// plans for any parameter value, as a prepared statement does after its first runs).
async fn postgres_scans(db: &DatabaseConnection, statement: &Statement, mode: &str) -> Vec<String> {
    let txn = db.begin().await.expect("begin");
    let sql = |s: String| Statement::from_string(DbBackend::Postgres, s);
    txn.execute_raw(sql(format!("SET LOCAL plan_cache_mode = {mode}"))).await.expect("mode");
    txn.execute_raw(sql(format!("PREPARE probe AS {}", statement.sql))).await.expect("prepare");
    let args: Vec<String> = statement
        .values
        .iter()
        .flat_map(|v| v.0.iter())
        .map(|v| match v {
            sea_orm::Value::String(Some(s)) => format!("'{s}'"),
            sea_orm::Value::BigInt(Some(n)) => n.to_string(),
            other => panic!("unexpected parameter {other:?}"),
        })
        .collect();
    let row = txn
        .query_one_raw(sql(format!("EXPLAIN (FORMAT JSON) EXECUTE probe({})", args.join(", "))))
        .await
        .expect("explain")
        .expect("a plan");
    let plan: Value = row.try_get("", "QUERY PLAN").expect("plan json");
    // A prepared statement outlives the transaction; the setting does not.
    txn.execute_raw(sql("DEALLOCATE probe".into())).await.expect("deallocate");
    txn.rollback().await.expect("rollback");
    let mut scans = Vec::new();
    collect_pg_scans(&plan[0]["Plan"], &mut scans);
    scans
}

fn collect_pg_scans(node: &Value, out: &mut Vec<String>) {
    let table = node["Relation Name"].as_str().or_else(|| node["Index Name"].as_str().map(table_of_index));
    if let (Some(kind), Some(table)) = (node["Node Type"].as_str(), table) {
        if TABLES.contains(&table) && kind != "Bitmap Heap Scan" {
            // A bitmap heap scan reads what its bitmap index scan (a child node) found.
            let bounded = node.get("Index Cond").is_some();
            out.push(format!("{kind} on {table} {}", if bounded { BOUNDED } else { UNBOUNDED }));
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect_pg_scans(child, out);
    }
}

fn table_of_index(index: &str) -> &'static str {
    match index {
        "idx_members_user" | "members_pkey" => "members",
        "conversations_pkey" => "conversations",
        "device_cursors_pkey" => "device_cursors",
        _ => "another table",
    }
}

/// SQLite's query plan, one line per table read: `SEARCH` uses an index condition, `SCAN`
/// reads the whole table (or the whole of one of its indexes).
async fn sqlite_scans(db: &DatabaseConnection, statement: &Statement) -> Vec<String> {
    let explain = Statement::from_sql_and_values(
        DbBackend::Sqlite,
        format!("EXPLAIN QUERY PLAN {}", statement.sql),
        statement.values.clone().map(|v| v.0).unwrap_or_default(),
    );
    let rows = db.query_all_raw(explain).await.expect("explain query plan");
    rows.iter()
        .map(|r| r.try_get::<String>("", "detail").expect("detail"))
        .filter_map(|detail| {
            let mut words = detail.split_whitespace();
            let (verb, table) = (words.next()?, words.next()?);
            let table = match table {
                "m" | "o" | "members" => "members",
                "v" | "conversations" => "conversations",
                "c" | "device_cursors" => "device_cursors",
                _ => return None,
            };
            let bounded = verb == "SEARCH";
            (verb == "SEARCH" || verb == "SCAN")
                .then(|| format!("{table} {}: {detail}", if bounded { BOUNDED } else { UNBOUNDED }))
        })
        .collect()
}
