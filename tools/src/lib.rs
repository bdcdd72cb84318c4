//! The MCP surface: tools, resources, prompts, intent drafting.

pub mod draft;
