//! Signing keys at rest (issue 26, finding 3): whoever reads auth-service's database (a
//! backup, a replica, another service's role) must not be able to sign tokens. Keys are
//! stored sealed under key-encryption keys (KEKs) from the configuration; KEKs rotate by a
//! restart; a key no configured KEK opens stops the start, naming the key.

use auth_service::kek::{KekList, Keks, Sealed, generate_entry};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use layered_settings::Secret;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use rpc_service::db::DatabaseSettings;
use sqlx::{Column, Row};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack};

/// What a clear Ed25519 PKCS#8 key holds before its 32 private bytes: the algorithm
/// (id-Ed25519, 1.3.101.112) then OCTET STRING { OCTET STRING (32) }.
const CLEAR_ED25519_PREFIX: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// Reads every value of every column of `signing_keys` as bytes, as someone holding a
/// copy of the database would, whatever the schema version.
macro_rules! every_value {
    ($pool:expr, $sql:expr) => {{
        let rows = sqlx::query(sqlx::AssertSqlSafe($sql))
            .fetch_all(&$pool)
            .await
            .unwrap();
        let mut values = Vec::new();
        for row in &rows {
            for (i, column) in row.columns().iter().enumerate() {
                let bytes = (row.try_get::<Option<Vec<u8>>, _>(i).ok().flatten()).or_else(|| {
                    (row.try_get::<Option<String>, _>(i).ok().flatten()).map(String::into_bytes)
                });
                if let Some(bytes) = bytes {
                    values.push((column.name().to_owned(), bytes));
                }
            }
        }
        $pool.close().await;
        values
    }};
}

async fn stored_values(db: &DatabaseSettings) -> Vec<(String, Vec<u8>)> {
    let url = db.url.expose();
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        every_value!(pool, "SELECT * FROM signing_keys".to_owned())
    } else {
        let schema = db.schema.as_deref().unwrap();
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        every_value!(pool, format!("SELECT * FROM \"{schema}\".signing_keys"))
    }
}

/// A `signing_keys` row: kid, KEK name, sealed key, whether the clear column is empty.
type StoredRow = (String, Option<String>, Option<Vec<u8>>, bool);

/// Every stored key as (kid, KEK name, sealed bytes); none is clear.
async fn sealed_rows(db: &DatabaseSettings) -> Vec<(String, Sealed)> {
    let sql = "SELECT kid, kek, sealed_key, private_der IS NULL FROM signing_keys";
    let url = db.url.expose();
    let rows: Vec<StoredRow> = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let schema = db.schema.as_deref().unwrap();
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let sql = sql.replace("signing_keys", &format!("\"{schema}\".signing_keys"));
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&pool);
        rows.await.unwrap()
    };
    rows.into_iter()
        .map(|(kid, kek, bytes, no_clear)| {
            assert!(no_clear, "key {kid} is still stored in clear");
            let sealed = Sealed {
                kek: kek.expect("a KEK name"),
                bytes: bytes.expect("a sealed key"),
            };
            (kid, sealed)
        })
        .collect()
}

/// Writes a key in clear, as a database made before sealing holds it.
async fn insert_clear_key(db: &DatabaseSettings) -> String {
    let (key, der) = auth_token::SigningKey::generate().unwrap();
    let sql = "INSERT INTO signing_keys (kid, private_der, created_at, retired_at) \
        VALUES ($1, $2, $3, $3)";
    let now = chrono::Utc::now() - chrono::Duration::days(400);
    let url = db.url.expose();
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let insert = sqlx::query(sql).bind(key.kid()).bind(&der).bind(now);
        insert.execute(&pool).await.unwrap();
    } else {
        let schema = db.schema.as_deref().unwrap();
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let sql = sql.replace("signing_keys", &format!("\"{schema}\".signing_keys"));
        let insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        let insert = insert.bind(key.kid()).bind(&der).bind(now);
        insert.execute(&pool).await.unwrap();
    }
    key.kid().to_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The published public keys' raw 32 bytes.
fn public_keys(stack: &Stack) -> Vec<Vec<u8>> {
    let jwks = serde_json::to_value(stack.keys.jwks()).unwrap();
    (jwks["keys"].as_array().unwrap().iter())
        .map(|k| URL_SAFE_NO_PAD.decode(k["x"].as_str().unwrap()).unwrap())
        .collect()
}

/// `GET /admin/keys` through the gateway with an agent triple (a registry admin's route).
async fn admin_keys(stack: &Stack, triple: &HeaderMap) -> u16 {
    let response = stack
        .request(Method::GET, "/admin/keys")
        .headers(triple.clone());
    response.send().await.unwrap().status().as_u16()
}

/// The attack: read `signing_keys`, find a private key, sign a registry admin's token with a
/// fresh `jti` and use it through the gateway.
async fn database_reader_cannot_forge_tokens(mode: Mode) {
    let stack = Stack::start(mode).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    // Two keys stored: a rotation's new one and the one it retires.
    let rotated = stack
        .request(Method::POST, "/admin/keys/rotate")
        .headers(admin.clone())
        .json(&serde_json::json!({"overlap_seconds": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 201);
    let published = public_keys(&stack);
    assert_eq!(published.len(), 2);

    let values = stored_values(stack.auth_database()).await;
    let kids = values.iter().filter(|(column, _)| column == "kid").count();
    assert_eq!(kids, 2, "read both rows");
    let token = admin["access-token"].to_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let mut claims: auth_token::Claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims.jti = uuid::Uuid::new_v4().to_string();
    for (column, value) in &values {
        if let Ok(stolen) = auth_token::SigningKey::from_pkcs8_der(value) {
            let mut forged = admin.clone();
            let token = stolen.sign(&claims).unwrap();
            forged.insert("access-token", HeaderValue::from_str(&token).unwrap());
            let status = admin_keys(&stack, &forged).await;
            panic!(
                "signing_keys.{column} holds a clear PKCS#8 key: a token signed with it \
                 got {status} from the gateway"
            );
        }
        assert!(
            !contains(value, CLEAR_ED25519_PREFIX),
            "signing_keys.{column} holds a clear Ed25519 key"
        );
        for public in &published {
            assert!(
                !contains(value, public),
                "signing_keys.{column} holds a public key in clear (a clear PKCS#8 v2 key)"
            );
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn stored_signing_keys_are_sealed_embedded() {
    database_reader_cannot_forge_tokens(Mode::Embedded).await;
}

#[tokio::test]
async fn stored_signing_keys_are_sealed_production() {
    database_reader_cannot_forge_tokens(Mode::Production).await;
}

fn kek_list(entries: &[&str]) -> Secret<KekList> {
    Secret::new(KekList::new(entries.iter().copied()))
}

/// KEK rotation as docs/operations.md tells it: the new KEK first (the start re-seals every
/// key under it, a clear row from an older database too), then the old one removed; the
/// same signing key keeps signing tokens the gateway accepts. A KEK that opens nothing
/// stops the start with a message naming the key, never showing key material.
async fn key_encryption_keys_rotate(mode: Mode) {
    let mut stack = Stack::start(mode).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(admin_keys(&stack, &admin).await, 200);
    let signing = stack.keys.signing_kid();
    let old = stack.auth_settings.key_encryption_keys.clone();
    let clear = insert_clear_key(stack.auth_database()).await;

    let new = generate_entry("new");
    let old_entries = old.expose().clone();
    stack
        .restart_auth_service(|s| {
            let both = std::iter::once(&new).chain(old_entries.entries());
            s.key_encryption_keys = Secret::new(KekList::new(both.cloned()));
        })
        .await
        .unwrap();
    let new_only = Keks::parse(&KekList::new([new.as_str()])).unwrap();
    let rows = sealed_rows(stack.auth_database()).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (kid, sealed) in &rows {
        assert_eq!(sealed.kek, "new", "{kid} re-sealed under the first KEK");
        let der = new_only
            .open(kid, sealed)
            .expect("opens with the new KEK alone");
        auth_token::SigningKey::from_pkcs8_der(&der).expect("a key");
    }
    assert!(rows.iter().any(|(kid, _)| *kid == clear), "the clear row");

    stack
        .restart_auth_service(|s| s.key_encryption_keys = kek_list(&[new.as_str()]))
        .await
        .unwrap();
    assert_eq!(stack.keys.signing_kid(), signing, "the same key signs");
    let again = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(admin_keys(&stack, &again).await, 200, "a token signed now");
    assert_eq!(
        admin_keys(&stack, &admin).await,
        200,
        "a token signed before"
    );

    // A KEK that opens none of the keys: the start stops, naming a key and its KEK.
    let wrong = generate_entry("new");
    let error = stack
        .restart_auth_service(|s| s.key_encryption_keys = kek_list(&[wrong.as_str()]))
        .await
        .expect_err("a wrong KEK must stop the start");
    let message = format!("{error:#}");
    assert!(
        message.contains("signing key ") && message.contains("\"new\""),
        "{message}"
    );
    assert!(rows.iter().any(|(kid, _)| message.contains(kid.as_str())));
    for secret in [&wrong, &new] {
        let key = secret.split_once(':').unwrap().1;
        assert!(!message.contains(key), "the message shows a KEK: {message}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn key_encryption_keys_rotate_embedded() {
    key_encryption_keys_rotate(Mode::Embedded).await;
}

#[tokio::test]
async fn key_encryption_keys_rotate_production() {
    key_encryption_keys_rotate(Mode::Production).await;
}
