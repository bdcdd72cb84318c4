//! Typed access to the knowledge Provisioning ships: the Nickel schema library, the provider,
//! taskserv and cluster-template catalogs. Everything is embedded in the binary, so the product
//! runs from any directory; [`materialize`] writes the files out for the Nickel evaluator, which
//! resolves imports from disk.

mod bundle;
mod catalog;
mod files;
#[cfg(test)]
mod reference_check;
mod taskservs;

pub use bundle::{contract_bundle, to_nickel};
pub use catalog::{Catalog, Image, Plan, Provider, Role, Taskserv, Template, Zone};
pub use files::{Schema, materialize, schema, schema_names};
pub use taskservs::{
    Fit, TaskservMeta, TaskservScripts, script_taskservs, taskserv_lib, taskserv_scripts,
};

/// Errors reading the embedded knowledge.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("embedded catalog file `{path}` is invalid: {message}")]
    Catalog { path: String, message: String },
    #[error("cannot write the schema library to `{path}`: {source}")]
    Materialize {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
