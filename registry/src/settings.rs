//! The registry's configuration: `config/registry.yaml`, then `--config <file>`, then
//! `REGISTRY__...` environment variables (see `layered-settings`). Every field has a default,
//! so files may be partial; the assertion secret has no usable one.

use anyhow::bail;
use chrono::{DateTime, TimeDelta, Utc};
use layered_settings::Secret;
use rpc_service::db::DatabaseSettings;
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Everything the registry needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on (port 0 picks a free port). Default `127.0.0.1:8082`.
    pub listen: SocketAddr,
    /// PostgreSQL (production) or SQLite (embedded default, `sqlite://data/registry.db`).
    pub database: DatabaseSettings,
    /// The HMAC secret shared with the gateway for identity assertions, at least 32 bytes.
    /// No default: start-up fails while it is empty.
    pub assertion_secret: Secret<String>,
    /// Log line format: `pretty` (default) or `json`.
    pub log_format: String,
    /// CEE applications: campaign, delay, signing key.
    pub cee: CeeSettings,
    /// The lifecycle job runner.
    pub jobs: JobsSettings,
    /// Journey ingestion: group commit of concurrent inserts (PostgreSQL).
    pub ingest: IngestSettings,
    /// Exports: where their files are kept, for how long, and the mail that announces them.
    pub exports: ExportsSettings,
    /// Threads of the `registry` binary's async runtime; 0 (default): one per core. When the
    /// registry shares a small machine with the gateway and PostgreSQL, fewer threads than
    /// cores spend less CPU per request on waking and stealing work across threads
    /// (docs/performance.md). The all-in-one runner (`cargo run`) has a runtime of its own
    /// and ignores it.
    pub worker_threads: usize,
}

/// Group commit of `POST /{v}/journeys` (docs/performance.md, "Journey ingestion").
///
/// On PostgreSQL, journeys waiting while every batch writer is busy are inserted by the next
/// free writer in one transaction and answered after its single COMMIT. A lone journey is
/// written at once: batches only form under concurrency. SQLite always inserts one by one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Most journeys in one transaction; 1 turns group commit off (one transaction per
    /// journey, as before). Default 64.
    pub batch_max: u32,
    /// Batch writers at once, each on one pooled connection; keep it below
    /// `database.max_connections`. Default 2: on the 2-core bench machine one writer's batch
    /// is built while the other waits for its COMMIT's WAL flush; more writers make smaller
    /// batches and more flushes (docs/performance.md).
    pub batch_writers: u32,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            batch_max: 64,
            batch_writers: 2,
        }
    }
}

/// The lifecycle job runner (docs/lifecycle.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSettings {
    /// How often the runner looks for due jobs, in milliseconds; 0 runs no runner in this
    /// process (another replica does the work). Default 1000.
    pub poll_interval_ms: u64,
    /// How long a claimed job stays this runner's, in seconds: a runner that dies gives its
    /// jobs back after this. Default 300.
    pub lease_secs: u64,
    /// Jobs claimed at a time. Default 50.
    pub batch: u32,
}

impl Default for JobsSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1_000,
            lease_secs: 300,
            batch: 50,
        }
    }
}

/// Exports (docs/lifecycle.md, "Exports"): the synchronous CSV route and the reference's
/// asynchronous, zipped, mailed export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportsSettings {
    /// Where built exports are kept (created at start). Default `data/exports`; with several
    /// replicas, a directory they share.
    pub directory: PathBuf,
    /// Days a built export is kept before its file is deleted. Default 7 (the reference's).
    pub retention_days: u32,
    /// The API's public address, for the download link in mails
    /// (`<public_url>/v3/exports/<uuid>/download`). Empty (default): mails name the route.
    pub public_url: String,
    /// Synchronous exports streaming at once; each holds a database connection while its
    /// client reads, so keep it well below `database.max_connections`. Default 4; more
    /// are answered 429 with a `Retry-After`.
    pub max_streams: u32,
    /// The SMTP server that mails recipients when their export is built. No host (default):
    /// no mail.
    pub mail: MailSettings,
}

impl Default for ExportsSettings {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("data/exports"),
            retention_days: 7,
            public_url: String::new(),
            max_streams: 4,
            mail: MailSettings::default(),
        }
    }
}

/// An SMTP relay (`exports.mail`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// Host name or address of the relay; empty (default): exports are not mailed.
    pub host: String,
    /// Default 25.
    pub port: u16,
    /// The sender address, e.g. `Registre <exports@example.org>`.
    pub from: String,
    /// User name, when the relay wants one (empty: no authentication).
    pub username: String,
    /// Its password.
    pub password: Secret<String>,
    /// `none` (default), `starttls` or `tls`; the last two need a registry built with the
    /// `smtp-tls` cargo feature.
    pub tls: MailTls,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 25,
            from: String::new(),
            username: String::new(),
            password: Secret::new(String::new()),
            tls: MailTls::None,
        }
    }
}

/// How the registry talks to its SMTP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// Plain SMTP (a relay on the same host or network).
    None,
    /// Plain, then `STARTTLS` (required).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// The CEE campaign and the key that signs application tokens (CONTRACT §8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CeeSettings {
    /// First instant of the campaign (RFC 3339), inclusive: short-distance journeys must
    /// start, long-distance costs be shared, from then. Default `2024-01-01T00:00:00Z`.
    pub campaign_start: DateTime<Utc>,
    /// Last instant of the campaign (RFC 3339), inclusive. Default `2027-12-31T23:59:59Z`.
    pub campaign_end: DateTime<Utc>,
    /// Days to wait after the operation (journey end, cost sharing) before claiming it.
    /// Default 7.
    pub delay_days: u32,
    /// The RSA private key signing tokens, PEM (PKCS#8 or PKCS#1), at least 2048 bits.
    /// When empty, the key in `generated_key_file` is used, generated there on first start.
    pub private_key_pem: Secret<String>,
    /// Where the embedded default keeps its generated key (mode 0600). Default
    /// `data/cee-signing-key.pem`.
    pub generated_key_file: PathBuf,
}

impl Default for CeeSettings {
    fn default() -> Self {
        Self {
            // 2024-01-01T00:00:00Z and 2027-12-31T23:59:59Z (checked by a test).
            campaign_start: DateTime::UNIX_EPOCH + TimeDelta::seconds(1_704_067_200),
            campaign_end: DateTime::UNIX_EPOCH + TimeDelta::seconds(1_830_297_599),
            delay_days: 7,
            private_key_pem: Secret::new(String::new()),
            generated_key_file: PathBuf::from("data/cee-signing-key.pem"),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8082)),
            database: DatabaseSettings::new("sqlite://data/registry.db", Some("registry")),
            assertion_secret: Secret::new(String::new()),
            log_format: "pretty".to_owned(),
            cee: CeeSettings::default(),
            jobs: JobsSettings::default(),
            ingest: IngestSettings::default(),
            exports: ExportsSettings::default(),
            worker_threads: 0,
        }
    }
}

impl Settings {
    /// The log format named by `log_format`.
    pub fn telemetry_format(&self) -> anyhow::Result<telemetry::Format> {
        match self.log_format.as_str() {
            "pretty" => Ok(telemetry::Format::Pretty),
            "json" => Ok(telemetry::Format::Json),
            other => bail!("log_format must be \"pretty\" or \"json\", not {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_setup() {
        let s = Settings::default();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8082");
        assert_eq!(s.database.url.expose(), "sqlite://data/registry.db");
        assert_eq!(s.database.schema.as_deref(), Some("registry"));
        assert!(s.assertion_secret.expose().is_empty());
        assert_eq!(s.telemetry_format().ok(), Some(telemetry::Format::Pretty));
        assert_eq!(
            s.cee.campaign_start.to_rfc3339(),
            "2024-01-01T00:00:00+00:00"
        );
        assert_eq!(s.cee.campaign_end.to_rfc3339(), "2027-12-31T23:59:59+00:00");
        assert_eq!(s.cee.delay_days, 7);
        assert!(s.cee.private_key_pem.expose().is_empty());
        assert_eq!(s.jobs.poll_interval_ms, 1_000);
        assert_eq!(s.jobs.lease_secs, 300);
        assert_eq!(s.ingest.batch_max, 64);
        assert_eq!(s.ingest.batch_writers, 2);
        assert_eq!(s.worker_threads, 0);
        assert_eq!(s.exports.directory, PathBuf::from("data/exports"));
        assert_eq!(s.exports.retention_days, 7);
        assert!(s.exports.mail.host.is_empty(), "no mail by default");
        assert_eq!(s.exports.mail.tls, MailTls::None);
    }

    #[test]
    fn mail_settings_read_their_tls_mode_and_refuse_others() {
        let s: Settings = serde_json::from_str(
            r#"{"exports":{"mail":{"host":"smtp.example.org","port":587,"tls":"starttls"}}}"#,
        )
        .unwrap();
        assert_eq!(s.exports.mail.port, 587);
        assert_eq!(s.exports.mail.tls, MailTls::Starttls);
        assert!(serde_json::from_str::<Settings>(r#"{"exports":{"mail":{"tls":"ssl"}}}"#).is_err());
    }

    #[test]
    fn the_shipped_config_file_loads() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/registry.yaml");
        let s: Settings =
            layered_settings::load("registry-config-test", Some(std::path::Path::new(file)))
                .expect("config/registry.yaml is valid");
        assert_eq!(s.cee.campaign_end.to_rfc3339(), "2027-12-31T23:59:59+00:00");
        assert_eq!(s.cee.delay_days, 7);
    }

    #[test]
    fn cee_settings_read_rfc3339_dates() {
        let s: Settings = serde_json::from_str(
            r#"{"cee":{"campaign_start":"2023-01-01T00:00:00+01:00","delay_days":3}}"#,
        )
        .unwrap();
        assert_eq!(
            s.cee.campaign_start.to_rfc3339(),
            "2022-12-31T23:00:00+00:00"
        );
        assert_eq!(s.cee.delay_days, 3);
        assert!(serde_json::from_str::<Settings>(r#"{"cee":{"start":"x"}}"#).is_err());
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults_and_unknown_keys_fail() {
        let s: Settings =
            serde_json::from_str(r#"{"listen":"0.0.0.0:9000","log_format":"json"}"#).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.telemetry_format().ok(), Some(telemetry::Format::Json));
        assert_eq!(s.database.url.expose(), "sqlite://data/registry.db");
        assert!(serde_json::from_str::<Settings>(r#"{"listne":"0.0.0.0:1"}"#).is_err());
        let bad = Settings {
            log_format: "xml".into(),
            ..Settings::default()
        };
        assert!(bad.telemetry_format().is_err());
    }
}
