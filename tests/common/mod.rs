//! Shared test harness: a real server on an ephemeral port, on SQLite or (when
//! `TEST_DATABASE_URL` is set) on a fresh PostgreSQL database of its own.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, Database};
use switchboard::{config::Config, transport::AppState, Application};

pub const SECRET: &str = "rust-test-secret";

/// The databases each behaviour test runs on.
pub fn backends() -> Vec<&'static str> {
    if std::env::var("TEST_DATABASE_URL").is_ok() {
        vec!["sqlite", "postgres"]
    } else {
        vec!["sqlite"]
    }
}

pub struct TestApp {
    pub url: String,
    pub state: Arc<AppState>,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
    /// The server's MEDIA_DIR, removed with the test.
    pub media: tempfile::TempDir,
    /// PostgreSQL test database to drop at the end.
    pg_name: Option<String>,
}

pub async fn fresh_database(backend: &str) -> (String, Option<tempfile::TempDir>, Option<String>) {
    if backend == "sqlite" {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        return (url, Some(dir), None);
    }
    let base = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
    let name = format!("sb_rs_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(&base).await.expect("connect to TEST_DATABASE_URL");
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("database url has a path");
    (format!("{prefix}/{name}"), None, Some(name))
}

/// Starts a server with test settings plus `extra` overrides.
pub async fn spawn_app(backend: &str, extra: &[(&str, &str)]) -> TestApp {
    let (database_url, dir, pg_name) = fresh_database(backend).await;
    start(database_url, dir, pg_name, extra).await
}

/// Starts a server on PostgreSQL: on a fresh database when `database` is `None` (this app then
/// drops it when stopped), else on the given one (another instance of the same deployment).
/// Returns the app and its database URL.
pub async fn spawn_app_with_database(database: Option<String>, extra: &[(&str, &str)]) -> (TestApp, String) {
    let (url, dir, pg_name) = match database {
        Some(url) => (url, None, None),
        None => fresh_database("postgres").await,
    };
    (start(url.clone(), dir, pg_name, extra).await, url)
}

async fn start(
    database_url: String,
    dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
    extra: &[(&str, &str)],
) -> TestApp {
    let media = tempfile::tempdir().expect("media dir");
    let mut vars: Vec<(String, String)> = vec![
        ("MEDIA_DIR".into(), media.path().display().to_string()),
        ("PORT".into(), "0".into()),
        ("HOST".into(), "127.0.0.1".into()),
        ("DATABASE_URL".into(), database_url),
        ("JWT_SECRET".into(), SECRET.into()),
        ("RATE_LIMIT_MESSAGE_NEW".into(), "100000/60s".into()),
        ("RATE_LIMIT_READ".into(), "100000/60s".into()),
        ("RATE_LIMIT_DELIVERED".into(), "100000/60s".into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_vars(vars).expect("test config");
    let app = Application::build(config).await.expect("server builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp { url, state, http: reqwest::Client::new(), stop: Some(stop), task: Some(task), _dir: dir, media, pg_name }
}

impl TestApp {
    pub fn token(&self, user: &str) -> String {
        switchboard::auth::mint(SECRET, None, user, None, Duration::from_secs(3600)).expect("mint")
    }

    pub async fn post(&self, user: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(self.token(user))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.expect("json body"))
    }

    pub async fn get(&self, user: &str, path: &str) -> (u16, serde_json::Value) {
        let res =
            self.http.get(format!("{}{path}", self.url)).bearer_auth(self.token(user)).send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.expect("json body"))
    }

    /// Creates a conversation and returns its id.
    pub async fn chat(&self, owner: &str, kind: &str, others: &[&str]) -> String {
        let (status, body) =
            self.post(owner, "/api/conversations", serde_json::json!({ "type": kind, "participantIds": others })).await;
        assert!(status == 201 || status == 200, "create chat: {status} {body}");
        body["data"]["id"].as_str().expect("id").to_string()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        drop_database(self.pg_name.take()).await;
    }
}

/// Drops a PostgreSQL test database made by [`fresh_database`] (nothing for SQLite's `None`).
pub async fn drop_database(pg_name: Option<String>) {
    if let (Some(name), Ok(base)) = (pg_name, std::env::var("TEST_DATABASE_URL")) {
        if let Ok(admin) = Database::connect(&base).await {
            let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

pub fn user(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Polls `check` every 10 ms for up to 10 s; for counting what arrived, never for timing.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The receipts of a test double that stands for a client which has everything the moment it
/// is queued.
pub struct ReachedAtOnce;

impl switchboard::fanout::Receipts for ReachedAtOnce {
    fn position(&self) -> u64 {
        0
    }
    fn confirmed(&self) -> u64 {
        u64::MAX
    }
    fn finished(&self) -> bool {
        true
    }
}
