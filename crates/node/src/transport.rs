//! Peer links: one outgoing TCP connection per peer (dialled at its `--peer`
//! address, reconnected with backoff, fed from a bounded queue) and a listener
//! for incoming ones. Frames are length-delimited; the first frame on a
//! connection is a hello naming the sender, every later one is a
//! postcard-encoded Raft [`Message`].

use std::collections::BTreeMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use bytes::Bytes;
use faultline_raft::{Message, NodeId};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::Event;

/// Largest frame accepted: a snapshot travels in one message.
const MAX_FRAME: usize = 512 << 20;
/// Messages queued per peer before new ones are dropped (Raft retransmits).
const QUEUE: usize = 4096;
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const MAGIC: &str = "faultline-peer-v1";

/// The first frame on a connection.
#[derive(Serialize, Deserialize)]
struct Hello {
    magic: String,
    from: NodeId,
    to: NodeId,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// The sending side: one bounded queue per peer.
#[derive(Clone)]
pub struct Outbox {
    queues: BTreeMap<NodeId, mpsc::Sender<Message>>,
}

impl Outbox {
    /// Queues a message without ever blocking; when the peer's queue is full
    /// (a slow or unreachable peer) the message is dropped, which Raft
    /// tolerates.
    pub fn send(&self, msg: Message) {
        if let Some(q) = self.queues.get(&msg.to)
            && q.try_send(msg).is_err()
        {
            tracing::trace!("peer queue full or closed; message dropped");
        }
    }
}

/// Starts one dialler task per peer and returns the queues that feed them.
pub fn start_outgoing(
    me: NodeId,
    peers: &BTreeMap<NodeId, String>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> Outbox {
    let mut queues = BTreeMap::new();
    for (&id, addr) in peers {
        let (tx, rx) = mpsc::channel(QUEUE);
        queues.insert(id, tx);
        tracker.spawn(dial_loop(me, id, addr.clone(), rx, cancel.clone()));
    }
    Outbox { queues }
}

async fn dial_loop(
    me: NodeId,
    peer: NodeId,
    addr: String,
    mut rx: mpsc::Receiver<Message>,
    cancel: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            s = TcpStream::connect(&addr) => s,
        };
        match stream {
            Ok(stream) => {
                backoff = BACKOFF_MIN;
                let _ = stream.set_nodelay(true);
                tracing::debug!(peer, %addr, "connected to peer");
                match pump(me, peer, stream, &mut rx, &cancel).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(peer, %addr, "peer link lost: {e}"),
                }
            }
            Err(e) => tracing::trace!(peer, %addr, "cannot connect: {e}"),
        }
        // Wait before redialling, discarding what queues up meanwhile: it
        // would be stale by the time the link is back.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut sleep => break,
                m = rx.recv() => if m.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Sends queued messages on one connection until it fails (`Err`) or the node
/// shuts down (`Ok`).
async fn pump(
    me: NodeId,
    peer: NodeId,
    stream: TcpStream,
    rx: &mut mpsc::Receiver<Message>,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let (read_half, write_half) = stream.into_split();
    let mut out = FramedWrite::new(write_half, codec());
    let hello = Hello {
        magic: MAGIC.to_string(),
        from: me,
        to: peer,
    };
    out.send(Bytes::from(postcard::to_allocvec(&hello).expect("encode")))
        .await?;
    // The peer never writes to us; a read returning means the link closed.
    let mut closed = Box::pin(async move {
        let mut r = read_half;
        let mut buf = [0u8; 64];
        loop {
            match tokio::io::AsyncReadExt::read(&mut r, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = &mut closed => return Err(std::io::Error::other("closed by peer")),
            m = rx.recv() => match m {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        out.feed(encode(&msg)).await?;
        // Batch whatever else is queued into the same flush.
        let mut n = 0;
        while n < 256 {
            match rx.try_recv() {
                Ok(m) => out.feed(encode(&m)).await?,
                Err(_) => break,
            }
            n += 1;
        }
        SinkExt::<Bytes>::flush(&mut out).await?;
    }
}

fn encode(msg: &Message) -> Bytes {
    Bytes::from(postcard::to_allocvec(msg).expect("encoding to a Vec cannot fail"))
}

/// Accepts peer connections and forwards their messages to the event loop.
pub async fn serve_incoming(
    me: NodeId,
    known: Vec<NodeId>,
    listener: TcpListener,
    events: SyncSender<Event>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let (stream, from_addr) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("peer accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let events = events.clone();
        let cancel = cancel.clone();
        let known = known.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = receive(me, &known, stream, events) => if let Err(e) = r {
                    tracing::debug!(%from_addr, "incoming peer link ended: {e}");
                },
            }
        });
    }
}

async fn receive(
    me: NodeId,
    known: &[NodeId],
    stream: TcpStream,
    events: SyncSender<Event>,
) -> Result<(), String> {
    let mut frames = FramedRead::new(stream, codec());
    let first = frames
        .next()
        .await
        .ok_or("closed before hello")?
        .map_err(|e| e.to_string())?;
    let hello: Hello = postcard::from_bytes(&first).map_err(|e| format!("bad hello: {e}"))?;
    if hello.magic != MAGIC || hello.to != me || !known.contains(&hello.from) {
        return Err(format!(
            "refusing connection claiming to be node {} for node {}",
            hello.from, hello.to
        ));
    }
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let msg: Message = postcard::from_bytes(&frame).map_err(|e| format!("bad message: {e}"))?;
        if msg.from != hello.from || msg.to != me {
            return Err(format!(
                "message from {} to {} on {}'s link",
                msg.from, msg.to, hello.from
            ));
        }
        match events.try_send(Event::Peer(msg)) {
            Ok(()) => {}
            // Overloaded: drop, Raft retransmits.
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return Ok(()),
        }
    }
    Ok(())
}
