//! Calls: the state machine's states and the signals relayed between the parties.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    chat::Profile,
    ids::{ChatId, UserId},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallKind {
    Audio,
    Video,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Audio => "audio",
            CallKind::Video => "video",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audio" => Some(CallKind::Audio),
            "video" => Some(CallKind::Video),
            _ => None,
        }
    }
}

/// The call state machine: `Ringing` → `Active` → `Ended`; a ringing call can also end as
/// `Rejected` (every callee declined) or `Missed` (nobody answered in time, or the caller
/// gave up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallStatus {
    Ringing,
    Active,
    Ended,
    Rejected,
    Missed,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::Active => "active",
            CallStatus::Ended => "ended",
            CallStatus::Rejected => "rejected",
            CallStatus::Missed => "missed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ringing" => Some(CallStatus::Ringing),
            "active" => Some(CallStatus::Active),
            "ended" => Some(CallStatus::Ended),
            "rejected" => Some(CallStatus::Rejected),
            "missed" => Some(CallStatus::Missed),
            _ => None,
        }
    }

    pub fn is_live(self) -> bool {
        matches!(self, CallStatus::Ringing | CallStatus::Active)
    }
}

/// Why a call (or its ringing on some devices) stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallEndReason {
    /// A participant of an active call hung up.
    Hangup,
    /// The caller gave up before anyone answered.
    Cancelled,
    /// Nobody answered within the ring timeout.
    Missed,
    /// Every callee declined.
    Rejected,
    /// Another device of this user, or another member of a group, answered.
    AnsweredElsewhere,
    /// Another device of this user declined.
    RejectedElsewhere,
    /// A participant had no connection left for longer than the grace period.
    Disconnected,
}

impl CallEndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CallEndReason::Hangup => "hangup",
            CallEndReason::Cancelled => "cancelled",
            CallEndReason::Missed => "missed",
            CallEndReason::Rejected => "rejected",
            CallEndReason::AnsweredElsewhere => "answered_elsewhere",
            CallEndReason::RejectedElsewhere => "rejected_elsewhere",
            CallEndReason::Disconnected => "disconnected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            CallEndReason::Hangup,
            CallEndReason::Cancelled,
            CallEndReason::Missed,
            CallEndReason::Rejected,
            CallEndReason::AnsweredElsewhere,
            CallEndReason::RejectedElsewhere,
            CallEndReason::Disconnected,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub chat_id: ChatId,
    pub caller_id: UserId,
    /// Everyone who was rung.
    pub callee_ids: Vec<UserId>,
    pub kind: CallKind,
    pub status: CallStatus,
    pub answered_by: Option<UserId>,
    pub ended_by: Option<UserId>,
    pub end_reason: Option<CallEndReason>,
    pub started_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// The caller's offer and the callee's answer, as the clients sent them.
    #[serde(default)]
    pub offer: Option<Value>,
    #[serde(default)]
    pub answer: Option<Value>,
}

/// What just happened to a call, for dialects that tell every member of the chat about every
/// transition (Socialink) rather than signalling only the parties concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallChange {
    Initiated,
    Answered,
    /// A callee declined; the call itself stays `Ringing` while other callees still ring.
    Declined,
    Ended,
    Missed,
}

/// An ICE candidate as stored: who sent it, in which call, in arrival order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IceCandidate {
    pub call_id: String,
    pub user_id: UserId,
    pub candidate: Value,
    pub at: DateTime<Utc>,
}

/// Who placed a call and what kind of call it is. Every signal of the call repeats it, so a
/// client can show the call (and its caller) from any one of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallOrigin {
    pub caller_id: UserId,
    pub caller: Profile,
    pub kind: CallKind,
}

/// Call signaling. Offers, answers and ICE candidates are opaque to the server (WebRTC SDP
/// and candidates as the clients produce them) and relayed untouched.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CallSignal {
    /// To every device of the callees.
    Incoming {
        call: Call,
        caller: Profile,
        offer: Option<Value>,
    },
    /// To the caller: `user_id` picked up.
    Answered {
        call_id: String,
        chat_id: ChatId,
        origin: CallOrigin,
        user_id: UserId,
        answer: Option<Value>,
    },
    /// To the caller: `user_id` declined; `status` says whether the call is over.
    Rejected {
        call_id: String,
        chat_id: ChatId,
        origin: CallOrigin,
        user_id: UserId,
        reason: Option<String>,
        status: CallStatus,
    },
    /// The call is over for the receiver (or stopped ringing on this device).
    Ended {
        call_id: String,
        chat_id: ChatId,
        origin: CallOrigin,
        reason: CallEndReason,
        ended_by: Option<UserId>,
        answered_by: Option<UserId>,
        duration_ms: Option<i64>,
    },
    IceCandidate {
        call_id: String,
        chat_id: ChatId,
        user_id: UserId,
        candidate: Value,
    },
}
