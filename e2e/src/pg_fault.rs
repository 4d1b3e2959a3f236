//! A Postgres-aware TCP proxy that ends a connection at a chosen point of the server's answer,
//! after the server has done its work: what a session ended by the server (an administrator's
//! `pg_terminate_backend`, a failover's shutdown, a crash of another backend) or a network cut
//! looks like to the client when it comes between the commit and `ReadyForQuery`.
//!
//! It forwards the client's bytes as they come, and reads the server's answer message by
//! message (a type byte and a length), so that an armed [`Fault`] fires at the first message
//! of its kind: the server has read the whole flight, including its `Sync`, and committed
//! before it sent anything (Postgres sends an extended-protocol answer at the `Sync`).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Where the server's answer is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The `CommandComplete` passes, then a `FATAL` `57P01` `ErrorResponse` where the rest of
    /// the answer (`CloseComplete`, `ReadyForQuery`) should be, and the connection closes.
    GoodbyeAfterCommandComplete,
    /// The first `DataRow` passes, then the connection closes: nothing after it arrives.
    CutAfterRow,
}

pub struct PgFaultProxy {
    pub port: u16,
    armed: Arc<Mutex<Option<Fault>>>,
    fired: Arc<Mutex<u32>>,
    accept: JoinHandle<()>,
}

impl PgFaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("its address").port();
        let armed: Arc<Mutex<Option<Fault>>> = Arc::default();
        let fired: Arc<Mutex<u32>> = Arc::default();
        let accept = tokio::spawn({
            let (armed, fired) = (Arc::clone(&armed), Arc::clone(&fired));
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (armed, fired) = (Arc::clone(&armed), Arc::clone(&fired));
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(upstream).await {
                            forward(client, server, armed, fired).await;
                        }
                    });
                }
            }
        });
        Self {
            port,
            armed,
            fired,
            accept,
        }
    }

    /// `url` (a database URL) through this proxy.
    pub fn url_for(&self, url: &str) -> String {
        crate::with_port(url, self.port)
    }

    /// The next answer of the kind the fault names is cut there (once).
    pub fn arm(&self, fault: Fault) {
        *lock(&self.armed) = Some(fault);
    }

    /// How many faults have fired.
    pub fn fired(&self) -> u32 {
        *lock(&self.fired)
    }
}

impl Drop for PgFaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    mut client: TcpStream,
    mut server: TcpStream,
    armed: Arc<Mutex<Option<Fault>>>,
    fired: Arc<Mutex<u32>>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let upstream = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let downstream = async {
        let mut first = true;
        loop {
            let mut kind = [0_u8; 1];
            if server_read.read_exact(&mut kind).await.is_err() {
                break;
            }
            // The answer to an SSLRequest is one byte, 'N' (no TLS here): no message follows.
            if first && kind[0] == b'N' {
                first = false;
                if client_write.write_all(&kind).await.is_err() {
                    break;
                }
                continue;
            }
            first = false;
            let mut length = [0_u8; 4];
            if server_read.read_exact(&mut length).await.is_err() {
                break;
            }
            let body_length = usize::try_from(u32::from_be_bytes(length))
                .unwrap_or(0)
                .saturating_sub(4);
            let mut body = vec![0_u8; body_length];
            if server_read.read_exact(&mut body).await.is_err() {
                break;
            }
            let mut message = Vec::with_capacity(5 + body_length);
            message.extend_from_slice(&kind);
            message.extend_from_slice(&length);
            message.extend_from_slice(&body);
            if client_write.write_all(&message).await.is_err() {
                break;
            }
            let fault = {
                let mut armed = lock(&armed);
                let fires = matches!(
                    (*armed, kind[0]),
                    (Some(Fault::GoodbyeAfterCommandComplete), b'C')
                        | (Some(Fault::CutAfterRow), b'D')
                );
                match fires {
                    true => armed.take(),
                    false => None,
                }
            };
            if let Some(fault) = fault {
                if fault == Fault::GoodbyeAfterCommandComplete {
                    let _ = client_write.write_all(&terminated()).await;
                }
                *lock(&fired) += 1;
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    // Whichever ends first ends the connection, both ways.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

/// `ErrorResponse`: FATAL 57P01, as Postgres sends it when an administrator terminates a
/// session.
fn terminated() -> Vec<u8> {
    let mut fields = Vec::new();
    for (code, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "57P01"),
        (b'M', "terminating connection due to administrator command"),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let length = u32::try_from(fields.len() + 4).expect("a short message");
    let mut message = vec![b'E'];
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(&fields);
    message
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
