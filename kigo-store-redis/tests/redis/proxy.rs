//! A TCP proxy in front of Redis that cuts a connection at a chosen moment: before the next
//! command reaches Redis, or after Redis answered it but before the answer reaches the client.
//! Either way the client sees a dropped connection and cannot tell whether the command ran.
//! It can also close new connections at once, as a server that is restarting would, or fall
//! silent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where the next cut happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The next command is swallowed: it never runs.
    BeforeCommand,
    /// The next reply is swallowed: the command ran.
    AfterReply,
    /// From now on nothing is forwarded, but every connection stays open: a network that went
    /// silent, or a peer that died without closing its connections.
    Silence,
}

/// The proxy; stops accepting when dropped.
pub(crate) struct CuttingProxy {
    port: u16,
    armed: Arc<Mutex<Option<Cut>>>,
    refusing: Arc<AtomicUsize>,
    accepting: JoinHandle<()>,
}

impl CuttingProxy {
    /// Listens on a free loopback port and forwards to `upstream_port`.
    pub(crate) async fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(Mutex::new(None));
        let refusing = Arc::new(AtomicUsize::new(0));
        let accepting = tokio::spawn({
            let armed = Arc::clone(&armed);
            let refusing = Arc::clone(&refusing);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let refuse = refusing
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if refuse {
                        drop(client);
                        continue;
                    }
                    let upstream = TcpStream::connect(("127.0.0.1", upstream_port))
                        .await
                        .unwrap();
                    tokio::spawn(relay(client, upstream, Arc::clone(&armed)));
                }
            }
        });
        Self {
            port,
            armed,
            refusing,
            accepting,
        }
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The URL to give the client.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Cuts the connection that next carries traffic in the direction `cut` names.
    pub(crate) fn arm(&self, cut: Cut) {
        *lock(&self.armed) = Some(cut);
    }

    /// Closes the next `count` new connections as soon as they are accepted.
    pub(crate) fn refuse_next(&self, count: usize) {
        self.refusing.store(count, Ordering::SeqCst);
    }

    /// Whether every connection to be refused was.
    pub(crate) fn has_refused(&self) -> bool {
        self.refusing.load(Ordering::SeqCst) == 0
    }

    /// Whether the armed cut has happened (a silence never ends).
    pub(crate) fn has_cut(&self) -> bool {
        lock(&self.armed).is_none()
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

fn lock(armed: &Mutex<Option<Cut>>) -> std::sync::MutexGuard<'_, Option<Cut>> {
    armed.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What to do with data going in `direction`: forward it, or cut the connection (taking the
/// armed cut); `None` while silent.
fn verdict(armed: &Mutex<Option<Cut>>, direction: Cut) -> Option<bool> {
    let mut armed = lock(armed);
    match *armed {
        Some(Cut::Silence) => None,
        Some(cut) if cut == direction => {
            *armed = None;
            Some(false)
        }
        _ => Some(true),
    }
}

async fn relay(client: TcpStream, upstream: TcpStream, armed: Arc<Mutex<Option<Cut>>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let mut buffer = vec![0; 64 * 1024];
    let mut reply = vec![0; 64 * 1024];
    loop {
        tokio::select! {
            read = client_read.read(&mut buffer) => {
                let Ok(n @ 1..) = read else { return };
                match verdict(&armed, Cut::BeforeCommand) {
                    None => return silent(client_read, client_write).await,
                    Some(false) => return,
                    Some(true) => {}
                }
                if upstream_write.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
            read = upstream_read.read(&mut reply) => {
                let Ok(n @ 1..) = read else { return };
                match verdict(&armed, Cut::AfterReply) {
                    None => return silent(client_read, client_write).await,
                    Some(false) => return,
                    Some(true) => {}
                }
                if client_write.write_all(&reply[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Keeps the client's connection open without ever answering, until the client closes it.
async fn silent(
    mut client_read: tokio::net::tcp::OwnedReadHalf,
    client_write: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut sink = vec![0; 64 * 1024];
    while let Ok(1..) = client_read.read(&mut sink).await {}
    drop(client_write);
}
