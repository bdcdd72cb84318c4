//! A policy set that follows its directory: when the `.cedar` files change, the next decision
//! uses the new set. A change that fails to parse or validate keeps the last good set and is
//! reported (once per change), so a typo in a policy file never opens or closes the door by
//! accident. Checks are content hashes, at most once per `interval`.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{PolicyEngine, PolicyError, PolicySource};

#[derive(Debug)]
struct Watch {
    fingerprint: String,
    checked: Instant,
    /// The error of the last change that did not load, and the fingerprint it belongs to.
    error: Option<(String, String)>,
}

/// A [`PolicyEngine`] that reloads itself when its policy directory changes.
#[derive(Debug)]
pub struct LivePolicies {
    source: PolicySource,
    interval: Duration,
    current: RwLock<Arc<PolicyEngine>>,
    watch: Mutex<Watch>,
}

impl LivePolicies {
    /// Loads the set; an invalid set is an error here (startup stops on it).
    pub fn open(source: PolicySource) -> Result<LivePolicies, PolicyError> {
        let engine = PolicyEngine::load(&source)?;
        let fingerprint = fingerprint(&source);
        Ok(LivePolicies {
            source,
            interval: Duration::from_secs(1),
            current: RwLock::new(Arc::new(engine)),
            watch: Mutex::new(Watch {
                fingerprint,
                checked: Instant::now(),
                error: None,
            }),
        })
    }

    /// How often the directory is looked at (default one second; zero checks on every call).
    pub fn with_interval(mut self, interval: Duration) -> LivePolicies {
        self.interval = interval;
        self
    }

    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// The set to decide with now, reloaded first if its files changed.
    pub fn current(&self) -> Arc<PolicyEngine> {
        self.refresh();
        match self.current.read() {
            Ok(engine) => engine.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Why the newest version of the files is not in use, if it is not.
    pub fn last_error(&self) -> Option<String> {
        self.watch
            .lock()
            .ok()
            .and_then(|w| w.error.as_ref().map(|(_, e)| e.clone()))
    }

    fn refresh(&self) {
        if self.source == PolicySource::Defaults {
            return;
        }
        let Ok(mut watch) = self.watch.lock() else {
            return;
        };
        if watch.checked.elapsed() < self.interval {
            return;
        }
        watch.checked = Instant::now();
        let now = fingerprint(&self.source);
        if now == watch.fingerprint {
            return;
        }
        if watch.error.as_ref().is_some_and(|(f, _)| *f == now) {
            return;
        }
        match PolicyEngine::load(&self.source) {
            Ok(engine) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(engine);
                }
                tracing::info!("policies: reloaded from {}", describe(&self.source));
                watch.fingerprint = now;
                watch.error = None;
            }
            Err(err) => {
                let message = format!(
                    "policies in {} changed but do not load; still using the previous set: {err}",
                    describe(&self.source)
                );
                tracing::warn!("policies: {message}");
                watch.error = Some((now, message));
            }
        }
    }
}

fn describe(source: &PolicySource) -> String {
    match source {
        PolicySource::Defaults => "the defaults".into(),
        PolicySource::Replace(dir) | PolicySource::Extend(dir) => dir.display().to_string(),
    }
}

/// A hash over the names and contents of the directory's `.cedar` files.
fn fingerprint(source: &PolicySource) -> String {
    let dir: &Path = match source {
        PolicySource::Defaults => return String::new(),
        PolicySource::Replace(dir) | PolicySource::Extend(dir) => dir,
    };
    let mut hasher = Sha256::new();
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
            .collect(),
        Err(err) => return format!("unreadable: {err}"),
    };
    files.sort();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        match std::fs::read(&file) {
            Ok(bytes) => hasher.update(&bytes),
            Err(err) => hasher.update(err.to_string().as_bytes()),
        }
        hasher.update([0]);
    }
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PERMIT: &str =
        r#"@id("all") @description("everything") permit (principal, action, resource);"#;

    fn scratch() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "provisioning-live-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn ids(live: &LivePolicies) -> Vec<String> {
        live.current()
            .policies()
            .into_iter()
            .map(|p| p.id)
            .collect()
    }

    #[test]
    fn follows_edits_and_keeps_the_last_good_set_on_a_bad_one() {
        let dir = scratch();
        std::fs::write(dir.join("a.cedar"), PERMIT).unwrap();
        let live = LivePolicies::open(PolicySource::Replace(dir.clone()))
            .unwrap()
            .with_interval(Duration::ZERO);
        assert_eq!(ids(&live), ["all"]);

        let second = PERMIT.replace("\"all\"", "\"second\"");
        std::fs::write(dir.join("b.cedar"), second).unwrap();
        assert_eq!(ids(&live), ["all", "second"]);
        assert!(live.last_error().is_none());

        std::fs::write(dir.join("c.cedar"), "permit (principal, action").unwrap();
        assert_eq!(
            ids(&live),
            ["all", "second"],
            "a broken file keeps the old set"
        );
        let error = live.last_error().unwrap();
        assert!(error.contains("c.cedar"), "{error}");

        std::fs::remove_file(dir.join("c.cedar")).unwrap();
        std::fs::remove_file(dir.join("b.cedar")).unwrap();
        assert_eq!(ids(&live), ["all"]);
        assert!(live.last_error().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_invalid_set_fails_at_open() {
        let dir = scratch();
        std::fs::write(
            dir.join("bad.cedar"),
            r#"@id("x") @description("d") permit (principal, action, resource) when { context.nope };"#,
        )
        .unwrap();
        let err = LivePolicies::open(PolicySource::Extend(dir.clone())).unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
