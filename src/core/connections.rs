//! Connections, owned by the core: every transport (Socket.IO namespaces, raw WebSockets)
//! opens and closes one the same way.
//!
//! A transport authenticates the client and builds its [`Connection`] (how the hub reaches
//! that client), then calls [`Core::open_connection`]. The connection is registered with the
//! hub first, in syncing mode: live messages for it wait until its backlog was pushed, and
//! nothing the client does can outrun the registration. Then its user and device are recorded
//! and the user is announced online. Once the client knows it is connected,
//! [`ConnectionGuard::start`] pushes the backlog. Closing the guard, or dropping it (a
//! transport that never completed its handshake), unregisters the connection and records the
//! departure: rooms, presence, the calls of a user who is gone.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use super::{presence::Identity, Core};
use crate::{
    domain::{ConnId, UserId},
    error::AppResult,
    fanout::Connection,
};

/// An open connection; see the module documentation.
pub struct ConnectionGuard {
    core: Arc<Core>,
    id: ConnId,
    open: AtomicBool,
}

impl Core {
    /// Opens a connection for `identity` (see the module documentation). On an error the
    /// connection is already closed again.
    /// `watching`: users whose presence it hears from the start (before its own user is
    /// announced, so that it can hear its own arrival).
    pub async fn open_connection(
        self: &Arc<Self>,
        identity: &Identity,
        conn: Arc<dyn Connection>,
        watching: &[UserId],
    ) -> AppResult<ConnectionGuard> {
        let id = self.hub.register(conn);
        if !watching.is_empty() {
            self.hub.watch(id, watching);
        }
        let guard = ConnectionGuard { core: self.clone(), id, open: AtomicBool::new(true) };
        self.user_connected(identity).await?;
        Ok(guard)
    }
}

impl ConnectionGuard {
    /// The hub's id of the connection.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The client knows it is connected: push what it missed, then deliver live.
    pub fn start(&self) {
        self.core.hub.start_sync(self.id);
    }

    /// Unregisters the connection and records the departure; only the first call does.
    pub async fn close(&self) {
        if self.open.swap(false, Ordering::SeqCst) {
            if let Some(departure) = self.core.hub.unregister(self.id) {
                self.core.connection_closed(departure).await;
            }
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.open.swap(false, Ordering::SeqCst) {
            if let Some(departure) = self.core.hub.unregister(self.id) {
                let core = self.core.clone();
                // Unregistered at once; the shared state (presence, rooms) follows.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { core.connection_closed(departure).await });
                }
            }
        }
    }
}
