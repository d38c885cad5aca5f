//! Database access from async handlers. rusqlite blocks, so every operation runs on
//! tokio's blocking threads with a connection of its own; idle connections are kept for
//! reuse. WAL lets the readers run beside the one writer, and the busy timeout makes
//! concurrent writers wait for each other.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::store::{Store, StoreError};

/// Connections in use at once; more requests wait for a permit instead of opening more.
pub const MAX_CONNECTIONS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a database task failed: {0}")]
    Task(String),
}

#[derive(Debug, Clone)]
pub struct StorePool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
    permits: Semaphore,
}

impl StorePool {
    /// Opens (and migrates) the database once, so that configuration errors show at start.
    pub fn open(path: PathBuf) -> Result<StorePool, StoreError> {
        let first = Store::open_sqlite(&path)?;
        Ok(StorePool {
            inner: Arc::new(Inner {
                path,
                idle: Mutex::new(vec![first]),
                permits: Semaphore::new(MAX_CONNECTIONS),
            }),
        })
    }

    /// Runs `f` with a connection on a blocking thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|e| PoolError::Task(e.to_string()))?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut store = match inner.take() {
                Some(store) => store,
                None => Store::open_sqlite(&inner.path)?,
            };
            let result = f(&mut store);
            // A connection that failed may be in a bad state: let it close.
            if result.is_ok() {
                inner.give_back(store);
            }
            Ok(result?)
        })
        .await
        .map_err(|e| PoolError::Task(e.to_string()))?
    }
}

impl Inner {
    fn take(&self) -> Option<Store> {
        // A poisoned lock only means a task panicked while holding the list; the
        // connections in it are still usable.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }

    fn give_back(&self, store: Store) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_CONNECTIONS {
            idle.push(store);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_tasks_share_the_database() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = StorePool::open(dir.path().join("db.sqlite")).expect("open");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                pool.run(|store| store.schema_version()).await
            }));
        }
        for task in tasks {
            assert_eq!(
                task.await.expect("join").expect("run"),
                crate::store::latest_schema_version()
            );
        }
        let idle = pool.inner.idle.lock().expect("lock").len();
        assert!((1..=MAX_CONNECTIONS).contains(&idle), "{idle}");
    }
}
