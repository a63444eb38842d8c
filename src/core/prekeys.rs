//! Signal-style device keys (Socialink's keys, protocols/socialink.md §3): registration with
//! a verified signed prekey, prekey bundles that hand each one-time prekey out at most once,
//! rotation, top-ups, deactivation. The server checks the Ed25519 signature of every signed
//! prekey against the device's identity key and never holds a private key.

use base64::Engine as _;
use chrono::Utc;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::{
    limits::Limit,
    model::{Actor, Audience, Event},
    Core,
};
use crate::{
    domain::{DeviceNews, KeyedDevice, PrekeyBundle, PrekeyCounts, PublicPrekey, SignedPrekey},
    error::{AppError, AppResult},
    store::{self, prekeys::Registered},
};

/// Key and signature sizes (X25519 / Ed25519 public keys, Ed25519 signatures).
pub const KEY_BYTES: usize = 32;
pub const SIGNATURE_BYTES: usize = 64;
/// Most one-time prekeys one registration or upload carries.
pub const MAX_PREKEYS_PER_UPLOAD: usize = 1000;
/// Highest registration id (Signal's 14 bits).
pub const MAX_REGISTRATION_ID: i64 = 16383;
/// Highest prekey id (2³¹ − 1).
pub const MAX_PREKEY_ID: i64 = i32::MAX as i64;
/// Longest device id and device name, in characters.
pub const MAX_DEVICE_TEXT: usize = 255;
/// A take that leaves fewer unused one-time prekeys than this tells the owner's devices.
pub const PREKEYS_LOW: u64 = 20;

/// A public key as a client sent it (raw bytes).
#[derive(Clone, Debug)]
pub struct KeyUpload {
    pub id: i64,
    pub public_key: Vec<u8>,
}

/// A signed prekey as a client sent it.
#[derive(Clone, Debug)]
pub struct SignedUpload {
    pub id: i64,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A device's keys as `keys/register` sends them.
#[derive(Clone, Debug)]
pub struct DeviceRegistration {
    pub device_id: String,
    pub device_name: String,
    pub registration_id: i64,
    pub identity_key: Vec<u8>,
    pub signed_prekey: SignedUpload,
    pub onetime_prekeys: Vec<KeyUpload>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// 1 to 255 characters without control characters.
pub fn check_device_text(what: &str, value: &str) -> AppResult<()> {
    let n = value.chars().count();
    if n == 0 || n > MAX_DEVICE_TEXT || value.chars().any(char::is_control) {
        return Err(AppError::validation(format!(
            "{what} must be 1 to {MAX_DEVICE_TEXT} characters without control characters"
        )));
    }
    Ok(())
}

fn check_key(what: &str, key: &[u8]) -> AppResult<()> {
    if key.len() != KEY_BYTES {
        return Err(AppError::validation(format!("{what} must be {KEY_BYTES} bytes, not {}", key.len())));
    }
    Ok(())
}

fn check_prekey_id(what: &str, id: i64) -> AppResult<()> {
    if !(0..=MAX_PREKEY_ID).contains(&id) {
        return Err(AppError::validation(format!("{what} must be an integer from 0 to {MAX_PREKEY_ID}")));
    }
    Ok(())
}

fn check_onetime(keys: &[KeyUpload], min: usize) -> AppResult<Vec<PublicPrekey>> {
    if keys.len() < min || keys.len() > MAX_PREKEYS_PER_UPLOAD {
        return Err(AppError::validation(format!(
            "onetime_prekeys must hold {min} to {MAX_PREKEYS_PER_UPLOAD} keys, not {}",
            keys.len()
        )));
    }
    keys.iter()
        .map(|k| {
            check_prekey_id("onetime prekey id", k.id)?;
            check_key("onetime prekey public_key", &k.public_key)?;
            Ok(PublicPrekey { id: k.id, public_key: b64(&k.public_key) })
        })
        .collect()
}

/// Checks a signed prekey: sizes, and an Ed25519 signature (RFC 8032) by `identity_key` over
/// the 32 raw bytes of its public key.
fn check_signed(identity_key: &[u8], signed: &SignedUpload) -> AppResult<SignedPrekey> {
    check_prekey_id("signed_prekey.id", signed.id)?;
    check_key("signed_prekey.public_key", &signed.public_key)?;
    if signed.signature.len() != SIGNATURE_BYTES {
        return Err(AppError::validation(format!(
            "signed_prekey.signature must be {SIGNATURE_BYTES} bytes, not {}",
            signed.signature.len()
        )));
    }
    let identity: [u8; KEY_BYTES] =
        identity_key.try_into().map_err(|_| AppError::validation("identity_key must be 32 bytes"))?;
    let verifying = VerifyingKey::from_bytes(&identity)
        .map_err(|_| AppError::validation("identity_key is not an Ed25519 public key"))?;
    let signature = Signature::from_slice(&signed.signature)
        .map_err(|_| AppError::validation("Invalid signed pre-key signature"))?;
    verifying
        .verify(&signed.public_key, &signature)
        .map_err(|_| AppError::validation("Invalid signed pre-key signature"))?;
    Ok(SignedPrekey { id: signed.id, public_key: b64(&signed.public_key), signature: b64(&signed.signature) })
}

/// Checks a registration before anything is stored: texts, ids, key sizes and the signed
/// prekey's signature. Pure (the decoder property test feeds it every shape of body).
pub fn check_registration(reg: &DeviceRegistration) -> AppResult<(SignedPrekey, Vec<PublicPrekey>)> {
    check_device_text("device_id", &reg.device_id)?;
    check_device_text("device_name", &reg.device_name)?;
    if !(0..=MAX_REGISTRATION_ID).contains(&reg.registration_id) {
        return Err(AppError::validation(format!(
            "registration_id must be an integer from 0 to {MAX_REGISTRATION_ID}"
        )));
    }
    check_key("identity_key", &reg.identity_key)?;
    let signed = check_signed(&reg.identity_key, &reg.signed_prekey)?;
    let onetime = check_onetime(&reg.onetime_prekeys, 0)?;
    Ok((signed, onetime))
}

impl Core {
    /// Registers a device with its keys (`201`), or re-registers a deactivated one. Nothing is
    /// stored unless every key checks out.
    pub async fn register_keyed_device(&self, actor: &Actor, reg: DeviceRegistration) -> AppResult<KeyedDevice> {
        let (signed, onetime) = check_registration(&reg)?;
        store::users::ensure(&self.db, std::slice::from_ref(&actor.user_id)).await?;
        let identity_key = b64(&reg.identity_key);
        let registration = store::prekeys::Registration {
            user_id: &actor.user_id,
            device_id: &reg.device_id,
            device_name: &reg.device_name,
            registration_id: reg.registration_id,
            identity_key: &identity_key,
            signed_prekey: &signed,
            onetime_prekeys: &onetime,
        };
        match store::prekeys::register(&self.db, registration, Utc::now()).await? {
            Registered::New(device) => {
                // The core's per-device delivery knows the device from now on too.
                self.device_seen(&actor.user_id, &reg.device_id).await?;
                Ok(device)
            }
            Registered::AlreadyActive => Err(AppError::Conflict("Device already registered".into())),
        }
    }

    /// One of the caller's own devices, active: `NOT_FOUND` otherwise.
    pub async fn own_keyed_device(&self, actor: &Actor, device_id: &str) -> AppResult<KeyedDevice> {
        self.active_keyed_device(&actor.user_id, device_id)
            .await?
            .ok_or_else(|| AppError::NotFound("Device not found".into()))
    }

    /// A registered, active device of `user`, if there is one.
    pub async fn active_keyed_device(&self, user: &str, device_id: &str) -> AppResult<Option<KeyedDevice>> {
        Ok(store::prekeys::device_of(&self.db, user, device_id).await?.filter(|d| d.is_active))
    }

    /// A prekey bundle of one of `user`'s devices (the named one, else the most recently seen
    /// active one), taking its oldest unused one-time prekey. Counts against the requester's
    /// bundle limit. When the take leaves fewer than [`PREKEYS_LOW`], the owner's devices hear.
    pub async fn prekey_bundle(
        &self,
        requester: &Actor,
        user: &str,
        device_id: Option<&str>,
    ) -> AppResult<PrekeyBundle> {
        self.limits.check(Limit::KeyBundle, &requester.user_id)?;
        let device = match device_id {
            Some(id) => self.active_keyed_device(user, id).await?,
            None => store::prekeys::active_devices(&self.db, user).await?.into_iter().next(),
        };
        let device = device.ok_or_else(|| AppError::NotFound("No active device found".into()))?;
        let signed = store::prekeys::newest_signed(&self.db, &device.row_id)
            .await?
            .ok_or_else(|| AppError::NotFound("No signed pre-key found".into()))?;
        let onetime = store::prekeys::claim_onetime(&self.db, &device.row_id, Utc::now()).await?;
        if onetime.is_some() {
            let left = store::prekeys::counts(&self.db, &device.row_id).await?.unused;
            if left < PREKEYS_LOW {
                let news = DeviceNews::PrekeysLow {
                    user_id: device.user_id.clone(),
                    device_id: device.device_id.clone(),
                    unused: left,
                };
                self.hub.publish(&Audience::Users(vec![device.user_id.clone()]), Event::Device(news), None);
            }
        }
        Ok(PrekeyBundle { device, signed_prekey: signed, onetime_prekey: onetime })
    }

    /// Replaces the signed prekey served for one of the caller's devices.
    pub async fn rotate_signed_prekey(&self, actor: &Actor, device_id: &str, key: SignedUpload) -> AppResult<()> {
        let device = self.own_keyed_device(actor, device_id).await?;
        let identity = b64_decode(&device.identity_key)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("stored identity key is not base64")))?;
        let signed = check_signed(&identity, &key)?;
        let now = Utc::now();
        store::prekeys::rotate(&self.db, &device.row_id, &signed, now).await?;
        store::prekeys::seen(&self.db, &device.row_id, now).await?;
        Ok(())
    }

    /// Adds one-time prekeys to one of the caller's devices; returns how many were new.
    pub async fn add_prekeys(&self, actor: &Actor, device_id: &str, keys: Vec<KeyUpload>) -> AppResult<u64> {
        let device = self.own_keyed_device(actor, device_id).await?;
        let keys = check_onetime(&keys, 1)?;
        let stored = store::prekeys::add_onetime(&self.db, &device.row_id, &keys).await?;
        store::prekeys::seen(&self.db, &device.row_id, Utc::now()).await?;
        Ok(stored)
    }

    /// Deactivates one of the caller's devices: no more bundles, nothing queued for it, its
    /// queue dropped, its open connections closed (on every instance).
    pub async fn deactivate_keyed_device(&self, actor: &Actor, device_id: &str) -> AppResult<()> {
        let device = self.own_keyed_device(actor, device_id).await?;
        store::prekeys::deactivate(&self.db, &device.row_id).await?;
        let news = DeviceNews::Deactivated { user_id: actor.user_id.clone(), device_id: device.device_id };
        self.hub.publish(&Audience::Users(vec![actor.user_id.clone()]), Event::Device(news), None);
        Ok(())
    }

    /// A user's active devices, most recently seen first.
    pub async fn keyed_devices(&self, user: &str) -> AppResult<Vec<KeyedDevice>> {
        Ok(store::prekeys::active_devices(&self.db, user).await?)
    }

    /// The one-time prekeys of one of the caller's devices.
    pub async fn prekey_counts(&self, actor: &Actor, device_id: &str) -> AppResult<PrekeyCounts> {
        let device = self.own_keyed_device(actor, device_id).await?;
        Ok(store::prekeys::counts(&self.db, &device.row_id).await?)
    }

    /// Records that one of the caller's devices was seen (it connected).
    pub async fn keyed_device_seen(&self, device: &KeyedDevice) -> AppResult<()> {
        Ok(store::prekeys::seen(&self.db, &device.row_id, Utc::now()).await?)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    #[test]
    fn a_signed_prekey_is_checked_against_the_identity_key() {
        let identity = SigningKey::from_bytes(&[7u8; 32]);
        let prekey = [9u8; 32];
        let good =
            SignedUpload { id: 1, public_key: prekey.to_vec(), signature: identity.sign(&prekey).to_bytes().to_vec() };
        let public = identity.verifying_key().to_bytes();
        assert!(check_signed(&public, &good).is_ok());

        let other = SigningKey::from_bytes(&[8u8; 32]);
        let forged = SignedUpload { signature: other.sign(&prekey).to_bytes().to_vec(), ..good.clone() };
        assert!(check_signed(&public, &forged).is_err());
        let short = SignedUpload { signature: vec![0; 10], ..good.clone() };
        assert!(check_signed(&public, &short).is_err());
        let out_of_range = SignedUpload { id: -1, ..good };
        assert!(check_signed(&public, &out_of_range).is_err());
    }
}
