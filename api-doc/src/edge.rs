//! What the gateway adds to every operation: credentials, its own answers (with their reason
//! codes, from [`Reason`]), rate-limit and version headers, and the routes it answers itself.

use gateway::ratelimit::RouteClass;
use gateway::reason::Reason;
use gateway::routes::{Access, Entry, PROFILE_SIGNIN};
use serde_json::{Map, Value, json};

/// The security requirement of a route: alternatives, each a set of schemes sent together.
pub fn security(entry: &Entry) -> Value {
    let unsafe_method = !matches!(entry.method, "GET" | "HEAD" | "OPTIONS");
    let triple = json!({"agent_access_token": [], "agent_client": [], "agent_uid": []});
    let session = if unsafe_method {
        json!({"session_id": [], "session_auth": [], "csrf_token": []})
    } else {
        json!({"session_id": [], "session_auth": []})
    };
    match entry.access {
        Access::Public => json!([]),
        Access::OperatorApi => json!([
            {"application_token": []},
            {"access_token": []},
            triple,
            session,
        ]),
        Access::User => json!([triple, session]),
    }
}

/// The reasons the gateway may answer with on `entry`, by status.
fn gateway_reasons(entry: &Entry) -> Vec<Reason> {
    let mut reasons = vec![
        Reason::PayloadTooLarge,
        Reason::HeadersTooLarge,
        Reason::TooManyConnections,
        Reason::UpstreamUnavailable,
        Reason::UpstreamTimeout,
    ];
    if entry.access != Access::Public {
        reasons.extend([
            Reason::MissingToken,
            Reason::InvalidToken,
            Reason::ExpiredToken,
            Reason::RevokedToken,
            Reason::TokenNotAcceptedHere,
            Reason::InsufficientPermissions,
            Reason::BlacklistUnavailable,
        ]);
        if !matches!(entry.method, "GET" | "HEAD" | "OPTIONS") {
            reasons.push(Reason::CsrfFailed);
        }
    }
    if entry.template == PROFILE_SIGNIN {
        reasons.push(Reason::CsrfFailed);
    }
    if entry.template.starts_with("/{version}") {
        // A served version, or another well-formed one (422); a malformed version segment
        // makes the path no route at all.
        reasons.extend([Reason::UnsupportedApiVersion, Reason::RouteNotFound]);
    }
    if RouteClass::of(entry.template, entry.method).is_some() {
        reasons.push(Reason::RateLimited);
    }
    reasons
}

/// Adds the gateway's own answers to an operation's `responses`. Where the upstream answers
/// the same status (a 422 for the terms and one for the version, say), both bodies are
/// allowed; the reference's 401 and 403 are the gateway's (CONTRACT §2).
///
/// The gateway's answers are shared components (`shared`, the document's
/// `components/responses`), one per status and set of reasons.
pub fn add_responses(
    entry: &Entry,
    responses: &mut Map<String, Value>,
    shared: &mut Map<String, Value>,
) {
    let class = RouteClass::of(entry.template, entry.method);
    let mut by_status: Vec<(u16, Vec<Reason>)> = Vec::new();
    for reason in gateway_reasons(entry) {
        match by_status.iter_mut().find(|(s, _)| *s == reason.status()) {
            Some((_, reasons)) => reasons.push(reason),
            None => by_status.push((reason.status(), vec![reason])),
        }
    }
    by_status.sort_by_key(|(s, _)| *s);
    for (status, reasons) in by_status {
        let key = status.to_string();
        let name = response_name(status, &reasons);
        let ours = json!({"$ref": format!("#/components/responses/{name}")});
        shared
            .entry(name)
            .or_insert_with(|| gateway_response(status, &reasons));
        let replaces = matches!(status, 401 | 403)
            || responses
                .get(&key)
                .and_then(|r| r.get("$ref"))
                .and_then(Value::as_str)
                .is_some_and(|r| r.ends_with("_rpc"));
        match responses.get_mut(&key) {
            Some(theirs) if !replaces => {
                merge_response(theirs, gateway_response(status, &reasons));
            }
            _ => {
                responses.insert(key, ours);
            }
        }
    }
    for (status, response) in responses.iter_mut() {
        add_headers(entry, class, status, response);
    }
}

/// The headers every answer of the route carries.
fn add_headers(entry: &Entry, class: Option<RouteClass>, status: &str, response: &mut Value) {
    let Some(object) = response.as_object_mut() else {
        return;
    };
    // Every answer carries them; the success answers say so (the errors' shared
    // components name theirs), which keeps the document readable.
    if object.contains_key("$ref") || !(status.starts_with('2') || status.starts_with('3')) {
        return;
    }
    let headers = object
        .entry("headers")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("headers are an object");
    headers.insert(
        "x-request-id".into(),
        json!({"$ref": "#/components/headers/x-request-id"}),
    );
    if entry.template.starts_with("/{version}") && status != "422" {
        headers.insert(
            "X-API-Version".into(),
            json!({"$ref": "#/components/headers/X-API-Version"}),
        );
    }
    if class.is_some()
        && !matches!(
            status,
            "401" | "403" | "413" | "431" | "502" | "503" | "504"
        )
    {
        for name in [
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "RateLimit-Policy",
        ] {
            headers.insert(
                name.into(),
                json!({"$ref": format!("#/components/headers/{name}")}),
            );
        }
    }
}

/// The component name of the gateway's answer with `status` for `reasons`.
fn response_name(status: u16, reasons: &[Reason]) -> String {
    let mut name = format!("gateway_{status}");
    for reason in reasons {
        name.push('_');
        name.push_str(reason.code());
    }
    name
}

/// Both bodies allowed under one status.
fn merge_response(theirs: &mut Value, ours: Value) {
    let description = format!(
        "{} {}",
        theirs["description"].as_str().unwrap_or_default(),
        ours["description"].as_str().unwrap_or_default()
    );
    let their_schema = theirs["content"]["application/json"]["schema"].clone();
    let our_schema = ours["content"]["application/json"]["schema"].clone();
    theirs["description"] = json!(description);
    let schema = if their_schema.is_null() {
        our_schema
    } else {
        json!({"anyOf": [their_schema, our_schema]})
    };
    theirs["content"]["application/json"]["schema"] = schema;
}

/// The gateway's own answer with `status` for these reasons.
fn gateway_response(status: u16, reasons: &[Reason]) -> Value {
    let codes: Vec<&str> = reasons.iter().map(|r| r.code()).collect();
    let example: Value =
        serde_json::from_slice(&reasons[0].body()).expect("a reason's body is JSON");
    let mut headers = json!({
        "x-gateway-error": {"$ref": "#/components/headers/x-gateway-error"},
    });
    match status {
        401 => {
            headers["WWW-Authenticate"] = json!({"$ref": "#/components/headers/WWW-Authenticate"});
        }
        429 => {
            headers["Retry-After"] = json!({"$ref": "#/components/headers/Retry-After"});
        }
        _ => {}
    }
    json!({
        "description": format!("From the gateway: {}.", codes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")),
        "headers": headers,
        "content": {"application/json": {
            // The services answer the same statuses with reasons of their own.
            "schema": {"$ref": "#/components/schemas/RpcError"},
            "example": example,
        }},
    })
}

/// A path parameter of ours, by its name.
pub fn path_parameter(name: &str) -> Value {
    if name == "version" {
        return json!({"$ref": "#/components/parameters/version"});
    }
    let schema = match name {
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "id" => json!({"type": "integer", "format": "int64", "minimum": 1}),
        "subject" => json!({"type": "string", "enum": ["application", "api_credential", "user"]}),
        _ => json!({"type": "string", "minLength": 1}),
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

/// The served versions, as the default settings name them, and the majors that stand for
/// their newest.
fn versions() -> Vec<String> {
    let served = gateway::settings::Settings::default().versions;
    let mut all: Vec<String> = served
        .iter()
        .filter_map(|v| v.split('.').next().map(str::to_owned))
        .collect();
    all.sort();
    all.dedup();
    all.extend(served);
    all
}

/// The components the gateway's part needs: security schemes, headers, the version
/// parameter and the JSON-RPC error shape.
pub fn components() -> Map<String, Value> {
    let versions = versions();
    let policies: Vec<String> = RouteClass::ALL
        .iter()
        .map(|c| {
            let p = c.default_policy();
            format!("`{}` {} per {} s", c.as_str(), p.limit, p.window.as_secs())
        })
        .collect();
    let mut components = Map::new();
    components.insert("securitySchemes".into(), json!({
        "application_token": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "An application token (`POST /applications`): never expires, revoked by its operator or by security staff. Accepted on the operator API only.",
        },
        "access_token": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "An access token from an API key: `POST /{version}/auth/access_token` (5 minutes) or `POST /api/v1/auth/token/` (1 hour). Accepted on the operator API only.",
        },
        "agent_access_token": {
            "type": "apiKey", "in": "header", "name": "access-token",
            "description": "The agent header triple (`POST /api/v1/auth/sign_in`), sent with `client` and `uid`; 24 hours.",
        },
        "agent_client": {"type": "apiKey", "in": "header", "name": "client", "description": "The device the triple was issued to."},
        "agent_uid": {"type": "apiKey", "in": "header", "name": "uid", "description": "The signed-in agent's login."},
        "session_id": {
            "type": "apiKey", "in": "cookie", "name": "sessid",
            "description": "The browser session, set on any answer to a request that could use one; `__Host-sessid` when the gateway's public address is not loopback.",
        },
        "session_auth": {
            "type": "apiKey", "in": "cookie", "name": "sessauth",
            "description": "Set by `POST /profile/signin`, bound to `sessid`; 12 hours. `__Host-sessauth` when the public address is not loopback.",
        },
        "csrf_token": {
            "type": "apiKey", "in": "header", "name": "x-csrf-token",
            "description": "The `csrf_token` returned by `POST /profile/signin`, required with the session on unsafe methods.",
        },
    }));
    components.insert("parameters".into(), json!({
        "version": {
            "name": "version", "in": "path", "required": true,
            "description": "The API version: a served one, or a major standing for its newest. Any other well-formed version is a 422 `unsupported_api_version`. An optional `X-API-Version` request header must agree.",
            "schema": {"type": "string", "enum": versions},
        },
    }));
    components.insert("headers".into(), json!({
        "x-request-id": {"description": "The client's request id if it sent one, else generated; passed to the services and logged at every hop.", "schema": {"type": "string"}},
        "x-gateway-error": {"description": "The reason code of an answer the gateway made itself.", "schema": {"type": "string"}},
        "X-API-Version": {"description": "The served version that answered.", "schema": {"type": "string"}},
        "RateLimit-Limit": {"description": format!("Requests allowed in the window of the route's class. Defaults: {}.", policies.join(", ")), "schema": {"type": "integer"}},
        "RateLimit-Remaining": {"description": "Requests left in the window.", "schema": {"type": "integer"}},
        "RateLimit-Reset": {"description": "Seconds until the window resets.", "schema": {"type": "integer"}},
        "RateLimit-Policy": {"description": "The policy, as `<limit>;w=<window seconds>`.", "schema": {"type": "string"}},
        "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
        "WWW-Authenticate": {"description": "`Bearer`, with the error.", "schema": {"type": "string"}},
    }));
    let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
    components.insert("schemas".into(), json!({
        "RpcError": {
            "description": "The JSON-RPC error shape of every refusal. `error.data` is a reason code (the gateway's, or the service's), or for a 400 the list of violations as `\"<json path>: <message>\"`.",
            "type": "object",
            "required": ["id", "jsonrpc", "error"],
            "properties": {
                "id": {"type": "integer"},
                "jsonrpc": {"const": "2.0"},
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "integer", "description": "-32501 unauthorized, -32503 forbidden, -32504 not found, -32602 invalid params, -32422 unprocessable, -32029 too many requests, -32603 internal."},
                        "message": {"type": "string"},
                        "data": {
                            "anyOf": [
                                {"type": "string", "description": format!("A reason code; the gateway's are {}.", codes.join(", "))},
                                {"type": "array", "items": {"type": "string"}},
                                {"type": "object"},
                            ],
                        },
                    },
                },
            },
        },
    }));
    components
}

/// The routes the gateway answers itself.
pub fn own_routes() -> Vec<(&'static str, Value)> {
    let limits = json!({
        "413": gateway_response(413, &[Reason::PayloadTooLarge]),
        "431": gateway_response(431, &[Reason::HeadersTooLarge]),
        "503": gateway_response(503, &[Reason::TooManyConnections]),
    });
    let with = |extra: Value| {
        let mut responses = limits.clone();
        for (k, v) in extra.as_object().into_iter().flatten() {
            responses[k] = v.clone();
        }
        responses
    };
    let id = json!({"x-request-id": {"$ref": "#/components/headers/x-request-id"}});
    vec![
        (
            "/health",
            json!({"get": {
                "operationId": "gateway:health",
                "tags": ["Gateway"],
                "summary": "Whether this gateway can serve",
                "description": "`ok`; `degraded` when it serves from its last blacklist copy or a per-replica share of the rate limits (Redis unreachable); 503 `unavailable` before it has loaded the blacklist.",
                "security": [],
                "responses": with(json!({
                    "200": {"description": "Serving.", "headers": id, "content": {"application/json": {"schema": {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ok", "degraded"]}}}}}},
                    "503": {"description": "Not serving yet, or past its connection cap (`too_many_connections`, JSON-RPC shape).", "headers": id, "content": {"application/json": {"schema": {"anyOf": [
                        {"type": "object", "required": ["status"], "properties": {"status": {"const": "unavailable"}}},
                        {"$ref": "#/components/schemas/RpcError"},
                    ]}}}},
                })),
            }}),
        ),
        (
            "/openapi.json",
            json!({"get": {
                "operationId": "gateway:openapi_json",
                "tags": ["Gateway"],
                "summary": "This document, as JSON",
                "security": [],
                "responses": with(json!({"200": {"description": "The OpenAPI 3.1 document.", "headers": id, "content": {"application/json": {"schema": {"type": "object"}}}}})),
            }}),
        ),
        (
            "/openapi.yaml",
            json!({"get": {
                "operationId": "gateway:openapi_yaml",
                "tags": ["Gateway"],
                "summary": "This document, as YAML",
                "security": [],
                "responses": with(json!({"200": {"description": "The OpenAPI 3.1 document.", "headers": id, "content": {"application/yaml": {"schema": {"type": "object"}}}}})),
            }}),
        ),
    ]
}
