//! `registry [--config <file>]`: load settings, start the runtime (`worker_threads`) and
//! logging, serve until ctrl-c or SIGTERM.

/// mimalloc: fewer cycles per request than glibc malloc under many small allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use registry::{Application, Settings};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let config = config_arg()?;
    let settings: Settings = layered_settings::load("registry", config.as_deref())?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if settings.worker_threads > 0 {
        runtime.worker_threads(settings.worker_threads);
    }
    runtime.enable_all().build()?.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    telemetry::init(settings.telemetry_format()?, "info");
    let app = Application::build(settings).await?;
    tracing::info!(addr = %app.local_addr(), "registry listening");
    app.run_until_stopped(shutdown_signal()).await;
    tracing::info!("registry stopped");
    Ok(())
}

/// The optional `--config <file>` argument.
fn config_arg() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok(None),
        (Some("--config"), Some(path), None) => Ok(Some(PathBuf::from(path))),
        _ => anyhow::bail!("usage: registry [--config <file>]"),
    }
}

/// Resolves on ctrl-c or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
