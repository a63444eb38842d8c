//! `TCP_NODELAY` for the connections to PostgreSQL.
//!
//! sqlx 0.9 opens its TCP connections with Nagle's algorithm on and offers no setting for it.
//! A statement larger than what one segment carries (a batch insert of a few hundred
//! messages) then leaves its last segment waiting for the server's acknowledgement of the
//! first, which the server's kernel delays by up to 40 ms because PostgreSQL has nothing to
//! answer before it has the whole statement: every batch paid 40 ms, and the write rate was
//! capped at about 20 batches a second. Nothing in sqlx exposes the socket, so each new
//! connection's hook finds the process's TCP sockets to the database server and turns the
//! algorithm off on them.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    os::fd::BorrowedFd,
};

use socket2::SockRef;

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
}
