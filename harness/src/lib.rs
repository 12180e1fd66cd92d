//! The `faultline` controller as a library: each subcommand's validated
//! configuration and its implementation, so tests can call them without the binary.

pub mod check;
pub mod convert;
