//! Helpers shared by the checkers' integration tests.

pub mod histgen;
