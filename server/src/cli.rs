//! Command-line definition. Every global setting can also come from a `PROVISIONING_*`
//! environment variable; the command line wins.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "provisioning",
    version,
    about = "Provision infrastructure safely: validate, plan, authorize and apply Nickel configs",
    long_about = "Provision infrastructure safely.\n\nA config is a plain Nickel record (see `provisioning schema config` and the files in examples/). \
`validate` checks it against the contracts and catalogs, `export` prints the checked value, \
`catalog` lists providers, plans, zones, taskservs and cluster templates."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Directory for caches (the schema library is unpacked here) [default: $XDG_CACHE_HOME/provisioning or ~/.cache/provisioning]
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_PATHS_CACHE_DIR",
        value_name = "DIR"
    )]
    pub cache_dir: Option<PathBuf>,
    /// Largest config accepted, in bytes
    #[arg(long, global = true, env = "PROVISIONING_LIMITS_MAX_INPUT_BYTES", default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_input_bytes: usize,
    /// Time limit for evaluating one config, in milliseconds
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_LIMITS_EVAL_TIMEOUT_MS",
        default_value_t = 10_000,
        value_name = "MS"
    )]
    pub eval_timeout_ms: u64,
    /// Memory limit for evaluating one config, in MiB
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_LIMITS_EVAL_MEMORY_MB",
        default_value_t = 2048,
        value_name = "MIB"
    )]
    pub eval_memory_mb: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a config against the contracts and catalogs (exit 0 valid, 1 invalid, 2 usage or I/O error)
    Validate(ValidateArgs),
    /// Print a config after validation, with defaults filled in
    Export(ExportArgs),
    /// List providers, plans, zones, taskservs and cluster templates
    Catalog(CatalogArgs),
    /// Print the Nickel contract source (without NAME: list the schema files)
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The Nickel config file (`-` reads standard input)
    pub file: PathBuf,
    /// Print the result as JSON: { valid, file, diagnostics: [{ severity, code, message, path, span, expected, suggestion }] }
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Yaml,
    Toml,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The Nickel config file (`-` reads standard input)
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub what: Option<CatalogWhat>,
    /// Print JSON instead of a table
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CatalogWhat {
    /// Providers with their currency and number of plans and zones (the default)
    Providers,
    /// Plans of a provider: cores, memory, disk, monthly price, zones
    Plans { provider: String },
    /// Zones of a provider
    Zones { provider: String },
    /// Taskservs: category, versions, requirements
    Taskservs,
    /// Cluster templates and their roles
    Templates,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Schema file name, e.g. `server` or `config`
    pub name: Option<String>,
}

pub fn parse() -> Cli {
    Cli::parse()
}
