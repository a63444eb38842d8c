//! Socialink's calls (protocols/socialink.md §8) on the core's call state machine, which SUP
//! clients of the same conversation share. Socialink's states map onto the core's:
//! `Ringing` = ringing, `Answered` = active, `Declined` = rejected, `Missed` = missed,
//! `Ended` = ended. SDP offers and answers and ICE candidates are opaque strings, stored with
//! the call.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post, put},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{body, decode_with, parse_enum, target_id, time, Caller, Params, Reply};
use crate::{
    core::{
        calls::CallRequest,
        model::{Actor, Call, CallChange, CallKind, CallSignal, CallStatus, Event},
    },
    error::AppError,
    transport::AppState,
};

pub fn router(_app: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/calls/initiate/{caller_id}", post(initiate))
        .route("/calls/history/{conversation_id}", get(history))
        .route("/calls/{call_id}/answer/{user_id}", put(answer))
        .route("/calls/{call_id}/decline/{user_id}", put(decline))
        .route("/calls/{call_id}/end/{user_id}", put(end))
        .route("/calls/{call_id}/ice/{user_id}", post(add_ice))
        .route("/calls/{call_id}/ice", get(list_ice))
}

/// Largest SDP or ICE candidate, in bytes.
const MAX_SIGNAL_BYTES: usize = 64 * 1024;
/// History pages: 20 calls unless asked, at most 100.
const DEFAULT_HISTORY: u64 = 20;
const MAX_HISTORY: u64 = 100;

const CALL_TYPES: [(&str, CallKind); 2] = [("Audio", CallKind::Audio), ("Video", CallKind::Video)];

#[derive(Deserialize)]
struct InitiateBody {
    conversation_id: String,
    call_type: String,
    sdp_offer: String,
}

#[derive(Deserialize)]
struct AnswerBody {
    sdp_answer: String,
}

#[derive(Deserialize)]
struct IceBody {
    candidate: String,
}

#[derive(Deserialize)]
struct IceQuery {
    from: Option<String>,
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<u64>,
}

/// The JSON bodies of these routes, each with the checks made before any lookup (see
/// `super::body_decoders`).
pub(super) fn bodies() -> Vec<(&'static str, crate::payload::Decoder)> {
    vec![
        ("POST /calls/initiate/{caller_id}", |v| {
            decode_with(v, |b: InitiateBody| {
                parse_enum(&b.call_type, &CALL_TYPES, "call_type")?;
                Ok(signal_size("sdp_offer", &b.sdp_offer)?)
            })
        }),
        ("PUT /calls/{call_id}/answer/{user_id}", |v| {
            decode_with(v, |b: AnswerBody| Ok(signal_size("sdp_answer", &b.sdp_answer)?))
        }),
        ("POST /calls/{call_id}/ice/{user_id}", |v| {
            decode_with(v, |b: IceBody| Ok(signal_size("candidate", &b.candidate)?))
        }),
    ]
}

fn signal_size(what: &str, text: &str) -> Result<(), AppError> {
    if text.len() > MAX_SIGNAL_BYTES {
        return Err(AppError::validation(format!("{what} is larger than {MAX_SIGNAL_BYTES} bytes")));
    }
    Ok(())
}

/// `POST /calls/initiate/{caller_id}` `{conversation_id, call_type, sdp_offer}`: 201 with the
/// call, ringing every other member.
async fn initiate(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(caller_id): Path<String>,
    bytes: Bytes,
) -> Reply<impl IntoResponse> {
    let actor = caller.acting_as(&caller_id)?;
    let req: InitiateBody = body(&bytes)?;
    let kind = parse_enum(&req.call_type, &CALL_TYPES, "call_type")?;
    signal_size("sdp_offer", &req.sdp_offer)?;
    let call = app
        .core
        .initiate_call(
            actor,
            CallRequest {
                chat_id: Some(target_id(&req.conversation_id)?.to_string()),
                callee_id: None,
                kind: kind.as_str().to_string(),
                offer: Some(Value::String(req.sdp_offer)),
                call_id: None,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(call_json(&call))))
}

/// `PUT /calls/{call_id}/answer/{user_id}` `{sdp_answer}`: a ringing callee picks up.
async fn answer(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((call_id, user_id)): Path<(String, String)>,
    bytes: Bytes,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let req: AnswerBody = body(&bytes)?;
    signal_size("sdp_answer", &req.sdp_answer)?;
    callee_of(&app, actor, &call_id).await?;
    app.core.answer_call(actor, &call_id, Some(Value::String(req.sdp_answer))).await?;
    Ok(Json(json!({ "success": true, "status": "answered" })))
}

/// `PUT /calls/{call_id}/decline/{user_id}`: a ringing callee declines.
async fn decline(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((call_id, user_id)): Path<(String, String)>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    callee_of(&app, actor, &call_id).await?;
    app.core.reject_call(actor, &call_id, None).await?;
    Ok(Json(json!({ "success": true, "status": "declined" })))
}

/// `PUT /calls/{call_id}/end/{user_id}`: the caller gives up on a ringing call (missed), a
/// ringing callee declines, a participant hangs up an answered call (ended).
async fn end(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((call_id, user_id)): Path<(String, String)>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    app.core.call_for_member(actor, target_id(&call_id)?).await?;
    let call = app.core.end_call(actor, &call_id).await?;
    let status = match call.status {
        CallStatus::Missed => "missed",
        CallStatus::Ended => "ended",
        // A callee's end declines; in a group the call rings on for the others.
        CallStatus::Rejected | CallStatus::Ringing => "declined",
        CallStatus::Active => "answered",
    };
    Ok(Json(json!({ "success": true, "status": status })))
}

/// `POST /calls/{call_id}/ice/{user_id}` `{candidate}`: stored, and relayed to the other party.
async fn add_ice(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((call_id, user_id)): Path<(String, String)>,
    bytes: Bytes,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let req: IceBody = body(&bytes)?;
    signal_size("candidate", &req.candidate)?;
    app.core.call_for_member(actor, target_id(&call_id)?).await?;
    app.core.relay_ice(actor, &call_id, Value::String(req.candidate)).await?;
    Ok(Json(json!({ "success": true })))
}

/// `GET /calls/{call_id}/ice?from=`: the call's candidates in arrival order, for members.
async fn list_ice(
    State(app): State<Arc<AppState>>,
    Caller(actor): Caller,
    Path(call_id): Path<String>,
    Params(query): Params<IceQuery>,
) -> Reply<Json<Value>> {
    let found = app.core.ice_candidates(&actor, target_id(&call_id)?, query.from.as_deref()).await?;
    let candidates: Vec<String> = found.into_iter().map(|c| opaque(Some(c.candidate)).unwrap_or_default()).collect();
    Ok(Json(json!({ "count": candidates.len(), "candidates": candidates })))
}

/// `GET /calls/history/{conversation_id}?limit=`: newest first, whatever dialect made them.
async fn history(
    State(app): State<Arc<AppState>>,
    Caller(actor): Caller,
    Path(conversation_id): Path<String>,
    Params(query): Params<HistoryQuery>,
) -> Reply<Json<Value>> {
    let limit = query.limit.unwrap_or(DEFAULT_HISTORY).clamp(1, MAX_HISTORY);
    let calls = app.core.call_history(&actor, target_id(&conversation_id)?, Some(limit), None).await?;
    let calls: Vec<Value> = calls.iter().map(call_json).collect();
    Ok(Json(json!({ "count": calls.len(), "calls": calls })))
}

/// Answering and declining are a callee's: the caller doing either asks for a transition the
/// call does not have (409), after the existence and membership checks (404, 403).
async fn callee_of(app: &AppState, actor: &Actor, call_id: &str) -> Reply<Call> {
    let call = app.core.call_for_member(actor, target_id(call_id)?).await?;
    if call.caller_id == actor.user_id {
        return Err(AppError::Conflict("the caller cannot answer or decline their own call".into()).into());
    }
    Ok(call)
}

/// Socialink's name of a call's state.
pub fn status_name(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Ringing => "Ringing",
        CallStatus::Active => "Answered",
        CallStatus::Rejected => "Declined",
        CallStatus::Missed => "Missed",
        CallStatus::Ended => "Ended",
    }
}

fn kind_name(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Audio => "Audio",
        CallKind::Video => "Video",
    }
}

/// An offer, answer or candidate as Socialink's string: what a Socialink client sent comes
/// back as it was; what another dialect sent (SUP's objects) as its JSON text.
fn opaque(value: Option<Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    }
}

/// The Call object of §8. `started_at` is when it was answered, `created_at` when it began
/// ringing; `duration_seconds` only for an answered call that ended.
pub fn call_json(c: &Call) -> Value {
    let duration = match c.status {
        CallStatus::Ended => c.duration_ms.map(|ms| ms / 1000),
        _ => None,
    };
    json!({
        "id": c.id,
        "conversation_id": c.chat_id,
        "caller_id": c.caller_id,
        "call_type": kind_name(c.kind),
        "status": status_name(c.status),
        "sdp_offer": opaque(c.offer.clone()),
        "sdp_answer": opaque(c.answer.clone()),
        "ice_candidates": [],
        "started_at": c.answered_at.as_ref().map(time),
        "ended_at": c.ended_at.as_ref().map(time),
        "duration_seconds": duration,
        "created_at": time(&c.started_at),
    })
}

/// The call frames (§9): `call_initiated` … `call_missed` with the call, to every member's
/// devices, and `ice_candidate` to the other party's; `None` for any other event.
pub fn frame(event: &Event) -> Option<Value> {
    match event {
        Event::CallChanged(change, call) => {
            let kind = match change {
                CallChange::Initiated => "call_initiated",
                CallChange::Answered => "call_answered",
                CallChange::Declined => "call_declined",
                CallChange::Ended => "call_ended",
                CallChange::Missed => "call_missed",
            };
            Some(json!({ "type": kind, "call": call_json(call) }))
        }
        Event::Call(CallSignal::IceCandidate { call_id, user_id, candidate, .. }) => Some(json!({
            "type": "ice_candidate",
            "call_id": call_id,
            "user_id": user_id,
            "candidate": opaque(Some(candidate.clone())),
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::*;

    fn call(status: CallStatus) -> Call {
        let start = Utc::now();
        Call {
            id: "k1".into(),
            chat_id: "c1".into(),
            caller_id: "alice".into(),
            callee_ids: vec!["bob".into()],
            kind: CallKind::Video,
            status,
            answered_by: Some("bob".into()),
            ended_by: Some("alice".into()),
            end_reason: None,
            started_at: start,
            answered_at: Some(start + Duration::seconds(2)),
            ended_at: Some(start + Duration::seconds(65)),
            duration_ms: Some(63_500),
            offer: Some(json!("v=0 offer")),
            answer: Some(json!({ "type": "answer", "sdp": "v=0" })),
        }
    }

    #[test]
    fn calls_read_in_socialinks_words() {
        let out = call_json(&call(CallStatus::Ended));
        assert_eq!(out["status"], "Ended");
        assert_eq!(out["call_type"], "Video");
        assert_eq!(out["sdp_offer"], "v=0 offer");
        assert_eq!(out["sdp_answer"], r#"{"sdp":"v=0","type":"answer"}"#);
        assert_eq!(out["duration_seconds"], 63);
        assert_eq!(out["ice_candidates"], json!([]));
        assert_eq!(call_json(&call(CallStatus::Missed))["duration_seconds"], Value::Null);
        assert_eq!(call_json(&call(CallStatus::Rejected))["status"], "Declined");
        assert_eq!(call_json(&call(CallStatus::Active))["status"], "Answered");
    }

    #[test]
    fn transitions_and_candidates_become_frames() {
        let out = frame(&Event::CallChanged(CallChange::Missed, call(CallStatus::Missed))).expect("a frame");
        assert_eq!(out["type"], "call_missed");
        assert_eq!(out["call"]["id"], "k1");
        let ice = Event::Call(CallSignal::IceCandidate {
            call_id: "k1".into(),
            chat_id: "c1".into(),
            user_id: "bob".into(),
            candidate: json!("candidate:1 1 udp"),
        });
        assert_eq!(
            frame(&ice),
            Some(
                json!({ "type": "ice_candidate", "call_id": "k1", "user_id": "bob", "candidate": "candidate:1 1 udp" })
            )
        );
    }
}
