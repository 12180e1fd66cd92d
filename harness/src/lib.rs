//! The `faultline` controller as a library: each subcommand's validated
//! configuration and its implementation, so tests can call them without
//! the binary. ARCHITECTURE.md has the code map.

pub mod analyze;
pub mod bench;
pub mod check;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod convert;
pub mod coverage;
pub mod dbbench;
pub mod exit;
pub mod explore;
pub mod faults;
pub mod list;
pub mod mutation;
pub mod nemesis;
pub mod nightly;
pub mod proxy;
pub mod recorder;
pub mod report;
pub mod run;
pub mod serve;
pub mod settings;
pub mod stats;
pub mod store;
pub mod summary;
pub mod supervisor;
pub mod sut;
pub mod traffic;
pub mod verdict;
