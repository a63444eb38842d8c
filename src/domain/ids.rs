//! Identifiers. User ids are JWT subjects chosen by the issuer; chat and message ids are
//! UUIDv7 text; a connection id is this instance's own counter.

pub type UserId = String;
pub type ChatId = String;
/// A device of a user: the token's `deviceId`, the handshake's `auth.deviceId`, or a path
/// that names it; `""` is the default device of connections that name none.
pub type DeviceId = String;
/// One client connection on this instance, of any transport.
pub type ConnId = u64;
