//! Counters for `/metrics` (Prometheus text), kept as things happen: HTTP answers by status
//! class, refusals at the edge, workflows started and finished by outcome (from the engine's
//! live events), approval decisions (reported by the REST handlers through a response
//! extension). Rendering reads the counters only; it never scans the state store. Counters
//! start at zero when the server starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use service::App;
use service::model::EventKind;

/// Something a handler did that `/metrics` counts; a handler puts it in its response's
/// extensions and the counting layer picks it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    ApprovalGranted,
    ApprovalRejected,
}

#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Answers by status class; index 1 is 1xx ... 5 is 5xx.
    by_class: [AtomicU64; 6],
    pub(super) refused_host: AtomicU64,
    pub(super) refused_origin: AtomicU64,
    pub(super) unauthorized: AtomicU64,
    pub(super) limited_principal: AtomicU64,
    pub(super) limited_address: AtomicU64,
    pub(super) panics: AtomicU64,
    approvals_granted: AtomicU64,
    approvals_rejected: AtomicU64,
    workflows_started: AtomicU64,
    workflows_resumed: AtomicU64,
    workflows_finished: Mutex<BTreeMap<&'static str, u64>>,
    events_missed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            by_class: Default::default(),
            refused_host: AtomicU64::new(0),
            refused_origin: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            limited_principal: AtomicU64::new(0),
            limited_address: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            approvals_granted: AtomicU64::new(0),
            approvals_rejected: AtomicU64::new(0),
            workflows_started: AtomicU64::new(0),
            workflows_resumed: AtomicU64::new(0),
            workflows_finished: Mutex::new(BTreeMap::new()),
            events_missed: AtomicU64::new(0),
        }
    }
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The counting layer: the answer's status class and whatever the handler reported.
pub async fn count(State(m): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let class = (response.status().as_u16() / 100).min(5) as usize;
    bump(&m.by_class[class]);
    match response.extensions().get::<Happened>() {
        Some(Happened::ApprovalGranted) => bump(&m.approvals_granted),
        Some(Happened::ApprovalRejected) => bump(&m.approvals_rejected),
        None => {}
    }
    response
}

/// Follows the live workflow events for as long as the application lives: workflows started,
/// resumed and finished (the outcome read once per finished workflow).
pub fn follow(app: Arc<App>, m: Arc<Metrics>) {
    let mut events = app.subscribe();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(e) => match e.kind {
                    EventKind::WorkflowStarted => bump(&m.workflows_started),
                    EventKind::WorkflowResumed => bump(&m.workflows_resumed),
                    EventKind::WorkflowFinished => {
                        let outcome = match app.workflow(&e.workflow).await {
                            Ok(view) => view.workflow.status.as_str(),
                            Err(_) => "unknown",
                        };
                        *m.workflows_finished
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry(outcome)
                            .or_default() += 1;
                    }
                    _ => {}
                },
                Err(RecvError::Lagged(n)) => {
                    m.events_missed.fetch_add(n, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// The counters in Prometheus text format.
pub async fn render(State(m): State<Arc<Metrics>>) -> Response {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |c: &AtomicU64| vec![(String::new(), load(c))];
    let classes: Vec<_> = (1..=5)
        .map(|i| (format!("{{class=\"{i}xx\"}}"), load(&m.by_class[i])))
        .collect();
    family(
        "provisioning_http_requests_total",
        "counter",
        "HTTP requests answered, by status class.",
        &classes,
    );
    family(
        "provisioning_http_refused_total",
        "counter",
        "Requests refused before authentication: unknown Host (421) or foreign Origin (403).",
        &[
            ("{reason=\"host\"}".into(), load(&m.refused_host)),
            ("{reason=\"origin\"}".into(), load(&m.refused_origin)),
        ],
    );
    family(
        "provisioning_http_unauthorized_total",
        "counter",
        "Requests with a missing or unknown bearer token (401).",
        &one(&m.unauthorized),
    );
    family(
        "provisioning_http_rate_limited_total",
        "counter",
        "Requests refused with 429, by whose bucket was empty.",
        &[
            ("{by=\"principal\"}".into(), load(&m.limited_principal)),
            ("{by=\"address\"}".into(), load(&m.limited_address)),
        ],
    );
    family(
        "provisioning_http_panics_total",
        "counter",
        "Request handlers that panicked (answered 500; the server kept running).",
        &one(&m.panics),
    );
    family(
        "provisioning_approval_decisions_total",
        "counter",
        "Approval requests granted or rejected through this server.",
        &[
            ("{decision=\"granted\"}".into(), load(&m.approvals_granted)),
            (
                "{decision=\"rejected\"}".into(),
                load(&m.approvals_rejected),
            ),
        ],
    );
    family(
        "provisioning_workflows_started_total",
        "counter",
        "Workflows started (resumed ones counted apart).",
        &[
            ("{how=\"new\"}".into(), load(&m.workflows_started)),
            ("{how=\"resumed\"}".into(), load(&m.workflows_resumed)),
        ],
    );
    let finished: Vec<_> = m
        .workflows_finished
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(outcome, n)| (format!("{{outcome=\"{outcome}\"}}"), *n))
        .collect();
    family(
        "provisioning_workflows_finished_total",
        "counter",
        "Workflow runs finished, by outcome.",
        &finished,
    );
    family(
        "provisioning_workflow_events_missed_total",
        "counter",
        "Live events these counters missed because they fell behind.",
        &one(&m.events_missed),
    );
    let _ = writeln!(
        out,
        "# HELP provisioning_uptime_seconds Seconds since the server started.\n# TYPE provisioning_uptime_seconds gauge\nprovisioning_uptime_seconds {:.3}",
        m.started.elapsed().as_secs_f64()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
