//! The usage contract: what each gateway replica tells auth-service about how credentials
//! are used, one batch every few seconds (`POST /internal/usage`, under an assertion of the
//! gateway's own, [`crate::Principal::gateway`]).
//!
//! A batch is applied once: auth-service records `(replica, seq)` with its rows in one
//! transaction, so a batch sent again after a lost answer adds nothing.

use crate::CredentialKind;
use serde::{Deserialize, Serialize};

/// The path of the route that takes batches; the gateway's route table never routes it, so
/// no client reaches it.
pub const USAGE_PATH: &str = "/internal/usage";

/// Rows per batch at most: a flush with more is sent as several batches.
pub const MAX_ROWS_PER_BATCH: usize = 2000;

/// The kind of credential usage is recorded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// An application token; the id is the application's uuid.
    Application,
    /// An API credential (its access and refresh tokens); the id is the access key.
    ApiCredential,
    /// A person (agent header triple or browser session); the id is the user's id.
    User,
}

impl Subject {
    pub fn of(kind: CredentialKind) -> Self {
        match kind {
            CredentialKind::Application => Subject::Application,
            CredentialKind::Access | CredentialKind::Refresh => Subject::ApiCredential,
            CredentialKind::Agent | CredentialKind::Session => Subject::User,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Application => "application",
            Subject::ApiCredential => "api_credential",
            Subject::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Subject::Application, Subject::ApiCredential, Subject::User]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Index in per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One gateway replica's records since its previous batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The replica, random at each start.
    pub replica: String,
    /// 1, 2, 3, ... in the order the replica made them; sent again unchanged until applied.
    pub seq: u64,
    #[serde(default)]
    pub usage: Vec<UsageRow>,
    #[serde(default)]
    pub networks: Vec<NetworkRow>,
    #[serde(default)]
    pub last_used: Vec<LastUsedRow>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.usage.len() + self.networks.len() + self.last_used.len()
    }
}

/// Requests of one credential in one minute, on one route class, with one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub subject: Subject,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<i64>,
    /// The minute's first second (unix).
    pub minute: i64,
    /// The route class (`journeys_write`, `manage`, ...; `public` for routes without one).
    pub class: String,
    /// `2xx`, `3xx`, a 4xx status (`400`, `404`, `409`, `422`, ...), `5xx`, a gateway
    /// refusal's code (`revoked_token`, `rate_limited`, ...), or `aborted`.
    pub outcome: String,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Requests of one credential from one client network (IPv4 /24, IPv6 /48) in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRow {
    pub subject: Subject,
    pub id: String,
    /// The hour's first second (unix).
    pub hour: i64,
    /// `203.0.113.0/24`, `2001:db8:1::/48`.
    pub network: String,
    pub requests: u64,
}

/// The last request of one credential the replica saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUsedRow {
    pub subject: Subject,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<i64>,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}
