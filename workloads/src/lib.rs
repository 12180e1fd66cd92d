//! faultline-workloads: named workloads (generators, client mappings, final reads, checkers) will live here.
