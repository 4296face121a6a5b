//! auth-service's operations the reference does not publish: sign-in (agents and browser
//! sessions), the token-pair flow, application tokens, administration and security staff's
//! routes. Rows auth-service serialises whole are described from their Rust types.

use super::{Op, int64, schema_ref, timestamp};
use auth_service::store;
use serde_json::{Value, json};
use utoipa::{PartialSchema, ToSchema};

/// A Rust type's schema under its own name.
fn typed<T: ToSchema + PartialSchema>() -> (&'static str, Value) {
    let name: &'static str = Box::leak(T::name().into_owned().into_boxed_str());
    let schema = serde_json::to_value(T::schema()).expect("a schema serialises");
    (name, schema)
}

fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": schema_ref(name)})
}

const STAFF_ROLES: &str = "registry.user, registry.admin or registry.security";
const OPERATOR_ROLES: &str = "operator.user, operator.admin or operator.application";

pub(super) fn operation(method: &str, template: &str) -> Option<Value> {
    let op = match (method, template) {
        ("GET", "/.well-known/jwks.json") => Op::new(
            "keys:jwks",
            "Sign-in",
            "The public keys that verify every token",
            "Ed25519 keys (RFC 8037) named by `kid`; a retired key kept for application tokens says so in `key_ops`. Cached 60 s.",
        )
        .json(200, "The key set.", schema_ref("Jwks")),
        ("POST", "/api/v1/auth/sign_in") => Op::new(
            "agent:signIn",
            "Sign-in",
            "Sign an agent in: the header triple",
            "Answers the user and, in headers, the triple to send on every later request (`access-token`, `client`, `uid`), valid 24 h, one per device. Failed sign-ins are throttled per login and client network: 5 a minute.",
        )
        .body(json!({
            "type": "object", "additionalProperties": false,
            "required": ["email", "password"],
            "properties": {"email": {"type": "string"}, "password": {"type": "string"}},
        }))
        .json(200, "Signed in.", json!({"type": "object", "required": ["data"], "properties": {"data": schema_ref("AgentUser")}}))
        .header(200, "access-token", "The agent's token (a JWT).")
        .header(200, "token-type", "`Bearer`.")
        .header(200, "client", "This device's id.")
        .header(200, "expiry", "When the token expires, in unix seconds.")
        .header(200, "uid", "The login.")
        .error(401, "`invalid_credentials`: unknown login, wrong password or disabled user (the same answer).")
        .error(429, "`too_many_failed_sign_ins`, with `Retry-After`."),
        ("DELETE", "/api/v1/auth/sign_out") => Op::new(
            "agent:signOut",
            "Sign-in",
            "End this device's triple",
            "Other devices' triples stay valid.",
        )
        .json(200, "Signed out.", json!({"type": "object", "required": ["success"], "properties": {"success": {"const": true}}})),
        ("POST", "/api/v1/auth/token/") => Op::new(
            "tokens:pair",
            "Tokens",
            "Exchange an API key for an access and refresh pair",
            "`apiKey` is the `api_key` of `POST /{version}/auth/credentials` (`<access_key>.<secret_key>`). The access token lasts 1 h, the refresh token a week. Answers use the `{data, meta}` envelope, errors `{error, meta}`; the body needs a `Content-Length`. Failed attempts are throttled per key and client network.",
        )
        .body(json!({
            "type": "object", "additionalProperties": false,
            "required": ["apiKey"],
            "properties": {"apiKey": {"type": "string", "example": "9dc21a6c-bc33-4583-82cb-e96f966d4faf.5Qm1Yc2b0dXc4QmpZQ0Jxd0l2dEF2a1ZqUjF0aEFpSGM"}},
        }))
        .json(200, "The pair.", envelope(json!({
            "type": "object",
            "required": ["access", "refresh", "access_expire", "refresh_expire", "refesh_expire"],
            "properties": {
                "access": {"type": "string"},
                "refresh": {"type": "string"},
                "access_expire": timestamp(),
                "refresh_expire": timestamp(),
                "refesh_expire": {"type": "string", "format": "date-time", "description": "`refresh_expire` again, under the spelling the published spec used."},
            },
        })))
        .json(400, "`invalid_request`: not a JSON object with `apiKey`, not JSON, or no `Content-Length`.", schema_ref("TokenError"))
        .json(401, "`invalid_api_key`: unknown key, wrong secret, revoked or blacklisted credential.", schema_ref("TokenError"))
        .json(413, "`payload_too_large`: over 64 KiB.", schema_ref("TokenError"))
        .json(429, "`too_many_failed_attempts`, with `Retry-After`.", schema_ref("TokenError"))
        .json(503, "`hashing_busy` or `database_unavailable`, with `Retry-After`.", schema_ref("TokenError")),
        ("POST", "/api/v1/auth/token/refresh/") => Op::new(
            "tokens:refresh",
            "Tokens",
            "A new access token from a refresh token",
            "When the operator turned refresh rotation on, the refresh token is single-use and a new one comes back; using one twice revokes its whole family.",
        )
        .body(json!({
            "type": "object", "additionalProperties": false,
            "required": ["refresh"],
            "properties": {"refresh": {"type": "string"}},
        }))
        .json(200, "A new access token.", envelope(json!({
            "type": "object",
            "required": ["access", "access_expires"],
            "properties": {
                "access": {"type": "string"},
                "access_expires": timestamp(),
                "refresh": {"type": "string", "description": "With rotation only."},
                "refresh_expire": timestamp(),
            },
        })))
        .json(400, "`invalid_request`: not a JSON object with `refresh`, not JSON, or no `Content-Length`.", schema_ref("TokenError"))
        .json(401, "`invalid_refresh_token`, `refresh_expired`, `refresh_revoked`, `refresh_reused` or `credential_revoked`.", schema_ref("TokenError"))
        .json(413, "`payload_too_large`: over 64 KiB.", schema_ref("TokenError"))
        .json(503, "`database_unavailable`, with `Retry-After`.", schema_ref("TokenError")),
        ("POST", "/profile/signin") => Op::new(
            "session:signIn",
            "Sign-in",
            "Sign a browser session in",
            "Binds the user to the session (`sessid`) and sets `sessauth` (12 h); the answer's `csrf_token` goes in `x-csrf-token` on unsafe requests. Cross-site attempts are refused (403 `csrf_failed`).",
        )
        .body(json!({
            "type": "object", "additionalProperties": false,
            "required": ["login", "password"],
            "properties": {"login": {"type": "string"}, "password": {"type": "string"}},
        }))
        .json(200, "Signed in.", json!({
            "type": "object", "required": ["user", "permissions", "csrf_token"],
            "properties": {"user": schema_ref("AgentUser"), "permissions": schema_ref("Permissions"), "csrf_token": {"type": "string"}},
        }))
        .header(200, "Set-Cookie", "`sessauth` (`HttpOnly`, `SameSite=Lax`, `Secure` and `__Host-` off loopback).")
        .error(400, "`no browser session`: the request carried a bearer token or an agent's triple.")
        .error(401, "`invalid_credentials`.")
        .error(429, "`too_many_failed_sign_ins`, with `Retry-After`."),
        ("POST", "/profile/signout") => Op::new(
            "session:signOut",
            "Sign-in",
            "Sign the browser session out",
            "The session keeps its `sessid`; `sessauth` is cleared and revoked.",
        )
        .json(200, "Signed out.", json!({"type": "object", "required": ["success"], "properties": {"success": {"const": true}}}))
        .header(200, "Set-Cookie", "`sessauth` cleared."),
        ("GET", "/profile") => Op::new(
            "session:profile",
            "Sign-in",
            "Who is signed in",
            "The user and their permissions; for a browser session, its `csrf_token`.",
        )
        .json(200, "The user.", json!({
            "type": "object", "required": ["user", "permissions"],
            "properties": {"user": schema_ref("AgentUser"), "permissions": schema_ref("Permissions"), "csrf_token": {"type": ["string", "null"]}},
        })),
        ("GET", "/console/") => Op::new(
            "console:index",
            "Console",
            "The console",
            "A single page for operator admins and staff; it calls this API with the browser session.",
        )
        .content(200, "The page.", "text/html", json!({"type": "string"}))
        .empty(304, "Not modified (`If-None-Match`)."),
        ("GET", "/console/{file}") => Op::new(
            "console:file",
            "Console",
            "One of the console's files",
            "`index.html`, `console.css`, `app.js`, `lib.js`, `pages.js` or `icon.svg`, with an `ETag`.",
        )
        .path("file", json!({"type": "string", "enum": ["index.html", "console.css", "app.js", "lib.js", "pages.js", "icon.svg"]}), "The file.")
        .content(200, "The file.", "*/*", json!({"type": "string"}))
        .empty(304, "Not modified (`If-None-Match`).")
        .error(404, "No such file."),
        ("GET", "/admin/operators") => Op::new(
            "operators:list", "Administration", "List the operators", "Registry admins.",
        )
        .json(200, "The operators.", array_of("Operator")),
        ("POST", "/admin/operators") => Op::new(
            "operators:create", "Administration", "Create an operator", "Registry admins; its first admin is created with `POST /admin/operators/{id}/users`.",
        )
        .body(json!({
            "type": "object", "additionalProperties": false,
            "required": ["name", "siret"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 256},
                "siret": {"type": "string", "pattern": "^[0-9]{14}$"},
            },
        }))
        .json(201, "The operator.", schema_ref("Operator"))
        .error(409, "`siret already registered`."),
        ("PATCH", "/admin/operators/{id}") => Op::new(
            "operators:update", "Administration", "Change an operator's settings", "Today: whether its API credentials' refresh tokens are single-use.",
        )
        .body(json!({
            "type": "object", "additionalProperties": false,
            "required": ["refresh_rotation"],
            "properties": {"refresh_rotation": {"type": "boolean"}},
        }))
        .json(200, "The operator.", schema_ref("Operator"))
        .error(404, "No such operator."),
        ("GET", "/admin/operators/{id}/users") => Op::new(
            "users:listOfOperator", "Administration", "List an operator's users", "Registry admins for any operator, operator admins for their own (another is a 404).",
        )
        .json(200, "The active users.", array_of("AgentUser"))
        .error(404, "No such operator, or another operator's."),
        ("POST", "/admin/operators/{id}/users") => Op::new(
            "users:createOfOperator", "Administration", "Create a user of an operator", &format!("Roles: {OPERATOR_ROLES}. Registry admins for any operator, operator admins for their own."),
        )
        .body(new_user(OPERATOR_ROLES))
        .json(201, "The user.", schema_ref("AgentUser"))
        .error(404, "No such operator, or another operator's.")
        .error(409, "`email already registered`."),
        ("DELETE", "/admin/operators/{id}/users/{uuid}") => Op::new(
            "users:deactivateOfOperator", "Administration", "Deactivate a user of an operator", "Their sessions and triples stop working at once.",
        )
        .empty(204, "Deactivated.")
        .error(404, "No such active user of that operator.")
        .error(409, "`cannot deactivate yourself`."),
        ("GET", "/admin/users") => Op::new(
            "users:listStaff", "Administration", "List registry staff", "Registry admins.",
        )
        .json(200, "The active staff.", array_of("AgentUser")),
        ("POST", "/admin/users") => Op::new(
            "users:createStaff", "Administration", "Create a staff member", &format!("Roles: {STAFF_ROLES}."),
        )
        .body(new_user(STAFF_ROLES))
        .json(201, "The user.", schema_ref("AgentUser"))
        .error(409, "`email already registered`."),
        ("DELETE", "/admin/users/{uuid}") => Op::new(
            "users:deactivate", "Administration", "Deactivate any user", "Registry admins.",
        )
        .empty(204, "Deactivated.")
        .error(404, "No such active user.")
        .error(409, "`cannot deactivate yourself`."),
        ("GET", "/admin/blacklist") => Op::new(
            "blacklist:list", "Security", "List the blacklist", "Entries not lifted, expired ones included, newest first.",
        )
        .json(200, "The entries.", array_of("BlacklistRow")),
        ("POST", "/admin/blacklist") => Op::new(
            "blacklist:add", "Security", "Blacklist a credential", "Every gateway refuses it within a second. `token` takes the raw token (a JWT this registry signed); `application`, `credential` and `user` a UUID; `operator` an id; `jti` a token id.",
        )
        .body(json!({
            "type": "object", "additionalProperties": false,
            "required": ["kind", "value", "reason"],
            "properties": {
                "kind": {"enum": ["token", "jti", "application", "credential", "user", "operator"]},
                "value": {"type": "string", "minLength": 1, "maxLength": 4096},
                "reason": {"type": "string", "minLength": 1, "maxLength": 1024},
                "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "In the future; none: until lifted."},
            },
        }))
        .json(201, "The entry.", schema_ref("BlacklistRow")),
        ("DELETE", "/admin/blacklist/{id}") => Op::new(
            "blacklist:lift", "Security", "Lift a blacklist entry", "An entry that records a revocation cannot be lifted.",
        )
        .path("id", json!({"type": "string", "format": "uuid"}), "The entry's id.")
        .empty(204, "Lifted.")
        .error(404, "No such active entry.")
        .error(409, "`revocation_cannot_be_lifted`."),
        ("GET", "/admin/audit") => Op::new(
            "audit:list", "Security", "The audit log", "Every admin action, newest first.",
        )
        .query("limit", false, int64(json!({"default": 100, "description": "Clamped to 1..1000."})), "How many entries.")
        .json(200, "The entries.", array_of("AuditRow"))
        .error(400, "A parameter of the wrong type, or an unknown one."),
        ("GET", "/admin/signals") => Op::new(
            "signals:list", "Security", "Signals of abnormal use", "Newest first (docs/security.md, \"Signals\").",
        )
        .query("state", false, json!({"enum": ["open", "acknowledged", "dismissed", "blacklisted"]}), "Only this state.")
        .query("rule", false, json!({"enum": ["rate_over_baseline", "many_networks", "revoked_still_tried", "guessing", "junk_journeys", "off_hours"]}), "Only this rule.")
        .query("operator_id", false, int64(json!({})), "Only this operator's credentials.")
        .query("limit", false, int64(json!({"default": 100, "description": "Clamped to 1..1000."})), "How many signals.")
        .json(200, "The signals.", array_of("SignalRow"))
        .error(400, "A parameter of the wrong type or value, or an unknown one."),
        ("POST", "/admin/signals/{id}/acknowledge") => signal_action(
            "signals:acknowledge", "Acknowledge a signal", "An open signal; it stays listed, no longer open.",
            json!({"type": "object", "additionalProperties": false, "properties": {"note": {"type": ["string", "null"], "maxLength": 1024}}}),
            false,
        ),
        ("POST", "/admin/signals/{id}/dismiss") => signal_action(
            "signals:dismiss", "Dismiss a signal", "An open or acknowledged signal, with a note saying why.",
            json!({"type": "object", "additionalProperties": false, "required": ["note"], "properties": {"note": {"type": "string", "minLength": 1, "maxLength": 1024}}}),
            true,
        ),
        ("POST", "/admin/signals/{id}/blacklist") => signal_action(
            "signals:blacklist", "Blacklist a signal's credential", "Through the blacklist, with the signal as the reason (and an optional note).",
            json!({"type": "object", "additionalProperties": false, "properties": {
                "reason": {"type": ["string", "null"], "maxLength": 1024},
                "expires_at": {"type": ["string", "null"], "format": "date-time"},
            }}),
            false,
        )
        .error(409, "`signal_not_active` or `signal_not_blacklistable`."),
        ("GET", "/admin/usage/{subject}/{id}") => Op::new(
            "usage:ofCredential", "Security", "A credential's use", "Requests per minute (per hour after 7 days) by route class and outcome, the client networks and the last use.",
        )
        .path("id", json!({"type": "string", "minLength": 1}), "The application's or credential's UUID, or the user's id.")
        .query("hours", false, int64(json!({"default": 24, "description": "Clamped to 1..2160."})), "How far back.")
        .json(200, "The usage.", schema_ref("Usage"))
        .error(400, "A parameter of the wrong type, or an unknown one.")
        .error(404, "An unknown subject kind."),
        ("GET", "/admin/keys") => Op::new(
            "keys:list", "Administration", "The signing keys", "Never their private half.",
        )
        .json(200, "The keys.", json!({"type": "object", "required": ["signing", "keys"], "properties": {"signing": {"type": "string"}, "keys": array_of("KeyInfo")}})),
        ("POST", "/admin/keys/rotate") => Op::new(
            "keys:rotate", "Administration", "Rotate the signing key", "A new key signs; the old one verifies for `overlap_seconds`, and longer for the application tokens it signed when `keep_for_applications`.",
        )
        .optional_body(json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "overlap_seconds": {"type": ["integer", "null"], "minimum": 0, "maximum": 2592000},
                "keep_for_applications": {"type": ["boolean", "null"]},
            },
        }))
        .json(201, "The new key and the ones retiring.", schema_ref("Rotation")),
        ("POST", "/applications") => Op::new(
            "applications:create", "Tokens", "Create an application token", "Operator admins. The token is shown once and never expires; it is revoked by `DELETE /applications/{uuid}` or by security staff.",
        )
        .body(json!({
            "type": "object", "additionalProperties": false,
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128}},
        }))
        .json(201, "The application and its token.", json!({
            "type": "object", "required": ["application", "token"],
            "properties": {"application": schema_ref("Application"), "token": {"type": "string"}},
        })),
        ("GET", "/applications") => Op::new(
            "applications:list", "Tokens", "List the operator's applications", "Never their tokens; with their last use.",
        )
        .json(200, "The live applications.", json!({"type": "array", "items": {
            "allOf": [schema_ref("Application")],
            "required": ["last_used"],
            "properties": {"last_used": last_used()},
        }})),
        ("DELETE", "/applications/{uuid}") => Op::new(
            "applications:revoke", "Tokens", "Revoke an application token", "Every gateway refuses it within a second; a revocation cannot be lifted.",
        )
        .empty(204, "Revoked.")
        .error(404, "No such live application of the operator."),
        _ => return None,
    };
    Some(op.done())
}

/// The `{data, meta}` envelope of the token routes.
fn envelope(data: Value) -> Value {
    json!({
        "type": "object", "required": ["data", "meta"],
        "properties": {"data": data, "meta": schema_ref("TokenMeta")},
    })
}

fn last_used() -> Value {
    json!({"anyOf": [schema_ref("LastUsed"), {"type": "null"}]})
}

fn new_user(roles: &str) -> Value {
    let roles: Vec<&str> = roles
        .split([',', ' '])
        .filter(|r| r.contains('.'))
        .collect();
    json!({
        "type": "object", "additionalProperties": false,
        "required": ["email", "password", "role", "first_name", "last_name"],
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 254},
            "password": {"type": "string", "minLength": 12, "maxLength": 128},
            "role": {"enum": roles},
            "first_name": {"type": "string", "minLength": 1, "maxLength": 128},
            "last_name": {"type": "string", "minLength": 1, "maxLength": 128},
        },
    })
}

fn signal_action(id: &str, summary: &str, text: &str, body: Value, required: bool) -> Op {
    let op = Op::new(id, "Security", summary, text).path(
        "id",
        json!({"type": "string", "minLength": 1}),
        "The signal's id.",
    );
    let op = if required {
        op.body(body)
    } else {
        op.optional_body(body)
    };
    op.json(200, "The signal after the change.", schema_ref("SignalRow"))
        .error(404, "No such signal.")
        .error(
            409,
            "`signal_not_active`: not in a state this action applies to.",
        )
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let mut all = vec![
        typed::<store::Operator>(),
        typed::<store::Application>(),
        typed::<store::BlacklistRow>(),
        typed::<store::AuditRow>(),
        typed::<store::LastUsed>(),
        typed::<store::NetworkSeen>(),
        typed::<store::UsageBucket>(),
        typed::<store::KeyInfo>(),
        typed::<store::Rotation>(),
        typed::<store::SignalRow>(),
        typed::<store::Credential>(),
    ];
    all.extend([
        (
            "AgentUser",
            json!({
                "type": "object",
                "required": ["id", "email", "role", "operator_id", "first_name", "last_name"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "email": {"type": "string"},
                    "uid": {"type": "string", "description": "The login (sign-in answers only)."},
                    "role": {"enum": ["operator.user", "operator.admin", "operator.application", "registry.user", "registry.admin", "registry.security"]},
                    "operator_id": {"type": ["integer", "null"]},
                    "first_name": {"type": "string"},
                    "last_name": {"type": "string"},
                },
            }),
        ),
        (
            "Permissions",
            json!({"type": "array", "items": {"enum": ["journeys.write", "journeys.read", "applications.manage", "applications.list", "credentials", "operators.admin", "users.manage", "blacklist", "keys", "campaigns", "signed_in"]}}),
        ),
        (
            "TokenMeta",
            json!({"type": "object", "required": ["timestamp", "request_id"], "properties": {
                "timestamp": {"type": "string", "format": "date-time"},
                "request_id": {"type": ["string", "null"]},
            }}),
        ),
        (
            "TokenError",
            json!({"type": "object", "required": ["error", "meta"], "properties": {
                "error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
                "meta": schema_ref("TokenMeta"),
            }}),
        ),
        (
            "Jwks",
            json!({"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": {
                "type": "object", "required": ["kty", "crv", "x", "kid"],
                "properties": {
                    "kty": {"const": "OKP"}, "crv": {"const": "Ed25519"}, "x": {"type": "string"},
                    "kid": {"type": "string"}, "alg": {"const": "EdDSA"}, "use": {"const": "sig"},
                    "key_ops": {"type": "array", "items": {"type": "string"}},
                },
            }}}}),
        ),
        (
            "Usage",
            json!({"type": "object", "required": ["subject", "id", "hours", "buckets", "networks", "last_used"], "properties": {
                "subject": {"enum": ["application", "api_credential", "user"]},
                "id": {"type": "string"},
                "hours": {"type": "integer"},
                "buckets": array_of("UsageBucket"),
                "networks": array_of("NetworkSeen"),
                "last_used": last_used(),
            }}),
        ),
    ]);
    all
}
