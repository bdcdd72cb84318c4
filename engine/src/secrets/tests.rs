//! Tests of secret references (parsing, resolving `env:`, `file:`, `age:`) and the redactor.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use age::secrecy::ExposeSecret;

use super::*;

/// An environment and a file system in memory.
#[derive(Default)]
struct Fake {
    vars: BTreeMap<String, String>,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl SecretSource for Fake {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

fn secrets(fake: Fake) -> Secrets {
    Secrets::new(Arc::new(fake), Redactor::new())
}

#[test]
fn references_parse() {
    assert_eq!(
        SecretRef::parse("env:OPENAI_API_KEY").unwrap(),
        SecretRef::Env("OPENAI_API_KEY".into())
    );
    assert_eq!(
        SecretRef::parse(" file:/run/keys/db ").unwrap(),
        SecretRef::File("/run/keys/db".into())
    );
    assert_eq!(
        SecretRef::parse("age:secrets/openai.age").unwrap(),
        SecretRef::Age("secrets/openai.age".into())
    );
    assert_eq!(
        SecretRef::parse("sk-plain-value-123").unwrap(),
        SecretRef::Plain(Secret::new("sk-plain-value-123".into()))
    );
    assert_eq!(
        SecretRef::parse("age:keys/a.age")
            .unwrap()
            .relative_to(Path::new("/etc/provisioning")),
        SecretRef::Age("/etc/provisioning/keys/a.age".into())
    );
    assert_eq!(
        SecretRef::parse("file:/abs")
            .unwrap()
            .relative_to(Path::new("/x")),
        SecretRef::File("/abs".into())
    );
}

#[test]
fn every_bad_reference_has_its_own_error() {
    let err = |t: &str| SecretRef::parse(t).unwrap_err();
    assert_eq!(err(""), SecretError::Empty);
    assert_eq!(err("   "), SecretError::Empty);
    assert_eq!(
        err("evn:KEY"),
        SecretError::UnknownScheme {
            scheme: "evn".into()
        }
    );
    assert_eq!(
        err("ENV:KEY"),
        SecretError::UnknownScheme {
            scheme: "ENV".into()
        }
    );
    assert_eq!(err("env:"), SecretError::BadEnvName { name: "".into() });
    assert_eq!(
        err("env:1KEY"),
        SecretError::BadEnvName {
            name: "1KEY".into()
        }
    );
    assert_eq!(
        err("env:MY KEY"),
        SecretError::BadEnvName {
            name: "MY KEY".into()
        }
    );
    assert_eq!(err("file:"), SecretError::EmptyPath { scheme: "file" });
    assert_eq!(err("age:"), SecretError::EmptyPath { scheme: "age" });
    // Messages say what is accepted and never quote a plain value.
    let text = err("vault:kv/x").to_string();
    assert_eq!(
        text,
        "unknown secret reference scheme `vault:`; expected `env:NAME`, `file:PATH` or `age:PATH` (an age-encrypted file), or a plain value"
    );
    assert!(
        err("env:1KEY")
            .to_string()
            .contains("not an environment variable name")
    );
    assert_eq!(
        format!("{:?}", SecretRef::parse("hunter2-but-longer").unwrap()),
        "plain value [redacted]"
    );
}

#[test]
fn secrets_print_redacted() {
    let s = Secret::new("sk-canary-0123456789".into());
    assert_eq!(format!("{s}"), "[redacted]");
    assert_eq!(format!("{s:?}"), "[redacted]");
    assert_eq!(s.expose(), "sk-canary-0123456789");
}

#[test]
fn env_and_file_references_resolve_and_join_the_redactor() {
    let mut fake = Fake::default();
    fake.vars.insert("KEY".into(), "env-secret-value-1".into());
    fake.vars.insert("BLANK".into(), "  ".into());
    fake.files
        .insert("/k/db".into(), b"file-secret-value-2\n".to_vec());
    fake.files.insert("/k/empty".into(), b"\n".to_vec());
    let s = secrets(fake);
    let got = s.resolve(&SecretRef::Env("KEY".into())).unwrap();
    assert_eq!(got.expose(), "env-secret-value-1");
    let got = s.resolve(&SecretRef::File("/k/db".into())).unwrap();
    assert_eq!(
        got.expose(),
        "file-secret-value-2",
        "the line break is dropped"
    );
    assert_eq!(
        s.redactor()
            .redact("a env-secret-value-1 b file-secret-value-2 c"),
        "a [redacted] b [redacted] c"
    );
    assert_eq!(
        s.resolve(&SecretRef::Env("NOPE".into())).unwrap_err(),
        SecretError::EnvMissing {
            name: "NOPE".into()
        }
    );
    assert_eq!(
        s.resolve(&SecretRef::Env("BLANK".into())).unwrap_err(),
        SecretError::EnvMissing {
            name: "BLANK".into()
        }
    );
    assert!(matches!(
        s.resolve(&SecretRef::File("/k/missing".into()))
            .unwrap_err(),
        SecretError::Unreadable { scheme: "file", .. }
    ));
    assert_eq!(
        s.resolve(&SecretRef::File("/k/empty".into())).unwrap_err(),
        SecretError::EmptyFile {
            scheme: "file",
            path: "/k/empty".into()
        }
    );
    // A plain value joins the redactor as well.
    s.resolve(&SecretRef::parse("plain-secret-value-3").unwrap())
        .unwrap();
    assert_eq!(s.redactor().redact("plain-secret-value-3"), "[redacted]");
}

/// `plain` encrypted to `recipient`, binary or armored.
fn encrypt(recipient: &age::x25519::Recipient, plain: &[u8], armor: bool) -> Vec<u8> {
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let format = if armor {
        age::armor::Format::AsciiArmor
    } else {
        age::armor::Format::Binary
    };
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, format).unwrap();
    let mut w = encryptor.wrap_output(armored).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap().finish().unwrap();
    out
}

#[test]
fn age_references_decrypt_with_the_configured_identity() {
    let key = age::x25519::Identity::generate();
    let identity_file = format!(
        "# created: today\n# public key: {}\n{}\n",
        key.to_public(),
        key.to_string().expose_secret()
    );
    let other = age::x25519::Identity::generate();
    let mut fake = Fake::default();
    fake.files
        .insert("/k/id.txt".into(), identity_file.clone().into_bytes());
    fake.files.insert(
        "/k/api.age".into(),
        encrypt(&key.to_public(), b"age-secret-value-4\n", false),
    );
    fake.files.insert(
        "/k/api.asc".into(),
        encrypt(&key.to_public(), b"age-armored-value-5", true),
    );
    fake.files.insert(
        "/k/foreign.age".into(),
        encrypt(&other.to_public(), b"not for us", false),
    );
    fake.files
        .insert("/k/garbage.age".into(), b"not age at all".to_vec());
    fake.files
        .insert("/k/bad-id.txt".into(), b"AGE-SECRET-KEY-1NOPE\n".to_vec());
    fake.files
        .insert("/k/comments-only.txt".into(), b"# nothing here\n".to_vec());
    let s = secrets(fake).with_age_identity(Some(SecretRef::File("/k/id.txt".into())));
    let got = s.resolve(&SecretRef::Age("/k/api.age".into())).unwrap();
    assert_eq!(got.expose(), "age-secret-value-4");
    let got = s.resolve(&SecretRef::Age("/k/api.asc".into())).unwrap();
    assert_eq!(got.expose(), "age-armored-value-5");
    // The value and the identity's key both join the redactor.
    let secret_key = key.to_string().expose_secret().to_string();
    assert_eq!(
        s.redactor()
            .redact(&format!("x age-secret-value-4 {secret_key} y")),
        "x [redacted] [redacted] y"
    );
    assert!(matches!(
        s.resolve(&SecretRef::Age("/k/foreign.age".into()))
            .unwrap_err(),
        SecretError::Decrypt { .. }
    ));
    assert!(matches!(
        s.resolve(&SecretRef::Age("/k/garbage.age".into()))
            .unwrap_err(),
        SecretError::Decrypt { .. }
    ));
    // No identity configured, an unusable one, one with no key.
    let fake = || {
        let mut f = Fake::default();
        f.files
            .insert("/k/api.age".into(), encrypt(&key.to_public(), b"x", false));
        f.files
            .insert("/k/bad-id.txt".into(), b"AGE-SECRET-KEY-1NOPE\n".to_vec());
        f.files
            .insert("/k/comments-only.txt".into(), b"# nothing here\n".to_vec());
        f
    };
    let err = secrets(fake())
        .resolve(&SecretRef::Age("/k/api.age".into()))
        .unwrap_err();
    assert_eq!(
        err,
        SecretError::NoIdentity {
            path: "/k/api.age".into()
        }
    );
    assert!(err.to_string().contains("age_identity"));
    let err = secrets(fake())
        .with_age_identity(Some(SecretRef::File("/k/bad-id.txt".into())))
        .resolve(&SecretRef::Age("/k/api.age".into()))
        .unwrap_err();
    assert!(
        matches!(&err, SecretError::BadIdentity { reference, .. } if reference == "file:/k/bad-id.txt"),
        "{err:?}"
    );
    let err = secrets(fake())
        .with_age_identity(Some(SecretRef::File("/k/comments-only.txt".into())))
        .resolve(&SecretRef::Age("/k/api.age".into()))
        .unwrap_err();
    assert!(matches!(&err, SecretError::BadIdentity { .. }), "{err:?}");
}

#[test]
fn the_redactor_replaces_every_occurrence_and_skips_short_values() {
    let r = Redactor::new();
    assert_eq!(r.redact("nothing registered"), "nothing registered");
    assert!(matches!(r.redact("x"), Cow::Borrowed(_)));
    assert!(!r.register("short"), "under 8 bytes is not registered");
    assert!(!r.register("1234567"));
    assert!(r.register("12345678"));
    assert!(r.register("sk-canary-0123456789"));
    assert!(r.register("sk-canary-0123456789-longer"));
    assert_eq!(r.redact("short 1234567"), "short 1234567");
    assert!(matches!(r.redact("short"), Cow::Borrowed(_)));
    assert_eq!(
        r.redact("a sk-canary-0123456789 b sk-canary-0123456789-longer c 12345678"),
        "a [redacted] b [redacted] c [redacted]",
        "every occurrence, the longest match first"
    );
    assert_eq!(
        r.redact("Bearer sk-canary-0123456789sk-canary-0123456789"),
        "Bearer [redacted][redacted]"
    );
}

#[test]
fn the_redactor_walks_json_and_knows_escaped_spellings() {
    let r = Redactor::new();
    r.register("pa\"ss\\word-9");
    r.register("sk-canary-0123456789");
    let mut v = serde_json::json!({
        "a": ["x sk-canary-0123456789 y", 1, null],
        "sk-canary-0123456789": { "b": "pa\"ss\\word-9" },
        "z": "keep",
    });
    r.redact_json(&mut v);
    assert_eq!(
        v,
        serde_json::json!({
            "a": ["x [redacted] y", 1, null],
            "[redacted]": { "b": "[redacted]" },
            "z": "keep",
        })
    );
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "[redacted]", "z"], "key order is kept");
    // In serialized JSON the value is escaped; that spelling is known too.
    let text = serde_json::to_string(&serde_json::json!({ "p": "pa\"ss\\word-9" })).unwrap();
    assert_eq!(r.redact(&text), r#"{"p":"[redacted]"}"#);
}
