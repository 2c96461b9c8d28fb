//! distill-builder (being written).
