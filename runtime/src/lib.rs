//! distill-runtime (being written).
