//! The staff command line: `auth-service blacklist add|list|lift`, `auth-service operator
//! create|list`, `auth-service keys list|rotate`. It talks to the public admin API through
//! the gateway, as any staff member's browser would, with a staff login: it signs in (header
//! triple), makes one call, prints the answer as JSON and signs out. It never touches the
//! database, so every action goes through the same permission checks and audit log.
//!
//! The password comes from `RPC_STAFF_PASSWORD` or, when unset, from the first line of
//! standard input: never from a flag (it would show in `ps` and shell history).

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "auth-service",
    about = "auth-service, and the staff command line"
)]
pub struct Args {
    /// Settings file (serve and migrate).
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Create or update the database's tables (the migrations), then exit: a deployment's
    /// step before a rollout (serving runs them too).
    Migrate,
    /// Security staff: the blacklist.
    Blacklist {
        #[command(subcommand)]
        action: BlacklistAction,
        #[command(flatten)]
        staff: StaffArgs,
    },
    /// Registry admins: operators.
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
        #[command(flatten)]
        staff: StaffArgs,
    },
    /// Registry admins: signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        staff: StaffArgs,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct StaffArgs {
    /// The gateway's public URL [env RPC_URL, default http://127.0.0.1:8080].
    #[arg(long)]
    pub url: Option<String>,
    /// The staff login [env RPC_STAFF_EMAIL].
    #[arg(long)]
    pub email: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BlacklistAction {
    /// Refuse a credential everywhere within a second.
    Add {
        /// token, jti, application, credential, user or operator
        #[arg(long)]
        kind: String,
        #[arg(long)]
        value: String,
        #[arg(long)]
        reason: String,
        /// RFC 3339 time after which the entry no longer applies.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Active entries: who, when, why.
    List,
    /// Lift an entry by its id.
    Lift { id: String },
}

#[derive(Debug, Subcommand)]
pub enum OperatorAction {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        siret: String,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    List,
    /// Make a new signing key; the old ones verify for the overlap.
    Rotate {
        /// Seconds the old keys keep verifying (default 86400).
        #[arg(long)]
        overlap_seconds: Option<u64>,
        /// Retire the old keys at once, applications' included (a leaked key).
        #[arg(long)]
        emergency: bool,
    },
}

impl Args {
    /// Parses a command line (`args[0]` is the program name).
    pub fn parse_argv<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(args)
    }
}

/// Who the command acts as.
#[derive(Debug, Clone)]
pub struct Staff {
    pub url: String,
    pub email: String,
    pub password: String,
}

impl Staff {
    /// From the flags, then the environment, then standard input for the password.
    pub fn from_args(args: &StaffArgs) -> anyhow::Result<Self> {
        let url = args
            .url
            .clone()
            .or_else(|| std::env::var("RPC_URL").ok())
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let email = args
            .email
            .clone()
            .or_else(|| std::env::var("RPC_STAFF_EMAIL").ok())
            .context("a staff login is needed: --email or RPC_STAFF_EMAIL")?;
        let password = match std::env::var("RPC_STAFF_PASSWORD") {
            Ok(p) => p,
            Err(_) => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            }
        };
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            email,
            password,
        })
    }
}

/// The HTTP call a staff command makes.
fn request_of(command: &Command) -> Option<(Method, String, Option<Value>)> {
    use BlacklistAction as B;
    use KeysAction as K;
    use OperatorAction as O;
    Some(match command {
        Command::Serve | Command::Migrate => return None,
        Command::Blacklist { action, .. } => match action {
            B::Add {
                kind,
                value,
                reason,
                expires_at,
            } => {
                let mut body = json!({"kind": kind, "value": value, "reason": reason});
                if let Some(at) = expires_at {
                    body["expires_at"] = json!(at);
                }
                (Method::POST, "/admin/blacklist".into(), Some(body))
            }
            B::List => (Method::GET, "/admin/blacklist".into(), None),
            B::Lift { id } => (Method::DELETE, format!("/admin/blacklist/{id}"), None),
        },
        Command::Operator { action, .. } => match action {
            O::Create { name, siret } => (
                Method::POST,
                "/admin/operators".into(),
                Some(json!({"name": name, "siret": siret})),
            ),
            O::List => (Method::GET, "/admin/operators".into(), None),
        },
        Command::Keys { action, .. } => match action {
            K::List => (Method::GET, "/admin/keys".into(), None),
            K::Rotate {
                overlap_seconds,
                emergency,
            } => {
                let mut body = json!({});
                if *emergency {
                    body = json!({"overlap_seconds": 0, "keep_for_applications": false});
                }
                if let Some(seconds) = overlap_seconds {
                    body["overlap_seconds"] = json!(seconds);
                }
                (Method::POST, "/admin/keys/rotate".into(), Some(body))
            }
        },
    })
}

/// The staff flags of a command, if it is a staff command.
pub fn staff_args(command: &Command) -> Option<&StaffArgs> {
    match command {
        Command::Serve | Command::Migrate => None,
        Command::Blacklist { staff, .. }
        | Command::Operator { staff, .. }
        | Command::Keys { staff, .. } => Some(staff),
    }
}

/// Runs a staff command as `staff`; returns the API's answer (`null` for 204).
pub async fn run(command: &Command, staff: &Staff) -> anyhow::Result<Value> {
    let (method, path, body) = request_of(command).context("not a staff command")?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let triple = sign_in(&http, staff).await?;
    let mut call = http
        .request(method, format!("{}{path}", staff.url))
        .headers(triple.clone());
    if let Some(body) = body {
        call = call.json(&body);
    }
    let outcome = answer(call.send().await.context("the gateway does not answer")?).await;
    // Best effort: the token would expire in a day anyway.
    let _ = http
        .delete(format!("{}/api/v1/auth/sign_out", staff.url))
        .headers(triple)
        .send()
        .await;
    outcome
}

async fn sign_in(http: &reqwest::Client, staff: &Staff) -> anyhow::Result<HeaderMap> {
    let response = http
        .post(format!("{}/api/v1/auth/sign_in", staff.url))
        .json(&json!({"email": staff.email, "password": staff.password}))
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {}", staff.url))?;
    if !response.status().is_success() {
        bail!("sign-in refused ({})", response.status());
    }
    let mut triple = HeaderMap::new();
    for name in ["access-token", "client", "uid"] {
        let value = response
            .headers()
            .get(name)
            .with_context(|| format!("sign-in answer without {name}"))?;
        triple.insert(name, value.clone());
    }
    Ok(triple)
}

async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await?;
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Args::try_parse_from(std::iter::once("auth-service").chain(args.iter().copied()))
            .unwrap()
            .command
            .unwrap()
    }

    #[test]
    fn commands_map_to_admin_api_calls() {
        let cases: &[(&[&str], Method, &str, Option<Value>)] = &[
            (
                &[
                    "blacklist",
                    "add",
                    "--kind",
                    "jti",
                    "--value",
                    "j1",
                    "--reason",
                    "abuse",
                ],
                Method::POST,
                "/admin/blacklist",
                Some(json!({"kind": "jti", "value": "j1", "reason": "abuse"})),
            ),
            (
                &["blacklist", "list"],
                Method::GET,
                "/admin/blacklist",
                None,
            ),
            (
                &["blacklist", "lift", "abc"],
                Method::DELETE,
                "/admin/blacklist/abc",
                None,
            ),
            (
                &[
                    "operator",
                    "create",
                    "--name",
                    "Covoit",
                    "--siret",
                    "12345678901234",
                ],
                Method::POST,
                "/admin/operators",
                Some(json!({"name": "Covoit", "siret": "12345678901234"})),
            ),
            (
                &["keys", "rotate", "--overlap-seconds", "60"],
                Method::POST,
                "/admin/keys/rotate",
                Some(json!({"overlap_seconds": 60})),
            ),
            (
                &["keys", "rotate", "--emergency"],
                Method::POST,
                "/admin/keys/rotate",
                Some(json!({"overlap_seconds": 0, "keep_for_applications": false})),
            ),
        ];
        for (args, method, path, body) in cases {
            let (m, p, b) = request_of(&parse(args)).unwrap();
            assert_eq!((&m, p.as_str(), &b), (method, *path, body), "{args:?}");
        }
        assert!(request_of(&parse(&["serve"])).is_none());
        assert!(Args::try_parse_from(["auth-service", "blacklist", "add"]).is_err());
    }
}
