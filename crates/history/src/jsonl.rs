//! Our on-disk history format: JSON Lines, append-only, one flushed line per event.

use crate::{Event, History, HistoryError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends events to a JSONL history file as a run goes.
///
/// Each event is serialized to one line and handed to the OS in a single
/// `write` before `append` returns, so a crashed run leaves every event
/// appended so far (at worst a torn last line, which [`parse_jsonl`] tolerates).
#[derive(Debug)]
pub struct JsonlWriter {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    count: u64,
}

impl JsonlWriter {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> Result<JsonlWriter, HistoryError> {
        let file = File::create(path).map_err(|source| io_err(path, source))?;
        Ok(JsonlWriter {
            file,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(256),
            count: 0,
        })
    }

    /// Opens `path` for appending, creating it if needed; existing lines are kept.
    pub fn append_to(path: &Path) -> Result<JsonlWriter, HistoryError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| io_err(path, source))?;
        Ok(JsonlWriter {
            file,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(256),
            count: 0,
        })
    }

    /// Appends one event as one line and flushes it to the OS.
    pub fn append(&mut self, event: &Event) -> Result<(), HistoryError> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, event).map_err(|e| {
            io_err(
                &self.path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        self.buf.push(b'\n');
        self.file
            .write_all(&self.buf)
            .and_then(|()| self.file.flush())
            .map_err(|source| io_err(&self.path, source))?;
        self.count += 1;
        Ok(())
    }

    /// Forces the appended events to stable storage (fsync).
    pub fn sync(&mut self) -> Result<(), HistoryError> {
        self.file
            .sync_data()
            .map_err(|source| io_err(&self.path, source))
    }

    /// How many events this writer has appended.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io_err(path: &Path, source: std::io::Error) -> HistoryError {
    HistoryError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Parses JSONL history text. Blank lines are skipped. A last line without a
/// trailing newline that does not parse is a torn write from a crashed run: it
/// is dropped with a warning. Any other bad line is an error naming the line.
pub fn parse_jsonl(name: &str, text: &str) -> Result<History, HistoryError> {
    let mut history = History::default();
    let torn_possible = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(e) => history.events.push(e),
            Err(e) if i == last && torn_possible => {
                history.warnings.push(format!(
                    "{name}:{}: ignored a torn last line (the run probably crashed while writing it): {e}",
                    i + 1
                ));
            }
            Err(e) => {
                return Err(HistoryError::Parse {
                    file: name.to_string(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(history)
}

/// Serializes events as JSONL text (one line per event).
pub fn to_jsonl_string(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        // Serializing an Event cannot fail: every field is plain data.
        out.push_str(&serde_json::to_string(e).unwrap_or_default());
        out.push('\n');
    }
    out
}
