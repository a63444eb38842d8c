//! What every scenario shares: the server and what kind it is, the source addresses to spread
//! connections over, tokens, connecting many clients, and the setup through Switchboard's REST
//! API (reference servers need none: their "chats" are rooms joined by an event).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{
    sio::{self, Conn},
    stats::Errors,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Switchboard: JWT auth, chats created through its REST API, persisted messages.
    Switchboard,
    /// A reference server (examples/reference): any auth, rooms joined with a `join` event.
    Bare,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Switchboard => "switchboard",
            Target::Bare => "bare",
        }
    }
}

pub struct Ctx {
    pub target: Target,
    pub server: SocketAddr,
    /// Source addresses, used in turn: a per-address connection limit or the ~28,000
    /// ephemeral ports of one address must not be what a scenario measures.
    sources: Vec<IpAddr>,
    secret: String,
    /// Unique per run, so ids and tempIds never collide with an earlier run's on the same
    /// database (a reused tempId is, correctly, answered as a resend and not stored).
    pub run: String,
    pub connect_timeout: Duration,
    /// The server's process, for its memory and CPU time (optional).
    pub server_pid: Option<u32>,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

impl Ctx {
    pub fn new(
        target: Target,
        server: SocketAddr,
        sources: usize,
        secret: String,
        connect_timeout: Duration,
        server_pid: Option<u32>,
    ) -> anyhow::Result<Self> {
        // Load must never leave this machine.
        if !server.ip().is_loopback() {
            bail!("--server must be a loopback address, not {}", server.ip());
        }
        let sources = match server.ip() {
            // 127.0.0.0/8 is all loopback on Linux; 127.0.0.1 stays free for other tools.
            IpAddr::V4(_) => {
                (0..sources.clamp(1, 250)).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))).collect()
            }
            IpAddr::V6(v6) => vec![IpAddr::V6(v6)],
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let run = format!("r{}", radix36(now.as_millis() as u64));
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build()?;
        Ok(Self { target, server, sources, secret, run, connect_timeout, server_pid, http })
    }

    pub fn source(&self, i: usize) -> IpAddr {
        self.sources[i % self.sources.len()]
    }

    /// An HS256 token for `user` with the claims Switchboard requires (`sub`, `exp`).
    pub fn token(&self, user: &str) -> Result<String, sio::Error> {
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + 86_400;
        encode(&Header::default(), &Claims { sub: user, exp }, &EncodingKey::from_secret(self.secret.as_bytes()))
            .map_err(|e| sio::Error::Protocol(format!("cannot mint a token: {e}")))
    }

    /// Connects one client as `user` from the `i`-th source address, within the timeout.
    pub async fn connect(&self, i: usize, user: &str) -> Result<Conn, sio::Error> {
        let token = match self.target {
            Target::Switchboard => Some(self.token(user)?),
            Target::Bare => None,
        };
        match tokio::time::timeout(self.connect_timeout, Conn::connect(self.server, self.source(i), token.as_deref()))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(sio::Error::Timeout),
        }
    }

    /// Connects one client per user, `concurrency` at a time; failures are counted and leave
    /// `None` in their slot.
    pub async fn connect_all(&self, users: &[String], concurrency: usize, errors: &mut Errors) -> Vec<Option<Conn>> {
        let mut conns: Vec<Option<Conn>> = (0..users.len()).map(|_| None).collect();
        let mut attempts = futures_util::stream::iter(users.iter().enumerate())
            .map(|(i, user)| async move { (i, self.connect(i, user).await) })
            .buffer_unordered(concurrency.max(1));
        let mut done = 0;
        while let Some((i, result)) = attempts.next().await {
            match result {
                Ok(conn) => conns[i] = Some(conn),
                Err(e) => errors.add(format!("connect: {}", e.kind())),
            }
            done += 1;
            if done % 5000 == 0 {
                eprintln!("  connected {done}/{}", users.len());
            }
        }
        conns
    }

    /// One chat per user to send into, and nobody else to deliver to: Switchboard's
    /// note-to-self conversations (created over REST), or, on a reference server, a room
    /// name nobody joins. Either way the server does its whole `message:new` path (store or
    /// not, then publish to an audience that has no other connection) and acks.
    pub async fn own_chats(&self, users: &[String]) -> anyhow::Result<Vec<String>> {
        match self.target {
            Target::Bare => Ok(users.iter().map(|u| format!("chat-{u}")).collect()),
            Target::Switchboard => {
                let mut chats: Vec<Option<String>> = vec![None; users.len()];
                let mut calls = futures_util::stream::iter(users.iter().enumerate())
                    .map(|(i, user)| async move {
                        (i, self.create_conversation(user, json!({ "type": "self", "participantIds": [] })).await)
                    })
                    .buffer_unordered(16);
                while let Some((i, result)) = calls.next().await {
                    chats[i] = Some(result.with_context(|| format!("creating the self chat of {}", users[i]))?);
                }
                Ok(chats.into_iter().flatten().collect())
            }
        }
    }

    /// A group of `members` (the first is its owner) on Switchboard, in one request; on a
    /// reference server, a room name (members join it with [`join_room`]).
    pub async fn group(&self, members: &[String]) -> anyhow::Result<String> {
        match self.target {
            Target::Bare => Ok(format!("group-{}", self.run)),
            Target::Switchboard => {
                let (owner, others) = members.split_first().context("a group needs members")?;
                self.create_conversation(
                    owner,
                    json!({ "type": "group", "name": format!("bench {}", self.run), "participantIds": others }),
                )
                .await
                .context("creating the group (is MAX_GROUP_SIZE large enough?)")
            }
        }
    }

    /// A direct chat between `owner` and each of `users` (Switchboard only), 16 requests at a time.
    pub async fn direct_chats(&self, owner: &str, users: &[String]) -> anyhow::Result<Vec<String>> {
        let mut chats: Vec<Option<String>> = vec![None; users.len()];
        let mut calls = futures_util::stream::iter(users.iter().enumerate())
            .map(|(i, user)| async move {
                (i, self.create_conversation(owner, json!({ "type": "direct", "participantIds": [user] })).await)
            })
            .buffer_unordered(16);
        while let Some((i, result)) = calls.next().await {
            chats[i] = Some(result.with_context(|| format!("creating the direct chat with {}", users[i]))?);
        }
        Ok(chats.into_iter().flatten().collect())
    }

    /// `POST /api/conversations` as `user`; the new conversation's id.
    async fn create_conversation(&self, user: &str, body: Value) -> anyhow::Result<String> {
        let token = self.token(user).map_err(|e| anyhow::anyhow!("{e}"))?;
        let url = format!("http://{}/api/conversations", self.server);
        let res = self.http.post(&url).bearer_auth(token).json(&body).send().await?;
        let status = res.status();
        let answer: Value = res.json().await.with_context(|| format!("{url} answered {status} without JSON"))?;
        match answer.pointer("/data/id").and_then(Value::as_str) {
            Some(id) if status.is_success() => Ok(id.to_string()),
            _ => bail!("{url} answered {status}: {}", answer.get("error").unwrap_or(&answer)),
        }
    }
}

/// Joins `room` on a reference server (`join` event, acked); nothing to do on Switchboard,
/// where group members are reached through their user rooms.
pub async fn join_room(target: Target, conn: &mut Conn, room: &str) -> Result<(), sio::Error> {
    if target == Target::Switchboard {
        return Ok(());
    }
    conn.emit("join", &json!({ "room": room }).to_string(), Some(0)).await?;
    loop {
        let Some(text) = conn.next_text().await? else { return Err(sio::Error::Closed) };
        match sio::parse(&text) {
            sio::Packet::Ack { id: 0, .. } => return Ok(()),
            sio::Packet::Ping => conn.send("3".into()).await?,
            _ => {}
        }
    }
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The resident set size of a process, from `/proc/<pid>/status` (`VmRSS`, in KiB).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is --server-pid right?)"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// CPU time used so far: by the server process, by this process, and per core of the machine
/// (busy, total), all in clock ticks (USER_HZ, 100 per second on Linux).
pub struct CpuSample {
    at: std::time::Instant,
    server: Option<u64>,
    me: Option<u64>,
    cores: Vec<(u64, u64)>,
}

/// utime + stime of a process (all its threads), from `/proc/<pid>/stat`.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are space-separated.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Per core: (busy, total) ticks, from the `cpuN` lines of `/proc/stat`.
fn core_ticks() -> Vec<(u64, u64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return Vec::new() };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let total: u64 = v.iter().take(8).sum();
            // idle + iowait
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle.min(total), total)
        })
        .collect()
}

impl CpuSample {
    pub fn take(server_pid: Option<u32>) -> Self {
        Self {
            at: std::time::Instant::now(),
            server: server_pid.and_then(|p| process_ticks(&p.to_string())),
            me: process_ticks("self"),
            cores: core_ticks(),
        }
    }

    /// Percent of one core used between `self` and `later` by the server and by this
    /// process, and how busy each core of the machine was (whoever used it).
    pub fn until(&self, later: &CpuSample) -> Value {
        let secs = (later.at - self.at).as_secs_f64().max(1e-3);
        let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => json!(((b.saturating_sub(a)) as f64 / secs).round()),
            _ => Value::Null,
        };
        let cores: Vec<Value> = self
            .cores
            .iter()
            .zip(&later.cores)
            .map(|((b0, t0), (b1, t1))| {
                let total = t1.saturating_sub(*t0).max(1) as f64;
                json!((b1.saturating_sub(*b0) as f64 / total * 100.0).round())
            })
            .collect();
        json!({ "server_pct": pct(self.server, later.server), "loadgen_pct": pct(self.me, later.me), "cores_busy_pct": cores })
    }
}
