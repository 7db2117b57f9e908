//! Who may talk to the server: the Host header a request names (so that a web page cannot reach
//! a loopback server through DNS rebinding) and, when one is set, the API key.

use crate::fsutil;
use anyhow::{ensure, Context, Result};
use axum::http::HeaderValue;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The environment variable that may hold the API key (instead of `--api-key-file`).
pub const API_KEY_VARIABLE: &str = "MNIST_CNN_API_KEY";
/// The shortest key accepted: a guessable key is no key.
const MIN_KEY_LENGTH: usize = 16;
/// A key file is a line, not a document.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The Host header names a request may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Names allowed beside `localhost` and loopback addresses, lower case.
    names: Vec<String>,
    bound: IpAddr,
}

impl HostRule {
    /// Which hosts a server bound to `bound` answers for: on a loopback address, `localhost`,
    /// loopback addresses, the bound address and `extra`; elsewhere only when `extra` names
    /// some (None: any Host).
    pub fn new(bound: SocketAddr, extra: &[String]) -> Option<Self> {
        if !bound.ip().is_loopback() && extra.is_empty() {
            return None;
        }
        Some(Self {
            names: extra.iter().map(|n| n.to_ascii_lowercase()).collect(),
            bound: bound.ip(),
        })
    }

    /// Whether a request whose Host header is `host` (a name or address, with or without a
    /// port) is for this server.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        if name == "localhost" || self.names.iter().any(|n| n == name) {
            return true;
        }
        let address = name.trim_start_matches('[').trim_end_matches(']');
        address
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip == self.bound)
    }
}

/// The host part of a Host header: `[::1]:8080` → `[::1]`, `example.org:80` → `example.org`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Checks a name given to `--allow-host`: a DNS name or an IP address, no port.
pub fn check_host_name(name: &str) -> Result<String, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if !name.is_empty() && name.len() <= 253 && name.chars().all(plain) {
        return Ok(name.to_ascii_lowercase());
    }
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) => Ok(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        }),
        Err(_) => Err(format!(
            "{name:?} is not a host name (letters, digits, '-' and '.') or an IP address"
        )),
    }
}

/// The key every route but `/` and `/healthz` asks for, as `Authorization: Bearer KEY`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Vec<u8>);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

impl ApiKey {
    /// A key as given (a file's first line, or the environment variable): printable ASCII
    /// without spaces, at least 16 characters.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let key = text.trim_end_matches(['\n', '\r']);
        ensure!(
            !key.contains(['\n', '\r']),
            "{origin}: the key must be one line"
        );
        ensure!(
            key.bytes().all(|b| b.is_ascii_graphic()),
            "{origin}: the key must be printable ASCII without spaces"
        );
        ensure!(
            key.len() >= MIN_KEY_LENGTH,
            "{origin}: the key has {} characters; at least {MIN_KEY_LENGTH} are needed",
            key.len()
        );
        Ok(Self(key.as_bytes().to_vec()))
    }

    /// Reads the key from a file (a regular file of one line).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = fsutil::read_text_limited(path, MAX_KEY_FILE_BYTES, "key file")
            .context("--api-key-file")?;
        Self::parse(&text, &format!("--api-key-file {}", path.display()))
    }

    /// Whether an Authorization header carries this key. Compares every byte whatever the
    /// first difference, so the time taken does not tell how much of a guess was right.
    pub fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(given) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials)
        else {
            return false;
        };
        let given = given.trim().as_bytes();
        let mut difference = u8::from(given.len() != self.0.len());
        for (i, expected) in self.0.iter().enumerate() {
            difference |= expected ^ given.get(i).copied().unwrap_or(!expected);
        }
        difference == 0
    }
}

/// The access rules of a running server.
#[derive(Debug, Clone)]
pub struct Access {
    pub hosts: Option<HostRule>,
    pub api_key: Option<ApiKey>,
}

/// The credentials of a `Bearer` Authorization value; the scheme's name is case-insensitive
/// (RFC 9110, section 11.1), so `bearer KEY` and `BEARER KEY` are the same.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("Bearer").then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_rule(extra: &[&str]) -> HostRule {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        HostRule::new("127.0.0.1:8080".parse().unwrap(), &extra).unwrap()
    }

    #[test]
    fn a_loopback_server_answers_for_loopback_names_only() {
        let rule = loopback_rule(&[]);
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:9",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(rule.allows(host), "{host} refused");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]:8080",
            "",
            "127.0.0.1.evil.example",
        ] {
            assert!(!rule.allows(host), "{host} allowed");
        }
        assert!(loopback_rule(&["my-box.lan"]).allows("My-Box.lan:8080"));
    }

    #[test]
    fn a_public_server_checks_hosts_only_when_told_names() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(HostRule::new(any, &[]), None);
        let rule = HostRule::new(any, &["digits.example".to_owned()]).unwrap();
        assert!(rule.allows("digits.example"));
        assert!(!rule.allows("other.example"));
    }

    #[test]
    fn allowed_names_are_checked() {
        assert_eq!(check_host_name("Box.LAN").unwrap(), "box.lan");
        assert_eq!(check_host_name("::1").unwrap(), "[::1]");
        assert_eq!(check_host_name("[::1]").unwrap(), "[::1]");
        assert!(check_host_name("evil.example:80").is_err());
        assert!(check_host_name("a b").is_err());
        assert!(check_host_name("").is_err());
    }

    #[test]
    fn the_key_is_checked_when_read_and_matched_exactly() {
        assert!(ApiKey::parse("short", "test").is_err());
        assert!(ApiKey::parse("with a space in the key", "test").is_err());
        assert!(ApiKey::parse("line-one-is-long\nline-two", "test").is_err());
        let key = ApiKey::parse("0123456789abcdef-key\n", "test").unwrap();
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(key.admits(Some(&header("Bearer 0123456789abcdef-key"))));
        assert!(key.admits(Some(&header("bearer 0123456789abcdef-key"))));
        assert!(key.admits(Some(&header("BEARER 0123456789abcdef-key"))));
        assert!(!key.admits(Some(&header("Basic 0123456789abcdef-key"))));
        assert!(!key.admits(Some(&header("Bearer 0123456789abcdef-kez"))));
        assert!(!key.admits(Some(&header("Bearer 0123456789abcdef-key2"))));
        assert!(!key.admits(Some(&header("Bearer 0123456789abcdef-ke"))));
        assert!(!key.admits(Some(&header("Basic 0123456789abcdef-key"))));
        assert!(!key.admits(None));
        assert_eq!(
            format!("{key:?}"),
            "ApiKey(…)",
            "the key never reaches a log"
        );
    }
}
