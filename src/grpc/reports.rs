//! `WatchReport`'s reports, built once and shared by every watcher: a report asks the resource
//! manager and the monitor several questions, so each watcher building its own would make the work
//! grow with the number of watchers. A report at most [`REUSE`] old is handed out again (the
//! shortest interval a watcher may ask for), which bounds the builds to ten a second however many
//! watch. Each build is kept in the two forms callers see: with lease ids (admins) and without.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{sync::Mutex, time::Instant};
use tonic::Status;

use super::{convert, pb};
use crate::{
    monitor,
    resources::{manager, report},
};

/// How old a shared report may be when it is handed out again.
pub const REUSE: Duration = Duration::from_millis(100);

/// The latest value a build made, and when.
#[derive(Debug)]
pub struct Latest<T> {
    built: Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self { built: Mutex::new(None) }
    }
}

impl<T> Latest<T> {
    /// The value built within [`REUSE`], or a new one from `build`; concurrent callers wait for one
    /// build and share it.
    pub async fn get<F, Fut>(&self, build: F) -> Result<Arc<T>, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut built = self.built.lock().await;
        if let Some((at, value)) = built.as_ref() {
            if at.elapsed() < REUSE {
                return Ok(value.clone());
            }
        }
        let value = Arc::new(build().await?);
        *built = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

/// A report in both forms: `[with lease ids, without]`.
type BothForms = [pb::ResourceReport; 2];

/// The report every `WatchReport` stream sends (see the module header).
#[derive(Clone)]
pub struct SharedReports {
    manager: manager::Handle,
    monitor: monitor::Handle,
    latest: Arc<Latest<BothForms>>,
}

impl SharedReports {
    /// Reports over the manager and the monitor.
    pub fn new(manager: manager::Handle, monitor: monitor::Handle) -> Self {
        Self { manager, monitor, latest: Arc::default() }
    }

    /// The current report, with lease ids when `show_lease_ids`.
    pub async fn get(&self, show_lease_ids: bool) -> Result<pb::ResourceReport, Status> {
        let both = self
            .latest
            .get(|| async {
                let full = convert::report(&report::report(&self.manager, &self.monitor).await?);
                let mut hidden = full.clone();
                convert::hide_lease_ids(&mut hidden);
                Ok([full, hidden])
            })
            .await?;
        Ok(both[usize::from(!show_lease_ids)].clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn many_askers_share_one_build_per_reuse_window() {
        let (latest, builds) = (Arc::new(Latest::<usize>::default()), Arc::new(AtomicUsize::new(0)));
        let ask = || {
            let (latest, builds) = (latest.clone(), builds.clone());
            async move {
                latest
                    .get(|| async move {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        Ok(builds.fetch_add(1, Ordering::SeqCst))
                    })
                    .await
                    .unwrap()
            }
        };
        // A thousand watchers asking at once: one build, all see it.
        let answers = futures::future::join_all((0..1000).map(|_| ask())).await;
        assert!(answers.iter().all(|a| **a == 0));
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        // Within the window: still the same; after it: one more build.
        tokio::time::sleep(REUSE / 2).await;
        assert_eq!(*ask().await, 0);
        tokio::time::sleep(REUSE).await;
        assert_eq!(*ask().await, 1);
        assert_eq!(builds.load(Ordering::SeqCst), 2);
    }
}
