//! The pool itself: worker threads, per-model routing and the admission semaphore.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{atomic::Ordering, mpsc as std_mpsc, Arc, Mutex},
};

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use super::worker::{self, Event, GenerateJob, Job, ModelFacts, WorkerLoad};
use crate::{error::Error, musicgen::DType};

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Worker threads (default 1 on CPU, one per GPU otherwise).
    pub workers: usize,
    /// libtorch intra-op threads (default: every core).
    pub torch_threads: usize,
    /// Requests queued or running at most (default 16).
    pub queue_capacity: usize,
    /// Device of the workers.
    pub device: tch::Device,
    /// Whether the fault-injection prompts are honoured (chaos tests only).
    pub fault_injection: bool,
    /// Most requests decoded together in one batch (dynamic batching; default 4).
    pub max_batch: usize,
}

struct WorkerSlot {
    jobs: std_mpsc::Sender<Job>,
    load: Arc<WorkerLoad>,
}

/// Where each loaded model lives and what it is like.
#[derive(Default)]
struct Placement {
    models: HashMap<String, (usize, ModelFacts)>,
}

/// A handle on the pool.
#[derive(Clone)]
pub struct Pool {
    workers: Arc<Vec<WorkerSlot>>,
    placement: Arc<Mutex<Placement>>,
    admission: Arc<Semaphore>,
    capacity: usize,
    device: tch::Device,
}

impl Pool {
    /// Starts the worker threads.
    pub fn start(settings: &PoolSettings) -> Result<Self, Error> {
        // Intra-op threads are process-wide in libtorch: set once, before any worker runs.
        tch::set_num_threads(settings.torch_threads.max(1) as i32);
        let mut workers = Vec::new();
        for index in 0..settings.workers.max(1) {
            let (tx, rx) = std_mpsc::channel();
            let load = Arc::new(WorkerLoad::default());
            worker::spawn(
                index,
                settings.device,
                rx,
                load.clone(),
                settings.max_batch,
                settings.fault_injection,
            )
            .map_err(|e| Error::Internal(format!("cannot start inference worker {index}: {e}")))?;
            workers.push(WorkerSlot { jobs: tx, load });
        }
        Ok(Self {
            workers: Arc::new(workers),
            placement: Arc::default(),
            admission: Arc::new(Semaphore::new(settings.queue_capacity.max(1))),
            capacity: settings.queue_capacity.max(1),
            device: settings.device,
        })
    }

    /// The workers' device name.
    pub fn device(&self) -> String {
        worker::device_name(self.device)
    }

    /// Facts of a loaded model.
    pub fn facts(&self, model: &str) -> Option<ModelFacts> {
        self.placement.lock().expect("placement lock").models.get(model).map(|(_, f)| f.clone())
    }

    fn send(&self, index: usize, job: Job) -> Result<(), Error> {
        let slot = &self.workers[index];
        slot.load.pending.fetch_add(1, Ordering::Relaxed);
        slot.jobs.send(job).map_err(|_| {
            slot.load.pending.fetch_sub(1, Ordering::Relaxed);
            Error::Unavailable(format!("inference worker {index} has stopped"))
        })
    }

    fn least_busy(&self) -> usize {
        (0..self.workers.len())
            .min_by_key(|&i| self.workers[i].load.pending.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Loads a model on the least busy worker.
    pub async fn load(&self, model: &str, dir: PathBuf, dtype: DType) -> Result<ModelFacts, Error> {
        let index = self.least_busy();
        let (reply, answer) = oneshot::channel();
        self.send(index, Job::Load { model: model.into(), dir, dtype, reply })?;
        let facts =
            answer.await.map_err(|_| Error::Internal("inference worker stopped while loading".into()))??;
        self.placement.lock().expect("placement lock").models.insert(model.into(), (index, facts.clone()));
        Ok(facts)
    }

    /// Drops a model's tensors from its worker.
    pub async fn unload(&self, model: &str) -> Result<(), Error> {
        let index = self.placement.lock().expect("placement lock").models.remove(model).map(|(i, _)| i);
        let index = index.ok_or_else(|| Error::NotFound(format!("model {model} is not loaded")))?;
        let (reply, answer) = oneshot::channel();
        self.send(index, Job::Unload { model: model.into(), reply })?;
        answer.await.map_err(|_| Error::Internal("inference worker stopped while unloading".into()))?
    }

    /// Queues a generation; RESOURCE_EXHAUSTED at once when the queue is full. Returns the queue
    /// position (requests ahead) and the event stream.
    pub fn submit(
        &self,
        model: &str,
        request: crate::musicgen::GenerationRequest,
        cancel: CancellationToken,
    ) -> Result<(usize, mpsc::Receiver<Event>), Error> {
        let permit = self.admission.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "generation queue full: {} requests queued or running (--queue-capacity {})",
                self.capacity, self.capacity
            ))
        })?;
        let index = self
            .placement
            .lock()
            .expect("placement lock")
            .models
            .get(model)
            .map(|(i, _)| *i)
            .ok_or_else(|| Error::NotFound(format!("model {model} is not loaded")))?;
        let ahead = self.workers[index].load.pending.load(Ordering::Relaxed);
        let (events, rx) = mpsc::channel(64);
        self.send(
            index,
            Job::Generate(GenerateJob { model: model.into(), request, events, cancel, permit }),
        )?;
        Ok((ahead, rx))
    }
}
