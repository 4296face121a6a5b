//! auth-service binary: serves the API (settings, logs, Redis feed, until SIGTERM/ctrl-c),
//! or runs one staff command against the admin API (see [`auth_service::cli`]).

use anyhow::Context;
use auth_service::cli::{self, Args, Command, Staff};
use auth_service::{Application, Settings};
use clap::Parser;
use layered_settings::Secret;
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.command {
        None | Some(Command::Serve) => serve(args.config.as_deref()).await,
        Some(Command::Migrate) => {
            let settings: Settings =
                layered_settings::load("auth-service", args.config.as_deref())?;
            telemetry::init(telemetry::Format::from_name(&settings.log_format), "info");
            auth_service::open_store(&settings.database).await?;
            tracing::info!("auth-service database migrated");
            Ok(())
        }
        Some(command) => {
            let staff_args = cli::staff_args(command).context("not a staff command")?;
            let staff = Staff::from_args(staff_args)?;
            let answer = cli::run(command, &staff).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
    }
}

async fn serve(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut settings: Settings = layered_settings::load("auth-service", config)?;
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
