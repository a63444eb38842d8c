//! How connections are carried, independent of what they say: the raw WebSocket host
//! ([`raw_ws`]) that every raw-WebSocket dialect shares. (Socket.IO namespaces are carried by
//! `profiles::socketio` for now.)

pub mod raw_ws;
