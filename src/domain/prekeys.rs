//! Signal-style device keys (Socialink): a registered device with its Ed25519 identity key,
//! its signed prekeys and its one-time prekeys. The server holds public keys only; byte
//! fields are kept as standard padded base64 text.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{DeviceId, UserId};

/// A device registered with keys. `row_id` is the server's own id of the registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedDevice {
    pub row_id: String,
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub device_name: String,
    pub registration_id: i64,
    /// Standard base64 of the 32-byte Ed25519 public key.
    pub identity_key: String,
    pub is_active: bool,
    pub last_seen: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// When it was (last) registered: messages stored before this are not queued for it.
    pub registered_at: DateTime<Utc>,
}

/// A public key with the client's id for it (standard base64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicPrekey {
    pub id: i64,
    pub public_key: String,
}

/// A signed prekey: its public key signed by the device's identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPrekey {
    pub id: i64,
    pub public_key: String,
    pub signature: String,
}

/// What a sender needs to start a session with a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrekeyBundle {
    pub device: KeyedDevice,
    pub signed_prekey: SignedPrekey,
    /// `None` once the device has no unused one-time prekey left.
    pub onetime_prekey: Option<PublicPrekey>,
}

/// A device's one-time prekeys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrekeyCounts {
    pub unused: u64,
    pub used: u64,
}

/// A keyed device's news for its owner's connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum DeviceNews {
    /// The device was deactivated: its connections close.
    Deactivated { user_id: UserId, device_id: DeviceId },
    /// A bundle fetch left the device few one-time prekeys: it should upload more.
    PrekeysLow { user_id: UserId, device_id: DeviceId, unused: u64 },
}
