//! The accept loop: plain HTTP/1.1 or HTTPS connections, each of which a handler can reset.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use super::Shared;
use super::handlers;

/// Lets a handler reset its own connection (the `Reset` fault): a second handle on the socket
/// sets a zero linger, so that closing it sends a TCP RST instead of a FIN.
#[derive(Debug)]
pub(super) struct Connection {
    socket: Mutex<Option<std::net::TcpStream>>,
    aborted: Notify,
}

impl Connection {
    pub(super) fn reset(&self) {
        let socket = self
            .socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(socket) = socket {
            if let Err(error) = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO)) {
                tracing::debug!(%error, "mock: could not set a zero linger; closing instead");
            }
            drop(socket);
        }
        self.aborted.notify_one();
    }
}

pub(super) async fn run(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, Arc::clone(&shared), tls.clone()));
            }
            Err(error) => tracing::debug!(%error, "mock: accept failed"),
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let (stream, socket) = match split_socket(stream) {
        Ok(split) => split,
        Err(error) => {
            tracing::debug!(%error, "mock: could not prepare a connection");
            return;
        }
    };
    let connection = Arc::new(Connection {
        socket: Mutex::new(Some(socket)),
        aborted: Notify::new(),
    });
    let shutdown = shared.shutdown.subscribe();
    match tls {
        None => serve(stream, shared, connection, shutdown).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => serve(stream, shared, connection, shutdown).await,
            Err(error) => tracing::debug!(%error, "mock: TLS handshake failed"),
        },
    }
}

/// The stream to serve, and a second handle on the same socket for resets.
fn split_socket(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let socket = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, socket))
}

async fn serve<S>(
    stream: S,
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler_connection = Arc::clone(&connection);
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let connection = Arc::clone(&handler_connection);
        async move { Ok::<_, Infallible>(handlers::handle(&shared, request, &connection).await) }
    });
    let served = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = served => {
            if let Err(error) = result {
                tracing::debug!(%error, "mock: connection ended with an error");
            }
        }
        () = connection.aborted.notified() => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}
