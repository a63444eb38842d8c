//! Who the client is, by address: the TCP peer, or what a trusted proxy says it is.

use axum::http::request::Parts;

use super::Peer;

/// The client's IP address for per-IP limits: the TCP peer, unless the peer is one of
/// `TRUSTED_PROXIES`, in which case the nearest address in `X-Forwarded-For` that is not a
/// trusted proxy (then `X-Real-IP`). Headers from untrusted peers are ignored, since any
/// client can write them.
pub fn client_ip(parts: &Parts, trusted: &[std::net::IpAddr]) -> Option<std::net::IpAddr> {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<Peer>>()?.0.addr.ip().to_canonical();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    // Proxies append, so the rightmost untrusted hop is the one a trusted proxy saw.
    let from_chain = forwarded
        .iter()
        .rev()
        .filter_map(|hop| hop.parse::<std::net::IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .find(|ip| !trusted.contains(ip));
    let real_ip = || {
        parts
            .headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_canonical())
    };
    Some(from_chain.or_else(real_ip).unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::*;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = axum::http::Request::builder();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (mut parts, ()) = req.body(()).expect("request").into_parts();
        let addr: SocketAddr = format!("{peer}:5000").parse().expect("addr");
        let config = crate::config::Config::from_vars(Vec::new()).expect("defaults");
        let peer = crate::transport::Peer::unwatched(addr, crate::transport::Transport::new(&config));
        parts.extensions.insert(axum::extract::ConnectInfo(peer));
        parts
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_headers_say() {
        let p = parts("203.0.113.7", &[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(client_ip(&p, &[]), Some(ip("203.0.113.7")));
        assert_eq!(client_ip(&p, &[ip("10.0.0.1")]), Some(ip("203.0.113.7")));
    }

    #[test]
    fn behind_a_trusted_proxy_the_nearest_untrusted_hop_is_the_client() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let p = parts("10.0.0.1", &[("x-forwarded-for", "6.6.6.6, 198.51.100.9, 10.0.0.2")]);
        assert_eq!(client_ip(&p, &trusted), Some(ip("198.51.100.9")));
        let p = parts("10.0.0.1", &[("x-real-ip", "198.51.100.10")]);
        assert_eq!(client_ip(&p, &trusted), Some(ip("198.51.100.10")));
        let p = parts("10.0.0.1", &[]);
        assert_eq!(client_ip(&p, &trusted), Some(ip("10.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let p = parts("[::ffff:192.0.2.1]", &[]);
        assert_eq!(client_ip(&p, &[]), Some(ip("192.0.2.1")));
    }
}
