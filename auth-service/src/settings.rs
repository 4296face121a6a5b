//! auth-service settings. Defaults are the embedded single-machine ones.

use crate::kek::KekList;
use layered_settings::Secret;
use rpc_service::db::DatabaseSettings;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on (only the gateway should reach it).
    pub listen: SocketAddr,
    /// The system of record for operators, users, tokens, keys, blacklist and audit.
    pub database: DatabaseSettings,
    /// Redis carrying the blacklist fast copy and change feed. Required by the standalone
    /// binary; the all-in-one runner uses an in-process feed instead.
    pub redis: Option<RedisSettings>,
    /// Secret shared with the gateway to verify its identity assertions (>= 32 bytes).
    pub assertion_secret: Secret<String>,
    /// Marks the `sessauth` cookie `Secure` (browsers then send it only over TLS). Set it
    /// whenever clients reach the gateway over HTTPS.
    pub cookie_secure: bool,
    /// `pretty` or `json`.
    pub log_format: String,
    /// The first registry admin (CONTRACT §1).
    pub bootstrap: BootstrapSettings,
    /// Upkeep of the blacklist's fast copy in the feed.
    pub blacklist: BlacklistSettings,
    /// Key-encryption keys sealing the signing keys' private halves in the database, each
    /// `name:base64` (32 random bytes: `openssl rand -base64 32`); a list, or one string of
    /// comma-separated entries (`AUTH_SERVICE__KEY_ENCRYPTION_KEYS`). The first seals, every
    /// one opens; at start every stored key is re-sealed under the first. Required with
    /// PostgreSQL. See [`crate::kek`] and docs/operations.md.
    pub key_encryption_keys: Secret<KekList>,
    /// Where the embedded default (SQLite, no `key_encryption_keys`) keeps the KEK it
    /// generates on first start (mode 0600). Next to the data it protects: one machine only.
    pub generated_kek_file: PathBuf,
    /// Retention of the usage records gateways send (docs/security.md, "Usage records").
    pub usage: UsageSettings,
    /// The rules that read them (docs/security.md, "Signals").
    pub signals: crate::signals::SignalSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageSettings {
    /// Days requests are kept per minute; older minutes are rolled up to hours. The signals
    /// compare the last hour with the same hour of the previous weeks, which hours serve.
    pub minutes_kept_days: u64,
    /// Days anything is kept (requests, networks, last use).
    pub kept_days: u64,
    /// Seconds between two upkeeps (roll-up and deletion), on one replica at a time.
    pub upkeep_secs: u64,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            minutes_kept_days: 7,
            kept_days: 90,
            upkeep_secs: 600,
        }
    }
}

impl UsageSettings {
    pub fn retention(&self) -> crate::store::Retention {
        let days = |d: u64| i64::try_from(d.saturating_mul(86_400)).unwrap_or(i64::MAX);
        crate::store::Retention {
            minutes_kept_secs: days(self.minutes_kept_days),
            kept_secs: days(self.kept_days.max(self.minutes_kept_days)),
            batches_kept_secs: days(7),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlacklistSettings {
    /// Seconds between two checks that the feed's fast copy is whole (its loaded marker is
    /// there and no publish failed since the last rewrite); when not, it is rewritten from
    /// the database. Bounds how long a Redis restart or flush leaves gateways behind.
    pub republish_check_secs: u64,
    /// Seconds between two comparisons of the whole fast copy with the database; a copy that
    /// differs (an entry deleted or changed by someone who can write to Redis) is rewritten.
    pub compare_secs: u64,
}

impl Default for BlacklistSettings {
    fn default() -> Self {
        Self {
            republish_check_secs: 1,
            compare_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port`.
    pub url: Secret<String>,
    /// Prefix of every key and channel, so deployments (and tests) can share one Redis.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "rpc:".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapSettings {
    /// Email of the first registry admin (`RPC_BOOTSTRAP_ADMIN_EMAIL`).
    pub email: Option<String>,
    /// Its password (`RPC_BOOTSTRAP_ADMIN_PASSWORD`); generated when unset.
    pub password: Option<Secret<String>>,
    /// Where a generated password is written, once, with mode 0600.
    pub password_file: PathBuf,
}

impl Default for BootstrapSettings {
    fn default() -> Self {
        Self {
            email: None,
            password: None,
            password_file: PathBuf::from("data/bootstrap-admin.txt"),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            database: DatabaseSettings::new("sqlite://data/auth.db", Some("auth")),
            redis: None,
            assertion_secret: Secret::default(),
            cookie_secure: false,
            log_format: "pretty".into(),
            bootstrap: BootstrapSettings::default(),
            blacklist: BlacklistSettings::default(),
            key_encryption_keys: Secret::default(),
            generated_kek_file: PathBuf::from("data/auth-kek.txt"),
            usage: UsageSettings::default(),
            signals: crate::signals::SignalSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::Rule;

    /// The settings file the embedded stack reads, with a quarantine added: every key of it
    /// is one auth-service knows, and rules are named as the API names them.
    #[test]
    fn the_shipped_settings_file_loads_and_quarantines_name_rules() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let shipped = std::fs::read_to_string(root.join("config/auth-service.yaml")).unwrap();
        let dir = std::env::temp_dir().join(format!("auth-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("auth-service.yaml");
        let quarantined =
            shipped.replace("  quarantine: {}", "  quarantine: { junk_journeys: 3600 }");
        assert_ne!(
            quarantined, shipped,
            "the file shows the quarantine setting"
        );
        std::fs::write(&file, quarantined).unwrap();
        let settings: Settings = layered_settings::load("auth-test", Some(&file)).unwrap();
        std::fs::write(&file, "signals:\n  quarantine: { junk: 60 }\n").unwrap();
        let unknown = layered_settings::load::<Settings>("auth-test", Some(&file)).unwrap_err();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(
            settings.signals.quarantine.get(&Rule::JunkJourneys),
            Some(&3600)
        );
        assert_eq!(
            settings.signals.thresholds,
            crate::signals::Thresholds::default()
        );
        assert_eq!(settings.usage.kept_days, 90);
        assert!(format!("{unknown:#}").contains("junk"), "{unknown:#}");
    }
}
