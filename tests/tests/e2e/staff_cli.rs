//! The staff command line (`auth-service blacklist|operator|keys ...`) against a running
//! stack: parsed from argv as the binary does, run through the gateway with a staff login.

use auth_service::cli::{self, Args, Staff};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack, journey};

async fn staff_cli(stack: &Stack, login: &str, argv: &[&str]) -> anyhow::Result<Value> {
    let args = Args::parse_argv(std::iter::once("auth-service").chain(argv.iter().copied()))?;
    let command = args.command.expect("a command");
    let staff = Staff {
        url: stack.url.clone(),
        email: login.to_owned(),
        password: ADMIN_PASSWORD.to_owned(),
    };
    cli::run(&command, &staff).await
}

async fn push(stack: &Stack, token: &str, id: &str) -> u16 {
    stack
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(token)
        .json(&journey(id))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn staff_commands(mode: Mode) {
    let stack = Stack::start(mode).await.unwrap();
    let created = staff_cli(
        &stack,
        ADMIN_EMAIL,
        &[
            "operator",
            "create",
            "--name",
            "Covoit CLI",
            "--siret",
            "99999999900011",
        ],
    )
    .await
    .unwrap();
    assert_eq!(created["siret"], "99999999900011");
    let listed = staff_cli(&stack, ADMIN_EMAIL, &["operator", "list"])
        .await
        .unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == created["id"])
    );

    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token = stack.application_token(&op_admin).await.unwrap();
    assert_eq!(push(&stack, &token, "cli-1").await, 201);

    // An operator admin is not security staff: the API refuses, the command fails.
    let op_login = op_admin["uid"].to_str().unwrap().to_owned();
    let refused = staff_cli(&stack, &op_login, &["blacklist", "list"]).await;
    assert!(refused.unwrap_err().to_string().starts_with("403"));

    let operator = operator_id.to_string();
    let entry = staff_cli(
        &stack,
        ADMIN_EMAIL,
        &[
            "blacklist",
            "add",
            "--kind",
            "operator",
            "--value",
            &operator,
            "--reason",
            "cli test",
        ],
    )
    .await
    .unwrap();
    let id = entry["id"].as_str().unwrap().to_owned();
    let refused = stack
        .eventually(Duration::from_secs(2), || async {
            push(&stack, &token, "cli-2").await == 401
        })
        .await;
    assert!(refused, "a blacklisted operator's token is refused");
    let entries = staff_cli(&stack, ADMIN_EMAIL, &["blacklist", "list"])
        .await
        .unwrap();
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id.as_str())
    );

    let lifted = staff_cli(&stack, ADMIN_EMAIL, &["blacklist", "lift", &id])
        .await
        .unwrap();
    assert_eq!(lifted, Value::Null, "204");
    let works = stack
        .eventually(Duration::from_secs(2), || async {
            push(&stack, &token, "cli-3").await == 201
        })
        .await;
    assert!(works, "lifting the entry lets the token in again");

    let rotated = staff_cli(
        &stack,
        ADMIN_EMAIL,
        &["keys", "rotate", "--overlap-seconds", "60"],
    )
    .await
    .unwrap();
    let keys = staff_cli(&stack, ADMIN_EMAIL, &["keys", "list"])
        .await
        .unwrap();
    assert_eq!(keys["signing"], rotated["kid"]);

    // Every action is in the audit log, by the staff member who made it.
    let audit: Value = stack
        .request(Method::GET, "/admin/audit")
        .headers(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for action in [
        "operator.create",
        "blacklist.add",
        "blacklist.lift",
        "key.rotate",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn staff_commands_embedded() {
    staff_commands(Mode::Embedded).await;
}

#[tokio::test]
async fn staff_commands_production() {
    staff_commands(Mode::Production).await;
}
