//! How connections are carried, written once for every dialect: Socket.IO namespaces
//! (`socketio`, with the request head a session keeps and the idle sweep), and what every
//! REST route shares (`rest`).

pub mod idle;
pub mod rest;
pub mod session_head;
pub mod socketio;
