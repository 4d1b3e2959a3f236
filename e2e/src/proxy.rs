//! A TCP proxy in front of Postgres that a test can take down and bring back up on the same
//! port: "the database is down" without stopping the shared test cluster.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
};

pub struct Proxy {
    pub port: u16,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let proxy = Self {
            port: crate::free_port(),
            upstream,
            tasks: Arc::default(),
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
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let forward = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("not poisoned").push(forward);
            }
        });
        self.tasks.lock().expect("not poisoned").push(accept);
    }

    /// Stops listening and cuts every open connection: connects are refused from now on.
    pub fn down(&self) {
        for task in self.tasks.lock().expect("not poisoned").drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}
