//! How connections are carried, written once for every dialect: Socket.IO namespaces
//! (`socketio`, with the request head a session keeps and the idle sweep), the raw WebSocket
//! host (`raw_ws`) every raw-WebSocket dialect shares, and what every REST route shares
//! (`rest`).

pub mod idle;
pub mod raw_ws;
pub mod rest;
pub mod session_head;
pub mod socketio;
