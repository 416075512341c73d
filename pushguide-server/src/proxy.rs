//! Trusted reverse proxies: the client's address behind them, and (in [`AuthMode::Proxy`]) the
//! user and groups they name in headers — the oauth2-proxy / Grafana auth-proxy model.
//!
//! A request counts as coming from a proxy only when the TCP peer's address is in
//! [`AuthConfig::trusted_proxies`]; from any other address the identity headers are ignored (and
//! logged as forged) and the request is refused with `401`. The same list decides which
//! `X-Forwarded-For` entries are believed: the client is the right-most address in it that is not a
//! trusted proxy.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use axum::http::header::{HeaderMap, HeaderName};

/// A setting of [`AuthConfig`] that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}`: {reason}")]
#[non_exhaustive]
pub struct InvalidSetting {
    /// The value given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(input: &str, reason: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// An address or a network: `10.0.0.0/8`, `127.0.0.1` (a `/32`), `fd00::/8`, `::1`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> u32 {
    let bits = u32::from(ip);
    match prefix {
        0 => 0,
        p => bits & (u32::MAX << (32 - u32::from(p))),
    }
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> u128 {
    let bits = u128::from(ip);
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p))),
    }
}

impl FromStr for Cidr {
    type Err = InvalidSetting;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            invalid(
                s,
                "must be an IP address or a network such as \"10.0.0.0/8\"",
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(invalid(s, format!("the prefix length must be 0 to {max}"))),
            },
        };
        let masked = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(mask_v4(a, prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask_v6(a, prefix))),
        };
        if masked != addr {
            return Err(invalid(
                s,
                format!("has bits set beyond the prefix (the network is {masked}/{prefix})"),
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A header name for [`AuthConfig`] (`X-Forwarded-User`; matched without regard to case).
pub fn header_name(s: &str) -> Result<HeaderName, InvalidSetting> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| {
        invalid(
            s,
            "must be an HTTP header name such as \"X-Forwarded-User\"",
        )
    })
}

/// How users are authenticated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMode {
    /// Local accounts (`pushguide user add`) and the login form.
    #[default]
    Local,
    /// A trusted reverse proxy names the user and groups in headers; the login form is off.
    Proxy,
}

/// Who authenticates users, and which reverse proxies are believed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Local accounts or a reverse proxy's headers.
    pub mode: AuthMode,
    /// The reverse proxies: their `X-Forwarded-For` gives the client's address (in both modes),
    /// and in [`AuthMode::Proxy`] only requests from them are authenticated.
    pub trusted_proxies: Vec<Cidr>,
    /// [`AuthMode::Proxy`]: the header naming the user.
    pub user_header: HeaderName,
    /// [`AuthMode::Proxy`]: the header listing the user's groups, comma separated (it may be
    /// absent: no groups).
    pub groups_header: HeaderName,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Local,
            trusted_proxies: Vec::new(),
            user_header: HeaderName::from_static("x-forwarded-user"),
            groups_header: HeaderName::from_static("x-forwarded-groups"),
        }
    }
}

impl AuthConfig {
    /// Whether `peer` is a trusted proxy.
    pub fn trusted(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }
}

/// The longest user name or groups list a proxy may send.
const HEADER_LIMIT: usize = 4096;

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` address that is not a trusted proxy (all of them trusted: the left-most; an
/// entry that does not parse ends the walk at the proxy before it).
pub(crate) fn client_address(
    config: &AuthConfig,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !config.trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return Some(client);
        };
        client = ip;
        if !config.trusted(ip) {
            break;
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: an address, `a.b.c.d:port` or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// A user a trusted proxy named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProxyUser {
    pub(crate) user: String,
    pub(crate) groups: Vec<String>,
}

/// The user and groups of a request in [`AuthMode::Proxy`], or why it is refused.
pub(crate) fn proxy_user(
    config: &AuthConfig,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<ProxyUser, &'static str> {
    let named = headers.contains_key(&config.user_header);
    let trusted = peer.is_some_and(|p| config.trusted(p));
    if !trusted {
        if named {
            tracing::warn!(peer = ?peer, header = %config.user_header,
                "refused: a user header from an address that is not a trusted proxy");
        }
        return Err("requests must come through the authenticating proxy");
    }
    let mut values = headers.get_all(&config.user_header).iter();
    let user = match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().map(str::trim).unwrap_or_default(),
        _ => "",
    };
    let ok = !user.is_empty()
        && user.len() <= HEADER_LIMIT
        && !user.chars().any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        if named {
            tracing::warn!(header = %config.user_header, "refused: the proxy's user header is not one user name");
        }
        return Err("the proxy did not name a user");
    }
    let mut groups: Vec<String> = Vec::new();
    for v in headers.get_all(&config.groups_header) {
        let Ok(v) = v.to_str() else {
            return Err("the proxy's groups header is not text");
        };
        if v.len() > HEADER_LIMIT {
            return Err("the proxy's groups header is too long");
        }
        for g in v.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !groups.iter().any(|have| have == g) {
                groups.push(g.to_owned());
            }
        }
    }
    Ok(ProxyUser {
        user: user.to_owned(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_contain() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for (bad, why) in [
            ("10.0.0.1/8", "the network is 10.0.0.0/8"),
            ("10.0.0.0/33", "0 to 32"),
            ("::/129", "0 to 128"),
            ("10.0.0.0/+8", "0 to 32"),
            ("localhost", "IP address"),
            ("", "IP address"),
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert_eq!(e.input, bad);
        }
        assert!(header_name("X-Forwarded-User").is_ok());
        assert!(header_name("bad header").is_err());
    }

    fn config() -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Proxy,
            trusted_proxies: vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
            ..AuthConfig::default()
        }
    }

    fn xff(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in v {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_forwarded_address() {
        let c = config();
        let at = |peer: &str, h: &[&str]| client_address(&c, Some(ip(peer)), &xff(h));
        // an untrusted peer's header is ignored
        assert_eq!(at("192.0.2.9", &["203.0.113.5"]), Some(ip("192.0.2.9")));
        assert_eq!(at("127.0.0.1", &[]), Some(ip("127.0.0.1")));
        assert_eq!(at("127.0.0.1", &["203.0.113.5"]), Some(ip("203.0.113.5")));
        // a client cannot forge its way past: the left-most entries are its own words
        assert_eq!(
            at("127.0.0.1", &["1.2.3.4, 203.0.113.5, 10.0.0.7"]),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(
            at("10.1.1.1", &["1.2.3.4", "203.0.113.5:4711, 10.0.0.7"]),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(
            at("127.0.0.1", &["10.0.0.8, 10.0.0.7"]),
            Some(ip("10.0.0.8"))
        );
        assert_eq!(
            at("127.0.0.1", &["1.2.3.4, junk, 10.0.0.7"]),
            Some(ip("10.0.0.7"))
        );
        assert_eq!(client_address(&c, None, &xff(&["1.2.3.4"])), None);
    }

    #[test]
    fn only_a_trusted_peer_names_the_user() {
        let c = config();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", HeaderValue::from_static("carol"));
        h.insert(
            "x-forwarded-groups",
            HeaderValue::from_static("ops, devs,,ops"),
        );
        let got = proxy_user(&c, Some(ip("10.2.3.4")), &h).unwrap();
        assert_eq!(got.user, "carol");
        assert_eq!(got.groups, ["ops", "devs"]);
        assert!(proxy_user(&c, Some(ip("192.0.2.1")), &h).is_err());
        assert!(proxy_user(&c, None, &h).is_err());
        h.insert("x-forwarded-user", HeaderValue::from_static(" "));
        assert!(proxy_user(&c, Some(ip("127.0.0.1")), &h).is_err());
        h.remove("x-forwarded-user");
        assert!(proxy_user(&c, Some(ip("127.0.0.1")), &h).is_err());
        h.insert("x-forwarded-user", HeaderValue::from_static("a"));
        h.append("x-forwarded-user", HeaderValue::from_static("b"));
        assert!(
            proxy_user(&c, Some(ip("127.0.0.1")), &h).is_err(),
            "two users"
        );
    }
}
