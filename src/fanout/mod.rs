//! The one fan-out mechanism: core events → rooms `user:{id}` / `chat:{id}` → every connection
//! of every profile and connection type. Profiles register a [`Connection`] that encodes events
//! in their own dialect; the hub decides who gets what, and owns the delivery guarantees that
//! do not depend on a wire format:
//!
//! * **No duplicates per connection.** Each connection remembers which `seq` of each chat it
//!   was handed, so a message that arrives both live and through catch-up is sent once.
//! * **Nothing silently skipped.** A new connection starts in *syncing* mode: live messages are
//!   held back (only noted) while the backlog is pushed from the database in `seq` order; when
//!   the backlog is drained and nothing new was noted, the connection goes live. A connection
//!   whose transport buffer is full (a slow consumer) drops back into syncing mode, and the
//!   same loop catches it up from the database once it drains, instead of losing the event.
//! * **Delivery marks.** What a connection was handed is reported to the [`DeliveryLedger`],
//!   with the connection's [`Receipts`]: once the transport confirms that it reached the
//!   client, the delivered cursor of the connection's device moves, so the next connection of
//!   that device only gets what it has not had.
//!
//! With several instances, [`Hub::publish`] delivers locally and hands an [`Envelope`] to the
//! [`Bus`] (Redis pub/sub); every other instance delivers it to its own connections. This is
//! the one cross-instance path for Socket.IO and raw WebSocket connections alike. If the bus
//! subscription is lost, events may have been missed, so every local connection is resynced
//! from the store.

//!
//! Parts: `hub` (rooms and delivery), `sync` (one connection's sync state machine, where
//! every decision above is made and tested), `encode` (one encoding per dialect and pass),
//! `bus` (the cross-instance contract); this module holds the contracts transports and the
//! core implement.

mod bus;
mod encode;
mod hub;
mod sync;

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc};

pub use bus::{Bus, Envelope, Published};
pub use encode::EncodeCache;
pub use hub::{Hub, HubStats};

pub use crate::domain::ConnId;
use crate::{
    domain::{ChatId, Event, Message, UserId},
    error::AppError,
};

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a connection could not take an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The transport buffer is full: the client is not reading fast enough.
    Full,
    /// The connection is gone.
    Closed,
}

/// One client connection of any profile. `send` must not block: it either queues the encoded
/// event on the transport or says why it cannot.
pub trait Connection: Send + Sync + 'static {
    fn user_id(&self) -> &str;
    /// The device this connection delivers to (SPEC §4): delivery is tracked per device.
    /// `""` is the default device of connections that name none.
    fn device_id(&self) -> &str {
        ""
    }
    fn send(&self, event: &Event, cache: &EncodeCache) -> Result<(), SendFailure>;
    /// What the connection's transport learns about what reached the client.
    fn receipts(&self) -> Arc<dyn Receipts>;
    /// True for dialects whose clients hear the room events of every chat of their user
    /// (typing) without joining rooms: they are reached through [`Audience::ChatFollowers`].
    fn follows_all_chats(&self) -> bool {
        false
    }
    /// The connection's catch-up is done: what it was owed is handed, it is live.
    fn caught_up(&self) {}
}

/// Watching this key ([`Hub::watch`]) hears the presence of every user (no user id has a NUL).
pub const EVERYONE: &str = "\0*";

/// What a connection's transport knows about what reached the client, in positions that
/// only the transport interprets: the hub and the ledger only compare them. Queuing an event
/// and its reaching the client are two things; only the second makes a message delivered.
pub trait Receipts: Send + Sync + 'static {
    /// The position that, once confirmed, proves everything queued on the connection so far
    /// reached the client. Never decreases.
    fn position(&self) -> u64;
    /// Everything queued with a position up to this one reached the client. Never decreases.
    fn confirmed(&self) -> u64;
    /// No receipt will come any more: the connection is gone, and what was unconfirmed then
    /// stays unconfirmed.
    fn finished(&self) -> bool;
}

/// The durable side of delivery, implemented by the core over the store.
pub trait DeliveryLedger: Send + Sync + 'static {
    /// Connection `conn` of `user`'s `device` opened; `receipts` will say what reached it.
    fn opened(&self, conn: ConnId, user: &str, device: &str, receipts: Arc<dyn Receipts>);
    /// Connection `conn` was handed message `seq` of `chat`, and now has every message of the
    /// chat up to `contiguous` (below `seq` when a gap is open under it).
    fn pushed(&self, conn: ConnId, chat: &str, seq: i64, contiguous: i64);
    /// The connection closed; what was handed to it is recorded once its transport confirms
    /// it, and forgotten if it never does.
    fn closed(&self, conn: ConnId);
    /// Messages this device of the user has not been handed yet: per chat, after the larger
    /// of the device's durable delivered cursor and the given in-memory cursor, but never
    /// after the chat's `ceiling` (what this connection is still owed); oldest first per chat.
    fn missed<'a>(
        &'a self,
        user: &'a str,
        device: &'a str,
        cursors: HashMap<ChatId, i64>,
        ceilings: HashMap<ChatId, i64>,
        limit: usize,
    ) -> BoxFut<'a, Result<Backlog, AppError>>;
    /// The messages of `chat` after `seq` and up to `upto`, oldest first.
    fn between<'a>(&'a self, chat: &'a str, after: i64, upto: i64) -> BoxFut<'a, Result<Vec<Message>, AppError>>;
}

/// What a connection must be sent to catch up.
pub struct Backlog {
    pub messages: Vec<Message>,
    /// For every chat of the user: the `seq` up to which nothing needs sending. Live messages
    /// are checked against it, so a message lost between instances shows up as a gap.
    pub baselines: HashMap<ChatId, i64>,
}

/// What an unregistered connection leaves behind.
pub struct Departure {
    pub user: UserId,
    /// No other connection of this user is left on this instance.
    pub last_here: bool,
    /// Chats in whose room this user has no connection left on this instance.
    pub rooms_left: Vec<ChatId>,
}
