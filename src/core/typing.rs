//! Typing indicators: relayed to the chat's room, and expired by the server when a client
//! stops renewing them (a client that vanishes mid-sentence must not type forever). The
//! indicator lives in shared state with its own expiry, so a renewal on another instance
//! outlives this instance's timer.

use crate::domain::ChatId;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    limits::Limit,
    model::{Actor, Audience, Event, Typing},
    Core,
};
use crate::error::{AppError, AppResult, Field};

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Core {
    /// Who is typing in `chat` now, for a member.
    pub async fn typing_in(&self, actor: &Actor, chat: &str) -> AppResult<Vec<String>> {
        super::check_id(Field::Chat, chat)?;
        self.require_member(chat, &actor.user_id).await?;
        self.shared.typers(chat).await.map_err(AppError::Internal)
    }

    pub async fn set_typing(&self, actor: &Actor, chat: &str, typing: bool) -> AppResult<()> {
        if typing {
            self.limits.check(Limit::Typing, &actor.user_id)?;
        }
        super::check_id(Field::Chat, chat)?;
        let members = self.members_of(chat, &actor.user_id).await?;
        let event = |typing: bool| {
            Event::Typing(Typing {
                chat_id: chat.into(),
                user_id: actor.user_id.clone(),
                username: actor.username.clone(),
                typing,
                at: chrono::Utc::now(),
            })
        };
        // The room (dialects with chat:join) and every member's following connections (Spark).
        let audience = Audience::ChatFollowers(ChatId::from(chat), members);
        if !typing {
            self.shared.clear_typing(chat, &actor.user_id, None).await.map_err(AppError::Internal)?;
            self.hub.publish(&audience, event(false), actor.conn);
            return Ok(());
        }
        // Unique across instances: the instance's start time would collide less than this
        // counter alone, so mix in the clock.
        let generation = (chrono::Utc::now().timestamp_micros() as u64) ^ GENERATION.fetch_add(1, Ordering::Relaxed);
        let ttl = self.config.typing_timeout;
        // The shared entry outlives the timer, so the timer (not the store) decides the expiry;
        // the store's own expiry only cleans up after a crashed instance.
        let keep = 2 * ttl.as_millis() as u64 + 1000;
        self.shared.set_typing(chat, &actor.user_id, generation, keep).await.map_err(AppError::Internal)?;
        self.hub.publish(&audience, event(true), actor.conn);

        let (shared, hub, stop, audience) = (self.shared.clone(), self.hub.clone(), event(false), audience.clone());
        let (chat, user) = (chat.to_string(), actor.user_id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            // Only the newest indicator may expire; a renewal replaced the generation.
            if let Ok(true) = shared.clear_typing(&chat, &user, Some(generation)).await {
                let mut stop = stop;
                if let Event::Typing(t) = &mut stop {
                    t.at = chrono::Utc::now();
                }
                hub.publish(&audience, stop, None);
            }
        });
        Ok(())
    }
}
