//! Who a request comes from: the peer's address, or, when the peer is a
//! trusted proxy, the address it says it forwarded for; IPv6 clients are
//! counted by their /64 (one subscriber's usual allocation).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::http::request::Head;

/// The client of a request from `peer`. From a `trusted` peer, the nearest
/// untrusted address of `Forwarded: for=` (RFC 7239), else of
/// `X-Forwarded-For`, walking back from the peer; a header that names none
/// leaves the peer.
pub fn client(peer: IpAddr, head: &Head<'_>, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    for (name, parse) in [("forwarded", forwarded_for as fn(&str) -> Option<IpAddr>), ("x-forwarded-for", plain)] {
        // Every line of the header, in order, as one list.
        let hops: Vec<&str> = head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .collect();
        if hops.is_empty() {
            continue;
        }
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse(hop) else { return nearest };
            nearest = ip;
            if !is_trusted(ip) {
                break;
            }
        }
        return nearest;
    }
    peer
}

/// `203.0.113.9` or `2001:db8::1` (spaces around allowed).
fn plain(hop: &str) -> Option<IpAddr> {
    hop.trim().parse().ok()
}

/// The address of one `Forwarded` element's `for=` parameter: a bare IPv4
/// address, or a quoted one, with an optional port (`"[2001:db8::1]:4711"`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })?;
    let value = value.trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let host = value.split_once(':').map_or(value, |(host, _)| host);
    host.parse().ok()
}

/// The bucket key of `client` for a route class: an IPv4 address as
/// itself (IPv4-mapped IPv6 included), IPv6 by its /64.
pub fn key(client: IpAddr, class: u8, hasher: &impl BuildHasher) -> u64 {
    let (family, bits) = match client {
        IpAddr::V4(v4) => (4, u128::from(v4.to_bits())),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (4, u128::from(v4.to_bits())),
            None => (6, v6.to_bits() & !u128::from(u64::MAX)),
        },
    };
    let mut h = hasher.build_hasher();
    h.write_u8(family);
    h.write_u128(bits);
    h.write_u8(class);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{header_slots, parse_head, Parsed};

    fn client_of(peer: &str, headers: &str, trusted: &[&str]) -> String {
        let raw = format!("GET / HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
        let mut slots = header_slots();
        let Ok(Parsed::Complete(head)) = parse_head(raw.as_bytes(), &mut slots, 8192, 0) else { panic!("{raw}") };
        let trusted: Vec<Cidr> = trusted.iter().map(|c| c.parse().unwrap()).collect();
        client(peer.parse().unwrap(), &head, &trusted).to_string()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let xff = "X-Forwarded-For: 198.51.100.7, 10.0.0.2\r\n";
        assert_eq!(client_of("203.0.113.1", xff, &["10.0.0.0/8"]), "203.0.113.1", "an untrusted peer is the client");
        assert_eq!(client_of("10.0.0.1", xff, &["10.0.0.0/8"]), "198.51.100.7", "trusted hops are skipped");
        assert_eq!(client_of("10.0.0.1", "", &["10.0.0.0/8"]), "10.0.0.1", "no header: the peer");
        // A client that forges the header's start cannot pick its address.
        let forged = "X-Forwarded-For: 1.2.3.4, 198.51.100.7\r\n";
        assert_eq!(client_of("10.0.0.1", forged, &["10.0.0.0/8"]), "198.51.100.7");
        assert_eq!(client_of("10.0.0.1", "X-Forwarded-For: junk\r\n", &["10.0.0.0/8"]), "10.0.0.1");
        let fwd = "Forwarded: for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https\r\n";
        assert_eq!(client_of("10.0.0.1", fwd, &["10.0.0.0/8"]), "2001:db8:cafe::17");
        let both = "Forwarded: for=192.0.2.43\r\nX-Forwarded-For: 198.51.100.7\r\n";
        assert_eq!(client_of("10.0.0.1", both, &["10.0.0.0/8"]), "192.0.2.43", "Forwarded first");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let s = std::hash::RandomState::new();
        let k = |ip: &str, class| key(ip.parse().unwrap(), class, &s);
        assert_eq!(k("2001:db8:1:2::1", 0), k("2001:db8:1:2:ffff::9", 0));
        assert_ne!(k("2001:db8:1:2::1", 0), k("2001:db8:1:3::1", 0));
        assert_eq!(k("::ffff:192.0.2.1", 0), k("192.0.2.1", 0));
        assert_ne!(k("192.0.2.1", 0), k("192.0.2.2", 0));
        assert_ne!(k("192.0.2.1", 0), k("192.0.2.1", 1), "route classes have their own buckets");
    }
}
