//! Structured logs with `tracing`: human-readable by default, JSON with `LOG_FORMAT=json`.

pub mod metrics;

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{Config, LogFormat};

pub fn init(config: &Config) {
    // RUST_LOG, when set, refines LOG_LEVEL (e.g. `switchboard=debug,socketioxide=info`).
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
