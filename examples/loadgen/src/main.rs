//! `loadgen`: a load generator for Switchboard and the reference Socket.IO servers. It speaks
//! Engine.IO v4 / Socket.IO v5 over WebSocket itself (no Socket.IO client library), on one
//! thread, so that one core can drive well over 100,000 events per second. Each scenario ends
//! with one JSON summary line on stdout; progress goes to stderr.
//!
//! ```text
//! main.rs         CLI, runtime (one thread), the summary line
//! sio.rs          the wire: handshake, packets, heartbeats
//! ctx.rs          target, source addresses, tokens, REST setup, server memory
//! stats.rs        latencies (every sample, exact percentiles) and error counts
//! scenarios/      idle, ack-closed / ack-open, fanout, reconnect-storm, reconnect-wave
//! report.rs       results (JSON lines) → the tables of BENCHMARKS.md
//! ```
//!
//! Load goes to loopback addresses only; `--server` is refused otherwise.

mod ctx;
mod report;
mod scenarios;
mod sio;
mod stats;

use std::{net::SocketAddr, path::PathBuf, rc::Rc, time::Duration};

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::{
    ctx::{Ctx, Target},
    scenarios::{ack::AckOpts, fanout::FanOpts, idle::IdleOpts, storm::StormOpts, wave::WaveOpts},
};

#[derive(Parser)]
#[command(name = "loadgen", about = "Socket.IO load generator for Switchboard and reference servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// The server's address; loopback only.
    #[arg(long, default_value = "127.0.0.1:3001")]
    server: SocketAddr,
    /// What kind of server it is: Switchboard (JWT auth, REST setup) or a reference server.
    #[arg(long, value_enum, default_value = "switchboard")]
    target: Target,
    /// HS256 secret of the server's JWT_SECRET, for the tokens minted here.
    #[arg(long, env = "JWT_SECRET", default_value = "bench-secret", hide_env_values = true)]
    jwt_secret: String,
    /// How many source addresses (127.0.0.2, 127.0.0.3, …) to spread connections over.
    #[arg(long, default_value_t = 16)]
    sources: usize,
    /// A name for this run's server (e.g. switchboard-sqlite), copied into the summary.
    #[arg(long)]
    label: Option<String>,
    /// Longest one connection attempt may take, in seconds.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// The server's process id: its CPU time is reported, and `idle` reads its memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Args, Clone)]
struct Timing {
    /// Measured seconds.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds to wait after the window for what is still outstanding; then it is lost.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
}

#[derive(Subcommand)]
enum Command {
    /// N authenticated idle connections; server RSS per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 19_000)]
        connections: usize,
        /// Connection attempts in flight at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Seconds between the last connect and the memory reading.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
        /// Seconds the connections stay open after the probe.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// C connections, each sending `message:new` and waiting for its ack before the next.
    AckClosed {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Bytes of message content.
        #[arg(long, default_value_t = 100)]
        payload: usize,
    },
    /// A fixed total rate of `message:new` spread over C connections; latency from when each
    /// send was due.
    AckOpen {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Messages per second, all connections together.
        #[arg(long, default_value_t = 20_000.0)]
        rate: f64,
        /// Unacked messages past which the server is deemed overloaded and sending stops
        /// (default: one second's worth).
        #[arg(long)]
        max_outstanding: Option<usize>,
        #[arg(long, default_value_t = 100)]
        payload: usize,
    },
    /// A group whose members are all connected; a few send, every other member receives.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[arg(long, default_value_t = 256)]
        members: usize,
        #[arg(long, default_value_t = 2)]
        senders: usize,
        /// Messages in flight (sent, not yet received by every member), all senders together.
        #[arg(long, default_value_t = 16)]
        window: usize,
        #[arg(long, default_value_t = 100)]
        payload: usize,
    },
    /// Connect, send one message, get its ack, disconnect, again; connects per second.
    ReconnectStorm {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        /// Clients cycling at once.
        #[arg(long, default_value_t = 50)]
        workers: usize,
    },
    /// K clients with a backlog each, all disconnected, reconnect at once (as after a deploy);
    /// time until every one is connected and has its backlog. Switchboard only.
    ReconnectWave {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 5_000)]
        clients: usize,
        /// Messages owed to each client.
        #[arg(long, default_value_t = 3)]
        backlog: usize,
        /// Connection attempts in flight while the clients first connect (the wave: all).
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Seconds the wave may take; what has not arrived by then is lost.
        #[arg(long, default_value_t = 300.0)]
        deadline: f64,
        /// Backlog messages the sender keeps in flight. Below the server's per-socket buffer
        /// (socketioxide: 128 packets), or acks that do not fit are dropped and the sender stalls.
        #[arg(long, default_value_t = 64)]
        window: usize,
    },
    /// Turns summary lines (JSON, one per line) into the Markdown tables of BENCHMARKS.md.
    Report {
        /// The file of summary lines.
        results: PathBuf,
    },
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

impl Timing {
    fn parts(&self) -> (Duration, Duration, Duration) {
        (secs(self.duration), secs(self.warmup), secs(self.drain))
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (common, name) = match &cli.command {
        Command::Report { results } => {
            return match report::render(results) {
                Ok(markdown) => {
                    print!("{markdown}");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgen report: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Command::Idle { common, .. } => (common.clone(), "idle"),
        Command::AckClosed { common, .. } => (common.clone(), "ack-closed"),
        Command::AckOpen { common, .. } => (common.clone(), "ack-open"),
        Command::Fanout { common, .. } => (common.clone(), "fanout"),
        Command::ReconnectStorm { common, .. } => (common.clone(), "reconnect-storm"),
        Command::ReconnectWave { common, .. } => (common.clone(), "reconnect-wave"),
    };
    // One thread: the figures say what one core of load generation drives, and the scenarios
    // share their counters without locks.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, run(cli.command, common.clone()));
    let mut line = match result {
        Ok(summary) => summary,
        // A scenario that could not run still leaves a line, so the report shows the failure.
        Err(e) => {
            eprintln!("loadgen {name}: {e:#}");
            json!({ "scenario": name, "error": format!("{e:#}") })
        }
    };
    line["target"] = json!(common.target.as_str());
    line["label"] = json!(common.label.clone().unwrap_or_else(|| common.target.as_str().to_string()));
    line["server"] = json!(common.server.to_string());
    println!("{line}");
    if line.get("error").is_some() {
        std::process::ExitCode::from(2)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

async fn run(command: Command, common: Common) -> anyhow::Result<Value> {
    let ctx = Rc::new(Ctx::new(
        common.target,
        common.server,
        common.sources,
        common.jwt_secret.clone(),
        secs(common.connect_timeout),
        common.server_pid,
    )?);
    match command {
        Command::Idle { connections, concurrency, settle, hold, .. } => {
            let opts = IdleOpts {
                connections,
                concurrency,
                settle: secs(settle),
                hold: secs(hold),
                probe_timeout: Duration::from_secs(30),
            };
            scenarios::idle::run(ctx, opts).await
        }
        Command::AckClosed { timing, connections, payload, .. } => {
            let (duration, warmup, drain) = timing.parts();
            let opts = AckOpts { connections, duration, warmup, drain, payload, rate: None, max_outstanding: 0 };
            scenarios::ack::run(ctx, opts).await
        }
        Command::AckOpen { timing, connections, rate, payload, max_outstanding, .. } => {
            if rate.is_nan() || rate <= 0.0 {
                anyhow::bail!("--rate must be positive");
            }
            let (duration, warmup, drain) = timing.parts();
            let max_outstanding = max_outstanding.unwrap_or(rate.ceil() as usize);
            let opts = AckOpts { connections, duration, warmup, drain, payload, rate: Some(rate), max_outstanding };
            scenarios::ack::run(ctx, opts).await
        }
        Command::Fanout { timing, members, senders, window, payload, .. } => {
            let (duration, warmup, drain) = timing.parts();
            scenarios::fanout::run(ctx, FanOpts { members, senders, window, duration, warmup, drain, payload }).await
        }
        Command::ReconnectStorm { timing, workers, .. } => {
            let (duration, warmup, drain) = timing.parts();
            scenarios::storm::run(ctx, StormOpts { workers, duration, warmup, drain }).await
        }
        Command::ReconnectWave { clients, backlog, concurrency, deadline, window, .. } => {
            let opts = WaveOpts { clients, backlog, setup_concurrency: concurrency, deadline: secs(deadline), window };
            scenarios::wave::run(ctx, opts).await
        }
        Command::Report { .. } => anyhow::bail!("report needs no server; it is handled before the runtime starts"),
    }
}
