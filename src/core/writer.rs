//! The message writer: one task that appends messages in batches (group commit). Requests
//! queue up while a transaction is on disk; the next transaction takes them all, so one fsync
//! serves many messages while each sender still gets its ack only after *its* message is
//! durable.
//!
//! The writer runs on a thread and runtime of its own, with a database connection of its own.
//! Each batch waits on a few statements in turn; on the server's runtime, every one of those
//! waits would end at the back of a queue of thousands of ready socket tasks, so the batch
//! rate (and with it the message rate) would fall as the number of busy clients grew. Here
//! the operating system wakes the writer as soon as its database answers.
//!
//! A written batch goes to one publisher task on the server's runtime, which hands the new
//! messages to their audiences and then acknowledges them, batch after batch in commit order,
//! so live events leave in `seq` order. The writer meanwhile writes the next batch.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::{mpsc, oneshot, watch};

use super::recall::CatchupMemory;

use crate::{
    core::model::{Message, Profile, UserId},
    error::AppError,
    fanout::{ConnId, Published},
    store::{
        self,
        messages::{Appended, NewMessage},
        Db,
    },
};

/// Most messages one transaction takes.
const MAX_BATCH: usize = 256;

pub enum Outcome {
    /// Stored, with the conversation's members when it was: the message's audience.
    Stored(Message, Arc<[UserId]>),
    Duplicate(Message),
}

type Reply = oneshot::Sender<Result<Outcome, AppError>>;

/// A message to store. The writer checks the sender's membership in the same transaction
/// that stores it, and the members it read there are who hears of it.
pub struct Pending {
    pub new: NewMessage,
    /// The sending connection: it has the message in its ack, not as an event.
    pub origin: Option<ConnId>,
    /// The sender's profile, handed out with the message.
    pub sender: Profile,
}

/// Called with each newly stored message and its audience, in commit order, before the acks
/// are sent. May return a confirmation that the acks wait for (the cross-instance bus took
/// the message).
pub type OnStored = Arc<dyn Fn(&Message, &[UserId], Option<ConnId>) -> Option<Published> + Send + Sync>;

/// Longest an ack waits for the bus; past it the message is durable anyway and other
/// instances' clients catch up by `seq`.
const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

enum Request {
    Append(Box<Pending>, Reply),
    /// Answered once everything queued before it is durable (graceful shutdown).
    Barrier(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct MessageWriter {
    tx: mpsc::Sender<Request>,
}

/// Keeps one connection's messages in the order it sent them: handlers run concurrently, so
/// each send takes a ticket when its packet arrives and queues only after the previous one.
#[derive(Default)]
pub struct SendOrder {
    last: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

pub struct SendTicket {
    previous: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
}

impl SendOrder {
    /// Must be called in packet order (synchronously, when the event arrives).
    pub fn ticket(&self) -> SendTicket {
        let (done, rx) = oneshot::channel();
        let previous = self.last.lock().unwrap_or_else(|p| p.into_inner()).replace(rx);
        SendTicket { previous, _done: done }
    }
}

impl SendTicket {
    /// Waits until the previous send of the same connection was queued (or given up).
    pub async fn wait_turn(&mut self) {
        if let Some(prev) = self.previous.take() {
            let _ = prev.await;
        }
    }
}

impl MessageWriter {
    /// Starts the writer on its own thread, and its publisher on the calling runtime. The
    /// writer opens its own connection as `storage` says and, should that fail, writes
    /// through `db`, the shared pool.
    pub fn spawn(
        db: Db,
        storage: store::Settings,
        memory: Arc<CatchupMemory>,
        on_stored: OnStored,
    ) -> std::io::Result<(Self, WriterThread)> {
        let (tx, rx) = mpsc::channel(8192);
        let (stop, stopped) = watch::channel(false);
        let (published, written) = mpsc::channel(PUBLISH_QUEUE);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new().name("message-writer".into()).spawn(move || {
            runtime.block_on(async move {
                let conn = WriterConnection::open(db, storage).await;
                run(conn, rx, stopped, published, memory).await;
            })
        })?;
        tokio::spawn(publish(written, on_stored));
        Ok((Self { tx }, WriterThread { stop, thread: Some(thread) }))
    }

    /// Queues a message and waits until it is durable. `ticket` is released once the message
    /// is queued, which lets the sender's next message queue behind it (per-connection order).
    pub async fn append(&self, new: Pending, ticket: Option<SendTicket>) -> Result<Outcome, AppError> {
        let (reply, rx) = oneshot::channel();
        let queued = self.tx.send(Request::Append(Box::new(new), reply)).await;
        drop(ticket);
        queued.map_err(|_| AppError::Internal(anyhow::anyhow!("message writer stopped")))?;
        rx.await.map_err(|_| AppError::Internal(anyhow::anyhow!("message writer dropped a request")))?
    }
}

impl MessageWriter {
    /// Resolves when every message queued so far is durable, published and acknowledged.
    pub async fn barrier(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Barrier(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The writer's thread: stopping it ends the writer after the batch it is writing.
pub struct WriterThread {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriterThread {
    /// Tells the writer to stop (tests start many servers in one process); does not wait.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.stop();
        // Detached: the thread ends on its own once told; nothing here may block a runtime.
        drop(self.thread.take());
    }
}

/// A written batch on its way to the publisher: each request with what became of it.
enum Written {
    Batch(Vec<(Pending, Reply, Result<Appended, AppError>)>),
    /// Answered once every batch before it was published and acknowledged.
    Barrier(oneshot::Sender<()>),
}

/// Most written batches waiting for the publisher before the writer waits for it.
const PUBLISH_QUEUE: usize = 64;

/// The writer's database connection, replaced after a failed batch.
struct WriterConnection {
    db: Db,
    storage: store::Settings,
    /// A connection of the writer's own (else the shared pool, which it must not close).
    own: bool,
    /// The last batch failed: open a fresh connection before the next one. The pool already
    /// replaced a connection stuck in a transaction, but it does so at once, while the fault
    /// may still be there (SQLite then opens the new connection read-only, for good).
    broken: bool,
}

impl WriterConnection {
    async fn open(shared: Db, storage: store::Settings) -> Self {
        let (db, own) = match store::connect_writer(&storage).await {
            Some(Ok(own)) => (own, true),
            Some(Err(e)) => {
                tracing::warn!(cause = %e, "the message writer could not open its own connection; using the pool");
                (shared, false)
            }
            None => (shared, false),
        };
        Self { db, storage, own, broken: false }
    }

    /// The connection for the next batch: a fresh one after a failure.
    async fn ready(&mut self) -> Result<&Db, sea_orm::DbErr> {
        if self.broken && self.own {
            let fresh = store::connect_writer(&self.storage)
                .await
                .unwrap_or_else(|| Err(sea_orm::DbErr::Custom("no connection of its own".into())))?;
            let old = std::mem::replace(&mut self.db, fresh);
            let _ = old.close().await;
            tracing::info!("the message writer opened a fresh database connection");
        }
        self.broken = false;
        Ok(&self.db)
    }
}

async fn run(
    mut conn: WriterConnection,
    mut rx: mpsc::Receiver<Request>,
    mut stop: watch::Receiver<bool>,
    published: mpsc::Sender<Written>,
    memory: Arc<CatchupMemory>,
) {
    let mut requests = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Ends when every sender is gone (shutdown), after the last batch is written, or when told.
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut requests, MAX_BATCH) => n,
            _ = stop.wait_for(|stop| *stop) => 0,
        };
        if received == 0 {
            break;
        }
        for request in requests.drain(..) {
            match request {
                Request::Append(pending, reply) => batch.push((*pending, reply)),
                Request::Barrier(done) => {
                    // Everything queued before the barrier goes first.
                    forward(&published, write(&mut conn, &mut batch, &memory).await).await;
                    let _ = published.send(Written::Barrier(done)).await;
                }
            }
        }
        forward(&published, write(&mut conn, &mut batch, &memory).await).await;
    }
}

async fn forward(published: &mpsc::Sender<Written>, written: Vec<(Pending, Reply, Result<Appended, AppError>)>) {
    if !written.is_empty() {
        // Fails only once the server's runtime is gone, and its clients with it.
        let _ = published.send(Written::Batch(written)).await;
    }
}

/// Writes one batch in one transaction. Only a committed transaction acknowledges anything:
/// when any statement or the COMMIT fails, every message of the batch is answered with that
/// error and nothing else (its sender may resend under the same `tempId`). The transaction is
/// rolled back, and a connection that could not end it is replaced by the pool before the
/// next batch (see `store::discard_if_in_transaction`), so a later batch never lands inside
/// a transaction that will not commit.
async fn write(
    conn: &mut WriterConnection,
    batch: &mut Vec<(Pending, Reply)>,
    memory: &CatchupMemory,
) -> Vec<(Pending, Reply, Result<Appended, AppError>)> {
    if batch.is_empty() {
        return Vec::new();
    }
    let health = conn.storage.health.clone();
    let items: Vec<&NewMessage> = batch.iter().map(|(p, _)| &p.new).collect();
    // The conversations of the batch are "being written" from before it begins until their
    // new last seqs are known, which is before anything of it is published (`recall`).
    let mut chats: Vec<&str> = items.iter().map(|m| m.conversation_id.as_str()).collect();
    chats.sort_unstable();
    chats.dedup();
    memory.writing(chats.iter().copied());
    let written = match conn.ready().await {
        Ok(db) => store::messages::append_batch(db, &items).await,
        Err(e) => Err(e),
    };
    match &written {
        Ok(results) => {
            let mut last: HashMap<&str, i64> = HashMap::with_capacity(chats.len());
            for result in results {
                if let Appended::New { message, .. } = result {
                    let seq = last.entry(message.conversation_id.as_str()).or_insert(message.seq);
                    *seq = (*seq).max(message.seq);
                }
            }
            memory.written(chats.iter().copied(), Some(&last));
        }
        Err(_) => memory.written(chats.iter().copied(), None),
    }
    drop(chats);
    drop(items);
    match written {
        Ok(results) => {
            health.write_succeeded();
            batch.drain(..).zip(results).map(|((p, r), result)| (p, r, Ok(result))).collect()
        }
        Err(e) => {
            health.write_failed("message batch", &e);
            conn.broken = true;
            batch.drain(..).map(|(p, r)| (p, r, Err(AppError::StorageUnavailable))).collect()
        }
    }
}

/// The publisher: runs on the server's runtime, beside the connections, and takes the written
/// batches in commit order. It hands each new message to its audience (one wake-up of the
/// server's runtime per batch rather than per recipient and per ack) and the bus, and passes
/// the batch's acks on to [`acknowledge`], which sends them once the bus took the batch. The
/// next batch is delivered meanwhile: waiting here for the bus, batch after batch, made every
/// ack wait for all the round trips before it.
async fn publish(mut written: mpsc::Receiver<Written>, on_stored: OnStored) {
    let (to_ack, acks) = mpsc::unbounded_channel();
    tokio::spawn(acknowledge(acks));
    while let Some(item) = written.recv().await {
        let next = match item {
            Written::Batch(batch) => Acks::Batch(deliver(batch, &on_stored)),
            Written::Barrier(done) => Acks::Barrier(done),
        };
        // Fails only once the server's runtime is gone, and its clients with it.
        let _ = to_ack.send(next);
    }
}

/// What [`acknowledge`] answers, in commit order.
enum Acks {
    Batch(DeliveredBatch),
    /// Answered once every ack before it was sent.
    Barrier(oneshot::Sender<()>),
}

struct DeliveredBatch {
    acks: Vec<(Reply, Result<Outcome, AppError>)>,
    /// The bus's confirmation of the batch's last envelope: it publishes in order, so it
    /// covers the whole batch.
    published: Option<Published>,
    /// Past this, the acks go out without the bus: the messages are durable, and other
    /// instances' clients catch up by `seq`. Counted from the batch's delivery, so that a bus
    /// outage delays each ack by at most [`PUBLISH_WAIT`], not by one wait per batch before it.
    deadline: tokio::time::Instant,
}

fn deliver(batch: Vec<(Pending, Reply, Result<Appended, AppError>)>, on_stored: &OnStored) -> DeliveredBatch {
    let mut acks = Vec::with_capacity(batch.len());
    let mut last_published = None;
    for (pending, reply, result) in batch {
        let outcome = match result {
            Ok(Appended::New { message, members }) => {
                let msg = Message { sender: Some(pending.sender.clone()), ..Message::from(message) };
                if let Some(published) = on_stored(&msg, &members, pending.origin) {
                    last_published = Some(published);
                }
                Ok(Outcome::Stored(msg, members))
            }
            Ok(Appended::Duplicate(model)) => {
                Ok(Outcome::Duplicate(Message { sender: Some(pending.sender.clone()), ..Message::from(model) }))
            }
            Ok(Appended::NoConversation) => Err(AppError::NotFound("conversation not found".into())),
            Ok(Appended::NotMember) => Err(AppError::not_member()),
            Err(e) => Err(e),
        };
        acks.push((reply, outcome));
    }
    DeliveredBatch { acks, published: last_published, deadline: tokio::time::Instant::now() + PUBLISH_WAIT }
}

/// Sends the acks of each batch, in commit order, once the bus took the batch.
async fn acknowledge(mut batches: mpsc::UnboundedReceiver<Acks>) {
    while let Some(item) = batches.recv().await {
        let batch = match item {
            Acks::Batch(batch) => batch,
            Acks::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if let Some(published) = batch.published {
            if tokio::time::timeout_at(batch.deadline, published).await.is_err() {
                tracing::warn!("the bus did not confirm in time; acknowledging the durable messages anyway");
            }
        }
        for (reply, outcome) in batch.acks {
            // The sender may have gone; the message is stored and published regardless.
            let _ = reply.send(outcome);
        }
    }
}
