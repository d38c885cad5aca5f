//! The backend side of the window: a worker thread with the HTTP client and an outbox
//! connection, for license lookups and this person's upload (outbox first, then the
//! request), plus the background sender that retries what stays queued.

use mynalink_link::api::LicenseStatus;
use mynalink_link::backend::Backend;
use mynalink_link::outbox::{EntryOptions, EntrySummary, Outbox};
use mynalink_link::upload::{self, Delivery};
use mynalink_link::{ErrorCode, FlowError, SignedStatement};
use rsa::RsaPublicKey;

use super::worker::{Worker, WorkerGone};

/// How to reach the backend and where the outbox lives.
pub struct RemoteSettings {
    pub make_backend: Box<dyn Fn() -> Result<Backend, String> + Send>,
    pub outbox_path: std::path::PathBuf,
    pub recipient: RsaPublicKey,
}

struct Station {
    backend: Result<Backend, String>,
    outbox: Result<Outbox, String>,
    recipient: RsaPublicKey,
}

#[derive(Debug, Clone)]
pub struct Remote {
    worker: Worker<Station>,
}

/// The lookup could not be answered (backend unreachable or refusing); the reason is for
/// the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupFailed(pub String);

fn gone(_: WorkerGone) -> FlowError {
    FlowError::new(ErrorCode::OutboxUnavailable).with_detail("the upload worker stopped")
}

impl Remote {
    pub fn start(settings: RemoteSettings) -> std::io::Result<Remote> {
        let worker = Worker::spawn("mynalink-backend", move || Station {
            backend: (settings.make_backend)(),
            outbox: Outbox::open(&settings.outbox_path).map_err(|e| e.to_string()),
            recipient: settings.recipient,
        })?;
        Ok(Remote { worker })
    }

    pub async fn status(self, license_number: String) -> Result<LicenseStatus, LookupFailed> {
        self.worker
            .run(move |station| {
                let backend = station
                    .backend
                    .as_ref()
                    .map_err(|e| LookupFailed(e.clone()))?;
                backend
                    .license_status(&license_number)
                    .map_err(|e| LookupFailed(e.0))
            })
            .await
            .unwrap_or_else(|_| Err(LookupFailed("the upload worker stopped".into())))
    }

    pub async fn healthy(self) -> bool {
        self.worker
            .run(|station| station.backend.as_ref().is_ok_and(Backend::healthy))
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
            .run(move |station| {
                let outbox_error =
                    |e: String| FlowError::new(ErrorCode::OutboxUnavailable).with_detail(e);
                let outbox = station
                    .outbox
                    .as_mut()
                    .map_err(|e| outbox_error(e.clone()))?;
                match &station.backend {
                    Ok(backend) => {
                        upload::submit(outbox, backend, &signed, &station.recipient, &options)
                            .map(|(_, delivery)| delivery)
                            .map_err(|e| outbox_error(e.to_string()))
                    }
                    // No usable client: keep the binding; the sender reports the cause.
                    Err(reason) => {
                        let now = time::OffsetDateTime::now_utc();
                        outbox
                            .add_with(&signed, &station.recipient, &options, now)
                            .map_err(|e| outbox_error(e.to_string()))?;
                        Ok(Delivery::Queued {
                            reason: reason.clone(),
                            next_attempt_at: now,
                        })
                    }
                }
            })
            .await
            .map_err(gone)?
    }

    /// The entries waiting, for the outbox screen (no personal data).
    pub async fn outbox(self) -> Result<Vec<EntrySummary>, String> {
        self.worker
            .run(|station| {
                let outbox = station.outbox.as_ref().map_err(Clone::clone)?;
                outbox.list().map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|_| Err("the upload worker stopped".into()))
    }
}
