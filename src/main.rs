//! `cargo run --release` at the repo root: the whole stack in one process on its embedded
//! defaults: auth-service, registry and the gateway on 127.0.0.1:8080, SQLite under
//! `./data/`, an in-process blacklist feed, and per-run secrets for the gateway's identity
//! assertions. Each service still listens on its own loopback port and is reached only
//! through the gateway, exactly as in production.
//!
//! Settings come from `config/<service>.yaml` and `<SERVICE>__...` environment variables, as
//! for the standalone binaries; `RPC_BOOTSTRAP_ADMIN_EMAIL` / `RPC_BOOTSTRAP_ADMIN_PASSWORD`
//! name the first registry admin.
//!
//! With a staff command instead (`cargo run --release -- blacklist list`, `... keys rotate`),
//! it runs auth-service's staff command line against the running stack.

/// mimalloc: fewer cycles per request than glibc malloc under many small allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use blacklist::{Feed, LocalFeed};
use layered_settings::Secret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args =
        auth_service::cli::Args::parse_argv(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if let Some(command) = &args.command
        && let Some(staff) = auth_service::cli::staff_args(command)
    {
        let staff = auth_service::cli::Staff::from_args(staff)?;
        let answer = auth_service::cli::run(command, &staff).await?;
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let mut auth: auth_service::Settings = layered_settings::load("auth-service", None)?;
    let mut registry: registry::Settings = layered_settings::load("registry", None)?;
    let mut gateway: gateway::Settings = layered_settings::load("gateway", None)?;
    telemetry::init(telemetry::Format::from_name(&gateway.log_format), "info");

    // One process: the assertion secrets never leave it unless configured. Each upstream
    // has its own, as in production.
    for (upstream, gateway) in [
        (
            &mut auth.assertion_secret,
            &mut gateway.assertion_secrets.auth_service,
        ),
        (
            &mut registry.assertion_secret,
            &mut gateway.assertion_secrets.registry,
        ),
    ] {
        if upstream.expose().is_empty() && gateway.expose().is_empty() {
            let secret = Secret::new(random_secret());
            *upstream = secret.clone();
            *gateway = secret;
        }
    }
    // HTTPS beside the plain port, on a certificate made for localhost on the first run
    // (data/tls/, trusted through data/tls/ca.pem), unless the settings name another.
    if gateway.tls.listen.is_none() {
        gateway.tls.listen = Some(SocketAddr::from(([127, 0, 0, 1], 8443)));
        gateway.tls.self_signed = true;
    }
    if let Ok(email) = std::env::var("RPC_BOOTSTRAP_ADMIN_EMAIL") {
        auth.bootstrap.email = Some(email);
    }
    if let Ok(password) = std::env::var("RPC_BOOTSTRAP_ADMIN_PASSWORD") {
        auth.bootstrap.password = Some(Secret::new(password));
    }

    let feed: Arc<dyn Feed> = Arc::new(LocalFeed::new());
    let auth_app = auth_service::Application::build(auth, feed.clone())
        .await
        .context("auth-service")?;
    let registry_app = registry::Application::build(registry)
        .await
        .context("registry")?;
    gateway.auth_service = auth_app.local_addr().into();
    gateway.registry = registry_app.local_addr().into();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let auth_task = tokio::spawn(auth_app.run_until_stopped(stopped(stop_rx.clone())));
    let registry_task = tokio::spawn(registry_app.run_until_stopped(stopped(stop_rx)));
    let running = gateway::spawn(&gateway, feed).context("gateway")?;
    wait_until_listening(gateway.listen).await?;
    println!(
        "carpool registry ready on http://{} (gateway metrics on http://{}/metrics)",
        gateway.listen, gateway.admin_listen
    );
    match gateway.tls.listen {
        Some(tls) if gateway.tls.self_signed => println!(
            "and on https://{tls} (curl --cacert {} https://localhost:{}/health)",
            gateway.tls.cert_file.with_file_name("ca.pem").display(),
            tls.port()
        ),
        Some(tls) => println!("and on https://{tls}"),
        None => {}
    }

    telemetry::shutdown_signal().await;
    tracing::info!("stopping");
    tokio::task::spawn_blocking(move || running.stop()).await?;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(auth_task, registry_task);
    Ok(())
}

fn random_secret() -> String {
    // Two v4 uuids: 244 random bits from the OS generator.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

async fn wait_until_listening(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the gateway did not start listening on {addr}")
}
