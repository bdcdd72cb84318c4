//! Cancel, resume and rollback as policy decisions: viewers may not, a prod rollback waits for
//! approvals, a resume is refused once the workspace changed, and what a person may approve out
//! of band for their own agent.

use super::*;
use crate::authz::CedarAuthorizer;
use policies::{Action, ApprovalStatus, LivePolicies, PolicySource};

fn who(text: &str) -> Caller {
    Caller::parse(text, "cli").unwrap()
}

/// SurrealDB in memory, the default Cedar policies, a sim provider failing `fail`.
async fn engine_failing(fail: &[&str]) -> (Engine, Arc<SimProvider>) {
    let store = SurrealStore::open(StoreLocation::Memory).await.unwrap();
    let policies = LivePolicies::open(PolicySource::Defaults).unwrap();
    let sim = Arc::new(SimProvider::in_memory(failing(fail)));
    let engine = Engine::new(Arc::new(store), Providers::new().with(sim.clone()))
        .with_clock(Arc::new(ManualClock::starting_at(1_000_000)))
        .with_rng(Arc::new(SeededRng::new(5)))
        .with_authorizer(Arc::new(CedarAuthorizer::new(Arc::new(policies))));
    (engine, sim)
}

async fn audit_kinds(engine: &Engine, subject: &str) -> Vec<(String, String, String)> {
    let (log, _) = engine.store.audit_log().await.unwrap();
    log.into_iter()
        .filter(|e| e.subject == subject)
        .map(|e| {
            let action = e.data["action"].as_str().unwrap_or("").to_string();
            (e.kind, e.actor, action)
        })
        .collect()
}

#[tokio::test]
async fn viewers_may_not_cancel_resume_or_roll_back_and_a_prod_rollback_waits_for_two_approvals() {
    let (engine, _) = engine_failing(&["node-2"]).await;
    let alice = who("user:alice:operator");
    let mut cfg = config("shop", 3, &[]);
    cfg.workspace.environment = Environment::Prod;
    cfg.workflow.retry.max_attempts = 1;
    let plan = engine.plan(&cfg).await.unwrap();
    let request = match engine.start(&plan.id, &alice).await {
        Err(ExecError::NeedsApproval { request, .. }) => *request,
        other => panic!("expected the approval gate, got {other:?}"),
    };
    engine
        .approve(&request.id, &who("user:bob:approver"), "ok")
        .await
        .unwrap();
    let failed = match engine.apply(&plan.id, &alice).await.unwrap() {
        ApplyResult::Ran(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(failed.status, WorkflowStatus::Failed, "{failed:?}");
    let wf = failed.workflow.clone();

    // A viewer: each refusal names the deciding policy and is recorded as a denial.
    let vic = who("user:vic:viewer");
    for err in [
        engine.resume(&wf, &vic).await.unwrap_err(),
        engine.rollback(&wf, &vic).await.unwrap_err(),
    ] {
        assert!(matches!(err, ExecError::NotAllowed(_)), "{err}");
        assert!(err.to_string().contains("viewer-read-only"), "{err}");
    }
    let kinds = audit_kinds(&engine, &wf).await;
    assert!(
        kinds.contains(&("denial".into(), "user:vic".into(), "resume".into())),
        "{kinds:?}"
    );
    let plan_kinds = audit_kinds(&engine, &plan.id).await;
    assert!(
        plan_kinds.contains(&("denial".into(), "user:vic".into(), "rollback".into())),
        "{plan_kinds:?}"
    );

    // The operator's rollback deletes prod servers: it is gated like an apply that does.
    let gated = match engine.rollback(&wf, &alice).await {
        Err(ExecError::NeedsApproval { request, message }) => {
            assert!(message.contains(&request.id), "{message}");
            *request
        }
        other => panic!("expected the rollback to wait for approval, got {other:?}"),
    };
    assert_eq!(gated.action, Action::Rollback);
    assert_eq!(gated.plan_hash, plan.hash);
    assert_eq!(gated.required, 2);
    assert!(
        gated
            .gates
            .iter()
            .any(|g| g.id == "prod-rollback-deletes-need-two-approvals"),
        "{:?}",
        gated.gates
    );
    // The apply's used approval does not count for the rollback; nothing was undone yet.
    assert_eq!(
        engine.workflow(&wf).await.unwrap().status,
        WorkflowStatus::Failed
    );
    engine
        .approve(&gated.id, &who("user:bob:approver"), "ok")
        .await
        .unwrap();
    let err = engine.rollback(&wf, &alice).await.unwrap_err();
    assert!(matches!(err, ExecError::NeedsApproval { .. }), "{err}");
    engine
        .approve(&gated.id, &who("user:carol:approver"), "ok")
        .await
        .unwrap();
    let rolled = engine.rollback(&wf, &alice).await.unwrap();
    assert_eq!(rolled.status, WorkflowStatus::RolledBack, "{rolled:?}");
    let used = engine.approval(&gated.id).await.unwrap();
    assert_eq!(used.status, ApprovalStatus::Used);
    assert!(engine.store.resources("shop").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_resume_is_refused_once_someone_else_changed_the_workspace() {
    let (engine, _) = engine_failing(&["node-1"]).await;
    let me = who("user:dev");
    let mut cfg = config("ws", 2, &[]);
    cfg.workflow.retry.max_attempts = 1;
    cfg.workflow.on_failure = OnFailure::Fail;
    let plan = engine.plan(&cfg).await.unwrap();
    let failed = ran_as(&engine, &plan, &me).await;
    assert_eq!(failed.status, WorkflowStatus::Failed, "{failed:?}");

    // Another apply writes to the same workspace meanwhile.
    let other = engine.plan(&config("ws", 1, &["redis"])).await.unwrap();
    let done = ran_as(&engine, &other, &me).await;
    assert_eq!(done.status, WorkflowStatus::Succeeded, "{done:?}");

    let err = engine.resume(&failed.workflow, &me).await.unwrap_err();
    assert!(
        matches!(err, ExecError::WorkspaceChanged { .. }),
        "expected a refusal, got {err}"
    );
    assert!(err.to_string().contains("plan again"), "{err}");
    let kinds = audit_kinds(&engine, &failed.workflow).await;
    assert!(
        kinds.contains(&("denial".into(), "user:dev".into(), "resume".into())),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_person_alone_approves_their_agents_dev_request_out_of_band_but_not_in_prod() {
    let (engine, _) = engine_failing(&[]).await;
    let cfg = config("lab", 2, &[]);
    let dana = who("user:dana");
    let up = engine.plan(&cfg).await.unwrap();
    assert_eq!(
        ran_as(&engine, &up, &dana).await.status,
        WorkflowStatus::Succeeded
    );

    // Their assistant's dev destroy waits for one approval...
    let agent = Caller::parse("agent:mcp@dana", "mcp").unwrap();
    let down = engine.plan_destroy(&cfg).await.unwrap();
    let request = match engine.start(&down.id, &agent).await {
        Err(ExecError::NeedsApproval { request, .. }) => *request,
        other => panic!("expected the approval gate, got {other:?}"),
    };
    assert_eq!(request.required, 1);
    assert_eq!(request.gates[0].id, "agent-dev-destroy-needs-approval");
    // ...which dana does not give in the conversation (over MCP)...
    let in_chat = Caller::parse("user:dana", "mcp").unwrap();
    let err = engine
        .approve(&request.id, &in_chat, "ok")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-self-approval"), "{err}");
    // ...but out of band, at the CLI; then the assistant's destroy runs.
    engine.approve(&request.id, &dana, "mine").await.unwrap();
    let outcome = ran_as(&engine, &down, &agent).await;
    assert_eq!(outcome.status, WorkflowStatus::Succeeded, "{outcome:?}");
    assert!(engine.store.resources("lab").await.unwrap().is_empty());

    // Their own dev destroy needs no approval at all (the CLI asks for a confirmation).
    assert_eq!(
        ran_as(&engine, &engine.plan(&cfg).await.unwrap(), &dana)
            .await
            .status,
        WorkflowStatus::Succeeded
    );
    let own = engine.plan_destroy(&cfg).await.unwrap();
    assert_eq!(
        ran_as(&engine, &own, &dana).await.status,
        WorkflowStatus::Succeeded
    );

    // In prod an agent's request is its person's: they cannot approve it themselves.
    let mut prod = config("shop", 1, &[]);
    prod.workspace.environment = Environment::Prod;
    let plan = engine.plan(&prod).await.unwrap();
    let operator_agent = Caller::parse("agent:mcp@dana:operator", "mcp").unwrap();
    let request = match engine.start(&plan.id, &operator_agent).await {
        Err(ExecError::NeedsApproval { request, .. }) => *request,
        other => panic!("expected the approval gate, got {other:?}"),
    };
    let err = engine
        .approve(&request.id, &who("user:dana:approver"), "mine")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-self-approval"), "{err}");
}

async fn ran_as(engine: &Engine, plan: &Plan, who: &Caller) -> RunOutcome {
    match engine.apply(&plan.id, who).await {
        Ok(ApplyResult::Ran(outcome)) => outcome,
        other => panic!("expected a run, got {other:?}"),
    }
}
