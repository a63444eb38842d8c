//! The request head an Engine.IO session keeps: only what is read once the request has been
//! answered, in allocations of its own.
//!
//! engineioxide keeps the head of the request that opened a session (`Socket::req_parts`) for
//! as long as the session lives; Switchboard reads it once, in the connect middleware. As
//! hyper hands it over, that head pins the connection's whole HTTP read buffer: hyper parses
//! in place, so the URI and every header value are `Bytes` slices of the buffer, and the
//! buffer is 16 KiB (axum's server first sniffs for an HTTP/2 preface, so hyper's 8 KiB
//! buffer holds those 24 bytes when it reads the rest of the head, and grows to twice its
//! size). The head also carries every header the client sent (a browser's cookies and user
//! agent) and the router's extensions. At 19,000 idle WebSocket connections this was about
//! 7 KiB of resident memory per connection (`examples/bench/analysis.md`, section 4).
//!
//! [`engine_io`] is a route layer right outside the Socket.IO layer, so CORS and tracing,
//! further out, still see the request as it came. Since it sees every Engine.IO request, it
//! also tells the session's delivery receipts ([`crate::transport::sessions`]) about polls
//! and upgrades, and refuses new sessions once a graceful stop began.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::transport::{Peer, Transport};

/// Where socketioxide serves Engine.IO; only these requests can outlive their connection's
/// read buffer (REST requests are done with their head when they are answered).
const ENGINE_IO_PATH: &str = "/socket.io";

/// The headers read from a session's request. The connect middleware
/// (`transport::socketio`) reads the token ([`crate::auth::token_from_request`]) and the
/// client address ([`crate::transport::client_ip`]); engineioxide reads the WebSocket key and the
/// type of a polling body while it handles the request. **A header the connect middleware
/// reads must be listed here, or it reads as absent.**
pub static SESSION_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-real-ip"),
    header::SEC_WEBSOCKET_KEY,
    header::CONTENT_TYPE,
];

/// Middleware for every Engine.IO request: notes polls and upgrades for the session's
/// receipts, keeps only the session head ([`keep_session_head`]), and during a graceful stop
/// answers a request for a new session with 503, which socket.io-client retries (by then
/// at another instance): a session opened here now would only be closed again, and its
/// client would come back before this instance recorded what its clients confirmed.
pub async fn engine_io(State(transport): State<Arc<Transport>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with(ENGINE_IO_PATH) {
        return next.run(req).await;
    }
    let query = EngineQuery::parse(req.uri().query());
    let wire = req.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0.wire.clone());
    let mut poll = None;
    match (&query.sid, query.websocket, wire) {
        (None, _, _) if transport.stopping() => {
            return (StatusCode::SERVICE_UNAVAILABLE, "server is stopping").into_response();
        }
        (None, true, Some(wire)) => wire.expect_upgrade(),
        (Some(sid), true, Some(wire)) => transport.sessions.upgrade_requested(sid, &wire),
        (Some(sid), false, _) if req.method() == Method::GET => poll = Some(transport.sessions.poll_arrived(sid)),
        _ => {}
    }
    let res = next.run(keep_session_head(req).await).await;
    if let Some(poll) = poll {
        // engineioxide answers a poll with its payload and its exact length.
        let len = res
            .status()
            .is_success()
            .then(|| res.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse::<u64>().ok())
            .flatten();
        poll.answered(len);
    }
    res
}

/// What an Engine.IO request's query says about its session.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EngineQuery {
    pub sid: Option<String>,
    pub websocket: bool,
}

impl EngineQuery {
    pub fn parse(query: Option<&str>) -> Self {
        let mut out = Self::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "sid" => out.sid = Some(value.into_owned()),
                "transport" => out.websocket = value == "websocket",
                _ => {}
            }
        }
        out
    }
}

/// An Engine.IO request continues with a head of its own, holding the URI, the
/// [`SESSION_HEADERS`] and the extensions a session needs (the peer for
/// [`crate::transport::client_ip`] and for the session's receipts, and hyper's upgrade handle for
/// a WebSocket).
pub async fn keep_session_head(req: Request) -> Request {
    if !req.uri().path().starts_with(ENGINE_IO_PATH) {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    // A URI that does not survive the copy (it always should: hyper parsed it) keeps sharing
    // the buffer, which costs memory but nothing else.
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    parts.headers = session_headers(&parts.headers);
    let mut extensions = axum::http::Extensions::new();
    if let Some(peer) = parts.extensions.remove::<ConnectInfo<Peer>>() {
        extensions.insert(peer);
    }
    if let Some(upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
        extensions.insert(upgrade);
    }
    parts.extensions = extensions;
    Request::from_parts(parts, body)
}

/// The [`SESSION_HEADERS`] of `headers`, their values copied into one allocation. None
/// present (the usual WebSocket case but for its key): a map that allocates nothing.
fn session_headers(headers: &HeaderMap) -> HeaderMap {
    let kept: Vec<(&HeaderName, &HeaderValue)> =
        SESSION_HEADERS.iter().flat_map(|name| headers.get_all(name).iter().map(move |v| (name, v))).collect();
    let mut out = HeaderMap::with_capacity(kept.len());
    if kept.is_empty() {
        return out;
    }
    let mut copy = Vec::with_capacity(kept.iter().map(|(_, v)| v.len()).sum());
    for (_, value) in &kept {
        copy.extend_from_slice(value.as_bytes());
    }
    let copy = Bytes::from(copy);
    let mut at = 0;
    for (name, value) in kept {
        let len = value.len();
        // hyper validated the value, so it always survives the copy; if not, it is shared.
        let mut fresh = HeaderValue::from_maybe_shared(copy.slice(at..at + len)).unwrap_or_else(|_| value.clone());
        fresh.set_sensitive(value.is_sensitive());
        out.append(name.clone(), fresh);
        at += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::OriginalUri;
    use std::net::SocketAddr;

    const HEAD: &[u8] = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: example.test\r\n\
        Cookie: a=1\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 10.0.0.1\r\n\
        Authorization: Bearer t\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    /// A request whose URI and header values are slices of `buffer`, as hyper builds them,
    /// with a peer address and a router extension.
    fn parsed_from(buffer: &Bytes, path: &str) -> Request {
        let text = std::str::from_utf8(buffer).expect("ascii");
        let slice = |needle: &str| {
            let start = text.find(needle).expect("present");
            buffer.slice(start..start + needle.len())
        };
        let mut req = Request::new(axum::body::Body::empty());
        *req.uri_mut() = if path.starts_with(ENGINE_IO_PATH) {
            Uri::from_maybe_shared(slice(path)).expect("uri")
        } else {
            Uri::try_from(path).expect("uri")
        };
        let headers = req.headers_mut();
        for (name, value) in [
            (header::HOST, "example.test"),
            (header::COOKIE, "a=1"),
            (HeaderName::from_static("x-forwarded-for"), "198.51.100.1"),
            (HeaderName::from_static("x-forwarded-for"), "10.0.0.1"),
            (header::AUTHORIZATION, "Bearer t"),
            (header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="),
        ] {
            let mut value = HeaderValue::from_maybe_shared(slice(value)).expect("value");
            value.set_sensitive(name == header::AUTHORIZATION);
            headers.append(name, value);
        }
        let peer: SocketAddr = "192.0.2.7:50000".parse().expect("address");
        let config = crate::config::Config::from_vars(Vec::new()).expect("defaults");
        req.extensions_mut().insert(ConnectInfo(Peer::unwatched(peer, Transport::new(&config))));
        let uri = req.uri().clone();
        req.extensions_mut().insert(OriginalUri(uri));
        req
    }

    #[tokio::test]
    async fn an_engine_io_request_keeps_what_the_session_reads_and_not_the_read_buffer() {
        let buffer = Bytes::copy_from_slice(HEAD);
        let req = keep_session_head(parsed_from(&buffer, "/socket.io/?EIO=4&transport=websocket")).await;
        assert!(buffer.is_unique(), "something still points into the read buffer");

        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        let forwarded: Vec<_> = req.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["198.51.100.1", "10.0.0.1"], "every value, in order");
        assert_eq!(req.headers()[header::AUTHORIZATION], "Bearer t");
        assert!(req.headers()[header::AUTHORIZATION].is_sensitive(), "sensitivity is kept");
        assert_eq!(req.headers()[header::SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(req.headers().get(header::COOKIE).is_none() && req.headers().get(header::HOST).is_none());
        assert_eq!(req.headers().len(), 4);

        let peer = req.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0.addr);
        assert_eq!(peer, "192.0.2.7:50000".parse().ok(), "the peer address stays, for client_ip");
        assert!(req.extensions().get::<OriginalUri>().is_none(), "router extensions go");
    }

    #[test]
    fn reads_the_session_and_transport_of_an_engine_io_query() {
        let q = EngineQuery::parse(Some("EIO=4&transport=websocket&sid=ab%2Bc"));
        assert_eq!(q, EngineQuery { sid: Some("ab+c".into()), websocket: true });
        assert_eq!(EngineQuery::parse(Some("EIO=4&transport=polling&t=x")), EngineQuery::default());
        assert_eq!(EngineQuery::parse(None), EngineQuery::default());
    }

    #[tokio::test]
    async fn other_requests_are_left_alone() {
        let buffer = Bytes::copy_from_slice(HEAD);
        let req = keep_session_head(parsed_from(&buffer, "/api/conversations")).await;
        assert!(!buffer.is_unique(), "a REST request's head is not copied");
        assert_eq!(req.headers().len(), 6);
        assert!(req.extensions().get::<OriginalUri>().is_some());
    }
}
