//! Interaction logs.
