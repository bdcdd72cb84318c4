//! Who is at the other end of a loopback TCP connection, as the kernel reports it: the owner
//! of the peer's socket in `/proc/net/tcp` (or `tcp6`), the table `ss -e` and identd read. The
//! local server's Control Center listens on loopback so a browser can reach it; a browser
//! cannot send peer credentials the way a Unix socket client does, but the kernel still knows
//! which account opened the connection. Only loopback peers are looked up.
//!
//! Parsed by hand rather than with the `procfs` crate: the table is a fixed, documented text
//! format (Documentation/networking/proc_net_tcp.rst), and `procfs` would switch on `rustix`
//! features that the state store's dependencies share, rebuilding them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::kernel::Accounts;
use super::problem;

/// The uid owning the socket whose local end is `peer` and whose remote end is `server`, from
/// the text of `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn owner_in(table: &str, peer: SocketAddr, server: SocketAddr) -> Option<u32> {
    // Only a loopback peer is looked up: another machine's connection has no owner here.
    if !is_loopback(peer.ip()) {
        return None;
    }
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
        let local = parse_endpoint(fields.get(1)?)?;
        let remote = parse_endpoint(fields.get(2)?)?;
        (same(local, peer) && same(remote, server))
            .then(|| fields.get(7)?.parse().ok())
            .flatten()
    })
}

/// `peer` and `server` as the kernel records them; an IPv4 peer of an IPv6 socket appears
/// mapped (`::ffff:127.0.0.1`).
fn same(recorded: SocketAddr, wanted: SocketAddr) -> bool {
    let canon = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(|v4| SocketAddr::new(IpAddr::V4(v4), a.port()))
            .unwrap_or(a),
        IpAddr::V4(_) => a,
    };
    canon(recorded) == canon(wanted)
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word is printed as
/// the kernel holds it in memory, so its bytes come back in native order.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// 127.0.0.0/8, ::1, or an IPv4 loopback address mapped into IPv6.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The account that opened the loopback connection from `peer` to `server`.
pub fn owner_of(peer: SocketAddr, server: SocketAddr) -> Option<u32> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|path| {
        let table = std::fs::read_to_string(path).ok()?;
        owner_in(&table, peer, server)
    })
}

/// What the loopback middleware needs: the accounts and the address the server listens on.
#[derive(Debug, Clone)]
pub struct Loopback {
    pub accounts: Accounts,
    pub server: SocketAddr,
}

/// Puts the kernel-vouched caller on the request (the channel is `rest`: a browser or another
/// HTTP client on this machine); a connection the kernel names no owner for gets 401.
pub async fn identify(
    State(loopback): State<Arc<Loopback>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(uid) = owner_of(peer, loopback.server) else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "unknown caller",
            "the kernel reports no account for this connection; the local server's Control Center answers loopback connections from this machine only",
        );
    };
    let caller = loopback.accounts.caller(uid, request.uri().path(), false);
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_peer_sockets_owner_is_found_and_nothing_else() {
        // Two ends of one loopback connection (server 127.0.0.1:8080, client port 40000) and a
        // listener, as /proc/net/tcp prints them on a little-endian machine.
        let v4 = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        let lo = v4([127, 0, 0, 1]);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {lo}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
             1: {lo}:1F90 {lo}:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
             2: {lo}:9C40 {lo}:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 3 1\n"
        );
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(owner_in(&table, peer, server), Some(1001));
        // Not the server's own end, and not another connection.
        assert_eq!(owner_in(&table, server, peer), Some(0));
        let other: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(owner_in(&table, other, server), None);
        assert_eq!(owner_in("garbage\n1: zz", peer, server), None);
        // A connection from another machine has no owner here, whatever the table says.
        let far = v4([10, 0, 0, 5]);
        let header = table.lines().next().unwrap_or_default();
        let remote = format!(
            "{header}\n 3: {far}:9C40 {lo}:1F90 01 00000000:00000000 00:00000000 00000000  1001 0 5 1\n"
        );
        let outsider: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        assert_eq!(owner_in(&remote, outsider, server), None);
    }

    #[test]
    fn loopback_is_127_8_and_1_and_their_mapped_forms() {
        for yes in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(yes.parse().unwrap()), "{yes}");
        }
        for no in ["10.0.0.5", "::ffff:10.0.0.5", "2001:db8::1", "0.0.0.0"] {
            assert!(!is_loopback(no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn ipv6_and_mapped_addresses_parse() {
        let words = |b: [u8; 16]| {
            b.chunks(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<String>()
        };
        let mapped = words(Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets());
        let parsed = parse_endpoint(&format!("{mapped}:9C40")).unwrap();
        assert!(same(parsed, "127.0.0.1:40000".parse().unwrap()));
        let one = words(Ipv6Addr::LOCALHOST.octets());
        assert_eq!(
            parse_endpoint(&format!("{one}:0050")).unwrap(),
            "[::1]:80".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn a_real_loopback_connection_is_this_account() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(owner_of(peer, server), Some(nix::unistd::getuid().as_raw()));
        // No such connection: nobody, not root.
        let gone: SocketAddr = format!("127.0.0.1:{}", peer.port() ^ 1).parse().unwrap();
        assert_eq!(owner_of(gone, server), None);
    }
}
