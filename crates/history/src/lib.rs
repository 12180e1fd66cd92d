//! faultline-history: the event types of an operation history and their on-disk formats.
//!
//! An [`Event`] is one line of a history: an invocation or a completion of a
//! client operation (or a nemesis action). Histories are written as JSON Lines,
//! append-only, one flushed line per event ([`JsonlWriter`]), and can be read
//! from our JSONL, Jepsen/Knossos EDN and Porcupine's two test formats
//! ([`read_path`]). [`pair`] turns events into operations (invocation plus
//! completion) for the checkers.

mod edn;
mod event;
mod jsonl;
mod ops;
mod porcupine;

pub use edn::{parse_edn, to_edn_string};
pub use event::{Event, EventType, Process};
pub use jsonl::{JsonlWriter, parse_jsonl, to_jsonl_string};
pub use ops::{Op, Outcome, pair};
pub use porcupine::{parse_porcupine_etcd, parse_porcupine_kv};

use std::path::Path;

/// The on-disk formats a history can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Our JSON Lines: one [`Event`] object per line.
    Jsonl,
    /// Jepsen/Knossos EDN: one collection of op maps, or a stream of maps.
    Edn,
    /// Porcupine's Jepsen etcd log lines (`INFO jepsen.util - <proc> <type> <f> <value>`).
    PorcupineEtcd,
    /// Porcupine's key-value format: one EDN map per line with `:key`.
    PorcupineKv,
}

impl Format {
    /// The name used on the command line (`jsonl`, `edn`, `porcupine-etcd`, `porcupine-kv`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Edn => "edn",
            Format::PorcupineEtcd => "porcupine-etcd",
            Format::PorcupineKv => "porcupine-kv",
        }
    }

    /// Guesses the format from a file's name and its first non-blank line.
    pub fn detect(path: &Path, text: &str) -> Format {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with(';'))
            .unwrap_or("");
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if first.starts_with("INFO") {
            Format::PorcupineEtcd
        } else if ext == "jsonl" || ext == "json" || first.starts_with("{\"") {
            Format::Jsonl
        } else if first.starts_with("{:process") && first.contains(":key ") && ext == "txt" {
            Format::PorcupineKv
        } else {
            Format::Edn
        }
    }
}

/// A history read from a file: its events in file order and what the reader noticed.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The events in the order they appear in the file.
    pub events: Vec<Event>,
    /// Things the reader tolerated but the user should know (e.g. a torn last line).
    pub warnings: Vec<String>,
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line (or EDN form) of the file is not a valid event.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The file (or a name for in-memory text).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The events are individually valid but do not form a history (e.g. a
    /// process invokes twice without completing).
    #[error("{file}: event {index}: {message}")]
    Malformed {
        /// The file (or a name for in-memory text).
        file: String,
        /// The event's index.
        index: u64,
        /// What is wrong.
        message: String,
    },
}

/// Reads a history file, detecting its format unless one is given.
pub fn read_path(path: &Path, format: Option<Format>) -> Result<(History, Format), HistoryError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Io {
        path: name.clone(),
        source,
    })?;
    let format = format.unwrap_or_else(|| Format::detect(path, &text));
    Ok((parse_str(&name, &text, format)?, format))
}

/// Parses history text in the given format; `name` is used in error messages.
pub fn parse_str(name: &str, text: &str, format: Format) -> Result<History, HistoryError> {
    match format {
        Format::Jsonl => parse_jsonl(name, text),
        Format::Edn => parse_edn(name, text),
        Format::PorcupineEtcd => parse_porcupine_etcd(name, text),
        Format::PorcupineKv => parse_porcupine_kv(name, text),
    }
}
