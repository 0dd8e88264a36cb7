//! Rill.
