//! Owned by the training helper.
