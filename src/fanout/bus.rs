//! The contract of the cross-instance bus (Redis pub/sub in `store::redis`).

use serde::{Deserialize, Serialize};

use crate::domain::{Audience, Event};

/// An event on its way to the other instances.
#[derive(Serialize, Deserialize)]
pub struct Envelope {
    /// The publishing instance, which already delivered it locally.
    pub instance: String,
    pub audience: Audience,
    pub event: Event,
}

/// Resolves once the bus has accepted an envelope (or was shut down).
pub type Published = tokio::sync::oneshot::Receiver<()>;

/// Carries envelopes to the other instances.
pub trait Bus: Send + Sync + 'static {
    /// Queues an envelope; envelopes leave in the order they were queued.
    fn publish(&self, envelope: &Envelope) -> Published;
    /// Resolves when everything queued before it has left.
    fn flush(&self) -> Published;
}
