//! Unit tests of the policy engine: loading, validation errors, and a property test against a
//! reference function written from the policy text.

use proptest::prelude::*;

use super::*;

#[test]
fn a_decision_names_its_kind_and_the_policies_behind_it() {
    let r = |id: &str| PolicyRef {
        id: id.into(),
        description: String::new(),
    };
    let allow = Decision::Allow {
        policies: vec![r("operators-apply")],
    };
    let deny = Decision::Deny {
        reasons: vec![r("no-self-approval")],
    };
    let gated = Decision::NeedsApproval {
        gates: vec![
            r("prod-apply-needs-approval"),
            r("over-budget-needs-approval"),
        ],
    };
    assert!(allow.is_allow());
    assert!(!deny.is_allow());
    assert!(!gated.is_allow(), "a gated decision is not an allow");
    assert_eq!(allow.policy_ids(), ["operators-apply"]);
    assert_eq!(deny.policy_ids(), ["no-self-approval"]);
    assert_eq!(
        gated.policy_ids(),
        ["prod-apply-needs-approval", "over-budget-needs-approval"]
    );
}

#[test]
fn the_default_set_loads_and_every_policy_has_an_id_and_description() {
    let engine = PolicyEngine::defaults().unwrap();
    let policies = engine.policies();
    assert!(policies.len() >= 12, "{policies:?}");
    assert!(
        policies
            .iter()
            .all(|p| !p.id.is_empty() && !p.description.is_empty())
    );
    let gates: Vec<&str> = policies
        .iter()
        .filter(|p| p.gate)
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(
        gates,
        vec![
            "agent-dev-destroy-needs-approval",
            "destroy-needs-two-approvals",
            "over-budget-needs-approval",
            "prod-apply-needs-approval",
            "prod-deletes-need-two-approvals",
            "prod-rollback-deletes-need-two-approvals",
            "prod-rollback-needs-approval"
        ]
    );
}

#[test]
fn a_policy_that_fails_schema_validation_is_refused_with_its_id_and_file() {
    let bad = r#"
@id("typo")
@description("refers to an attribute that does not exist")
permit (principal, action, resource) when { resource.enviroment == "dev" };
"#;
    let err = PolicyEngine::from_files(&[("mine.cedar".into(), bad.into())]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`typo`") && text.contains("mine.cedar"),
        "{text}"
    );
    let no_id = r#"permit (principal, action, resource);"#;
    let err = PolicyEngine::from_files(&[("x.cedar".into(), no_id.into())]).unwrap_err();
    assert!(err.to_string().contains("@id"), "{err}");
    let dup = r#"
@id("a") @description("one") permit (principal, action, resource);
@id("a") @description("two") permit (principal, action, resource);
"#;
    let err = PolicyEngine::from_files(&[("d.cedar".into(), dup.into())]).unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");
}

#[test]
fn a_directory_extends_or_replaces_the_defaults() {
    let dir = std::env::temp_dir().join(format!("prov-policies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("freeze.cedar"),
        r#"@id("change-freeze") @description("no applies during the freeze")
forbid (principal, action == Provisioning::Action::"apply", resource);"#,
    )
    .unwrap();
    let extended = PolicyEngine::load(&PolicySource::Extend(dir.clone())).unwrap();
    assert!(extended.policies().iter().any(|p| p.id == "dev-permissive"));
    assert!(extended.policies().iter().any(|p| p.id == "change-freeze"));
    let replaced = PolicyEngine::load(&PolicySource::Replace(dir.clone())).unwrap();
    assert_eq!(replaced.policies().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The default policy text, restated as plain Rust: what the decision must be.
fn reference(r: &AuthRequest) -> &'static str {
    let f = &r.facts;
    let roles = r.principal.roles();
    let has = |role: &str| roles.iter().any(|x| x == role);
    let env = r.resource.environment.as_str();
    let is_agent = matches!(r.principal, Principal::Agent { .. });
    // Hard forbids.
    if !f.authenticated {
        return "deny";
    }
    if let Some(zones) = &r.resource.forbidden_zones
        && zones.iter().any(|z| f.zones.contains(z))
    {
        return "deny";
    }
    if has("viewer") && !r.action.is_read_only() {
        return "deny";
    }
    if r.action == Action::Approve {
        if is_agent {
            return "deny";
        }
        let acting_for = match &r.principal {
            Principal::User { id, .. } => id,
            Principal::Agent { acting_for, .. } => acting_for,
        };
        let own_agents_dev_request =
            env == "dev" && f.requested_by_agent && !is_agent && f.channel != "mcp";
        if f.requester.as_deref() == Some(acting_for.as_str()) && !own_agents_dev_request {
            return "deny";
        }
    }
    // Permits.
    let permitted = (env == "dev")
        || (env == "staging")
        || (env == "prod" && (has("operator") || has("approver")) && r.action != Action::Approve)
        || r.action.is_read_only()
        || (has("approver") && r.action == Action::Approve);
    if !permitted {
        return "deny";
    }
    // Gates.
    let mut gated = false;
    if r.action == Action::Apply && env == "prod" && f.approvals < 1 {
        gated = true;
    }
    if r.action == Action::Destroy && env != "dev" && f.approvals < 2 {
        gated = true;
    }
    if r.action == Action::Destroy && env == "dev" && is_agent && f.approvals < 1 {
        gated = true;
    }
    if r.action == Action::Apply && env == "prod" && f.deletes > 0 && f.approvals < 2 {
        gated = true;
    }
    if r.action == Action::Rollback && env == "prod" && f.approvals < 1 {
        gated = true;
    }
    if r.action == Action::Rollback && env == "prod" && f.deletes > 0 && f.approvals < 2 {
        gated = true;
    }
    let supports_budget = matches!(
        r.resource.kind,
        ResourceType::Workspace | ResourceType::Plan
    );
    if r.action == Action::Apply
        && supports_budget
        && r.resource
            .budget_cents
            .is_some_and(|b| f.cost_delta_cents > b)
        && f.approvals < 1
    {
        gated = true;
    }
    if gated { "needs_approval" } else { "allow" }
}

fn arb_request() -> impl Strategy<Value = AuthRequest> {
    let roles = prop::collection::vec(
        prop::sample::select(vec!["operator", "approver", "viewer", "developer"]),
        0..3,
    );
    let principal = (any::<bool>(), roles, 0..3usize).prop_map(|(agent, roles, who)| {
        let roles: Vec<String> = roles.into_iter().map(String::from).collect();
        let name = ["alice", "bob", "carol"][who].to_string();
        if agent {
            Principal::Agent {
                id: "claude".into(),
                acting_for: name,
                roles,
            }
        } else {
            Principal::User { id: name, roles }
        }
    });
    let resource = (
        prop::sample::select(vec![
            ResourceType::Workspace,
            ResourceType::Server,
            ResourceType::Plan,
            ResourceType::Cluster,
        ]),
        prop::sample::select(vec!["dev", "staging", "prod", "qa"]),
        prop::option::of(0i64..5_000),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["hel1", "fsn1", "us-east-1"]),
            0..2,
        )),
    )
        .prop_map(|(kind, env, budget, forbidden)| {
            let plan_like = matches!(kind, ResourceType::Workspace | ResourceType::Plan);
            Resource {
                kind,
                id: "r1".into(),
                environment: env.into(),
                owner: None,
                budget_cents: if plan_like { budget } else { None },
                forbidden_zones: if plan_like {
                    forbidden.map(|z| z.into_iter().map(String::from).collect())
                } else {
                    None
                },
                hash: (kind == ResourceType::Plan).then(|| "h".to_string()),
                zone: (kind == ResourceType::Server).then(|| "hel1".to_string()),
            }
        });
    let facts = (
        any::<bool>(),
        -2_000i64..10_000,
        0i64..3,
        0i64..3,
        prop::collection::vec(
            prop::sample::select(vec!["hel1", "fsn1", "us-east-1"]),
            0..2,
        ),
        prop::option::of(prop::sample::select(vec!["alice", "bob", "carol"])),
        (
            any::<bool>(),
            prop::sample::select(vec!["cli", "rest", "mcp"]),
        ),
    )
        .prop_map(
            |(authenticated, cost, deletes, approvals, zones, requester, (by_agent, channel))| {
                Facts {
                    authenticated,
                    channel: channel.into(),
                    requested_by_agent: by_agent,
                    mfa: false,
                    cost_delta_cents: cost,
                    deletes,
                    replacements: 0,
                    prod_resources_touched: deletes,
                    zones: zones.into_iter().map(String::from).collect(),
                    approvals,
                    requester: requester.map(String::from),
                }
            },
        );
    (
        principal,
        prop::sample::select(Action::ALL.to_vec()),
        resource,
        facts,
    )
        .prop_map(|(principal, action, resource, facts)| AuthRequest {
            principal,
            action,
            resource,
            facts,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn decisions_agree_with_the_reference_function(request in arb_request()) {
        static ENGINE: std::sync::OnceLock<PolicyEngine> = std::sync::OnceLock::new();
        let engine = ENGINE.get_or_init(|| PolicyEngine::defaults().unwrap());
        let decision = engine.decide(&request).unwrap();
        prop_assert_eq!(decision.kind(), reference(&request), "{:?}\n{:?}", request, decision);
    }
}

#[test]
fn approvals_count_only_for_this_hash_unexpired_unused_and_not_by_the_requester() {
    let rec = |id: &str, hash: &str, approver: &str, expires_at: u64, used: bool| ApprovalRecord {
        id: id.into(),
        plan_hash: hash.into(),
        approver: approver.into(),
        expires_at,
        used,
    };
    let records = vec![
        rec("1", "h", "bob", 2_000, false),
        rec("2", "h", "bob", 2_000, false), // same approver twice counts once
        rec("3", "other", "carol", 2_000, false),
        rec("4", "h", "dave", 900, false),    // expired
        rec("5", "h", "erin", 2_000, true),   // already used
        rec("6", "h", "alice", 2_000, false), // the requester
        rec("7", "h", "frank", 2_000, false),
    ];
    assert_eq!(count_valid(&records, "h", &["alice"], 1_000), 2);
    assert_eq!(count_valid(&records, "h", &["frank"], 1_000), 2);
    assert_eq!(count_valid(&records, "nope", &[], 1_000), 0);
}

#[test]
fn approvals_needed_reads_the_threshold_from_the_gates() {
    let engine = PolicyEngine::defaults().unwrap();
    let request = |env: &str, action: Action, roles: &[&str], deletes: i64| AuthRequest {
        principal: Principal::User {
            id: "alice".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        },
        action,
        resource: Resource {
            kind: ResourceType::Plan,
            id: "plan-1".into(),
            environment: env.into(),
            owner: None,
            budget_cents: None,
            forbidden_zones: None,
            hash: Some("h".into()),
            zone: None,
        },
        facts: Facts {
            authenticated: true,
            channel: "cli".into(),
            deletes,
            ..Facts::default()
        },
    };
    let needed = |r: AuthRequest| engine.approvals_needed(&r).unwrap();
    assert_eq!(needed(request("dev", Action::Apply, &[], 0)), Some(0));
    assert_eq!(
        needed(request("prod", Action::Apply, &["operator"], 0)),
        Some(1)
    );
    assert_eq!(
        needed(request("prod", Action::Apply, &["operator"], 3)),
        Some(2)
    );
    // A person's own dev destroy needs none (the CLI confirms); staging and prod need two.
    assert_eq!(needed(request("dev", Action::Destroy, &[], 0)), Some(0));
    assert_eq!(needed(request("staging", Action::Destroy, &[], 0)), Some(2));
    assert_eq!(needed(request("prod", Action::Apply, &["viewer"], 0)), None);
    assert_eq!(needed(request("prod", Action::Apply, &[], 0)), None);
}

/// The deepest and longest text `bounds` admits parses, validates and decides on a thread with
/// the stack of a tokio worker (2 MiB), where requests are decided.
#[test]
fn the_worst_text_the_bounds_admit_decides_on_a_small_stack() {
    // `when {` and the `(` after the negations are two levels.
    let n = bounds::MAX_NESTING - 2;
    let nested = format!("{}context.deletes > 0{}", "(".repeat(n), ")".repeat(n));
    let chain = " && context.deletes > 0".repeat(bounds::MAX_OPERATORS / 3 - n);
    let ifs = "if context.deletes > 0 then true else ".repeat(bounds::MAX_IFS / 2);
    let text = format!(
        "@id(\"worst\")\n@description(\"at the limits\")\nforbid(principal, action, resource) when {{ {ifs} !!!!({nested}{chain}) }};"
    );
    bounds::check("worst.cedar", &text).unwrap();
    let decided = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let engine = PolicyEngine::defaults_with("worst.cedar", &text).unwrap();
            let request = AuthRequest {
                principal: Principal::User {
                    id: "alice".into(),
                    roles: vec!["operator".into()],
                },
                action: Action::Apply,
                resource: Resource {
                    kind: ResourceType::Plan,
                    id: "plan-1".into(),
                    environment: "dev".into(),
                    owner: None,
                    budget_cents: None,
                    forbidden_zones: None,
                    hash: Some("h".into()),
                    zone: None,
                },
                facts: Facts {
                    authenticated: true,
                    channel: "cli".into(),
                    deletes: 1,
                    ..Facts::default()
                },
            };
            engine.decide(&request).unwrap().kind()
        })
        .unwrap()
        .join()
        .unwrap();
    // Every branch holds with one delete, so the forbid applies.
    assert_eq!(decided, "deny");
}

#[test]
fn a_policy_that_errors_at_evaluation_denies_and_is_named() {
    // Overflows for any cost increase of 2 cents or more: Cedar reports an evaluation error for
    // this forbid and, left alone, would skip it and allow the dev apply.
    let dir = std::env::temp_dir().join(format!("prov-policies-err-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("overflow.cedar"),
        r#"@id("cost-overflows") @description("a cost rule with an arithmetic overflow")
forbid (principal, action == Provisioning::Action::"apply", resource)
when { context.cost_delta_cents * 9223372036854775807 > 0 };"#,
    )
    .unwrap();
    let engine = PolicyEngine::load(&PolicySource::Extend(dir.clone())).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let request = |cost_delta_cents: i64| AuthRequest {
        principal: Principal::User {
            id: "alice".into(),
            roles: Vec::new(),
        },
        action: Action::Apply,
        resource: Resource {
            kind: ResourceType::Plan,
            id: "plan-1".into(),
            environment: "dev".into(),
            owner: None,
            budget_cents: None,
            forbidden_zones: None,
            hash: Some("h".into()),
            zone: None,
        },
        facts: Facts {
            authenticated: true,
            channel: "cli".into(),
            cost_delta_cents,
            ..Facts::default()
        },
    };
    // No overflow: the forbid does not apply, dev is permissive.
    assert!(engine.decide(&request(0)).unwrap().is_allow());
    match engine.decide(&request(500)).unwrap() {
        Decision::Deny { reasons } => {
            assert_eq!(reasons.len(), 1, "{reasons:?}");
            assert_eq!(reasons[0].id, "cost-overflows");
            assert!(
                reasons[0].description.contains("could not be evaluated")
                    && reasons[0].description.contains("overflow"),
                "{}",
                reasons[0].description
            );
        }
        other => panic!("an erroring forbid must deny, got {other:?}"),
    }
}
