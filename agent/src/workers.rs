//! Worker threads, one single-threaded runtime each (like nginx's worker
//! processes): a connection and the tasks it starts never leave their
//! thread, so handing data between them needs no cross-thread wake-up.
//!
//! A leaf module: the listeners ([`crate::server`]) hand connections to
//! the workers, and the engine pool ([`crate::upstream`]) keeps idle
//! connections per worker ([`worker_index`]); neither is imported here.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::error::{Error, Result};

thread_local! {
    static WORKER_INDEX: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the worker thread running the caller, if it is one.
pub fn worker_index() -> Option<usize> {
    WORKER_INDEX.with(|w| w.get())
}

/// Worker threads, one single-threaded runtime each (like nginx's worker
/// processes): a connection and the tasks it starts never leave their
/// thread, so handing data between them needs no cross-thread wake-up.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    next: AtomicUsize,
    stop: watch::Sender<bool>,
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Workers {
    /// Starts `n` (at least 1) worker threads.
    pub fn start(n: usize) -> Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = std::sync::mpsc::channel();
            let mut stop_rx = stop_rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("agent-worker-{i}"))
                .spawn(move || {
                    WORKER_INDEX.with(|w| w.set(Some(i)));
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async move {
                        let _ = stop_rx.wait_for(|s| *s).await;
                    });
                    // Dropping the runtime here ends whatever still runs.
                })
                .map_err(|e| Error::Io {
                    what: "starting a worker thread".into(),
                    source: e,
                })?;
            let handle = rx
                .recv()
                .map_err(|_| Error::Io {
                    what: "starting a worker runtime".into(),
                    source: std::io::Error::other("the worker thread ended"),
                })?
                .map_err(|e| Error::Io {
                    what: "starting a worker runtime".into(),
                    source: e,
                })?;
            handles.push(handle);
            threads.push(t);
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            stop,
            threads: std::sync::Mutex::new(threads),
        })
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Never true (there is at least one worker).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    pub(crate) fn next(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }

    /// Stops the workers (whatever still runs on them is dropped) and
    /// waits for their threads.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let threads: Vec<_> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Threads end on their own; nothing waits for them here.
        self.stop.send_replace(true);
    }
}
