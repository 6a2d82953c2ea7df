//! The OpenAPI document is the contract: schemathesis generates requests from `/api/openapi.json`
//! (valid ones, invalid ones, undeclared methods, sequences that follow the document's links) against
//! the live server, and every answer must be documented (status, content type, body schema), no answer
//! may be a server error, and undeclared methods get 405. `.ci/run` installs schemathesis.

use std::process::Command;

use crate::helpers::spawn_app_with;

/// Test cases per operation and phase; with a fixed seed the run is reproducible. One worker: with
/// several, hypothesis describes strategies from several threads at once, and CPython 3.11's `ast`
/// then fails now and then inside the tool ("AST constructor recursion depth mismatch").
const EXAMPLES: &str = "10";
const SEED: &str = "20261130";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_only_what_its_openapi_document_describes() {
    // With keys required, so that the auth checks run too (requests without the key must be refused).
    const ADMIN_KEY: &str = "contract-test-admin-key-0123456789abcdef";
    let app = spawn_app_with(|s| s.security.admin_key = Some(ADMIN_KEY.into())).await;
    let schema = app.url("/api/openapi.json");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                "-m",
                "schemathesis.cli",
                "--no-color",
                "--config-file",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml"),
            ])
            .args(["run", &schema, "--checks", "all", "--max-examples", EXAMPLES, "--seed", SEED])
            .args(["--header", &format!("Authorization: Bearer {ADMIN_KEY}")])
            .args(["--generation-database", "none", "--workers", "1", "--request-timeout", "20"])
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| {
        panic!("cannot run schemathesis (`st`): {e}; install it with `python3 -m pip install schemathesis`")
    });
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        !report.contains("No module named schemathesis"),
        "schemathesis is not installed; install it with `python3 -m pip install schemathesis` (.ci/run does)"
    );
    assert!(out.status.success(), "schemathesis found answers outside the document:\n{report}");
    eprintln!("{}", report.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
}
