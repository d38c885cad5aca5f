//! The backend side of the window: a worker thread that owns the uploader (HTTP client,
//! outbox connection, sealing key) for license lookups and this person's upload (outbox
//! first, then the request), plus the background sender that retries what stays queued.

use mynalink_link::api::LicenseStatus;
use mynalink_link::outbox::{EntryOptions, EntrySummary};
use mynalink_link::upload::{self, Delivery};
use mynalink_link::{ErrorCode, FlowError, SignedStatement};

use super::worker::{Worker, WorkerGone};
use crate::delivery::Uploader;

#[derive(Debug, Clone)]
pub struct Remote {
    worker: Worker<Uploader>,
}

/// The lookup could not be answered (backend unreachable or refusing); the reason is for
/// the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupFailed(pub String);

const WORKER_STOPPED: &str = "the upload worker stopped";

impl Remote {
    pub fn start(uploader: Uploader) -> std::io::Result<Remote> {
        let worker = Worker::spawn("mynalink-backend", move || uploader)?;
        Ok(Remote { worker })
    }

    pub async fn status(self, license_number: String) -> Result<LicenseStatus, LookupFailed> {
        self.worker
            .run(move |uploader| {
                uploader
                    .backend
                    .license_status(&license_number)
                    .map_err(|e| LookupFailed(e.0))
            })
            .await
            .unwrap_or_else(|_| Err(LookupFailed(WORKER_STOPPED.into())))
    }

    pub async fn healthy(self) -> bool {
        self.worker
            .run(|uploader| uploader.backend.healthy())
            .await
            .unwrap_or(false)
    }

    /// Writes the binding to the outbox, then uploads it. `Queued` means it stays in the
    /// outbox for the background sender.
    pub async fn upload(
        self,
        signed: SignedStatement,
        options: EntryOptions,
    ) -> Result<Delivery, FlowError> {
        self.worker
            .run(move |uploader| {
                upload::submit(
                    &mut uploader.outbox,
                    &uploader.backend,
                    &signed,
                    &uploader.recipient,
                    &options,
                )
                .map(|(_, delivery)| delivery)
                .map_err(|e| e.to_flow_error())
            })
            .await
            .map_err(|_: WorkerGone| {
                FlowError::new(ErrorCode::OutboxUnavailable).with_detail(WORKER_STOPPED)
            })?
    }

    /// Makes sure the outbox can take the next binding, before the card signs it.
    pub async fn ensure_room(self) -> Result<(), FlowError> {
        self.worker
            .run(|uploader| crate::delivery::ensure_room(uploader))
            .await
            .map_err(|_: WorkerGone| {
                FlowError::new(ErrorCode::OutboxUnavailable).with_detail(WORKER_STOPPED)
            })?
    }

    /// The entries waiting or held, for the outbox screen (no personal data).
    pub async fn outbox(self) -> Result<Vec<EntrySummary>, String> {
        self.worker
            .run(|uploader| uploader.outbox.list().map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|_| Err(WORKER_STOPPED.into()))
    }
}
