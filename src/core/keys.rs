//! Device public keys for end-to-end encryption, and their verification.
//!
//! Each device of a user uploads one public key; the server stores and hands it out and never
//! needs a private key. A device is *verified* when its owner confirmed, from another device,
//! that the key the server holds is the one the device made: the new device shows a six-digit
//! code derived from its own key's fingerprint, and the user types it on a device they already
//! trust, which sends it to `verify`. The server recomputes the code from the key it stores;
//! a key swapped on the way (or on the server) gives another code and fails. A user's first
//! device has nothing to be confirmed from and is trusted on first use.
//!
//! With `VERIFY_DEVICE_REQUIRED` (the default), other users are only handed verified keys,
//! so nobody encrypts to a device its owner has not confirmed. Keys older than
//! `KEY_ROTATION_DAYS` are reported `rotation_due`; uploading a new key rotates it.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::{check_id, model::Actor, Core};
use crate::{
    error::{AppError, AppResult, Field},
    store::{self, keys::Uploaded},
};

/// Largest accepted public key (PEM or base64 text), in bytes: room for RSA-4096 in PEM.
const MAX_PUBLIC_KEY: usize = 8 * 1024;

#[derive(Clone, Debug)]
pub struct DeviceKey {
    pub user_id: String,
    pub device_id: String,
    pub public_key: String,
    pub fingerprint: String,
    pub verified: bool,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the key falls due for rotation (`None`: never).
    pub rotate_after: Option<DateTime<Utc>>,
    pub rotation_due: bool,
}

/// The outcome of an upload.
pub struct KeyUpload {
    pub key: DeviceKey,
    /// False when the device already had this very key.
    pub changed: bool,
}

/// SHA-256 of the key as uploaded (surrounding whitespace ignored), lowercase hex.
pub fn fingerprint(public_key: &str) -> String {
    Sha256::digest(public_key.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The six-digit verification code of a fingerprint: its first four bytes as a big-endian
/// number, modulo one million, zero-padded. Clients compute it the same way from their own key.
pub fn verification_code(fingerprint: &str) -> String {
    let value = (0..4)
        .filter_map(|i| fingerprint.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .fold(0u64, |acc, b| (acc << 8) | b as u64);
    format!("{:06}", value % 1_000_000)
}

impl Core {
    fn device_key(&self, row: entity::device_key::Model) -> DeviceKey {
        let days = self.config.key_rotation_days;
        let rotate_after = (days > 0).then(|| row.created_at + Duration::days(days as i64));
        DeviceKey {
            rotation_due: rotate_after.is_some_and(|at| at <= Utc::now()),
            rotate_after,
            verified: row.verified_at.is_some(),
            verified_at: row.verified_at,
            user_id: row.user_id,
            device_id: row.device_id,
            public_key: row.public_key,
            fingerprint: row.fingerprint,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }

    /// Stores the public key of one of the caller's devices. A different key for a known
    /// device rotates it: it must be verified again (unless it is the only device).
    pub async fn upload_key(&self, actor: &Actor, device_id: &str, public_key: &str) -> AppResult<KeyUpload> {
        check_id(Field::Device, device_id)?;
        let key = public_key.trim();
        if key.is_empty() {
            return Err(AppError::validation("publicKey is empty"));
        }
        if key.len() > MAX_PUBLIC_KEY {
            return Err(AppError::validation(format!("publicKey is longer than {MAX_PUBLIC_KEY} bytes")));
        }
        if key.chars().any(|c| c.is_control() && c != '\n' && c != '\r') {
            return Err(AppError::validation("publicKey must be text (PEM or base64)"));
        }
        let others = store::keys::of_user(&self.db, &actor.user_id).await?;
        let trusted_elsewhere = others.iter().any(|k| k.device_id != device_id && k.verified_at.is_some());
        let now = Utc::now();
        // Trust on first use: with no other trusted device there is nothing to verify from.
        let verified_at = (!trusted_elsewhere).then_some(now);
        let print = fingerprint(key);
        let (row, changed) =
            match store::keys::upload(&self.db, &actor.user_id, device_id, key, &print, verified_at, now).await? {
                Uploaded::New(row) | Uploaded::Rotated(row) => (row, true),
                Uploaded::Same(row) => (row, false),
            };
        Ok(KeyUpload { key: self.device_key(row), changed })
    }

    /// The device keys of `user`. Public keys are only for people who may write to them: the
    /// user themselves and anyone sharing a conversation with them. Others get only verified
    /// keys when `VERIFY_DEVICE_REQUIRED` is on.
    pub async fn device_keys(&self, actor: &Actor, user: &str) -> AppResult<Vec<DeviceKey>> {
        check_id(Field::User, user)?;
        let own = user == actor.user_id;
        if !own && !store::history::share_a_conversation(&self.db, &actor.user_id, user).await? {
            return Err(AppError::Forbidden("you share no conversation with this user".into()));
        }
        let keys = store::keys::of_user(&self.db, user).await?.into_iter().map(|row| self.device_key(row));
        let required = self.config.verify_device_required;
        Ok(keys.filter(|k| own || !required || k.verified).collect())
    }

    /// Verifies one of the caller's devices with the code it shows.
    pub async fn verify_device(&self, actor: &Actor, device_id: &str, code: &str) -> AppResult<DeviceKey> {
        check_id(Field::Device, device_id)?;
        let row = store::keys::get(&self.db, &actor.user_id, device_id)
            .await?
            .ok_or_else(|| AppError::NotFound("no key for this device".into()))?;
        let expected = verification_code(&row.fingerprint);
        // Constant time, although the code is derivable: habits are cheap.
        let matches =
            code.len() == expected.len() && code.bytes().zip(expected.bytes()).fold(0, |d, (a, b)| d | (a ^ b)) == 0;
        if !matches {
            return Err(AppError::validation("the verification code does not match this device's key"));
        }
        if row.verified_at.is_some() {
            return Ok(self.device_key(row));
        }
        let row = store::keys::mark_verified(&self.db, &actor.user_id, device_id, &row.fingerprint, Utc::now())
            .await?
            .ok_or_else(|| AppError::Conflict("the device's key changed meanwhile; verify its new code".into()))?;
        Ok(self.device_key(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_from_the_fingerprint() {
        let print = fingerprint("  -----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n");
        assert_eq!(print.len(), 64);
        assert_eq!(print, fingerprint("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----"));
        let code = verification_code(&print);
        assert_eq!(code.len(), 6);
        let first4 = u64::from_str_radix(&print[..8], 16).unwrap();
        assert_eq!(code, format!("{:06}", first4 % 1_000_000));
        assert_eq!(verification_code("00000000ff"), "000000");
    }
}
