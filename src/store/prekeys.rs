//! Socialink's device keys (see the `m20261220_000005_socialink` migration): registered
//! devices, their signed prekeys and one-time prekeys. The one-time prekey take is one
//! atomic statement that claims and returns, so a key is handed out at most once, whatever
//! runs concurrently on however many instances.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, Value};

use crate::domain::{KeyedDevice, PrekeyCounts, PublicPrekey, SignedPrekey};

/// SQL written with `$n` placeholders, as the backend wants them (`?n` on SQLite).
pub(crate) fn sql(backend: DbBackend, text: &str) -> String {
    match backend {
        DbBackend::Postgres => text.to_string(),
        _ => text.replace('$', "?"),
    }
}

pub(crate) fn statement(backend: DbBackend, text: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, sql(backend, text), values)
}

const DEVICE_COLUMNS: &str =
    "id, user_id, device_id, device_name, registration_id, identity_key, is_active, last_seen, created_at, registered_at";

fn device(row: &QueryResult) -> Result<KeyedDevice, DbErr> {
    Ok(KeyedDevice {
        row_id: row.try_get("", "id")?,
        user_id: row.try_get::<String>("", "user_id")?.into(),
        device_id: row.try_get::<String>("", "device_id")?.into(),
        device_name: row.try_get("", "device_name")?,
        registration_id: row.try_get::<i64>("", "registration_id")?,
        identity_key: row.try_get("", "identity_key")?,
        is_active: row.try_get("", "is_active")?,
        last_seen: row.try_get("", "last_seen")?,
        created_at: row.try_get("", "created_at")?,
        registered_at: row.try_get("", "registered_at")?,
    })
}

/// What a registration stores.
pub struct Registration<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub device_name: &'a str,
    pub registration_id: i64,
    pub identity_key: &'a str,
    pub signed_prekey: &'a SignedPrekey,
    pub onetime_prekeys: &'a [PublicPrekey],
}

pub enum Registered {
    New(KeyedDevice),
    /// The device is registered and active.
    AlreadyActive,
}

/// Registers a device, or re-registers a deactivated one (its keys replaced, its old one-time
/// prekeys dropped), in one transaction.
pub async fn register(db: &DatabaseConnection, r: Registration<'_>, now: DateTime<Utc>) -> Result<Registered, DbErr> {
    let backend = db.get_database_backend();
    let txn = super::begin_write(db).await?;
    let existing = txn
        .query_one_raw(statement(
            backend,
            &format!("SELECT {DEVICE_COLUMNS} FROM socialink_devices WHERE user_id = $1 AND device_id = $2"),
            vec![r.user_id.into(), r.device_id.into()],
        ))
        .await?
        .map(|row| device(&row))
        .transpose()?;
    let row_id = match existing {
        Some(d) if d.is_active => {
            txn.rollback().await?;
            return Ok(Registered::AlreadyActive);
        }
        Some(d) => {
            txn.execute_raw(statement(
                backend,
                "UPDATE socialink_devices SET device_name = $1, registration_id = $2, identity_key = $3, \
                 is_active = TRUE, last_seen = $4, registered_at = $4 WHERE id = $5",
                vec![
                    r.device_name.into(),
                    r.registration_id.into(),
                    r.identity_key.into(),
                    now.into(),
                    d.row_id.clone().into(),
                ],
            ))
            .await?;
            txn.execute_raw(statement(
                backend,
                "DELETE FROM socialink_prekeys WHERE device_row = $1",
                vec![d.row_id.clone().into()],
            ))
            .await?;
            d.row_id
        }
        None => {
            let row_id = uuid::Uuid::new_v4().to_string();
            txn.execute_raw(statement(
                backend,
                "INSERT INTO socialink_devices (id, user_id, device_id, device_name, registration_id, identity_key, \
                 is_active, last_seen, created_at, registered_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7, $7)",
                vec![
                    row_id.clone().into(),
                    r.user_id.into(),
                    r.device_id.into(),
                    r.device_name.into(),
                    r.registration_id.into(),
                    r.identity_key.into(),
                    now.into(),
                ],
            ))
            .await?;
            row_id
        }
    };
    insert_signed(&txn, &row_id, r.signed_prekey, now).await?;
    insert_onetime(&txn, &row_id, r.onetime_prekeys).await?;
    let stored = txn
        .query_one_raw(statement(
            backend,
            &format!("SELECT {DEVICE_COLUMNS} FROM socialink_devices WHERE id = $1"),
            vec![row_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("registered device".into()))?;
    let stored = device(&stored)?;
    txn.commit().await?;
    Ok(Registered::New(stored))
}

async fn insert_signed<C: ConnectionTrait>(
    db: &C,
    row_id: &str,
    key: &SignedPrekey,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    db.execute_raw(statement(
        db.get_database_backend(),
        "INSERT INTO socialink_signed_prekeys (device_row, key_id, public_key, signature, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
        vec![row_id.into(), key.id.into(), key.public_key.clone().into(), key.signature.clone().into(), now.into()],
    ))
    .await?;
    Ok(())
}

/// Stores one-time prekeys in the order given (their upload order); an id the device already
/// has is ignored. Returns how many were stored.
async fn insert_onetime<C: ConnectionTrait>(db: &C, row_id: &str, keys: &[PublicPrekey]) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let mut stored = 0;
    // Three values a row; 1,000 rows stay far below SQLite's limit of bound values.
    for chunk in keys.chunks(1000) {
        let rows = chunk.iter().map(|k| [Value::from(row_id), Value::from(k.id), Value::from(k.public_key.clone())]);
        let (list, values) = super::values_list(backend, Vec::new(), rows);
        let text = format!(
            "INSERT INTO socialink_prekeys (device_row, key_id, public_key) \
             SELECT column1, column2, column3 FROM (VALUES {list}) AS v WHERE true \
             ON CONFLICT (device_row, key_id) DO NOTHING"
        );
        stored += db.execute_raw(Statement::from_sql_and_values(backend, text, values)).await?.rows_affected();
    }
    Ok(stored)
}

/// A device by its owner and id, active or not.
pub async fn device_of(db: &DatabaseConnection, user: &str, device_id: &str) -> Result<Option<KeyedDevice>, DbErr> {
    let backend = db.get_database_backend();
    db.query_one_raw(statement(
        backend,
        &format!("SELECT {DEVICE_COLUMNS} FROM socialink_devices WHERE user_id = $1 AND device_id = $2"),
        vec![user.into(), device_id.into()],
    ))
    .await?
    .map(|row| device(&row))
    .transpose()
}

/// A user's active devices, most recently seen first.
pub async fn active_devices(db: &DatabaseConnection, user: &str) -> Result<Vec<KeyedDevice>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(statement(
            backend,
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM socialink_devices WHERE user_id = $1 AND is_active = TRUE \
                 ORDER BY last_seen DESC, created_at DESC"
            ),
            vec![user.into()],
        ))
        .await?;
    rows.iter().map(device).collect()
}

/// The device's newest signed prekey.
pub async fn newest_signed(db: &DatabaseConnection, row_id: &str) -> Result<Option<SignedPrekey>, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(statement(
            backend,
            "SELECT key_id, public_key, signature FROM socialink_signed_prekeys WHERE device_row = $1 \
             ORDER BY id DESC LIMIT 1",
            vec![row_id.into()],
        ))
        .await?;
    row.map(|r| {
        Ok(SignedPrekey {
            id: r.try_get("", "key_id")?,
            public_key: r.try_get("", "public_key")?,
            signature: r.try_get("", "signature")?,
        })
    })
    .transpose()
}

/// Most attempts at claiming a prekey when another request took the one aimed at.
const CLAIM_ATTEMPTS: usize = 8;

/// Claims the device's oldest unused one-time prekey: one statement that marks it used and
/// returns it, so two requests can never both get it. PostgreSQL skips rows another claim holds
/// (`FOR UPDATE SKIP LOCKED`) and takes the next; SQLite runs one writer at a time. A claim
/// that still came back empty while unused keys remain (it lost a race) tries again: a bundle
/// lacks a prekey only when none is left.
pub async fn claim_onetime(
    db: &DatabaseConnection,
    row_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<PublicPrekey>, DbErr> {
    let backend = db.get_database_backend();
    let lock = if backend == DbBackend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    let text = format!(
        "UPDATE socialink_prekeys SET used = TRUE, used_at = $1 \
         WHERE id = (SELECT id FROM socialink_prekeys WHERE device_row = $2 AND used = FALSE \
                     ORDER BY id LIMIT 1{lock}) \
           AND used = FALSE \
         RETURNING key_id, public_key"
    );
    for _ in 0..CLAIM_ATTEMPTS {
        let claimed = db.query_one_raw(statement(backend, &text, vec![now.into(), row_id.into()])).await?;
        if let Some(row) = claimed {
            return Ok(Some(PublicPrekey {
                id: row.try_get("", "key_id")?,
                public_key: row.try_get("", "public_key")?,
            }));
        }
        if counts(db, row_id).await?.unused == 0 {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Unused and used one-time prekeys of a device.
pub async fn counts<C: ConnectionTrait>(db: &C, row_id: &str) -> Result<PrekeyCounts, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(statement(
            backend,
            "SELECT COALESCE(SUM(CASE WHEN used = FALSE THEN 1 ELSE 0 END), 0) AS unused, \
                    COALESCE(SUM(CASE WHEN used = FALSE THEN 0 ELSE 1 END), 0) AS used \
             FROM socialink_prekeys WHERE device_row = $1",
            vec![row_id.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(PrekeyCounts::default()) };
    let unused: i64 = row.try_get("", "unused")?;
    let used: i64 = row.try_get("", "used")?;
    Ok(PrekeyCounts { unused: unused.max(0) as u64, used: used.max(0) as u64 })
}

/// Adds one-time prekeys to a device; returns how many were new.
pub async fn add_onetime(db: &DatabaseConnection, row_id: &str, keys: &[PublicPrekey]) -> Result<u64, DbErr> {
    let txn = super::begin_write(db).await?;
    let stored = insert_onetime(&txn, row_id, keys).await?;
    txn.commit().await?;
    Ok(stored)
}

/// Stores a new signed prekey; it is served from now on.
pub async fn rotate(
    db: &DatabaseConnection,
    row_id: &str,
    key: &SignedPrekey,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    insert_signed(db, row_id, key, now).await
}

/// Deactivates a device and drops its queue, in one transaction. False when it was not active.
pub async fn deactivate(db: &DatabaseConnection, row_id: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let txn = super::begin_write(db).await?;
    let changed = txn
        .execute_raw(statement(
            backend,
            "UPDATE socialink_devices SET is_active = FALSE WHERE id = $1 AND is_active = TRUE",
            vec![row_id.into()],
        ))
        .await?
        .rows_affected();
    txn.execute_raw(statement(backend, "DELETE FROM socialink_queue WHERE device_row = $1", vec![row_id.into()]))
        .await?;
    txn.commit().await?;
    Ok(changed > 0)
}

/// Records that a device was seen now.
pub async fn seen(db: &DatabaseConnection, row_id: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(statement(
        backend,
        "UPDATE socialink_devices SET last_seen = $1 WHERE id = $2",
        vec![now.into(), row_id.into()],
    ))
    .await?;
    Ok(())
}
