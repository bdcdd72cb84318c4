//! The SurrealDB state store. One record per resource, plan, workflow, step, event and
//! checkpoint, with graph edges (`runs_on`, `member_of`) between resources. Each checkpoint is
//! one transaction; the embedded surrealkv engine syncs every commit to disk.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use surrealdb::Surreal;
use surrealdb::engine::any::{self, Any};

use super::{
    ApprovalRequest, AuditEntry, AuditRecord, Checkpoint, Event, LockHolder, Relation, Resource,
    ResourceChange, StateError, StateResult, StateStore, StepRecord, WorkflowRecord,
};
use crate::plan::Plan;

const NAMESPACE: &str = "provisioning";
const DATABASE: &str = "state";

/// Where the state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An embedded surrealkv database in this directory (the default: `<data dir>/state`).
    Embedded(PathBuf),
    /// In memory; gone when the process ends. For tests.
    Memory,
    /// A SurrealDB server, `ws://host:port` or `http://host:port`, shared by a team.
    Remote {
        url: String,
        user: Option<String>,
        pass: Option<String>,
    },
}

impl StoreLocation {
    /// `mem://`, `surrealkv://PATH`, `ws://...`, `wss://...`, `http(s)://...`, or a bare path.
    pub fn parse(text: &str) -> Result<StoreLocation, String> {
        if text == "mem://" || text == "memory" {
            return Ok(StoreLocation::Memory);
        }
        if let Some(path) = text.strip_prefix("surrealkv://") {
            return Ok(StoreLocation::Embedded(PathBuf::from(path)));
        }
        for scheme in ["ws://", "wss://", "http://", "https://"] {
            if text.starts_with(scheme) {
                return Ok(StoreLocation::Remote {
                    url: text.to_string(),
                    // Credentials are the caller's to fill in (the server's settings).
                    user: None,
                    pass: None,
                });
            }
        }
        if text.contains("://") {
            return Err(format!(
                "unsupported state location `{text}`: expected a directory, surrealkv://PATH, mem://, or ws://HOST:PORT"
            ));
        }
        Ok(StoreLocation::Embedded(PathBuf::from(text)))
    }

    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Embedded(path) => format!("surrealkv://{}", path.display()),
            StoreLocation::Memory => "mem://".into(),
            StoreLocation::Remote { url, .. } => url.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SurrealStore {
    db: Surreal<Any>,
    location: StoreLocation,
}

fn backend(err: surrealdb::Error) -> StateError {
    StateError::Backend(err.to_string())
}

fn to_json<T: Serialize>(value: &T) -> StateResult<Value> {
    serde_json::to_value(value).map_err(|e| StateError::Backend(format!("encode: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, value: Value) -> StateResult<T> {
    serde_json::from_value(value).map_err(|e| StateError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn decode_all<T: DeserializeOwned>(what: &str, values: Vec<Value>) -> StateResult<Vec<T>> {
    values.into_iter().map(|v| decode(what, v)).collect()
}

/// The file where the process that has an embedded store open says who it is. (surrealkv's
/// own LOCK file cannot tell: a second opener truncates it before finding it locked.)
const HOLDER_FILE: &str = "holder";

fn command_line(pid: &str) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty())
}

/// ` (pid N: `command`)` for the "busy" error, when the holder is still alive.
fn lock_holder_description(dir: &Path) -> String {
    let Ok(pid) = std::fs::read_to_string(dir.join(HOLDER_FILE)) else {
        return String::new();
    };
    let pid = pid.trim();
    match command_line(pid) {
        Some(command) => format!(" (pid {pid}: `{command}`)"),
        None => String::new(),
    }
}

impl SurrealStore {
    pub async fn open(location: StoreLocation) -> StateResult<SurrealStore> {
        let db = match &location {
            StoreLocation::Memory => any::connect("mem://").await.map_err(backend)?,
            StoreLocation::Embedded(dir) => {
                super::folder::private_dir(dir)?;
                // Sync every commit: a checkpoint that returned is on disk.
                let url = format!("surrealkv://{}?sync=every", dir.display());
                match any::connect(url).await {
                    Ok(db) => {
                        let _ =
                            std::fs::write(dir.join(HOLDER_FILE), std::process::id().to_string());
                        db
                    }
                    Err(err) => {
                        let text = err.to_string();
                        if text.contains("already in use")
                            || text.contains("lock")
                            || text.contains("Lock")
                        {
                            return Err(StateError::Busy {
                                path: dir.display().to_string(),
                                holder: lock_holder_description(dir),
                            });
                        }
                        return Err(backend(err));
                    }
                }
            }
            StoreLocation::Remote { url, user, pass } => {
                let db = any::connect(url.as_str()).await.map_err(backend)?;
                if let (Some(user), Some(pass)) = (user, pass) {
                    db.signin(surrealdb::opt::auth::Root {
                        username: user.clone(),
                        password: pass.clone(),
                    })
                    .await
                    .map_err(backend)?;
                }
                db
            }
        };
        db.use_ns(NAMESPACE)
            .use_db(DATABASE)
            .await
            .map_err(backend)?;
        let store = SurrealStore { db, location };
        store.define_schema().await?;
        Ok(store)
    }

    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    async fn define_schema(&self) -> StateResult<()> {
        self.run(
            "DEFINE TABLE IF NOT EXISTS resource SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS version SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS plan SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS workflow SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS step SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS event SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS checkpoint SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS wf_version SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS lock SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS audit SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS approval SCHEMALESS;
             DEFINE INDEX IF NOT EXISTS approval_hash ON approval FIELDS hash;
             DEFINE TABLE IF NOT EXISTS audit_head SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS runs_on TYPE RELATION SCHEMALESS;
             DEFINE TABLE IF NOT EXISTS member_of TYPE RELATION SCHEMALESS;
             DEFINE INDEX IF NOT EXISTS resource_ws ON resource FIELDS ws;
             DEFINE INDEX IF NOT EXISTS workflow_ws ON workflow FIELDS ws;
             DEFINE INDEX IF NOT EXISTS workflow_created ON workflow FIELDS created_at;
             DEFINE INDEX IF NOT EXISTS step_wf ON step FIELDS wf;
             DEFINE INDEX IF NOT EXISTS event_wf ON event FIELDS wf;
             DEFINE INDEX IF NOT EXISTS checkpoint_wf ON checkpoint FIELDS wf;",
            json!({}),
        )
        .await
        .map(|_| ())
    }

    /// Runs a query. Transactions are optimistic: one that lost a write conflict against a
    /// concurrent one (parallel steps bump the same version record) is retried.
    async fn run(&self, query: &str, vars: Value) -> StateResult<surrealdb::IndexedResults> {
        let mut attempt = 0u32;
        loop {
            let result = match self.db.query(query).bind(vars.clone()).await {
                Ok(mut response) => {
                    let mut errors: Vec<(usize, String)> = response
                        .take_errors()
                        .into_iter()
                        .map(|(i, e)| (i, e.to_string()))
                        .collect();
                    errors.sort();
                    // In a failed transaction every statement reports that it was not run;
                    // the one that says why is the interesting one.
                    let cause = errors
                        .iter()
                        .find(|(_, e)| !e.contains("due to a failed transaction"))
                        .or(errors.first())
                        .map(|(_, e)| e.clone());
                    match cause {
                        None => Ok(response),
                        Some(cause) => Err(cause),
                    }
                }
                Err(err) => Err(err.to_string()),
            };
            match result {
                Ok(response) => return Ok(response),
                Err(err) if attempt < 50 && err.contains("can be retried") => {
                    attempt += 1;
                    let pause = 1 + u64::from(attempt) * u64::from(std::process::id() % 7 + 1);
                    tokio::time::sleep(std::time::Duration::from_millis(pause.min(50))).await;
                }
                Err(err) => return Err(StateError::Backend(err)),
            }
        }
    }

    /// The newest audit entry's seq and hash, as the head record says.
    async fn audit_head(&self) -> StateResult<Option<(u64, String)>> {
        #[derive(serde::Deserialize)]
        struct Head {
            seq: u64,
            hash: String,
        }
        let head: Option<Head> = self
            .select_one(
                "audit head",
                "SELECT VALUE data FROM ONLY type::record('audit_head', 'head')",
                json!({}),
            )
            .await?;
        Ok(head.map(|h| (h.seq, h.hash)))
    }

    /// A read-only query for diagnostics and tests; rows as JSON.
    pub async fn raw_query(&self, query: &str) -> StateResult<Vec<Value>> {
        let mut response = self.run(query, json!({})).await?;
        let values: Vec<Value> = response.take(0).map_err(backend)?;
        Ok(values)
    }

    /// `SELECT VALUE data ...` → the decoded records.
    async fn select<T: DeserializeOwned>(
        &self,
        what: &str,
        query: &str,
        vars: Value,
    ) -> StateResult<Vec<T>> {
        let mut response = self.run(query, vars).await?;
        let values: Vec<Value> = response.take(0).map_err(backend)?;
        decode_all(what, values.into_iter().filter(|v| !v.is_null()).collect())
    }

    /// A query whose first statement yields one value (`... FROM ONLY record`) or nothing.
    async fn select_one<T: DeserializeOwned>(
        &self,
        what: &str,
        query: &str,
        vars: Value,
    ) -> StateResult<Option<T>> {
        let mut response = self.run(query, vars).await?;
        let value: surrealdb::types::Value = response.take(0).map_err(backend)?;
        let value = value.into_json_value();
        let value = match value {
            Value::Array(items) => items.into_iter().next().unwrap_or(Value::Null),
            other => other,
        };
        if value.is_null() {
            return Ok(None);
        }
        decode(what, value).map(Some)
    }
}

/// The statements that apply one resource change, with its edges and the version bump.
fn resource_change_statements(change: &ResourceChange) -> StateResult<(String, Value)> {
    match change {
        ResourceChange::Put(resource) => {
            let mut query = String::from(
                "LET $rid = type::record('resource', [$r_ws, $r_key]);
                 UPSERT $rid CONTENT { ws: $r_ws, key: $r_key, kind: $r_kind, data: $r_data };
                 DELETE runs_on WHERE in = $rid;
                 DELETE member_of WHERE out = $rid;
                 UPSERT type::record('version', $r_ws) SET n = (n ?? 0) + 1;",
            );
            for (i, edge) in resource.edges.iter().enumerate() {
                // `runs_on`: this taskserv runs on a server. `member`: that server is a
                // member of this cluster.
                query.push_str(&match edge.relation {
                    Relation::RunsOn => format!(
                        "RELATE $rid->runs_on->(type::record('resource', [$r_ws, $r_edge{i}]));"
                    ),
                    Relation::Member => format!(
                        "RELATE (type::record('resource', [$r_ws, $r_edge{i}]))->member_of->$rid;"
                    ),
                });
            }
            let mut vars = json!({
                "r_ws": resource.workspace,
                "r_key": resource.key,
                "r_kind": resource.kind,
                "r_data": to_json(resource)?,
            });
            for (i, edge) in resource.edges.iter().enumerate() {
                vars[format!("r_edge{i}")] = Value::String(edge.to.clone());
            }
            Ok((query, vars))
        }
        ResourceChange::Delete { workspace, key } => Ok((
            "LET $rid = type::record('resource', [$r_ws, $r_key]);
             IF (SELECT VALUE id FROM ONLY $rid) != NONE {
                 UPSERT type::record('version', $r_ws) SET n = (n ?? 0) + 1;
             };
             DELETE runs_on WHERE in = $rid OR out = $rid;
             DELETE member_of WHERE in = $rid OR out = $rid;
             DELETE $rid;"
                .to_string(),
            json!({ "r_ws": workspace, "r_key": key }),
        )),
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

#[async_trait]
impl StateStore for SurrealStore {
    async fn resources(&self, workspace: &str) -> StateResult<Vec<Resource>> {
        self.select(
            "resource",
            "SELECT VALUE data FROM resource WHERE ws = $ws ORDER BY key",
            json!({ "ws": workspace }),
        )
        .await
    }

    async fn resource(&self, workspace: &str, key: &str) -> StateResult<Option<Resource>> {
        self.select_one(
            "resource",
            "SELECT VALUE data FROM ONLY type::record('resource', [$ws, $key])",
            json!({ "ws": workspace, "key": key }),
        )
        .await
    }

    async fn state_version(&self, workspace: &str) -> StateResult<u64> {
        let version: Option<u64> = self
            .select_one(
                "version",
                "SELECT VALUE n FROM ONLY type::record('version', $ws)",
                json!({ "ws": workspace }),
            )
            .await?;
        Ok(version.unwrap_or(0))
    }

    async fn workspaces(&self) -> StateResult<Vec<String>> {
        let mut names: Vec<String> = self
            .select(
                "workspace",
                "array::distinct(array::concat((SELECT VALUE ws FROM resource), (SELECT VALUE ws FROM workflow)))",
                json!({}),
            )
            .await?;
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn save_plan(&self, plan: &Plan) -> StateResult<()> {
        self.run(
            "UPSERT type::record('plan', $id) CONTENT { ws: $ws, created_at: $at, data: $data }",
            json!({ "id": plan.id, "ws": plan.workspace, "at": plan.created_at, "data": to_json(plan)? }),
        )
        .await
        .map(|_| ())
    }

    async fn plan(&self, id: &str) -> StateResult<Option<Plan>> {
        self.select_one(
            "plan",
            "SELECT VALUE data FROM ONLY type::record('plan', $id)",
            json!({ "id": id }),
        )
        .await
    }

    async fn create_workflow(
        &self,
        workflow: &WorkflowRecord,
        steps: &[StepRecord],
    ) -> StateResult<()> {
        let steps: Vec<Value> = steps
            .iter()
            .map(|s| {
                Ok(json!({
                    "id": [s.workflow, s.index],
                    "wf": s.workflow,
                    "idx": s.index,
                    "data": to_json(s)?,
                }))
            })
            .collect::<StateResult<_>>()?;
        self.run(
            "BEGIN TRANSACTION;
             CREATE type::record('workflow', $id) CONTENT { ws: $ws, created_at: $at, data: $data };
             FOR $s IN $steps {
                 CREATE type::record('step', $s.id) CONTENT { wf: $s.wf, idx: $s.idx, data: $s.data };
             };
             COMMIT TRANSACTION;",
            json!({
                "id": workflow.id,
                "ws": workflow.workspace,
                "at": workflow.created_at,
                "data": to_json(workflow)?,
                "steps": steps,
            }),
        )
        .await
        .map(|_| ())
    }

    async fn update_workflow(
        &self,
        workflow: &WorkflowRecord,
        event: Option<&Event>,
    ) -> StateResult<()> {
        let mut query = String::from(
            "BEGIN TRANSACTION;
             UPDATE type::record('workflow', $id) SET data = $data;",
        );
        let mut vars = json!({ "id": workflow.id, "data": to_json(workflow)? });
        if let Some(event) = event {
            query.push_str(
                "CREATE type::record('event', [$e_wf, $e_seq]) CONTENT { wf: $e_wf, seq: $e_seq, data: $e_data };",
            );
            merge(
                &mut vars,
                json!({ "e_wf": event.workflow, "e_seq": event.seq, "e_data": to_json(event)? }),
            );
        }
        query.push_str("COMMIT TRANSACTION;");
        self.run(&query, vars).await.map(|_| ())
    }

    async fn append_event(&self, event: &Event) -> StateResult<()> {
        self.run(
            "CREATE type::record('event', [$wf, $seq]) CONTENT { wf: $wf, seq: $seq, data: $data };",
            json!({ "wf": event.workflow, "seq": event.seq, "data": to_json(event)? }),
        )
        .await
        .map(|_| ())
    }

    async fn workflow(&self, id: &str) -> StateResult<Option<WorkflowRecord>> {
        self.select_one(
            "workflow",
            "SELECT VALUE data FROM ONLY type::record('workflow', $id)",
            json!({ "id": id }),
        )
        .await
    }

    async fn workflows(&self, workspace: Option<&str>) -> StateResult<Vec<WorkflowRecord>> {
        match workspace {
            Some(ws) => {
                self.select(
                    "workflow",
                    "SELECT VALUE data FROM workflow WHERE ws = $ws ORDER BY created_at DESC",
                    json!({ "ws": ws }),
                )
                .await
            }
            None => {
                self.select(
                    "workflow",
                    "SELECT VALUE data FROM workflow ORDER BY created_at DESC",
                    json!({}),
                )
                .await
            }
        }
    }

    async fn recent_workflows(
        &self,
        workspace: Option<&str>,
        limit: usize,
    ) -> StateResult<Vec<WorkflowRecord>> {
        let (query, vars) = match workspace {
            Some(ws) => (
                "SELECT VALUE data FROM workflow WHERE ws = $ws ORDER BY created_at DESC LIMIT $n",
                json!({ "ws": ws, "n": limit }),
            ),
            None => (
                "SELECT VALUE data FROM workflow ORDER BY created_at DESC LIMIT $n",
                json!({ "n": limit }),
            ),
        };
        self.select("workflow", query, vars).await
    }

    async fn steps(&self, workflow: &str) -> StateResult<Vec<StepRecord>> {
        self.select(
            "step",
            "SELECT VALUE data FROM step WHERE wf = $wf ORDER BY idx",
            json!({ "wf": workflow }),
        )
        .await
    }

    async fn checkpoint(&self, checkpoint: &Checkpoint) -> StateResult<()> {
        let step = &checkpoint.step;
        let event = &checkpoint.event;
        let mut query = String::from(
            "BEGIN TRANSACTION;
             UPDATE type::record('step', [$wf, $idx]) SET data = $step;
             CREATE type::record('checkpoint', [$wf, $seq]) CONTENT { wf: $wf, step: $idx, status: $status, attempts: $attempts, at: $at };
             CREATE type::record('event', [$wf, $seq]) CONTENT { wf: $wf, seq: $seq, data: $event };",
        );
        let mut vars = json!({
            "wf": step.workflow,
            "idx": step.index,
            "step": to_json(step)?,
            "status": step.status.as_str(),
            "attempts": step.attempts,
            "at": event.at,
            "seq": event.seq,
            "event": to_json(event)?,
        });
        if let Some(change) = &checkpoint.resource {
            let (statements, change_vars) = resource_change_statements(change)?;
            query.push_str(&statements);
            merge(&mut vars, change_vars);
            // The workspace's version after this workflow's change, in the same transaction:
            // a resume compares it with the version then.
            query.push_str(
                "UPSERT type::record('wf_version', $wf) SET n = (SELECT VALUE n FROM ONLY type::record('version', $r_ws)) ?? 0;",
            );
        }
        query.push_str("COMMIT TRANSACTION;");
        self.run(&query, vars).await.map(|_| ())
    }

    async fn workflow_state_version(&self, workflow: &str) -> StateResult<Option<u64>> {
        self.select_one(
            "wf_version",
            "SELECT VALUE n FROM ONLY type::record('wf_version', $wf)",
            json!({ "wf": workflow }),
        )
        .await
    }

    async fn events(&self, workflow: &str, after_seq: u64) -> StateResult<Vec<Event>> {
        self.select(
            "event",
            "SELECT VALUE data FROM event WHERE wf = $wf AND seq > $after ORDER BY seq",
            json!({ "wf": workflow, "after": after_seq }),
        )
        .await
    }

    async fn request_cancel(&self, workflow: &str) -> StateResult<bool> {
        let mut response = self
            .run(
                "UPDATE type::record('workflow', $id) SET data.cancel_requested = true RETURN VALUE id",
                json!({ "id": workflow }),
            )
            .await?;
        let updated: Vec<Value> = response.take(0).map_err(backend)?;
        Ok(!updated.is_empty())
    }

    async fn create_approval(&self, request: &ApprovalRequest) -> StateResult<()> {
        self.run(
            "CREATE type::record('approval', $id) CONTENT { hash: $hash, created_at: $at, rev: $rev, data: $data }",
            json!({
                "id": request.id,
                "hash": request.plan_hash,
                "at": request.created_at,
                "rev": request.rev,
                "data": to_json(request)?,
            }),
        )
        .await
        .map(|_| ())
    }

    async fn update_approval(
        &self,
        request: &ApprovalRequest,
        expected_rev: u64,
    ) -> StateResult<bool> {
        let mut response = self
            .run(
                "BEGIN TRANSACTION;
                 LET $cur = (SELECT VALUE rev FROM ONLY type::record('approval', $id));
                 IF $cur = $expected {
                     UPDATE type::record('approval', $id) SET rev = $rev, data = $data;
                 };
                 RETURN $cur;
                 COMMIT TRANSACTION;",
                json!({
                    "id": request.id,
                    "expected": expected_rev,
                    "rev": request.rev,
                    "data": to_json(request)?,
                }),
            )
            .await?;
        // The statement before COMMIT (which counts as a statement and yields nothing).
        let last = response.num_statements().saturating_sub(2);
        // The rev found before the update: it was applied exactly when that was the expected one.
        let before: surrealdb::types::Value = response.take(last).map_err(backend)?;
        Ok(before.into_json_value().as_u64() == Some(expected_rev) && request.rev != expected_rev)
    }

    async fn approval(&self, id: &str) -> StateResult<Option<ApprovalRequest>> {
        self.select_one(
            "approval",
            "SELECT VALUE data FROM ONLY type::record('approval', $id)",
            json!({ "id": id }),
        )
        .await
    }

    async fn approvals(&self, plan_hash: Option<&str>) -> StateResult<Vec<ApprovalRequest>> {
        match plan_hash {
            Some(hash) => {
                self.select(
                    "approval",
                    "SELECT VALUE data FROM approval WHERE hash = $hash ORDER BY created_at DESC",
                    json!({ "hash": hash }),
                )
                .await
            }
            None => {
                self.select(
                    "approval",
                    "SELECT VALUE data FROM approval ORDER BY created_at DESC",
                    json!({}),
                )
                .await
            }
        }
    }

    async fn acquire_lock(
        &self,
        holder: &LockHolder,
        now: u64,
    ) -> StateResult<Result<(), LockHolder>> {
        let mut response = self
            .run(
                "BEGIN TRANSACTION;
                 LET $cur = (SELECT VALUE data FROM ONLY type::record('lock', $ws));
                 IF $cur = NONE OR $cur.lease_until <= $now OR $cur.id = $id {
                     UPSERT type::record('lock', $ws) CONTENT { data: $holder };
                 };
                 SELECT VALUE data FROM ONLY type::record('lock', $ws);
                 COMMIT TRANSACTION;",
                json!({
                    "ws": holder.workspace,
                    "id": holder.id,
                    "now": now,
                    "holder": to_json(holder)?,
                }),
            )
            .await?;
        // The statement before COMMIT (which counts as a statement and yields nothing).
        let last = response.num_statements().saturating_sub(2);
        let current: surrealdb::types::Value = response.take(last).map_err(backend)?;
        let current = current.into_json_value();
        let current: Option<LockHolder> = match current {
            Value::Null => None,
            v => Some(decode("lock", v)?),
        };
        match current {
            Some(current) if current.id != holder.id => Ok(Err(current)),
            _ => Ok(Ok(())),
        }
    }

    async fn renew_lock(&self, holder: &LockHolder) -> StateResult<()> {
        self.run(
            "UPDATE type::record('lock', $ws) SET data = $holder WHERE data.id = $id",
            json!({ "ws": holder.workspace, "id": holder.id, "holder": to_json(holder)? }),
        )
        .await
        .map(|_| ())
    }

    async fn release_lock(&self, workspace: &str, lock_id: &str) -> StateResult<()> {
        self.run(
            "DELETE type::record('lock', $ws) WHERE data.id = $id",
            json!({ "ws": workspace, "id": lock_id }),
        )
        .await
        .map(|_| ())
    }

    async fn lock(&self, workspace: &str) -> StateResult<Option<LockHolder>> {
        self.select_one(
            "lock",
            "SELECT VALUE data FROM ONLY type::record('lock', $ws)",
            json!({ "ws": workspace }),
        )
        .await
    }

    async fn append_audit(&self, record: AuditRecord) -> StateResult<AuditEntry> {
        // Optimistic: compute the entry after the head we read; the transaction refuses it if
        // another writer moved the head meanwhile, and we try again on the new head.
        for _ in 0..50 {
            let prev = self.audit_head().await?;
            let entry = record.entry_after(prev.as_ref().map(|(s, h)| (*s, h.as_str())));
            let result = self
                .run(
                    "BEGIN TRANSACTION;
                     LET $h = (SELECT VALUE data FROM ONLY type::record('audit_head', 'head'));
                     IF ($h.seq ?? 0) != $prev_seq { THROW 'audit head moved' };
                     CREATE type::record('audit', $seq) CONTENT { seq: $seq, data: $entry };
                     UPSERT type::record('audit_head', 'head') CONTENT { data: { seq: $seq, hash: $hash } };
                     COMMIT TRANSACTION;",
                    json!({
                        "prev_seq": prev.as_ref().map(|p| p.0).unwrap_or(0),
                        "seq": entry.seq,
                        "hash": entry.hash,
                        "entry": to_json(&entry)?,
                    }),
                )
                .await;
            match result {
                Ok(_) => return Ok(entry),
                Err(StateError::Backend(msg)) if msg.contains("audit head moved") => continue,
                Err(other) => return Err(other),
            }
        }
        Err(StateError::Backend(
            "audit log: too much contention on the head".into(),
        ))
    }

    async fn audit_log(&self) -> StateResult<(Vec<AuditEntry>, Option<(u64, String)>)> {
        let entries: Vec<AuditEntry> = self
            .select(
                "audit",
                "SELECT VALUE data FROM audit ORDER BY seq",
                json!({}),
            )
            .await?;
        Ok((entries, self.audit_head().await?))
    }
}
