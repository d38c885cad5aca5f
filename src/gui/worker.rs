//! A thread that owns state the window must not block on (the card, the outbox, the HTTP
//! client) and runs jobs on it one at a time. The window awaits each job's answer as a task,
//! so a slow card never stalls a frame.

use std::sync::mpsc;

use tokio::sync::oneshot;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// The worker thread ended (its state panicked or failed to start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerGone;

pub struct Worker<S> {
    jobs: mpsc::Sender<Job<S>>,
}

impl<S> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Worker {
            jobs: self.jobs.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Worker")
    }
}

impl<S: 'static> Worker<S> {
    /// Starts the thread; `init` builds the state on it, so `S` need not be `Send`.
    pub fn spawn(name: &str, init: impl FnOnce() -> S + Send + 'static) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job<S>>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut state = init();
                // Ends when every handle is dropped.
                while let Ok(job) = queue.recv() {
                    job(&mut state);
                }
            })?;
        Ok(Worker { jobs })
    }

    /// Queues `job` and returns a future for its result.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> impl std::future::Future<Output = Result<R, WorkerGone>> + Send + 'static {
        let (answer, reply) = oneshot::channel();
        let queued = self
            .jobs
            .send(Box::new(move |state: &mut S| {
                let _ = answer.send(job(state));
            }))
            .is_ok();
        async move {
            if !queued {
                return Err(WorkerGone);
            }
            reply.await.map_err(|_| WorkerGone)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_on_the_owned_state() {
        let worker = Worker::spawn("test-worker", Vec::<u32>::new).expect("spawn");
        let first = worker.run(|v| {
            v.push(1);
            v.len()
        });
        let second = worker.run(|v| {
            v.push(2);
            v.clone()
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(rt.block_on(first), Ok(1));
        assert_eq!(rt.block_on(second), Ok(vec![1, 2]));
    }

    #[test]
    fn a_panicking_job_reports_the_worker_gone() {
        let worker = Worker::spawn("test-worker", || 0u8).expect("spawn");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let failed = worker.run(|_| -> u8 { panic!("job failed") });
        assert_eq!(rt.block_on(failed), Err(WorkerGone));
        // The thread is gone: later jobs fail instead of hanging.
        assert_eq!(rt.block_on(worker.run(|s| *s)), Err(WorkerGone));
    }
}
