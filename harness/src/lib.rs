//! The `faultline` controller as a library: each subcommand's validated
//! configuration and its implementation, so tests can call them without the binary.

pub mod bench;
pub mod check;
pub mod client;
pub mod cluster;
pub mod convert;
pub mod nemesis;
pub mod nightly;
pub mod proxy;
pub mod recorder;
pub mod report;
pub mod run;
pub mod supervisor;
pub mod sut;
pub mod verdict;
