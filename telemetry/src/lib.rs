//! Logging for every binary: one `tracing` subscriber, `log` records (pingora's) bridged into
//! it, JSON lines in production and readable lines on a terminal.
//!
//! What must never be logged (tokens, `Authorization`, passwords, phone numbers, emails) is a
//! rule for call sites; this crate only decides the format.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Pretty,
}

/// Installs the global subscriber once; later calls are no-ops (tests start many services).
/// The filter comes from `RUST_LOG`, else `default_filter`.
pub fn init(format: Format, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match format {
        Format::Json => builder.json().flatten_event(true).try_init(),
        Format::Pretty => builder.try_init(),
    };
    if installed.is_ok() {
        // tracing-subscriber's `tracing-log` feature is off; bridge `log` ourselves, up to the
        // filter's most verbose level: `LogTracer::init` lets every level through, so each of
        // pingora's `debug!` and `trace!` calls asked the subscriber per request (issue 24).
        use tracing_log::AsLog;
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(tracing::level_filters::LevelFilter::current().as_log())
            .init();
    }
}

impl Format {
    /// `json` or anything else (pretty).
    pub fn from_name(name: &str) -> Self {
        if name.eq_ignore_ascii_case("json") {
            Format::Json
        } else {
            Format::Pretty
        }
    }
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
