//! faultline-node: the driver, storage, transport, state machine and HTTP API of a Raft key-value node will live here.
