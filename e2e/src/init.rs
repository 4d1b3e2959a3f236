//! A function's init phase on its own: the binary run outside any runtime until it exits, as
//! a failed init looks in Lambda.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::Command;

use crate::{free_port, runtime::binary_path};

/// What running a function binary outside any runtime printed before it exited.
pub struct InitOutcome {
    pub success: bool,
    pub output: String,
    pub elapsed: Duration,
}

/// Runs a function's binary with `env` (on top of a bare environment) until it exits: how a
/// failed init looks in Lambda, where the process exits before it asks for an event.
pub async fn run_init(function: &str, env: &[(String, String)]) -> InitOutcome {
    let binary = binary_path(function);
    let started = Instant::now();
    let output = Command::new(&binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        // Were init to succeed, the runtime would find nothing here and exit too; the tests
        // therefore assert on what the init failure says, not only on the exit status.
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap_or_else(|_| panic!("{} hung during init", binary.display()))
        .unwrap_or_else(|err| panic!("run {}: {err}", binary.display()));
    InitOutcome {
        success: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        elapsed: started.elapsed(),
    }
}
