//! faultline-raft: the Raft consensus core (no sockets, threads, files or clock) and its seeded simulator.
//!
//! The core is driven by [`Raft::tick`], [`Raft::step`], [`Raft::propose`] and
//! [`Raft::read_index`]; after any of them the driver takes a [`Ready`] and
//! acts on it in the order its documentation gives.
//!
//! A driver loop, in short:
//!
//! ```text
//! loop {
//!     on a tick          => raft.tick()
//!     on a peer message  => raft.step(msg)?
//!     on a client write  => raft.propose(bytes)?      // (index, term) to wait for
//!     on a client read   => raft.read_index(ctx, mode)?
//!     while raft.has_ready() {
//!         let rd = raft.ready();
//!         // snapshot, entries, hard_state -> disk; fsync; then send messages;
//!         // then apply committed; then serve read_states, fail aborted_reads.
//!     }
//! }
//! ```
//!
//! Proposals and reads made between two `ready()` calls leave in one batch
//! (one Ready, one fsync, one AppendEntries per follower).

mod log;
mod progress;
mod raft;
mod read_only;
pub mod sim;
mod types;

pub use raft::Raft;
pub use types::*;
