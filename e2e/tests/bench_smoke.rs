//! `make bench`'s harness, run small (a few iterations, no figure asserted) against the debug
//! binaries, so that it cannot rot between benchmark runs. The figures are read from the
//! report `make bench` writes, never asserted in a test.

use e2e::{
    bench::{self, Config},
    runtime::binary_path,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_runs_and_reports_every_section() {
    let config = Config {
        bin_dir: binary_path("get-user")
            .parent()
            .expect("the binaries' folder")
            .to_path_buf(),
        admin_url: std::env::var("E2E_DATABASE_URL")
            .expect("E2E_DATABASE_URL: run the end-to-end tests through `make test`"),
        cold_starts: 2,
        warm_gets: 20,
        warm_posts: 5,
        rss_checkpoint: 10,
        fleet_per_function: 2,
        fleet_bursts: 2,
        concurrent_requests: 16,
        gateway_burst: 10,
    };

    let report = bench::run(&config).await;

    for section in [
        "## Cold start",
        "## Credentials at init",
        "| get-user | AWS-like |",
        "| create-user | none |",
        "## Warm",
        "hello-world",
        "## Memory",
        "## Traces",
        "| off (no endpoint) | 10 |",
        "| on | 10 |",
        "## Database round trips per warm request",
        "| `GET /users/{id}` | 1.00 | 1.00 |",
        "## Fleet",
        "| through the pooler | 8 | 8 | 16 | 100.0% |",
        "## Bursts through the gateway",
        "| behind the proxy | 10 (warm) | 10 | 0 | 0 |",
        "## Lambda Managed Instances",
        "## Reads on a replica",
        "| the writer, named statements | 20 | 0 | 1.00 |",
        "| the reader | 0 | 20 | 1.00 |",
        "| the reader, named statements | 0 | 20 | 1.00 |",
    ] {
        assert!(
            report.contains(section),
            "{section} missing from:\n{report}"
        );
    }
    // Each traced request sent its spans, the request's and the route's at least.
    let received = report
        .split(" spans received")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|count| count.parse::<usize>().ok());
    assert!(received.is_some_and(|count| count >= 20), "{report}");
}
