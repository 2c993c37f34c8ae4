//! The inference worker pool: N dedicated threads, each owning the models it loaded, behind one
//! bounded admission queue.
//!
//! Admission is a semaphore of `queue_capacity` slots taken with `try_acquire` (a full queue is
//! RESOURCE_EXHAUSTED at once, never a wait); a generation holds its slot until it ends. Jobs for a
//! model go to the worker that holds it; loads go to the least busy worker. Dropping the pool closes
//! every queue and the threads end after their current job.

pub mod params;
#[cfg(feature = "torch")]
mod pool;
#[cfg(feature = "torch")]
pub mod service;
#[cfg(feature = "torch")]
pub mod worker;

pub use params::GenerateParams;
#[cfg(feature = "torch")]
pub use pool::{Pool, PoolSettings};
#[cfg(feature = "torch")]
pub use worker::{Event, GenerateJob, Job, ModelFacts};
