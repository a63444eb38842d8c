//! `TCP_NODELAY` for the connections to PostgreSQL.
//!
//! sqlx 0.9 opens its TCP connections with Nagle's algorithm on and offers no setting for it.
//! A statement larger than what one segment carries (a batch insert of a few hundred
//! messages) then leaves its last segment waiting for the server's acknowledgement of the
//! first, which the server's kernel delays by up to 40 ms because PostgreSQL has nothing to
//! answer before it has the whole statement: every batch paid 40 ms, and the write rate was
//! capped at about 20 batches a second. Nothing in sqlx exposes the socket, so each new
//! connection's hook asks for a walk over the process's TCP sockets that finds those to the
//! database server and turns the algorithm off on them ([`Walker`]).

use std::{
    net::{SocketAddr, ToSocketAddrs},
    os::fd::BorrowedFd,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use socket2::SockRef;
use tokio::sync::mpsc;

/// Walks the process's descriptors when asked, one walk at a time, off the caller's path.
///
/// Each new database connection asks for a walk. The hook used to run the walk itself and
/// wait for it: with 19,000 clients connected a walk is 19,000 `getpeername` calls, and in a
/// reconnect wave on PostgreSQL the pool opened connections while catch-ups waited for them.
/// Every attempt that timed out left its walk running, walks piled up on every thread, the
/// connections they held back were never handed out, and catch-ups failed for minutes (the
/// benchmark's 19,000-client wave). Now asking returns at once, and any number of requests
/// made while a walk runs are served by one more walk after it. What a new connection sends
/// before its walk still goes out, at worst one delayed acknowledgement later.
#[derive(Clone)]
pub struct Walker {
    /// One slot: a full channel means a walk is already due after the running one.
    wanted: mpsc::Sender<()>,
    /// Walks finished so far (also logged at debug level).
    #[cfg_attr(not(test), allow(dead_code))]
    walks: Arc<AtomicUsize>,
}

impl Walker {
    /// Starts the walking task on the current runtime; it ends when every clone is dropped.
    pub fn spawn(servers: Vec<SocketAddr>) -> Self {
        let (wanted, mut requests) = mpsc::channel::<()>(1);
        let walks = Arc::new(AtomicUsize::new(0));
        let counted = walks.clone();
        let servers = Arc::new(servers);
        tokio::spawn(async move {
            while requests.recv().await.is_some() {
                let servers = servers.clone();
                let started = std::time::Instant::now();
                let _ = tokio::task::spawn_blocking(move || set_on_connections_to(&servers)).await;
                let walks = counted.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(walks, took_ms = started.elapsed().as_millis() as u64, "TCP_NODELAY walk done");
            }
        });
        Self { wanted, walks }
    }

    /// A connection was opened: its socket is covered by the next walk that starts.
    pub fn request(&self) {
        // Full: a walk that starts after this call is already due.
        let _ = self.wanted.try_send(());
    }

    /// Walks finished so far.
    #[cfg(test)]
    pub fn walks(&self) -> usize {
        self.walks.load(Ordering::Relaxed)
    }
}

/// The addresses a `postgres://` URL's host and port resolve to; empty for a Unix socket or
/// a URL that does not parse.
pub fn server_addrs(url: &str) -> Vec<SocketAddr> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Vec::new();
    };
    if parsed.query_pairs().any(|(k, _)| k == "host") {
        return Vec::new();
    }
    let (Some(host), port) = (parsed.host_str(), parsed.port().unwrap_or(5432)) else {
        return Vec::new();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port).to_socket_addrs().map(|addrs| addrs.collect()).unwrap_or_default()
}

/// Sets `TCP_NODELAY` on every socket of this process connected to one of `servers`.
pub fn set_on_connections_to(servers: &[SocketAddr]) {
    if servers.is_empty() {
        return;
    }
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the two calls below; one that closed
        // meanwhile makes them fail with EBADF, and one reused for another socket is only
        // changed when it, too, is connected to the database server.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&fd);
        let to_server = socket.peer_addr().ok().and_then(|a| a.as_socket()).is_some_and(|peer| servers.contains(&peer));
        if to_server {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_server_of_a_tcp_url_only() {
        assert_eq!(server_addrs("postgres://u:p@127.0.0.1:5433/db"), vec!["127.0.0.1:5433".parse().unwrap()]);
        assert_eq!(server_addrs("postgres://u@127.0.0.1/db"), vec!["127.0.0.1:5432".parse().unwrap()]);
        assert!(server_addrs("postgres://u@localhost/db?host=/var/run/postgresql").is_empty());
        assert!(server_addrs("not a url").is_empty());
    }

    #[test]
    fn turns_nagle_off_on_connections_to_the_server_and_nowhere_else() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_server = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let to_other = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_server.nodelay().unwrap());
        set_on_connections_to(&[server.local_addr().unwrap()]);
        assert!(to_server.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
    }

    #[tokio::test]
    async fn a_request_returns_at_once_and_requests_during_a_walk_share_the_next_one() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let walker = Walker::spawn(vec![server.local_addr().unwrap()]);
        let first = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        for _ in 0..1000 {
            walker.request();
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !first.nodelay().unwrap() {
            assert!(tokio::time::Instant::now() < deadline, "the socket was never walked");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // A thousand requests: the walk that was running and at most one after it.
        let settle = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
        while tokio::time::Instant::now() < settle {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(walker.walks() <= 2, "{} walks for requests made together", walker.walks());
        // A connection opened after those walks is covered by the walk it asks for.
        let second = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        walker.request();
        while !second.nodelay().unwrap() {
            assert!(tokio::time::Instant::now() < deadline, "the second socket was never walked");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
