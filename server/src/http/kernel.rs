//! Identities the kernel vouches for: on the local server's Unix socket a caller is the
//! operating-system account the kernel reports for the peer (`SO_PEERCRED`), never anything the
//! caller says about itself (no environment variable, no header). Roles come from the server's
//! own config: `[users.NAME] roles`, else all roles for the account that owns the data
//! directory, else none.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use service::Caller;
use tokio::net::UnixListener;

use super::problem;

/// The roles of the installation's owner when the config names none for them.
pub const OWNER_ROLES: [&str; 2] = ["operator", "approver"];

/// Who is at the other end of a Unix socket connection, as the kernel reports it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Peer {
            uid: stream.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

/// Accounts and their roles, from the server's config.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// The account that owns the data directory.
    pub owner_uid: u32,
    /// `[users.NAME] roles` from the config file.
    pub configured: BTreeMap<String, Vec<String>>,
    /// `[access] default_roles`: the roles of an account the config does not list.
    pub default_roles: Vec<String>,
}

impl Accounts {
    /// The account name of `uid` (through the system's user database), else `uid-N`.
    pub fn name_of(uid: u32) -> String {
        service::model::account_name(uid)
    }

    /// The roles the config gives `name`; the owner gets every role unless the config names
    /// theirs; anyone else gets `[access] default_roles` (none unless the config says).
    pub fn roles(&self, name: &str, uid: u32) -> Vec<String> {
        match self.configured.get(name) {
            Some(roles) => roles.clone(),
            None if uid == self.owner_uid => OWNER_ROLES.iter().map(|r| r.to_string()).collect(),
            None => self.default_roles.clone(),
        }
    }

    /// The caller for a request from `uid` on `path`: an MCP client acts for its person
    /// (`agent:mcp@NAME`, so it never approves), anything else is the person (`user:NAME`).
    pub fn caller(&self, uid: u32, path: &str, cli: bool) -> Caller {
        let name = Self::name_of(uid);
        let roles = self.roles(&name, uid);
        let mcp = path.starts_with("/mcp");
        Caller {
            principal: match mcp {
                true => format!("agent:mcp@{name}"),
                false => format!("user:{name}"),
            },
            channel: match (mcp, cli) {
                (true, _) => "mcp",
                (false, true) => "cli",
                (false, false) => "rest",
            }
            .into(),
            roles,
            authenticated: true,
            mfa: false,
        }
    }
}

/// The channel header the CLI sends over the socket; it labels the door, never the person.
pub const CLI_HEADER: &str = "x-provisioning-client";

/// Puts the kernel-vouched caller on the request; a connection whose peer the kernel did not
/// report gets 401.
pub async fn identify(
    State(accounts): State<Arc<Accounts>>,
    mut request: Request,
    next: Next,
) -> Response {
    let uid = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .and_then(|c| c.0.uid);
    let Some(uid) = uid else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "unknown peer",
            "the kernel did not report who is calling on this socket",
        );
    };
    let cli = request
        .headers()
        .get(CLI_HEADER)
        .is_some_and(|v| v.as_bytes() == b"cli");
    let caller = accounts.caller(uid, request.uri().path(), cli);
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_owner_has_every_role_others_only_what_the_config_gives() {
        let accounts = Accounts {
            owner_uid: 1000,
            configured: [("bob".to_string(), vec!["approver".to_string()])].into(),
            default_roles: Vec::new(),
        };
        assert_eq!(accounts.roles("alice", 1000), OWNER_ROLES);
        assert_eq!(accounts.roles("bob", 1001), ["approver"]);
        assert!(accounts.roles("eve", 1002).is_empty());
        // The config may take roles from the owner, too.
        let limited = Accounts {
            owner_uid: 1000,
            configured: [("alice".to_string(), vec!["viewer".to_string()])].into(),
            default_roles: vec!["viewer".to_string()],
        };
        assert_eq!(limited.roles("alice", 1000), ["viewer"]);
        // ... and give unlisted accounts some.
        assert_eq!(limited.roles("eve", 1002), ["viewer"]);
        let c = accounts.caller(0, "/mcp", false);
        assert!(c.principal.starts_with("agent:mcp@"), "{c:?}");
        assert_eq!(c.channel, "mcp");
        let c = accounts.caller(0, "/api/v1/whoami", true);
        assert!(c.principal.starts_with("user:"), "{c:?}");
        assert_eq!(c.channel, "cli");
        assert_eq!(Accounts::name_of(0), "root");
    }
}
