//! The inference worker pool: N dedicated threads, each owning the models it loaded, behind one
//! bounded admission queue.
//!
//! Admission is a semaphore of `queue_capacity` slots taken with `try_acquire` (a full queue is
//! RESOURCE_EXHAUSTED at once, never a wait); a generation holds its slot until it ends. Jobs for a
//! model go to the worker that holds it; a load goes to the least busy worker pinned to the device
//! placement chose (one worker set per placeable GPU, and one for the CPU). Each worker's queue is
//! bounded too. `Pool::shutdown` closes every queue, drops the jobs still queued and joins the
//! threads after their current job; dropping the last handle closes the queues without joining.
//! [`oom`] reads libtorch's out-of-memory messages (free of libtorch itself).

pub mod oom;
pub mod params;
#[cfg(feature = "torch")]
mod pool;
#[cfg(feature = "torch")]
pub mod service;
#[cfg(feature = "torch")]
pub mod worker;

pub use params::GenerateParams;
#[cfg(feature = "torch")]
pub use pool::{pin, Pool, PoolSettings};
#[cfg(feature = "torch")]
pub use worker::{Event, GenerateJob, Job, ModelFacts, Pinned};
