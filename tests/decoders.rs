//! Every decoder a dialect uses, fed generated JSON of every shape: each answers a typed
//! value or a typed refusal, and never panics (SPEC §5.5: nothing a client sends can crash the
//! server). The payloads are arbitrary JSON values (nulls, booleans, numbers of every kind,
//! strings with control and invisible characters, arrays, objects), and objects built from the
//! dialects' own field names so that decoding gets past "missing field" into the field types.
//!
//! Adding a dialect: add one line to `socket_io()` (a Socket.IO dialect: all its events come
//! from its handler table), to `rest()` (its REST bodies) or to `RAW` (a raw-WebSocket
//! dialect's frame decoder).

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use switchboard::{
    dialects::{e2e::E2e, mrezhen, socialink, spark::Spark, sup::Sup},
    transport::socketio::{decoders, Decoder},
};

/// Socket.IO dialects: name, and every event with its payload decoder.
fn socket_io() -> Vec<(&'static str, Vec<(&'static str, Decoder)>)> {
    vec![("sup", decoders::<Sup>()), ("spark", decoders::<Spark>()), ("e2e", decoders::<E2e>())]
}

/// REST dialects: name, and every route that reads a JSON body with that body's decoder.
fn rest() -> Vec<(&'static str, Vec<(&'static str, Decoder)>)> {
    vec![
        ("spark", switchboard::dialects::spark::body_decoders()),
        ("socialink", socialink::body_decoders()),
        ("e2e", switchboard::dialects::e2e::body_decoders()),
    ]
}

/// What a body may be refused with: a typed input error (Socialink's sends also tell an
/// empty or oversized ciphertext by its own code, §1).
const INPUT_REFUSALS: &[&str] = &["VALIDATION_FAILED", "EMPTY_CONTENT", "CONTENT_TOO_LONG"];

/// REST routes whose body is a list by contract (Socialink's bare-array bodies, §3, §4, §6):
/// an array is their request, not a struct read by position.
const LIST_BODIES: &[&str] = &[
    "POST /keys/prekeys/{user_id}/{device_id}",
    "DELETE /messages/queue/{user_id}/{device_id}",
    "POST /presence/bulk",
];

/// Raw-WebSocket dialects: name, and a frame decoder answering Ok or a refusal code.
type RawDecoder = fn(&str) -> Result<(), &'static str>;
const RAW: &[(&str, RawDecoder)] = &[
    ("mrezhen", |text| mrezhen::decode_frame(text).map(drop).map_err(|(_, refusal)| refusal.code)),
    ("socialink", |text| socialink::socket::decode_frame(text).map(drop).map_err(|e| e.code())),
];

/// Field names the dialects read, so that generated objects reach the decoders' field types.
const FIELDS: &[&str] = &[
    "chatId",
    "conversationId",
    "messageId",
    "userId",
    "userIds",
    "chatIds",
    "encryptedContent",
    "content",
    "messageType",
    "type",
    "replyToId",
    "metadata",
    "tempId",
    "status",
    "customStatus",
    "afterSeq",
    "limit",
    "callId",
    "calleeId",
    "targetUserId",
    "callType",
    "offer",
    "answer",
    "reason",
    "candidate",
    "before",
    "emoji",
    "reaction",
    "notificationId",
    "isTyping",
    "encrypted",
    "attachments",
    "location",
    "latitude",
    "longitude",
    "accuracy",
    "address",
    "deleteFor",
    "to",
    "with",
    "deviceId",
    "mentions",
    // e2e
    "sessionId",
    "from",
    "encrypted",
    "displayName",
    "publicKey",
    "isCreator",
    "authKey",
    "chatMode",
    "clientMessageId",
    "encryptedKeys",
    "downloadedBy",
    "senderId",
    "fileName",
    // socialink (REST bodies and WebSocket frames)
    "conversation_id",
    "recipient_id",
    "device_id",
    "device_name",
    "registration_id",
    "identity_key",
    "signed_prekey",
    "onetime_prekeys",
    "id",
    "public_key",
    "signature",
    "ciphertext",
    "ephemeral_key",
    "message_type",
    "is_self_destructing",
    "expires_in_seconds",
    "client_message_id",
    "name",
    "description",
    "member_ids",
    "user_id",
    "user_ids",
    "message_id",
    "message_ids",
    "custom_status",
    "call_type",
    "sdp_offer",
    "sdp_answer",
    "is_typing",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        "[a-z0-9-]{1,10}",
        Just(String::new()),
        Just("\u{0}".to_string()),
        Just("a\u{202E}b\n".to_string()),
        Just(" ".repeat(3)),
        Just("x".repeat(300)),
        Just("direct_message".to_string()),
        Just("get_history".to_string()),
        Just("ping".to_string()),
        Just("get_online_users".to_string()),
        Just("text".to_string()),
        Just("location".to_string()),
        // e2e and socialink words: message types, modes, enums, frame types, base64.
        Just("all".to_string()),
        Just("private".to_string()),
        Just("Text".to_string()),
        Just("System".to_string()),
        Just("Video".to_string()),
        Just("Away".to_string()),
        Just("ack".to_string()),
        Just("read".to_string()),
        Just("typing".to_string()),
        Just("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string()),
        Just("aGVsbG8".to_string()),
        Just("00000000-0000-0000-0000-000000000000".to_string()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        Just(Value::from(-1)),
        Just(Value::from(0)),
        Just(Value::from(1e300)),
    ]
}

/// Any JSON value, a few levels deep, with objects keyed by the dialects' field names.
fn json() -> impl Strategy<Value = Value> {
    let leaf =
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), number(), text().prop_map(Value::String)];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner.clone()), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn socket_io_decoders_answer_a_value_or_a_validation_error(payload in json()) {
        for (dialect, events) in socket_io() {
            for (event, decode) in events {
                if let Err(e) = decode(payload.clone()) {
                    prop_assert_eq!(e.code(), "VALIDATION_FAILED", "{} {}: {}", dialect, event, e);
                }
            }
        }
    }

    #[test]
    fn rest_body_decoders_answer_a_value_or_a_validation_error(payload in json()) {
        for (dialect, routes) in rest() {
            for (route, decode) in routes {
                if let Err(e) = decode(payload.clone()) {
                    prop_assert!(INPUT_REFUSALS.contains(&e.code()), "{} {}: {} {}", dialect, route, e.code(), e);
                }
            }
        }
    }

    #[test]
    fn raw_frame_decoders_answer_a_frame_or_a_refusal(payload in json(), garbage in ".{0,40}") {
        for (dialect, decode) in RAW {
            for text in [payload.to_string(), garbage.clone(), format!("{{\"type\":{payload}}}")] {
                if let Err(code) = decode(&text) {
                    prop_assert!(!code.is_empty(), "{}: {}", dialect, text);
                }
            }
        }
    }
}

#[test]
fn every_dialect_lists_its_events() {
    for (dialect, events) in socket_io() {
        assert!(events.len() > 3, "{dialect} lists its events");
    }
    // An array where an object belongs is refused by every event (it used to be read by
    // position into the request's fields).
    for (dialect, events) in socket_io().into_iter().chain(rest()) {
        for (event, decode) in events.into_iter().filter(|(name, _)| !LIST_BODIES.contains(name)) {
            let refused = decode(serde_json::json!(["c1", "hello", "text"]));
            assert!(refused.is_err(), "{dialect} {event} read an array as a request");
        }
    }
    // A list body's items are not read by position either.
    for (route, decode) in socialink::body_decoders().into_iter().filter(|(name, _)| LIST_BODIES.contains(name)) {
        let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(decode(serde_json::json!([[1, key]])).is_err(), "socialink {route} read an item by position");
    }
}
