//! Scale-out wiring: with `REDIS_URL`, shared state lives in Redis and core events travel
//! between instances over a Redis pub/sub channel; without it, everything stays in-process.

use std::sync::Arc;

use crate::{
    config::Config,
    fanout::{Bus, Envelope, Hub, Published},
    store::{
        redis::{self, RedisBus, RedisState},
        shared::{MemoryState, SharedState},
    },
};

/// What `Application::build` needs to know about the deployment's shape.
pub struct Cluster {
    pub shared: Arc<dyn SharedState>,
    pub redis: Option<deadpool_redis::Pool>,
    bus: Option<(Arc<RedisBus>, String, String)>,
}

impl Cluster {
    pub fn from_config(config: &Config, instance: &str) -> anyhow::Result<Self> {
        let Some(url) = &config.redis_url else {
            return Ok(Self { shared: Arc::new(MemoryState::default()), redis: None, bus: None });
        };
        let pool = redis::pool(url)?;
        let channel = format!("{}events", config.redis_prefix);
        let bus = RedisBus::start(pool.clone(), channel.clone());
        Ok(Self {
            shared: RedisState::new(pool.clone(), &config.redis_prefix, instance),
            redis: Some(pool),
            bus: Some((bus, url.clone(), channel)),
        })
    }

    /// Connects the hub to the bus: outgoing envelopes are published, incoming ones delivered.
    pub fn attach(&self, hub: &Arc<Hub>) -> Option<tokio::task::JoinHandle<()>> {
        let (bus, url, channel) = self.bus.clone()?;
        hub.set_bus(Arc::new(RedisBusLink(bus)));
        let (deliver_hub, resync_hub) = (hub.clone(), hub.clone());
        Some(redis::subscribe(
            url,
            channel,
            move |payload| match serde_json::from_str::<Envelope>(&payload) {
                Ok(envelope) => deliver_hub.deliver_remote(envelope),
                Err(e) => tracing::warn!(cause = %e, "unreadable envelope on the bus"),
            },
            move || resync_hub.resync_all(),
        ))
    }
}

struct RedisBusLink(Arc<RedisBus>);

impl Bus for RedisBusLink {
    fn publish(&self, envelope: &Envelope) -> Published {
        match serde_json::to_string(envelope) {
            Ok(payload) => self.0.publish(payload),
            Err(e) => {
                tracing::error!(cause = %e, "could not encode an envelope");
                // Nothing will ever be published: resolve at once rather than hold an ack.
                let (done, published) = tokio::sync::oneshot::channel();
                let _ = done.send(());
                published
            }
        }
    }

    fn flush(&self) -> Published {
        self.0.flush()
    }
}
