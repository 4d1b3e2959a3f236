//! TLS to the database that verifies the server (`DB_SSLMODE=verify-full`, the template's
//! default), against a cluster serving a certificate from a test CA: the right CA and name
//! connect; another CA or another name is refused, as a 503 to the client and a log line that
//! says why, never with the credentials.

use e2e::{
    tls::{TestPki, TlsCluster, TLS_CLUSTER_PASSWORD},
    Stack, TestDatabase,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_trusts_only_the_configured_ca_and_the_certificates_name() {
    let pki = TestPki::new();
    let cluster = TlsCluster::start(&pki);
    let database = TestDatabase::create_on(&cluster.admin_url, "tls").await;
    let url = database.url.clone();
    let ca = pki.ca();
    let other_ca = pki.other_ca();

    // The certificate names `localhost`; the cluster listens on 127.0.0.1.
    let cases = [
        ("tls-trusted", "localhost", &ca, 200),
        ("tls-other-ca", "localhost", &other_ca, 503),
        ("tls-other-name", "127.0.0.1", &ca, 503),
    ];
    for (name, host, root, status) in cases {
        let root = root.to_string_lossy();
        let stack = Stack::spawn(
            name,
            &[
                ("DATABASE_URL", url.as_str()),
                ("DB_HOST", host),
                ("DB_SSLMODE", "verify-full"),
                ("DB_SSLROOTCERT", &*root),
                ("DB_ACQUIRE_TIMEOUT_MS", "1500"),
            ],
        )
        .await;

        let health = stack.get("/health").await;

        assert_eq!(health.status, status, "{name}: {}", health.body);
        if status == 503 {
            health.assert_problem(503);
            let logs = stack.logs();
            let reason = logs
                .lines()
                .find(|line| line.contains("database unavailable"))
                .unwrap_or_else(|| panic!("{name}: no log line says why:\n{logs}"));
            assert!(reason.contains("certificate"), "{name}: {reason}");
            assert!(
                !logs.contains(TLS_CLUSTER_PASSWORD),
                "{name}: the password reached the log"
            );
        }
    }
}
