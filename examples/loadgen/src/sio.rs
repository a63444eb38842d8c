//! Just enough Engine.IO v4 / Socket.IO v5 over WebSocket to drive a server hard from one core:
//! the handshake (`0{…}` open, `40{auth}` CONNECT, `40{sid}` or `44{message}` answer),
//! heartbeats (`2` → `3`), events `42[…]` / `42<id>[…]` and acks `43<id>[…]`, all on the
//! default namespace. Packets are classified without a JSON parse; scenarios parse only the
//! bodies they need.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    tungstenite::{self, protocol::WebSocketConfig, Message},
    WebSocketStream,
};

pub type Ws = WebSocketStream<TcpStream>;

/// Why a connection attempt or an established connection failed. `kind` is what the summary
/// counts, so it stays a short, stable label.
#[derive(Debug)]
pub enum Error {
    Tcp(std::io::Error),
    Handshake(String),
    /// The server refused the Socket.IO CONNECT (`44{"message": …}`).
    Refused(String),
    Protocol(String),
    Closed,
    Timeout,
}

impl Error {
    pub fn kind(&self) -> String {
        match self {
            Error::Tcp(e) => format!("tcp: {}", e.kind()),
            Error::Handshake(_) => "websocket handshake".into(),
            // Refusals carry numbers ("retry in 812 ms"); the label keeps the words only.
            Error::Refused(m) => {
                format!("refused: {}", m.split(|c: char| c.is_ascii_digit()).next().unwrap_or("").trim())
            }
            Error::Protocol(_) => "protocol".into(),
            Error::Closed => "closed by server".into(),
            Error::Timeout => "timeout".into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Tcp(e) => write!(f, "tcp: {e}"),
            Error::Handshake(e) => write!(f, "websocket handshake: {e}"),
            Error::Refused(m) => write!(f, "connect refused: {m}"),
            Error::Protocol(m) => write!(f, "protocol: {m}"),
            Error::Closed => f.write_str("closed by server"),
            Error::Timeout => f.write_str("timeout"),
        }
    }
}

impl From<tungstenite::Error> for Error {
    fn from(e: tungstenite::Error) -> Self {
        match e {
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Error::Closed,
            tungstenite::Error::Io(io) => Error::Tcp(io),
            other => Error::Protocol(other.to_string()),
        }
    }
}

/// One received packet, borrowing the frame's text.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Engine.IO ping: must be answered with a pong.
    Ping,
    /// Socket.IO EVENT: `body` is the JSON array `["name", args…]`.
    Event {
        ack: Option<u64>,
        body: &'a str,
    },
    /// Socket.IO ACK: `body` is the JSON array of the ack's arguments.
    Ack {
        id: u64,
        body: &'a str,
    },
    Connect(&'a str),
    ConnectError(&'a str),
    Disconnect,
    /// Engine.IO close, or anything else the scenarios do not act on.
    Other,
}

/// Classifies a text frame. Packets of other namespaces (`4x/nsp,…`) are `Other`.
pub fn parse(text: &str) -> Packet<'_> {
    let b = text.as_bytes();
    match b.first() {
        Some(b'2') => return Packet::Ping,
        Some(b'4') => {}
        _ => return Packet::Other,
    }
    let Some(&kind) = b.get(1) else { return Packet::Other };
    let rest = &text[2..];
    if rest.starts_with('/') {
        return Packet::Other;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 { rest[..digits].parse::<u64>().ok() } else { None };
    let body = &rest[digits..];
    match kind {
        b'0' => Packet::Connect(body),
        b'1' => Packet::Disconnect,
        b'2' => Packet::Event { ack: id, body },
        b'3' => match id {
            Some(id) => Packet::Ack { id, body },
            None => Packet::Other,
        },
        b'4' => Packet::ConnectError(body),
        _ => Packet::Other,
    }
}

/// The event name of an EVENT body, when it is a plain JSON string (ours always are).
pub fn event_name(body: &str) -> Option<&str> {
    let rest = body.strip_prefix("[\"")?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// Client-side WebSocket buffers: the default 128 KiB read buffer per connection would cost
/// the load generator 2.4 GiB at 19,000 idle connections, for frames of a few hundred bytes.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0)
}

/// A connected Socket.IO client on the default namespace.
pub struct Conn {
    ws: Ws,
}

impl Conn {
    /// Opens a TCP connection from `source` (port chosen by the kernel), upgrades it to a
    /// WebSocket at `/socket.io/?EIO=4&transport=websocket`, reads the Engine.IO open packet,
    /// sends CONNECT with `{"token": …}` (or no auth) and waits for the server's answer.
    pub async fn connect(server: SocketAddr, source: IpAddr, token: Option<&str>) -> Result<Self, Error> {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(Error::Tcp)?;
        socket.bind(SocketAddr::new(source, 0)).map_err(Error::Tcp)?;
        let stream = socket.connect(server).await.map_err(Error::Tcp)?;
        // Small frames are the whole workload; Nagle would add up to 40 ms to each.
        stream.set_nodelay(true).map_err(Error::Tcp)?;
        let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
            .await
            .map_err(|e| Error::Handshake(e.to_string()))?;
        let mut conn = Conn { ws };

        match conn.next_text().await? {
            Some(open) if open.starts_with('0') => {}
            Some(other) => return Err(Error::Protocol(format!("expected an open packet, got {}", clip(&other)))),
            None => return Err(Error::Closed),
        }
        let connect = match token {
            Some(t) => format!("40{{\"token\":\"{t}\"}}"),
            None => "40".to_string(),
        };
        conn.send(connect).await?;
        loop {
            let Some(text) = conn.next_text().await? else { return Err(Error::Closed) };
            match parse(&text) {
                Packet::Connect(_) => return Ok(conn),
                Packet::ConnectError(body) => {
                    let message = serde_json::from_str::<serde_json::Value>(body)
                        .ok()
                        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
                        .unwrap_or_else(|| clip(body));
                    return Err(Error::Refused(message));
                }
                Packet::Ping => conn.send("3".to_string()).await?,
                _ => {}
            }
        }
    }

    /// Sends one text frame (a whole packet) and flushes it.
    pub async fn send(&mut self, packet: String) -> Result<(), Error> {
        self.ws.send(Message::text(packet)).await.map_err(Error::from)
    }

    /// Sends an EVENT `42<ack>["event",<json>]`; `json` must already be valid JSON.
    pub async fn emit(&mut self, event: &str, json: &str, ack: Option<u64>) -> Result<(), Error> {
        let packet = match ack {
            Some(id) => format!("42{id}[\"{event}\",{json}]"),
            None => format!("42[\"{event}\",{json}]"),
        };
        self.send(packet).await
    }

    /// The next text frame, `None` once the server closed the connection. Control frames are
    /// handled by tungstenite; a binary frame is a protocol error here (nothing we send asks
    /// for one).
    pub async fn next_text(&mut self) -> Result<Option<tungstenite::Utf8Bytes>, Error> {
        loop {
            match self.ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(t))) => return Ok(Some(t)),
                Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Binary(_))) => return Err(Error::Protocol("unexpected binary frame".into())),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Leaves like `socket.disconnect()` does (a Socket.IO DISCONNECT, then a WebSocket close)
    /// and waits for the server to close its side, so that TIME_WAIT stays on the server and
    /// the client's source ports can be reused at once.
    pub async fn disconnect(mut self, wait: Duration) {
        let _ = self.send("41".to_string()).await;
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(wait, async { while let Some(Ok(_)) = self.ws.next().await {} }).await;
    }
}

/// At most 120 characters of something the server sent, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_classified_without_parsing_json() {
        assert_eq!(parse("2"), Packet::Ping);
        assert_eq!(parse("40{\"sid\":\"x\"}"), Packet::Connect("{\"sid\":\"x\"}"));
        assert_eq!(parse("44{\"message\":\"no\"}"), Packet::ConnectError("{\"message\":\"no\"}"));
        assert_eq!(parse("42[\"a\",{}]"), Packet::Event { ack: None, body: "[\"a\",{}]" });
        assert_eq!(parse("4217[\"a\",{}]"), Packet::Event { ack: Some(17), body: "[\"a\",{}]" });
        assert_eq!(parse("43123[{\"success\":true}]"), Packet::Ack { id: 123, body: "[{\"success\":true}]" });
        assert_eq!(parse("42/sup,[\"a\"]"), Packet::Other);
        assert_eq!(parse("41"), Packet::Disconnect);
        assert_eq!(parse("6"), Packet::Other);
        assert_eq!(parse(""), Packet::Other);
        assert_eq!(parse("4"), Packet::Other);
    }

    #[test]
    fn event_names_are_read_from_the_body() {
        assert_eq!(event_name("[\"message:new\",{}]"), Some("message:new"));
        assert_eq!(event_name("[1]"), None);
    }

    #[test]
    fn refusal_labels_drop_numbers() {
        let e = Error::Refused("too many connection attempts, retry in 812 ms".into());
        assert_eq!(e.kind(), "refused: too many connection attempts, retry in");
    }
}
