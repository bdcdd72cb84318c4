//! `completion/complete`: what an argument of a prompt or a resource template can be, from what
//! the server knows — schema names, docs pages, workflow, plan and approval ids, workspaces,
//! providers, zones, templates, taskservs — filtered by what the
//! person has typed so far. Clients show these as they type (the seed system completed its
//! commands too).

use rmcp::model::{CompleteRequestParams, CompleteResult, CompletionInfo, Reference};

use crate::ProvisioningServer;
use crate::resources::SCHEME;

/// How many workflows are looked at for workflow and plan ids.
const RECENT: usize = 500;

/// The argument a completion is for.
enum Kind {
    Schema,
    Doc,
    Plan,
    Workflow,
    Approval,
    Workspace,
    Provider,
    Zone,
    Template,
    Taskservs,
    Nothing,
}

fn kind(reference: &Reference, argument: &str) -> Kind {
    match reference {
        Reference::Prompt(p) => match (p.name.as_str(), argument) {
            ("provision", "provider") => Kind::Provider,
            ("provision", "zone") => Kind::Zone,
            ("provision", "template") => Kind::Template,
            ("provision", "taskservs") => Kind::Taskservs,
            ("review_plan", "plan_id") => Kind::Plan,
            ("troubleshoot_workflow", "workflow_id") => Kind::Workflow,
            _ => Kind::Nothing,
        },
        Reference::Resource(r) => {
            let template = r.uri.strip_prefix(SCHEME).unwrap_or_default();
            match (template, argument) {
                ("schemas/{name}", "name") => Kind::Schema,
                ("docs/{path}", "path") => Kind::Doc,
                ("plans/{plan_id}", "plan_id") => Kind::Plan,
                ("workflows/{workflow_id}" | "workflows/{workflow_id}/log", "workflow_id") => {
                    Kind::Workflow
                }
                ("approvals/{approval_id}", "approval_id") => Kind::Approval,
                ("workspaces/{workspace}", "workspace") => Kind::Workspace,
                _ => Kind::Nothing,
            }
        }
        _ => Kind::Nothing,
    }
}

/// The values starting with `typed`, in their order, at most [`CompletionInfo::MAX_VALUES`], with
/// the total and whether there are more.
pub(crate) fn matching(candidates: Vec<String>, typed: &str) -> CompletionInfo {
    let mut seen = std::collections::HashSet::new();
    let all: Vec<String> = candidates
        .into_iter()
        .filter(|c| c.starts_with(typed) && seen.insert(c.clone()))
        .collect();
    let total = all.len();
    let values: Vec<String> = all.into_iter().take(CompletionInfo::MAX_VALUES).collect();
    let more = total > values.len();
    CompletionInfo::with_pagination(values, Some(u32::try_from(total).unwrap_or(u32::MAX)), more)
        .unwrap_or_default()
}

/// Zones whose code, or a word of whose city or title, starts with what was typed (any case):
/// `hel` gives Hetzner's `hel1` and UpCloud's `fi-hel1`, `frank` gives UpCloud's `de-fra1` and
/// AWS's `eu-central-1`. Only the provider's zones when the provider argument is already filled in.
pub(crate) fn zones(provider: Option<&str>, typed: &str) -> CompletionInfo {
    let Ok(catalog) = knowledge::Catalog::embedded() else {
        return CompletionInfo::default();
    };
    let typed = typed.trim().to_lowercase();
    let words = |text: &str| -> Vec<String> {
        text.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut found = Vec::new();
    for (name, p) in &catalog.providers {
        if provider.is_some_and(|want| want != name) {
            continue;
        }
        for (code, zone) in &p.zones {
            let hit = typed.is_empty()
                || code.to_lowercase().starts_with(&typed)
                || code
                    .to_lowercase()
                    .split('-')
                    .any(|part| part.starts_with(&typed))
                || words(&zone.city)
                    .iter()
                    .chain(words(&zone.title).iter())
                    .any(|w| w.starts_with(&typed));
            if hit {
                found.push(code.clone());
            }
        }
    }
    matching(found, "")
}

/// A comma-separated list completed at its last item: `nginx, po` gives `nginx, postgres`. Items
/// already in the list are not offered again.
pub(crate) fn list_item(names: Vec<String>, typed: &str) -> CompletionInfo {
    let (done, last) = match typed.rfind(',') {
        Some(i) => (&typed[..=i], typed[i + 1..].trim_start()),
        None => ("", typed.trim_start()),
    };
    let taken: Vec<&str> = done
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let prefix = if done.is_empty() {
        String::new()
    } else {
        format!("{done} ")
    };
    let offered: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with(last) && !taken.contains(&n.as_str()))
        .map(|n| format!("{prefix}{n}"))
        .collect();
    matching(offered, "")
}

impl ProvisioningServer {
    pub(crate) async fn completion(&self, request: &CompleteRequestParams) -> CompleteResult {
        let kind_of = kind(&request.r#ref, &request.argument.name);
        let candidates = match kind_of {
            Kind::Schema => knowledge::schema_names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Kind::Doc => rag::corpus::shipped()
                .iter()
                .filter(|d| d.path.ends_with(".md"))
                .map(|d| d.path.clone())
                .collect(),
            Kind::Workflow | Kind::Plan => {
                let plans = matches!(kind_of, Kind::Plan);
                self.recent_workflows()
                    .await
                    .into_iter()
                    .map(|w| if plans { w.plan_id } else { w.id })
                    .collect()
            }
            // Newest first, so the pending request someone just made comes up at once.
            Kind::Approval => self
                .app
                .approvals(None, RECENT)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.id)
                .collect(),
            Kind::Workspace => self.app.workspaces().await.unwrap_or_default(),
            Kind::Provider => knowledge::Catalog::embedded()
                .map(|c| c.providers.keys().cloned().collect())
                .unwrap_or_default(),
            Kind::Template => knowledge::Catalog::embedded()
                .map(|c| c.templates.keys().cloned().collect())
                .unwrap_or_default(),
            Kind::Taskservs => {
                let names: Vec<String> = knowledge::Catalog::embedded()
                    .map(|c| c.taskservs.keys().cloned().collect())
                    .unwrap_or_default();
                return CompleteResult::new(list_item(names, &request.argument.value));
            }
            Kind::Zone => {
                let provider = request
                    .context
                    .as_ref()
                    .and_then(|c| c.get_argument("provider"))
                    .map(String::as_str);
                return CompleteResult::new(zones(provider, &request.argument.value));
            }
            Kind::Nothing => Vec::new(),
        };
        CompleteResult::new(matching(candidates, &request.argument.value))
    }

    /// Newest first; none when the store cannot answer (a completion is a hint, not an error).
    async fn recent_workflows(&self) -> Vec<service::model::WorkflowRecord> {
        self.app.workflows(None, RECENT).await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::matching;

    #[test]
    fn completions_start_with_what_was_typed_and_say_how_many_there_are() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got = matching(names(&["wf-1", "wf-2", "plan-1", "wf-1"]), "wf-");
        assert_eq!(got.values, names(&["wf-1", "wf-2"]));
        assert_eq!((got.total, got.has_more), (Some(2), Some(false)));

        let many: Vec<String> = (0..250).map(|i| format!("wf-{i:03}")).collect();
        let got = matching(many, "wf-");
        assert_eq!(got.values.len(), 100);
        assert_eq!((got.total, got.has_more), (Some(250), Some(true)));
        assert_eq!(got.values[0], "wf-000");

        assert!(matching(names(&["a"]), "b").values.is_empty());
    }

    #[test]
    fn a_list_completes_at_its_last_item_without_repeating_one() {
        use super::list_item;
        let names = || {
            ["nginx", "postgres", "redis"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            list_item(names(), "po").values,
            vec!["postgres".to_string()]
        );
        assert_eq!(
            list_item(names(), "nginx, ").values,
            vec!["nginx, postgres".to_string(), "nginx, redis".to_string()]
        );
        assert_eq!(
            list_item(names(), "nginx,re").values,
            vec!["nginx, redis".to_string()]
        );
        assert_eq!(list_item(names(), "").values.len(), 3);
    }

    #[test]
    fn zones_complete_by_code_or_city_across_providers_or_within_one() {
        use super::zones;
        let hel = zones(None, "hel").values;
        assert!(hel.contains(&"hel1".to_string()), "{hel:?}");
        assert!(hel.contains(&"fi-hel1".to_string()), "{hel:?}");
        let frank = zones(None, "Frank").values;
        // (No provider in the catalog has a zone code `fra1`: Hetzner has no Frankfurt.)
        assert_eq!(frank.len(), 2, "{frank:?}");
        for want in ["de-fra1", "eu-central-1"] {
            assert!(frank.contains(&want.to_string()), "{want} not in {frank:?}");
        }
        let only = zones(Some("hetzner"), "hel").values;
        assert_eq!(only, vec!["hel1".to_string()]);
        assert!(zones(Some("hetzner"), "zzz").values.is_empty());
        assert!(zones(Some("nope"), "").values.is_empty());
    }
}
