//! faultline-history: the event types of an operation history and their on-disk formats.
