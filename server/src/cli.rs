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
`catalog` lists providers, plans, zones, taskservs and cluster templates. \
`plan` compares a config with recorded state; `apply` runs the plan as a durable workflow; \
`status`, `resume`, `cancel`, `destroy`, `drift` and `state` follow up."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Config file: policy directory, approvals, users and roles, workspace budgets [default: $XDG_CONFIG_HOME/provisioning/config.toml or ~/.config/provisioning/config.toml, when it exists]
    #[arg(long, global = true, env = "PROVISIONING_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for caches (the schema library is unpacked here) [default: $XDG_CACHE_HOME/provisioning or ~/.cache/provisioning]
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_PATHS_CACHE_DIR",
        value_name = "DIR"
    )]
    pub cache_dir: Option<PathBuf>,
    /// Directory for state, the local provider's hosts and the sim ledger [default: $XDG_DATA_HOME/provisioning or ~/.local/share/provisioning]
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_PATHS_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Where state lives: surrealkv://PATH, mem://, or ws://HOST:PORT for a SurrealDB server (user and password from PROVISIONING_STATE_USER/PASS) [default: surrealkv://DATA_DIR/state]
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_STATE_URL",
        value_name = "URL"
    )]
    pub state: Option<String>,
    /// Talk to a running `provisioning serve --http` at this URL (e.g. http://127.0.0.1:7070, with a
    /// token), or to the local server's socket (unix:PATH, you are who the kernel says), for
    /// `approvals`, `status` and `audit`, instead of opening the state here
    #[arg(long, global = true, env = "PROVISIONING_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token for --server (prefer the environment variable: a flag is visible in `ps`)
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
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
    /// Configs evaluated at once; further requests are answered "busy, retry" (each
    /// evaluation is a sandboxed child process). Default: one fewer than the cores, at least
    /// one, so a core is left to answer everyone else while hostile configs burn theirs
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_LIMITS_MAX_EVALS",
        default_value_t = default_max_evals(),
        value_parser = clap::value_parser!(u16).range(1..=256),
        value_name = "N"
    )]
    pub max_evals: u16,
    /// How the log (standard error) is written: `human` lines, or `json`, one object a line
    /// with the span fields (tool, caller, request, plan, workflow, step) that tie it to audit
    /// entries
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Human
    )]
    pub log_format: LogFormat,
    /// What is logged: a level (error, warn, info, debug, trace) or a filter such as
    /// `info,engine=debug`; RUST_LOG is read when this is not set [default: info for `serve`
    /// and `daemon` (warn for the database and the MCP library), warn for other commands]
    #[arg(long, global = true, env = "PROVISIONING_LOG", value_name = "FILTER")]
    pub log: Option<String>,
}

/// See [`Global::log_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
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
    /// Compare a config with recorded state: actions, diff, blast radius, cost; stores the plan
    Plan(PlanArgs),
    /// Run a plan as a workflow (from a config file, or a stored plan with --plan ID). Exit 0
    /// succeeded, 1 failed, 3 waiting for approval (a request is recorded), 4 denied by policy
    Apply(ApplyArgs),
    /// Remove everything recorded for the config's workspace (the default policies ask for two
    /// approvals first; exit codes as for apply)
    Destroy(DestroyArgs),
    /// Workflows: without an id the recent ones, with an id its steps and events
    Status(StatusArgs),
    /// Continue an interrupted, failed or cancelled workflow where it stopped
    Resume(WorkflowArgs),
    /// Undo a failed or cancelled workflow: compensate its finished steps in reverse
    /// dependency order; it ends rolled_back (policy is asked again)
    Rollback(WorkflowArgs),
    /// Ask a running workflow to stop: no new steps start, running ones finish
    Cancel(WorkflowArgs),
    /// Ask the providers about every recorded resource and report differences
    Drift(DriftArgs),
    /// Recorded resources
    State(StateArgs),
    /// Cedar policies: validate a policy directory, list the policies, or check what a config
    /// would meet
    Policy(PolicyArgs),
    /// Approval requests for gated plans: list the open ones, show one with its plan, approve or
    /// reject it (exit 4 when refused: used, expired, rejected, or not allowed)
    Approvals(ApprovalsArgs),
    /// Run the MCP server: over stdio (for a desktop assistant), or streamable HTTP at /mcp
    /// with --http 127.0.0.1:PORT (bearer tokens from the config file)
    Serve(ServeArgs),
    /// The local server: one process per installation owns the state and the engine, on an
    /// owner-only Unix socket; assistants (`serve --connect`) and the CLI (`--server unix:PATH`)
    /// are its clients (exit 3 from `status` when it is not running)
    Daemon(DaemonArgs),
    /// The hash-chained audit log: export it as JSON lines, or verify that nothing in it was
    /// edited or removed (exit 1 naming the first broken entry)
    Audit(AuditArgs),
    /// Docs retrieval: index the shipped docs (and your own), search them, measure quality
    Docs(DocsArgs),
    /// First run: write your config file with a token for you, and print what to paste into
    /// Claude Desktop, Claude Code, Cursor and VS Code
    Init(InitArgs),
    /// API tokens for `serve --http`: create one (shown once; the config file keeps its
    /// SHA-256), list them, revoke one
    Token(TokenArgs),
    /// Check what Provisioning depends on (embedding model, local-provider packages, state,
    /// policies, config sandbox) and say how to fix each problem (exit 1 when one fails)
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    pub what: Option<ApprovalsWhat>,
    /// Print JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// List only requests in this state: pending, approved, rejected, used, expired [default:
    /// pending and approved]
    #[arg(long, global = true, conflicts_with = "all")]
    pub status: Option<String>,
    /// List every request, whatever its state
    #[arg(long, global = true)]
    pub all: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ApprovalsWhat {
    /// Requests waiting for approval or for their apply (the default)
    List,
    /// One request: who asked, the gates, approvals so far, and the plan's diff, blast radius
    /// and cost
    Show { id: String },
    /// Approve a request (you must be allowed to approve, and not be the requester)
    Approve {
        id: String,
        /// Why (kept in the request and the audit log)
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a request; the comment tells the requester why
    Reject {
        id: String,
        #[arg(long, required = true)]
        comment: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve streamable HTTP at ADDR (e.g. 127.0.0.1:7070; port 0 picks one and prints it)
    /// instead of stdio
    #[arg(long, value_name = "ADDR", conflicts_with = "socket")]
    pub http: Option<String>,
    /// Serve the same app (MCP at /mcp, REST, the Control Center page) on a Unix socket at PATH,
    /// owner-only (0600 in a 0700 folder); each caller is the operating-system account the
    /// kernel reports for the connection, with the roles this server's config gives it (the
    /// owner of the data directory has every role unless the config says otherwise)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
    /// With --socket, also serve the app (the Control Center page, REST, MCP) on this loopback
    /// ADDR for browsers, each connection identified as the account the kernel says opened it
    /// (port 0 picks one; the URL is written beside the socket, in PATH.url)
    #[arg(long, value_name = "ADDR", requires = "socket")]
    pub control_center: Option<String>,
    /// Over stdio, pass MCP through to the local server on this Unix socket (started with
    /// `serve --socket PATH`) instead of opening the state here: any number of assistants and
    /// the CLI (`--server unix:PATH`) then share one server, and you are who the kernel says
    #[arg(long, value_name = "PATH", conflicts_with_all = ["http", "socket"])]
    pub connect: Option<std::path::PathBuf>,
    /// Over stdio, pass MCP through to this installation's local server (`provisioning daemon`),
    /// starting it first when it is not running. What plain `serve` does unless --standalone
    /// or --read-only
    #[arg(long, conflicts_with_all = ["http", "socket", "connect", "standalone", "read_only"])]
    pub local: bool,
    /// Over stdio, hold the state in this process instead of passing through to the local
    /// server (a container, CI, a one-off): nothing else can open the state meanwhile
    #[arg(long, conflicts_with_all = ["http", "socket", "connect"])]
    pub standalone: bool,
    /// Expose only the tools that change nothing; the others are refused (over stdio this
    /// server then holds the state itself, as with --standalone)
    #[arg(long)]
    pub read_only: bool,
    /// Listen on a non-loopback address (put TLS in front of it)
    #[arg(long)]
    pub allow_remote: bool,
    /// Another accepted Host header value, HOST (any port) or HOST:PORT (repeatable; loopback
    /// names on the bound port are always accepted; other hosts get 421)
    #[arg(long, value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// Another accepted browser Origin, e.g. https://console.example.com:443 (repeatable; the
    /// server's own loopback origins are always accepted; other origins get 403)
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Requests per second per principal over HTTP (twice that as a burst), and the same per
    /// client address for requests without a valid token
    #[arg(long, default_value_t = 20.0, value_name = "N")]
    pub rate_limit: f64,
    #[command(flatten)]
    pub docs: DocsSettings,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub what: DaemonWhat,
    /// The socket [default: $XDG_RUNTIME_DIR/provisioning/<installation>.sock, else
    /// DATA_DIR/run/provisioning.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
    /// Where `start`/`run` serve the Control Center for browsers: a loopback ADDR (port 0 picks
    /// a free one), or `off`. `status` prints its URL
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        default_value = "127.0.0.1:0",
        env = "PROVISIONING_DAEMON_CONTROL_CENTER"
    )]
    pub control_center: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DaemonWhat {
    /// Start it in the background (nothing happens when it is already running)
    Start,
    /// Stop it (running workflows stay resumable)
    Stop,
    /// Say whether it runs, where, as whom, and for which data directory
    Status,
    /// Run it in the foreground (what `start` runs)
    Run,
}

impl ServeArgs {
    /// `serve --socket PATH [--control-center ADDR]` with every other option at its default (or
    /// its environment variable), for `daemon run`.
    pub fn for_socket(path: std::path::PathBuf, control_center: Option<String>) -> ServeArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut only = Only::parse_from(["provisioning"]);
        only.serve.socket = Some(path);
        only.serve.control_center = control_center;
        only.serve
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub what: AuditWhat,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditWhat {
    /// Every entry as one JSON object per line, oldest first
    Export,
    /// Recompute the chain and compare it with the recorded head
    Verify,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub what: PolicyWhat,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PolicyWhat {
    /// Validate policies against the schema: the defaults, or DIR (replacing them, or with
    /// --extend added to them)
    Validate {
        dir: Option<PathBuf>,
        #[arg(long)]
        extend: bool,
    },
    /// List the policies with their ids, descriptions and gates
    List {
        #[arg(long)]
        json: bool,
    },
    /// What would happen if PRINCIPAL applied (or destroyed) this config, and why
    Check {
        /// The Nickel config file
        file: PathBuf,
        /// `user:NAME[:ROLE,ROLE]` or `agent:NAME@USER[:ROLE,ROLE]`
        #[arg(long = "as", value_name = "PRINCIPAL")]
        principal: String,
        /// apply or destroy
        #[arg(long, default_value = "apply")]
        action: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The Nickel config file (`-` reads standard input)
    pub file: PathBuf,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["file", "plan"])))]
pub struct ApplyArgs {
    /// The Nickel config file: planned and applied in one go
    pub file: Option<PathBuf>,
    /// A plan stored by `provisioning plan` (refused if state changed since)
    #[arg(long, value_name = "ID", conflicts_with = "file")]
    pub plan: Option<String>,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the outcome as JSON on stdout (progress still goes to stderr)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The Nickel config file whose workspace is destroyed
    pub file: PathBuf,
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A workflow id (`wf-...`)
    pub workflow: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WorkflowArgs {
    /// A workflow id (`wf-...`)
    pub workflow: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Only this workspace (default: every workspace with recorded resources)
    #[arg(long)]
    pub workspace: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub what: Option<StateWhat>,
    /// Only this workspace
    #[arg(long, global = true)]
    pub workspace: Option<String>,
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum StateWhat {
    /// Every recorded resource (the default)
    List,
    /// One resource by key, e.g. `server/web-1` or `taskserv/web-1/nginx`
    Show { key: String },
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

#[derive(Debug, Args)]
pub struct DocsArgs {
    #[command(subcommand)]
    pub what: DocsWhat,
    #[command(flatten)]
    pub settings: DocsSettings,
}

/// Settings of docs retrieval (also from `PROVISIONING_DOCS_*` / `PROVISIONING_PATHS_*`).
#[derive(Debug, Clone, Args)]
pub struct DocsSettings {
    /// Folder with the embedding model and ONNX Runtime, filled by `scripts/fetch-models`; without them search is keyword-only [default: CACHE_DIR/models]
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_PATHS_MODELS_DIR",
        value_name = "DIR"
    )]
    pub models_dir: Option<PathBuf>,
    /// Your own Markdown docs (searched with the shipped ones, cited as `user/PATH`)
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_DOCS_USER_DIR",
        value_name = "DIR"
    )]
    pub user_docs: Option<PathBuf>,
    /// Keep vectors in Qdrant at this gRPC URL (e.g. http://127.0.0.1:6334; API key from PROVISIONING_DOCS_QDRANT_API_KEY) instead of the embedded SurrealDB index
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_DOCS_QDRANT_URL",
        value_name = "URL"
    )]
    pub qdrant_url: Option<String>,
    /// Qdrant collection name (created on first use)
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_DOCS_QDRANT_COLLECTION",
        default_value = "provisioning_docs",
        value_name = "NAME"
    )]
    pub qdrant_collection: String,
    /// ONNX Runtime threads for embedding (kept low so embedding cannot starve the server)
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_DOCS_EMBED_THREADS",
        default_value_t = 2,
        value_name = "N"
    )]
    pub embed_threads: usize,
    /// Reciprocal rank fusion constant: a result at rank r adds weight / (k + r)
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_DOCS_RRF_K",
        default_value_t = 60.0,
        value_name = "K"
    )]
    pub rrf_k: f32,
    /// Weight of the BM25 list in the fusion
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_DOCS_BM25_WEIGHT",
        default_value_t = 1.0,
        value_name = "W"
    )]
    pub bm25_weight: f32,
    /// Weight of the dense list in the fusion
    #[arg(
        long,
        global = true,
        env = "PROVISIONING_DOCS_DENSE_WEIGHT",
        default_value_t = 1.0,
        value_name = "W"
    )]
    pub dense_weight: f32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DocsMode {
    /// BM25 and dense retrieval fused by reciprocal rank
    Hybrid,
    /// BM25 only
    Keyword,
    /// Dense (embedding) retrieval only
    Dense,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DocsWhat {
    /// Bring the index up to date: only new or changed documents are chunked and embedded
    Index {
        #[arg(long)]
        json: bool,
    },
    /// Hybrid (BM25 + dense) search with citations; at most 50 results, queries up to 2048 bytes
    Search {
        /// The question or keywords
        query: String,
        /// Number of results (1 to 50; more is clamped to 50 with a notice)
        #[arg(long, short = 'k', default_value_t = 5)]
        k: usize,
        /// Only documents about this provider (e.g. `hetzner`)
        #[arg(long)]
        provider: Option<String>,
        /// Only documents about this taskserv (e.g. `redis`)
        #[arg(long)]
        taskserv: Option<String>,
        /// Only documents of this kind (`provider`, `taskserv`, `cluster`, `schema`, `reference`, ...)
        #[arg(long)]
        kind: Option<String>,
        /// Which retrievers run
        #[arg(long, value_enum, default_value_t = DocsMode::Hybrid)]
        mode: DocsMode,
        #[arg(long)]
        json: bool,
    },
    /// Recall@5 and nDCG@10 of BM25, dense and hybrid retrieval on the labelled question set
    Eval {
        /// A JSON-lines question file instead of the shipped `rag/eval/questions.jsonl`
        #[arg(long, value_name = "FILE")]
        questions: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn parse() -> Cli {
    Cli::parse()
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Your name in the config file (`[users.NAME]`) [default: your account name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The address the snippets use for `serve --http`
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "HOST:PORT")]
    pub http: String,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub what: TokenWhat,
}

#[derive(Debug, Subcommand)]
pub enum TokenWhat {
    /// Make a token for a user (or, with --agent-for, an MCP client acting for one); the token
    /// is printed once on standard output
    Create {
        /// The user's (or agent's) name, e.g. `olga` or `ci-bot`
        name: String,
        /// A role to hold (repeatable); without one an existing entry keeps its roles and a new
        /// one has none (it can sign in, and policy allows it nothing)
        #[arg(long = "role", value_enum, value_name = "ROLE")]
        roles: Vec<Role>,
        /// Make an agent token acting for this user (`agent:NAME@USER` in the audit log)
        #[arg(long, value_name = "USER")]
        agent_for: Option<String>,
        /// Replace an existing token (the old one stops working)
        #[arg(long)]
        rotate: bool,
    },
    /// The tokens in the config file: who, roles and the first characters of the hash
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user's or agent's token from the config file
    Revoke {
        /// The user or agent name
        name: String,
    },
}

/// The roles the default policies know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Reads everything, changes nothing
    Viewer,
    /// Plans and applies (prod changes wait for an approval)
    Operator,
    /// Approves or rejects other people's requests
    Approver,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub docs: DocsSettings,
    /// One JSON object per check
    #[arg(long)]
    pub json: bool,
}

/// `--max-evals` by default: the sandbox's own default, as a flag value.
fn default_max_evals() -> u16 {
    u16::try_from(engine::sandbox::default_max_concurrent().min(256)).unwrap_or(256)
}
