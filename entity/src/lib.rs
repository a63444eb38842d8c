//! SeaORM entities for Switchboard. One module per table; the schema itself lives in the
//! `migration` crate. Identifiers are strings: user ids are JWT subjects chosen by the issuer,
//! and conversation/message ids are UUIDv7 text so that both SQLite and PostgreSQL store them
//! the same way.

pub mod attachment;
pub mod call;
pub mod call_ice_candidate;
pub mod call_participant;
pub mod conversation;
pub mod device_key;
pub mod hidden_message;
pub mod member;
pub mod message;
pub mod message_attachment;
pub mod message_edit;
pub mod notification;
pub mod reaction;
pub mod session;
pub mod session_member;
pub mod user;
