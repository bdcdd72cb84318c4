//! The command line's composition root (with `serve.rs` for the server and `settings.rs` for
//! what the settings say): the only place outside those that names engine types. It chooses
//! every implementation (the state store, the providers, the authorizer, the sandboxed
//! validator) and builds the `service::App` the commands call; it also reads a config (stopping
//! with its diagnostics when invalid), and holds the progress display and confirmation the
//! commands share.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use engine::authz::CedarAuthorizer;
use engine::exec::{Engine, RunOutcome};
use engine::provider::Providers;
use engine::provider::local::{LocalProvider, Supervisor};
use engine::provider::sim::{SimOptions, SimProvider};
use engine::provider::ssh::SshProvider;
use engine::runtime::KillAt;
use engine::state::{Event, EventKind, StateError, StoreLocation, SurrealStore, WorkflowStatus};
use engine::{Config, Input, Sandbox, Severity, Validator};
use policies::{LivePolicies, PolicySource};

use crate::Settings;

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Where the state lives. For a SurrealDB server, the credentials are those settings chose
/// (`PROVISIONING_STATE_USER`/`_PASS`, else `[state]` in the config file: secret references,
/// resolved now); the password, and any in the URL, join the redactor.
pub fn store_location(settings: &Settings) -> anyhow::Result<StoreLocation> {
    let mut location = match &settings.state {
        Some(text) => StoreLocation::parse(text).map_err(anyhow::Error::msg)?,
        None => StoreLocation::Embedded(settings.data_dir.join("state")),
    };
    if let StoreLocation::Remote { url, user, pass } = &mut location {
        let resolve = |what: &str, r: &engine::secrets::SecretRef| {
            settings
                .secrets
                .resolve(r)
                .map(|s| s.expose().to_string())
                .map_err(|e| anyhow::anyhow!("state.{what}: {e}"))
        };
        if user.is_none()
            && let Some(r) = &settings.state_user
        {
            *user = Some(resolve("user", r)?);
        }
        if pass.is_none()
            && let Some(r) = &settings.state_password
        {
            *pass = Some(resolve("password", r)?);
        }
        let redactor = settings.secrets.redactor();
        if let Some(p) = pass {
            redactor.register(p);
        }
        drafter::openai::display_url(url, Some(&settings.secrets));
    }
    Ok(location)
}

/// The engine with the real state store and providers, as configured.
pub async fn open_engine(settings: &Settings) -> anyhow::Result<Engine> {
    open_engine_with(settings, Arc::new(authorizer(settings)?)).await
}

/// The application for a command run on this machine: the engine over the local state, acting
/// as the person at the terminal. It opens no docs index (a command that searches docs opens
/// its own).
pub async fn open_app(settings: &Settings) -> anyhow::Result<service::App> {
    let authz = Arc::new(authorizer(settings)?);
    Ok(service::App {
        engine: open_engine_with(settings, authz.clone()).await?,
        validator: std::sync::Arc::new(super::validator(settings)?),
        read_only: false,
        default_caller: settings.local_caller(),
        max_config_bytes: settings.limits.max_input_bytes,
        docs: service::Docs::new(Box::new(|| {
            Box::pin(async { Err("this command opens no docs index".to_string()) })
        })),
        authz: Some(authz),
    })
}

/// [`open_engine`] deciding with `authz` (the server shares it with its policy routes).
pub async fn open_engine_with(
    settings: &Settings,
    authz: Arc<CedarAuthorizer>,
) -> anyhow::Result<Engine> {
    let location = store_location(settings)?;
    let store = match SurrealStore::open(location.clone()).await {
        Ok(store) => store,
        Err(err @ (StateError::Busy { .. } | StateError::NotYours { .. })) => bail!("{err}"),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot open state at {}", location.describe()));
        }
    };
    let sim_options = SimOptions::from_vars(crate::settings::var).map_err(anyhow::Error::msg)?;
    let sim = SimProvider::with_ledger(sim_options, settings.data_dir.join("sim/ledger.jsonl"))
        .context("cannot open the sim provider's ledger")?;
    let exe = std::env::current_exe().context("cannot locate the provisioning executable")?;
    let local = LocalProvider::new(settings.data_dir.join("local"), Supervisor::binary(exe));
    let ssh = SshProvider::new(
        settings.ssh_hosts.clone(),
        settings.secrets.clone(),
        settings.data_dir.join("ssh"),
    );
    let upcloud = engine::provider::upcloud::UpCloudProvider::new(
        settings.upcloud.clone(),
        settings.secrets.clone(),
        settings.data_dir.join("upcloud"),
    );
    let hetzner = engine::provider::hetzner::HetznerProvider::new(
        settings.hetzner.clone(),
        settings.secrets.clone(),
        settings.data_dir.join("hetzner"),
    );
    let aws = engine::provider::aws::AwsProvider::new(
        settings.aws.clone(),
        settings.secrets.clone(),
        settings.data_dir.join("aws"),
    );
    let providers = Providers::new()
        .with(Arc::new(sim))
        .with(Arc::new(local))
        .with(Arc::new(ssh))
        .with(Arc::new(upcloud))
        .with(Arc::new(hetzner))
        .with(Arc::new(aws));
    let mut engine = Engine::new(Arc::new(store), providers)
        .with_authorizer(authz)
        .with_redactor(settings.secrets.redactor().clone());
    engine.approval_ttl = settings.approval_ttl();
    // Crash tests: die like `kill -9` at the n-th fault point.
    if let Some(text) = crate::settings::var("PROVISIONING_FAULT_KILL_AT") {
        let at: u64 = text
            .trim()
            .parse()
            .with_context(|| format!("PROVISIONING_FAULT_KILL_AT: `{text}` is not a number"))?;
        engine = engine.with_faults(Arc::new(KillAt::new(at)));
    }
    Ok(engine)
}

/// The Cedar authorizer with the configured policy set (an invalid set stops here, naming the
/// policy and its file) and workspace limits.
pub fn authorizer(settings: &Settings) -> anyhow::Result<CedarAuthorizer> {
    let source = settings.policy_source();
    let policies = LivePolicies::open(source.clone()).map_err(|e| {
        anyhow::anyhow!(
            "the policy set does not load ({}): {e}",
            match &source {
                PolicySource::Defaults => "the defaults".to_string(),
                PolicySource::Replace(d) | PolicySource::Extend(d) => d.display().to_string(),
            }
        )
    })?;
    Ok(CedarAuthorizer::new(Arc::new(policies)).with_limits(settings.file.workspaces.clone()))
}

/// Validates a config file; on errors prints the diagnostics and returns `None` (exit 1). With
/// the typed config comes the exported value (imports resolved, defaults filled): what a server
/// is sent, since it cannot read the files a config imports.
pub fn load_checked(
    settings: &Settings,
    file: &Path,
) -> anyhow::Result<Option<(Config, serde_json::Value)>> {
    let source = Source::read(file)?;
    let v = validator(settings)?.validate(&source.input())?;
    for d in &v.diagnostics {
        eprintln!("{}", d.render(&source.name, Some(&source.text)));
    }
    if !v.is_valid() {
        let errors = v
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        eprintln!(
            "{} is invalid: {errors} error(s); nothing was planned",
            source.name
        );
        return Ok(None);
    }
    Ok(v.config.zip(v.value))
}

/// Asks whether to run `plan`'s changes (`verb`: Apply or Destroy), unless `--yes`; says
/// "Nothing was changed." on a no.
pub fn confirm_plan(plan: &engine::plan::Plan, verb: &str, yes: bool) -> anyhow::Result<bool> {
    let question = format!(
        "{verb} these {} change(s) to workspace `{}`?",
        plan.changes().count(),
        plan.workspace
    );
    let go = confirm(yes, &question)?;
    if !go {
        eprintln!("Nothing was changed.");
    }
    Ok(go)
}

/// Asks before changing anything, unless `--yes`. Refuses when nobody can answer.
pub fn confirm(yes: bool, question: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Refusing without a terminal to ask on; pass --yes to confirm");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// The progress display: one line per step event, `[done/total]` in front.
pub struct Progress {
    total: usize,
    done: usize,
    started: std::collections::HashMap<usize, u64>,
}

impl Progress {
    /// The display of a run that continues with `done` of `total` steps already finished.
    pub fn from(total: usize, done: usize) -> Progress {
        Progress {
            total,
            done,
            started: Default::default(),
        }
    }

    /// The line for `event`; the second value is true when the workflow has finished.
    pub fn line(&mut self, event: &Event) -> (String, bool) {
        let (total, width) = (self.total, self.total.to_string().len());
        let elapsed = |started: &std::collections::HashMap<usize, u64>| {
            event
                .step
                .and_then(|s| started.get(&s))
                .map(|t0| format!(" ({:.1} s)", event.at.saturating_sub(*t0) as f64 / 1000.0))
                .unwrap_or_default()
        };
        let line = match event.kind {
            EventKind::StepStarted => {
                if let Some(s) = event.step {
                    self.started.entry(s).or_insert(event.at);
                }
                format!("[{:>width$}/{total}] ... {}", self.done, event.message)
            }
            EventKind::StepSucceeded | EventKind::StepCompensated => {
                self.done += 1;
                format!(
                    "[{:>width$}/{total}] ok  {}{}",
                    self.done,
                    event.message,
                    elapsed(&self.started)
                )
            }
            EventKind::StepFailed => {
                format!("[{:>width$}/{total}] ERR {}", self.done, event.message)
            }
            EventKind::StepRetrying => {
                format!("[{:>width$}/{total}] ..  {}", self.done, event.message)
            }
            EventKind::WorkflowFinished => return (event.message.clone(), true),
            // A host's output (one printable line each, cleaned by the engine), set off from
            // our own lines.
            EventKind::StepOutput => event
                .message
                .lines()
                .map(|l| format!("{:>w$}| {l}", "", w = width * 2 + 4))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => event.message.clone(),
        };
        (line, false)
    }
}

/// Exit code for a finished run: 0 only when it succeeded.
pub fn outcome_code(outcome: &RunOutcome) -> std::process::ExitCode {
    if outcome.status == WorkflowStatus::Succeeded {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}

pub fn print_outcome(outcome: &RunOutcome, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(outcome)?);
        return Ok(());
    }
    println!(
        "Workflow {} {}: {} succeeded, {} failed, {} skipped, {} rolled back, {} not started.",
        outcome.workflow,
        outcome.status.as_str(),
        outcome.succeeded,
        outcome.failed,
        outcome.skipped,
        outcome.compensated,
        outcome.not_started
    );
    if let Some(error) = &outcome.error {
        println!("Errors: {error}");
    }
    match outcome.status {
        WorkflowStatus::Failed | WorkflowStatus::Cancelled => println!(
            "Resume with `provisioning resume {}`; inspect with `provisioning status {}`.",
            outcome.workflow, outcome.workflow
        ),
        _ => {}
    }
    Ok(())
}

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
