//! auth-service binary: settings, logs, Redis feed, serve until SIGTERM/ctrl-c.

use anyhow::Context;
use auth_service::{Application, Settings};
use layered_settings::Secret;
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = std::env::args()
        .skip_while(|a| a != "--config")
        .nth(1)
        .map(std::path::PathBuf::from);
    let mut settings: Settings = layered_settings::load("auth-service", config.as_deref())?;
    if let Ok(email) = std::env::var("RPC_BOOTSTRAP_ADMIN_EMAIL") {
        settings.bootstrap.email = Some(email);
    }
    if let Ok(password) = std::env::var("RPC_BOOTSTRAP_ADMIN_PASSWORD") {
        settings.bootstrap.password = Some(Secret::new(password));
    }
    telemetry::init(telemetry::Format::from_name(&settings.log_format), "info");
    let redis = settings
        .redis
        .clone()
        .context("redis.url is required (AUTH_SERVICE__REDIS__URL); the blacklist feed needs it")?;
    let feed = blacklist::RedisFeed::connect(redis.url.expose(), &redis.prefix)
        .await
        .context("cannot reach Redis")?;
    let app = Application::build(settings, Arc::new(feed)).await?;
    tracing::info!(addr = %app.local_addr(), "auth-service listening");
    app.run_until_stopped(telemetry::shutdown_signal()).await;
    Ok(())
}
