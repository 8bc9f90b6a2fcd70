//! Owned by the server helper.
