//! Device public keys, one per user and device.

use chrono::{DateTime, Utc};
use entity::device_key;
use sea_orm::{ActiveValue, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

use super::is_postgres;

/// What an upload did.
pub enum Uploaded {
    /// The device had no key.
    New(device_key::Model),
    /// The device had another key: replaced, with its age and verification reset.
    Rotated(device_key::Model),
    /// The device already had this very key: nothing changed.
    Same(device_key::Model),
}

/// Stores `public_key` for the device. `verified_at` is what a new or rotated key starts
/// with (a first device is trusted on first use; the caller decides).
pub async fn upload(
    db: &DatabaseConnection,
    user: &str,
    device: &str,
    public_key: &str,
    fingerprint: &str,
    verified_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Uploaded, DbErr> {
    let txn = super::begin_write(db).await?;
    let mut query = device_key::Entity::find_by_id((user.to_string(), device.to_string()));
    if is_postgres(&txn) {
        query = sea_orm::QuerySelect::lock_exclusive(query);
    }
    let existing = query.one(&txn).await?;
    let row = device_key::ActiveModel {
        user_id: ActiveValue::Unchanged(user.to_string()),
        device_id: ActiveValue::Unchanged(device.to_string()),
        public_key: Set(public_key.to_string()),
        fingerprint: Set(fingerprint.to_string()),
        verified_at: Set(verified_at),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let result = match existing {
        Some(same) if same.fingerprint == fingerprint => Uploaded::Same(same),
        Some(_) => Uploaded::Rotated(device_key::Entity::update(row).exec(&txn).await?),
        None => {
            let row =
                device_key::ActiveModel { user_id: Set(user.to_string()), device_id: Set(device.to_string()), ..row };
            device_key::Entity::insert(row).exec_without_returning(&txn).await?;
            let stored = device_key::Entity::find_by_id((user.to_string(), device.to_string()))
                .one(&txn)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(format!("device key {user}/{device}")))?;
            Uploaded::New(stored)
        }
    };
    txn.commit().await?;
    Ok(result)
}

/// A user's device keys, oldest device first.
pub async fn of_user(db: &DatabaseConnection, user: &str) -> Result<Vec<device_key::Model>, DbErr> {
    device_key::Entity::find()
        .filter(device_key::Column::UserId.eq(user))
        .order_by_asc(device_key::Column::CreatedAt)
        .order_by_asc(device_key::Column::DeviceId)
        .all(db)
        .await
}

pub async fn get(db: &DatabaseConnection, user: &str, device: &str) -> Result<Option<device_key::Model>, DbErr> {
    device_key::Entity::find_by_id((user.to_string(), device.to_string())).one(db).await
}

/// Marks the device verified, if its key still has this fingerprint (a rotation in between
/// must not inherit the verification). Returns the row when it was marked.
pub async fn mark_verified(
    db: &DatabaseConnection,
    user: &str,
    device: &str,
    fingerprint: &str,
    at: DateTime<Utc>,
) -> Result<Option<device_key::Model>, DbErr> {
    let changed = device_key::Entity::update_many()
        .col_expr(device_key::Column::VerifiedAt, sea_orm::sea_query::Expr::value(at))
        .filter(device_key::Column::UserId.eq(user))
        .filter(device_key::Column::DeviceId.eq(device))
        .filter(device_key::Column::Fingerprint.eq(fingerprint))
        .exec(db)
        .await?
        .rows_affected;
    if changed == 0 {
        return Ok(None);
    }
    get(db, user, device).await
}
