//! The CLI commands, one file each, and what they share: reading a config and building the
//! validator.

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

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use engine::{Input, Sandbox, Validator};

use crate::Settings;

/// A config read from a file or standard input.
pub struct Source {
    pub text: String,
    pub name: String,
    pub dir: PathBuf,
}

impl Source {
    pub fn read(file: &Path) -> anyhow::Result<Source> {
        if file == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the config from standard input")?;
            let dir = std::env::current_dir().context("cannot determine the current directory")?;
            return Ok(Source {
                text,
                name: "<stdin>".to_owned(),
                dir,
            });
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?;
        let abs = std::path::absolute(file)
            .with_context(|| format!("cannot resolve `{}`", file.display()))?;
        let dir = abs
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        Ok(Source {
            text,
            name: file.display().to_string(),
            dir,
        })
    }

    /// The CLI reads the user's own files, so relative imports are allowed.
    pub fn input(&self) -> Input<'_> {
        Input {
            source: &self.text,
            name: &self.name,
            imports_from: Some(&self.dir),
        }
    }
}

pub fn validator(settings: &Settings) -> anyhow::Result<Validator> {
    validator_with(settings, settings.limits)
}

/// How much lower a server's evaluations run than the server itself (`nice -n`): enough that
/// its answers come first, not so much that a config starves on a busy machine.
pub const SERVER_NICENESS: u8 = 10;

/// The validator of a server: evaluations at [`SERVER_NICENESS`].
pub fn server_validator(settings: &Settings) -> anyhow::Result<Validator> {
    validator_with(
        settings,
        engine::sandbox::Limits {
            niceness: SERVER_NICENESS,
            ..settings.limits
        },
    )
}

fn validator_with(
    settings: &Settings,
    limits: engine::sandbox::Limits,
) -> anyhow::Result<Validator> {
    let sandbox = Sandbox::current_exe(&settings.cache_dir)
        .context("cannot locate the provisioning executable for the Nickel sandbox")?;
    Ok(Validator::new(sandbox, limits)?)
}
