//! distill-sandbox (being written).
