//! A per-user limit on every frame a client sends over one connection type, whatever the
//! frame is (Mrezhen's running service counts pings too). Unlike the per-event buckets of
//! [`super::limits`], it is a sliding window kept in the shared state, so with `REDIS_URL` it
//! holds across instances: a user's connections on two instances share one window. A refusal
//! is remembered locally until its slot frees, so a client flooding refused frames costs no
//! shared-state round trip per frame.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;

use super::{model::UserId, Core};
use crate::{config::RateSpec, error::AppError, store::shared::SharedState};

pub struct FrameLimit {
    shared: Arc<dyn SharedState>,
    /// Names the window in shared state and in refusals.
    name: &'static str,
    spec: RateSpec,
    /// Users refused until the given instant.
    refused: DashMap<UserId, Instant>,
}

/// Above this many remembered refusals, expired ones are dropped at the next check.
const REFUSALS_KEPT: usize = 10_000;

impl Core {
    /// A frame limit named `name` (for example `mrezhen`), `spec.count` frames per user in any
    /// `spec.window`.
    pub fn frame_limit(&self, name: &'static str, spec: RateSpec) -> FrameLimit {
        FrameLimit { shared: self.shared.clone(), name, spec, refused: DashMap::new() }
    }
}

impl FrameLimit {
    /// Counts one frame of `user`: `RATE_LIMITED` when the window is full. When the shared
    /// state cannot be reached the frame is let through (and logged): a Redis outage must not
    /// stop messaging, and the per-event buckets still hold.
    pub async fn check(&self, user: &str) -> Result<(), AppError> {
        let now = Instant::now();
        if let Some(until) = self.refused.get(user).map(|u| *u) {
            if until > now {
                return Err(self.refusal(until - now));
            }
            self.refused.remove(user);
        }
        let key = format!("{}:{user}", self.name);
        match self.shared.take_slot(&key, self.spec.count, self.spec.window).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => {
                if self.refused.len() >= REFUSALS_KEPT {
                    self.refused.retain(|_, until| *until > now);
                }
                self.refused.insert(user.into(), now + wait);
                Err(self.refusal(wait))
            }
            Err(e) => {
                tracing::warn!(cause = %e, limit = self.name, "frame limit unavailable; frame let through");
                Ok(())
            }
        }
    }

    fn refusal(&self, wait: Duration) -> AppError {
        AppError::RateLimited { what: "frames", retry_after_ms: wait.as_millis().max(1) as u64 }
    }
}
