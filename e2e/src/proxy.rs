//! A TCP proxy in front of Postgres that a test can take down and bring back up on the same
//! port ("the database is down", without stopping the shared test cluster), or that can stop
//! forwarding on the connections it has open without closing them (a NAT or a failover that
//! forgets a connection: packets vanish, no reset).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    net::{TcpSocket, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct Proxy {
    pub port: u16,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Bumped by [`Proxy::black_hole`]: connections accepted before it forward nothing more.
    black_holes: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let proxy = Self {
            port: crate::free_port(),
            upstream,
            tasks: Arc::default(),
            black_holes: watch::Sender::new(0),
        };
        proxy.up();
        proxy
    }

    /// Listens again and forwards new connections.
    pub fn up(&self) {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .expect("bind the proxy port");
        let listener = socket.listen(64).expect("listen");
        let upstream = self.upstream;
        let tasks = Arc::clone(&self.tasks);
        let black_holes = self.black_holes.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut black_hole = black_holes.subscribe();
                let accepted_in = *black_hole.borrow_and_update();
                let forward = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let black_holed =
                        async { black_hole.wait_for(|now| *now > accepted_in).await.is_ok() };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = black_holed => {
                            // Both ends stay open; nothing moves between them any more.
                            std::future::pending::<()>().await;
                        }
                    }
                });
                lock(&tasks).push(forward);
            }
        });
        lock(&self.tasks).push(accept);
    }

    /// Stops listening and cuts every open connection: connects are refused from now on.
    pub fn down(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    /// Stops forwarding on every connection open now, keeping them open: whatever either end
    /// sends vanishes, and neither sees a reset. New connections are forwarded as before.
    pub fn black_hole(&self) {
        self.black_holes.send_modify(|generation| *generation += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
