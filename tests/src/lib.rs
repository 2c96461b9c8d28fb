//! Shared helpers for distill's end-to-end tests.
