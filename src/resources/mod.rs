//! The resource manager: what a model needs, which model directory an id names (under
//! the model roots or in the Hugging Face hub cache), the ledger of leases
//! that keeps reservations from over-committing memory, the model cache, the fit verdict and batch
//! advice, cleanup, suggestions and reports, and the one rule for a requested duration.

pub mod cache;
pub mod cleanup;
pub mod device;
pub mod duration;
pub mod hub_cache;
pub mod journal;
pub mod ledger;
pub mod manager;
pub mod memo;
pub mod model_id;
pub mod optimizer;
pub mod report;
pub mod requirements;
pub mod verdict;

#[cfg(test)]
#[path = "tests/fixtures.rs"]
mod fixtures;

/// Hub caches built by hand, shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/common/hub_layout.rs"]
pub(crate) mod hub_layout;
