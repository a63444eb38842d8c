//! The `e2e` dialect (SPEC §7.3, seeds/end2end-chat.md, protocols/e2e.md): End2End Chat's
//! anonymous sessions over Socket.IO, and its REST routes. Translation only: the rules
//! (keys, modes, reservations, addressed messages, expiry) are the core's (`core::sessions`).
//!
//! A socket connects with no token and is nobody until `join-session` succeeds; it is then
//! bound to that session member ([`crate::transport::socketio::bind`]), and everything it does
//! acts as that member: a `from` naming anyone else is refused. On the wire a member is the id
//! the client chose; in the core it is namespaced by the session (`domain::session`).
//!
//! Client → server: `join-session`, `save-public-key`, `get-public-keys`, `send-message`,
//! `set-session-key`, `typing`, `stopped-typing`, `file-downloaded`, `leave-session`.
//! Server → client: `messages-history`, `session-metadata`, `public-keys-updated`,
//! `user-joined`, `user-left`, `new-message`, `message-sent`, `session-key-available`,
//! `user-typing`, `user-stopped-typing`, `download-notification`, `session-error`.

use crate::domain::UserId;
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, value::RawValue, Map, Value};
use socketioxide::extract::SocketRef;

use crate::{
    core::{
        messages::{Draft, MESSAGE_KINDS},
        presence::Identity,
        sessions::{JoinRefused, JoinSession},
    },
    domain::{
        session_chat_id, session_member_id, session_of_user, Actor, Event, Message, SessionMember, SessionMode,
        SessionNoticeKind, SESSION_CHAT_PREFIX,
    },
    error::{AppError, AppResult, Field},
    transport::{
        rest::error_response,
        socketio::{bind, raw_ack, success_ack, Answer, Handlers, Session, SocketIoProfile},
        AppState,
    },
};

pub struct E2e;

/// How many message ids a socket remembers having confirmed with `message-sent`.
const SENT_IDS_REMEMBERED: usize = 1024;

/// A handler's outcome: data for the ack, or a refusal the client was already told about by
/// `session-error` (and gets as an error ack when it asked for one).
pub enum Outcome {
    Data(Value),
    Refused { code: &'static str, message: String },
}

impl Answer for Outcome {
    fn into_ack(self) -> Box<RawValue> {
        match self {
            Outcome::Data(data) => success_ack(&data, None),
            Outcome::Refused { code, message } => {
                raw_ack(&json!({ "success": false, "error": { "code": code, "message": message } }))
            }
        }
    }

    fn refusal(&self) -> Option<&'static str> {
        match self {
            Outcome::Data(_) => None,
            Outcome::Refused { code, .. } => Some(code),
        }
    }
}

/// What the client reads in `session-error.error`.
fn refusal_code(r: JoinRefused) -> (&'static str, &'static str) {
    match r {
        JoinRefused::NotFound => {
            ("SESSION_NOT_FOUND", "Session not found. Check the session id or ask for a new link.")
        }
        JoinRefused::InvalidKey => ("INVALID_KEY", "Invalid session key."),
        JoinRefused::NotActive => ("SESSION_NOT_ACTIVE", "The session is not active yet: its creator has not joined."),
        JoinRefused::Full => ("SESSION_FULL", "This private session already has two members."),
    }
}

/// Tells the client with `session-error` and answers the ack with the same refusal.
fn refuse(socket: &SocketRef, code: &'static str, message: String) -> Outcome {
    let _ = socket.emit("session-error", &json!({ "error": code, "message": message }));
    Outcome::Refused { code, message }
}

/// Runs a handler's body: every failure becomes a `session-error` (a session that is gone is
/// `SESSION_NOT_FOUND`), and the connection stays.
async fn answered(
    socket: &SocketRef,
    body: impl std::future::Future<Output = AppResult<Outcome>>,
) -> AppResult<Outcome> {
    match body.await {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            e.log_if_internal("e2e");
            let code = match &e {
                AppError::NotFound(_) => "SESSION_NOT_FOUND",
                other => other.code(),
            };
            Ok(refuse(socket, code, e.body_in(E2e::field_name).message))
        }
    }
}

/// The session a payload names: `sessionId`, or `"sessionId:authKey"` (the key after the
/// first colon).
fn split_session(raw: &str) -> (&str, Option<&str>) {
    match raw.split_once(':') {
        Some((id, key)) => (id, Some(key)),
        None => (raw, None),
    }
}

fn required<'a>(value: &'a Option<String>, name: &str) -> AppResult<&'a str> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| AppError::validation(format!("{name} is required")))
}

/// The bound member, if the socket joined the session `raw_session` names; else why not:
/// `SESSION_NOT_FOUND` for a session that does not exist, `FORBIDDEN` for one not joined.
async fn member_in(app: &AppState, session: &Session, raw_session: &Option<String>) -> AppResult<(Actor, String)> {
    let (name, _) = split_session(required(raw_session, "sessionId")?);
    let chat = session_chat_id(name);
    if let Some(actor) = session.binding.actor().await {
        if session_of_user(&actor.user_id).as_deref() == Some(chat.as_str()) {
            return Ok((actor, chat.into()));
        }
    }
    if app.core.session_exists(&chat).await? {
        Err(AppError::Forbidden("join the session first".into()))
    } else {
        Err(AppError::NotFound("session not found".into()))
    }
}

/// A member id a payload gives for the acting member (`userId`, `from`, `downloadedBy`):
/// absent, or the member the socket joined as.
fn must_be_self(given: &Option<String>, actor: &Actor, chat: &str, name: &str) -> AppResult<()> {
    match given.as_deref() {
        None | Some("") => Ok(()),
        Some(id) if id == session_member_id(chat, &actor.user_id) => Ok(()),
        Some(_) => Err(AppError::Forbidden(format!("{name} must be the member this connection joined as"))),
    }
}

fn millis(t: &chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// A member as `public-keys-updated` lists them.
fn member_json(m: &SessionMember) -> Value {
    json!({
        "userId": m.member_id,
        "publicKey": m.public_key,
        "displayName": m.display_name,
        "joinedAt": millis(&m.joined_at),
    })
}

/// Marks a message whose ciphertext was not a string (stored as its JSON text).
const ENCRYPTED_JSON: &str = "encryptedJson";

/// A message as `new-message`, `message-sent` and `messages-history` carry it. `id` is the
/// client's `clientMessageId` when it gave one (every per-recipient copy shares it).
fn message_json(m: &Message) -> Value {
    let chat = m.chat_id.as_str();
    let as_json = m.metadata.as_ref().and_then(|meta| meta.get(ENCRYPTED_JSON)).and_then(Value::as_bool) == Some(true);
    let encrypted = if as_json {
        serde_json::from_str(&m.content).unwrap_or_else(|_| Value::String(m.content.clone()))
    } else {
        Value::String(m.content.clone())
    };
    let to = m.recipient.as_deref().map(|r| session_member_id(chat, r)).unwrap_or("all");
    json!({
        "id": m.temp_id.as_deref().unwrap_or(&m.id),
        "messageId": m.id,
        "clientMessageId": m.temp_id,
        "sessionId": chat.strip_prefix(SESSION_CHAT_PREFIX).unwrap_or(chat),
        "from": session_member_id(chat, &m.sender_id),
        "to": to,
        "encrypted": encrypted,
        "timestamp": millis(&m.created_at),
        "type": m.kind,
        "senderDisplayName": m.sender.as_ref().and_then(|s| s.name.clone()),
        "seq": m.seq,
    })
}

/// What a socket of this dialect remembers: the message ids it confirmed with `message-sent`
/// (once per id, though a message is sent as one copy per recipient).
#[derive(Default, Clone)]
struct Confirmed(Arc<Mutex<VecDeque<String>>>);

impl Confirmed {
    /// True the first time `id` is seen.
    fn first(&self, id: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.iter().any(|s| s == id) {
            return false;
        }
        if seen.len() >= SENT_IDS_REMEMBERED {
            seen.pop_front();
        }
        seen.push_back(id.to_string());
        true
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinReq {
    session_id: Option<String>,
    user_id: Option<String>,
    display_name: Option<String>,
    public_key: Option<String>,
    #[serde(default)]
    is_creator: Option<bool>,
    auth_key: Option<String>,
    chat_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyReq {
    session_id: Option<String>,
    user_id: Option<String>,
    public_key: Option<String>,
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberReq {
    session_id: Option<String>,
    user_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendReq {
    session_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    encrypted: Option<Value>,
    /// The plaintext the running service stored and relayed. Never read, never stored.
    #[serde(default, rename = "originalContent")]
    _original_content: serde::de::IgnoredAny,
    #[serde(rename = "type")]
    kind: Option<String>,
    client_message_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionKeyReq {
    session_id: Option<String>,
    encrypted_keys: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DownloadReq {
    session_id: Option<String>,
    downloaded_by: Option<String>,
    sender_id: Option<String>,
    file_name: Option<String>,
}

impl SocketIoProfile for E2e {
    const IDENTIFIED_AT_CONNECT: bool = false;
    /// A member is in one session: its sockets hear that session's typing without a room.
    const FOLLOWS_ALL_CHATS: bool = true;

    /// Sessions are anonymous: any client may connect (a token, if sent, is ignored); it is a
    /// visitor until it joins a session.
    fn authenticate(_app: &AppState, _auth: Option<&Value>, _parts: &http::request::Parts) -> AppResult<Identity> {
        Ok(Identity {
            user_id: UserId::default(),
            device_id: None,
            username: None,
            name: None,
            avatar: None,
            expires_at: None,
        })
    }

    /// Errors name fields as the web client sends them.
    fn field_name(field: Field) -> &'static str {
        match field {
            Field::Chat => "sessionId",
            Field::User | Field::Peer => "userId",
            Field::Recipient => "to",
            Field::TempId => "clientMessageId",
            other => other.neutral_name(),
        }
    }

    fn encode(event: &Event) -> Option<(&'static str, Value)> {
        Some(match event {
            Event::MessageCreated(m) if m.chat_id.starts_with(SESSION_CHAT_PREFIX) => ("new-message", message_json(m)),
            Event::Typing(t) if t.chat_id.starts_with(SESSION_CHAT_PREFIX) => (
                if t.typing { "user-typing" } else { "user-stopped-typing" },
                json!({ "userId": session_member_id(&t.chat_id, &t.user_id), "displayName": t.username }),
            ),
            Event::Session(n) => match &n.kind {
                SessionNoticeKind::Joined(m) => (
                    "user-joined",
                    json!({ "userId": m.member_id, "displayName": m.display_name, "timestamp": millis(&n.at) }),
                ),
                SessionNoticeKind::Left(m) => (
                    "user-left",
                    json!({ "userId": m.member_id, "displayName": m.display_name, "timestamp": millis(&n.at) }),
                ),
                SessionNoticeKind::Members(members) => {
                    ("public-keys-updated", Value::Array(members.iter().map(member_json).collect()))
                }
                SessionNoticeKind::SessionKeys(keys) => ("session-key-available", json!({ "encryptedKeys": keys })),
                SessionNoticeKind::FileDownloaded { by, file_name } => (
                    "download-notification",
                    json!({ "downloadedBy": by, "fileName": file_name, "timestamp": millis(&n.at) }),
                ),
            },
            _ => return None,
        })
    }

    fn handlers(h: &mut Handlers) {
        h.on_socket("join-session", |app, socket, session, req: JoinReq, _ticket| async move {
            answered(&socket.clone(), join(app, socket, session, req)).await
        });

        h.on_socket("save-public-key", |app, socket, session, req: KeyReq, _ticket| async move {
            answered(&socket, async {
                let (actor, chat) = member_in(&app, &session, &req.session_id).await?;
                must_be_self(&req.user_id, &actor, &chat, "userId")?;
                let members = app.core.save_session_key(&actor, &chat, req.public_key, req.display_name).await?;
                Ok(Outcome::Data(Value::Array(members.iter().map(member_json).collect())))
            })
            .await
        });

        h.on_socket("get-public-keys", |app, socket, session, req: MemberReq, _ticket| async move {
            answered(&socket.clone(), async move {
                let (actor, chat) = member_in(&app, &session, &req.session_id).await?;
                must_be_self(&req.user_id, &actor, &chat, "userId")?;
                let members = app.core.session_members(&actor, &chat).await?;
                let others: Vec<Value> =
                    members.iter().filter(|m| m.user_id != actor.user_id).map(member_json).collect();
                let _ = socket.emit("public-keys-updated", &others);
                Ok(Outcome::Data(Value::Array(others)))
            })
            .await
        });

        h.on_socket("send-message", |app, socket, session, req: SendReq, ticket| async move {
            answered(&socket.clone(), send(app, socket, session, req, ticket)).await
        });

        h.on_socket("set-session-key", |app, socket, session, req: SessionKeyReq, _ticket| async move {
            answered(&socket, async {
                let (actor, chat) = member_in(&app, &session, &req.session_id).await?;
                let keys = req.encrypted_keys.ok_or_else(|| AppError::validation("encryptedKeys is required"))?;
                app.core.set_session_keys(&actor, &chat, keys).await?;
                Ok(Outcome::Data(json!({})))
            })
            .await
        });

        for (event, typing) in [("typing", true), ("stopped-typing", false)] {
            h.on_socket(event, move |app, socket, session, req: MemberReq, _ticket| async move {
                answered(&socket, async {
                    let (actor, chat) = member_in(&app, &session, &req.session_id).await?;
                    must_be_self(&req.user_id, &actor, &chat, "userId")?;
                    app.core.set_typing(&actor, &chat, typing).await?;
                    Ok(Outcome::Data(json!({})))
                })
                .await
            });
        }

        h.on_socket("file-downloaded", |app, socket, session, req: DownloadReq, _ticket| async move {
            answered(&socket, async {
                let (actor, chat) = member_in(&app, &session, &req.session_id).await?;
                must_be_self(&req.downloaded_by, &actor, &chat, "downloadedBy")?;
                let sender = required(&req.sender_id, "senderId")?;
                let file_name = req.file_name.unwrap_or_default();
                app.core.session_file_downloaded(&actor, &chat, sender, file_name).await?;
                Ok(Outcome::Data(json!({})))
            })
            .await
        });

        h.on_socket("leave-session", |app, socket, session, req: MemberReq, _ticket| async move {
            answered(&socket, async {
                let (actor, chat) = member_in(&app, &session, &req.session_id).await?;
                must_be_self(&req.user_id, &actor, &chat, "userId")?;
                // Unbound first, so that the socket's going does not announce them again.
                session.binding.close().await;
                app.core.leave_session(&actor, &chat).await?;
                Ok(Outcome::Data(json!({})))
            })
            .await
        });
    }

    /// The member's connection went: the others hear that they left (they stay a member and
    /// may rejoin).
    fn disconnected(app: &Arc<AppState>, session: &Session) -> impl std::future::Future<Output = AppResult<()>> + Send {
        let (app, session) = (app.clone(), session.clone());
        async move {
            let Some(actor) = session.binding.actor().await else { return Ok(()) };
            let Some(chat) = session_of_user(&actor.user_id) else { return Ok(()) };
            app.core.session_member_gone(&actor, &chat).await
        }
    }
}

/// `join-session`: checks and stores the member, binds the socket to them, sends the history
/// and the session's metadata, then announces them. In that order the joiner gets
/// `messages-history`, `session-metadata`, `public-keys-updated`; the others
/// `public-keys-updated` and, on a first join, `user-joined`.
async fn join(app: Arc<AppState>, socket: SocketRef, session: Session, req: JoinReq) -> AppResult<Outcome> {
    let raw = required(&req.session_id, "sessionId")?;
    let member_id = required(&req.user_id, "userId")?.to_string();
    if let Some(ip) = crate::transport::client_ip(socket.req_parts(), &app.config.trusted_proxies) {
        app.core.limits.check_session_join(ip)?;
    }
    let (name, key_in_id) = split_session(raw);
    let mode = match req.chat_mode.as_deref() {
        None | Some("") => None,
        Some(m) => {
            Some(SessionMode::parse(m).ok_or_else(|| AppError::validation("chatMode must be group or private"))?)
        }
    };
    let request = JoinSession {
        name: name.to_string(),
        auth_key: key_in_id.map(str::to_string).or(req.auth_key).filter(|k| !k.is_empty()),
        member_id,
        display_name: req.display_name,
        public_key: req.public_key.filter(|k| !k.is_empty()),
        is_creator: req.is_creator.unwrap_or(false),
        mode,
    };
    let joined = match app.core.join_session(request).await? {
        Ok(joined) => joined,
        Err(refused) => {
            let (code, message) = refusal_code(refused);
            return Ok(refuse(&socket, code, message.into()));
        }
    };
    let chat = joined.info.chat_id.clone();
    let identity = Identity {
        user_id: joined.member.user_id.clone(),
        device_id: None,
        username: joined.member.display_name.clone(),
        name: None,
        expires_at: None,
        avatar: None,
    };
    let metadata = json!({
        "chatMode": joined.info.mode.as_str(),
        "encryptedSessionKey": joined.session_key,
    });
    let (core, emitter) = (app.core.clone(), socket.clone());
    let ((), previous) = bind::<E2e, _, _, _>(&app, &socket, &session, identity, |actor| async move {
        let (history, upto) = core.session_history(&actor, &chat).await?;
        let history: Vec<Value> = history.iter().map(message_json).collect();
        let _ = emitter.emit("messages-history", &history);
        let _ = emitter.emit("session-metadata", &metadata);
        if let Some(conn) = actor.conn {
            core.hub.handed(conn, &chat, upto);
        }
        Ok(())
    })
    .await?;
    // The socket was another member before (it switched sessions): that one is gone.
    if let Some(previous) = previous.filter(|p| p.user_id != joined.member.user_id) {
        if let Some(chat) = session_of_user(&previous.user_id) {
            if let Err(e) = app.core.session_member_gone(&previous, &chat).await {
                e.log_if_internal("e2e switch");
            }
        }
    }
    app.core.session_member_arrived(&joined).await?;
    Ok(Outcome::Data(json!({
        "sessionId": joined.info.name,
        "userId": joined.member.member_id,
        "chatMode": joined.info.mode.as_str(),
        "firstJoin": joined.first,
    })))
}

/// `send-message`: one copy, for one member (`to`) or for everyone (`to` empty or `"all"`).
/// The sender is the member the socket joined as; `originalContent` is never read. The sender
/// hears `message-sent` once per id, whatever the number of copies.
async fn send(
    app: Arc<AppState>,
    socket: SocketRef,
    session: Session,
    req: SendReq,
    ticket: crate::core::SendTicket,
) -> AppResult<Outcome> {
    let (actor, chat) = member_in(&app, &session, &req.session_id).await?;
    must_be_self(&req.from, &actor, &chat, "from")?;
    let (content, as_json) = match req.encrypted {
        Some(Value::String(s)) => (s, false),
        None | Some(Value::Null) => return Err(AppError::EmptyContent("encrypted is required".into())),
        Some(other) => (other.to_string(), true),
    };
    let kind = req.kind.filter(|k| !k.is_empty()).unwrap_or_else(|| "text".into());
    if !MESSAGE_KINDS.contains(&kind.as_str()) {
        return Err(AppError::validation(format!("type must be one of {}", MESSAGE_KINDS.join(", "))));
    }
    let to = req.to.as_deref().filter(|t| !t.is_empty() && *t != "all");
    let mut metadata = Map::new();
    if as_json {
        metadata.insert(ENCRYPTED_JSON.into(), Value::Bool(true));
    }
    let draft = Draft {
        chat_id: chat,
        content,
        kind,
        reply_to_id: None,
        metadata: (!metadata.is_empty()).then_some(Value::Object(metadata)),
        temp_id: req.client_message_id.filter(|id| !id.is_empty()),
        mentions: Vec::new(),
    };
    // Ciphertext of a file can be large: the Socket.IO buffer is the limit, not the text one.
    let max_len = app.config.max_buffer_size;
    let message = app.core.send_session_message(&actor, draft, to, max_len, Some(ticket)).await?;
    let out = message_json(&message);
    let confirmed = socket.extensions.get::<Confirmed>().unwrap_or_else(|| {
        let fresh = Confirmed::default();
        socket.extensions.insert(fresh.clone());
        fresh
    });
    if confirmed.first(out["id"].as_str().unwrap_or_default()) {
        let _ = socket.emit("message-sent", &out);
    }
    Ok(Outcome::Data(out))
}

/// The dialect's REST routes: `POST /api/reserve-session`, `GET /sessions` (admin).
pub fn routes(_app: &AppState) -> Router<Arc<AppState>> {
    Router::new().route("/api/reserve-session", post(reserve)).route("/sessions", get(list))
}

/// A REST refusal with the status the running service used (400 for a missing field), in
/// the SPEC §6 envelope.
fn rest_error(status: StatusCode, e: &AppError) -> Response {
    e.log_if_internal("http");
    (status, Json(json!({ "success": false, "error": e.body(), "message": e.to_string() }))).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReserveReq {
    session_id: Option<String>,
    auth_key: Option<String>,
    chat_mode: Option<String>,
}

/// A reservation's fields from its body: `sessionId` and `authKey` required, `chatMode`
/// `group` (default) or `private`. Read as every request is (`crate::payload::object`: an
/// object, no NUL, never an array by position). Pure (the decoder property test feeds it every
/// shape of body).
fn reservation(body: &Value) -> AppResult<(String, String, SessionMode)> {
    let req: ReserveReq = crate::payload::object(body)?;
    let session_id = required(&req.session_id, "sessionId")?.to_string();
    let auth_key = required(&req.auth_key, "authKey")?.to_string();
    let mode = match req.chat_mode.as_deref() {
        None | Some("") => SessionMode::Group,
        Some(m) => SessionMode::parse(m).ok_or_else(|| AppError::validation("chatMode must be group or private"))?,
    };
    Ok((session_id, auth_key, mode))
}

/// The JSON bodies of the REST routes, with their decoders, for the decoder property test.
pub fn body_decoders() -> Vec<(&'static str, crate::payload::Decoder)> {
    vec![("POST /api/reserve-session", |v| reservation(&v).map(drop))]
}

/// `POST /api/reserve-session { sessionId, authKey, chatMode? }`: reserves a session that
/// joiners may wait in until its creator joins. 400 without `sessionId` or `authKey`, 409 when
/// it exists.
async fn reserve(State(app): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let fields = serde_json::from_slice::<Value>(&body)
        .map_err(|e| AppError::validation(format!("body is not JSON: {e}")))
        .and_then(|v| reservation(&v));
    let (session_id, auth_key, mode) = match fields {
        Ok(fields) => fields,
        Err(e) => return rest_error(StatusCode::BAD_REQUEST, &e),
    };
    match app.core.reserve_session(&session_id, &auth_key, mode).await {
        Ok(info) => Json(json!({
            "success": true,
            "sessionId": info.name,
            "chatMode": info.mode.as_str(),
            "message": "Session reserved",
            "data": { "sessionId": info.name, "chatMode": info.mode.as_str() },
        }))
        .into_response(),
        Err(e @ AppError::Validation(_)) | Err(e @ AppError::InvalidField { .. }) => {
            rest_error(StatusCode::BAD_REQUEST, &e)
        }
        Err(e) => error_response(&e, |f| f.neutral_name()),
    }
}

/// `GET /sessions`: every session with its members and message count, for the admin token
/// (`ADMIN_TOKEN`, as `Authorization: Bearer` or `?token=`) only. Never any content.
async fn list(State(app): State<Arc<AppState>>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let Some(expected) = app.config.admin_token.as_deref() else {
        return error_response(&AppError::Forbidden("the session list is disabled (no ADMIN_TOKEN set)".into()), |f| {
            f.neutral_name()
        });
    };
    let given = crate::auth::token_from_request(&headers, uri.query());
    let matches = given.as_deref().is_some_and(|g| {
        use sha2::{Digest, Sha256};
        // Compared as digests, so that the time taken says nothing about the token.
        Sha256::digest(g.as_bytes()) == Sha256::digest(expected.as_bytes())
    });
    if !matches {
        return error_response(&AppError::Unauthorized("an admin token is required".into()), |f| f.neutral_name());
    }
    match app.core.list_sessions().await {
        Ok(sessions) => {
            let list: Vec<Value> = sessions
                .iter()
                .map(|s| {
                    json!({
                        "sessionId": s.info.name,
                        "chatMode": s.info.mode.as_str(),
                        "active": s.info.active,
                        "keyed": s.info.keyed,
                        "members": s.members.len(),
                        "messages": s.messages,
                        "publicKeys": s.members.iter().filter(|m| m.public_key.is_some()).count(),
                        "memberList": s.members.iter().map(|m| json!({
                            "userId": m.member_id,
                            "displayName": m.display_name,
                            "joinedAt": millis(&m.joined_at),
                            "hasPublicKey": m.public_key.is_some(),
                        })).collect::<Vec<_>>(),
                        "createdAt": millis(&s.info.created_at),
                        "lastActivity": millis(&s.info.last_activity_at),
                    })
                })
                .collect();
            Json(json!({ "success": true, "data": list, "sessions": list, "count": list.len() })).into_response()
        }
        Err(e) => error_response(&e, |f| f.neutral_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_may_carry_its_key_after_the_first_colon() {
        assert_eq!(split_session("abc"), ("abc", None));
        assert_eq!(split_session("abc:k:ey"), ("abc", Some("k:ey")));
    }

    #[test]
    fn message_sent_is_confirmed_once_per_id() {
        let confirmed = Confirmed::default();
        assert!(confirmed.first("m1"));
        assert!(!confirmed.first("m1"));
        assert!(confirmed.first("m2"));
    }
}
