//! distill-memlogd (being written).
