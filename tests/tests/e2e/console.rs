//! The console in a real browser (docs/console.md), once per mode. `tests/browser/console.mjs`
//! drives headless Chromium (Debian's `chromium`, through playwright-core) through the pages
//! as an operator admin, security staff and a registry admin, and reports what it saw as JSON
//! lines; this test prepares the accounts, answers when it has checked an effect on the API
//! itself (the token shown once works, then is refused once revoked; the blacklisted
//! credential is refused...), and asserts on every report. Screenshots of each page land in
//! `target/console-screenshots/<mode>/` (or `$RPC_CONSOLE_SCREENSHOTS/<mode>/`).
//!
//! Needs node and chromium: `scripts/prereqs.sh services` installs them and runs `npm ci` in
//! tests/browser. Like the PostgreSQL tests, these fail rather than skip when they are absent.

use chrono::{TimeDelta, Utc};
use registry::clock::ManualClock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack, journey};
use tokio::sync::mpsc;

/// How long one step of the browser may take before the test gives up (a hang guard, not a
/// speed check: a step is a few clicks).
const STEP_LIMIT: Duration = Duration::from_secs(120);

const BROWSER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/browser");

/// The browser script, running.
struct Console {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
}

impl Console {
    /// `trust_spki`: over HTTPS, the certificate key Chromium is to trust.
    fn start(url: &str, trust_spki: Option<&str>, screenshots: &Path, scenario: &Path) -> Self {
        assert!(
            Path::new(BROWSER_DIR)
                .join("node_modules/playwright-core")
                .is_dir(),
            "playwright-core is not installed: run scripts/prereqs.sh services (npm ci in tests/browser)"
        );
        let mut child = Command::new("node")
            .arg(Path::new(BROWSER_DIR).join("console.mjs"))
            .arg(url)
            .arg(screenshots)
            .arg(scenario)
            .current_dir(BROWSER_DIR)
            .env("TRUST_SPKI", trust_spki.unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (scripts/prereqs.sh services installs node and chromium)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"event": "output", "line": line}));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            events,
        }
    }

    /// The browser's next report, which must be `event`.
    async fn expect(&mut self, event: &str) -> Value {
        loop {
            let next = tokio::time::timeout(STEP_LIMIT, self.events.recv()).await;
            match next {
                Ok(Some(v)) if v["event"] == "output" => eprintln!("browser: {}", v["line"]),
                Ok(Some(v)) if v["event"] == event => return v,
                Ok(Some(v)) => panic!("expected {event:?}, the browser reported {v:#}"),
                Ok(None) => {
                    panic!("the browser script ended before {event:?} (its stderr is above)")
                }
                Err(_) => panic!("no {event:?} from the browser within {STEP_LIMIT:?}"),
            }
        }
    }

    /// Lets the browser go on.
    fn reply(&mut self, answer: Value) {
        writeln!(self.stdin, "{answer}").expect("the browser script reads its stdin");
        self.stdin.flush().unwrap();
    }

    fn finish(mut self) -> bool {
        let status = self.child.wait().expect("the browser script ends");
        status.success()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `target/console-screenshots/<mode>` (the test binary is `target/<profile>/deps/<name>`),
/// or under `$RPC_CONSOLE_SCREENSHOTS`.
fn screenshot_dir(mode: Mode) -> PathBuf {
    let base = std::env::var_os("RPC_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().join("console-screenshots")
        });
    base.join(match mode {
        Mode::Embedded => "embedded",
        Mode::Production => "production",
    })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn status_and_reason(response: reqwest::Response) -> (StatusCode, String) {
    let reason = response
        .headers()
        .get("x-gateway-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status(), reason)
}

async fn post_journey(stack: &Stack, bearer: &str, body: &Value) -> (StatusCode, String) {
    let response = stack
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .unwrap();
    status_and_reason(response).await
}

/// `GET /v3/journeys/{id}` with `bearer`.
async fn get_journey(stack: &Stack, bearer: &str, id: &str) -> reqwest::Response {
    stack
        .request(Method::GET, &format!("/v3/journeys/{id}"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
}

async fn read_journey(stack: &Stack, bearer: &str, id: &str) -> (StatusCode, String) {
    status_and_reason(get_journey(stack, bearer, id).await).await
}

/// The journey's `status` as its operator reads it.
async fn journey_status(stack: &Stack, bearer: &str, id: &str) -> String {
    let body: Value = get_journey(stack, bearer, id)
        .await
        .json()
        .await
        .unwrap_or_default();
    body["status"].as_str().unwrap_or_default().to_owned()
}

async fn exchange(stack: &Stack, api_key: &str) -> reqwest::Response {
    stack
        .request(Method::POST, "/api/v1/auth/token/")
        .json(&json!({"apiKey": api_key}))
        .send()
        .await
        .unwrap()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is an array"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("{v} is a string"))
}

/// `GET path` as `by`, its JSON body.
async fn get_json(stack: &Stack, path: &str, by: &reqwest::header::HeaderMap) -> Value {
    stack
        .request(Method::GET, path)
        .headers(by.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn console_in_a_browser(mode: Mode) {
    // The registry's clock moves once, for the 24 h checks that flag an anomaly.
    let clock = ManualClock::at(Utc::now());
    // The production mode's browser goes through HTTPS (HTTP/2, `__Host-` cookies, HSTS);
    // the embedded one through the plain loopback port.
    // Usage is sent every second and the signals evaluated every second, a revoked token's
    // first attempt raising one, so the Activity page has a signal to show.
    let options = tests::Options {
        registry_clock: Some(Arc::new(clock.clone())),
        tls: mode == Mode::Production,
        gateway_settings: Some(|gw| gw.usage.flush_secs = 1),
        auth_settings: Some(|auth| {
            auth.signals.every_secs = 1;
            auth.signals.thresholds.revoked_min_attempts = 1;
        }),
        ..Default::default()
    };
    let stack = Stack::start_with(mode, options)
        .await
        .expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let op_email = op_admin["uid"].to_str().unwrap().to_owned();
    let security_email = format!("{}@registry.test", unique("security"));
    let staff = stack
        .request(Method::POST, "/admin/users")
        .headers(admin.clone())
        .json(&json!({"email": security_email, "password": ADMIN_PASSWORD,
                      "role": "registry.security", "first_name": "Sam", "last_name": "Guard"}))
        .send()
        .await
        .unwrap();
    assert_eq!(staff.status(), 201);
    let new_user = format!("{}@operator.test", unique("grace"));
    let new_operator = json!({
        "name": unique("Covoit Nord"),
        "siret": format!("{:014}", uuid::Uuid::new_v4().as_u128() % 100_000_000_000_000),
        "adminEmail": format!("{}@nord.test", unique("first-admin")),
        "adminPassword": "a first admin's long password",
    });
    let scenario = json!({
        "operatorAdmin": {"login": op_email, "password": ADMIN_PASSWORD},
        "security": {"login": security_email, "password": ADMIN_PASSWORD},
        "registryAdmin": {"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        "newUserEmail": new_user,
        "newOperator": new_operator,
    });
    let scenario_path = std::env::temp_dir().join(format!("{}.json", unique("console")));
    std::fs::write(&scenario_path, scenario.to_string()).unwrap();
    let url = stack.https_url.as_deref().unwrap_or(&stack.url);
    let mut console = Console::start(
        url,
        stack.tls_spki.as_deref(),
        &screenshot_dir(mode),
        &scenario_path,
    );

    // An operator admin signs in (a wrong password first: the error sits by the field) and
    // sees the pages of its role only.
    let signed_in = console.expect("signed_in").await;
    assert_eq!(signed_in["role"], "operator.admin");
    assert_eq!(
        strings(&signed_in["nav"]),
        ["tokens", "credentials", "users", "journeys"]
    );
    assert!(text(&signed_in["sign_in_error"]).contains("Wrong email or password"));
    // The session cookies: over HTTPS the `__Host-` ones, sent over TLS only; plain on the
    // loopback port.
    let cookies = signed_in["cookies"].as_array().unwrap();
    let names: Vec<&str> = cookies
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let tls = stack.https_url.is_some();
    let expected = if tls {
        ["__Host-sessauth", "__Host-sessid"]
    } else {
        ["sessauth", "sessid"]
    };
    for name in expected {
        assert!(names.contains(&name), "{name} not among {names:?}");
    }
    assert!(
        cookies.iter().all(|c| c["secure"] == tls),
        "Secure on cookies over {}: {cookies:?}",
        if tls { "HTTPS" } else { "HTTP" }
    );

    // It names an application and reads the token once, with a warning and a copy button.
    let created = console.expect("token").await;
    assert!(text(&created["name_error"]).contains("1 to 128 characters"));
    assert!(text(&created["warning"]).contains("cannot show it again"));
    assert_eq!(created["clipboard_matches"], true, "the copy button copies");
    let token = text(&created["token"]).to_owned();
    assert_eq!(
        post_journey(&stack, &token, &journey("console-j1")).await.0,
        201,
        "the token read in the console works on the operator API"
    );
    let mut short = journey("console-j2");
    short["distance"] = json!(1_000);
    assert_eq!(post_journey(&stack, &token, &short).await.0, 422);
    // The same passenger with another driver at the same time: accepted, then flagged by
    // the checks at 24 h as a temporal overlap with console-j1.
    let mut overlapping = journey("console-j3");
    overlapping["operator_trip_id"] = json!("trip-3");
    overlapping["driver"]["identity"] = json!({
        "identity_key": "c".repeat(64), "operator_user_id": "user-c",
        "phone": "+33601020306", "over_18": true});
    assert_eq!(post_journey(&stack, &token, &overlapping).await.0, 201);
    clock.advance(TimeDelta::hours(49));
    let flagged = stack
        .eventually(Duration::from_secs(10), || async {
            journey_status(&stack, &token, "console-j3").await == "anomaly_error"
        })
        .await;
    assert!(
        flagged,
        "the overlapping journey is flagged at 24 h: {}",
        journey_status(&stack, &token, "console-j3").await
    );
    console
        .reply(json!({"journey": "console-j1", "refused": "console-j2", "anomaly": "console-j3"}));

    // The token is never shown again; journeys are listed by status with their labels.
    let journeys = console.expect("journeys").await;
    assert_eq!(journeys["listed"], 1);
    assert_eq!(journeys["shown_again"], false);
    assert_eq!(journeys["status"], "terms_violation_error");
    assert!(strings(&journeys["terms"]).contains(&"distance_too_short"));
    assert_eq!(journeys["anomaly_status"], "anomaly_error");
    assert_eq!(
        strings(&journeys["anomalies"]),
        ["temporal_overlap_anomaly (with journey console-j1, 100 % overlap)"]
    );
    assert_eq!(journeys["fraud"], json!([]));

    // Revoked in the console, the token is refused at once.
    console.expect("token_revoked").await;
    let refused = stack
        .eventually(Duration::from_secs(2), || async {
            post_journey(&stack, &token, &journey("console-j9")).await
                == (StatusCode::UNAUTHORIZED, "revoked_token".into())
        })
        .await;
    assert!(refused, "a token revoked in the console is refused (401)");
    console.reply(json!({}));

    // API credentials: the revoked one is refused, the live one works.
    let credentials = console.expect("credentials").await;
    let revoked_key = text(&credentials["revoked"]["api_key"]);
    assert_eq!(exchange(&stack, revoked_key).await.status(), 401);
    let live = &credentials["live"];
    let access_key = text(&live["access_key"]).to_owned();
    let pair = exchange(&stack, text(&live["api_key"])).await;
    assert_eq!(pair.status(), 200);
    let pair: Value = pair.json().await.unwrap();
    let access = text(&pair["data"]["access"]).to_owned();
    assert_eq!(read_journey(&stack, &access, "console-j1").await.0, 200);
    console.reply(json!({}));

    // Users of the operator: a bad email is shown by its field, then the user is added.
    let users = console.expect("users").await;
    assert!(text(&users["email_error"]).contains("email"));
    assert_eq!(users["listed"], 2);
    let listed: Value = stack
        .request(
            Method::GET,
            &format!("/admin/operators/{operator_id}/users"),
        )
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["email"] == new_user.as_str())
    );

    // A page the role may not use is not in its sidebar, and its route answers 403.
    let forbidden = console.expect("forbidden").await;
    assert_eq!(forbidden["in_nav"], 0);
    assert!(text(&forbidden["notice"]).contains("insufficient_permissions"));
    assert_eq!(
        forbidden["api"],
        json!({"status": 403, "reason": "insufficient_permissions"})
    );

    let phone = console.expect("phone").await;
    assert_eq!(
        phone,
        json!({"event": "phone", "menu_folds": true, "fits": true})
    );
    let signed_out = console.expect("signed_out").await;
    assert_eq!(signed_out["profile"]["status"], 401);

    // Security staff blacklist the live credential: its access token and key are refused.
    let signed_in = console.expect("signed_in").await;
    assert_eq!(signed_in["role"], "registry.security");
    assert_eq!(
        strings(&signed_in["nav"]),
        ["journeys", "blacklist", "audit", "activity"]
    );
    let blacklisted = console.expect("blacklisted").await;
    assert!(text(&blacklisted["value_error"]).contains("uuid"));
    let refused = stack
        .eventually(Duration::from_secs(2), || async {
            read_journey(&stack, &access, "console-j1").await
                == (StatusCode::UNAUTHORIZED, "revoked_token".into())
        })
        .await;
    assert!(
        refused,
        "a credential blacklisted in the console is refused"
    );
    assert_eq!(exchange(&stack, text(&live["api_key"])).await.status(), 401);
    let entries: Value = get_json(&stack, "/admin/blacklist", &admin).await;
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "credential"
                && e["value"] == access_key.as_str()
                && e["reason"] == "abusive traffic")
    );
    console.reply(json!({}));

    // ...and find the entry in the audit log.
    let audit = console.expect("audit").await;
    assert!(strings(&audit["actions"]).contains(&"blacklist.add"));

    // Lifted in the console, the credential works again.
    console.expect("lifted").await;
    let back = stack
        .eventually(Duration::from_secs(2), || async {
            read_journey(&stack, &access, "console-j1").await.0 == StatusCode::OK
        })
        .await;
    assert!(back, "a lifted entry stops refusing");
    assert_eq!(exchange(&stack, text(&live["api_key"])).await.status(), 200);
    // The token revoked in the console was still tried (above): a signal names it.
    let path = "/admin/signals?state=open&rule=revoked_still_tried";
    let mut signal = Value::Null;
    for _ in 0..200 {
        let listed: Value = get_json(&stack, path, &admin).await;
        if let Some(found) = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["operator_id"] == operator_id && s["subject"] == "application")
        {
            signal = found.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(signal["subject"], "application", "a signal: {signal}");
    console.reply(json!({"signal_credential": signal["credential"]}));

    // Security staff inspect it on the Activity page (a chart of its minutes, its networks)
    // and blacklist it from there with a reason.
    let activity = console.expect("activity").await;
    assert!(activity["bars"].as_u64().unwrap() >= 1, "{activity}");
    assert!(
        activity["refused_bars"].as_u64().unwrap() >= 1,
        "{activity}"
    );
    assert_eq!(activity["networks"], 1, "{activity}");
    assert!(text(&activity["last_used"]).contains("127.0.0.0/24"));
    let id = text(&signal["id"]);
    let after: Value = stack
        .request(
            Method::GET,
            "/admin/signals?state=blacklisted&rule=revoked_still_tried",
        )
        .headers(admin.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        after.as_array().unwrap().iter().any(|s| s["id"] == id),
        "the signal is blacklisted: {after}"
    );
    let entries: Value = get_json(&stack, "/admin/blacklist", &admin).await;
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "application"
                && e["value"] == signal["credential"]
                && e["reason"]
                    == format!(
                        "signal {id}: revoked_still_tried: still tried after its revocation"
                    )),
        "{entries}"
    );
    console.reply(json!({}));
    let forbidden = console.expect("forbidden").await;
    assert_eq!(
        forbidden["api"],
        json!({"status": 403, "reason": "insufficient_permissions"})
    );

    // A registry admin creates an operator and its first admin, who can sign in.
    let signed_in = console.expect("signed_in").await;
    assert_eq!(signed_in["role"], "registry.admin");
    assert_eq!(
        strings(&signed_in["nav"]),
        [
            "credentials",
            "journeys",
            "blacklist",
            "audit",
            "activity",
            "operators"
        ]
    );
    let operator = console.expect("operator").await;
    assert!(text(&operator["siret_error"]).contains("14 digits"));
    assert!(text(&operator["notice"]).contains(text(&new_operator["adminEmail"])));
    let first_admin = stack
        .sign_in(
            text(&new_operator["adminEmail"]),
            text(&new_operator["adminPassword"]),
        )
        .await;
    assert!(first_admin.is_ok(), "the operator's first admin signs in");

    // Nothing left the gateway's origin, and the pages raised no error.
    let done = console.expect("done").await;
    assert_eq!(done["outside_requests"], json!([]));
    assert_eq!(done["page_errors"], json!([]));
    assert!(console.finish(), "the browser script succeeds");
    let _ = std::fs::remove_file(&scenario_path);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_embedded() {
    console_in_a_browser(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_production() {
    console_in_a_browser(Mode::Production).await;
}

/// The static files through the gateway: public, typed, under a policy that keeps the
/// browser on this origin; and only through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_files_are_public_through_the_gateway_only() {
    let stack = Stack::start(Mode::Embedded).await.expect("stack starts");
    for (path, kind) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let r = stack.request(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], kind, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "no-cache");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(h.get("set-cookie").is_some(), "a first visit gets a sessid");
        let etag = h["etag"].clone();
        let again = stack
            .request(Method::GET, path)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let missing = stack
        .request(Method::GET, "/console/missing.js")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let nested = stack
        .request(Method::GET, "/console/a/b.js")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_reason(nested).await,
        (StatusCode::NOT_FOUND, "route_not_found".into())
    );
    let direct = reqwest::get(format!("http://{}/console/", stack.auth_addr))
        .await
        .unwrap();
    assert_eq!(
        direct.status(),
        401,
        "auth-service serves only what the gateway asserts"
    );
    stack.stop().await;
}
