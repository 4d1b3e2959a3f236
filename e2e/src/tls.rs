//! TLS to the database, with certificates the test makes: a certificate authority, a server
//! certificate it signs for `localhost`, another authority that signed nothing, and a Postgres
//! cluster of its own serving that certificate (started and stopped like the test cluster, by
//! `scripts/postgres.sh`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::workspace;

/// The test PKI, written as PEM files into a folder of its own.
pub struct TestPki {
    dir: tempdir::Dir,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempdir::Dir::new("users-api-pki");
        let ca = authority("users-api test CA");
        let other_ca = authority("some other CA");
        let server_key = KeyPair::generate().expect("a server key");
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .and_then(|params| params.signed_by(&server_key, &ca))
            .expect("the server certificate");
        for (file, pem) in [
            ("ca.pem", ca.pem()),
            ("other-ca.pem", other_ca.pem()),
            ("server.crt", server.pem()),
            ("server.key", server_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(file), pem).expect("write a PEM file");
        }
        Self { dir }
    }

    /// The authority that signed the server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// An authority that signed nothing here.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("a CA key");
    CertifiedIssuer::self_signed(params, key).expect("a self-signed CA")
}

/// The admin password of a [`TlsCluster`]: distinctive, so a test can look for it in logs.
pub const TLS_CLUSTER_PASSWORD: &str = "tls-cluster-admin-pw-5e1c";

/// A Postgres cluster serving TLS with the [`TestPki`]'s server certificate (plain connections
/// too, as RDS does unless `rds.force_ssl` is set). Dropping it stops it.
pub struct TlsCluster {
    /// Its admin URL, on 127.0.0.1.
    pub admin_url: String,
    dir: tempdir::Dir,
}

impl TlsCluster {
    pub fn start(pki: &TestPki) -> Self {
        let dir = tempdir::Dir::new("users-api-tls-cluster");
        let admin_url = started(
            postgres_sh("start", dir.path())
                .env("PG_SSL_CERT", pki.file("server.crt"))
                .env("PG_SSL_KEY", pki.file("server.key"))
                .env("DB_PASSWORD", TLS_CLUSTER_PASSWORD),
        );
        Self { admin_url, dir }
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = postgres_sh("stop", self.dir.path()).output();
    }
}

/// Runs `postgres_sh` (a `start` or `standby`) and answers the admin URL it prints.
pub(crate) fn started(postgres_sh: &mut Command) -> String {
    let output = postgres_sh.output().expect("run scripts/postgres.sh");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("DATABASE_URL="))
        .unwrap_or_else(|| {
            panic!(
                "the cluster did not start: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .to_owned()
}

pub(crate) fn postgres_sh(command: &str, dir: &Path) -> Command {
    let mut postgres_sh = Command::new(workspace().join("scripts/postgres.sh"));
    postgres_sh.arg(command).arg(dir);
    postgres_sh
}

/// A folder under the system's temporary directory, removed on drop.
pub(crate) mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).expect("create a temporary folder");
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
