//! Shared helpers for criterion benches.
