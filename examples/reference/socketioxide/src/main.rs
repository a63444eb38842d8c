//! The bare socketioxide reference server of the benchmarks (`examples/bench/run.sh`): what
//! socketioxide 0.18 does with no application behind it, so that Switchboard's figures can be
//! read as a fraction of the library's own ceiling.
//!
//! Behaviours, the same as `examples/reference/node/server.mjs`:
//! * any `auth` is accepted on `/` (there is no identity to check);
//! * `join` `{room}` joins the socket to `room` and acks `{success: true, data: {room}}`;
//! * `message:new` `{chatId, …}` broadcasts the payload as `message:new` to the room `chatId`
//!   (every socket in it but the sender), then acks `{success: true, data: payload}`: the
//!   shape of Switchboard's ack, without the database.
//!
//! `HOST` (default 127.0.0.1) and `PORT` (default 3201) choose the address; `TCP_NODELAY=0`
//! leaves Nagle's algorithm on.
//!
//! By default it runs socketioxide as it comes. Two settings apply the memory tuning that
//! Switchboard applies, to show what the library needs per connection with it (see
//! `examples/bench/analysis.md`, section 4): `WS_READ_BUFFER_SIZE=<bytes>` sets the WebSocket
//! read buffer (socketioxide's default is 4096), and `TRIM_SESSION_HEAD=1` gives Engine.IO
//! requests a head of their own, so that the session does not keep hyper's read buffer alive
//! (Switchboard's `src/http/session_head.rs`).

use axum::serve::ListenerExt;
use serde_json::{json, Value};
use socketioxide::{
    extract::{AckSender, Data, SocketRef},
    handler::ConnectHandler,
    SocketIo,
};

/// Registers the handlers. In a connect *middleware*, which runs before socketioxide sends
/// the CONNECT packet: registered in the connect handler (as socketioxide's examples do), an
/// event the client emits the moment it is connected can arrive first and be dropped (seen in
/// this benchmark's reconnect storm: 5 of 431 messages sent right after connecting were never
/// answered). Switchboard registers in its middleware for the same reason.
async fn register(s: SocketRef) -> Result<(), std::convert::Infallible> {
    s.on("join", async |s: SocketRef, Data(payload): Data<Value>, ack: AckSender| {
        let room = payload.get("room").and_then(Value::as_str).unwrap_or_default().to_string();
        s.join(room.clone());
        let _ = ack.send(&json!({ "success": true, "data": { "room": room } }));
    });
    s.on("message:new", async |s: SocketRef, Data(payload): Data<Value>, ack: AckSender| {
        if let Some(room) = payload.get("chatId").and_then(Value::as_str) {
            // A full buffer of some receiver is reported, not retried: that is what a bare
            // server does, and the load generator counts what did not arrive.
            let _ = s.to(room.to_string()).emit("message:new", &payload).await;
        }
        let _ = ack.send(&json!({ "success": true, "data": payload }));
    });
    Ok(())
}

async fn noop(_: SocketRef) {}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = match std::env::var("PORT").map(|p| p.parse()) {
        Err(_) => 3201,
        Ok(Ok(port)) => port,
        Ok(Err(e)) => {
            eprintln!("bare-socketioxide: invalid PORT: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };

    // `TCP_NODELAY=0` leaves Nagle's algorithm on, to show what it costs.
    let nodelay = std::env::var("TCP_NODELAY").map(|v| v != "0").unwrap_or(true);

    let mut builder = SocketIo::builder();
    match std::env::var("WS_READ_BUFFER_SIZE").map(|v| v.parse::<usize>()) {
        Err(_) => {}
        Ok(Ok(size)) if size > 0 => builder = builder.ws_read_buffer_size(size),
        Ok(_) => {
            eprintln!("bare-socketioxide: WS_READ_BUFFER_SIZE must be a number of bytes above zero");
            return std::process::ExitCode::FAILURE;
        }
    }
    let (layer, io) = builder.build_layer();
    io.ns("/", noop.with(register));

    let mut app = axum::Router::new().layer(layer);
    if std::env::var("TRIM_SESSION_HEAD").is_ok_and(|v| v == "1") {
        app = app.layer(axum::middleware::map_request(trim_session_head));
    }
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        // Small packets are the whole workload: without TCP_NODELAY, a packet written while
        // the previous one is unacknowledged waits for the peer's delayed ACK (40 ms on
        // Linux). Node's HTTP server sets it by default; axum::serve does not.
        Ok(l) => l.tap_io(move |tcp| {
            if nodelay {
                let _ = tcp.set_nodelay(true);
            }
        }),
        Err(e) => {
            eprintln!("bare-socketioxide: cannot bind {host}:{port}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("bare-socketioxide listening on {host}:{port}");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let stop = async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => return stop.await,
        };
        tokio::select! {
            _ = stop => {}
            _ = term.recv() => {}
        }
    };
    match axum::serve(listener, app).with_graceful_shutdown(stop).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-socketioxide: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Keeps what engineioxide reads from a request (URI, WebSocket key, body type) and the
/// upgrade handle, copied out of hyper's read buffer: engineioxide keeps the head for the
/// session's life, and hyper's head is made of slices of its 16 KiB read buffer.
async fn trim_session_head(req: axum::extract::Request) -> axum::extract::Request {
    use axum::http::{header, HeaderMap, HeaderValue, Uri};
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    let mut headers = HeaderMap::new();
    for name in [header::SEC_WEBSOCKET_KEY, header::CONTENT_TYPE] {
        if let Some(value) = parts.headers.get(&name).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
            headers.insert(name, value);
        }
    }
    parts.headers = headers;
    let mut extensions = axum::http::Extensions::new();
    if let Some(upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
        extensions.insert(upgrade);
    }
    parts.extensions = extensions;
    axum::extract::Request::from_parts(parts, body)
}
