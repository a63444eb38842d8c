//! Presence and typing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ChatId, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceStatus {
    Online,
    Away,
    Busy,
    Offline,
}

impl PresenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::Online => "online",
            PresenceStatus::Away => "away",
            PresenceStatus::Busy => "busy",
            PresenceStatus::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(PresenceStatus::Online),
            "away" => Some(PresenceStatus::Away),
            "busy" => Some(PresenceStatus::Busy),
            "offline" => Some(PresenceStatus::Offline),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Presence {
    pub user_id: UserId,
    pub status: PresenceStatus,
    pub custom_status: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Typing {
    pub chat_id: ChatId,
    pub user_id: UserId,
    pub username: Option<String>,
    pub typing: bool,
    #[serde(default = "Utc::now")]
    pub at: DateTime<Utc>,
}
