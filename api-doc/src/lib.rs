//! The OpenAPI 3.1 description of every public route (CONTRACT §11), built from the code:
//!
//! - the routes, their credentials and permissions: the gateway's route table
//!   ([`gateway::routes::TABLE`]), which a test holds to the router itself;
//! - every status the gateway answers itself, with its reason codes ([`gateway::reason::Reason`]),
//!   the rate-limit classes and their default policies ([`gateway::ratelimit::RouteClass`]) and
//!   the served versions (the gateway's default settings);
//! - for the operations the reference publishes, the reference's own operation and schemas
//!   (`reference/api-v3.3.yaml`, converted to OpenAPI 3.1), with what CONTRACT.md decides
//!   otherwise said in each description ([`reference`]);
//! - for our own operations, their bodies from the Rust types that carry them (utoipa's
//!   `ToSchema`), or, where a handler builds its answer field by field, the shape written
//!   beside the others in [`operations`].
//!
//! The document is committed (`docs/openapi.json`, `docs/openapi.yaml`) and served by the
//! gateway; `cargo run -p api-doc` rewrites the copies and a test fails when they differ
//! from what the code generates.

pub mod edge;
pub mod operations;
pub mod reference;

use auth_token::Role;
use gateway::routes::{Entry, TABLE};
use serde_json::{Map, Value, json};

/// The routes the gateway answers itself, outside the route table.
pub const GATEWAY_ROUTES: [&str; 3] = ["/health", "/openapi.json", "/openapi.yaml"];

/// The whole document.
pub fn document() -> Value {
    let reference = reference::Reference::load();
    let mut paths = Map::new();
    let mut shared = Map::new();
    for entry in TABLE {
        let path = doc_path(entry.template);
        let operation = operation(entry, &reference, &mut shared);
        let item = paths
            .entry(path.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item is an object");
        item.insert(entry.method.to_ascii_lowercase(), operation);
    }
    for (path, item) in edge::own_routes() {
        paths.insert(path.to_owned(), item);
    }
    let mut components = edge::components();
    components.insert("responses".into(), Value::Object(shared));
    reference.merge_components(&mut components);
    operations::add_components(&mut components);
    add_links(&mut paths, &components);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Carpool proof registry: public API",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Operators push carpool journeys and CEE applications; their admins manage tokens and keys; security staff watch and blacklist credentials.",
            "description": INFO_DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "This gateway (its one public port)"}],
        "tags": operations::tags(),
        "paths": paths,
        "components": components,
    })
}

const INFO_DESCRIPTION: &str = "Every public route of the gateway, generated from its route table and the services' types \
(docs/api.md says how to read it). The operations the reference registry publishes \
(`api-v3.3.yaml`) keep its paths, schemas and examples, under `/{version}`; where this \
implementation decides otherwise, the operation's description says so. Every error the \
gateway makes itself has the JSON-RPC shape `{\"id\":1,\"jsonrpc\":\"2.0\",\"error\":{\"code\",\"message\",\"data\"}}` \
with the reason code in `error.data` and in the `x-gateway-error` header; every response \
carries `x-request-id`. No string, in a body or a query, may hold the character U+0000: \
such a request is a 400 naming the field.";

/// The document's path for a route template: the reference's parameter names where it has
/// the route (the template stays the gateway's, used in metrics and logs).
pub fn doc_path(template: &str) -> String {
    template.replace(
        "/{version}/journeys/{id}",
        "/{version}/journeys/{operator_journey_id}",
    )
}

/// One operation: the reference's or ours, with the gateway's credentials, statuses and
/// headers added.
fn operation(
    entry: &Entry,
    reference: &reference::Reference,
    shared: &mut Map<String, Value>,
) -> Value {
    let mut op = match reference.operation(entry) {
        Some(op) => operations::service_answers(entry, op),
        None => operations::operation(entry).unwrap_or_else(|| {
            panic!(
                "{} {} has no description: add it to api-doc/src/operations.rs",
                entry.method, entry.template
            )
        }),
    };
    let object = op.as_object_mut().expect("an operation is an object");
    let mut parameters: Vec<Value> = object
        .remove("parameters")
        .and_then(|p| p.as_array().cloned())
        .unwrap_or_default();
    for name in path_parameters(&doc_path(entry.template)) {
        let present = parameters
            .iter()
            .any(|p| p["name"] == name.as_str() && p["in"] == "path");
        if !present {
            parameters.insert(0, edge::path_parameter(&name));
        }
    }
    if !parameters.is_empty() {
        object.insert("parameters".into(), Value::Array(parameters));
    }
    object.insert("security".into(), edge::security(entry));
    if let Some(permission) = entry.permission {
        let roles: Vec<&str> = Role::ALL
            .iter()
            .filter(|r| r.grants(permission))
            .map(|r| r.as_str())
            .collect();
        let needs = format!(
            "\n\nNeeds the permission `{}` (roles {}).",
            permission.as_str(),
            roles.join(", ")
        );
        let description = object
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim_end()
            .to_owned();
        object.insert(
            "description".into(),
            json!(format!("{description}{needs}").trim_start()),
        );
        object.insert(
            "x-permission".into(),
            json!({"name": permission.as_str(), "roles": roles}),
        );
    }
    let responses = object
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses are an object");
    edge::add_responses(entry, responses, shared);
    op
}

/// How one answer leads to the next operation (OpenAPI links): what a client does with what
/// it created, and what schemathesis's stateful phase follows.
/// From operation, its status, the link's name, to operation, and the parameters it fills.
type Link = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const LINKS: &[Link] = &[
    (
        "acquisition:create",
        "201",
        "status",
        "acquisition:status",
        &[("operator_journey_id", "$request.body#/operator_journey_id")],
    ),
    (
        "acquisition:create",
        "201",
        "update",
        "acquisition:update",
        &[("operator_journey_id", "$request.body#/operator_journey_id")],
    ),
    (
        "acquisition:create",
        "201",
        "cancel",
        "acquisition:cancel",
        &[("operator_journey_id", "$request.body#/operator_journey_id")],
    ),
    (
        "acquisition:update",
        "200",
        "status",
        "acquisition:status",
        &[("operator_journey_id", "$request.path.operator_journey_id")],
    ),
    (
        "acquisition:update",
        "200",
        "cancel",
        "acquisition:cancel",
        &[("operator_journey_id", "$request.path.operator_journey_id")],
    ),
    (
        "acquisition:cancel",
        "200",
        "status",
        "acquisition:status",
        &[("operator_journey_id", "$request.path.operator_journey_id")],
    ),
    (
        "policy:cee:register",
        "201",
        "find",
        "policy:cee:find",
        &[("uuid", "$response.body#/uuid")],
    ),
    (
        "policy:cee:register",
        "201",
        "delete",
        "policy:cee:delete",
        &[("uuid", "$response.body#/uuid")],
    ),
    (
        "policy:cee:delete",
        "204",
        "find",
        "policy:cee:find",
        &[("uuid", "$request.path.uuid")],
    ),
    (
        "export:createVersionThree",
        "201",
        "status",
        "export:status",
        &[("uuid", "$response.body#/uuid")],
    ),
    (
        "export:createVersionThree",
        "201",
        "download",
        "export:download",
        &[("uuid", "$response.body#/uuid")],
    ),
    (
        "applications:create",
        "201",
        "revoke",
        "applications:revoke",
        &[("uuid", "$response.body#/application/uuid")],
    ),
    (
        "operators:create",
        "201",
        "update",
        "operators:update",
        &[("id", "$response.body#/id")],
    ),
    (
        "operators:create",
        "201",
        "users",
        "users:listOfOperator",
        &[("id", "$response.body#/id")],
    ),
    (
        "operators:create",
        "201",
        "createUser",
        "users:createOfOperator",
        &[("id", "$response.body#/id")],
    ),
    (
        "users:createOfOperator",
        "201",
        "deactivate",
        "users:deactivateOfOperator",
        &[("id", "$request.path.id"), ("uuid", "$response.body#/id")],
    ),
    (
        "users:createStaff",
        "201",
        "deactivate",
        "users:deactivate",
        &[("uuid", "$response.body#/id")],
    ),
    (
        "blacklist:add",
        "201",
        "lift",
        "blacklist:lift",
        &[("id", "$response.body#/id")],
    ),
    (
        "auth:createCredentials",
        "201",
        "delete",
        "auth:deleteCredentials",
        &[("token_id", "$response.body#/access_key")],
    ),
];

fn add_links(paths: &mut Map<String, Value>, components: &Map<String, Value>) {
    let find = |paths: &Map<String, Value>, id: &str| -> Option<(String, String)> {
        paths.iter().find_map(|(path, item)| {
            item.as_object()?
                .iter()
                .find(|(_, op)| op["operationId"] == id)
                .map(|(method, _)| (path.clone(), method.clone()))
        })
    };
    for (from, status, name, to, parameters) in LINKS {
        let (path, method) =
            find(paths, from).unwrap_or_else(|| panic!("link from unknown operation {from}"));
        assert!(find(paths, to).is_some(), "link to unknown operation {to}");
        let response = &mut paths[&path][&method]["responses"][*status];
        assert!(response.is_object(), "{from} has no {status} to link from");
        // A shared response takes no links: this operation gets its own copy.
        if let Some(shared) = response["$ref"].as_str() {
            let name = shared.rsplit('/').next().unwrap_or_default();
            *response = components["responses"][name].clone();
        }
        let parameters: Map<String, Value> = parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        response["links"][*name] = json!({"operationId": to, "parameters": parameters});
    }
}

/// The `{name}` segments of a path, in order.
pub fn path_parameters(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

/// The document as the gateway serves it at `/openapi.json`.
pub fn to_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    text.push('\n');
    text
}

/// The same document as YAML, for `/openapi.yaml`.
pub fn to_yaml() -> String {
    serde_yaml::to_string(&document()).expect("the document serialises")
}
