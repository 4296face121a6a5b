//! Registry staff accounts and user deactivation (CONTRACT §4, §5): registry admins create
//! security staff; admins deactivate users, whose sign-ins and tokens stop at once.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack, call};

fn person(email: &str, role: &str) -> Value {
    json!({"email": email, "password": ADMIN_PASSWORD, "role": role,
           "first_name": "Grace", "last_name": "Hopper"})
}

async fn refused_soon(stack: &Stack, path: &str, who: &HeaderMap) -> bool {
    stack
        .eventually(Duration::from_secs(2), || async {
            call(stack, Method::GET, path, who, None).await.0 == 401
        })
        .await
}

async fn staff_and_deactivation(mode: Mode) {
    let stack = Stack::start(mode).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let (_, other_admin) = stack.operator_with_admin(&admin).await.unwrap();

    // Registry staff: registry roles only, registry admins only.
    let (status, created) = call(
        &stack,
        Method::POST,
        "/admin/users",
        &admin,
        Some(person("security@registry.test", "registry.security")),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(created["operator_id"], Value::Null);
    let (status, body) = call(
        &stack,
        Method::POST,
        "/admin/users",
        &admin,
        Some(person("x@registry.test", "operator.admin")),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["data"][0]
            .as_str()
            .unwrap()
            .starts_with("/role")
    );
    let (status, _) = call(
        &stack,
        Method::POST,
        "/admin/users",
        &op_admin,
        Some(person("y@registry.test", "registry.admin")),
    )
    .await;
    assert_eq!(status, 403);
    let (_, staff) = call(&stack, Method::GET, "/admin/users", &admin, None).await;
    assert!(
        staff
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["email"] == "security@registry.test")
    );

    let security = stack
        .sign_in("security@registry.test", ADMIN_PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        call(&stack, Method::GET, "/admin/blacklist", &security, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&stack, Method::GET, "/admin/operators", &security, None)
            .await
            .0,
        403
    );

    // An operator admin deactivates one of its users; another operator's admin cannot.
    let users_path = format!("/admin/operators/{operator_id}/users");
    let (status, user) = call(
        &stack,
        Method::POST,
        &users_path,
        &op_admin,
        Some(person("driver-desk@operator.test", "operator.user")),
    )
    .await;
    assert_eq!(status, 201);
    let user_id = user["id"].as_str().unwrap().to_owned();
    let desk = stack
        .sign_in("driver-desk@operator.test", ADMIN_PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        call(&stack, Method::GET, "/applications", &desk, None)
            .await
            .0,
        200
    );
    let one = format!("{users_path}/{user_id}");
    assert_eq!(
        call(&stack, Method::DELETE, &one, &other_admin, None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(&stack, Method::DELETE, &one, &op_admin, None).await.0,
        204
    );
    assert!(
        refused_soon(&stack, "/applications", &desk).await,
        "its token dies"
    );
    let (_, body) = call(&stack, Method::GET, "/applications", &desk, None).await;
    assert_eq!(body["error"]["data"], "revoked_token");
    assert!(
        stack
            .sign_in("driver-desk@operator.test", ADMIN_PASSWORD)
            .await
            .is_err()
    );
    assert_eq!(
        call(&stack, Method::DELETE, &one, &op_admin, None).await.0,
        404
    );
    let (_, listed) = call(&stack, Method::GET, &users_path, &op_admin, None).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["id"] != user_id.as_str())
    );

    // Registry admins deactivate anyone but themselves.
    let admin_id = call(&stack, Method::GET, "/admin/users", &admin, None)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == ADMIN_EMAIL)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/admin/users/{admin_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 409);
    let security_id = created["id"].as_str().unwrap();
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/admin/users/{security_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(refused_soon(&stack, "/admin/blacklist", &security).await);
    stack.stop().await;
}

#[tokio::test]
async fn staff_and_deactivation_embedded() {
    staff_and_deactivation(Mode::Embedded).await;
}

#[tokio::test]
async fn staff_and_deactivation_production() {
    staff_and_deactivation(Mode::Production).await;
}
