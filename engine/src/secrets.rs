//! Secret references and the redactor. Credentials the server needs are written in the
//! operator's config file as references (`env:NAME`, `file:PATH`, `age:PATH`) and resolved
//! here at the moment of use, never from a Nickel config, a tool argument or the model. Every
//! value resolved (and every other value the server knows to be secret) joins the [`Redactor`],
//! which the edges apply to tool results, REST responses, log lines and audit entries.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};

/// What replaces a secret in output.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this (in bytes) are never registered with the redactor: replacing every
/// occurrence of a short string would redact ordinary words and numbers everywhere.
pub const MIN_SECRET_LEN: usize = 8;

/// What a reference may look like, for error messages.
const ACCEPTED: &str =
    "expected `env:NAME`, `file:PATH` or `age:PATH` (an age-encrypted file), or a plain value";

/// Why a reference does not parse or resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("empty secret reference; {}", ACCEPTED)]
    Empty,
    #[error("unknown secret reference scheme `{scheme}:`; {}", ACCEPTED)]
    UnknownScheme { scheme: String },
    #[error(
        "secret reference `env:{name}`: `{name}` is not an environment variable name; expected letters, digits and `_`, not starting with a digit"
    )]
    BadEnvName { name: String },
    #[error("secret reference `{scheme}:` names no file; expected `{scheme}:PATH`")]
    EmptyPath { scheme: &'static str },
    #[error("secret reference `env:{name}`: the environment variable is not set or empty")]
    EnvMissing { name: String },
    #[error("secret reference `{scheme}:{path}`: cannot read the file: {reason}")]
    Unreadable {
        scheme: &'static str,
        path: String,
        reason: String,
    },
    #[error("secret reference `{scheme}:{path}`: the file is empty")]
    EmptyFile { scheme: &'static str, path: String },
    #[error(
        "secret reference `age:{path}` needs an identity; set `age_identity` in the `[secrets]` section of the config file (e.g. `age_identity = \"file:/path/key.txt\"`)"
    )]
    NoIdentity { path: String },
    #[error(
        "the age identity from `{reference}` is not usable: {reason}; expected an age identity file (lines starting with `AGE-SECRET-KEY-1`)"
    )]
    BadIdentity { reference: String, reason: String },
    #[error("secret reference `age:{path}` does not decrypt: {reason}")]
    Decrypt { path: String, reason: String },
    #[error("secret reference `{reference}` resolves to text that is not UTF-8")]
    NotUtf8 { reference: String },
}

/// A reference to a secret, as written in the operator's config file.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `env:NAME`: an environment variable of the server process.
    Env(String),
    /// `file:PATH`: the file's text, without its trailing line break.
    File(PathBuf),
    /// `age:PATH`: an age-encrypted file (binary or ASCII-armored), decrypted with the
    /// configured identity.
    Age(PathBuf),
    /// A value written in the config file itself (accepted; it joins the redactor like any
    /// other secret).
    Plain(Secret),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SecretRef {
    /// Parses a reference. Text of the form `scheme:rest` is a reference and must use a known
    /// scheme; anything else is a plain value.
    pub fn parse(text: &str) -> Result<SecretRef, SecretError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(SecretError::Empty);
        }
        let Some((scheme, rest)) = split_scheme(trimmed) else {
            return Ok(SecretRef::Plain(Secret::new(trimmed.to_string())));
        };
        match scheme {
            "env" => {
                let valid = rest
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if valid {
                    Ok(SecretRef::Env(rest.to_string()))
                } else {
                    Err(SecretError::BadEnvName {
                        name: rest.to_string(),
                    })
                }
            }
            "file" if rest.is_empty() => Err(SecretError::EmptyPath { scheme: "file" }),
            "age" if rest.is_empty() => Err(SecretError::EmptyPath { scheme: "age" }),
            "file" => Ok(SecretRef::File(PathBuf::from(rest))),
            "age" => Ok(SecretRef::Age(PathBuf::from(rest))),
            other => Err(SecretError::UnknownScheme {
                scheme: other.to_string(),
            }),
        }
    }

    /// Relative `file:` and `age:` paths are taken relative to `base` (the config file's
    /// folder).
    pub fn relative_to(self, base: &Path) -> SecretRef {
        match self {
            SecretRef::File(p) if p.is_relative() => SecretRef::File(base.join(p)),
            SecretRef::Age(p) if p.is_relative() => SecretRef::Age(base.join(p)),
            other => other,
        }
    }

    /// The reference as written, without the value (`[redacted]` for a plain value).
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(name) => format!("env:{name}"),
            SecretRef::File(p) => format!("file:{}", p.display()),
            SecretRef::Age(p) => format!("age:{}", p.display()),
            SecretRef::Plain(_) => format!("plain value {REDACTED}"),
        }
    }
}

/// `scheme` and the rest when `text` starts with a word of letters (then letters, digits,
/// `+`, `-`, `.`) and a colon, as URLs spell schemes.
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

/// A secret value. Its `Debug` and `Display` print `[redacted]`; [`Secret::expose`] is the one
/// way to the text, for the moment it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Where references are read from: the process environment and files. The composition root
/// supplies the real one; tests supply their own.
pub trait SecretSource: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

/// Resolves references, registering every value with its redactor.
#[derive(Clone)]
pub struct Secrets {
    source: Arc<dyn SecretSource>,
    age_identity: Option<SecretRef>,
    redactor: Redactor,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("age_identity", &self.age_identity)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    pub fn new(source: Arc<dyn SecretSource>, redactor: Redactor) -> Secrets {
        Secrets {
            source,
            age_identity: None,
            redactor,
        }
    }

    /// The identity (itself a reference, e.g. `file:/path/key.txt`) that decrypts `age:` files.
    pub fn with_age_identity(mut self, identity: Option<SecretRef>) -> Secrets {
        self.age_identity = identity;
        self
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The value behind `reference`, read now; it joins the redactor.
    pub fn resolve(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        let value = match reference {
            SecretRef::Plain(s) => s.expose().to_string(),
            SecretRef::Env(name) => self
                .source
                .var(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| SecretError::EnvMissing { name: name.clone() })?,
            SecretRef::File(path) => {
                let bytes = self.read(path, "file")?;
                utf8(bytes, reference)?
            }
            SecretRef::Age(path) => {
                let cipher = self.read(path, "age")?;
                let plain = self.decrypt(path, &cipher)?;
                utf8(plain, reference)?
            }
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(match reference {
                SecretRef::Env(name) => SecretError::EnvMissing { name: name.clone() },
                SecretRef::File(p) => SecretError::EmptyFile {
                    scheme: "file",
                    path: p.display().to_string(),
                },
                SecretRef::Age(p) => SecretError::EmptyFile {
                    scheme: "age",
                    path: p.display().to_string(),
                },
                SecretRef::Plain(_) => SecretError::Empty,
            });
        }
        self.redactor.register(&value);
        Ok(Secret(value))
    }

    fn read(&self, path: &Path, scheme: &'static str) -> Result<Vec<u8>, SecretError> {
        let bytes = self
            .source
            .read(path)
            .map_err(|e| SecretError::Unreadable {
                scheme,
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(SecretError::EmptyFile {
                scheme,
                path: path.display().to_string(),
            });
        }
        Ok(bytes)
    }

    fn decrypt(&self, path: &Path, cipher: &[u8]) -> Result<Vec<u8>, SecretError> {
        let Some(identity_ref) = &self.age_identity else {
            return Err(SecretError::NoIdentity {
                path: path.display().to_string(),
            });
        };
        let text = self.resolve(identity_ref)?;
        // Each key line of the identity file is a secret of its own.
        for line in text.expose().lines() {
            if !line.trim_start().starts_with('#') {
                self.redactor.register(line.trim());
            }
        }
        let bad_identity = |reason: String| SecretError::BadIdentity {
            reference: identity_ref.describe(),
            reason,
        };
        let identities = age::IdentityFile::from_buffer(text.expose().as_bytes())
            .map_err(|e| bad_identity(e.to_string()))?
            .into_identities()
            .map_err(|e| bad_identity(e.to_string()))?;
        if identities.is_empty() {
            return Err(bad_identity("it holds no identity".into()));
        }
        let failed = |reason: String| SecretError::Decrypt {
            path: path.display().to_string(),
            reason,
        };
        let decryptor = age::Decryptor::new(age::armor::ArmoredReader::new(cipher))
            .map_err(|e| failed(e.to_string()))?;
        let mut reader = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| failed(e.to_string()))?;
        let mut plain = Vec::new();
        reader
            .read_to_end(&mut plain)
            .map_err(|e| failed(e.to_string()))?;
        Ok(plain)
    }
}

fn utf8(bytes: Vec<u8>, reference: &SecretRef) -> Result<String, SecretError> {
    String::from_utf8(bytes).map_err(|_| SecretError::NotUtf8 {
        reference: reference.describe(),
    })
}

/// Replaces every known secret value in text with `[redacted]`. Cheap to clone (shared).
///
/// Values under [`MIN_SECRET_LEN`] bytes are not registered (a short value would redact
/// ordinary text everywhere); [`Redactor::register`] says whether a value was taken.
#[derive(Clone, Default)]
pub struct Redactor {
    inner: Arc<RwLock<Patterns>>,
}

#[derive(Default)]
struct Patterns {
    values: BTreeSet<String>,
    matcher: Option<AhoCorasick>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("values", &self.len())
            .finish()
    }
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a secret value (and its JSON-escaped spelling, when different). Returns `false`
    /// when the value is shorter than [`MIN_SECRET_LEN`] and so was not added.
    pub fn register(&self, value: &str) -> bool {
        if value.len() < MIN_SECRET_LEN {
            return false;
        }
        let mut spellings = vec![value.to_string()];
        if let Ok(json) = serde_json::to_string(value) {
            let inner = &json[1..json.len() - 1];
            if inner != value {
                spellings.push(inner.to_string());
            }
        }
        let Ok(mut patterns) = self.inner.write() else {
            return false;
        };
        let before = patterns.values.len();
        patterns.values.extend(spellings);
        if patterns.values.len() != before {
            patterns.matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns.values)
                .ok();
        }
        true
    }

    /// How many spellings are registered.
    pub fn len(&self) -> usize {
        self.inner.read().map(|p| p.values.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `text` with every registered value replaced by `[redacted]`; borrowed when nothing
    /// matched.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Ok(patterns) = self.inner.read() else {
            // A poisoned lock: say nothing rather than risk a leak.
            return Cow::Borrowed(REDACTED);
        };
        let Some(matcher) = &patterns.matcher else {
            return Cow::Borrowed(text);
        };
        if !matcher.is_match(text) {
            return Cow::Borrowed(text);
        }
        let replacements = vec![REDACTED; matcher.patterns_len()];
        Cow::Owned(matcher.replace_all(text, &replacements))
    }

    /// Redacts every string (and object key) in a JSON value, in place.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                map.values_mut().for_each(|v| self.redact_json(v));
                if map.keys().any(|k| matches!(self.redact(k), Cow::Owned(_))) {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(k, v)| (self.redact(&k).into_owned(), v))
                        .collect();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
