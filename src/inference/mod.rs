//! The libtorch engine: N dedicated worker threads, each owning the models it loaded, behind one
//! bounded admission queue ([`Pool`], an [`Engine`](crate::engine::Engine)).
//!
//! Admission is a semaphore of `queue_capacity` slots taken with `try_acquire` (a full queue is
//! RESOURCE_EXHAUSTED at once, never a wait); a generation holds its slot until it ends. Jobs for a
//! model go to the worker its handle names; a load goes to the least busy worker pinned to the
//! device placement chose (one worker set per placeable GPU, and one for the CPU). Each worker's
//! queue is bounded too. Shutting the engine down closes every queue, drops the jobs still queued
//! and joins the threads after their current job. [`host`] starts the engine this build has (the
//! pool, or one that refuses without libtorch); [`oom`] reads libtorch's out-of-memory messages (free
//! of libtorch itself).

pub mod host;
pub mod oom;
#[cfg(feature = "torch")]
mod pool;
#[cfg(feature = "torch")]
pub mod worker;

#[cfg(feature = "torch")]
pub use pool::{pin, Pool, PoolSettings};
#[cfg(feature = "torch")]
pub use worker::{GenerateJob, Job, Pinned};
