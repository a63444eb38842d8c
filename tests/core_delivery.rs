//! Delivery guarantees of the core and the fan-out hub, exercised through the public core API
//! on a running server, with a test-double connection standing in for a slow client.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use common::{backends, eventually, spawn_app, user};
use switchboard::{
    core::{
        messages::Draft,
        model::{Actor, Event},
        Core,
    },
    fanout::{Connection, EncodeCache, Receipts, SendFailure},
};

/// A connection that records messages and can pretend its buffer is full.
struct Recorder {
    user: String,
    full: AtomicBool,
    got: Mutex<Vec<(String, i64)>>,
    receipts: Arc<dyn Receipts>,
}

impl Recorder {
    fn new(user: &str) -> Arc<Self> {
        Self::with_receipts(user, Arc::new(common::ReachedAtOnce))
    }
    fn with_receipts(user: &str, receipts: Arc<dyn Receipts>) -> Arc<Self> {
        Arc::new(Self { user: user.to_string(), full: AtomicBool::new(false), got: Mutex::new(Vec::new()), receipts })
    }
    fn seqs(&self, chat: &str) -> Vec<i64> {
        self.got.lock().unwrap().iter().filter(|(c, _)| c == chat).map(|(_, s)| *s).collect()
    }
}

impl Connection for Recorder {
    fn user_id(&self) -> &str {
        &self.user
    }
    fn receipts(&self) -> Arc<dyn Receipts> {
        self.receipts.clone()
    }
    fn send(&self, event: &Event, _cache: &EncodeCache) -> Result<(), SendFailure> {
        if self.full.load(Ordering::SeqCst) {
            return Err(SendFailure::Full);
        }
        if let Event::MessageCreated(m) = event {
            self.got.lock().unwrap().push((m.chat_id.to_string(), m.seq));
        }
        Ok(())
    }
}

fn draft(chat: &str, text: &str, temp_id: Option<&str>) -> Draft {
    Draft {
        chat_id: chat.to_string(),
        content: text.to_string(),
        kind: "text".into(),
        reply_to_id: None,
        metadata: None,
        temp_id: temp_id.map(str::to_string),
        mentions: Vec::new(),
    }
}

async fn send(core: &Arc<Core>, who: &str, chat: &str, text: &str) -> i64 {
    core.send_message(&Actor::rest(who), draft(chat, text, None), None).await.expect("send").seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seq_stays_gapless_under_concurrent_senders() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let users: Vec<String> = (0..4).map(|_| user("s")).collect();
        let others: Vec<&str> = users[1..].iter().map(String::as_str).collect();
        let chat = app.chat(&users[0], "group", &others).await;
        let core = app.state.core.clone();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (core, chat, who) = (core.clone(), chat.clone(), users[i % 4].clone());
            tasks.push(tokio::spawn(async move { send(&core, &who, &chat, &format!("m{i}")).await }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "{backend}");
        let stored = core.messages_after(&Actor::rest(&users[0]), &chat, 150, 200).await.unwrap();
        assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), (151..=200).collect::<Vec<_>>());
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_resends_of_one_temp_id_store_one_message() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let (alice, bob) = (user("alice"), user("bob"));
        let chat = app.chat(&alice, "direct", &[&bob]).await;
        let core = app.state.core.clone();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (core, chat, alice) = (core.clone(), chat.clone(), alice.clone());
            tasks.push(tokio::spawn(async move {
                core.send_message(&Actor::rest(&alice), draft(&chat, "once", Some("same")), None).await.unwrap()
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().id);
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{backend}");
        let stored = core.messages_after(&Actor::rest(&bob), &chat, 0, 50).await.unwrap();
        assert_eq!(stored.len(), 1, "{backend}");
        // The same tempId from another sender is another message.
        let other = core.send_message(&Actor::rest(&bob), draft(&chat, "mine", Some("same")), None).await.unwrap();
        assert_eq!(other.seq, 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_connection_gets_its_backlog_then_live_messages_once_each() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let (alice, bob) = (user("alice"), user("bob"));
        let chat = app.chat(&alice, "direct", &[&bob]).await;
        let core = app.state.core.clone();
        for i in 0..5 {
            send(&core, &alice, &chat, &format!("offline {i}")).await;
        }
        let rec = Recorder::new(&bob);
        let id = core.hub.register(rec.clone());
        // Live traffic while the backlog is being pushed must neither be lost nor doubled.
        let sender = {
            let (core, chat, alice) = (core.clone(), chat.clone(), alice.clone());
            tokio::spawn(async move {
                for i in 0..20 {
                    send(&core, &alice, &chat, &format!("live {i}")).await;
                }
            })
        };
        core.hub.start_sync(id);
        sender.await.unwrap();
        eventually("25 messages", || rec.seqs(&chat).len() >= 25).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut seqs = rec.seqs(&chat);
        assert_eq!(seqs.len(), 25, "{backend}: no duplicates: {seqs:?}");
        seqs.sort();
        assert_eq!(seqs, (1..=25).collect::<Vec<_>>(), "{backend}");
        core.hub.unregister(id);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_slow_consumer_is_caught_up_from_the_store_instead_of_losing_events() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let (alice, bob) = (user("alice"), user("bob"));
        let chat = app.chat(&alice, "direct", &[&bob]).await;
        let core = app.state.core.clone();
        let rec = Recorder::new(&bob);
        let id = core.hub.register(rec.clone());
        core.hub.start_sync(id);
        send(&core, &alice, &chat, "first").await;
        eventually("first message", || rec.seqs(&chat) == vec![1]).await;
        // The client stops reading: its buffer is full for the next ten messages.
        rec.full.store(true, Ordering::SeqCst);
        for i in 0..10 {
            send(&core, &alice, &chat, &format!("while full {i}")).await;
        }
        assert_eq!(rec.seqs(&chat), vec![1]);
        assert!(core.hub.stats.slow_consumer_resyncs.load(Ordering::Relaxed) >= 1, "{backend}");
        rec.full.store(false, Ordering::SeqCst);
        send(&core, &alice, &chat, "after").await;
        eventually("all twelve", || rec.seqs(&chat).len() >= 12).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rec.seqs(&chat), (1..=12).collect::<Vec<_>>(), "{backend}: in order, once each");
        core.hub.unregister(id);
        app.stop().await;
    }
}

#[tokio::test]
async fn what_one_connection_was_handed_is_not_pushed_to_the_next_after_it_settles() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let (alice, bob) = (user("alice"), user("bob"));
        let chat = app.chat(&alice, "direct", &[&bob]).await;
        let core = app.state.core.clone();
        let first = Recorder::new(&bob);
        let id = core.hub.register(first.clone());
        core.hub.start_sync(id);
        for i in 0..3 {
            send(&core, &alice, &chat, &format!("m{i}")).await;
        }
        eventually("three", || first.seqs(&chat).len() == 3).await;
        // Let the marks settle and be written, then go away.
        tokio::time::sleep(Duration::from_millis(700)).await;
        core.hub.unregister(id);
        send(&core, &alice, &chat, "while away").await;
        let second = Recorder::new(&bob);
        let id2 = core.hub.register(second.clone());
        core.hub.start_sync(id2);
        eventually("the missed one", || !second.seqs(&chat).is_empty()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(second.seqs(&chat), vec![4], "{backend}");
        core.hub.unregister(id2);
        app.stop().await;
    }
}

/// Receipts the test hands out and confirms itself.
#[derive(Default)]
struct Manual {
    position: AtomicU64,
    confirmed: AtomicU64,
}

impl Receipts for Manual {
    fn position(&self) -> u64 {
        self.position.load(Ordering::SeqCst)
    }
    fn confirmed(&self) -> u64 {
        self.confirmed.load(Ordering::SeqCst)
    }
    fn finished(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_mark_is_written_once_the_transport_confirmed_it_and_forgotten_if_it_never_does() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let (alice, bob) = (user("alice"), user("bob"));
        let chat = app.chat(&alice, "direct", &[&bob]).await;
        let core = app.state.core.clone();
        let receipts = Arc::new(Manual { position: AtomicU64::new(1), ..Default::default() });
        let first = Recorder::with_receipts(&bob, receipts.clone());
        let id = core.hub.register(first.clone());
        core.hub.start_sync(id);
        for i in 0..3 {
            send(&core, &alice, &chat, &format!("m{i}")).await;
        }
        eventually("three", || first.seqs(&chat).len() == 3).await;
        core.ledger.flush().await; // nothing confirmed: nothing written
        receipts.position.store(2, Ordering::SeqCst);
        receipts.confirmed.store(1, Ordering::SeqCst);
        core.ledger.flush().await; // 1..=3 confirmed
        send(&core, &alice, &chat, "unconfirmed").await;
        eventually("the fourth", || first.seqs(&chat).len() == 4).await;
        core.hub.unregister(id);
        core.ledger.flush().await; // closed, finished: the fourth is forgotten
        let second = Recorder::new(&bob);
        let id2 = core.hub.register(second.clone());
        core.hub.start_sync(id2);
        // The catch-up pushes its backlog before anything live, in seq order.
        send(&core, &alice, &chat, "marker").await;
        eventually("the marker", || second.seqs(&chat).contains(&5)).await;
        assert_eq!(second.seqs(&chat), vec![4, 5], "{backend}: the unconfirmed one again, the confirmed ones not");
        core.hub.unregister(id2);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_message_held_back_while_a_device_syncs_reaches_it_even_if_another_device_had_it() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let (alice, bob) = (user("alice"), user("bob"));
        let chat = app.chat(&alice, "direct", &[&bob]).await;
        let core = app.state.core.clone();
        // Alice's first device is live; her second has registered but not caught up yet.
        let first = Recorder::new(&alice);
        let id1 = core.hub.register(first.clone());
        core.hub.start_sync(id1);
        eventually("first device live", || {
            core.hub.stats.held_back.load(Ordering::Relaxed) == 0 && core.hub.connection_count() == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = Recorder::new(&alice);
        let id2 = core.hub.register(second.clone());
        // Sent from the first device: it records the seq as its own; the second holds it back.
        let actor = Actor {
            user_id: alice.as_str().into(),
            device: Default::default(),
            username: None,
            avatar: None,
            conn: Some(id1),
        };
        let seq = core.send_message(&actor, draft(&chat, "from my phone", None), None).await.unwrap().seq;
        core.hub.start_sync(id2);
        eventually("the held-back message at the second device", || second.seqs(&chat) == vec![seq]).await;
        assert!(first.seqs(&chat).is_empty(), "{backend}: the sending device gets the ack, not an echo");
        core.hub.unregister(id1);
        core.hub.unregister(id2);
        app.stop().await;
    }
}
