//! Approvals in the engine: never your own, single use, bound to the plan hash, expiring; a
//! rejection needs a comment and stops that exact plan; destroys outside dev need two; updates
//! are compare-and-set in both stores.

use super::*;
use crate::authz::CedarAuthorizer;
use policies::{ApprovalStatus, LivePolicies, PolicySource};

fn who(text: &str) -> Caller {
    Caller::parse(text, "cli").unwrap()
}

/// The real SurrealDB engine in memory, the default Cedar policies, a manual clock.
async fn gated_engine() -> (Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_at(1_000_000));
    let store = SurrealStore::open(StoreLocation::Memory).await.unwrap();
    let policies = LivePolicies::open(PolicySource::Defaults).unwrap();
    let sim = Arc::new(SimProvider::in_memory(SimOptions::default()));
    let engine = Engine::new(Arc::new(store), Providers::new().with(sim))
        .with_clock(clock.clone())
        .with_rng(Arc::new(SeededRng::new(11)))
        .with_authorizer(Arc::new(CedarAuthorizer::new(Arc::new(policies))));
    (engine, clock)
}

fn prod(servers: usize) -> Config {
    let mut c = config("shop", servers, &[]);
    c.workspace.environment = Environment::Prod;
    c
}

async fn gate(engine: &Engine, plan: &Plan, caller: &Caller) -> policies::ApprovalRequest {
    match engine.start(&plan.id, caller).await {
        Err(ExecError::NeedsApproval { request, message }) => {
            assert!(message.contains(&request.id), "{message}");
            *request
        }
        other => panic!("expected the approval gate, got {other:?}"),
    }
}

/// The engine's own check behind the policies: with a policy set that permits everything
/// (no `no-self-approval`), a person still cannot approve their own request, nor their
/// agent's outside dev, nor over MCP; only their agent's dev request, out of band.
#[tokio::test]
async fn self_approval_is_refused_even_when_the_policies_would_allow_it() {
    let dir = std::env::temp_dir().join(format!("prov-permissive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("all.cedar"),
        r#"@id("test-permits-everything")
@description("test: every principal may do everything")
permit (principal, action, resource);

@id("test-gate")
@description("test: every apply needs one approval")
@gate("approval")
forbid (principal, action == Provisioning::Action::"apply", resource)
unless { context.approvals >= 1 };
"#,
    )
    .unwrap();
    let clock = Arc::new(ManualClock::starting_at(1_000_000));
    let store = SurrealStore::open(StoreLocation::Memory).await.unwrap();
    let policies = LivePolicies::open(PolicySource::Replace(dir.clone())).unwrap();
    let sim = Arc::new(SimProvider::in_memory(SimOptions::default()));
    let engine = Engine::new(Arc::new(store), Providers::new().with(sim))
        .with_clock(clock)
        .with_rng(Arc::new(SeededRng::new(12)))
        .with_authorizer(Arc::new(CedarAuthorizer::new(Arc::new(policies))));
    let _ = std::fs::remove_dir_all(&dir);
    let alice = who("user:alice:operator,approver");

    // Her own prod request.
    let plan = engine.plan(&prod(1)).await.unwrap();
    let own = gate(&engine, &plan, &alice).await;
    let err = engine.approve(&own.id, &alice, "").await.unwrap_err();
    assert!(err.to_string().contains("cannot approve it"), "{err}");

    // Her agent's prod request, approved by her at the CLI: still hers.
    let agent = who("agent:mcp@alice:operator");
    let mut c = prod(2);
    c.workspace.name = "shop2".into();
    let plan = engine.plan(&c).await.unwrap();
    let agents = gate(&engine, &plan, &agent).await;
    let err = engine.approve(&agents.id, &alice, "").await.unwrap_err();
    assert!(err.to_string().contains("cannot approve it"), "{err}");

    // Her agent's dev request: over MCP no, out of band yes.
    let plan = engine.plan(&config("lab", 1, &[])).await.unwrap();
    let dev = gate(&engine, &plan, &agent).await;
    let over_mcp = Caller::parse("user:alice:operator,approver", "mcp").unwrap();
    let err = engine.approve(&dev.id, &over_mcp, "").await.unwrap_err();
    assert!(err.to_string().contains("cannot approve it"), "{err}");
    assert!(engine.approve(&dev.id, &alice, "mine").await.is_ok());

    // Asking policy before asking the person (a preflight) records what is not an allow.
    let mut c = prod(1);
    c.workspace.name = "shop3".into();
    let plan = engine.plan(&c).await.unwrap();
    let before = engine.store.audit_log().await.unwrap().0.len();
    let auth = engine.preflight(&plan, &alice).await.unwrap();
    assert_eq!(auth.decision.kind(), "needs_approval");
    let (log, _) = engine.store.audit_log().await.unwrap();
    let new: Vec<&str> = log[before..].iter().map(|e| e.kind.as_str()).collect();
    assert!(new.contains(&"gated"), "{new:?}");
    assert!(
        engine
            .approvals(None)
            .await
            .unwrap()
            .iter()
            .all(|r| r.id == dev.id || r.approvals.is_empty())
    );
}

#[tokio::test]
async fn a_prod_apply_waits_for_another_persons_approval_which_is_single_use() {
    let (engine, _) = gated_engine().await;
    let alice = who("user:alice:operator");
    let bob = who("user:bob:approver");
    let plan = engine.plan(&prod(2)).await.unwrap();
    let request = gate(&engine, &plan, &alice).await;
    assert_eq!(request.required, 1);
    assert_eq!(request.requester, "alice");
    assert_eq!(request.plan_hash, plan.hash);
    assert_eq!(request.gates[0].id, "prod-apply-needs-approval");
    // Asking again reuses the open request instead of piling up new ones.
    assert_eq!(gate(&engine, &plan, &alice).await.id, request.id);
    assert_eq!(engine.approvals(None).await.unwrap().len(), 1);

    // Nobody approves their own request; a viewer and an agent cannot approve either.
    let err = engine.approve(&request.id, &alice, "").await.unwrap_err();
    assert!(err.to_string().contains("no-self-approval"), "{err}");
    let err = engine
        .approve(&request.id, &who("user:vic:viewer"), "")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("viewer-read-only"), "{err}");
    let err = engine
        .approve(&request.id, &who("agent:claude@bob:approver"), "")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("agents-never-approve"), "{err}");
    // ...and none of that was recorded.
    assert!(
        engine
            .approval(&request.id)
            .await
            .unwrap()
            .approvals
            .is_empty()
    );

    let approved = engine.approve(&request.id, &bob, "ok").await.unwrap();
    assert_eq!(
        approved.status_at(engine.clock.now_ms()),
        ApprovalStatus::Approved
    );
    let err = engine.approve(&request.id, &bob, "").await.unwrap_err();
    assert!(err.to_string().contains("already approved"), "{err}");

    let outcome = match engine.apply(&plan.id, &alice).await.unwrap() {
        ApplyResult::Ran(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(outcome.status, WorkflowStatus::Succeeded);
    let used = engine.approval(&request.id).await.unwrap();
    assert_eq!(used.status, ApprovalStatus::Used);
    assert_eq!(used.used_by.as_deref(), Some(outcome.workflow.as_str()));
    // Replaying the approval is refused.
    let err = engine
        .approve(&request.id, &who("user:carol:approver"), "")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("single use"), "{err}");

    // The audit log tells the story, in order, and verifies.
    let (entries, _) = engine.store.audit_log().await.unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    for expected in [
        "approval_requested",
        "gated",
        "approval_denied",
        "approval_granted",
        "approval_used",
        "decision",
    ] {
        assert!(kinds.contains(&expected), "{expected} missing in {kinds:?}");
    }
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(pos("approval_requested") < pos("approval_granted"));
    assert!(pos("approval_granted") < pos("approval_used"));
}

#[tokio::test]
async fn approvals_bind_to_the_plan_hash_expire_and_exclude_the_applier() {
    let (engine, clock) = gated_engine().await;
    let alice = who("user:alice:operator");
    let bob = who("user:bob:approver");
    let plan = engine.plan(&prod(1)).await.unwrap();
    let request = gate(&engine, &plan, &alice).await;
    engine.approve(&request.id, &bob, "").await.unwrap();

    // A different config is a different plan: the approval does not carry over.
    let other = engine.plan(&prod(2)).await.unwrap();
    assert_ne!(other.hash, plan.hash);
    let second = gate(&engine, &other, &alice).await;
    assert_ne!(second.id, request.id);

    // Bob approved, so bob applying does not count his own approval.
    let err = engine.start(&plan.id, &bob).await.unwrap_err();
    assert!(matches!(err, ExecError::NeedsApproval { .. }), "{err}");

    // After the request's time runs out, its approval no longer counts.
    clock.advance(engine.approval_ttl + Duration::from_secs(1));
    let err = engine.approve(&second.id, &bob, "").await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let fresh = gate(&engine, &plan, &alice).await;
    assert_ne!(fresh.id, request.id, "an expired request is replaced");
    assert!(fresh.approvals.is_empty());
}

#[tokio::test]
async fn a_rejection_needs_a_comment_and_stops_that_exact_plan() {
    let (engine, _) = gated_engine().await;
    let alice = who("user:alice:operator");
    let bob = who("user:bob:approver");
    let plan = engine.plan(&prod(1)).await.unwrap();
    let request = gate(&engine, &plan, &alice).await;
    let err = engine.reject(&request.id, &bob, "  ").await.unwrap_err();
    assert!(err.to_string().contains("needs a comment"), "{err}");
    engine
        .reject(&request.id, &bob, "not during the sale")
        .await
        .unwrap();
    let err = engine.start(&plan.id, &alice).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("rejected by bob") && text.contains("not during the sale"),
        "{text}"
    );
    let err = engine
        .approve(&request.id, &who("user:carol:approver"), "")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rejected"), "{err}");
    let err = engine.approve("apr-nope", &bob, "").await.unwrap_err();
    assert!(
        err.to_string().contains(&request.id),
        "names known ids: {err}"
    );
}

#[tokio::test]
async fn a_destroy_outside_dev_needs_two_approvals() {
    let (engine, _) = gated_engine().await;
    let alice = who("user:alice");
    let mut cfg = config("lab", 1, &[]);
    cfg.workspace.environment = Environment::Staging;
    let plan = engine.plan(&cfg).await.unwrap();
    assert!(matches!(
        engine.apply(&plan.id, &alice).await.unwrap(),
        ApplyResult::Ran(_)
    ));
    let destroy = engine.plan_destroy(&cfg).await.unwrap();
    assert_eq!(destroy.intent, crate::plan::Intent::Destroy);
    let request = gate(&engine, &destroy, &alice).await;
    assert_eq!(request.required, 2);
    engine
        .approve(&request.id, &who("user:bob"), "")
        .await
        .unwrap();
    let err = engine.start(&destroy.id, &alice).await.unwrap_err();
    assert!(
        matches!(err, ExecError::NeedsApproval { .. }),
        "one is not enough: {err}"
    );
    engine
        .approve(&request.id, &who("user:carol"), "")
        .await
        .unwrap();
    match engine.apply(&destroy.id, &alice).await.unwrap() {
        ApplyResult::Ran(o) => assert_eq!(o.status, WorkflowStatus::Succeeded),
        other => panic!("{other:?}"),
    }
    assert!(engine.store.resources("lab").await.unwrap().is_empty());
}

#[tokio::test]
async fn approval_updates_are_compare_and_set_in_both_stores() {
    let (engine, _) = gated_engine().await;
    let plan = engine.plan(&prod(1)).await.unwrap();
    let request = gate(&engine, &plan, &who("user:alice:operator")).await;
    let stores: Vec<Arc<dyn StateStore>> = vec![engine.store.clone(), Arc::new(MemStore::new())];
    for store in stores {
        if store.approval(&request.id).await.unwrap().is_none() {
            store.create_approval(&request).await.unwrap();
        }
        let mut next = request.clone();
        next.rev = 1;
        next.status = ApprovalStatus::Used;
        assert!(store.update_approval(&next, 0).await.unwrap());
        let mut late = request.clone();
        late.rev = 1;
        assert!(
            !store.update_approval(&late, 0).await.unwrap(),
            "a stale rev must lose"
        );
        assert_eq!(
            store.approval(&request.id).await.unwrap().unwrap().status,
            ApprovalStatus::Used
        );
    }
}
