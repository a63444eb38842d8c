//! Delivered and read receipts. A receipt moves the member's cursor (read implies delivered
//! and covers every earlier message), and the delivered cursor of the device that sent it,
//! and tells the message's sender.

use chrono::Utc;

use super::{
    check_id,
    limits::Limit,
    model::{Actor, Audience, Event, Receipt, ReceiptKind},
    Core,
};
use crate::{
    error::{AppError, AppResult, Field},
    store,
};

impl Core {
    pub async fn mark(&self, actor: &Actor, kind: ReceiptKind, chat: &str, message_id: &str) -> AppResult<Receipt> {
        let limit = match kind {
            ReceiptKind::Delivered => Limit::Delivered,
            ReceiptKind::Read => Limit::Read,
        };
        self.limits.check(limit, &actor.user_id)?;
        check_id(Field::Chat, chat)?;
        check_id(Field::Message, message_id)?;
        self.require_member(chat, &actor.user_id).await?;
        let msg = store::messages::get(&self.db, message_id)
            .await?
            .filter(|m| m.conversation_id == chat)
            .ok_or_else(|| AppError::NotFound("message not found in this conversation".into()))?;
        store::conversations::advance_cursor(&self.db, chat, &actor.user_id, msg.seq, kind == ReceiptKind::Read)
            .await?;
        // The client says it has the message: proof that it has what its connection was
        // handed before it, no more (a message that filled a gap below it was queued later
        // and may be lost with the connection). The device's catch-up starts after that.
        if let Some(upto) = self.ledger.vouched_by_receipt(actor.conn, chat, msg.seq) {
            store::devices::advance(&self.db, &[(chat, actor.user_id.as_str(), actor.device.as_str(), upto)]).await?;
        }
        let receipt = Receipt {
            kind,
            chat_id: chat.into(),
            message_id: msg.id.into(),
            seq: msg.seq,
            user_id: actor.user_id.clone(),
            at: Utc::now(),
        };
        if msg.sender_id != actor.user_id {
            self.hub.publish(&Audience::Users(vec![msg.sender_id.into()]), Event::Receipt(receipt.clone()), actor.conn);
        }
        Ok(receipt)
    }
}
