//! A TCP proxy in front of a dependency (Postgres, moto, a JWKS issuer) that a test can take
//! down and bring back up on the same port ("it is down", without stopping the shared test
//! cluster), slow down (a one-way delay per direction, connection set-up included: the network
//! distance to AWS, or a struggling service), or make stop forwarding on the connections it
//! has open without closing them (a NAT or a failover that forgets a connection: packets
//! vanish, no reset), or swallow everything, new connections included (a dead address: a
//! connect gets no answer, nor does anything sent).

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct Proxy {
    /// The loopback address it listens on (127.0.0.1 unless started with [`Proxy::start_on`]).
    pub ip: Ipv4Addr,
    pub port: u16,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Bumped by [`Proxy::black_hole`]: connections accepted before it forward nothing more.
    black_holes: watch::Sender<u64>,
    /// One-way delay in milliseconds, read for every chunk forwarded.
    delay_ms: Arc<AtomicU64>,
    /// Chunks forwarded from clients to the server: a client that waits for each answer, as a
    /// database client does, sends one per round trip.
    sent: Arc<AtomicU64>,
    /// Connections accepted so far.
    accepted: Arc<AtomicU64>,
    /// New connections are accepted and then ignored: nothing is forwarded either way.
    swallowing: Arc<AtomicBool>,
    /// Bumped by [`Proxy::down`] under the tasks' lock: an accept loop started before it adds
    /// no task after it (it checks under the same lock), so no connection outlives a `down`.
    listening: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_on(Ipv4Addr::LOCALHOST, upstream).await
    }

    /// A proxy listening on another loopback address (`127.0.0.2`): a host of its own.
    pub async fn start_on(ip: Ipv4Addr, upstream: SocketAddr) -> Self {
        let proxy = Self {
            ip,
            port: crate::free_port(),
            upstream,
            tasks: Arc::default(),
            black_holes: watch::Sender::new(0),
            delay_ms: Arc::default(),
            sent: Arc::default(),
            accepted: Arc::default(),
            swallowing: Arc::default(),
            listening: Arc::default(),
        };
        proxy.up();
        proxy
    }

    /// A proxy in front of the loopback service at `url` (`http://127.0.0.1:<port>/...`).
    pub async fn in_front_of(url: &str) -> Self {
        let port = reqwest::Url::parse(url)
            .ok()
            .and_then(|url| url.port())
            .expect("a loopback URL with a port");
        Self::start(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// `url` (on 127.0.0.1), reached through this proxy.
    pub fn url_for(&self, url: &str) -> String {
        assert_eq!(self.ip, Ipv4Addr::LOCALHOST, "url_for keeps the URL's host");
        crate::with_port(url, self.port)
    }

    /// Listens again and forwards new connections.
    pub fn up(&self) {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(SocketAddr::from((self.ip, self.port)))
            .expect("bind the proxy port");
        let listener = socket.listen(64).expect("listen");
        let upstream = self.upstream;
        let tasks = Arc::clone(&self.tasks);
        let black_holes = self.black_holes.clone();
        let delay_ms = Arc::clone(&self.delay_ms);
        let sent = Arc::clone(&self.sent);
        let accepted = Arc::clone(&self.accepted);
        let swallowing = Arc::clone(&self.swallowing);
        let listening = Arc::clone(&self.listening);
        let this_listener = listening.load(Ordering::SeqCst);
        // A connection's task, spawned only while this listener is the proxy's; else dropped,
        // its sockets closed with it.
        let add = move |task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
            let mut tasks = lock(&tasks);
            let current = listening.load(Ordering::SeqCst) == this_listener;
            if current {
                tasks.push(tokio::spawn(task));
            }
            current
        };
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                if swallowing.load(Ordering::SeqCst) {
                    // Held open, never answered, until the client gives up.
                    let swallow = async move {
                        let mut sink = vec![0; 1024];
                        while client.read(&mut sink).await.is_ok_and(|read| read > 0) {}
                    };
                    if !add(Box::pin(swallow)) {
                        return;
                    }
                    continue;
                }
                let mut black_hole = black_holes.subscribe();
                let accepted_in = *black_hole.borrow_and_update();
                let delay_ms = Arc::clone(&delay_ms);
                let sent = Arc::clone(&sent);
                let forward = async move {
                    // The handshake's round trip.
                    delay(&delay_ms, 2).await;
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Each chunk goes on as soon as its delay is over, as the endpoints sent it:
                    // Nagle's algorithm here would hold a chunk until the previous one is
                    // acknowledged, adding a delayed ACK's 40 ms no real network adds.
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let black_holed =
                        async { black_hole.wait_for(|now| *now > accepted_in).await.is_ok() };
                    let (mut client_read, mut client_write) = client.split();
                    let (mut server_read, mut server_write) = server.split();
                    let both_ways = async {
                        tokio::join!(
                            pump(&mut client_read, &mut server_write, &delay_ms, Some(&sent)),
                            pump(&mut server_read, &mut client_write, &delay_ms, None),
                        )
                    };
                    tokio::select! {
                        _ = both_ways => {}
                        _ = black_holed => {
                            // Both ends stay open; nothing moves between them any more.
                            std::future::pending::<()>().await;
                        }
                    }
                };
                if !add(Box::pin(forward)) {
                    return;
                }
            }
        });
        lock(&self.tasks).push(accept);
    }

    /// Stops listening and cuts every open connection: connects are refused from now on.
    pub fn down(&self) {
        let mut tasks = lock(&self.tasks);
        self.listening.fetch_add(1, Ordering::SeqCst);
        for task in tasks.drain(..) {
            task.abort();
        }
    }

    /// Cuts every open connection and listens again once they are closed (and the port is
    /// free): each client must connect anew.
    pub async fn cut_connections(&self) {
        let tasks: Vec<_> = {
            let mut tasks = lock(&self.tasks);
            self.listening.fetch_add(1, Ordering::SeqCst);
            tasks.drain(..).collect()
        };
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Resolves once the task's future (its sockets with it) is dropped.
            let _ = task.await;
        }
        self.up();
    }

    /// Delays everything forwarded from now on by `one_way` in each direction (a new
    /// connection's set-up by a round trip).
    pub fn delay(&self, one_way: Duration) {
        let millis = u64::try_from(one_way.as_millis()).expect("a delay that fits");
        self.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// How many chunks clients have sent through so far (see the field).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// How many connections clients have opened through the proxy so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// A dead address: every open connection stops forwarding ([`Proxy::black_hole`]), and new
    /// ones are accepted but never answered, until [`Proxy::restore`].
    pub fn black_hole_all(&self) {
        self.swallowing.store(true, Ordering::SeqCst);
        self.black_hole();
    }

    /// New connections are forwarded again (those black-holed stay so).
    pub fn restore(&self) {
        self.swallowing.store(false, Ordering::SeqCst);
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

/// Forwards `from` to `to`, each chunk after the current delay, until `from` ends, counting
/// the chunks in `count` when given.
async fn pump<R, W>(from: &mut R, to: &mut W, delay_ms: &AtomicU64, count: Option<&AtomicU64>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0; 16 * 1024];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        if let Some(count) = count {
            count.fetch_add(1, Ordering::SeqCst);
        }
        delay(delay_ms, 1).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

async fn delay(delay_ms: &AtomicU64, times: u64) {
    let millis = delay_ms.load(Ordering::SeqCst) * times;
    if millis > 0 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
