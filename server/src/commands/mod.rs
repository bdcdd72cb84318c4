//! The CLI commands, one file each: adapters over `service` (`Operations` for what a local
//! server could answer as well). What they share, and everything that names engine types, is
//! the composition root in `engine_setup.rs`.

pub mod apply;
pub mod approvals;
pub mod audit;
pub mod catalog;
pub mod daemon;
pub mod docs;
pub mod doctor;
mod engine_setup;
pub mod export;
pub mod init;
pub mod plan;
pub mod policy;
pub mod schema;
pub mod serve;
pub mod state;
pub mod status;
pub mod token;
pub mod validate;

pub use engine_setup::{Source, server_validator, validator};
