//! A mutation fuzzer on stable Rust against the real server: seeded, so a failure replays
//! exactly (`PROVISIONING_FUZZ_SEED`). Seeds are real messages — MCP JSON-RPC requests, REST
//! bodies, the example configs, the default Cedar policies — mutated by byte flips, dictionary
//! tokens (Nickel and Cedar keywords, brackets, interpolations, huge numbers), slice copies,
//! truncation and nesting. Each mutant goes to `/mcp`, the REST routes, the Nickel evaluator
//! (through `POST /api/v1/configs/validate`) and the Cedar parser (through `POST
//! /api/v1/policies/validate`, and in this process through `PolicyEngine::defaults_with`, where
//! a stack overflow would abort the test itself). No request may hang past its timeout, none may
//! get a 5xx other than 503 busy, and the server must answer `/healthz` after every batch.
//!
//! CI runs `PROVISIONING_FUZZ_CASES` (default 40) cases per target; set it to thousands for a
//! long run: `PROVISIONING_FUZZ_CASES=5000 cargo test --workspace --test suite -- fuzz::`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use libtest_mimic::Trial;
use serde_json::json;
use sha2::Digest;
use tests::{root, scratch};

use crate::check;
use crate::mcp::{Dir, Server};

const TOKEN: &str = "fuzz-viewer-token-0a1b2c3d4e";

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const DICTIONARY: &[&str] = &[
    "import",
    "\"",
    "%{",
    "}",
    "m%\"",
    "\"%",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "let rec ",
    " in ",
    "fun x => ",
    "std.array.replicate 99999999 ",
    "'Text",
    "\\",
    "\u{0}",
    "\u{202e}",
    "#",
    "\n",
    "\r",
    "99999999999999999999999999",
    "-1",
    "1e308",
    "null",
    "true",
    ",",
    ":",
    "=",
    "|",
    "&&",
    "!",
    "-",
    "if ",
    "then ",
    "else ",
    "when ",
    "unless ",
    "permit(",
    "forbid(",
    "principal",
    "@id(\"x\")",
    "::",
    ".",
    "\"jsonrpc\"",
    "\"2.0\"",
    "\"method\"",
    "\"params\"",
    "%",
];

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut b: Vec<u8> = seed.as_bytes().to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(b.len() + 1).min(b.len());
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                b.splice(at..at, word.bytes());
            }
            3 if !b.is_empty() => {
                let start = rng.below(b.len());
                let len = rng.below((b.len() - start).min(64));
                let piece: Vec<u8> = b[start..start + len].to_vec();
                b.splice(at..at, piece);
            }
            4 => b.truncate(at),
            5 => {
                let depth = 1 + rng.below(3000);
                let (open, close) = [("(", ")"), ("[", "]"), ("{a=", "}")][rng.below(3)];
                let mut nested = open.repeat(depth).into_bytes();
                nested.extend_from_slice(&b[at..]);
                nested.extend(close.repeat(depth).bytes());
                b.truncate(at);
                b.extend(nested);
            }
            _ if !b.is_empty() => {
                let i = rng.below(b.len());
                b.remove(i);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn cases() -> usize {
    std::env::var("PROVISIONING_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn seed() -> u64 {
    std::env::var("PROVISIONING_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f00d_cafe_b0ba)
}

fn configs() -> Vec<String> {
    let mut out: Vec<String> = tests::ncl_files(&root().join("examples"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    out.push(crate::mcp::dev_config(2));
    out
}

fn policies() -> Vec<String> {
    ["approvals", "base", "limits"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(root().join(format!("policies/default/{n}.cedar"))).unwrap()
        })
        .collect()
}

fn rpc_seeds() -> Vec<String> {
    vec![
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fuzz","version":"0"}}}).to_string(),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"validate_config","arguments":{"config":"{ a = 1 }"}}}).to_string(),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/list","params":{}}).to_string(),
        json!([{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"provisioning://schema/config"}}]).to_string(),
    ]
}

fn rest_seeds() -> Vec<(&'static str, String)> {
    vec![
        (
            "/api/v1/plans",
            json!({"config": crate::mcp::dev_config(1)}).to_string(),
        ),
        (
            "/api/v1/approvals/apr-0000/approve",
            json!({"comment": "ok"}).to_string(),
        ),
        (
            "/api/v1/policies/simulate",
            json!({"plan_id": "plan-x", "principal": "user:bob:approver"}).to_string(),
        ),
        ("/api/v1/workflows/wf-0/cancel", "{}".to_string()),
    ]
}

fn start(dir: &Path) -> (Server, String) {
    let h = format!("{:x}", sha2::Sha256::digest(TOKEN.as_bytes()));
    std::fs::write(
        dir.join("config.toml"),
        format!("[users.fuzz]\nroles = [\"viewer\"]\ntoken_sha256 = \"{h}\"\n"),
    )
    .unwrap();
    let (child, base) = tests::serve_http_with(
        dir,
        &[
            "--eval-timeout-ms",
            "3000",
            "--eval-memory-mb",
            "512",
            "--rate-limit",
            "100000",
        ],
        &[],
        Stdio::null(),
    )
    .unwrap();
    (Server(child), base)
}

/// Every target through the real server, then the Cedar parser in this process.
fn server_survives_mutants() {
    let dir = Dir(scratch("fuzz"));
    let (_server, base) = start(&dir.0);
    let n = cases();
    let mut rng = Rng(seed());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let post = |path: String, body: String| {
            let http = http.clone();
            let url = format!("{base}{path}");
            async move {
                let r = http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{path}: no answer to {body:?}: {e}"));
                let status = r.status().as_u16();
                assert!(
                    status < 500 || status == 503,
                    "{path}: {status} for {body:?}"
                );
            }
        };
        let (configs, pols, rpcs, rests) = (configs(), policies(), rpc_seeds(), rest_seeds());
        for i in 0..n {
            let config = mutate(&mut rng, &configs[i % configs.len()]);
            post(
                "/api/v1/configs/validate".into(),
                json!({ "config": config }).to_string(),
            )
            .await;
            let policy = mutate(&mut rng, &pols[i % pols.len()]);
            post(
                "/api/v1/policies/validate".into(),
                json!({ "policies": policy }).to_string(),
            )
            .await;
            post("/mcp".into(), mutate(&mut rng, &rpcs[i % rpcs.len()])).await;
            let (path, body) = &rests[i % rests.len()];
            post((*path).into(), mutate(&mut rng, body)).await;
            if i % 10 == 9 {
                let ok = http.get(format!("{base}/healthz")).send().await;
                assert!(
                    ok.is_ok_and(|r| r.status().is_success()),
                    "server down after case {i}"
                );
            }
        }
    });
    // The parser in this very process: a stack overflow here would abort the test binary.
    let pols = policies();
    for i in 0..n * 10 {
        let text = mutate(&mut rng, &pols[i % pols.len()]);
        let _ = policies::PolicyEngine::defaults_with("fuzz.cedar", &text);
    }
}

pub fn trials() -> Vec<Trial> {
    vec![Trial::test("fuzz::server_survives_mutants", || {
        check(server_survives_mutants)
    })]
}
