//! Connections end when their token does: a token is checked once, at connect, and an open
//! connection must not outlive it (a revoked user's token stops working at its `exp`).
//!
//! * **Socket.IO.** One task sweeps every socket of every namespace each [`PERIOD`], like the
//!   idle sweep (no task or timer per connection). A socket whose token expired gets the event
//!   `error` `{ code: "TOKEN_EXPIRED", message, event: null }` and then a Socket.IO DISCONNECT:
//!   socket.io-client reports `io server disconnect` and does not reconnect by itself, which
//!   is right, since the same token would be refused; the app gets a fresh token and calls
//!   `socket.connect()`. Events a client sends after its `exp` (before the sweep reached it)
//!   are refused with `TOKEN_EXPIRED` and close the socket the same way.
//! * **Raw WebSocket.** Each connection's writer waits on the deadline beside its other
//!   work and closes with [`super::raw_ws::close::TOKEN_EXPIRED`] (4001, reason `token
//!   expired`); frames read after it are not handed to the dialect.
//! * **REST** checks the token on every request.
//!
//! The deadline is the token's `exp` plus the verifier's leeway (`auth::LEEWAY_SECS`), the
//! same moment a new connection with that token starts being refused.

use std::time::Duration;

use serde_json::json;
use socketioxide::{extract::SocketRef, SocketIo};
use tokio::task::JoinHandle;

use super::socketio::Session;
use crate::error::AppError;

/// How often the sweep runs: how long past its deadline an idle socket may stay open.
pub const PERIOD: Duration = Duration::from_secs(1);

/// The refusal of anything a client sends after its token expired.
pub fn expired() -> AppError {
    AppError::TokenExpired("token expired: get a new token and reconnect".into())
}

/// Tells the client why, then disconnects the socket (see the module documentation).
pub fn close(socket: &SocketRef, session: &Session) {
    let body = expired().body();
    let _ = socket.emit("error", &json!({ "code": body.code, "message": body.message, "event": null }));
    match socket.clone().disconnect() {
        Ok(()) => tracing::info!(user = %session.identity.user_id, "socket closed: token expired"),
        // A full send buffer refuses the packet; the next sweep tries again.
        Err(e) => tracing::debug!(cause = %e, "could not disconnect a socket whose token expired"),
    }
}

/// Starts sweeping the sockets of `namespaces` for expired tokens.
pub fn spawn(io: SocketIo, namespaces: Vec<&'static str>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for namespace in &namespaces {
                let Some(sockets) = io.of(*namespace) else { continue };
                for socket in sockets.sockets() {
                    // A socket still in its connect middleware has no session yet.
                    let Some(session) = socket.extensions.get::<Session>() else { continue };
                    if session.identity.expired() {
                        close(&socket, &session);
                    }
                }
            }
        }
    })
}
