//! The server's log, through `tracing`, on standard error: `--log-format text` (the default:
//! one plain line per event, no colours and no time stamp, since journald adds its own) or
//! `json` (one JSON object per line, fields at the top level, for log shippers).
//!
//! What is logged is chosen where it is logged (see [`crate::observe`]): route templates,
//! codes and ids, never a request path, header or body, so no name, address, birth date,
//! certificate, token or license number reaches the log.

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("--log-format {other:?}: give text or json")),
        }
    }
}

/// Sends this crate's events at INFO and above to standard error. Other crates' events are
/// left out: their messages were not written with this log's rules in mind. A second call
/// changes nothing (tests may start several servers in one process).
pub fn init(format: LogFormat) {
    let only_ours = Targets::new().with_target("mynalink_server", Level::INFO);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let layer = match format {
        LogFormat::Text => layer.without_time().boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(only_ours))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        let e = LogFormat::parse("JSON").expect_err("case matters");
        assert!(
            e.contains("--log-format") && e.contains("text or json"),
            "{e}"
        );
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }
}
