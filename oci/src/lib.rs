//! distill-oci (being written).
