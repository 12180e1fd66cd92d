//! faultline-checkers: linearizability and other checkers over histories; no I/O.
