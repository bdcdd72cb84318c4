//! A plain in-process store: maps behind a mutex. For unit tests of the code around the store
//! and for measuring the executor without storage; never the store a user runs on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    ApprovalRequest, AuditEntry, AuditRecord, Checkpoint, Event, LockHolder, Resource,
    ResourceChange, StateError, StateResult, StateStore, StepRecord, WorkflowRecord,
};
use crate::plan::Plan;

#[derive(Debug, Default)]
struct Inner {
    resources: BTreeMap<(String, String), Resource>,
    versions: HashMap<String, u64>,
    plans: HashMap<String, Plan>,
    workflows: BTreeMap<String, WorkflowRecord>,
    steps: HashMap<String, Vec<StepRecord>>,
    events: HashMap<String, Vec<Event>>,
    locks: HashMap<String, LockHolder>,
    audit: Vec<AuditEntry>,
    approvals: BTreeMap<String, ApprovalRequest>,
    workflow_versions: HashMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> StateResult<T>) -> StateResult<T> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| StateError::Backend("memory store mutex poisoned".into()))?;
        f(&mut inner)
    }
}

fn apply_change(inner: &mut Inner, change: &ResourceChange) {
    match change {
        ResourceChange::Put(resource) => {
            inner.resources.insert(
                (resource.workspace.clone(), resource.key.clone()),
                (**resource).clone(),
            );
            *inner
                .versions
                .entry(resource.workspace.clone())
                .or_default() += 1;
        }
        ResourceChange::Delete { workspace, key } => {
            if inner
                .resources
                .remove(&(workspace.clone(), key.clone()))
                .is_some()
            {
                *inner.versions.entry(workspace.clone()).or_default() += 1;
            }
        }
    }
}

#[async_trait]
impl StateStore for MemStore {
    async fn resources(&self, workspace: &str) -> StateResult<Vec<Resource>> {
        self.with(|i| {
            Ok(i.resources
                .iter()
                .filter(|((ws, _), _)| ws == workspace)
                .map(|(_, r)| r.clone())
                .collect())
        })
    }

    async fn resource(&self, workspace: &str, key: &str) -> StateResult<Option<Resource>> {
        self.with(|i| {
            Ok(i.resources
                .get(&(workspace.to_string(), key.to_string()))
                .cloned())
        })
    }

    async fn state_version(&self, workspace: &str) -> StateResult<u64> {
        self.with(|i| Ok(i.versions.get(workspace).copied().unwrap_or(0)))
    }

    async fn workspaces(&self) -> StateResult<Vec<String>> {
        self.with(|i| {
            let mut all: Vec<String> = i
                .resources
                .keys()
                .map(|(ws, _)| ws.clone())
                .chain(i.workflows.values().map(|w| w.workspace.clone()))
                .collect();
            all.sort();
            all.dedup();
            Ok(all)
        })
    }

    async fn save_plan(&self, plan: &Plan) -> StateResult<()> {
        self.with(|i| {
            i.plans.insert(plan.id.clone(), plan.clone());
            Ok(())
        })
    }

    async fn plan(&self, id: &str) -> StateResult<Option<Plan>> {
        self.with(|i| Ok(i.plans.get(id).cloned()))
    }

    async fn create_workflow(
        &self,
        workflow: &WorkflowRecord,
        steps: &[StepRecord],
    ) -> StateResult<()> {
        self.with(|i| {
            i.workflows.insert(workflow.id.clone(), workflow.clone());
            i.steps.insert(workflow.id.clone(), steps.to_vec());
            Ok(())
        })
    }

    async fn update_workflow(
        &self,
        workflow: &WorkflowRecord,
        event: Option<&Event>,
    ) -> StateResult<()> {
        self.with(|i| {
            i.workflows.insert(workflow.id.clone(), workflow.clone());
            if let Some(event) = event {
                i.events
                    .entry(workflow.id.clone())
                    .or_default()
                    .push(event.clone());
            }
            Ok(())
        })
    }

    async fn append_event(&self, event: &Event) -> StateResult<()> {
        self.with(|i| {
            i.events
                .entry(event.workflow.clone())
                .or_default()
                .push(event.clone());
            Ok(())
        })
    }

    async fn workflow(&self, id: &str) -> StateResult<Option<WorkflowRecord>> {
        self.with(|i| Ok(i.workflows.get(id).cloned()))
    }

    async fn workflows(&self, workspace: Option<&str>) -> StateResult<Vec<WorkflowRecord>> {
        self.with(|i| {
            let mut all: Vec<WorkflowRecord> = i
                .workflows
                .values()
                .filter(|w| workspace.is_none_or(|ws| w.workspace == ws))
                .cloned()
                .collect();
            all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
            Ok(all)
        })
    }

    async fn steps(&self, workflow: &str) -> StateResult<Vec<StepRecord>> {
        self.with(|i| Ok(i.steps.get(workflow).cloned().unwrap_or_default()))
    }

    async fn checkpoint(&self, checkpoint: &Checkpoint) -> StateResult<()> {
        self.with(|i| {
            let step = &checkpoint.step;
            let steps = i.steps.entry(step.workflow.clone()).or_default();
            match steps.get_mut(step.index) {
                Some(slot) => *slot = step.clone(),
                None => {
                    return Err(StateError::Backend(format!(
                        "checkpoint for unknown step {} of {}",
                        step.index, step.workflow
                    )));
                }
            }
            if let Some(change) = &checkpoint.resource {
                apply_change(i, change);
                let workspace = match change {
                    ResourceChange::Put(r) => &r.workspace,
                    ResourceChange::Delete { workspace, .. } => workspace,
                };
                let version = i.versions.get(workspace).copied().unwrap_or(0);
                i.workflow_versions.insert(step.workflow.clone(), version);
            }
            i.events
                .entry(step.workflow.clone())
                .or_default()
                .push(checkpoint.event.clone());
            Ok(())
        })
    }

    async fn workflow_state_version(&self, workflow: &str) -> StateResult<Option<u64>> {
        self.with(|i| Ok(i.workflow_versions.get(workflow).copied()))
    }

    async fn events(&self, workflow: &str, after_seq: u64) -> StateResult<Vec<Event>> {
        self.with(|i| {
            let mut events: Vec<Event> = i
                .events
                .get(workflow)
                .map(|e| e.iter().filter(|e| e.seq > after_seq).cloned().collect())
                .unwrap_or_default();
            events.sort_by_key(|e| e.seq);
            Ok(events)
        })
    }

    async fn request_cancel(&self, workflow: &str) -> StateResult<bool> {
        self.with(|i| match i.workflows.get_mut(workflow) {
            Some(w) => {
                w.cancel_requested = true;
                Ok(true)
            }
            None => Ok(false),
        })
    }

    async fn create_approval(&self, request: &ApprovalRequest) -> StateResult<()> {
        self.with(|i| {
            if i.approvals.contains_key(&request.id) {
                return Err(StateError::Backend(format!(
                    "approval request {} exists already",
                    request.id
                )));
            }
            i.approvals.insert(request.id.clone(), request.clone());
            Ok(())
        })
    }

    async fn update_approval(
        &self,
        request: &ApprovalRequest,
        expected_rev: u64,
    ) -> StateResult<bool> {
        self.with(|i| match i.approvals.get_mut(&request.id) {
            Some(current) if current.rev == expected_rev && request.rev != expected_rev => {
                *current = request.clone();
                Ok(true)
            }
            _ => Ok(false),
        })
    }

    async fn approval(&self, id: &str) -> StateResult<Option<ApprovalRequest>> {
        self.with(|i| Ok(i.approvals.get(id).cloned()))
    }

    async fn approvals(&self, plan_hash: Option<&str>) -> StateResult<Vec<ApprovalRequest>> {
        self.with(|i| {
            let mut out: Vec<ApprovalRequest> = i
                .approvals
                .values()
                .filter(|r| plan_hash.is_none_or(|h| r.plan_hash == h))
                .cloned()
                .collect();
            out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
            Ok(out)
        })
    }

    async fn acquire_lock(
        &self,
        holder: &LockHolder,
        now: u64,
    ) -> StateResult<Result<(), LockHolder>> {
        self.with(|i| match i.locks.get(&holder.workspace) {
            Some(current) if current.id != holder.id && current.lease_until > now => {
                Ok(Err(current.clone()))
            }
            _ => {
                i.locks.insert(holder.workspace.clone(), holder.clone());
                Ok(Ok(()))
            }
        })
    }

    async fn renew_lock(&self, holder: &LockHolder) -> StateResult<()> {
        self.with(|i| {
            if i.locks
                .get(&holder.workspace)
                .is_some_and(|l| l.id == holder.id)
            {
                i.locks.insert(holder.workspace.clone(), holder.clone());
            }
            Ok(())
        })
    }

    async fn release_lock(&self, workspace: &str, lock_id: &str) -> StateResult<()> {
        self.with(|i| {
            if i.locks.get(workspace).is_some_and(|l| l.id == lock_id) {
                i.locks.remove(workspace);
            }
            Ok(())
        })
    }

    async fn lock(&self, workspace: &str) -> StateResult<Option<LockHolder>> {
        self.with(|i| Ok(i.locks.get(workspace).cloned()))
    }

    async fn append_audit(&self, record: AuditRecord) -> StateResult<AuditEntry> {
        self.with(|i| {
            let entry = record.entry_after(i.audit.last().map(|e| (e.seq, e.hash.as_str())));
            i.audit.push(entry.clone());
            Ok(entry)
        })
    }

    async fn audit_log(&self) -> StateResult<(Vec<AuditEntry>, Option<(u64, String)>)> {
        self.with(|i| {
            let head = i.audit.last().map(|e| (e.seq, e.hash.clone()));
            Ok((i.audit.clone(), head))
        })
    }
}
