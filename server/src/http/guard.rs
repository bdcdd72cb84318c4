//! The first check on every HTTP request: `Host` must name this server (against DNS
//! rebinding) and `Origin`, when a browser sends one, must be a page this server trusts
//! (against cross-site requests). It runs before authentication, so a foreign page learns
//! nothing, not even whether a token is valid. Requests without `Origin` (curl, SDKs, the CLI)
//! are allowed; a missing `Host` is refused.

use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri, header};

/// `Host` values and `Origin`s this server answers.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// The loopback names, answered on the bound port only.
    port: u16,
    /// `--allow-host` entries: with a port, that port only; without one, any port (a reverse
    /// proxy in front may listen elsewhere).
    hosts: Vec<Name>,
    origins: Vec<Origin>,
}

/// A host name, lowercased, without IPv6 brackets or a trailing dot, and its port if given.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    host: String,
    port: Option<u16>,
}

/// A web origin: scheme, host and port (the scheme's default when the origin omits it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, malformed or missing `Host`: 421 Misdirected Request.
    Host(String),
    /// A foreign or malformed `Origin`: 403 Forbidden.
    Origin(String),
}

impl Allowed {
    /// The loopback names on `port` and their `http://` origins, plus the operator's
    /// `--allow-host` and `--allow-origin` entries (an entry that does not parse is an error
    /// naming it).
    pub fn new(port: u16, hosts: &[String], origins: &[String]) -> Result<Allowed, String> {
        let hosts = hosts
            .iter()
            .map(|h| {
                parse_name(h).ok_or_else(|| {
                    format!(
                        "--allow-host `{h}`: expected HOST or HOST:PORT, e.g. console.example.com"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut allowed: Vec<Origin> = LOOPBACK
            .iter()
            .map(|h| Origin {
                scheme: "http".into(),
                host: (*h).into(),
                port,
            })
            .collect();
        for o in origins {
            allowed.push(parse_origin(o).ok_or_else(|| {
                format!(
                    "--allow-origin `{o}`: expected SCHEME://HOST[:PORT] with scheme http or https, e.g. https://console.example.com"
                )
            })?);
        }
        Ok(Allowed {
            port,
            hosts,
            origins: allowed,
        })
    }

    /// Checks `Host` (or the HTTP/2 `:authority` in `uri`) and then `Origin`.
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
        let host = match headers.get(header::HOST) {
            Some(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            None => uri.authority().map(|a| a.as_str().to_string()),
        };
        let Some(host) = host else {
            return Err(Refusal::Host(
                "the request has no Host header; send the host and port you connected to, e.g. `Host: 127.0.0.1:7070`".into(),
            ));
        };
        let known = parse_name(&host).is_some_and(|n| self.host_is_known(&n));
        if !known {
            return Err(Refusal::Host(format!(
                "the Host header `{}` names no host this server answers for; it answers for localhost, 127.0.0.1 and [::1] on port {} and for the hosts given with --allow-host",
                shown(&host),
                self.port
            )));
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(origin.as_bytes());
        match parse_origin(&text) {
            Some(o) if self.origins.contains(&o) => Ok(()),
            _ => Err(Refusal::Origin(format!(
                "requests from the web origin `{}` are refused; this server accepts pages from http://127.0.0.1:{port}, http://localhost:{port} and the origins given with --allow-origin (requests without an Origin header, e.g. from curl or an SDK, are accepted)",
                shown(&text),
                port = self.port
            ))),
        }
    }

    fn host_is_known(&self, name: &Name) -> bool {
        let loopback =
            LOOPBACK.contains(&name.host.as_str()) && name.port.unwrap_or(80) == self.port;
        loopback
            || self.hosts.iter().any(|allowed| {
                allowed.host == name.host
                    && allowed.port.is_none_or(|p| p == name.port.unwrap_or(80))
            })
    }
}

/// `host[:port]` as a [`Name`]; `None` for anything else (userinfo, paths, bad ports).
fn parse_name(text: &str) -> Option<Name> {
    let text = text.trim();
    if text.is_empty() || text.contains(['@', '/', '?', '#']) {
        return None;
    }
    let authority = Authority::try_from(text).ok()?;
    Some(Name {
        host: normalize(authority.host()),
        port: authority.port_u16(),
    })
}

/// An `Origin` header value (`scheme://host[:port]`, no path) as an [`Origin`]; `None` for
/// `null`, other schemes and anything malformed.
fn parse_origin(text: &str) -> Option<Origin> {
    let text = text.trim();
    let uri = Uri::try_from(text).ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = uri.authority()?;
    let path_is_empty = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if !path_is_empty || authority.as_str().contains('@') {
        return None;
    }
    Some(Origin {
        scheme,
        host: normalize(authority.host()),
        port: authority.port_u16().unwrap_or(default),
    })
}

fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// A header value as it may appear in an error: at most 100 characters, control characters
/// escaped.
fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(100)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 100 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_shown_value_is_cut_after_100_characters_only() {
        let exactly = "h".repeat(100);
        assert_eq!(shown(&exactly), exactly);
        let longer = "h".repeat(101);
        assert_eq!(shown(&longer), format!("{}…", "h".repeat(100)));
        assert_eq!(shown("a\u{7}b"), "a\\u{7}b");
    }

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn allowed() -> Allowed {
        Allowed::new(
            7070,
            &["console.example.com".into(), "api.example.com:8443".into()],
            &["https://console.example.com".into()],
        )
        .unwrap()
    }

    fn check(host: Option<&str>, origin: Option<&str>) -> Result<(), Refusal> {
        allowed().check(&headers(host, origin), &Uri::from_static("/"))
    }

    #[test]
    fn loopback_names_on_the_bound_port_are_accepted() {
        for host in [
            "127.0.0.1:7070",
            "localhost:7070",
            "LOCALHOST:7070",
            "[::1]:7070",
        ] {
            assert_eq!(check(Some(host), None), Ok(()), "{host}");
        }
    }

    #[test]
    fn other_hosts_and_ports_are_refused() {
        for host in [
            "evil.example:7070",
            "127.0.0.1:7071",
            "localhost",
            "127.0.0.1.evil.example:7070",
            "api.example.com:443",
            "user@127.0.0.1:7070",
            "",
        ] {
            assert!(
                matches!(check(Some(host), None), Err(Refusal::Host(_))),
                "{host}"
            );
        }
        assert!(matches!(check(None, None), Err(Refusal::Host(_))));
    }

    #[test]
    fn operator_hosts_are_accepted() {
        assert_eq!(check(Some("console.example.com"), None), Ok(()));
        assert_eq!(check(Some("console.example.com:443"), None), Ok(()));
        assert_eq!(check(Some("api.example.com:8443"), None), Ok(()));
    }

    #[test]
    fn the_http2_authority_stands_in_for_a_missing_host() {
        let uri = Uri::from_static("http://127.0.0.1:7070/mcp");
        assert_eq!(allowed().check(&headers(None, None), &uri), Ok(()));
        let uri = Uri::from_static("http://evil.example:7070/mcp");
        assert!(allowed().check(&headers(None, None), &uri).is_err());
    }

    #[test]
    fn own_origins_are_accepted_and_others_refused() {
        let host = Some("127.0.0.1:7070");
        for origin in [
            "http://127.0.0.1:7070",
            "http://localhost:7070",
            "http://[::1]:7070",
            "https://console.example.com",
            "https://console.example.com:443",
        ] {
            assert_eq!(check(host, Some(origin)), Ok(()), "{origin}");
        }
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:7071",
            "https://127.0.0.1:7070",
            "http://console.example.com",
            "https://console.example.com:8443",
            "file://",
            "http://127.0.0.1:7070/path",
            "",
        ] {
            assert!(
                matches!(check(host, Some(origin)), Err(Refusal::Origin(_))),
                "{origin}"
            );
        }
    }

    #[test]
    fn bad_operator_entries_are_named() {
        let e = Allowed::new(1, &[], &["console.example.com".into()]).unwrap_err();
        assert!(e.contains("--allow-origin `console.example.com`"), "{e}");
        let e = Allowed::new(1, &["a/b".into()], &[]).unwrap_err();
        assert!(e.contains("--allow-host `a/b`"), "{e}");
    }

    #[test]
    fn refusals_quote_at_most_100_characters_escaped() {
        let long = format!("{}.example:7070", "a".repeat(300));
        let Err(Refusal::Host(detail)) = check(Some(&long), None) else {
            panic!("accepted");
        };
        assert!(detail.len() < 400, "{detail}");
        assert_eq!(shown("a\u{7}b"), "a\\u{7}b");
    }
}
