//! The cross-instance seam for connections that are not Socket.IO: a connection registered
//! through the public fan-out interface on one instance receives what the core publishes on
//! another, over the Redis bus. Needs PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL):
//! marked ignored, so that a plain `cargo test` reports it as not run rather than as passed;
//! `.ci/run` runs it with `--ignored`, where it fails if either is missing.

mod common;

use std::sync::{Arc, Mutex};

use common::{eventually, spawn_app_with_database, user};
use switchboard::{
    core::{
        messages::Draft,
        model::{Actor, Event},
    },
    fanout::{Connection, EncodeCache, Receipts, SendFailure},
};

struct Recorder {
    user: String,
    events: Mutex<Vec<String>>,
}

impl Connection for Recorder {
    fn user_id(&self) -> &str {
        &self.user
    }
    fn receipts(&self) -> Arc<dyn Receipts> {
        Arc::new(common::ReachedAtOnce)
    }
    fn send(&self, event: &Event, _cache: &EncodeCache) -> Result<(), SendFailure> {
        let label = match event {
            Event::MessageCreated(m) => format!("message {} #{}", m.content, m.seq),
            Event::Typing(t) => format!("typing {}", t.typing),
            Event::Presence(p) => format!("presence {} {}", p.user_id, p.status.as_str()),
            other => format!("{other:?}").split('(').next().unwrap_or_default().to_string(),
        };
        self.events.lock().unwrap().push(label);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: TEST_DATABASE_URL=… TEST_REDIS_URL=… cargo test --test cluster_bus -- --ignored"]
async fn a_raw_connection_on_another_instance_gets_messages_over_the_bus() {
    std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL: this test needs PostgreSQL");
    let redis = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL: this test needs Redis");
    let prefix = format!("sbrs-{}:", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let shared = [("REDIS_URL", redis.as_str()), ("REDIS_PREFIX", prefix.as_str())];
    let (a, database) = spawn_app_with_database(None, &[&shared[..], &[("INSTANCE_ID", "a")]].concat()).await;
    let (b, _) = spawn_app_with_database(Some(database), &[&shared[..], &[("INSTANCE_ID", "b")]].concat()).await;

    let (alice, bob) = (user("alice"), user("bob"));
    let chat = a.chat(&alice, "direct", &[&bob]).await;
    let rec = Arc::new(Recorder { user: bob.clone(), events: Mutex::new(Vec::new()) });
    let id = b.state.core.hub.register(rec.clone());
    b.state.core.hub.start_sync(id);
    // Watch alice's presence from instance B; join the chat room for typing.
    b.state.core.hub.watch(id, &[switchboard::domain::UserId::from(&alice)]);
    b.state.core.join_chat(&Actor::rest(&bob), id, &chat).await.expect("join");

    let core_a = a.state.core.clone();
    let draft = |text: &str| Draft {
        chat_id: chat.clone(),
        content: text.to_string(),
        kind: "text".into(),
        reply_to_id: None,
        metadata: None,
        temp_id: None,
        mentions: Vec::new(),
    };
    for text in ["one", "two", "three"] {
        core_a.send_message(&Actor::rest(&alice), draft(text), None).await.expect("send on A");
    }
    core_a.set_typing(&Actor::rest(&alice), &chat, true).await.expect("typing on A");
    core_a.update_presence(&Actor::rest(&alice), "busy", None).await.expect("presence on A");

    let wanted = ["message one #1", "message two #2", "message three #3", "typing true"];
    eventually("events from instance A", || {
        let got = rec.events.lock().unwrap();
        wanted.iter().all(|w| got.iter().any(|g| g == w)) && got.iter().any(|g| g.ends_with("busy"))
    })
    .await;
    let got = rec.events.lock().unwrap().clone();
    let messages: Vec<&String> = got.iter().filter(|g| g.starts_with("message")).collect();
    assert_eq!(messages, vec!["message one #1", "message two #2", "message three #3"], "in order, once each");
    // Active members span instances: bob joined on B, and A sees him.
    let active = core_a.active_members(&Actor::rest(&alice), &chat).await.expect("active members");
    assert_eq!(active, vec![bob.clone()]);
    b.state.core.hub.unregister(id);
    b.stop().await;
    a.stop().await;
}
