//! Upgrading a database of the previous release (per-user delivery) to per-device delivery:
//! each member's delivered cursor becomes their default device's, so a client that names no
//! device is pushed exactly what it was pushed before the upgrade: nothing lost, nothing twice.

mod common;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database};

/// The migrations of the release before per-device delivery.
const BEFORE_DEVICES: u32 = 3;

#[tokio::test]
async fn per_user_cursors_carry_over_as_each_users_default_device() {
    for backend in common::backends() {
        let (url, _dir, pg_name) = common::fresh_database(backend).await;
        let db = Database::connect(&url).await.expect("connect");
        Migrator::up(&db, Some(BEFORE_DEVICES)).await.expect("the previous release's schema");
        for sql in [
            "INSERT INTO conversations (id, kind, created_by, last_seq, created_at, updated_at) \
             VALUES ('c1', 'direct', 'alice', 5, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "INSERT INTO members (conversation_id, user_id, role, delivered_seq, read_seq, joined_at) \
             VALUES ('c1', 'alice', 'owner', 3, 2, CURRENT_TIMESTAMP)",
            "INSERT INTO members (conversation_id, user_id, role, delivered_seq, read_seq, joined_at) \
             VALUES ('c1', 'bob', 'member', 5, 5, CURRENT_TIMESTAMP)",
        ] {
            db.execute_unprepared(sql).await.expect(sql);
        }

        Migrator::up(&db, None).await.expect("upgrade");
        let carried = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM device_cursors WHERE device_id = '' AND \
                 ((user_id = 'alice' AND delivered_seq = 3) OR (user_id = 'bob' AND delivered_seq = 5))",
            ))
            .await
            .expect("count")
            .and_then(|row| row.try_get::<i64>("", "n").ok());
        assert_eq!(carried, Some(2), "{backend}: the migration wrote each member's cursor for the default device");

        let cursors = |user: &'static str, device: &'static str| {
            let db = db.clone();
            async move { switchboard::store::devices::cursors(&db, user, device).await.expect("cursors") }
        };
        assert_eq!(cursors("alice", "").await, vec![("c1".to_string(), 3, 5)], "{backend}: alice keeps her cursor");
        assert_eq!(cursors("bob", "").await, vec![("c1".to_string(), 5, 5)], "{backend}: bob keeps his");

        // A device alice never used before starts where her devices are, not at the start.
        assert!(switchboard::store::devices::register(&db, "alice", "tablet").await.expect("register"));
        assert_eq!(cursors("alice", "tablet").await, vec![("c1".to_string(), 3, 5)], "{backend}: a new device");
        // Its own deliveries move only its own cursor.
        switchboard::store::devices::advance(&db, &[("c1", "alice", "tablet", 5)]).await.expect("advance");
        assert_eq!(cursors("alice", "tablet").await, vec![("c1".to_string(), 5, 5)]);
        assert_eq!(cursors("alice", "").await, vec![("c1".to_string(), 3, 5)], "{backend}: the default device");

        drop(db);
        common::drop_database(pg_name).await;
    }
}
