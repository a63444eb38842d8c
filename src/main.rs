//! `switchboard` (serve), `switchboard migrate`, `switchboard token <user-id> [--shape sup|mrezhen]`.

use std::time::Duration;

use clap::{Parser, Subcommand};
use switchboard::{
    auth::{TokenRequest, TokenShape},
    config::Config,
    telemetry, Application,
};

#[derive(Parser)]
#[command(name = "switchboard", version, about = "Realtime messaging server for unchanged Socket.IO clients")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a development JWT signed with the configured JWT_SECRET.
    Token {
        user_id: String,
        /// Display name (also used as the username claim).
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. 24h, 30m, 7d.
        #[arg(long, default_value = "24h")]
        ttl: humantime::Duration,
        /// Claim layout: Switchboard's (`sub`), SUP Messenger's (`userId`, `deviceId`,
        /// `type: access`) or Mrezhen's (`userId`, `name`, issuer `mrezhen`).
        #[arg(long, value_enum, default_value_t = Shape::Standard)]
        shape: Shape,
        /// Device id, carried as the `deviceId` claim.
        #[arg(long)]
        device: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Shape {
    Standard,
    Sup,
    Mrezhen,
}

impl From<Shape> for TokenShape {
    fn from(shape: Shape) -> Self {
        match shape {
            Shape::Standard => TokenShape::Standard,
            Shape::Sup => TokenShape::Sup,
            Shape::Mrezhen => TokenShape::Mrezhen,
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Token { user_id, name, ttl, shape, device } => {
            let secret = config
                .jwt_secret
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("JWT_SECRET is not set (only JWT_PUBLIC_KEY is); cannot sign"))?;
            let request = TokenRequest {
                shape: shape.into(),
                user_id: &user_id,
                name: name.as_deref(),
                device_id: device.as_deref(),
                ttl: Duration::from(ttl),
            };
            println!("{}", switchboard::auth::mint_as(secret, config.jwt_issuer.as_deref(), &request)?);
            Ok(())
        }
        Command::Migrate => {
            telemetry::init(&config);
            switchboard::store::migrate(&config.database_url).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            telemetry::init(&config);
            if config.jwt_dev_secret {
                tracing::warn!(
                    "!!! JWT_SECRET is not set: using the built-in DEVELOPMENT secret. Anyone can mint tokens \
                     for this server. Set JWT_SECRET (or JWT_PUBLIC_KEY) before exposing it. !!!"
                );
            }
            let app = Application::build(config).await?;
            tracing::info!(port = app.port(), "switchboard listening");
            app.run_until_stopped(shutdown_signal()).await
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
