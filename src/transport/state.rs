//! Shared state of one server instance, handed to every HTTP route and Socket.IO handler.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use crate::{auth::Verifier, config::Config, core::Core, telemetry::metrics::Metrics};

use super::Transport;

pub struct AppState {
    pub config: Arc<Config>,
    pub core: Arc<Core>,
    pub verifier: Verifier,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// Present when `REDIS_URL` is set (for `/health`).
    pub redis: Option<deadpool_redis::Pool>,
    pub inflight: InFlight,
    /// Open raw WebSocket connections, closed with a close frame at shutdown.
    pub raw_ws: crate::transport::raw_ws::Registry,
    /// What the transports learn about what reached the clients (see [`crate::transport`]).
    pub transport: Arc<Transport>,
}

/// Counts client operations in progress, so a graceful stop can let them finish.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

pub struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// Waits until no operation is in progress, or the timeout passes.
    pub async fn wait_idle(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(
                    remaining = self.count.load(Ordering::SeqCst),
                    "gave up waiting for in-flight operations"
                );
                return;
            }
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
