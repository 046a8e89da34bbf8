//! A TCP proxy between one replica and the store, whose connections can be cut: the replica's
//! store goes away while the store itself, and the other replicas, stay up.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A proxy to one address; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub(crate) async fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (cut, _) = watch::channel(false);
        let cuts = cut.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // While cut, a new connection is dropped at once.
                if !*cuts.borrow() {
                    tokio::spawn(forward(client, target, cuts.subscribe()));
                }
            }
        });
        Ok(Self {
            addr,
            cut,
            accepting,
        })
    }

    /// Where to connect instead of the target.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection and refuses new ones (`true`), or lets them through again.
    pub(crate) fn cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut(true);
    }
}

/// Copies both ways between `client` and `target` until either side closes or the proxy cuts.
async fn forward(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_cut_proxy_closes_its_connections_and_refuses_new_ones_until_restored() {
        let echo = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        let proxy = Proxy::start(target).await.unwrap();
        let echoed = |mut stream: TcpStream| async move {
            stream.write_all(b"ping").await.ok()?;
            let mut answer = [0; 4];
            stream.read_exact(&mut answer).await.ok()?;
            Some(answer)
        };
        let open = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut kept = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echoed(open).await, Some(*b"ping"));

        proxy.cut(true);
        let mut rest = Vec::new();
        assert_eq!(kept.read_to_end(&mut rest).await.unwrap(), 0);
        let refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echoed(refused).await, None);

        proxy.cut(false);
        let again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echoed(again).await, Some(*b"ping"));
    }
}
