//! The MCP surface of Provisioning: one rmcp service whose tools (one file each under
//! `tools/`) validate, plan, authorize, apply and inspect, over stdio or streamable HTTP.
//! Every call runs as a [`Caller`]: the agent acting for the person who started it (stdio), or
//! the principal a bearer token maps to (HTTP). Cedar decides every change; `--read-only`
//! exposes only the read tools and refuses the others server-side. Drafting itself (the
//! built-in drafter, the model repair loop) is the `drafter` crate; this one asks the client's
//! model through sampling and elicits answers.

mod approval_link;
mod arguments;
mod completion;
mod logging;
mod portable;
pub use logging::RequestId;
mod resources;
mod server;
mod tasks;
mod tools;

pub use server::{ProvisioningServer, READ_TOOLS};

pub use service::Caller;
