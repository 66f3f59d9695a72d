//! Copying both ways between two byte streams, holding a buffer only while bytes move.
//!
//! [`tokio::io::copy_bidirectional`] gives each direction an 8 KiB buffer for the whole life of
//! the copy: 16 KiB per WebSocket tunnel, even when the tunnel sits idle for hours (most
//! abcdesktop tunnels do). Here a direction takes its buffer when its reader has bytes and gives
//! it back as soon as the reader has nothing more and everything read was written, so an idle
//! tunnel holds none. A burst costs one allocation however many reads it takes. Each wake-up of
//! the task polls both directions; a buffer given back during it is kept as the spare for the
//! rest of that wake-up, so the direction that did not wake reads into it rather than into a
//! new one, and a wake-up costs one allocation, not two. A writer that cannot keep up keeps
//! the bytes it still owes, no more (one buffer per direction, as before).
//!
//! The semantics are `copy_bidirectional`'s: when one side's reader ends, the other side's
//! writer is flushed and shut down and the other direction carries on; the copy completes when
//! both directions have ended, or at the first error, with the bytes copied each way.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

/// The size of a direction's buffer while it holds one. 16 KiB (HAProxy's `bufsize`; tokio's
/// copy uses 8): 1.25× the MB per CPU-second of 8 KiB on 64 KiB WebSocket frames, 64-byte
/// echoes unchanged (`benches/results/ab-2026-12-02-splice-buffer.md`). A busy tunnel holds at
/// most two, an idle one none.
const BUFFER: usize = 16 * 1024;

/// One direction of the copy.
#[derive(Default)]
struct Direction {
    /// Held only while bytes are in it, or for the one read that follows a wake-up; never
    /// zeroed (the reader fills it).
    buf: Option<BytesMut>,
    /// `buf[pos..]` is read but not yet written.
    pos: usize,
    /// Bytes written since the last flush.
    unflushed: bool,
    /// The reader has ended (read returned no bytes).
    read_done: bool,
    /// The writer was flushed and shut down after the reader ended.
    done: bool,
    copied: u64,
}

impl Direction {
    /// `spare`: a buffer given back earlier in this wake-up, taken before allocating one, and
    /// where this direction leaves its own when it gives it back.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        spare: &mut Option<BytesMut>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(self.copied));
            }
            let pending = self.buf.as_ref().map_or(0, |buf| buf.len() - self.pos);
            if pending == 0 && !self.read_done {
                let buf = self.buf.get_or_insert_with(|| {
                    spare.take().unwrap_or_else(|| {
                        #[cfg(test)]
                        tests::NEW_BUFFERS.with(|n| n.set(n.get() + 1));
                        BytesMut::with_capacity(BUFFER)
                    })
                });
                buf.clear();
                self.pos = 0;
                match tokio_util::io::poll_read_buf(reader.as_mut(), cx, buf) {
                    Poll::Pending => {
                        // Nothing more to read now: give the buffer back, then push out
                        // what was written before waiting.
                        *spare = self.buf.take();
                        if self.unflushed {
                            ready!(writer.as_mut().poll_flush(cx))?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(0)) => {
                        self.read_done = true;
                        *spare = self.buf.take();
                    }
                    Poll::Ready(Ok(_)) => {}
                }
            }
            if let Some(buf) = &self.buf {
                while self.pos < buf.len() {
                    let n = ready!(writer.as_mut().poll_write(cx, &buf[self.pos..]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.pos += n;
                    self.copied += n as u64;
                    self.unflushed = true;
                }
            }
            if self.read_done {
                ready!(writer.as_mut().poll_flush(cx))?;
                self.unflushed = false;
                ready!(writer.as_mut().poll_shutdown(cx))?;
                self.done = true;
            }
        }
    }
}

/// Both directions of one copy.
#[derive(Default)]
struct Splice {
    a_to_b: Direction,
    b_to_a: Direction,
}

impl Splice {
    fn poll<A, B>(
        &mut self,
        cx: &mut Context<'_>,
        a: &mut A,
        b: &mut B,
    ) -> Poll<io::Result<(u64, u64)>>
    where
        A: AsyncRead + AsyncWrite + Unpin + ?Sized,
        B: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        // Dropped when this wake-up ends: an idle tunnel keeps no buffer.
        let mut spare = None;
        let there = self
            .a_to_b
            .poll_copy(cx, &mut spare, Pin::new(&mut *a), Pin::new(&mut *b))?;
        let back = self
            .b_to_a
            .poll_copy(cx, &mut spare, Pin::new(&mut *b), Pin::new(&mut *a))?;
        match (there, back) {
            (Poll::Ready(there), Poll::Ready(back)) => Poll::Ready(Ok((there, back))),
            _ => Poll::Pending,
        }
    }

    /// Buffers held now (0, 1 or 2).
    #[cfg(test)]
    fn buffers_held(&self) -> usize {
        usize::from(self.a_to_b.buf.is_some()) + usize::from(self.b_to_a.buf.is_some())
    }
}

/// Copies `a`→`b` and `b`→`a` until both readers have ended; returns the bytes copied each way
/// (a→b, b→a). The first error ends the copy.
pub(crate) async fn copy_both_ways<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut splice = Splice::default();
    poll_fn(|cx| splice.poll(cx, a, b)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    thread_local! {
        /// Buffers allocated on this thread (a current-thread test runtime runs here).
        pub(super) static NEW_BUFFERS: Cell<usize> = const { Cell::new(0) };
    }

    /// Polls the splice once.
    async fn poll_once(
        splice: &mut Splice,
        a: &mut DuplexStream,
        b: &mut DuplexStream,
    ) -> Poll<io::Result<(u64, u64)>> {
        poll_fn(|cx| Poll::Ready(splice.poll(cx, a, b))).await
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    #[tokio::test]
    async fn a_buffer_is_held_only_while_bytes_wait_to_be_written() {
        let (mut a, mut a_peer) = duplex(64 * 1024);
        // The b side takes 1 KiB at a time: a slow reader.
        let (mut b, mut b_peer) = duplex(1024);
        let mut splice = Splice::default();
        assert!(poll_once(&mut splice, &mut a, &mut b).await.is_pending());
        assert_eq!(splice.buffers_held(), 0, "a new tunnel holds no buffer");

        let sent = pattern(5000, 0);
        a_peer.write_all(&sent).await.unwrap_or_default();
        assert!(poll_once(&mut splice, &mut a, &mut b).await.is_pending());
        assert_eq!(
            splice.buffers_held(),
            1,
            "the bytes b could not take yet are kept"
        );

        let mut got = vec![0; sent.len()];
        let mut filled = 0;
        while filled < got.len() {
            assert!(poll_once(&mut splice, &mut a, &mut b).await.is_pending());
            filled += b_peer.read(&mut got[filled..]).await.unwrap_or(0);
        }
        assert_eq!(got, sent);
        assert!(poll_once(&mut splice, &mut a, &mut b).await.is_pending());
        assert_eq!(
            splice.buffers_held(),
            0,
            "an idle tunnel gives its buffers back"
        );

        // a ends: b is shut down, the other way still carries bytes.
        a_peer.shutdown().await.unwrap_or_default();
        assert!(poll_once(&mut splice, &mut a, &mut b).await.is_pending());
        let mut rest = Vec::new();
        assert_eq!(b_peer.read_to_end(&mut rest).await.ok(), Some(0));
        b_peer.write_all(b"bye").await.unwrap_or_default();
        b_peer.shutdown().await.unwrap_or_default();
        match poll_once(&mut splice, &mut a, &mut b).await {
            Poll::Ready(Ok(moved)) => assert_eq!(moved, (5000, 3)),
            other => panic!("the splice should be over: {other:?}"),
        }
        assert_eq!(splice.buffers_held(), 0);
        let mut back = Vec::new();
        a_peer.read_to_end(&mut back).await.unwrap_or_default();
        assert_eq!(back, b"bye");
    }

    #[tokio::test]
    async fn a_wake_up_for_one_direction_allocates_one_buffer() {
        let (mut a, mut a_peer) = duplex(64 * 1024);
        let (mut b, mut b_peer) = duplex(64 * 1024);
        let mut splice = Splice::default();
        assert!(poll_once(&mut splice, &mut a, &mut b).await.is_pending());
        let before = NEW_BUFFERS.with(Cell::get);
        for round in 0..10u8 {
            a_peer.write_all(&[round; 100]).await.unwrap_or_default();
            assert!(poll_once(&mut splice, &mut a, &mut b).await.is_pending());
            let mut got = [0; 100];
            b_peer.read_exact(&mut got).await.unwrap_or_default();
            assert_eq!(got, [round; 100]);
        }
        // Each wake-up: a→b reads into a new buffer, finds no more and gives it back; b→a,
        // with nothing to read, uses that one rather than a second.
        assert_eq!(NEW_BUFFERS.with(Cell::get) - before, 10);
        assert_eq!(splice.buffers_held(), 0);
    }

    #[tokio::test]
    async fn both_ways_at_once_every_byte_arrives_in_order() {
        const LEN: usize = 1 << 20;
        let (mut a, a_peer) = duplex(4096);
        let (mut b, b_peer) = duplex(3000);
        let copy = tokio::spawn(async move { copy_both_ways(&mut a, &mut b).await.ok() });
        let side = |mut peer: DuplexStream, seed: u8| {
            tokio::spawn(async move {
                let (mut rx, mut tx) = tokio::io::split(&mut peer);
                let send = async {
                    tx.write_all(&pattern(LEN, seed)).await.unwrap_or_default();
                    tx.shutdown().await.unwrap_or_default();
                };
                let mut got = Vec::new();
                let recv = rx.read_to_end(&mut got);
                let (_, n) = tokio::join!(send, recv);
                (n.ok(), got)
            })
        };
        let (at_a, at_b) = (side(a_peer, 1), side(b_peer, 2));
        let (at_a, at_b) = (at_a.await.ok(), at_b.await.ok());
        assert_eq!(at_b, Some((Some(LEN), pattern(LEN, 1))));
        assert_eq!(at_a, Some((Some(LEN), pattern(LEN, 2))));
        assert_eq!(copy.await.ok(), Some(Some((LEN as u64, LEN as u64))));
    }

    #[tokio::test]
    async fn a_side_that_went_away_ends_the_splice_with_its_error() {
        let (mut a, mut a_peer) = duplex(1024);
        let (mut b, b_peer) = duplex(1024);
        drop(b_peer);
        let copy = tokio::spawn(async move { copy_both_ways(&mut a, &mut b).await });
        a_peer.write_all(b"lost").await.unwrap_or_default();
        let res = copy.await.ok().map(|r| r.map_err(|e| e.kind()));
        assert_eq!(res, Some(Err(io::ErrorKind::BrokenPipe)));
    }
}
