//! The one table of the controller's exit codes, and the error that means
//! "bad arguments". Every subcommand maps its outcome through [`Exit`].

use faultline_checkers::Verdict;

/// How a `faultline` command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every history checked is valid.
    Valid,
    /// Some history is invalid.
    Invalid,
    /// Validity unknown: the checker's budget ran out, or the run was
    /// interrupted and what it recorded shows no violation.
    Unknown,
    /// The harness or the cluster failed (for `check`: also bad flags).
    Error,
    /// Bad arguments, a bad spec file or a bad run folder named on the
    /// command line.
    Usage,
}

/// `(exit, code, meaning)` for every exit, in code order.
pub const TABLE: [(Exit, u8, &str); 5] = [
    (Exit::Valid, 0, "valid"),
    (Exit::Invalid, 1, "invalid"),
    (Exit::Unknown, 2, "unknown (or interrupted)"),
    (Exit::Error, 3, "harness or cluster error"),
    (Exit::Usage, 4, "bad arguments"),
];

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        TABLE
            .iter()
            .find(|(e, _, _)| *e == self)
            .map_or(3, |(_, c, _)| *c)
    }

    /// The exit for a checker's verdict.
    pub fn of(verdict: &Verdict) -> Exit {
        match verdict {
            Verdict::Valid => Exit::Valid,
            Verdict::Invalid { .. } => Exit::Invalid,
            Verdict::Unknown { .. } => Exit::Unknown,
        }
    }

    /// The exit with this code.
    pub fn from_code(code: u8) -> Option<Exit> {
        TABLE
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|(e, _, _)| *e)
    }
}

/// `Exit codes: 0 valid, 1 invalid, ...` for `--help` texts.
pub fn help_line() -> String {
    let parts: Vec<String> = TABLE.iter().map(|(_, c, m)| format!("{c} {m}")).collect();
    format!("Exit codes: {}.", parts.join(", "))
}

/// A bad argument, reported with [`Exit::Usage`].
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An [`anyhow::Error`] that exits with [`Exit::Usage`].
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit for an error: [`Exit::Usage`] for a [`UsageError`], else [`Exit::Error`].
pub fn of_error(e: &anyhow::Error) -> Exit {
    if e.downcast_ref::<UsageError>().is_some() {
        Exit::Usage
    } else {
        Exit::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_the_help_line_lists_them() {
        for (e, c, _) in TABLE {
            assert_eq!(e.code(), c);
            assert_eq!(Exit::from_code(c), Some(e));
        }
        assert_eq!(
            help_line(),
            "Exit codes: 0 valid, 1 invalid, 2 unknown (or interrupted), 3 harness or cluster error, 4 bad arguments."
        );
        assert_eq!(of_error(&usage("x")), Exit::Usage);
        assert_eq!(of_error(&anyhow::anyhow!("x")), Exit::Error);
    }
}
