//! `make bench` (see `bench/run.sh`): runs [`e2e::bench`] against the release binaries and writes
//! the report to `bench/results.md`, headed by the machine, the date and the commit.
//!
//! Variables: `BENCH_BIN_DIR` (the binaries), `BENCH_DATABASE_URL` (a cluster's admin URL),
//! `BENCH_COLD_STARTS` (20), `BENCH_WARM_GETS` (10000), `BENCH_WARM_POSTS` (2000),
//! `BENCH_HEADER` (the report's first lines).

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
    };
    let report = bench::run(&config).await;
    let header = std::env::var("BENCH_HEADER").unwrap_or_default();
    let document = format!("# make bench\n\n{header}\n{report}");
    let path = e2e::workspace().join("bench").join("results.md");
    std::fs::write(&path, &document).expect("write bench/results.md");
    print!("{document}");
}
