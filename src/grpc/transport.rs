//! The server's connections, tuned for many small HTTP/2 frames.
//!
//! h2 copies a DATA frame into its 16 KiB write buffer only when the payload is below a threshold:
//! 256 bytes on a transport that supports vectored writes, 1 KiB on one that does not. A larger frame
//! is written on its own, so on plain `TcpStream` every snapshot or unary reply of a few hundred bytes
//! costs one `writev` (measured: 8 000 per second for 10 000 snapshot subscribers on 100
//! connections). [`Coalescing`] reports no vectored writes, so h2 copies such frames and writes the
//! frames of many streams in one call; frames of 1 KiB and more (audio chunks) still go out uncopied.
//! Over TLS the same holds one layer up: each write h2 makes becomes TLS records and a socket write,
//! so TLS streams are wrapped too.
//!
//! Every accepted connection holds one of `--max-connections` slots ([`Capped`]) until it closes,
//! from accept on (a TLS handshake in progress holds one): a connection beyond the cap is closed
//! as soon as it is accepted, so a flood of idle sockets costs a file descriptor for an instant,
//! never a connection's buffers. A connection that sends nothing within [`FIRST_BYTES_TIMEOUT`] of
//! its accept is closed, so idle sockets cannot keep the slots either (hyper times out an
//! unfinished HTTP/1.1 head, but not a connection that has sent no byte at all).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use std::{
    future::Future,
    sync::{Arc, LazyLock},
};

use futures::{Stream, StreamExt, TryStreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming, TlsConnectInfo};

/// A server-side connection that makes h2 coalesce small frames (see the module header).
#[derive(Debug)]
pub struct Coalescing<S>(pub(crate) S);

/// A plaintext connection of the gRPC port.
pub type CoalescingTcp = Coalescing<Capped<TcpStream>>;

/// How long a new connection has to send its first bytes (a request, an HTTP/2 preface or a TLS
/// hello) before it is closed.
pub const FIRST_BYTES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection holding one of its listener's slots until it is dropped, closed when it sends
/// nothing within [`FIRST_BYTES_TIMEOUT`].
#[derive(Debug)]
pub struct Capped<S> {
    io: S,
    _slot: OwnedSemaphorePermit,
    /// Until the first bytes arrive.
    first_bytes: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Capped<S> {
    /// The connection.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

/// The listener's connections, `TCP_NODELAY` on, at most `max_connections` open at once: one more is
/// closed at accept (counted, and logged a few times a second at most).
pub fn tcp(
    listener: TcpListener,
    max_connections: usize,
) -> impl Stream<Item = Result<Capped<TcpStream>, io::Error>> {
    let slots = Arc::new(Semaphore::new(max_connections));
    TcpIncoming::from(listener).with_nodelay(Some(true)).filter_map(move |accepted| {
        let slot = slots.clone().try_acquire_owned();
        std::future::ready(match (accepted, slot) {
            (Ok(io), Ok(slot)) => {
                let first_bytes = Some(Box::pin(tokio::time::sleep(FIRST_BYTES_TIMEOUT)));
                Some(Ok(Capped { io, _slot: slot, first_bytes }))
            }
            (Ok(io), Err(_)) => {
                refuse(&io, max_connections);
                None
            }
            (Err(e), _) => Some(Err(e)),
        })
    })
}

/// Closes a connection over the cap (by dropping it), counted and logged.
fn refuse(io: &TcpStream, max_connections: usize) {
    static LOG: LazyLock<super::auth::LogThrottle> = LazyLock::new(Default::default);
    metrics::counter!("maestro_connections_refused_total").increment(1);
    if let Some(held_back) = LOG.admit() {
        let peer = io.peer_addr().ok();
        tracing::warn!(?peer, max_connections, held_back, "connection closed: --max-connections are open");
    }
}

/// The listener's connections (`TCP_NODELAY` on, at most `max_connections`), as [`CoalescingTcp`].
pub fn incoming(
    listener: TcpListener,
    max_connections: usize,
) -> impl Stream<Item = Result<CoalescingTcp, io::Error>> {
    tcp(listener, max_connections).map_ok(Coalescing)
}

/// The client's address, from a request's extensions, over plain TCP or TLS.
pub fn peer_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    let tcp = extensions.get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr);
    let tls = || extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.get_ref().remote_addr());
    tcp.or_else(tls)
}

impl<S: Connected> Connected for Capped<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.first_bytes = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.first_bytes.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    let why = format!("nothing sent within {FIRST_BYTES_TIMEOUT:?} of connecting");
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
                }
                _ => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for Coalescing<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}
