//! distill-store (being written).
