//! The one typed configuration. Settings come from the process environment, after a `.env`
//! file (if present) has been loaded into it; nothing else in the crate reads `std::env`.
//! Names follow the seed services; where two seeds name one setting differently, both are
//! accepted (the first name listed wins when both are set). A value that does not parse stops
//! the start with an error naming the setting.

use std::{collections::HashMap, fmt::Display, str::FromStr, time::Duration};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" | "text" | "" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}` (expected pretty or json)")),
        }
    }
}

/// A rate limit written as `COUNT/WINDOW`, e.g. `30/60s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSpec {
    pub count: u32,
    pub window: Duration,
}

impl RateSpec {
    pub const fn new(count: u32, window_secs: u64) -> Self {
        Self { count, window: Duration::from_secs(window_secs) }
    }
}

impl FromStr for RateSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, window) = s.split_once('/').ok_or_else(|| format!("`{s}` is not COUNT/WINDOW, e.g. 30/60s"))?;
        let count: u32 = count.trim().parse().map_err(|e| format!("count `{count}`: {e}"))?;
        if count == 0 {
            return Err("count must be at least 1".into());
        }
        let window = humantime::parse_duration(window.trim()).map_err(|e| format!("window `{window}`: {e}"))?;
        if window.is_zero() {
            return Err("window must be longer than zero".into());
        }
        Ok(Self { count, window })
    }
}

/// Per-user, per-event limits (the SUP seed's table). Every profile's equivalent event draws
/// on the same bucket.
#[derive(Clone, Debug)]
pub struct RateLimits {
    pub message_new: RateSpec,
    pub typing: RateSpec,
    pub delivered: RateSpec,
    pub read: RateSpec,
    pub presence_update: RateSpec,
    pub call_initiate: RateSpec,
    pub reactions: RateSpec,
    /// `RATE_LIMIT_KEY_BUNDLE`: Socialink prekey bundles one user may fetch.
    pub key_bundle: RateSpec,
    /// `RATE_LIMIT_SUBSCRIPTIONS`: ids one user may name in subscription-like requests
    /// (`presence:subscribe`, `chat:join`, `chat:join-multiple`), each id counted: every id
    /// costs a lookup and a place in a connection's state.
    pub subscriptions: RateSpec,
    /// Socket.IO connection attempts per client IP (`RATE_LIMIT_MAX_CONNECTIONS` per
    /// `RATE_LIMIT_CONNECTION_WINDOW`), counted before the token is checked.
    pub connections: RateSpec,
    /// e2e `join-session` attempts per client IP (`RATE_LIMIT_SESSION_JOIN`, 20 per 60 s):
    /// auth keys cannot be guessed by trying.
    pub session_joins: RateSpec,
}

/// Connection attempts allowed per IP and window by default. The seed's 5 per minute is too
/// tight for real clients: every tab is a connection, a server restart makes all of them
/// reconnect at once, and a household or office behind one NAT address shares the bucket.
/// 60 per minute (a burst of 60, then one a second) still stops a reconnect loop or a
/// scripted flood from one address.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 60;

/// Read buffer per WebSocket connection by default, in bytes: a Socket.IO event from a chat
/// client (an ack, a receipt, a short message) fits in one read, and an idle connection costs
/// 3.5 KiB less than with socketioxide's 4 KiB (measured at 19,000 connections).
pub const DEFAULT_WS_READ_BUFFER_SIZE: usize = 512;

/// Largest image decoded by default: 50 megapixels, above the 48-megapixel photos of today's
/// phones (8000 × 6000), far below what a small file can claim (a 62 KB PNG declared
/// 8000 × 8000, a 7 MB one 40000 × 40000).
pub const DEFAULT_IMAGE_MAX_PIXELS: u64 = 50_000_000;

/// Most memory one image decode may allocate by default: a 50-megapixel image in 8-bit RGBA
/// (200 MB) and some; 16-bit images of that size are refused.
pub const DEFAULT_IMAGE_DECODE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Where a development secret is in use, the server says so loudly at start.
pub const DEV_JWT_SECRET: &str = "switchboard-dev-secret-change-me";

#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind; `HOST` (default all interfaces).
    pub host: String,
    /// `PORT` / `WS_PORT`; 0 picks an ephemeral port (tests).
    pub port: u16,
    /// `DATABASE_URL`, or built from `DB_HOST`… for PostgreSQL; SQLite file by default.
    pub database_url: String,
    /// `REDIS_URL`, or built from `REDIS_HOST`/`REDIS_PORT`; in-process when absent.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (`REDIS_PREFIX`), so deployments can share a Redis.
    pub redis_prefix: String,
    /// Names this instance in shared state (`INSTANCE_ID`, random by default).
    pub instance_id: String,
    /// HS256 secret. `None` only when `JWT_PUBLIC_KEY` is set instead.
    pub jwt_secret: Option<String>,
    /// True when no secret was configured and the development secret is used.
    pub jwt_dev_secret: bool,
    /// PEM public key for RS256/ES256 tokens.
    pub jwt_public_key: Option<String>,
    pub jwt_issuer: Option<String>,
    /// Allowed origins; `*` means any.
    pub cors_origins: Vec<String>,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub max_buffer_size: usize,
    /// `SOCKETIO_WS_READ_BUFFER_SIZE`: bytes of each WebSocket connection's read buffer, the
    /// most read from the socket at once. tungstenite zero-fills all of it before every read,
    /// so every byte is resident for every connection, idle or not: a read buffer of 4 KiB
    /// (socketioxide's default) was the largest single cost of an idle connection after the
    /// HTTP read buffer. Frames larger than the buffer still arrive whole, in several reads.
    pub ws_read_buffer_size: usize,
    pub max_message_length: usize,
    /// `MESSAGE_EDIT_WINDOW_MINUTES`: how long after sending its sender may edit a message;
    /// zero turns editing off.
    pub message_edit_window: Duration,
    pub max_group_size: usize,
    /// `SOCIALINK_MAX_GROUP_SIZE`: most members of a group made or grown through Socialink's
    /// REST API, the creator included (the seed's 1,500).
    pub socialink_max_group_size: usize,
    /// `MEDIA_MAX_SIZE`: largest attachment upload, in bytes.
    pub media_max_size: u64,
    /// `MEDIA_DIR`: where uploaded attachments (and their thumbnails) are stored. With several
    /// instances it must be a volume they share.
    pub media_dir: std::path::PathBuf,
    /// `IMAGE_MAX_WIDTH` × `IMAGE_MAX_HEIGHT`: uploaded images larger than this are scaled down
    /// to fit, keeping their aspect ratio.
    pub image_max_width: u32,
    pub image_max_height: u32,
    /// `IMAGE_MAX_PIXELS`: the largest image (width × height, read from its header) that is
    /// decoded at all; a bigger one is refused before any pixel memory is allocated.
    pub image_max_pixels: u64,
    /// `IMAGE_DECODE_MAX_BYTES`: the most memory one image decode may allocate.
    pub image_decode_max_bytes: u64,
    /// `REST_MAX_BODY_SIZE`: largest JSON body of a REST request, in bytes (413 beyond).
    pub rest_max_body_size: usize,
    /// `MAX_SUBSCRIPTIONS_PER_CONNECTION`: users whose presence one connection follows, and
    /// chat rooms it joins, at most (each counted on its own).
    pub max_subscriptions_per_connection: usize,
    /// `MAX_ATTACHMENTS_PER_MESSAGE`.
    pub max_attachments_per_message: usize,
    /// `VERIFY_DEVICE_REQUIRED`: device keys are handed to other users only once their owner
    /// verified the device (its first device is trusted on first use).
    pub verify_device_required: bool,
    /// `KEY_ROTATION_DAYS`: a device key older than this is reported `rotationDue`; zero means
    /// keys never fall due.
    pub key_rotation_days: u32,
    pub presence_timeout: Duration,
    /// `OFFLINE_QUEUE_TTL_DAYS`: how long a Socialink queue entry waits for its device's
    /// acknowledgement before it is dropped.
    pub offline_queue_ttl: Duration,
    /// `MAX_IDLE_TIME`: a socket that sends no event for this long is disconnected; zero
    /// turns the idle timeout off.
    pub max_idle_time: Duration,
    /// `CALL_RING_TIMEOUT`: an unanswered call becomes missed after this long. Also how long
    /// a participant of an active call may stay without any connection before the server ends
    /// the call for them.
    pub call_ring_timeout: Duration,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` / `X-Real-IP` name the client IP
    /// (a reverse proxy such as nginx). Any other peer is the client itself.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a typing indicator lives without renewal.
    pub typing_timeout: Duration,
    /// `DEFAULT_PROFILE`: the dialect of the Socket.IO namespace `/`, by name (checked against
    /// the dialects when the server is built, see `dialects::mount_socket_io`).
    pub default_profile: String,
    pub rate_limits: RateLimits,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Grace period for in-flight work at shutdown.
    pub shutdown_grace: Duration,
    /// `SQLITE_MMAP_SIZE`: bytes of the SQLite file read through a memory map (`0` turns
    /// memory-mapped reads off: a read fault is then an error instead of SIGBUS, at the cost
    /// of a `pread` copy per page read). See the README's storage faults section.
    pub sqlite_mmap_size: u64,
    /// Raw WebSocket connections (`/ws`, and upgrades on `/`) and the `mrezhen` dialect.
    pub raw_ws: RawWsSettings,
    /// `CLOSE_ANSWER_TIMEOUT`: how long a WebSocket the server closed waits for the client's
    /// answer (which confirms that everything before the close reached the client).
    pub close_answer_timeout: Duration,
    /// `TEST_HOOK_HOLD_WRITES_AT_STOP`, a test hook: once a graceful stop began, writes to
    /// every connection are held back for this long, as if the network or the machine were
    /// too busy to send them. Zero (the default) turns it off; never set it in production.
    pub test_hook_hold_writes_at_stop: Duration,
    /// `E2E_SESSION_IDLE_TIMEOUT` (ms): an e2e session with no activity (join, message,
    /// notice) for this long is deleted with its messages and keys. 30 minutes, as the seed.
    pub session_idle_timeout: Duration,
    /// `ADMIN_TOKEN`: the bearer token `GET /sessions` asks for. Unset: the list is refused
    /// to everyone.
    pub admin_token: Option<String>,
}

/// Settings of raw WebSocket connections.
#[derive(Clone, Debug)]
pub struct RawWsSettings {
    /// `WS_PING_INTERVAL` (ms): how often the server pings each connection; a connection that
    /// has not answered the previous ping by the next one is closed.
    pub ping_interval: Duration,
    /// `WS_SEND_QUEUE`: frames queued per connection before the hub treats it as a slow reader
    /// and catches it up from the store instead.
    pub send_queue: usize,
    /// `RATE_LIMIT_MESSAGES` per `RATE_LIMIT_WINDOW_MS`: frames of any type one user may send
    /// over `mrezhen` connections (the running service's names and defaults, 30 per 60 s).
    pub mrezhen_frames: RateSpec,
}

/// A startup error naming the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// Reads settings from a snapshot of variables, so tests can build a config without
/// touching the process environment.
struct Source {
    vars: HashMap<String, String>,
}

impl Source {
    fn raw(&self, names: &[&str]) -> Option<(String, String)> {
        names.iter().find_map(|name| {
            self.vars.get(*name).filter(|v| !v.trim().is_empty()).map(|v| (name.to_string(), v.trim().to_string()))
        })
    }

    fn string(&self, names: &[&str], default: &str) -> String {
        self.raw(names).map(|(_, v)| v).unwrap_or_else(|| default.to_string())
    }

    fn parse<T>(&self, names: &[&str], default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(names) {
            None => Ok(default),
            Some((name, value)) => value.parse::<T>().map_err(|e| ConfigError { name, reason: e.to_string(), value }),
        }
    }

    /// Durations given in milliseconds, as the seeds do (`SOCKETIO_PING_TIMEOUT=60000`).
    fn millis(&self, names: &[&str], default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse::<u64>(names, default_ms).map(Duration::from_millis)
    }

    /// As [`Source::millis`], refusing zero.
    fn positive_millis(&self, names: &[&str], default_ms: u64) -> Result<Duration, ConfigError> {
        self.positive::<u64>(names, default_ms).map(Duration::from_millis)
    }

    /// Booleans as the seeds write them: `true`/`false`, and the usual `1`/`0`, `yes`/`no`,
    /// `on`/`off`.
    fn flag(&self, names: &[&str], default: bool) -> Result<bool, ConfigError> {
        match self.raw(names) {
            None => Ok(default),
            Some((name, value)) => match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError { name, value, reason: "expected true or false".into() }),
            },
        }
    }

    fn positive<T>(&self, names: &[&str], default: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Default + Copy,
        T::Err: Display,
    {
        let value = self.parse(names, default)?;
        if value <= T::default() {
            let (name, raw) = self.raw(names).unwrap_or_default();
            return Err(ConfigError { name, value: raw, reason: "must be greater than zero".into() });
        }
        Ok(value)
    }
}

impl Config {
    /// Loads `.env` (if any) into the environment, then reads the environment.
    pub fn load() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is worth stopping for.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError { name: ".env".into(), value: String::new(), reason: e.to_string() }),
        }
        Self::from_vars(std::env::vars())
    }

    /// Builds a config from explicit variables (used by `load` and by tests).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let src = Source { vars: vars.into_iter().collect() };

        let database_url = match src.raw(&["DATABASE_URL"]) {
            Some((_, url)) => url,
            None => match src.raw(&["DB_HOST"]) {
                Some((_, host)) => {
                    let port = src.parse::<u16>(&["DB_PORT"], 5432)?;
                    let name = src.string(&["DB_NAME"], "switchboard");
                    let user = src.string(&["DB_USER"], "postgres");
                    let password = src.string(&["DB_PASSWORD"], "");
                    let auth = if password.is_empty() { user } else { format!("{user}:{password}") };
                    format!("postgres://{auth}@{host}:{port}/{name}")
                }
                None => "sqlite://switchboard.db?mode=rwc".to_string(),
            },
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                name: "DATABASE_URL".into(),
                value: database_url,
                reason: "expected a sqlite: or postgres:// URL".into(),
            });
        }

        let redis_url = match src.raw(&["REDIS_URL"]) {
            Some((_, url)) => Some(url),
            None => match src.raw(&["REDIS_HOST"]) {
                Some((_, host)) => {
                    let port = src.parse::<u16>(&["REDIS_PORT"], 6379)?;
                    Some(format!("redis://{host}:{port}"))
                }
                None => None,
            },
        };
        if let Some(url) = &redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError {
                    name: "REDIS_URL".into(),
                    value: url.clone(),
                    reason: "expected a redis:// or rediss:// URL".into(),
                });
            }
        }

        let jwt_public_key = src.raw(&["JWT_PUBLIC_KEY"]).map(|(_, v)| v.replace("\\n", "\n"));
        let configured_secret = src.raw(&["JWT_SECRET"]).map(|(_, v)| v);
        let jwt_dev_secret = configured_secret.is_none() && jwt_public_key.is_none();
        let jwt_secret = match configured_secret {
            Some(secret) => Some(secret),
            None if jwt_dev_secret => Some(DEV_JWT_SECRET.to_string()),
            None => None,
        };

        let cors_origins = src
            .string(&["CORS_ORIGIN", "CLIENT_URL"], "*")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();

        let rate_limits = RateLimits {
            message_new: src.parse(&["RATE_LIMIT_MESSAGE_NEW"], RateSpec::new(30, 60))?,
            typing: src.parse(&["RATE_LIMIT_TYPING"], RateSpec::new(10, 10))?,
            delivered: src.parse(&["RATE_LIMIT_DELIVERED"], RateSpec::new(100, 60))?,
            read: src.parse(&["RATE_LIMIT_READ"], RateSpec::new(100, 60))?,
            presence_update: src.parse(&["RATE_LIMIT_PRESENCE_UPDATE"], RateSpec::new(20, 60))?,
            call_initiate: src.parse(&["RATE_LIMIT_CALL_INITIATE"], RateSpec::new(5, 60))?,
            reactions: src.parse(&["RATE_LIMIT_REACTIONS"], RateSpec::new(50, 60))?,
            key_bundle: src.parse(&["RATE_LIMIT_KEY_BUNDLE"], RateSpec::new(60, 60))?,
            subscriptions: src.parse(&["RATE_LIMIT_SUBSCRIPTIONS"], RateSpec::new(2000, 60))?,
            connections: RateSpec {
                count: src.positive(&["RATE_LIMIT_MAX_CONNECTIONS"], DEFAULT_MAX_CONNECTIONS)?,
                window: src.positive_millis(&["RATE_LIMIT_CONNECTION_WINDOW"], 60_000)?,
            },
            session_joins: src.parse(&["RATE_LIMIT_SESSION_JOIN"], RateSpec::new(20, 60))?,
        };

        let trusted_proxies = match src.raw(&["TRUSTED_PROXIES"]) {
            None => Vec::new(),
            Some((name, value)) => value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|ip| {
                    ip.parse::<std::net::IpAddr>().map_err(|e| ConfigError {
                        name: name.clone(),
                        value: value.clone(),
                        reason: format!("`{ip}`: {e}"),
                    })
                })
                .collect::<Result<_, _>>()?,
        };

        Ok(Config {
            host: src.string(&["HOST"], "0.0.0.0"),
            port: src.parse(&["PORT", "WS_PORT"], 3001)?,
            database_url,
            redis_url,
            redis_prefix: src.string(&["REDIS_PREFIX"], "switchboard:"),
            instance_id: src.string(&["INSTANCE_ID"], &uuid::Uuid::new_v4().simple().to_string()[..12]),
            jwt_secret,
            jwt_dev_secret,
            jwt_public_key,
            jwt_issuer: src.raw(&["JWT_ISSUER"]).map(|(_, v)| v),
            cors_origins,
            ping_interval: src.millis(&["SOCKETIO_PING_INTERVAL", "SOCKET_IO_PING_INTERVAL"], 25_000)?,
            ping_timeout: src.millis(&["SOCKETIO_PING_TIMEOUT", "SOCKET_IO_PING_TIMEOUT"], 60_000)?,
            max_buffer_size: src.positive(&["SOCKETIO_MAX_BUFFER_SIZE"], 1_048_576usize)?,
            ws_read_buffer_size: src.positive(&["SOCKETIO_WS_READ_BUFFER_SIZE"], DEFAULT_WS_READ_BUFFER_SIZE)?,
            max_message_length: src.positive(&["MAX_MESSAGE_LENGTH"], 10_000usize)?,
            message_edit_window: Duration::from_secs(
                src.parse::<u64>(&["MESSAGE_EDIT_WINDOW_MINUTES"], 15)?.saturating_mul(60),
            ),
            max_group_size: src.positive(&["MAX_GROUP_SIZE"], 256usize)?,
            socialink_max_group_size: src.positive(&["SOCIALINK_MAX_GROUP_SIZE"], 1500usize)?,
            media_max_size: src.positive(&["MEDIA_MAX_SIZE"], 10_485_760u64)?,
            media_dir: src.string(&["MEDIA_DIR"], "./media").into(),
            image_max_width: src.positive(&["IMAGE_MAX_WIDTH"], 2048u32)?,
            image_max_height: src.positive(&["IMAGE_MAX_HEIGHT"], 2048u32)?,
            image_max_pixels: src.positive(&["IMAGE_MAX_PIXELS"], DEFAULT_IMAGE_MAX_PIXELS)?,
            image_decode_max_bytes: src.positive(&["IMAGE_DECODE_MAX_BYTES"], DEFAULT_IMAGE_DECODE_MAX_BYTES)?,
            rest_max_body_size: src.positive(&["REST_MAX_BODY_SIZE"], 1_048_576usize)?,
            max_subscriptions_per_connection: src.positive(&["MAX_SUBSCRIPTIONS_PER_CONNECTION"], 1000usize)?,
            max_attachments_per_message: src.positive(&["MAX_ATTACHMENTS_PER_MESSAGE"], 10usize)?,
            verify_device_required: src.flag(&["VERIFY_DEVICE_REQUIRED"], true)?,
            key_rotation_days: src.parse(&["KEY_ROTATION_DAYS"], 90u32)?,
            presence_timeout: Duration::from_secs(src.parse(&["PRESENCE_TIMEOUT_SECONDS"], 300u64)?),
            offline_queue_ttl: Duration::from_secs(
                src.positive::<u64>(&["OFFLINE_QUEUE_TTL_DAYS"], 30)?.saturating_mul(24 * 3600),
            ),
            max_idle_time: src.millis(&["MAX_IDLE_TIME"], 1_800_000)?,
            call_ring_timeout: src.positive_millis(&["CALL_RING_TIMEOUT"], 30_000)?,
            trusted_proxies,
            typing_timeout: src.millis(&["TYPING_TIMEOUT"], 5_000)?,
            default_profile: src.string(&["DEFAULT_PROFILE"], "sup").to_ascii_lowercase(),
            rate_limits,
            log_level: src.string(&["LOG_LEVEL"], "info"),
            log_format: src.parse(&["LOG_FORMAT"], LogFormat::Pretty)?,
            shutdown_grace: src.millis(&["SHUTDOWN_GRACE"], 10_000)?,
            sqlite_mmap_size: src.parse(&["SQLITE_MMAP_SIZE"], crate::store::DEFAULT_SQLITE_MMAP_SIZE)?,
            raw_ws: RawWsSettings {
                // Socialink names the same heartbeat `WS_HEARTBEAT_INTERVAL`, in seconds.
                ping_interval: match src.raw(&["WS_PING_INTERVAL"]) {
                    Some(_) => src.positive_millis(&["WS_PING_INTERVAL"], 30_000)?,
                    None => Duration::from_secs(src.positive(&["WS_HEARTBEAT_INTERVAL"], 30u64)?),
                },
                send_queue: src.positive(&["WS_SEND_QUEUE"], 256usize)?,
                mrezhen_frames: RateSpec {
                    count: src.positive(&["RATE_LIMIT_MESSAGES"], 30u32)?,
                    window: src.positive_millis(&["RATE_LIMIT_WINDOW_MS"], 60_000)?,
                },
            },
            close_answer_timeout: src.millis(&["CLOSE_ANSWER_TIMEOUT"], 2_000)?,
            test_hook_hold_writes_at_stop: src.millis(&["TEST_HOOK_HOLD_WRITES_AT_STOP"], 0)?,
            session_idle_timeout: src.positive_millis(&["E2E_SESSION_IDLE_TIMEOUT"], 1_800_000)?,
            admin_token: src.raw(&["ADMIN_TOKEN"]).map(|(_, v)| v).filter(|v| !v.is_empty()),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = Config::from_vars(vec![]).expect("defaults load");
        assert_eq!(c.port, 3001);
        assert!(c.database_url.starts_with("sqlite:"));
        assert!(c.jwt_dev_secret);
        assert_eq!(c.rate_limits.message_new, RateSpec::new(30, 60));
        assert_eq!(c.ws_read_buffer_size, DEFAULT_WS_READ_BUFFER_SIZE);
    }

    #[test]
    fn the_websocket_read_buffer_is_configurable_but_not_empty() {
        let c = Config::from_vars(vars(&[("SOCKETIO_WS_READ_BUFFER_SIZE", "4096")])).expect("settings load");
        assert_eq!(c.ws_read_buffer_size, 4096);
        let err = Config::from_vars(vars(&[("SOCKETIO_WS_READ_BUFFER_SIZE", "0")])).expect_err("zero");
        assert_eq!(err.name, "SOCKETIO_WS_READ_BUFFER_SIZE");
    }

    #[test]
    fn raw_websocket_settings_take_the_mrezhen_names() {
        let c = Config::from_vars(vars(&[])).expect("defaults");
        assert_eq!(c.raw_ws.mrezhen_frames, RateSpec::new(30, 60));
        assert_eq!(c.raw_ws.ping_interval, Duration::from_secs(30));
        let c = Config::from_vars(vars(&[
            ("RATE_LIMIT_MESSAGES", "5"),
            ("RATE_LIMIT_WINDOW_MS", "2000"),
            ("WS_PING_INTERVAL", "500"),
            ("WS_SEND_QUEUE", "4"),
        ]))
        .expect("config");
        assert_eq!(c.raw_ws.mrezhen_frames, RateSpec { count: 5, window: Duration::from_millis(2000) });
        assert_eq!(c.raw_ws.ping_interval, Duration::from_millis(500));
        assert_eq!(c.raw_ws.send_queue, 4);
        let err = Config::from_vars(vars(&[("RATE_LIMIT_MESSAGES", "0")])).expect_err("must fail");
        assert_eq!(err.name, "RATE_LIMIT_MESSAGES");
    }

    #[test]
    fn seed_aliases_are_accepted() {
        let c = Config::from_vars(vars(&[
            ("WS_PORT", "4000"),
            ("SOCKET_IO_PING_TIMEOUT", "1234"),
            ("CLIENT_URL", "http://a.example"),
            ("DB_HOST", "db"),
            ("DB_USER", "u"),
            ("DB_PASSWORD", "p"),
            ("DB_NAME", "n"),
            ("REDIS_HOST", "cache"),
        ]))
        .expect("aliases load");
        assert_eq!(c.port, 4000);
        assert_eq!(c.ping_timeout, Duration::from_millis(1234));
        assert_eq!(c.cors_origins, vec!["http://a.example".to_string()]);
        assert_eq!(c.database_url, "postgres://u:p@db:5432/n");
        assert_eq!(c.redis_url.as_deref(), Some("redis://cache:6379"));
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let err = Config::from_vars(vars(&[("PORT", "eighty")])).expect_err("must fail");
        assert_eq!(err.name, "PORT");
        let err = Config::from_vars(vars(&[("RATE_LIMIT_TYPING", "10")])).expect_err("must fail");
        assert_eq!(err.name, "RATE_LIMIT_TYPING");
        let err = Config::from_vars(vars(&[("MAX_GROUP_SIZE", "0")])).expect_err("must fail");
        assert_eq!(err.name, "MAX_GROUP_SIZE");
    }

    #[test]
    fn calls_and_connections_have_seed_defaults() {
        let c = Config::from_vars(vec![]).expect("defaults load");
        assert_eq!(c.call_ring_timeout, Duration::from_millis(30_000));
        assert_eq!(c.max_idle_time, Duration::from_millis(1_800_000));
        assert_eq!(c.rate_limits.connections, RateSpec::new(DEFAULT_MAX_CONNECTIONS, 60));
        assert_eq!(c.rate_limits.call_initiate, RateSpec::new(5, 60));
        assert_eq!(c.rate_limits.reactions, RateSpec::new(50, 60));
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn calls_and_connections_are_configurable() {
        let c = Config::from_vars(vars(&[
            ("CALL_RING_TIMEOUT", "500"),
            ("MAX_IDLE_TIME", "0"),
            ("RATE_LIMIT_MAX_CONNECTIONS", "3"),
            ("RATE_LIMIT_CONNECTION_WINDOW", "10000"),
            ("RATE_LIMIT_CALL_INITIATE", "2/1m"),
            ("TRUSTED_PROXIES", "127.0.0.1, ::1"),
        ]))
        .expect("settings load");
        assert_eq!(c.call_ring_timeout, Duration::from_millis(500));
        assert!(c.max_idle_time.is_zero(), "zero turns the idle timeout off");
        assert_eq!(c.rate_limits.connections.count, 3);
        assert_eq!(c.rate_limits.connections.window, Duration::from_millis(10_000));
        assert_eq!(c.rate_limits.call_initiate, RateSpec::new(2, 60));
        assert_eq!(c.trusted_proxies, vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap(), "::1".parse().unwrap()]);
    }

    #[test]
    fn bad_call_and_connection_settings_name_the_setting() {
        for (name, value) in [
            ("CALL_RING_TIMEOUT", "0"),
            ("CALL_RING_TIMEOUT", "soon"),
            ("MAX_IDLE_TIME", "-1"),
            ("RATE_LIMIT_MAX_CONNECTIONS", "0"),
            ("RATE_LIMIT_CONNECTION_WINDOW", "0"),
            ("RATE_LIMIT_CONNECTION_WINDOW", "1m"),
            ("TRUSTED_PROXIES", "127.0.0.1,nginx"),
        ] {
            let err = Config::from_vars(vars(&[(name, value)])).expect_err(name);
            assert_eq!(err.name, name, "{name}={value}");
        }
    }

    #[test]
    fn spark_media_and_key_settings_have_seed_defaults() {
        let c = Config::from_vars(vec![]).expect("defaults load");
        assert_eq!(c.media_dir, std::path::PathBuf::from("./media"));
        assert_eq!(c.media_max_size, 10_485_760);
        assert_eq!((c.image_max_width, c.image_max_height), (2048, 2048));
        assert_eq!(c.max_attachments_per_message, 10);
        assert!(c.verify_device_required);
        assert_eq!(c.key_rotation_days, 90);
        assert_eq!(c.message_edit_window, Duration::from_secs(15 * 60));
    }

    #[test]
    fn spark_media_and_key_settings_are_configurable() {
        let c = Config::from_vars(vars(&[
            ("MEDIA_DIR", "/var/lib/switchboard/media"),
            ("MEDIA_MAX_SIZE", "1024"),
            ("IMAGE_MAX_WIDTH", "800"),
            ("IMAGE_MAX_HEIGHT", "600"),
            ("MAX_ATTACHMENTS_PER_MESSAGE", "3"),
            ("VERIFY_DEVICE_REQUIRED", "no"),
            ("KEY_ROTATION_DAYS", "0"),
            ("MESSAGE_EDIT_WINDOW_MINUTES", "0"),
        ]))
        .expect("settings load");
        assert_eq!(c.media_dir, std::path::PathBuf::from("/var/lib/switchboard/media"));
        assert_eq!(c.media_max_size, 1024);
        assert_eq!((c.image_max_width, c.image_max_height), (800, 600));
        assert_eq!(c.max_attachments_per_message, 3);
        assert!(!c.verify_device_required);
        assert_eq!(c.key_rotation_days, 0, "zero: keys never fall due");
        assert!(c.message_edit_window.is_zero(), "zero: no edits");
        let c = Config::from_vars(vars(&[("VERIFY_DEVICE_REQUIRED", "TRUE")])).expect("settings load");
        assert!(c.verify_device_required);
    }

    #[test]
    fn bad_spark_settings_name_the_setting() {
        for (name, value) in [
            ("IMAGE_MAX_WIDTH", "0"),
            ("IMAGE_MAX_HEIGHT", "wide"),
            ("MAX_ATTACHMENTS_PER_MESSAGE", "0"),
            ("MEDIA_MAX_SIZE", "-5"),
            ("VERIFY_DEVICE_REQUIRED", "maybe"),
            ("KEY_ROTATION_DAYS", "-1"),
            ("MESSAGE_EDIT_WINDOW_MINUTES", "soon"),
        ] {
            let err = Config::from_vars(vars(&[(name, value)])).expect_err(name);
            assert_eq!(err.name, name, "{name}={value}");
        }
    }
}
