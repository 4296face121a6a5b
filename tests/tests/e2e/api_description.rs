//! The API description the gateway serves, checked against the running stack by a third
//! party, schemathesis (issue 22, docs/api.md): every check, every operation, with each kind
//! of credential its operations accept, the stateful links followed, on both stores. The
//! settings are in `tests/schemathesis/` (the checks' expectations where JSON Schema cannot
//! state a rule, and the generators of phone numbers and recent dates).

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;
use std::path::{Path, PathBuf};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Options, Stack};

/// The same cases on every run: a failure is reproduced with the seed it prints.
const SEED: &str = "22";
const EXAMPLES: &str = "15";

/// A run: its credential (schemathesis `[auth.openapi.*]` settings) and its operations.
struct Run {
    name: &'static str,
    auth: String,
    select: Vec<String>,
    /// Whether its operations link to each other (schemathesis's stateful phase).
    linked: bool,
}

fn bearer(scheme: &str, token: &str) -> String {
    format!("[auth.openapi.{scheme}]\nbearer = \"{token}\"\n")
}

fn api_keys(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(scheme, value)| format!("[auth.openapi.{scheme}]\napi_key = \"{value}\"\n"))
        .collect()
}

fn triple(headers: &HeaderMap) -> String {
    let value = |name: &str| headers[name].to_str().unwrap().to_owned();
    api_keys(&[
        ("agent_access_token", &value("access-token")),
        ("agent_client", &value("client")),
        ("agent_uid", &value("uid")),
    ])
}

fn session(browser: &tests::Browser) -> String {
    api_keys(&[
        ("session_id", &browser.sessid),
        ("session_auth", browser.sessauth.as_deref().unwrap()),
        ("csrf_token", browser.csrf.as_deref().unwrap()),
    ])
}

fn tags(tags: &[&str]) -> Vec<String> {
    tags.iter()
        .flat_map(|t| ["--include-tag".to_owned(), (*t).to_owned()])
        .collect()
}

fn operations(flag: &str, ids: &[&str]) -> Vec<String> {
    ids.iter()
        .flat_map(|id| [flag.to_owned(), (*id).to_owned()])
        .collect()
}

/// What ends the credential it is called with (signing out, rotating the signing key,
/// blacklisting, deactivating): run last, each kind with a credential of its own.
const ENDS_ITS_CREDENTIAL: &[&str] = &[
    "agent:signOut",
    "session:signOut",
    "keys:rotate",
    "blacklist:add",
    "signals:blacklist",
    "users:deactivate",
    "users:deactivateOfOperator",
];

fn schemathesis_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis")
}

/// Runs schemathesis once; the failures it reports, whole, when it finds any.
async fn schemathesis(stack: &Stack, dir: &Path, run: &Run) -> Result<(), String> {
    let base = std::fs::read_to_string(schemathesis_dir().join("schemathesis.toml")).unwrap();
    let config = dir.join(format!("{}.toml", run.name.replace(' ', "-")));
    std::fs::write(&config, format!("{base}\n{}", run.auth)).unwrap();
    let mut command = std::process::Command::new("st");
    command
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", stack.url)])
        .args([
            "--checks",
            "all",
            "--seed",
            SEED,
            "--max-examples",
            EXAMPLES,
        ])
        .args(["--no-color"])
        .args(&run.select)
        .env("PYTHONPATH", schemathesis_dir())
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .current_dir(dir);
    if !run.linked {
        command.args(["--phases", "examples,coverage,fuzzing"]);
    }
    // The stack serves from this process's runtime: wait for schemathesis off it.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("schemathesis runs (scripts/prereqs.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "schemathesis, {} ({:?}):\n{text}\n{}",
            run.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A staff member of `role`, signed in both ways: the header triple and a browser session.
async fn staff(stack: &Stack, admin: &HeaderMap, role: &str) -> (HeaderMap, tests::Browser) {
    let email = format!(
        "{}-{}@registry.test",
        role.replace('.', "-"),
        uuid::Uuid::new_v4().simple()
    );
    let created = stack
        .request(Method::POST, "/admin/users")
        .headers(admin.clone())
        .json(
            &json!({"email": email, "password": ADMIN_PASSWORD, "role": role,
                      "first_name": "Katherine", "last_name": "Johnson"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let triple = stack.sign_in(&email, ADMIN_PASSWORD).await.unwrap();
    let mut browser = stack.browser().await.unwrap();
    stack
        .browser_sign_in(&mut browser, &email, ADMIN_PASSWORD)
        .await
        .unwrap();
    (triple, browser)
}

/// A second admin of `operator`, signed in with a browser session.
async fn operator_admin_session(stack: &Stack, admin: &HeaderMap, operator: i64) -> tests::Browser {
    let email = format!("session-{}@operator.test", uuid::Uuid::new_v4().simple());
    let created = stack
        .request(Method::POST, &format!("/admin/operators/{operator}/users"))
        .headers(admin.clone())
        .json(
            &json!({"email": email, "password": ADMIN_PASSWORD, "role": "operator.admin",
                      "first_name": "Mary", "last_name": "Jackson"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut browser = stack.browser().await.unwrap();
    stack
        .browser_sign_in(&mut browser, &email, ADMIN_PASSWORD)
        .await
        .unwrap();
    browser
}

/// The generous limits of this run: it checks the answers, not the limits (rate_limits.rs
/// does), and several hundred requests a minute per credential would otherwise be 429s.
fn generous_limits(settings: &mut gateway::Settings) {
    use gateway::ratelimit::RouteClass;
    for class in [
        RouteClass::Default,
        RouteClass::Manage,
        RouteClass::AccessToken,
    ] {
        settings.rate_limits.classes.insert(class, 1_000_000);
    }
}

async fn check(mode: Mode) {
    // The services' warnings and errors go with the test's output: a server error
    // schemathesis reports comes with its cause.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let options = Options {
        gateway_settings: Some(generous_limits),
        ..Options::default()
    };
    let stack = Stack::start_with(mode, options).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let app = stack.application_token(&op_admin).await.unwrap();
    let credential = stack.credential(&op_admin, operator).await.unwrap();
    let pair = stack
        .token_pair(credential["api_key"].as_str().unwrap())
        .await
        .unwrap();
    let (registry_admin, registry_admin_session) = staff(&stack, &admin, "registry.admin").await;
    let (_, security) = staff(&stack, &admin, "registry.security").await;
    let op_admin_session = operator_admin_session(&stack, &admin, operator).await;
    let operator_api = ["Trajets courte distance", "Demandes CEE", "Exports"];
    let operator_admin = [
        "Trajets courte distance",
        "Demandes CEE",
        "Exports",
        "Tokens",
        "Authentification",
        "Sign-in",
    ];
    let not_last = operations("--exclude-operation-id", ENDS_ITS_CREDENTIAL);
    let mut runs = vec![
        Run {
            name: "application token",
            auth: bearer("application_token", &app),
            select: tags(&operator_api),
            linked: true,
        },
        Run {
            name: "access token",
            auth: bearer("access_token", pair["access"].as_str().unwrap()),
            select: tags(&operator_api),
            linked: true,
        },
        Run {
            name: "operator admin's triple",
            auth: triple(&op_admin),
            select: [tags(&operator_admin), not_last.clone()].concat(),
            linked: true,
        },
        Run {
            name: "operator admin's session",
            auth: session(&op_admin_session),
            select: [tags(&operator_admin), not_last.clone()].concat(),
            linked: true,
        },
        Run {
            name: "registry admin's triple",
            auth: triple(&registry_admin),
            select: [tags(&["Administration", "Security"]), not_last.clone()].concat(),
            linked: true,
        },
        Run {
            name: "registry admin's session",
            auth: session(&registry_admin_session),
            select: [tags(&["Administration"]), not_last.clone()].concat(),
            linked: true,
        },
        Run {
            name: "security staff's session",
            auth: session(&security),
            select: [tags(&["Security", "Sign-in"]), not_last.clone()].concat(),
            linked: true,
        },
        Run {
            name: "no credential",
            auth: String::new(),
            select: tags(&["Gateway", "Console"]),
            linked: false,
        },
    ];
    // Last, with credentials of their own.
    let (ending_staff, ending_session) = staff(&stack, &admin, "registry.admin").await;
    runs.push(Run {
        name: "what ends its credential, triple",
        auth: triple(&ending_staff),
        select: operations("--include-operation-id", ENDS_ITS_CREDENTIAL),
        linked: false,
    });
    runs.push(Run {
        name: "what ends its credential, session",
        auth: session(&ending_session),
        select: operations("--include-operation-id", &["session:signOut"]),
        linked: false,
    });
    let dir = std::env::temp_dir().join(format!("schemathesis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for run in &runs {
        if let Err(report) = schemathesis(&stack, &dir, run).await {
            failures.push(report);
        }
    }
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_embedded() {
    check(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_production() {
    check(Mode::Production).await;
}
