//! Database access from async handlers. Both database clients block, so every operation
//! runs on tokio's blocking threads with a connection of its own; idle connections are
//! kept for reuse. SQLite's WAL lets the readers run beside the one writer; PostgreSQL
//! runs them all side by side.
//!
//! A request waits at most [`MAX_WAIT`] for a connection: when the database is slow (a held
//! lock, a long statement) requests do not pile up behind it, they are answered 503
//! `server_busy` and come back later.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::store::{DatabaseUrl, Store, StoreError};

/// Connections in use at once; more requests wait for a permit instead of opening more.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a request waits for a free connection.
pub const MAX_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a database task failed: {0}")]
    Task(String),
    #[error(
        "no database connection was free within {} s (all {MAX_CONNECTIONS} in use)",
        MAX_WAIT.as_secs()
    )]
    Busy,
}

impl PoolError {
    /// Nothing was done and the same request may succeed later: no connection was free, or
    /// the database gave up a wait.
    pub fn is_busy(&self) -> bool {
        match self {
            PoolError::Busy => true,
            PoolError::Store(e) => e.is_busy(),
            PoolError::Task(_) => false,
        }
    }
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

    /// Connections held by requests now (the metrics' pool gauge).
    pub fn connections_in_use(&self) -> usize {
        MAX_CONNECTIONS.saturating_sub(self.inner.permits.available_permits())
    }

    /// Runs `f` with a connection on a blocking thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = tokio::time::timeout(MAX_WAIT, self.inner.permits.acquire())
            .await
            .map_err(|_| PoolError::Busy)?
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
            .enable_time()
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

    #[test]
    fn a_request_waits_a_bounded_time_for_a_connection() {
        let db = ScratchDatabase::create(Backend::Sqlite).expect("scratch database");
        let pool = StorePool::open(DatabaseUrl::parse(db.url()).expect("url")).expect("open");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            // Every connection busy for longer than a request may wait.
            let (started_tx, mut started) = tokio::sync::mpsc::channel(MAX_CONNECTIONS);
            let mut holders = Vec::new();
            for _ in 0..MAX_CONNECTIONS {
                let pool = pool.clone();
                let started_tx = started_tx.clone();
                holders.push(tokio::spawn(async move {
                    pool.run(move |_| {
                        let _ = started_tx.blocking_send(());
                        std::thread::sleep(MAX_WAIT + Duration::from_secs(2));
                        Ok(())
                    })
                    .await
                }));
            }
            for _ in 0..MAX_CONNECTIONS {
                started.recv().await.expect("a holder started");
            }
            let asked = std::time::Instant::now();
            let refused = pool
                .run(|store| store.schema_version())
                .await
                .expect_err("no connection is free");
            let waited = asked.elapsed();
            assert!(matches!(refused, PoolError::Busy), "{refused}");
            assert!(refused.is_busy());
            assert!(
                waited >= MAX_WAIT && waited < MAX_WAIT + Duration::from_secs(1),
                "{waited:?}"
            );
            for holder in holders {
                holder.await.expect("join").expect("holder");
            }
            // Free again.
            pool.run(|store| store.schema_version())
                .await
                .expect("a free connection");
        });
    }
}
