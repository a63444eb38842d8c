//! The domain core: conversations, membership, messages, receipts, reactions, typing,
//! presence, calls and notifications, with the delivery guarantees of SPEC §5. It knows
//! nothing of Socket.IO, HTTP or JSON field names; it stores through `store` and announces
//! through `fanout`.

pub mod attachments;
pub mod calls;
pub mod connections;
pub mod conversations;
pub mod delivery;
pub mod direct;
pub mod edits;
pub mod frame_limit;
pub mod history;
pub mod keys;
pub mod last_seen;
pub mod limits;
pub mod media;
pub mod messages;
pub mod model;
pub mod notifications;
pub mod prekeys;
pub mod presence;
pub mod queues;
pub mod reactions;
pub mod recall;
pub mod receipts;
pub mod rooms;
pub mod sessions;
pub mod typing;
mod writer;

use crate::domain::UserId;
use std::sync::{Arc, Weak};

use tokio::task::JoinHandle;

use crate::{
    config::Config,
    error::{AppError, AppResult, Field},
    fanout::Hub,
    store::{self, shared::SharedState, Db},
};
use model::{Audience, Event};

pub use writer::{MessageWriter, SendOrder, SendTicket};

/// Everything the use cases need, shared by every profile and the REST layer.
pub struct Core {
    pub(crate) db: Db,
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub limits: Arc<limits::Limiters>,
    pub ledger: Arc<delivery::Ledger>,
    writer: MessageWriter,
    writer_thread: writer::WriterThread,
    /// Presence, chat rooms and typing: in-process, or in Redis across instances.
    pub(crate) shared: Arc<dyn SharedState>,
    background: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Whether the database takes writes (for `/health` and `/metrics`).
    storage: Arc<store::health::StorageHealth>,
    /// Devices known to be recorded (`store::devices`), so that a reconnect costs no write.
    known_devices: dashmap::DashSet<(String, String)>,
    /// Users whose token claims are recorded, so that a reconnect costs no read (`recall`).
    claims: recall::RecordedClaims,
    /// What a catch-up that owes nothing can be answered from (`recall`).
    pub catchup: Arc<recall::CatchupMemory>,
    /// When users went offline, written in batches (`last_seen`).
    last_seen: Arc<last_seen::LastSeen>,
    /// The `Arc` this core lives in, for timers that outlive the call that set them (ring
    /// timeouts, the grace period of a participant who went offline).
    me: Weak<Core>,
}

/// Most (user, device) pairs remembered as recorded; beyond it the set starts over.
const MAX_KNOWN_DEVICES: usize = 200_000;

impl Core {
    /// Wires the core together and starts its background tasks (writer, delivery flusher,
    /// limiter pruning).
    pub fn start(
        config: Arc<Config>,
        db: Db,
        storage: store::Settings,
        shared: Arc<dyn SharedState>,
        instance: String,
    ) -> std::io::Result<Arc<Self>> {
        let hub = Arc::new(Hub::new(instance));
        let health = storage.health.clone();
        // With several instances, messages are committed by others too: every catch-up asks.
        let catchup = Arc::new(recall::CatchupMemory::new(config.redis_url.is_none()));
        let ledger = delivery::Ledger::new(db.clone(), health.clone(), catchup.clone());
        hub.set_ledger(ledger.clone());
        let limits = limits::Limiters::new(&config.rate_limits);

        let publish_hub = hub.clone();
        let (writer, writer_thread) = MessageWriter::spawn(
            db.clone(),
            storage,
            catchup.clone(),
            Arc::new(move |msg, audience, origin| {
                publish_hub.publish(&Audience::Users(audience.to_vec()), Event::MessageCreated(msg.clone()), origin)
            }),
        )?;
        let renewer = spawn_renewer(hub.clone(), shared.clone());
        let last_seen = last_seen::LastSeen::new(db.clone());
        let background = vec![ledger.spawn_flusher(), last_seen.spawn_flusher(), limits.spawn_pruner(), renewer];
        let core = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            db,
            config,
            hub,
            limits,
            ledger,
            writer,
            writer_thread,
            shared,
            background: std::sync::Mutex::new(background),
            storage: health,
            known_devices: dashmap::DashSet::new(),
            claims: recall::RecordedClaims::new(recall::CLAIMS_TTL, recall::CLAIMS_CAP),
            catchup,
            last_seen,
        });
        core.resume_calls();
        let sweeper = sessions::spawn_sweeper(&core);
        core.background.lock().unwrap_or_else(|p| p.into_inner()).push(sweeper);
        core.background.lock().unwrap_or_else(|p| p.into_inner()).push(queues::spawn_sweeper(Arc::downgrade(&core)));
        Ok(core)
    }

    /// Graceful stop, step one: wait until every queued message is durable and published.
    pub async fn drain_writes(&self) {
        self.writer.barrier().await;
        self.hub.flush_bus().await;
    }

    /// Graceful stop, step two: hand nothing more to connections, but what fills the holes
    /// in what each was handed ([`Hub::close_gaps`], waiting for full buffers until
    /// `deadline`). Returns once the last event was queued, so that closing the transports
    /// after this sends everything that was marked as handed. What arrives after the freeze
    /// is caught up from the store by the user's next connection (on another instance).
    pub async fn freeze(&self, deadline: tokio::time::Instant) {
        self.hub.freeze().await;
        let holes = self.hub.close_gaps(deadline).await;
        if holes > 0 {
            tracing::info!(
                holes,
                "some connections keep a hole in what they were handed; they get what is above it again"
            );
        }
    }

    /// Graceful stop, last step, once the transports were closed: record what the clients
    /// confirmed (their close answers), waiting for them until `deadline`. What was not
    /// confirmed is pushed again, under the same ids, by the users' next connections.
    /// Last-seen times noted until then are written too.
    pub async fn record_confirmed(&self, deadline: tokio::time::Instant) -> delivery::Settled {
        let settled = self.ledger.settle(deadline).await;
        self.last_seen.flush().await;
        settled
    }

    /// Stops background tasks (tests start many servers in one process).
    pub fn stop_background(&self) {
        self.writer_thread.stop();
        let tasks = std::mem::take(&mut *self.background.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
    }

    /// Records a device of `user` the first time this instance sees it: from then on its
    /// deliveries are tracked, and a device never seen before starts where the user's other
    /// devices are (see `store::devices::register`).
    pub(crate) async fn device_seen(&self, user: &str, device: &str) -> AppResult<()> {
        let key = (user.to_string(), device.to_string());
        if self.known_devices.contains(&key) {
            return Ok(());
        }
        store::devices::register(&self.db, user, device).await?;
        // Bounded like the users an instance serves; forgotten entries only cost a write.
        if self.known_devices.len() >= MAX_KNOWN_DEVICES {
            self.known_devices.clear();
        }
        self.known_devices.insert(key);
        Ok(())
    }

    /// Whether writes succeed, how many failed, and the last failure.
    pub fn storage_report(&self) -> store::health::StorageReport {
        self.storage.report()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Fails unless `user` is a member of `chat`; `NOT_FOUND` when the chat does not exist.
    pub async fn require_member(&self, chat: &str, user: &str) -> AppResult<model::Membership> {
        if let Some(m) = store::conversations::member(&self.db, chat, user).await? {
            return Ok(store::convert::membership(m));
        }
        match store::conversations::get(&self.db, chat).await? {
            Some(_) => Err(AppError::not_member()),
            None => Err(AppError::NotFound("conversation not found".into())),
        }
    }

    /// The members of `chat`, for a member (who needs the audience of what they do there);
    /// `FORBIDDEN` for anyone else, `NOT_FOUND` when the chat does not exist.
    pub async fn members_of(&self, chat: &str, user: &str) -> AppResult<Vec<UserId>> {
        let members: Vec<UserId> =
            store::conversations::members(&self.db, chat).await?.into_iter().map(|m| UserId::from(m.user_id)).collect();
        if members.iter().any(|m| m == user) {
            return Ok(members);
        }
        match store::conversations::get(&self.db, chat).await? {
            Some(_) => Err(AppError::not_member()),
            None => Err(AppError::NotFound("conversation not found".into())),
        }
    }
}

/// Keeps this instance's shared entries (online users, room members) alive; when the instance
/// dies they expire on their own.
fn spawn_renewer(hub: Arc<Hub>, shared: Arc<dyn SharedState>) -> JoinHandle<()> {
    spawn_every(store::redis::RENEW_EVERY, move || {
        let (hub, shared) = (hub.clone(), shared.clone());
        async move {
            // Anonymous session members have no presence (see `user_connected`).
            let users: Vec<_> = hub.local_users().into_iter().filter(|u| !crate::domain::is_session_user(u)).collect();
            if let Err(e) = shared.renew(&users, &hub.local_rooms()).await {
                tracing::warn!(cause = %e, "could not renew shared presence");
            }
        }
    })
}

/// Runs `work` every `period`, at once first; a run that overruns delays the next rather than
/// bunching runs up.
pub(crate) fn spawn_every<F, Fut>(period: std::time::Duration, mut work: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            work().await;
        }
    })
}

/// Client-chosen identifiers (chat ids, temp ids, user ids) share one sanity rule.
pub fn check_id(field: Field, value: &str) -> AppResult<()> {
    if value.is_empty() || value.len() > 128 {
        return Err(AppError::invalid(field, "must be 1 to 128 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Default page size of history reads, and the most one request may ask for.
pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 200;
