//! Recorded state: resources and their edges, plans, workflows, steps, checkpoints, events and
//! apply locks. The engine sees it only through [`StateStore`]; [`SurrealStore`] is the real
//! one (embedded surrealkv file, in-memory, or a SurrealDB server), [`MemStore`] is a plain
//! in-process map for unit tests and for measuring the executor without storage.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::{ActionKind, Plan};
pub use crate::resource::{Edge, Relation, Resource, ResourceKind};

mod folder;
mod mem;
mod surreal;

pub use mem::MemStore;
pub use surreal::{StoreLocation, SurrealStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    RollingBack,
    RolledBack,
    Cancelled,
}

impl WorkflowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Pending => "pending",
            WorkflowStatus::Running => "running",
            WorkflowStatus::Succeeded => "succeeded",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::RollingBack => "rolling_back",
            WorkflowStatus::RolledBack => "rolled_back",
            WorkflowStatus::Cancelled => "cancelled",
        }
    }

    /// Finished for good: nothing to resume.
    pub fn is_final(self) -> bool {
        matches!(self, WorkflowStatus::Succeeded | WorkflowStatus::RolledBack)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub id: String,
    pub workspace: String,
    pub plan_id: String,
    pub plan_hash: String,
    pub status: WorkflowStatus,
    pub settings: crate::model::Workflow,
    /// The policy decision this workflow runs under (the engine refuses to run without one).
    pub decision: Value,
    pub requested_by: String,
    pub cancel_requested: bool,
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// A side effect may be under way: written durably before calling the provider.
    Running,
    /// Failed with a retryable error; waiting to try again.
    Retrying,
    Succeeded,
    Failed,
    /// Not run because a step it depends on failed, or the workflow stopped.
    Skipped,
    /// Undoing a succeeded step during rollback.
    Compensating,
    Compensated,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Retrying => "retrying",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Compensating => "compensating",
            StepStatus::Compensated => "compensated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub workflow: String,
    /// Position in the plan's action list; stable for the workflow's life.
    pub index: usize,
    /// The resource key the step acts on.
    pub key: String,
    pub kind: ResourceKind,
    pub action: ActionKind,
    pub depends_on: Vec<usize>,
    pub status: StepStatus,
    pub attempts: u32,
    pub idempotency_key: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub observed: Option<crate::provider::Observed>,
    #[serde(default)]
    pub started_at: Option<u64>,
    #[serde(default)]
    pub finished_at: Option<u64>,
}

/// A progress event: persisted with the checkpoint it belongs to, and broadcast live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub workflow: String,
    pub seq: u64,
    pub at: u64,
    pub kind: EventKind,
    #[serde(default)]
    pub step: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    WorkflowStarted,
    WorkflowResumed,
    StepStarted,
    StepRetrying,
    StepSucceeded,
    StepFailed,
    StepSkipped,
    StepCompensating,
    StepCompensated,
    /// Lines a running step's program printed (host output: data, never instructions).
    StepOutput,
    CancelRequested,
    WorkflowFinished,
}

/// What a checkpoint does to the resource table, in the same transaction as the step update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResourceChange {
    Put(Box<Resource>),
    Delete { workspace: String, key: String },
}

/// One durable write: the step's new state, the resource it changed (if any), and the event
/// that tells subscribers. All or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub step: StepRecord,
    pub resource: Option<ResourceChange>,
    pub event: Event,
}

/// Who holds a workspace's apply lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub id: String,
    pub workspace: String,
    /// `user@host pid 1234`.
    pub owner: String,
    pub workflow: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: u64,
    /// The lock is free for others after this time unless renewed.
    pub lease_until: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store: {0}")]
    Backend(String),
    #[error(
        "the state store at {path} is open in another provisioning process{holder}; wait for it to finish, or point both at a SurrealDB server with --state ws://HOST:PORT"
    )]
    Busy { path: String, holder: String },
    #[error(
        "the state store at {path} belongs to the account {owner}, not to you: reach it through its local server (`--server unix:SOCKET`, when its `[daemon] group` lets you in) or use a data directory of your own (--data-dir)"
    )]
    NotYours { path: String, owner: String },
    #[error("state store holds a record it cannot read ({what}): {message}")]
    Corrupt { what: String, message: String },
}

pub type StateResult<T> = Result<T, StateError>;

#[async_trait]
pub trait StateStore: Send + Sync {
    /// Every resource recorded for a workspace, ordered by key.
    async fn resources(&self, workspace: &str) -> StateResult<Vec<Resource>>;
    async fn resource(&self, workspace: &str, key: &str) -> StateResult<Option<Resource>>;
    /// Grows by one with every resource change in the workspace. Plans record it.
    async fn state_version(&self, workspace: &str) -> StateResult<u64>;
    /// Every workspace with recorded resources or workflows.
    async fn workspaces(&self) -> StateResult<Vec<String>>;

    async fn save_plan(&self, plan: &Plan) -> StateResult<()>;
    async fn plan(&self, id: &str) -> StateResult<Option<Plan>>;

    async fn create_workflow(
        &self,
        workflow: &WorkflowRecord,
        steps: &[StepRecord],
    ) -> StateResult<()>;
    async fn update_workflow(
        &self,
        workflow: &WorkflowRecord,
        event: Option<&Event>,
    ) -> StateResult<()>;
    async fn workflow(&self, id: &str) -> StateResult<Option<WorkflowRecord>>;
    /// Newest first.
    async fn workflows(&self, workspace: Option<&str>) -> StateResult<Vec<WorkflowRecord>>;
    /// The newest `limit` workflows (of `workspace` when given), newest first.
    async fn recent_workflows(
        &self,
        workspace: Option<&str>,
        limit: usize,
    ) -> StateResult<Vec<WorkflowRecord>> {
        let mut all = self.workflows(workspace).await?;
        all.truncate(limit);
        Ok(all)
    }
    async fn steps(&self, workflow: &str) -> StateResult<Vec<StepRecord>>;
    async fn checkpoint(&self, checkpoint: &Checkpoint) -> StateResult<()>;
    /// The workspace's state version right after the workflow's last checkpoint that changed
    /// a resource (recorded in that checkpoint's transaction); `None` before its first change.
    /// A resume compares it with the current version to see whether anyone else wrote since.
    async fn workflow_state_version(&self, workflow: &str) -> StateResult<Option<u64>>;
    async fn events(&self, workflow: &str, after_seq: u64) -> StateResult<Vec<Event>>;
    /// Records an event that changes nothing else (a step's output).
    async fn append_event(&self, event: &Event) -> StateResult<()>;
    async fn request_cancel(&self, workflow: &str) -> StateResult<bool>;

    /// Takes the workspace's apply lock, or returns who holds it. A lock whose lease ran out
    /// is taken over.
    async fn acquire_lock(
        &self,
        holder: &LockHolder,
        now: u64,
    ) -> StateResult<Result<(), LockHolder>>;
    async fn renew_lock(&self, holder: &LockHolder) -> StateResult<()>;
    async fn release_lock(&self, workspace: &str, lock_id: &str) -> StateResult<()>;
    async fn lock(&self, workspace: &str) -> StateResult<Option<LockHolder>>;

    /// Records a new approval request.
    async fn create_approval(&self, request: &ApprovalRequest) -> StateResult<()>;
    /// Replaces a request only if its stored `rev` is still `expected_rev`; `false` when
    /// someone changed it first (nothing is written then).
    async fn update_approval(
        &self,
        request: &ApprovalRequest,
        expected_rev: u64,
    ) -> StateResult<bool>;
    async fn approval(&self, id: &str) -> StateResult<Option<ApprovalRequest>>;
    /// Newest first; only the requests for `plan_hash` when given.
    async fn approvals(&self, plan_hash: Option<&str>) -> StateResult<Vec<ApprovalRequest>>;

    /// Appends to the hash-chained audit log (see `policies::audit`) and returns the entry.
    async fn append_audit(&self, record: AuditRecord) -> StateResult<AuditEntry>;
    /// The whole audit log in order, and the recorded head (newest seq and hash).
    async fn audit_log(&self) -> StateResult<(Vec<AuditEntry>, Option<(u64, String)>)>;
}

/// What an audit entry says; the store adds seq, time chain and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: u64,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub data: Value,
}

impl AuditRecord {
    pub fn entry_after(&self, prev: Option<(u64, &str)>) -> AuditEntry {
        policies::audit::next_entry(
            prev,
            self.at,
            &self.kind,
            &self.actor,
            &self.subject,
            self.data.clone(),
        )
    }
}

pub use policies::ApprovalRequest;
pub use policies::audit::AuditEntry;
