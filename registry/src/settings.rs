//! The registry's configuration: `config/registry.yaml`, then `--config <file>`, then
//! `REGISTRY__...` environment variables (see `layered-settings`). Every field has a default,
//! so files may be partial; the assertion secret has no usable one.

use anyhow::bail;
use layered_settings::Secret;
use rpc_service::db::DatabaseSettings;
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8082)),
            database: DatabaseSettings::new("sqlite://data/registry.db", Some("registry")),
            assertion_secret: Secret::new(String::new()),
            log_format: "pretty".to_owned(),
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
