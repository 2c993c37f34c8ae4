//! Re-reads files that change on disk: the auth tokens and the TLS certificate, key and client CA.
//!
//! One task per set of files. It watches each file's *parent directory*, non-recursively: Kubernetes
//! updates a mounted Secret or ConfigMap by writing a new timestamped directory and renaming the
//! symlink `..data_tmp` over `..data`, so a watch on the file itself follows the old directory and
//! dies with it at the first update, while the mount directory sees every rename. On any event
//! there, on a slow poll ([`POLL_EVERY`], for file systems that send no events and for a watch that
//! could not be set up) and on SIGHUP, the task fingerprints the files' bytes and reloads when the
//! fingerprint changed; SIGHUP reloads regardless. A reload that fails is logged and keeps the old
//! material in use; the same broken bytes are not tried again until they change. The task ends, and
//! its watch with it, when the server shuts down.
//!
//! A file mounted with `subPath` never changes inside the pod: the kubelet bind-mounts the file the
//! Secret held when the pod started, and later updates never reach it.

use std::{
    collections::BTreeSet,
    fmt::Display,
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    time::Duration,
};

use notify::{
    event::{AccessKind, AccessMode},
    EventKind, RecursiveMode, Watcher,
};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// How often the files are fingerprinted when no event comes.
pub const POLL_EVERY: Duration = Duration::from_secs(30);

/// How long to wait after an event before reading, so one update (several renames and writes, a
/// certificate then its key) is read once, whole.
const SETTLE: Duration = Duration::from_millis(200);

/// A set of files as last read, ready to be watched.
#[derive(Debug, Clone)]
pub struct Files {
    what: &'static str,
    paths: Vec<PathBuf>,
    last: u64,
}

impl Files {
    /// Takes the fingerprint of `paths` now; `what` names them in logs and metrics (`auth_tokens`). Taken before the material is first loaded, a change
    /// between that load and the start of the watch is still seen.
    pub fn new(what: &'static str, paths: Vec<PathBuf>) -> Self {
        let last = fingerprint(&paths);
        Self { what, paths, last }
    }

    /// Reloads with `reload` when the files' bytes changed since the last look (or always, when
    /// `force`); returns whether it reloaded.
    pub fn check<E: Display>(&mut self, force: bool, reload: &mut impl FnMut() -> Result<(), E>) -> bool {
        let now = fingerprint(&self.paths);
        if now == self.last && !force {
            return false;
        }
        // Recorded whatever the outcome: broken bytes fail once, not at every poll.
        self.last = now;
        let outcome = match reload() {
            Ok(()) => {
                tracing::info!(files = self.what, "reloaded");
                "ok"
            }
            Err(e) => {
                tracing::error!(files = self.what, error = %e, "cannot reload; keeping the old ones");
                "error"
            }
        };
        metrics::counter!("maestro_file_reloads_total", "files" => self.what, "outcome" => outcome)
            .increment(1);
        true
    }

    /// Watches the files until `stop`, calling `reload` when they change and on SIGHUP.
    pub fn spawn<F, E>(self, reload: F, stop: CancellationToken) -> std::io::Result<JoinHandle<()>>
    where
        F: FnMut() -> Result<(), E> + Send + 'static,
        E: Display + 'static,
    {
        let hangups = hangups()?;
        Ok(tokio::spawn(watch(self, reload, hangups, stop)))
    }

    /// The directories to watch: each file's parent, once.
    fn directories(&self) -> BTreeSet<PathBuf> {
        let parent = |p: &PathBuf| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.paths.iter().map(parent).collect()
    }
}

/// The files' bytes as one hash; a file that cannot be read counts by its error's kind.
fn fingerprint(paths: &[PathBuf]) -> u64 {
    let mut hash = DefaultHasher::new();
    for path in paths {
        match std::fs::read(path) {
            Ok(bytes) => (0u8, bytes).hash(&mut hash),
            Err(e) => (1u8, e.kind()).hash(&mut hash),
        }
    }
    hash.finish()
}

/// The loop: wait for an event, the poll, SIGHUP or the stop; look at the files off the runtime.
async fn watch<F, E>(mut files: Files, mut reload: F, mut hangups: Hangups, stop: CancellationToken)
where
    F: FnMut() -> Result<(), E> + Send + 'static,
    E: Display + 'static,
{
    let what = files.what;
    let (events, mut changed) = mpsc::channel(1);
    // Kept alive by this task: dropping it ends the watch.
    let _watcher = directory_watcher(&files, events);
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL_EVERY, POLL_EVERY);
    loop {
        let force = tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = changed.recv() => {
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
                false
            }
            _ = poll.tick() => false,
            () = hangups.next() => true,
        };
        // Reading may block (a network file system); the state goes to the blocking pool and back.
        let looked = tokio::task::spawn_blocking(move || {
            files.check(force, &mut reload);
            (files, reload)
        });
        match looked.await {
            Ok(back) => (files, reload) = back,
            Err(e) => {
                tracing::error!(files = what, error = %e, "the file watcher failed; no more reloads");
                return;
            }
        }
    }
}

/// A watch on each file's parent directory that sends `()` on any event that may change what the
/// files hold (a full channel already says "look"). `None`, after a warning, when it cannot be set
/// up: the poll still reloads.
fn directory_watcher(files: &Files, events: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.map_or(true, |e| may_change(&e.kind)) {
            let _ = events.try_send(());
        }
    })
    .map_err(|e| warn_no_watch(files.what, Path::new(""), &e))
    .ok()?;
    for dir in files.directories() {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            warn_no_watch(files.what, &dir, &e);
        }
    }
    Some(watcher)
}

/// Every event but the reads: reading the files (as every look does) must not count as a change, or
/// each look would cause the next.
fn may_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn warn_no_watch(what: &str, dir: &Path, e: &notify::Error) {
    tracing::warn!(files = what, dir = %dir.display(), error = %e, poll = ?POLL_EVERY, "cannot watch for changes; polling only");
}

/// SIGHUP, where there is one; elsewhere it never comes.
struct Hangups(#[cfg(unix)] tokio::signal::unix::Signal);

fn hangups() -> std::io::Result<Hangups> {
    #[cfg(unix)]
    return Ok(Hangups(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?));
    #[cfg(not(unix))]
    Ok(Hangups())
}

impl Hangups {
    async fn next(&mut self) {
        #[cfg(unix)]
        if self.0.recv().await.is_some() {
            return;
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting() -> (std::sync::Arc<std::sync::atomic::AtomicUsize>, impl FnMut() -> Result<(), String>) {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        (calls, move || {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err("broken".to_string())
        })
    }

    #[test]
    fn reloads_when_the_bytes_change_once_per_change_and_always_when_forced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "a").unwrap();
        let mut files = Files::new("test", vec![file.clone()]);
        let (calls, mut reload) = counting();
        assert!(!files.check(false, &mut reload), "unchanged");
        std::fs::write(&file, "b").unwrap();
        assert!(files.check(false, &mut reload), "changed");
        assert!(!files.check(false, &mut reload), "a failed reload is not retried on the same bytes");
        std::fs::remove_file(&file).unwrap();
        assert!(files.check(false, &mut reload), "gone is a change");
        assert!(!files.check(false, &mut reload), "still gone");
        assert!(files.check(true, &mut reload), "forced");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_change_on_disk_reloads_once_without_a_signal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "a").unwrap();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (seen, read) = (calls.clone(), file.clone());
        let reload = move || {
            std::fs::read(&read)?;
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<(), std::io::Error>(())
        };
        let stop = CancellationToken::new();
        let watch = Files::new("test", vec![file.clone()]).spawn(reload, stop.clone()).unwrap();
        // Let the watch start before the change.
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&file, "b").unwrap();
        let count = || calls.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..200 {
            if count() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(SETTLE * 4).await;
        assert_eq!(count(), 1, "one change, one reload");
        stop.cancel();
        watch.await.unwrap();
    }

    #[test]
    fn reads_are_no_change() {
        assert!(!may_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!may_change(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(may_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(may_change(&EventKind::Modify(notify::event::ModifyKind::Any)));
        assert!(may_change(&EventKind::Create(notify::event::CreateKind::Any)));
    }

    #[test]
    fn watches_each_parent_directory_once() {
        let files = Files::new("test", vec!["/a/b/cert".into(), "/a/b/key".into(), "tokens".into()]);
        let dirs: Vec<PathBuf> = files.directories().into_iter().collect();
        assert_eq!(dirs, [PathBuf::from("/a/b"), PathBuf::from(".")]);
    }
}
