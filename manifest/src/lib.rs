//! distill-manifest (being written).
