//! The contract: openapi.yaml, tested by Schemathesis against the real functions served by
//! `cargo lambda watch` over a real database, with a valid token. Every one of its checks runs
//! (no server error, every status, header, media type and body as documented, invalid data
//! rejected, valid data accepted, 405 with `Allow` for other methods, 401 without the token),
//! through every phase: the document's examples, its boundaries (coverage), random requests
//! (fuzzing) and, following its links, sequences (create, then get, patch and delete).
//!
//! The run is seeded (`CONTRACT_SEED`, or a fixed one) so that a failure reproduces; its
//! configuration and the hooks that teach it what a schema cannot say are in tests/contract/.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use e2e::{workspace, Stack};
use serde_json::Value;
use shared::{http::Route, routes::ROUTES};

/// The seed when `CONTRACT_SEED` does not name one.
const DEFAULT_SEED: &str = "20261125";
const MIN_REQUESTS: usize = 500;

#[tokio::test]
async fn every_operation_keeps_to_openapi_yaml_under_schemathesis() {
    let stack = Stack::start("contract").await;
    let root = workspace();
    let dir = root.join("target").join("contract");
    // Nothing from a previous run is read: the reports and Hypothesis's files start empty.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create target/contract");
    let seed = std::env::var("CONTRACT_SEED").unwrap_or_else(|_| DEFAULT_SEED.to_owned());
    let har = dir.join("requests.har");
    let report = dir.join("report.json");

    // Run from target/contract: Schemathesis and Hypothesis write their caches into the
    // working directory, and nothing may be written into the workspace.
    let output = Command::new(root.join(".venv/bin/schemathesis"))
        .current_dir(&dir)
        .arg("--config-file")
        .arg(root.join("tests/contract/schemathesis.toml"))
        .arg("run")
        .arg(root.join("openapi.yaml"))
        .args(["--url", &stack.base_url, "--seed", &seed])
        .args(["--report", "har,json"])
        .arg("--report-har-path")
        .arg(&har)
        .arg("--report-json-path")
        .arg(&report)
        .env("PYTHONPATH", root.join("tests/contract"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("HYPOTHESIS_STORAGE_DIRECTORY", dir.join("hypothesis"))
        .env(
            "USERS_API_TOKEN",
            stack.token.as_deref().expect("the stack's token"),
        )
        .output()
        .expect("run schemathesis from .venv (scripts/bootstrap.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);

    assert!(
        output.status.success(),
        "schemathesis found problems (seed {seed}; reports in {}; the functions' log in \
         {}):\n{stdout}\n{}",
        dir.display(),
        stack.log_path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report = read_json(&report);
    for phase in ["examples", "coverage", "fuzzing", "stateful"] {
        assert_eq!(
            report["phases"][phase]["status"], "success",
            "the {phase} phase ran and passed: {}",
            report["phases"]
        );
    }
    assert!(report["failures"].as_array().is_some_and(Vec::is_empty));
    assert!(report["errors"].as_array().is_some_and(Vec::is_empty));
    let requests = requests_by_operation(&read_json(&har));
    let total: usize = requests.values().sum();
    assert!(
        total >= MIN_REQUESTS,
        "{total} requests, fewer than {MIN_REQUESTS}: {requests:?}"
    );
    let operations: BTreeSet<&str> = requests.keys().map(String::as_str).collect();
    // Every declared route, shared/src/routes.
    for route in ROUTES {
        assert!(
            operations.contains(route.key),
            "{} was never called: {requests:?}",
            route.key
        );
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{} is JSON: {err}", path.display()))
}

/// The requests the HAR recorded, counted by `METHOD /path` with ids as `{id}`.
fn requests_by_operation(har: &Value) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in har["log"]["entries"].as_array().expect("HAR entries") {
        let request = &entry["request"];
        let url = request["url"].as_str().unwrap_or_default();
        let path = reqwest::Url::parse(url)
            .map(|url| url.path().to_owned())
            .unwrap_or_default();
        let template = path_template(&path).unwrap_or(&path);
        let method = request["method"].as_str().unwrap_or_default();
        *counts.entry(format!("{method} {template}")).or_default() += 1;
    }
    counts
}

/// The declared path that `path` matches, segment by segment (`{name}` matches any one
/// segment): `/users/7` is `/users/{id}`, `/users/7/summary` is not.
fn path_template(path: &str) -> Option<&'static str> {
    ROUTES.iter().map(Route::path).find(|template| {
        let (want, have): (Vec<_>, Vec<_>) =
            (template.split('/').collect(), path.split('/').collect());
        want.len() == have.len()
            && want
                .iter()
                .zip(&have)
                .all(|(want, have)| want == have || (want.starts_with('{') && !have.is_empty()))
    })
}

#[test]
fn a_deeper_path_is_not_read_as_its_parent() {
    assert_eq!(path_template("/users/7"), Some("/users/{id}"));
    assert_eq!(path_template("/users"), Some("/users"));
    assert_eq!(path_template("/users/7/summary"), None);
    assert_eq!(path_template("/users/"), None);
}
