//! The MCP surface of Provisioning: one rmcp service whose tools (one file each under
//! `tools/`) validate, plan, authorize, apply and inspect, over stdio or streamable HTTP.
//! Every call runs as a [`Caller`]: the agent acting for the person who started it (stdio), or
//! the principal a bearer token maps to (HTTP). Cedar decides every change; `--read-only`
//! exposes only the read tools and refuses the others server-side.

pub mod draft;

mod arguments;
mod completion;
mod logging;
mod portable;
pub use logging::RequestId;
pub mod openai;
mod resources;
mod server;
mod tools;

pub use server::{ProvisioningServer, READ_TOOLS};

pub use service::Caller;
