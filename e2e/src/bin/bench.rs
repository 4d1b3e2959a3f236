//! `make bench` (see `bench/run.sh`): runs [`e2e::bench`] against the release binaries and writes
//! the report to `bench/results.md`, headed by the machine, the date and the commit.
//!
//! Variables: `BENCH_BIN_DIR` (the binaries), `BENCH_DATABASE_URL` (a cluster's admin URL),
//! `BENCH_COLD_STARTS` (20), `BENCH_WARM_GETS` (10000), `BENCH_WARM_POSTS` (2000),
//! `BENCH_FLEET_PER_FUNCTION` (15), `BENCH_FLEET_BURSTS` (8), `BENCH_CONCURRENT_REQUESTS` (400),
//! `BENCH_HEADER` (the report's first lines). PgBouncer from `E2E_PGBOUNCER`.

use std::{path::PathBuf, str::FromStr};

use e2e::bench::{self, Config};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run `make bench`"))
}

fn number<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let warm_gets = number("BENCH_WARM_GETS", 10_000);
    let config = Config {
        bin_dir: PathBuf::from(var("BENCH_BIN_DIR")),
        admin_url: var("BENCH_DATABASE_URL"),
        cold_starts: number("BENCH_COLD_STARTS", 20),
        warm_gets,
        warm_posts: number("BENCH_WARM_POSTS", 2_000),
        rss_checkpoint: (warm_gets / 10).max(1),
        fleet_per_function: number("BENCH_FLEET_PER_FUNCTION", 15),
        fleet_bursts: number("BENCH_FLEET_BURSTS", 8),
        concurrent_requests: number("BENCH_CONCURRENT_REQUESTS", 400),
        gateway_burst: number("BENCH_GATEWAY_BURST", 100),
    };
    let mut report = bench::run(&config).await;
    report.push_str(&artifacts(&config.bin_dir));
    let header = std::env::var("BENCH_HEADER").unwrap_or_default();
    let document = format!("# make bench\n\n{}\n\n{report}", header.trim_end());
    let path = e2e::workspace().join("bench").join("results.md");
    std::fs::write(&path, &document).expect("write bench/results.md");
    print!("{document}");
}

/// The Lambda zips of the last `make build` (arm64, release) beside the binaries, if any.
fn artifacts(bin_dir: &std::path::Path) -> String {
    let Some(lambda) = bin_dir.parent().map(|target| target.join("lambda")) else {
        return String::new();
    };
    let mut rows: Vec<String> = std::fs::read_dir(&lambda)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let zip = entry.path().join("bootstrap.zip");
            let metadata = std::fs::metadata(&zip).ok()?;
            let built: time::OffsetDateTime = metadata.modified().ok()?.into();
            Some(format!(
                "| {} | {} | {} |",
                entry.file_name().to_string_lossy(),
                metadata.len(),
                built
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()?
            ))
        })
        .collect();
    if rows.is_empty() {
        return "\n## Artifacts\n\nNo `bootstrap.zip`: run `make build` first.\n".to_owned();
    }
    rows.sort();
    format!(
        "\n## Artifacts\n\nThe `bootstrap.zip` files of the last `make build` (arm64, release).\n\n\
         | function | bytes | built |\n|---|---|---|\n{}\n",
        rows.join("\n")
    )
}
