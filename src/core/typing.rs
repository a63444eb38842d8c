//! Typing indicators: relayed to the chat's room, and expired by the server when a client
//! stops renewing them (a client that vanishes mid-sentence must not type forever).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    limits::Limit,
    model::{Actor, Audience, Event, Typing},
    Core,
};
use crate::error::AppResult;

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Core {
    pub async fn set_typing(&self, actor: &Actor, chat: &str, typing: bool) -> AppResult<()> {
        if typing {
            self.limits.check(Limit::Typing, &actor.user_id)?;
        }
        super::check_id("chatId", chat)?;
        self.require_member(chat, &actor.user_id).await?;
        let key = (chat.to_string(), actor.user_id.clone());
        let event = |typing: bool| {
            Event::Typing(Typing {
                chat_id: chat.to_string(),
                user_id: actor.user_id.clone(),
                username: actor.username.clone(),
                typing,
            })
        };
        let audience = Audience::Chat(chat.to_string());
        if !typing {
            self.typing.remove(&key);
            self.hub.publish(&audience, event(false), actor.conn);
            return Ok(());
        }
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        self.typing.insert(key.clone(), generation);
        self.hub.publish(&audience, event(true), actor.conn);

        let (map, hub, timeout, stop) = (
            self.typing.clone(),
            self.hub.clone(),
            self.config.typing_timeout,
            event(false),
        );
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            // Only the newest indicator may expire; a renewal replaced the generation.
            if map.remove_if(&key, |_, g| *g == generation).is_some() {
                hub.publish(&Audience::Chat(key.0.clone()), stop, None);
            }
        });
        Ok(())
    }
}
