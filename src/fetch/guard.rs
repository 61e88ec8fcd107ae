//! The SSRF guard: which URLs and addresses the fetcher may reach.
//!
//! URLs are checked before anything happens (scheme, credentials, port);
//! addresses are checked on the resolved address actually connected to, on
//! every hop, so a DNS name or a redirect cannot lead inside.

use std::net::{IpAddr, Ipv4Addr};

use url::Url;

use super::error::FetchError;
use crate::cidr::Cidr;

/// Ports open by default.
pub const DEFAULT_PORTS: [u16; 4] = [80, 443, 8080, 8443];

/// Special-purpose ranges (IANA IPv4 and IPv6 special-purpose registries)
/// that a public web page never lives in.
const BLOCKED: [Cidr; 24] = [
    Cidr::v4(0, 0, 0, 0, 8),                         // "this network"
    Cidr::v4(10, 0, 0, 0, 8),                        // private
    Cidr::v4(100, 64, 0, 0, 10),                     // CGNAT
    Cidr::v4(127, 0, 0, 0, 8),                       // loopback
    Cidr::v4(169, 254, 0, 0, 16),                    // link-local (cloud metadata lives here)
    Cidr::v4(172, 16, 0, 0, 12),                     // private
    Cidr::v4(192, 0, 0, 0, 24),                      // IETF protocol assignments
    Cidr::v4(192, 0, 2, 0, 24),                      // documentation
    Cidr::v4(192, 88, 99, 0, 24),                    // 6to4 relay anycast
    Cidr::v4(192, 168, 0, 0, 16),                    // private
    Cidr::v4(198, 18, 0, 0, 15),                     // benchmarking
    Cidr::v4(198, 51, 100, 0, 24),                   // documentation
    Cidr::v4(203, 0, 113, 0, 24),                    // documentation
    Cidr::v4(224, 0, 0, 0, 4),                       // multicast
    Cidr::v4(240, 0, 0, 0, 4),                       // reserved, and broadcast
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 127),         // unspecified and loopback
    Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use NAT64
    Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard-only
    Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),     // IETF protocol assignments (Teredo, ORCHID...)
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // unique-local
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
    Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
    Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
];

/// What the fetcher may reach.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Every address allowed (`--allow-private-fetch`).
    pub allow_private: bool,
    /// Ranges opened one by one (`--fetch-allow`).
    pub allow: Vec<Cidr>,
    /// Allowed ports; `None` allows any.
    pub ports: Option<Vec<u16>>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard { allow_private: false, allow: Vec::new(), ports: Some(DEFAULT_PORTS.to_vec()) }
    }
}

impl Guard {
    /// A guard that lets everything through, for tests against loopback origins.
    pub fn open() -> Guard {
        Guard { allow_private: true, allow: Vec::new(), ports: None }
    }

    /// Whether the guard was loosened from its safe default.
    pub fn is_loosened(&self) -> bool {
        self.allow_private || !self.allow.is_empty()
    }

    /// Checks what can be checked before resolving: scheme, credentials, host, port.
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::blocked_scheme(url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::new(
                422,
                "url-has-credentials",
                "URLs with a user name or password are refused",
                false,
            ));
        }
        match url.host() {
            None => return Err(FetchError::new(422, "bad-url", format!("{url} has no host"), false)),
            // An address written in the URL is checked now, not at connect time.
            Some(url::Host::Ipv4(ip)) => self.check_addr(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_addr(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {}
        }
        let port = url.port_or_known_default().unwrap_or(0);
        if let Some(ports) = &self.ports {
            if !ports.contains(&port) {
                return Err(FetchError::new(
                    403,
                    "blocked-port",
                    format!("port {port} is not in the allowed list {ports:?}"),
                    false,
                ));
            }
        }
        Ok(())
    }

    /// Whether `ip` is an address this guard was opened to (`--fetch-allow`,
    /// `--allow-private-fetch`): a site of one's own, which may be crawled
    /// without a rate limit.
    pub fn opened_to(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow.iter().any(|c| c.contains(ip)) || (self.allow_private && BLOCKED.iter().any(|c| c.contains(ip)))
    }

    /// Checks an address about to be connected to.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), FetchError> {
        let ip = canonical(ip);
        if self.allow_private || self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        if BLOCKED.iter().any(|c| c.contains(ip)) {
            return Err(FetchError::new(
                403,
                "blocked-address",
                format!("{ip} is a private or special-purpose address; fetching it is refused"),
                false,
            ));
        }
        Ok(())
    }
}

/// IPv4 addresses written as IPv6 (`::ffff:127.0.0.1`, `::127.0.0.1`) are
/// judged as the IPv4 address they reach.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = v6.to_bits();
                // IPv4-compatible (deprecated) ::a.b.c.d, but not :: and ::1.
                if bits >> 32 == 0 && bits > 1 {
                    IpAddr::V4(Ipv4Addr::from_bits(bits as u32))
                } else {
                    ip
                }
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(ip: &str) -> bool {
        Guard::default().check_addr(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn special_purpose_ranges_are_blocked() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "2001:db8::1",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
        for ip in ["93.184.216.34", "172.32.0.1", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!blocked(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn allow_opens_exactly_its_range() {
        let guard = Guard { allow: vec!["127.0.0.0/30".parse().unwrap()], ..Guard::default() };
        assert!(guard.check_addr("127.0.0.3".parse().unwrap()).is_ok());
        assert!(guard.check_addr("127.0.0.4".parse().unwrap()).is_err());
        assert!(guard.check_addr("10.0.0.1".parse().unwrap()).is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
    }

    #[test]
    fn urls_are_checked_before_resolving() {
        let check = |u: &str| Guard::default().check_url(&Url::parse(u).unwrap()).map_err(|e| e.code);
        assert_eq!(check("https://example.com/"), Ok(()));
        assert_eq!(check("http://example.com:8080/"), Ok(()));
        assert_eq!(check("file:///etc/passwd"), Err("blocked-scheme"));
        assert_eq!(check("gopher://example.com/"), Err("blocked-scheme"));
        assert_eq!(check("http://user:pw@example.com/"), Err("url-has-credentials"));
        assert_eq!(check("http://example.com:6379/"), Err("blocked-port"));
    }
}
