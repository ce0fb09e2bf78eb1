//! A TLS stream that tells hyper and h2 it takes no vectored writes.
//!
//! Given a vectored stream, HTTP/2 (h2) writes a frame's head and a data payload of 256
//! bytes or more as separate slices of one vectored write, and rustls collects the slices
//! of every such write into a vector of its own: an allocation at every answer. Told the
//! stream is not vectored, h2 copies payloads under 1 KiB (every TokenReview answer) into
//! its kept write buffer instead, and hyper's HTTP/1.1 does the same with its whole answer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `T`, its vectored writes turned off.
pub(super) struct FlatIo<T>(pub(super) T);

impl<T: AsyncRead + Unpin> AsyncRead for FlatIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FlatIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}
