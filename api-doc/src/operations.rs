//! Our own operations, the ones the reference does not publish. Each says its parameters,
//! body and every answer its service gives; the gateway's answers are added by
//! [`crate::edge`]. Bodies the services build field by field are written here, beside the
//! operation, in JSON Schema; the running services are checked against them by schemathesis.

use gateway::routes::{Entry, Upstream};
use serde_json::{Map, Value, json};

mod auth;
mod registry;

/// An operation being described.
pub(crate) struct Op {
    value: Value,
}

impl Op {
    pub(crate) fn new(id: &str, tag: &str, summary: &str, description: &str) -> Self {
        Self {
            value: json!({
                "operationId": id,
                "tags": [tag],
                "summary": summary,
                "description": description,
                "responses": {},
            }),
        }
    }

    /// A query parameter.
    pub(crate) fn query(mut self, name: &str, required: bool, schema: Value, text: &str) -> Self {
        let parameters = self.value["parameters"].as_array().cloned();
        let mut parameters = parameters.unwrap_or_default();
        parameters.push(json!({
            "name": name, "in": "query", "required": required,
            "description": text, "schema": schema,
        }));
        self.value["parameters"] = Value::Array(parameters);
        self
    }

    /// A path parameter with its own schema (else [`crate::edge::path_parameter`]'s).
    pub(crate) fn path(mut self, name: &str, schema: Value, text: &str) -> Self {
        let mut parameters = self.value["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        parameters.push(json!({
            "name": name, "in": "path", "required": true,
            "description": text, "schema": schema,
        }));
        self.value["parameters"] = Value::Array(parameters);
        self
    }

    /// A JSON request body.
    pub(crate) fn body(mut self, schema: Value) -> Self {
        self.value["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema}},
        });
        self
    }

    /// A JSON request body that may be left out (an empty body is an empty object).
    pub(crate) fn optional_body(mut self, schema: Value) -> Self {
        self.value["requestBody"] = json!({
            "required": false,
            "content": {"application/json": {"schema": schema}},
        });
        self
    }

    /// An answer with a JSON body.
    pub(crate) fn json(mut self, status: u16, text: &str, schema: Value) -> Self {
        self.value["responses"][status.to_string()] = json!({
            "description": text,
            "content": {"application/json": {"schema": schema}},
        });
        self
    }

    /// An answer with a body of another type.
    pub(crate) fn content(mut self, status: u16, text: &str, media: &str, schema: Value) -> Self {
        self.value["responses"][status.to_string()] = json!({
            "description": text,
            "content": {media: {"schema": schema}},
        });
        self
    }

    /// An answer without a body.
    pub(crate) fn empty(mut self, status: u16, text: &str) -> Self {
        self.value["responses"][status.to_string()] = json!({"description": text});
        self
    }

    /// A JSON-RPC error answer, with the reason codes it may carry.
    pub(crate) fn error(self, status: u16, text: &str) -> Self {
        self.json(
            status,
            text,
            json!({"$ref": "#/components/schemas/RpcError"}),
        )
    }

    pub(crate) fn header(mut self, status: u16, name: &str, text: &str) -> Self {
        self.value["responses"][status.to_string()]["headers"][name] =
            json!({"description": text, "schema": {"type": "string"}});
        self
    }

    pub(crate) fn done(self) -> Value {
        self.value
    }
}

/// Our description of `entry`, when it is one of ours, with the answers every operation
/// of its service may give.
pub fn operation(entry: &Entry) -> Option<Value> {
    let op = match entry.upstream {
        Upstream::AuthService => auth::operation(entry.method, entry.template)?,
        Upstream::Registry => registry::operation(entry.method, entry.template)?,
    };
    Some(service_answers(entry, op))
}

/// What every operation of a service may answer besides its own: a body it cannot read,
/// and the service's own unavailability.
pub fn service_answers(entry: &Entry, mut op: Value) -> Value {
    let responses = op["responses"]
        .as_object_mut()
        .expect("responses are an object");
    let path_ids = entry
        .template
        .split('/')
        .any(|s| s.starts_with('{') && s != "{version}");
    if path_ids {
        responses.entry("404").or_insert_with(|| {
            json!({"description": "No such resource visible to the caller (another operator's is a 404 too).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcError"}}}})
        });
    }
    let has_query = op["parameters"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
    if has_query && !op_has_body(entry) {
        let responses = op["responses"].as_object_mut().expect("responses");
        responses.entry("400").or_insert_with(|| {
            json!({"description": "A missing, repeated, unknown or malformed parameter: `error.data` lists every violation as `\"<json path>: <message>\"`.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcError"}}}})
        });
    }
    let responses = op["responses"]
        .as_object_mut()
        .expect("responses are an object");
    if op_has_body(entry) {
        responses.entry("400").or_insert_with(|| {
            json!({"description": "The body is not JSON, or not what the operation takes: `error.data` lists every violation as `\"<json path>: <message>\"`.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcError"}}}})
        });
        // The token routes answer a wrong content type with their own 400.
        let token_route = entry.template.starts_with("/api/v1/auth/token");
        responses.entry("415").or_insert_with(|| {
            json!({"description": "A `Content-Type` other than `application/json`.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcError"}}}})
        });
        if token_route {
            responses.remove("415");
        }
    }
    responses.entry("503").or_insert_with(|| {
        json!({"description": "The service's database is unreachable (`database_unavailable`, with `Retry-After`).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcError"}}}})
    });
    op
}

fn op_has_body(entry: &Entry) -> bool {
    matches!(entry.method, "POST" | "PATCH" | "PUT")
}

/// The tags, in the order a reader meets them.
pub fn tags() -> Value {
    json!([
        {"name": "Trajets courte distance", "description": "The reference's journeys (operator API)."},
        {"name": "Demandes CEE", "description": "The reference's energy-certificate applications (operator API)."},
        {"name": "Exports", "description": "Journey exports and funding calls."},
        {"name": "Authentification", "description": "The reference's API keys and access tokens."},
        {"name": "Tokens", "description": "Application tokens and the token-pair flow."},
        {"name": "Sign-in", "description": "Agents (header triple) and browser sessions."},
        {"name": "Administration", "description": "Operators, users, campaigns and signing keys (registry staff)."},
        {"name": "Security", "description": "Blacklist, audit, usage and signals (security staff)."},
        {"name": "Console", "description": "The console's pages."},
        {"name": "Gateway", "description": "Routes the gateway answers itself."},
    ])
}

/// Schemas shared by several of our operations.
pub fn add_components(components: &mut Map<String, Value>) {
    let schemas = components
        .entry("schemas")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("schemas are an object");
    for (name, schema) in auth::schemas().into_iter().chain(registry::schemas()) {
        assert!(
            schemas.insert(name.to_owned(), schema).is_none(),
            "schema {name} is defined twice"
        );
    }
}

/// A timestamp as the services write it: RFC 3339 in UTC with milliseconds.
pub(crate) fn timestamp() -> Value {
    json!({"type": "string", "format": "date-time", "example": "2026-01-06T08:30:00.000Z"})
}

/// An integer the services read as a 64-bit one (a larger one is refused), with `more`.
pub(crate) fn int64(more: Value) -> Value {
    let mut schema =
        json!({"type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX});
    for (k, v) in more.as_object().into_iter().flatten() {
        schema[k] = v.clone();
    }
    schema
}

pub(crate) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}
