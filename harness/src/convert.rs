//! `faultline history convert`: rewrite a history in another format.

use anyhow::{Context, Result, bail};
use faultline_history::{Format, read_path, to_edn_string, to_jsonl_string};
use std::io::Write;
use std::path::PathBuf;

/// The formats a history can be read from on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Guess from the file name and first line.
    Auto,
    /// Our JSON Lines.
    Jsonl,
    /// Jepsen/Knossos EDN.
    Edn,
    /// Porcupine's Jepsen etcd logs.
    PorcupineEtcd,
    /// Porcupine's key-value lines.
    PorcupineKv,
}

impl InputFormat {
    /// The history format, or `None` to detect it.
    pub fn format(self) -> Option<Format> {
        match self {
            InputFormat::Auto => None,
            InputFormat::Jsonl => Some(Format::Jsonl),
            InputFormat::Edn => Some(Format::Edn),
            InputFormat::PorcupineEtcd => Some(Format::PorcupineEtcd),
            InputFormat::PorcupineKv => Some(Format::PorcupineKv),
        }
    }
}

/// The formats `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Our JSON Lines.
    Jsonl,
    /// A Jepsen-style EDN stream (one op map per line).
    Edn,
}

/// Raw arguments of `faultline history convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The history to read.
    pub input: PathBuf,
    /// The format to write.
    #[arg(long)]
    pub to: OutputFormat,
    /// The input's format.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: InputFormat,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Reads the input, converts it and writes it; warnings go to standard error.
pub fn run(args: &ConvertArgs) -> Result<()> {
    let (history, _) = read_path(&args.input, args.format.format())?;
    for w in &history.warnings {
        eprintln!("warning: {w}");
    }
    let text = match args.to {
        OutputFormat::Jsonl => to_jsonl_string(&history.events),
        OutputFormat::Edn => to_edn_string(&history.events),
    };
    match &args.output {
        Some(path) => {
            if path == &args.input {
                bail!("refusing to overwrite the input {}", path.display());
            }
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing to standard output")?,
    }
    Ok(())
}
