//! The resource manager: what a model needs, which model directory an id names, and the ledger of
//! leases that keeps reservations from over-committing memory.

pub mod cache;
pub mod cleanup;
pub mod duration;
pub mod ledger;
pub mod manager;
pub mod memo;
pub mod model_id;
pub mod optimizer;
pub mod report;
pub mod requirements;
pub mod validate;
