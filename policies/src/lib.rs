//! Cedar authorization for Provisioning. A request (principal, action, resource, facts) gets
//! [`Decision::Allow`], [`Decision::Deny`] with the deciding policies, or
//! [`Decision::NeedsApproval`] with the gates to clear. Gates are ordinary `forbid ... unless {
//! context.approvals >= N }` policies annotated `@gate("approval")`: policy authors, not code,
//! decide where approvals are needed.
//!
//! The default policy set and the schema ship in this crate (`default/*.cedar`,
//! `provisioning.cedarschema`); they are validated against the schema when loaded, and a
//! policy that fails validation is an error naming the policy and the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, Policy, PolicyId, PolicySet, Request, Schema,
    ValidationMode, Validator,
};
use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

mod approvals;
pub mod audit;
pub mod bounds;
pub mod canonical;
mod live;
pub use approvals::{ApprovalRecord, ApprovalRequest, ApprovalStatus, Verdict, count_valid};
pub use live::LivePolicies;

static DEFAULT_POLICIES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/default");
/// The Cedar schema every policy is validated against.
pub const SCHEMA: &str = include_str!("../provisioning.cedarschema");
const NS: &str = "Provisioning";
/// Stack of the thread that parses and validates policy text.
const PARSE_STACK: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the Cedar schema does not parse: {0}")]
    Schema(String),
    #[error("{file}: policy does not parse: {message}")]
    Parse { file: String, message: String },
    #[error(
        "{file}: {what}; split it into simpler policies (limits: {} bytes, {} nested brackets, {} operators and {} `if`s per policy)",
        bounds::MAX_TEXT_BYTES,
        bounds::MAX_NESTING,
        bounds::MAX_OPERATORS,
        bounds::MAX_IFS
    )]
    TooComplex { file: String, what: String },
    #[error(
        "{file}: a policy has no @id annotation; every policy needs @id(\"...\") and @description(\"...\")"
    )]
    MissingId { file: String },
    #[error("{file}: policy `{id}` has no @description annotation")]
    MissingDescription { file: String, id: String },
    #[error("{file}: policy id `{id}` is used twice (also in {other})")]
    DuplicateId {
        file: String,
        id: String,
        other: String,
    },
    #[error("policy `{id}` ({file}) fails validation against the schema: {message}")]
    Invalid {
        id: String,
        file: String,
        message: String,
    },
    #[error("cannot read policy directory {dir}: {message}")]
    Io { dir: String, message: String },
    #[error("bad request: {0}")]
    Request(String),
}

/// A policy as decisions report it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyRef {
    pub id: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Allowed; `policies` are the permits that allowed it.
    Allow { policies: Vec<PolicyRef> },
    /// Denied; `reasons` are the forbids that fired, or the note that nothing permits it.
    Deny { reasons: Vec<PolicyRef> },
    /// Allowed once the listed gates have their approvals.
    NeedsApproval { gates: Vec<PolicyRef> },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::NeedsApproval { .. } => "needs_approval",
        }
    }

    /// The ids that decided it.
    pub fn policy_ids(&self) -> Vec<String> {
        let refs = match self {
            Decision::Allow { policies } => policies,
            Decision::Deny { reasons } => reasons,
            Decision::NeedsApproval { gates } => gates,
        };
        refs.iter().map(|r| r.id.clone()).collect()
    }
}

/// The most approvals a gate may ask for.
pub const MAX_APPROVALS: u32 = 10;

/// The id given when no policy permits a request (Cedar's default deny).
pub const DEFAULT_DENY: &str = "default-deny";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Read,
    Validate,
    Plan,
    Apply,
    Destroy,
    Approve,
    Cancel,
    Resume,
    Rollback,
    Drift,
    PolicySimulate,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::Read,
        Action::Validate,
        Action::Plan,
        Action::Apply,
        Action::Destroy,
        Action::Approve,
        Action::Cancel,
        Action::Resume,
        Action::Rollback,
        Action::Drift,
        Action::PolicySimulate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Validate => "validate",
            Action::Plan => "plan",
            Action::Apply => "apply",
            Action::Destroy => "destroy",
            Action::Approve => "approve",
            Action::Cancel => "cancel",
            Action::Resume => "resume",
            Action::Rollback => "rollback",
            Action::Drift => "drift",
            Action::PolicySimulate => "policy-simulate",
        }
    }

    /// Changes nothing: what a viewer may do.
    pub fn is_read_only(self) -> bool {
        matches!(
            self,
            Action::Read | Action::Validate | Action::Plan | Action::Drift | Action::PolicySimulate
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Principal {
    User {
        id: String,
        #[serde(default)]
        roles: Vec<String>,
    },
    Agent {
        id: String,
        acting_for: String,
        #[serde(default)]
        roles: Vec<String>,
    },
}

impl Principal {
    pub fn roles(&self) -> &[String] {
        match self {
            Principal::User { roles, .. } | Principal::Agent { roles, .. } => roles,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceType {
    Workspace,
    Server,
    Taskserv,
    Cluster,
    Plan,
}

/// What is acted on, with the attributes policies read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: ResourceType,
    pub id: String,
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_cents: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbidden_zones: Option<Vec<String>>,
    /// Plans: the plan hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Servers: the zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Context facts about the caller, the plan and its approvals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Facts {
    pub authenticated: bool,
    pub channel: String,
    pub mfa: bool,
    pub cost_delta_cents: i64,
    pub deletes: i64,
    pub replacements: i64,
    pub prod_resources_touched: i64,
    pub zones: Vec<String>,
    /// Valid approvals for exactly this plan (see [`count_valid`]).
    pub approvals: i64,
    /// User id of who requested the plan.
    pub requester: Option<String>,
    /// The request was made by an agent acting for `requester` (not by the person directly).
    #[serde(default)]
    pub requested_by_agent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub principal: Principal,
    pub action: Action,
    pub resource: Resource,
    pub facts: Facts,
}

#[derive(Debug, Clone)]
struct Meta {
    description: String,
    gate: bool,
    file: String,
}

/// A validated policy set, ready to decide.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    all: PolicySet,
    /// The same set without gate policies: what would happen once every gate is cleared.
    without_gates: PolicySet,
    meta: BTreeMap<String, Meta>,
    authorizer: Authorizer,
}

/// Where policies come from: the defaults, a directory that replaces them, or one that adds to
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    Defaults,
    Replace(PathBuf),
    Extend(PathBuf),
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let text = format!(
        "{NS}::{kind}::{}",
        serde_json::to_string(id).unwrap_or_default()
    );
    EntityUid::from_str(&text).map_err(|e| PolicyError::Request(format!("bad id `{id}`: {e}")))
}

fn entity_ref(kind: &str, id: &str) -> Value {
    json!({ "type": format!("{NS}::{kind}"), "id": id })
}

fn read_dir_policies(dir: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let io = |e: std::io::Error| PolicyError::Io {
        dir: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(io)?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}

fn default_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = DEFAULT_POLICIES
        .files()
        .filter(|f| f.path().extension().is_some_and(|x| x == "cedar"))
        .map(|f| {
            (
                format!("policies/default/{}", f.path().display()),
                f.contents_utf8().unwrap_or_default().to_string(),
            )
        })
        .collect();
    files.sort();
    files
}

/// One policy of a set, as people list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// Its `@id`.
    pub id: String,
    /// Its `@description`.
    pub description: String,
    /// Whether it is an approval gate (`@gate`): it asks for approvals instead of denying.
    pub gate: bool,
    /// The file it was read from.
    pub file: String,
}

impl PolicyEngine {
    /// The shipped default policy set.
    pub fn defaults() -> Result<PolicyEngine, PolicyError> {
        PolicyEngine::from_files(&default_files())
    }

    /// The defaults plus `text` (named `name` in errors): what a policy file added to the
    /// defaults would give, without writing it anywhere.
    pub fn defaults_with(name: &str, text: &str) -> Result<PolicyEngine, PolicyError> {
        let mut files = default_files();
        files.push((name.to_string(), text.to_string()));
        PolicyEngine::from_files(&files)
    }

    pub fn load(source: &PolicySource) -> Result<PolicyEngine, PolicyError> {
        match source {
            PolicySource::Defaults => PolicyEngine::defaults(),
            PolicySource::Replace(dir) => PolicyEngine::from_files(&read_dir_policies(dir)?),
            PolicySource::Extend(dir) => {
                let mut files = default_files();
                files.extend(read_dir_policies(dir)?);
                PolicyEngine::from_files(&files)
            }
        }
    }

    /// Parses `(file name, text)` pairs, names each policy by its `@id`, and validates the
    /// whole set against the schema (strict mode).
    ///
    /// Every text is checked against [`bounds`] before Cedar parses it, and parsing and
    /// validation run on a thread with a stack sized for the deepest text the bounds admit.
    pub fn from_files(files: &[(String, String)]) -> Result<PolicyEngine, PolicyError> {
        for (file, text) in files {
            bounds::check(file, text)?;
        }
        let files = files.to_vec();
        std::thread::Builder::new()
            .name("cedar-parse".into())
            .stack_size(PARSE_STACK)
            .spawn(move || PolicyEngine::parse_files(&files))
            .map_err(|e| PolicyError::Parse {
                file: String::new(),
                message: format!("cannot start the parser thread: {e}"),
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(PolicyError::Parse {
                    file: String::new(),
                    message: "the Cedar parser failed on this text".into(),
                })
            })
    }

    fn parse_files(files: &[(String, String)]) -> Result<PolicyEngine, PolicyError> {
        let (schema, _) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| PolicyError::Schema(e.to_string()))?;
        let mut all = PolicySet::new();
        let mut without_gates = PolicySet::new();
        let mut meta: BTreeMap<String, Meta> = BTreeMap::new();
        for (file, text) in files {
            let parsed = PolicySet::from_str(text).map_err(|e| PolicyError::Parse {
                file: file.clone(),
                message: format!("{e:?}").chars().take(600).collect(),
            })?;
            for policy in parsed.policies() {
                let Some(id) = policy.annotation("id").map(str::to_string) else {
                    return Err(PolicyError::MissingId { file: file.clone() });
                };
                let Some(description) = policy.annotation("description").map(str::to_string) else {
                    return Err(PolicyError::MissingDescription {
                        file: file.clone(),
                        id,
                    });
                };
                if let Some(other) = meta.get(&id) {
                    return Err(PolicyError::DuplicateId {
                        file: file.clone(),
                        id,
                        other: other.file.clone(),
                    });
                }
                let gate = policy.annotation("gate").is_some();
                let named: Policy = policy.new_id(PolicyId::new(&id));
                let add = |set: &mut PolicySet, p: Policy| {
                    set.add(p).map_err(|e| PolicyError::Parse {
                        file: file.clone(),
                        message: e.to_string(),
                    })
                };
                add(&mut all, named.clone())?;
                if !gate {
                    add(&mut without_gates, named)?;
                }
                meta.insert(
                    id,
                    Meta {
                        description,
                        gate,
                        file: file.clone(),
                    },
                );
            }
        }
        let result = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
        if let Some(error) = result.validation_errors().next() {
            let id = error.policy_id().to_string();
            let file = meta.get(&id).map(|m| m.file.clone()).unwrap_or_default();
            return Err(PolicyError::Invalid {
                id,
                file,
                message: error.to_string(),
            });
        }
        Ok(PolicyEngine {
            schema,
            all,
            without_gates,
            meta,
            authorizer: Authorizer::new(),
        })
    }

    /// Every policy, by id.
    pub fn policies(&self) -> Vec<PolicyInfo> {
        self.meta
            .iter()
            .map(|(id, m)| PolicyInfo {
                id: id.clone(),
                description: m.description.clone(),
                gate: m.gate,
                file: m.file.clone(),
            })
            .collect()
    }

    fn policy_ref(&self, id: &str) -> PolicyRef {
        PolicyRef {
            id: id.to_string(),
            description: self
                .meta
                .get(id)
                .map(|m| m.description.clone())
                .unwrap_or_default(),
        }
    }

    /// The entities of a request as Cedar JSON: roles, the principal (and who an agent acts
    /// for), the requester and the resource.
    pub fn request_entities(request: &AuthRequest) -> Vec<Value> {
        let mut out = Vec::new();
        let mut users = BTreeSet::new();
        for role in request.principal.roles() {
            out.push(json!({ "uid": entity_ref("Role", role), "attrs": {}, "parents": [] }));
        }
        let parents: Vec<Value> = request
            .principal
            .roles()
            .iter()
            .map(|r| entity_ref("Role", r))
            .collect();
        match &request.principal {
            Principal::User { id, .. } => {
                users.insert(id.clone());
                out.push(json!({ "uid": entity_ref("User", id), "attrs": {}, "parents": parents }));
            }
            Principal::Agent { id, acting_for, .. } => {
                out.push(json!({
                    "uid": entity_ref("Agent", id),
                    "attrs": { "acting_for": { "__entity": entity_ref("User", acting_for) } },
                    "parents": parents,
                }));
                if users.insert(acting_for.clone()) {
                    out.push(json!({ "uid": entity_ref("User", acting_for), "attrs": {}, "parents": [] }));
                }
            }
        }
        if let Some(requester) = &request.facts.requester
            && users.insert(requester.clone())
        {
            out.push(json!({ "uid": entity_ref("User", requester), "attrs": {}, "parents": [] }));
        }
        let r = &request.resource;
        let mut attrs = serde_json::Map::new();
        attrs.insert("environment".into(), json!(r.environment));
        match r.kind {
            ResourceType::Workspace | ResourceType::Plan => {
                if let Some(b) = r.budget_cents {
                    attrs.insert("budget_cents".into(), json!(b));
                }
                if let Some(z) = &r.forbidden_zones {
                    attrs.insert("forbidden_zones".into(), json!(z));
                }
                if r.kind == ResourceType::Workspace {
                    if let Some(o) = &r.owner {
                        attrs.insert("owner".into(), json!(o));
                    }
                } else {
                    attrs.insert("hash".into(), json!(r.hash.clone().unwrap_or_default()));
                }
            }
            ResourceType::Server => {
                attrs.insert("zone".into(), json!(r.zone.clone().unwrap_or_default()));
            }
            ResourceType::Taskserv | ResourceType::Cluster => {}
        }
        out.push(json!({
            "uid": entity_ref(resource_type_name(r.kind), &r.id),
            "attrs": attrs,
            "parents": [],
        }));
        out
    }

    /// Builds Cedar entities from JSON (the request's own plus any others, e.g. a workspace's
    /// servers), checked against the schema.
    pub fn entities(&self, json: Vec<Value>) -> Result<Entities, PolicyError> {
        Entities::from_json_value(Value::Array(json), Some(&self.schema))
            .map_err(|e| PolicyError::Request(e.to_string()))
    }

    fn cedar_request(&self, request: &AuthRequest) -> Result<Request, PolicyError> {
        let principal = match &request.principal {
            Principal::User { id, .. } => uid("User", id)?,
            Principal::Agent { id, .. } => uid("Agent", id)?,
        };
        let action = uid("Action", request.action.as_str())?;
        let resource = uid(
            resource_type_name(request.resource.kind),
            &request.resource.id,
        )?;
        let f = &request.facts;
        let mut context = json!({
            "authenticated": f.authenticated,
            "channel": f.channel,
            "mfa": f.mfa,
            "cost_delta_cents": f.cost_delta_cents,
            "deletes": f.deletes,
            "replacements": f.replacements,
            "prod_resources_touched": f.prod_resources_touched,
            "zones": f.zones,
            "approvals": f.approvals,
            "requested_by_agent": f.requested_by_agent,
        });
        if let Some(requester) = &f.requester {
            context["requester"] = json!({ "__entity": entity_ref("User", requester) });
        }
        // The request is built from typed fields, so it always matches the schema (the scenario
        // fixtures and the property test check that); validating it again per call would
        // cost more than the decision itself.
        let context = Context::from_json_value(context, None)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        Request::new(principal, action, resource, context, None)
            .map_err(|e| PolicyError::Request(e.to_string()))
    }

    /// Fewest approvals that clear every gate of `request` (probing 0 to [`MAX_APPROVALS`]),
    /// or `None` when no number does (a hard deny, or a gate asking for more).
    pub fn approvals_needed(&self, request: &AuthRequest) -> Result<Option<u32>, PolicyError> {
        let entities = self.entities(Self::request_entities(request))?;
        let mut probe = request.clone();
        for n in 0..=MAX_APPROVALS {
            probe.facts.approvals = i64::from(n);
            match self.decide_in(&probe, &entities)? {
                Decision::Allow { .. } => return Ok(Some(n)),
                Decision::Deny { .. } => return Ok(None),
                Decision::NeedsApproval { .. } => {}
            }
        }
        Ok(None)
    }

    /// Decides a request on its own entities.
    pub fn decide(&self, request: &AuthRequest) -> Result<Decision, PolicyError> {
        let entities = self.entities(Self::request_entities(request))?;
        self.decide_in(request, &entities)
    }

    /// Decides a request against prepared entities (which must include the request's own).
    pub fn decide_in(
        &self,
        request: &AuthRequest,
        entities: &Entities,
    ) -> Result<Decision, PolicyError> {
        let cedar = self.cedar_request(request)?;
        let response = self.authorizer.is_authorized(&cedar, &self.all, entities);
        // Cedar skips a policy whose evaluation errors, so an erroring `forbid` would let the
        // request through: any error denies, naming the policy and the error.
        let errored: Vec<PolicyRef> = response
            .diagnostics()
            .errors()
            .map(|e| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
                let id = e.policy_id().to_string();
                PolicyRef {
                    description: format!(
                        "policy `{id}` could not be evaluated ({}); a policy that errors denies",
                        e.inner()
                    ),
                    id,
                }
            })
            .collect();
        if !errored.is_empty() {
            return Ok(Decision::Deny { reasons: errored });
        }
        let mut reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        reasons.sort();
        if response.decision() == cedar_policy::Decision::Allow {
            return Ok(Decision::Allow {
                policies: reasons.iter().map(|id| self.policy_ref(id)).collect(),
            });
        }
        let gates: Vec<&String> = reasons
            .iter()
            .filter(|id| self.meta.get(*id).is_some_and(|m| m.gate))
            .collect();
        let hard: Vec<&String> = reasons
            .iter()
            .filter(|id| !self.meta.get(*id).is_some_and(|m| m.gate))
            .collect();
        if !gates.is_empty() && hard.is_empty() {
            let cleared = self
                .authorizer
                .is_authorized(&cedar, &self.without_gates, entities);
            if cleared.decision() == cedar_policy::Decision::Allow {
                return Ok(Decision::NeedsApproval {
                    gates: gates.iter().map(|id| self.policy_ref(id)).collect(),
                });
            }
        }
        if hard.is_empty() {
            return Ok(Decision::Deny {
                reasons: vec![PolicyRef {
                    id: DEFAULT_DENY.into(),
                    description: format!(
                        "no policy permits `{}` on this {} for this principal",
                        request.action.as_str(),
                        resource_type_name(request.resource.kind)
                    ),
                }],
            });
        }
        Ok(Decision::Deny {
            reasons: hard.iter().map(|id| self.policy_ref(id)).collect(),
        })
    }
}

fn resource_type_name(kind: ResourceType) -> &'static str {
    match kind {
        ResourceType::Workspace => "Workspace",
        ResourceType::Server => "Server",
        ResourceType::Taskserv => "Taskserv",
        ResourceType::Cluster => "Cluster",
        ResourceType::Plan => "Plan",
    }
}

#[cfg(test)]
mod tests;
