//! Database access from async handlers. Both database clients block, so every operation
//! runs on tokio's blocking threads with a connection of its own; idle connections are
//! kept for reuse. SQLite's WAL lets the readers run beside the one writer; PostgreSQL
//! runs them all side by side.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::store::{DatabaseUrl, Store, StoreError};

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
    url: DatabaseUrl,
    idle: Mutex<Vec<Store>>,
    permits: Semaphore,
}

impl StorePool {
    /// Opens (and migrates) the database once, so that configuration errors show at start.
    pub fn open(url: DatabaseUrl) -> Result<StorePool, StoreError> {
        let first = Store::open(&url)?;
        Ok(StorePool {
            inner: Arc::new(Inner {
                url,
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
                None => Store::open(&inner.url)?,
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

impl Drop for Inner {
    /// The PostgreSQL client closes its connection by running a runtime of its own, which
    /// cannot happen on one of tokio's threads: idle connections are closed on a thread of
    /// their own when the pool goes away inside the server's runtime.
    fn drop(&mut self) {
        let idle = std::mem::take(
            self.idle
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
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

    use crate::scratch::{Backend, ScratchDatabase};

    crate::on_both_databases!(concurrent_tasks_share_the_database);

    fn concurrent_tasks_share_the_database(backend: Backend) {
        let db = ScratchDatabase::create(backend).expect("scratch database");
        let url = DatabaseUrl::parse(db.url()).expect("url");
        // Opened and dropped outside the runtime, as the server does: the PostgreSQL client
        // blocks.
        let pool = StorePool::open(url).expect("open");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        runtime.block_on(async {
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
        });
        drop(runtime);
        let idle = pool.inner.idle.lock().expect("lock").len();
        assert!((1..=MAX_CONNECTIONS).contains(&idle), "{idle}");
    }
}
