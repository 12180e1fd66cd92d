//! faultline-raft: the Raft consensus core (no sockets, threads, files or clock) and its seeded simulator.
//!
//! The core is driven by [`Raft::tick`], [`Raft::step`], [`Raft::propose`] and
//! [`Raft::read_index`]; after any of them the driver takes a [`Ready`] and
//! acts on it in the order its documentation gives.

mod types;

pub use types::*;
