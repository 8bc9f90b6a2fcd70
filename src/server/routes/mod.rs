//! The handlers, one file per group of routes (the router in `router.rs` wires them up).

pub mod admin;
pub mod floor;
pub mod recommend;
pub mod status;
