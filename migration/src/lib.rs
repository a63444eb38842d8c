//! Schema migrations for Switchboard, applied at server start and by `switchboard migrate`
//! (or this crate's own CLI: `cargo run -p migration -- up`). They run unchanged on SQLite
//! and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_core;
mod m20261201_000002_calls_reactions_notifications;
mod m20261215_000003_spark;
mod m20261216_000004_devices;
mod m20261217_000005_socialink_social;
mod m20261220_000005_sessions;
mod m20261220_000005_socialink;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_core::Migration),
            Box::new(m20261201_000002_calls_reactions_notifications::Migration),
            Box::new(m20261215_000003_spark::Migration),
            Box::new(m20261216_000004_devices::Migration),
            Box::new(m20261217_000005_socialink_social::Migration),
            Box::new(m20261220_000005_socialink::Migration),
            Box::new(m20261220_000005_sessions::Migration),
        ]
    }
}
