//! distill-tracer (being written).
