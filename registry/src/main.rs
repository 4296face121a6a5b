//! `registry [--config <file>]`: load settings, start the runtime (`worker_threads`) and
//! logging, serve until ctrl-c or SIGTERM.

/// mimalloc: fewer cycles per request than glibc malloc under many small allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use registry::{Application, Settings};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let (migrate_only, config) = args()?;
    let settings: Settings = layered_settings::load("registry", config.as_deref())?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if settings.worker_threads > 0 {
        runtime.worker_threads(settings.worker_threads);
    }
    let runtime = runtime.enable_all().build()?;
    if migrate_only {
        return runtime.block_on(async {
            telemetry::init(settings.telemetry_format()?, "info");
            registry::migrate(&settings.database).await?;
            tracing::info!("registry database migrated");
            Ok(())
        });
    }
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    telemetry::init(settings.telemetry_format()?, "info");
    let app = Application::build(settings).await?;
    tracing::info!(addr = %app.local_addr(), "registry listening");
    app.run_until_stopped(shutdown_signal()).await;
    tracing::info!("registry stopped");
    Ok(())
}

/// `[migrate] [--config <file>]`: whether to migrate and exit, and the settings file.
fn args() -> anyhow::Result<(bool, Option<PathBuf>)> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let migrate = args.first().is_some_and(|a| a == "migrate");
    if migrate {
        args.remove(0);
    }
    match args.as_slice() {
        [] => Ok((migrate, None)),
        [flag, path] if flag == "--config" => Ok((migrate, Some(PathBuf::from(path)))),
        _ => anyhow::bail!("usage: registry [migrate] [--config <file>]"),
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
