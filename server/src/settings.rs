//! Effective settings: command line, then `PROVISIONING_*` environment variables (both through
//! clap), then built-in defaults.

use std::path::PathBuf;
use std::time::Duration;

use engine::Limits;

use crate::cli::Global;

#[derive(Debug, Clone)]
pub struct Settings {
    pub cache_dir: PathBuf,
    pub data_dir: PathBuf,
    /// `surrealkv://PATH`, `mem://` or `ws://HOST:PORT`; `None` means `<data_dir>/state`.
    pub state: Option<String>,
    pub limits: Limits,
}

impl Settings {
    pub fn from_cli(g: &Global) -> Settings {
        Settings {
            cache_dir: g.cache_dir.clone().unwrap_or_else(default_cache_dir),
            data_dir: g.data_dir.clone().unwrap_or_else(default_data_dir),
            state: g.state.clone(),
            limits: Limits {
                max_input_bytes: g.max_input_bytes,
                timeout: Duration::from_millis(g.eval_timeout_ms),
                memory_bytes: g.eval_memory_mb.saturating_mul(1024 * 1024),
            },
        }
    }
}

/// `$VAR/provisioning`, else `$HOME/HOME_SUBDIR/provisioning`, else the temp dir's.
fn xdg_dir(var: &str, home_subdir: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(home_subdir)))
        .unwrap_or_else(std::env::temp_dir)
        .join("provisioning")
}

fn default_cache_dir() -> PathBuf {
    xdg_dir("XDG_CACHE_HOME", ".cache")
}

fn default_data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share")
}
