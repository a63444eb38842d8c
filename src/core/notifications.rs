//! Notifications: stored per user and pushed to their devices as they happen (mentions,
//! missed calls, being added to a chat). A user reads, clears and lists only their own.

use chrono::{DateTime, Utc};

use super::{
    check_id,
    model::{Actor, Audience, Event, Notification, NotificationData, UserId},
    Core, DEFAULT_PAGE, MAX_PAGE,
};
use crate::{
    error::{AppError, AppResult, Field},
    store,
};

impl Core {
    /// Stores a notification for each user and pushes it to their devices. It is a side effect
    /// of an operation that already succeeded, so a failure is logged rather than returned.
    pub(crate) async fn notify(&self, users: &[UserId], data: NotificationData) {
        if users.is_empty() {
            return;
        }
        let now = Utc::now();
        let notifications: Vec<Notification> = users
            .iter()
            .map(|user| Notification {
                id: uuid::Uuid::now_v7().to_string(),
                user_id: user.clone(),
                data: data.clone(),
                read: false,
                created_at: now,
                unread: None,
            })
            .collect();
        let rows = match notifications.iter().map(to_row).collect::<Result<Vec<_>, _>>() {
            Ok(rows) => rows,
            Err(e) => return e.log_if_internal("notification"),
        };
        if let Err(e) = store::notifications::insert_many(&self.db, &rows).await {
            return AppError::from(e).log_if_internal("notification");
        }
        // The badge count is a nicety: without it the notification still goes out.
        let unread = store::notifications::count_unread(&self.db, users).await.unwrap_or_else(|e| {
            AppError::from(e).log_if_internal("notification count");
            Vec::new()
        });
        for mut n in notifications {
            n.unread = unread.iter().find(|(user, _)| *user == n.user_id).map(|(_, count)| *count);
            self.hub.publish(&Audience::Users(vec![n.user_id.clone()]), Event::Notification(n), None);
        }
    }

    /// The caller's unread notifications, newest first.
    pub async fn pending_notifications(&self, actor: &Actor, limit: Option<u64>) -> AppResult<Vec<Notification>> {
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        store::notifications::unread(&self.db, &actor.user_id, limit).await?.into_iter().map(from_row).collect()
    }

    /// Marks one of the caller's notifications read (again: no error).
    pub async fn read_notification(&self, actor: &Actor, id: &str) -> AppResult<Notification> {
        check_id(Field::Notification, id)?;
        let row = store::notifications::mark_read(&self.db, &actor.user_id, id).await?.ok_or_else(not_found)?;
        from_row(row)
    }

    /// Deletes one of the caller's notifications. Another user's id is answered exactly like
    /// an unknown one, so ids cannot be probed.
    pub async fn clear_notification(&self, actor: &Actor, id: &str) -> AppResult<()> {
        check_id(Field::Notification, id)?;
        if store::notifications::delete(&self.db, &actor.user_id, id).await? {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// Deletes all of the caller's notifications; returns how many there were.
    pub async fn clear_all_notifications(&self, actor: &Actor) -> AppResult<u64> {
        Ok(store::notifications::delete_all(&self.db, &actor.user_id).await?)
    }
}

fn not_found() -> AppError {
    AppError::NotFound("notification not found".into())
}

fn to_row(n: &Notification) -> AppResult<entity::notification::Model> {
    let data =
        serde_json::to_value(&n.data).map_err(|e| AppError::Internal(anyhow::anyhow!("notification data: {e}")))?;
    Ok(entity::notification::Model {
        id: n.id.clone(),
        user_id: n.user_id.clone().into(),
        kind: n.data.kind().to_string(),
        data,
        read: n.read,
        created_at: n.created_at,
        read_at: None::<DateTime<Utc>>,
    })
}

fn from_row(row: entity::notification::Model) -> AppResult<Notification> {
    let data: NotificationData = serde_json::from_value(row.data)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored notification {}: {e}", row.id)))?;
    Ok(Notification {
        id: row.id,
        user_id: row.user_id.into(),
        data,
        read: row.read,
        created_at: row.created_at,
        unread: None,
    })
}
