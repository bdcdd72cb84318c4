//! Executor tests: in memory, deterministic.
