//! Socialink's messages over the core (protocols/socialink.md §4): sealed sends (ciphertext
//! bytes, self-destruct, note-to-self), history, receipts, and per-device queues. A message
//! is queued for every active keyed device of every member except the sending device, in the
//! writer's transaction (`store::queues::enqueue`), so a `201` means stored *and* queued; it
//! leaves a device's queue on that device's acknowledgement, on deletion, expiry,
//! deactivation or after `OFFLINE_QUEUE_TTL_DAYS`.

use std::{collections::HashMap, sync::Weak, time::Duration};

use base64::Engine as _;
use chrono::Utc;

use super::{
    limits::Limit,
    model::{Actor, Audience, ChatId, ConversationKind, Event, Message, ReceiptKind, UserId},
    writer::{Outcome, Pending},
    Core,
};
use crate::{
    domain::{BodyEncoding, KeyedDevice, MessageDeleted},
    error::{AppError, AppResult},
    store::{self, messages::NewMessage},
};

/// Largest ciphertext, in decoded bytes.
pub const MAX_CIPHERTEXT: usize = 65_536;
/// Longest self-destruct timer: 30 days.
pub const MAX_EXPIRES_IN: u64 = 2_592_000;
/// Longest `client_message_id`.
pub const MAX_CLIENT_MESSAGE_ID: usize = 128;
/// Queue pages: the default and the most one read returns.
pub const QUEUE_PAGE: u64 = 100;
pub const MAX_QUEUE_PAGE: u64 = 500;
/// History pages: the default and the most one read returns.
pub const HISTORY_PAGE: u64 = 50;
pub const MAX_HISTORY_PAGE: u64 = 100;
/// Message kinds a sealed send may carry (lowercase, as the core stores kinds); `system` is
/// the server's own.
pub const SEALED_KINDS: &[&str] = &["text", "media", "audio", "file", "location", "contact", "poll", "event", "call"];

/// Where a sealed message goes: a conversation, or a user (the pair's direct conversation;
/// the sender themselves: their note-to-self conversation).
#[derive(Clone, Debug)]
pub enum Destination {
    Conversation(ChatId),
    User(UserId),
}

/// A sealed message as a client asks to send it.
#[derive(Clone, Debug)]
pub struct SealedDraft {
    pub to: Destination,
    /// The sending device, whose queue does not get the message; `None`: every device of the
    /// sender gets it.
    pub device_id: Option<String>,
    pub ciphertext: Vec<u8>,
    pub ephemeral_key: Vec<u8>,
    /// Lowercase, one of [`SEALED_KINDS`].
    pub kind: String,
    /// Self-destruct after this many seconds (1 to [`MAX_EXPIRES_IN`]).
    pub expires_in: Option<u64>,
    pub client_message_id: Option<String>,
}

/// How far the other members got with a message, as its sender sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Sent,
    Delivered,
    Read,
}

/// What a conversation is, for showing its messages: its kind and members.
#[derive(Clone, Debug)]
pub struct ConversationView {
    pub id: ChatId,
    pub kind: ConversationKind,
    /// `(user, delivered_seq, read_seq)` of every member.
    pub members: Vec<(UserId, i64, i64)>,
    /// The group's membership epoch now (bumped by every add and remove).
    pub epoch: i64,
}

impl ConversationView {
    /// The other member of a direct conversation; the sender in a note to self; `None` in a
    /// group.
    pub fn recipient(&self, sender: &str) -> Option<UserId> {
        match self.kind {
            // Sessions address each copy to its member: there is no one recipient to show.
            ConversationKind::Group | ConversationKind::Session => None,
            ConversationKind::SelfNote => Some(sender.to_string().into()),
            ConversationKind::Direct => {
                self.members.iter().map(|(u, _, _)| u).find(|u| *u != sender).cloned().or_else(|| Some(sender.into()))
            }
        }
    }

    /// Delivered / read once every member other than the sender is.
    pub fn progress(&self, message: &Message) -> Progress {
        let others: Vec<_> = self.members.iter().filter(|(u, _, _)| *u != message.sender_id).collect();
        if others.is_empty() {
            return Progress::Sent;
        }
        if others.iter().all(|(_, _, read)| *read >= message.seq) {
            Progress::Read
        } else if others.iter().all(|(_, delivered, read)| (*delivered).max(*read) >= message.seq) {
            Progress::Delivered
        } else {
            Progress::Sent
        }
    }
}

/// The bytes of a message as Socialink shows them: its own bytes when it was written as bytes,
/// else the UTF-8 bytes of its text.
pub fn body_bytes(message: &Message) -> Vec<u8> {
    match message.encoding {
        BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(&message.content)
            .unwrap_or_else(|_| message.content.clone().into_bytes()),
        BodyEncoding::Text => message.content.clone().into_bytes(),
    }
}

/// A device's queued message with its place in the queue.
pub struct QueuedMessage {
    pub position: i64,
    pub message: Message,
}

impl Core {
    /// Stores a sealed message and queues it, answering once both are durable. A resend of
    /// the same `client_message_id` by the same sender in the same conversation returns the
    /// original (`false`: nothing new was stored).
    pub async fn send_sealed(&self, actor: &Actor, draft: SealedDraft) -> AppResult<(Message, bool)> {
        check_sealed(&draft)?;
        let chat_id = match &draft.to {
            Destination::Conversation(chat) => {
                self.require_member(chat, &actor.user_id).await?;
                chat.clone()
            }
            Destination::User(user) if *user == actor.user_id => self.self_conversation(actor).await?,
            Destination::User(user) => {
                super::check_id(crate::error::Field::Recipient, user)?;
                self.direct_conversation(actor, user).await?
            }
        };
        self.limits.check(Limit::MessageNew, &actor.user_id)?;
        let expires_after = draft.expires_in.map(|s| chrono::Duration::seconds(s as i64));
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let pending = Pending {
            new: NewMessage {
                id: uuid::Uuid::now_v7().to_string(),
                conversation_id: chat_id.into(),
                sender_id: actor.user_id.clone().into(),
                sender_device_id: draft.device_id.clone().unwrap_or_default(),
                kind: draft.kind,
                content: b64(&draft.ciphertext),
                reply_to_id: None,
                metadata: None,
                temp_id: draft.client_message_id,
                encrypted: true,
                attachments: None,
                attachment_ids: Vec::new(),
                recipient_id: None,
                content_encoding: BodyEncoding::Base64.stored().map(str::to_string),
                ephemeral_key: (!draft.ephemeral_key.is_empty()).then(|| b64(&draft.ephemeral_key)),
                expires_after,
            },
            origin: actor.conn,
            sender: actor.profile(),
        };
        match self.writer.append(pending, None).await? {
            Outcome::Stored(message, _) => Ok((message, true)),
            Outcome::Duplicate(message) => Ok((message, false)),
        }
    }

    /// The caller's note-to-self conversation, created on first use.
    pub async fn self_conversation(&self, actor: &Actor) -> AppResult<ChatId> {
        let request = super::conversations::ConversationRequest {
            kind: ConversationKind::SelfNote,
            participant_ids: Vec::new(),
            name: None,
            description: None,
            avatar: None,
            encrypted: true,
        };
        Ok(self.create_conversation(actor, request).await?.0.id)
    }

    /// A conversation's kind and members with their receipt cursors, for a member.
    pub async fn conversation_view(&self, actor: &Actor, chat: &str) -> AppResult<ConversationView> {
        self.require_member(chat, &actor.user_id).await?;
        self.view_of(chat).await
    }

    /// A conversation's kind and members, without an access check (the caller has one of its
    /// messages already: it was queued for them).
    pub async fn view_of(&self, chat: &str) -> AppResult<ConversationView> {
        let model = store::conversations::get(&self.db, chat)
            .await?
            .ok_or_else(|| AppError::NotFound("conversation not found".into()))?;
        let members = store::conversations::members(&self.db, chat)
            .await?
            .into_iter()
            .map(|m| (UserId::from(m.user_id), m.delivered_seq, m.read_seq))
            .collect();
        Ok(ConversationView {
            id: model.id.into(),
            kind: ConversationKind::parse(&model.kind).unwrap_or(ConversationKind::Group),
            members,
            epoch: model.epoch,
        })
    }

    /// A page of a conversation's history as the caller sees it, with the conversation.
    pub async fn sealed_history(
        &self,
        actor: &Actor,
        chat: &str,
        before: Option<i64>,
        after: Option<i64>,
        limit: Option<u64>,
    ) -> AppResult<(ConversationView, Vec<Message>)> {
        super::check_id(crate::error::Field::Chat, chat)?;
        let me = self.require_member(chat, &actor.user_id).await?;
        let limit = limit.unwrap_or(HISTORY_PAGE).clamp(1, MAX_HISTORY_PAGE);
        let rows =
            store::queues::history(&self.db, chat, &actor.user_id, me.cleared_seq, before, after, limit, Utc::now())
                .await?;
        let view = self.view_of(chat).await?;
        Ok((view, rows.into_iter().map(Message::from).collect()))
    }

    /// A message the caller may act on: it exists, is not deleted or expired, and the caller
    /// is a member of its conversation.
    async fn sealed_message(&self, actor: &Actor, message_id: &str) -> AppResult<Message> {
        super::check_id(crate::error::Field::Message, message_id)?;
        let row = store::messages::get(&self.db, message_id)
            .await?
            .ok_or_else(|| AppError::NotFound("Message not found".into()))?;
        self.require_member(&row.conversation_id, &actor.user_id).await?;
        let message = Message::from(row);
        if message.deleted || message.expired_at(Utc::now()) {
            return Err(AppError::NotFound("Message not found".into()));
        }
        Ok(message)
    }

    /// A delivered or read receipt of the caller for a message (the core's receipts: the
    /// sender hears in every dialect). The sender's own receipt is accepted and ignored.
    pub async fn sealed_receipt(&self, actor: &Actor, message_id: &str, kind: ReceiptKind) -> AppResult<()> {
        let message = self.sealed_message(actor, message_id).await?;
        if message.sender_id == actor.user_id {
            return Ok(());
        }
        self.mark(actor, kind, &message.chat_id, &message.id).await?;
        Ok(())
    }

    /// Deletes a message for the caller, or for everyone (its sender only); queues follow
    /// (see [`Core::delete_message`]).
    pub async fn sealed_delete(&self, actor: &Actor, message_id: &str, for_everyone: bool) -> AppResult<()> {
        let message = self.sealed_message(actor, message_id).await?;
        if for_everyone && message.sender_id != actor.user_id {
            return Err(AppError::Forbidden("only the sender may delete a message for everyone".into()));
        }
        self.delete_message(actor, message_id, for_everyone).await?;
        Ok(())
    }

    /// Up to `limit` of a device's queued messages after queue position `after`, oldest
    /// first. Reading does not acknowledge.
    pub async fn device_queue(&self, device: &KeyedDevice, after: i64, limit: u64) -> AppResult<Vec<QueuedMessage>> {
        let now = Utc::now();
        let oldest = now - self.queue_ttl();
        let rows =
            store::queues::list(&self.db, &device.row_id, after, limit.clamp(1, MAX_QUEUE_PAGE), now, oldest).await?;
        Ok(rows
            .into_iter()
            .map(|q| QueuedMessage { position: q.position, message: Message::from(q.message) })
            .collect())
    }

    /// Acknowledges messages for one device: exactly those leave its queue. Returns
    /// (acknowledged, remaining).
    pub async fn acknowledge(&self, device: &KeyedDevice, message_ids: &[String]) -> AppResult<(u64, u64)> {
        if message_ids.is_empty() {
            return Err(AppError::validation("message_ids must name at least one message"));
        }
        for id in message_ids {
            super::check_id(crate::error::Field::Message, id)?;
        }
        Ok(store::queues::acknowledge(&self.db, &device.row_id, message_ids).await?)
    }

    /// Whether a device's queue still holds a message.
    pub async fn queue_holds(&self, device: &KeyedDevice, message_id: &str) -> AppResult<bool> {
        Ok(store::queues::holds(&self.db, &device.row_id, message_id).await?)
    }

    fn queue_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.offline_queue_ttl).unwrap_or(chrono::Duration::days(30))
    }

    /// One pass of the self-destruct sweeper: deletes what expired and tells every member's
    /// connections. Each message is deleted by exactly one statement on one instance, and
    /// only that instance announces it.
    async fn sweep_expired(&self) -> AppResult<usize> {
        let expired = store::queues::sweep_expired(&self.db, Utc::now(), 500).await?;
        let mut members: HashMap<String, Vec<UserId>> = HashMap::new();
        for e in &expired {
            if !members.contains_key(&e.conversation_id) {
                let users = store::conversations::members(&self.db, &e.conversation_id)
                    .await?
                    .into_iter()
                    .map(|m| UserId::from(m.user_id))
                    .collect();
                members.insert(e.conversation_id.clone(), users);
            }
            let audience = members.get(&e.conversation_id).cloned().unwrap_or_default();
            let deleted = MessageDeleted {
                chat_id: e.conversation_id.clone().into(),
                message_id: e.message_id.clone().into(),
                seq: e.seq,
                deleted_by: e.sender_id.clone().into(),
                for_everyone: true,
                at: Utc::now(),
                expired: true,
            };
            self.hub.publish(&Audience::Users(audience), Event::MessageDeleted(deleted), None);
        }
        Ok(expired.len())
    }

    /// Drops queue entries older than `OFFLINE_QUEUE_TTL_DAYS`.
    async fn drop_stale_entries(&self) -> AppResult<u64> {
        Ok(store::queues::drop_older_than(&self.db, Utc::now() - self.queue_ttl()).await?)
    }
}

/// How often the sweeper looks for expired messages: well inside the 2 s the contract
/// allows between `expires_at` and the `message_deleted` frame.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// How often stale queue entries are dropped.
const TTL_EVERY: Duration = Duration::from_secs(600);

/// Runs the self-destruct sweeper and the queue TTL on this instance (every instance runs
/// them; the delete statements decide who announces what).
pub(crate) fn spawn_sweeper(core: Weak<Core>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ttl: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            let Some(core) = core.upgrade() else { return };
            loop {
                match core.sweep_expired().await {
                    // A full pass: more may be waiting.
                    Ok(n) if n >= 500 => continue,
                    Ok(_) => break,
                    Err(e) => {
                        e.log_if_internal("self-destruct sweep");
                        break;
                    }
                }
            }
            if last_ttl.is_none_or(|at| at.elapsed() >= TTL_EVERY) {
                last_ttl = Some(tokio::time::Instant::now());
                if let Err(e) = core.drop_stale_entries().await {
                    e.log_if_internal("queue TTL");
                }
            }
        }
    })
}

/// Checks a sealed send before anything is looked up. Pure (the decoder property test feeds
/// it every shape of body).
pub fn check_sealed(draft: &SealedDraft) -> AppResult<()> {
    if draft.ciphertext.is_empty() {
        return Err(AppError::EmptyContent("ciphertext is empty".into()));
    }
    if draft.ciphertext.len() > MAX_CIPHERTEXT {
        return Err(AppError::ContentTooLong(format!(
            "ciphertext is {} bytes; the limit is {MAX_CIPHERTEXT}",
            draft.ciphertext.len()
        )));
    }
    if draft.ephemeral_key.len() > 1024 {
        return Err(AppError::validation("ephemeral_key is longer than 1024 bytes"));
    }
    if !SEALED_KINDS.contains(&draft.kind.as_str()) {
        return Err(AppError::validation("message_type is not one a client may send"));
    }
    if let Some(seconds) = draft.expires_in {
        if !(1..=MAX_EXPIRES_IN).contains(&seconds) {
            return Err(AppError::validation(format!("expires_in_seconds must be 1 to {MAX_EXPIRES_IN}")));
        }
    }
    if let Some(id) = &draft.client_message_id {
        if id.is_empty() || id.chars().count() > MAX_CLIENT_MESSAGE_ID || id.chars().any(char::is_control) {
            return Err(AppError::validation(format!(
                "client_message_id must be 1 to {MAX_CLIENT_MESSAGE_ID} characters"
            )));
        }
    }
    if let Some(device) = &draft.device_id {
        super::prekeys::check_device_text("device_id", device)?;
    }
    Ok(())
}
