//! Switchboard: a realtime messaging server that existing chat clients use unchanged, one
//! domain core under a thin dialect per wire protocol.
//!
//! Layout (dependencies point one way: `http → dialects → transport → core → fanout →
//! domain`, and `core → store → domain`; no two modules import each other):
//!
//! ```text
//! main.rs        CLI: serve | migrate | token
//! config.rs      the one typed Config; the only reader of the environment
//! domain/        the domain's types: ids, conversations, messages, presence, calls, events
//! core/          use cases and delivery guarantees: connections (open → guard), the message
//!                writer, the per-device delivery ledger; no wire types, no rows
//! fanout/        events → rooms `user:{id}` / `chat:{id}` → every connection, and the bus;
//!                `sync`: one connection's sync state machine
//! store/         the only code that touches sea_orm, the entity crate and Redis
//! transport/     how connections are carried, each written once: Socket.IO namespaces, the
//!                raw WebSocket host, REST extractors, and what reached the client (receipts)
//! dialects/      one module per wire dialect (sup, spark, mrezhen, e2e), translation only,
//!                registered in `dialects::DIALECTS`
//! http/          router assembly, /health, /metrics, static files
//! telemetry/     logs and metrics
//! auth.rs        JWT verification and minting; the one rule for subject ids
//! payload.rs     decoding what clients send: objects only, at every depth, no NUL
//! cluster.rs     in-process shared state, or Redis state and the Redis bus
//! ```

pub mod auth;
pub mod cluster;
pub mod config;
pub mod core;
pub mod dialects;
pub mod domain;
pub mod error;
pub mod fanout;
pub mod http;
pub mod payload;
pub mod store;
pub mod telemetry;
pub mod transport;

use std::{future::Future, sync::Arc, time::Instant};

use socketioxide::SocketIo;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    transport::{AppState, InFlight},
    transport::{Peer, Transport, WireListener},
};

/// A built server, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    io: SocketIo,
    state: Arc<AppState>,
    subscriber: Option<tokio::task::JoinHandle<()>>,
    /// The Socket.IO namespaces served, for the idle sweep.
    namespaces: Vec<&'static str>,
}

impl Application {
    /// Connects the database (applying migrations), wires the core and profiles, and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let verifier = auth::Verifier::from_config(&config)?;
        let storage = store::Settings {
            url: config.database_url.clone(),
            sqlite_mmap_size: config.sqlite_mmap_size,
            health: Arc::default(),
        };
        let db = store::connect(&storage)
            .await
            .map_err(|e| anyhow::anyhow!("database {}: {e}", redact(&config.database_url)))?;
        let instance = config.instance_id.clone();
        let cluster = cluster::Cluster::from_config(&config, &instance)?;
        let core = core::Core::start(config.clone(), db, storage, cluster.shared.clone(), instance)?;
        let subscriber = cluster.attach(&core.hub);
        let state = Arc::new(AppState {
            redis: cluster.redis.clone(),
            config: config.clone(),
            core,
            verifier,
            metrics: telemetry::metrics::Metrics::new(),
            started: Instant::now(),
            inflight: InFlight::default(),
            raw_ws: Default::default(),
            transport: Transport::new(&config),
        });

        let (io_layer, io) = SocketIo::builder()
            .ping_interval(config.ping_interval)
            .ping_timeout(config.ping_timeout)
            .max_payload(config.max_buffer_size as u64)
            .ws_max_message_size(config.max_buffer_size)
            .ws_read_buffer_size(config.ws_read_buffer_size)
            .with_state(state.clone())
            .build_layer();
        let namespaces = dialects::mount_socket_io(&io, &config.default_profile).map_err(|reason| {
            config::ConfigError { name: "DEFAULT_PROFILE".into(), value: config.default_profile.clone(), reason }
        })?;

        let router = http::router(state.clone())
            .layer(io_layer)
            .layer(axum::middleware::from_fn_with_state(
                state.transport.clone(),
                crate::transport::session_head::engine_io,
            ))
            .layer(axum::middleware::from_fn(crate::http::socket_io_client))
            .layer(http::cors(&config.cors_origins))
            .layer(tower_http::trace::TraceLayer::new_for_http());

        let listener = TcpListener::bind((config.host.as_str(), config.port)).await?;
        Ok(Self { listener, router, io, state, subscriber, namespaces })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then stops gracefully:
    ///
    /// 1. Refuse new Engine.IO sessions (503; clients retry, and find another instance once
    ///    this one stopped listening). Sessions keep being served until their transport is
    ///    closed: a long-polling client needs a fresh HTTP request for every poll.
    /// 2. Let in-flight operations finish, their writes land and their events leave on the bus.
    /// 3. Freeze the hub: from then on nothing is handed to a connection, so a transport
    ///    closed afterwards carries everything that was ever marked as handed to it.
    /// 4. Close every transport (not a Socket.IO DISCONNECT, so unchanged clients reconnect
    ///    elsewhere): engineioxide writes what is queued, then the close.
    /// 5. Record what the clients confirmed, waiting (up to `SHUTDOWN_GRACE`) for their
    ///    answers to the close; drop the rest, which their next connection gets again.
    /// 6. Only then stop listening: until the marks are written, a client that reconnects is
    ///    refused here rather than caught up elsewhere from cursors that are not written yet.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { listener, router, io, state, subscriber, namespaces } = self;
        let (stop_accepting, accepting_stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = WireListener::new(listener, state.transport.clone());
        let server = axum::serve(listener, router.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(async move {
                let _ = accepting_stopped.await;
            });
        let server = tokio::spawn(async move { server.await });
        let expiry = transport::expiry::spawn(io.clone(), namespaces.clone());
        let idle = transport::idle::spawn(io.clone(), namespaces, state.clone());

        shutdown.await;
        tracing::info!("shutting down");
        let deadline = tokio::time::Instant::now() + state.config.shutdown_grace;
        state.transport.stop_began();
        // A graceful stop closes transports so that clients reconnect; an idle DISCONNECT
        // now would tell them not to.
        if let Some(idle) = idle {
            idle.abort();
        }
        expiry.abort();
        state.inflight.wait_idle(state.config.shutdown_grace).await;
        // Bounded by the grace period like every step: a write still queued at the deadline
        // was not acknowledged, so its sender sends it again (same `tempId`) elsewhere.
        if tokio::time::timeout_at(deadline, state.core.drain_writes()).await.is_err() {
            tracing::warn!(
                "messages still being written at the end of the grace period; their senders were not answered"
            );
        }
        // A client whose buffer stays full is given as long to take what fills its holes as
        // it is given to answer the close.
        state.core.freeze(tokio::time::Instant::now() + state.config.close_answer_timeout).await;
        state.transport.hub_frozen();
        if tokio::time::timeout_at(
            deadline.max(tokio::time::Instant::now() + state.config.close_answer_timeout),
            io.close(),
        )
        .await
        .is_err()
        {
            tracing::warn!("Socket.IO transports still closing at the end of the grace period");
        }
        state.raw_ws.close_all(state.config.close_answer_timeout).await;
        state.transport.sessions.close_all();
        let settled = state.core.record_confirmed(deadline).await;
        state.transport.log_close_handshakes();
        if settled.unconfirmed_connections > 0 {
            tracing::info!(
                connections = settled.unconfirmed_connections,
                "some deliveries were not confirmed; those clients get them again when they reconnect"
            );
        }
        let _ = stop_accepting.send(());
        state.core.stop_background();
        if let Some(subscriber) = subscriber {
            subscriber.abort();
        }
        match tokio::time::timeout(state.config.shutdown_grace, server).await {
            Ok(joined) => joined??,
            Err(_) => {
                tracing::warn!("connections still open after the grace period; exiting anyway")
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Database URLs may carry passwords; logs get them without.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_string(),
    }
}
