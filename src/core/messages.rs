//! Sending and reading messages.

use crate::domain::UserId;
use serde_json::Value;

use super::{
    check_id,
    limits::Limit,
    model::{Actor, AttachmentInfo, Location, Message, NotificationData},
    writer::{Outcome, Pending, SendTicket},
    Core, MAX_PAGE,
};
use crate::{
    error::{AppError, AppResult, Field},
    store::{self, messages::NewMessage},
};

/// Message types a client may send.
pub const MESSAGE_KINDS: &[&str] = &["text", "image", "video", "audio", "file", "voice", "location"];
/// Largest `metadata` object, serialized.
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// A message as a client asks to send it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub chat_id: String,
    pub content: String,
    pub kind: String,
    pub reply_to_id: Option<String>,
    pub metadata: Option<Value>,
    pub temp_id: Option<String>,
    /// Users the message mentions (the profile finds them in its own payload); members among
    /// them other than the sender get a notification.
    pub mentions: Vec<UserId>,
}

/// What a message may carry besides its text (Spark's `send_message`): the client's encryption
/// flag, uploaded attachments, a shared location.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub encrypted: bool,
    /// Ids of attachments the sender uploaded, in the order to show them.
    pub attachment_ids: Vec<String>,
    /// Makes the message a `location` message; stored as `metadata.location`.
    pub location: Option<Location>,
}

impl Core {
    /// Stores a message and publishes it to every member's connections. Returns only once the
    /// message is durable. A resend with the same `temp_id` returns the stored original and
    /// publishes nothing.
    /// `ticket` (from the connection's [`SendOrder`]) keeps one connection's messages in the
    /// order they arrived.
    pub async fn send_message(&self, actor: &Actor, draft: Draft, ticket: Option<SendTicket>) -> AppResult<Message> {
        self.send_message_limited(actor, draft, self.config.max_message_length, ticket).await
    }

    /// As [`Core::send_message`], with a profile's own length limit.
    pub async fn send_message_limited(
        &self,
        actor: &Actor,
        draft: Draft,
        max_len: usize,
        ticket: Option<SendTicket>,
    ) -> AppResult<Message> {
        self.send_message_full(actor, draft, Extras::default(), max_len, None, ticket).await
    }

    /// As [`Core::send_message`], addressed to one member (`recipient`) or, with `None`, to
    /// everyone: an addressed message is handed to its recipient and its sender only, and read
    /// back only by them (one ciphertext per reader, as e2e clients encrypt). The resend key
    /// includes the recipient, so one `temp_id` names one copy per recipient.
    pub async fn send_addressed(
        &self,
        actor: &Actor,
        draft: Draft,
        recipient: Option<UserId>,
        max_len: usize,
        ticket: Option<SendTicket>,
    ) -> AppResult<Message> {
        if let Some(recipient) = &recipient {
            if *recipient == actor.user_id {
                return Err(AppError::SelfMessage("you cannot address a message to yourself".into()));
            }
            self.require_member(&draft.chat_id, recipient).await.map_err(|e| match e {
                AppError::Forbidden(_) => AppError::invalid(Field::Recipient, "is not a member of this conversation"),
                other => other,
            })?;
        }
        self.send_message_full(actor, draft, Extras::default(), max_len, recipient, ticket).await
    }

    /// As [`Core::send_message`], with attachments, a location or the encryption flag.
    pub async fn send_message_with(
        &self,
        actor: &Actor,
        draft: Draft,
        extras: Extras,
        ticket: Option<SendTicket>,
    ) -> AppResult<Message> {
        self.send_message_full(actor, draft, extras, self.config.max_message_length, None, ticket).await
    }

    async fn send_message_full(
        &self,
        actor: &Actor,
        mut draft: Draft,
        extras: Extras,
        max_len: usize,
        recipient: Option<UserId>,
        mut ticket: Option<SendTicket>,
    ) -> AppResult<Message> {
        self.limits.check(Limit::MessageNew, &actor.user_id)?;
        let attachments = self.attachments_to_send(actor, &extras.attachment_ids).await?;
        // A file speaks for itself and a position needs no caption; anything else needs text.
        let may_be_empty = !attachments.is_empty() || extras.location.is_some() || draft.kind == LOCATION;
        validate(&draft, max_len, may_be_empty)?;
        shape(&mut draft, &attachments, extras.location)?;

        // Membership is checked by the writer, in the transaction that stores the message.
        if let Some(reply_to) = &draft.reply_to_id {
            let parent = store::messages::get(&self.db, reply_to).await?;
            if parent.is_none_or(|p| p.conversation_id != draft.chat_id) {
                return Err(AppError::validation("replyToId does not name a message of this conversation"));
            }
        }

        let mentions = std::mem::take(&mut draft.mentions);
        let pending = Pending {
            new: NewMessage {
                id: uuid::Uuid::now_v7().to_string(),
                conversation_id: draft.chat_id,
                sender_id: actor.user_id.clone().into(),
                sender_device_id: actor.device.clone().into(),
                kind: draft.kind,
                content: draft.content,
                reply_to_id: draft.reply_to_id,
                metadata: draft.metadata,
                temp_id: draft.temp_id,
                encrypted: extras.encrypted,
                attachments: if attachments.is_empty() {
                    None
                } else {
                    Some(serde_json::to_value(&attachments).map_err(|e| AppError::Internal(e.into()))?)
                },
                attachment_ids: attachments.iter().map(|a| a.id.clone()).collect(),
                recipient_id: recipient.map(Into::into),
                content_encoding: None,
                ephemeral_key: None,
                expires_after: None,
            },
            origin: actor.conn,
            sender: actor.profile(),
        };
        if let Some(ticket) = ticket.as_mut() {
            ticket.wait_turn().await;
        }
        match self.writer.append(pending, ticket).await? {
            Outcome::Stored(msg, members) => {
                let mentioned: Vec<UserId> =
                    members.iter().filter(|u| **u != actor.user_id && mentions.contains(u)).cloned().collect();
                if !mentioned.is_empty() {
                    let data = NotificationData::Mention {
                        chat_id: msg.chat_id.clone(),
                        message_id: msg.id.clone(),
                        sender_id: msg.sender_id.clone(),
                    };
                    self.notify(&mentioned, data).await;
                }
                Ok(msg)
            }
            // The original send already notified.
            Outcome::Duplicate(msg) => Ok(msg),
        }
    }

    /// Everything after `after_seq`, in order: what a client missed.
    pub async fn messages_after(
        &self,
        actor: &Actor,
        chat: &str,
        after_seq: i64,
        limit: u64,
    ) -> AppResult<Vec<Message>> {
        self.require_member(chat, &actor.user_id).await?;
        let rows =
            store::messages::readable_after(&self.db, chat, &actor.user_id, after_seq.max(0), limit.clamp(1, MAX_PAGE))
                .await?;
        self.with_reactions(rows.into_iter().map(Message::from).collect()).await
    }
}

/// Message type of a shared position.
const LOCATION: &str = "location";
/// Message type of a voice recording.
const VOICE: &str = "voice";

/// Settles the message's type against what it carries: a plain `text` message with files
/// takes the kind of its first file, a voice message is one audio file, and a location
/// message carries a valid position in `metadata.location`.
fn shape(draft: &mut Draft, attachments: &[AttachmentInfo], location: Option<Location>) -> AppResult<()> {
    if let Some(first) = attachments.first() {
        if draft.kind == "text" {
            draft.kind = first.kind.clone();
        }
        if draft.kind == VOICE && (attachments.len() != 1 || first.kind != "audio") {
            return Err(AppError::validation("a voice message carries exactly one audio attachment"));
        }
    }
    if location.is_some() && draft.kind == "text" {
        draft.kind = LOCATION.to_string();
    }
    if draft.kind != LOCATION {
        if location.is_some() {
            return Err(AppError::validation("location is only for messages of type location"));
        }
        return Ok(());
    }
    if !attachments.is_empty() {
        return Err(AppError::validation("a location message carries no attachments"));
    }
    let stored = draft.metadata.as_ref().and_then(|m| m.get("location")).cloned();
    let location = match (location, stored) {
        (Some(location), _) => location,
        (None, Some(value)) => crate::payload::strict::<Location>(&value)
            .map_err(|e| AppError::validation(format!("metadata.location: {e}")))?,
        (None, None) => {
            return Err(AppError::validation("a location message needs location { latitude, longitude }"));
        }
    };
    check_location(&location)?;
    let mut metadata = match draft.metadata.take() {
        Some(Value::Object(map)) => map,
        Some(_) => return Err(AppError::validation("metadata must be an object")),
        None => Default::default(),
    };
    metadata.insert(LOCATION.into(), serde_json::to_value(&location).map_err(|e| AppError::Internal(e.into()))?);
    draft.metadata = Some(Value::Object(metadata));
    Ok(())
}

/// Longest place name or address shown with a location.
const MAX_ADDRESS_CHARS: usize = 500;

fn check_location(l: &Location) -> AppResult<()> {
    if !l.latitude.is_finite() || !(-90.0..=90.0).contains(&l.latitude) {
        return Err(AppError::validation("location.latitude must be between -90 and 90"));
    }
    if !l.longitude.is_finite() || !(-180.0..=180.0).contains(&l.longitude) {
        return Err(AppError::validation("location.longitude must be between -180 and 180"));
    }
    if l.accuracy.is_some_and(|a| !a.is_finite() || a < 0.0) {
        return Err(AppError::validation("location.accuracy must be a distance in metres, 0 or more"));
    }
    if l.address.as_ref().is_some_and(|a| a.chars().count() > MAX_ADDRESS_CHARS) {
        return Err(AppError::validation(format!("location.address is longer than {MAX_ADDRESS_CHARS} characters")));
    }
    Ok(())
}

fn validate(draft: &Draft, max_len: usize, may_be_empty: bool) -> AppResult<()> {
    check_id(Field::Chat, &draft.chat_id)?;
    if let Some(temp_id) = &draft.temp_id {
        check_id(Field::TempId, temp_id)?;
    }
    if let Some(reply_to) = &draft.reply_to_id {
        check_id(Field::ReplyTo, reply_to)?;
    }
    if !MESSAGE_KINDS.contains(&draft.kind.as_str()) {
        return Err(AppError::validation(format!("messageType must be one of {}", MESSAGE_KINDS.join(", "))));
    }
    if draft.content.trim().is_empty() && !may_be_empty {
        return Err(AppError::EmptyContent("message content is empty".into()));
    }
    let len = draft.content.chars().count();
    if len > max_len {
        return Err(AppError::ContentTooLong(format!("message is {len} characters; the limit is {max_len}")));
    }
    if let Some(meta) = &draft.metadata {
        if !meta.is_object() {
            return Err(AppError::validation("metadata must be an object"));
        }
        if meta.to_string().len() > MAX_METADATA_BYTES {
            return Err(AppError::validation(format!("metadata is larger than {MAX_METADATA_BYTES} bytes")));
        }
    }
    Ok(())
}
