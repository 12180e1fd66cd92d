//! The run's history as it is written: one lock around the JSONL writer that
//! gives every event its index and time, so file order is history order.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, Result};
use faultline_history::{Event, EventType, JsonlWriter, Process};
use serde_json::Value;

/// Appends events to `history.jsonl` (and keeps them for the checker).
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    writer: JsonlWriter,
    events: Vec<Event>,
    /// The first write error; later events are still kept in memory.
    error: Option<String>,
}

/// The fields of one event, before it gets its index and time.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Who.
    pub process: Process,
    /// Invoke or completion kind.
    pub kind: EventType,
    /// Function.
    pub f: String,
    /// Key, if any.
    pub key: Option<String>,
    /// Argument or result.
    pub value: Value,
    /// Error text for fail/info.
    pub error: Option<String>,
    /// The node the client talked to.
    pub node: Option<String>,
}

impl Recorder {
    /// Creates `path` (truncating) and starts the run's clock now.
    pub fn create(path: &Path, start: Instant) -> Result<Recorder> {
        let writer = JsonlWriter::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Recorder {
            start,
            inner: Mutex::new(Inner {
                writer,
                events: Vec::new(),
                error: None,
            }),
        })
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Appends one event and returns it. A write error is remembered and
    /// reported by [`Recorder::finish`]; the run goes on.
    pub fn record(&self, e: Entry) -> Event {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let event = Event {
            index: inner.events.len() as u64,
            // Taken under the lock, so times never go backwards in the file.
            time: self.now_ns(),
            process: e.process,
            kind: e.kind,
            f: e.f,
            key: e.key,
            value: e.value,
            error: e.error,
            node: e.node,
        };
        if let Err(err) = inner.writer.append(&event)
            && inner.error.is_none()
        {
            inner.error = Some(err.to_string());
        }
        inner.events.push(event.clone());
        event
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.events.clone()
    }

    /// A copy of the events from position `from` on (those recorded since a
    /// reader last looked).
    pub fn events_since(&self, from: usize) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .events
            .get(from..)
            .map(<[Event]>::to_vec)
            .unwrap_or_default()
    }

    /// Syncs the file; returns the first write error if there was one.
    pub fn finish(&self) -> Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = &inner.error {
            anyhow::bail!("history write failed: {e}");
        }
        inner.writer.sync().context("cannot sync history.jsonl")?;
        Ok(())
    }
}
