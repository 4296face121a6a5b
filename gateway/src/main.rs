//! gateway binary. pingora's own flags apply (`-u` graceful upgrade, `-d` daemon, `-t` test);
//! `-c/--conf FILE` names the gateway settings file (which nests pingora's under `server`).

/// mimalloc: fewer cycles per request than glibc malloc under many small allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use gateway::Settings;
use pingora::server::configuration::Opt;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let mut opt = Opt::parse_args();
    let file = opt.conf.take().map(std::path::PathBuf::from);
    let settings: Settings = layered_settings::load("gateway", file.as_deref())?;
    telemetry::init(telemetry::Format::from_name(&settings.log_format), "info");
    let redis = settings
        .redis
        .clone()
        .context("redis.url is required (GATEWAY__REDIS__URL); the blacklist feed needs it")?;
    // Connected on first use: the gateway starts (and refuses credentials with 503) while
    // Redis is down, and loads the blacklist once it is back.
    let feed = blacklist::RedisFeed::new(redis.url.expose(), &redis.prefix)
        .context("redis.url is not a Redis URL")?;
    let server = gateway::build_server(&settings, Arc::new(feed), Some(opt))?;
    tracing::info!(listen = %settings.listen, admin = %settings.admin_listen, "gateway starting");
    server.run_forever()
}
