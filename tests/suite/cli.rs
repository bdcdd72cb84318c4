//! The command line: exit codes, catalog and schema commands, standard input, imports.

use libtest_mimic::Trial;
use serde_json::Value;
use tests::{root, run};

fn t(name: &str, f: fn()) -> Trial {
    Trial::test(format!("cli::{name}"), move || crate::check(f))
}

pub fn trials() -> Vec<Trial> {
    vec![
        t("a_closed_pipe_ends_quietly", || {
            // `provisioning catalog taskservs | head -1`: the reader leaves after one line.
            let mut child = std::process::Command::new(tests::binary())
                .args(["catalog", "taskservs"])
                .current_dir(root())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!err.contains("panicked"), "{err}");
            assert_eq!(out.status.code(), Some(141), "{err}");
        }),
        t("missing_file_is_exit_2", || {
            let out = run(&root(), &["validate", "no/such/file.ncl"], None);
            assert_eq!(out.status.code(), Some(2));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("cannot read `no/such/file.ncl`")
            );
        }),
        t("usage_error_is_exit_2", || {
            let out = run(&root(), &["validate"], None);
            assert_eq!(out.status.code(), Some(2));
            let out = run(
                &root(),
                &["export", "examples/local-dev.ncl", "--format", "xml"],
                None,
            );
            assert_eq!(out.status.code(), Some(2));
        }),
        t("validate_reads_stdin", || {
            let src = std::fs::read_to_string(root().join("examples/local-dev.ncl")).unwrap();
            let out = run(&root(), &["validate", "-"], Some(&src));
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            let bad = src.replace("\"local\",", "\"lokal\",");
            let out = run(&root(), &["validate", "-", "--json"], Some(&bad));
            assert_eq!(out.status.code(), Some(1));
        }),
        t(
            "export_of_invalid_config_is_exit_1_and_prints_nothing",
            || {
                let dir = root().join("tests/fixtures/invalid");
                let out = run(&dir, &["export", "unknown-zone-typo.ncl"], None);
                assert_eq!(out.status.code(), Some(1));
                assert!(out.stdout.is_empty());
                assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `de-fra1`?"));
            },
        ),
        t("relative_imports_work_for_local_files", || {
            let dir = std::env::temp_dir().join(format!("prov-import-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("common.ncl"),
                "{ provider = \"sim\", plan = \"small\", zone = \"sim-1\" }",
            )
            .unwrap();
            std::fs::write(
                dir.join("main.ncl"),
                "let c = import \"common.ncl\" in { workspace = { name = \"w\", environment = \"dev\" }, servers = [c & { name = \"a\" }] }",
            )
            .unwrap();
            let out = run(&dir, &["validate", "main.ncl"], None);
            std::fs::remove_dir_all(&dir).unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }),
        t("catalog_lists_plans_and_zones", || {
            let out = run(&root(), &["catalog", "plans", "hetzner", "--json"], None);
            assert_eq!(out.status.code(), Some(0));
            let plans: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(plans["cx22"]["cores"], 2);
            let out = run(&root(), &["catalog", "zones", "upcloud"], None);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("de-fra1") && text.contains("Frankfurt"),
                "{text}"
            );
            let out = run(&root(), &["catalog"], None);
            let text = String::from_utf8_lossy(&out.stdout);
            for p in ["aws", "hetzner", "local", "sim", "upcloud"] {
                assert!(text.contains(p), "{text}");
            }
            let out = run(&root(), &["catalog", "taskservs", "--json"], None);
            let ts: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                ts["kubernetes"]["requires"],
                serde_json::json!(["containerd", "etcd"])
            );
            let out = run(&root(), &["catalog", "templates"], None);
            assert!(String::from_utf8_lossy(&out.stdout).contains("k8s-ha"));
        }),
        t("catalog_unknown_provider_suggests", || {
            let out = run(&root(), &["catalog", "plans", "hetzne"], None);
            assert_eq!(out.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `hetzner`?"));
        }),
        t("schema_prints_sources", || {
            let out = run(&root(), &["schema", "server"], None);
            assert_eq!(out.status.code(), Some(0));
            let expected =
                std::fs::read_to_string(root().join("knowledge/schemas/server.ncl")).unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
            let out = run(&root(), &["schema"], None);
            assert!(String::from_utf8_lossy(&out.stdout).contains("config"));
            let out = run(&root(), &["schema", "servr"], None);
            assert_eq!(out.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `server`?"));
        }),
        t("env_sets_limits_and_flags_override_env", || {
            let dir = root().join("examples");
            let mut cmd = std::process::Command::new(tests::binary());
            let out = cmd
                .args(["validate", "sim-50.ncl"])
                .current_dir(&dir)
                .env("PROVISIONING_LIMITS_MAX_INPUT_BYTES", "100")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&out.stdout).contains("over the limit of 100 bytes"));
            let out = std::process::Command::new(tests::binary())
                .args(["validate", "sim-50.ncl", "--max-input-bytes", "100000"])
                .current_dir(&dir)
                .env("PROVISIONING_LIMITS_MAX_INPUT_BYTES", "100")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0));
        }),
        t("evaluation_time_limit", || {
            let out = run(
                &root().join("examples"),
                &["validate", "sim-50.ncl", "--eval-timeout-ms", "1"],
                None,
            );
            assert_eq!(out.status.code(), Some(1));
            assert!(
                String::from_utf8_lossy(&out.stdout)
                    .contains("did not finish within the time limit of 1 ms")
            );
        }),
        t("generated_configs_validate", || {
            let src = tests::generated_config(30);
            let out = run(&root(), &["validate", "-", "--json"], Some(&src));
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }),
    ]
}
