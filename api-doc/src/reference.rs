//! The reference registry's published description (`reference/api-v3.3.yaml`, Apache-2.0,
//! betagouv/preuve-covoiturage): its operations are ours under `/{version}`, with its
//! schemas and examples, converted from OpenAPI 3.0 to 3.1.

use gateway::routes::Entry;
use serde_json::{Map, Value, json};

const SOURCE: &str = include_str!("../reference/api-v3.3.yaml");

/// Where this implementation decides otherwise than the reference's description (CONTRACT.md),
/// per operation: appended to its description.
const DECISIONS: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/{version}/journeys",
        "`operator_journey_id` is any string of 1 to 256 characters; `identity_key` is 64 lowercase hexadecimal characters; each identity needs `phone` or `phone_trunc`, and phones are validated and stored in E.164 (French numbering by default). Every schema violation is listed in `error.data` as `\"<json path>: <message>\"`. A start after the end, or an end more than 5 minutes in the future, is a 400. A second journey with the same `operator_journey_id` for the operator is a 409, also when the first was refused for its terms (CONTRACT §7).",
    ),
    (
        "POST",
        "/journeys/push",
        "The legacy alias of `POST /{version}/journeys`: same body, same answers.",
    ),
    (
        "PATCH",
        "/{version}/journeys/{id}",
        "Allowed within 24 h of the journey's start; validation and the terms checks run again and processing restarts (CONTRACT §7).",
    ),
    (
        "POST",
        "/{version}/journeys/{id}",
        "`POST` is accepted as an alias of `PATCH` for clients that cannot send `PATCH`.",
    ),
    (
        "GET",
        "/{version}/journeys",
        "Newest first, today included; `limit` is at most 1000 (CONTRACT §7).",
    ),
    (
        "DELETE",
        "/{version}/auth/credentials",
        "As the reference's code: `operator_id` is required too, and a missing, mistyped or other operator's `operator_id` is a 403 (CONTRACT §4).",
    ),
    (
        "POST",
        "/{version}/auth/credentials",
        "The answer also carries `api_key`, the single-string form of the same credential, for `POST /api/v1/auth/token/` (CONTRACT §3.2).",
    ),
];

/// Where the reference's published schemas say other than what its code enforces, and this
/// registry follows the code (CONTRACT §7; `reference/rpc-behaviour.md` §6): each a JSON
/// pointer into the reference, what is merged there (`null` removes a key) and why, which
/// joins the schema's description.
fn corrections() -> Vec<(&'static str, Value, &'static str)> {
    let varchar = json!({"type": "string", "minLength": 1, "maxLength": 256});
    vec![
        (
            "/components/schemas/operator_journey_id",
            json!({"pattern": null}),
            "any string of 1 to 256 characters: the reference's code does not enforce the pattern, and operators send UUIDs (CONTRACT §7)",
        ),
        (
            "/components/schemas/operator_trip_id",
            varchar.clone(),
            "1 to 256 characters, as the reference's code requires",
        ),
        (
            "/components/schemas/licence_plate",
            varchar.clone(),
            "1 to 256 characters, as the reference's code requires",
        ),
        (
            "/components/schemas/operator_user_id",
            varchar.clone(),
            "1 to 256 characters, as the reference's code requires",
        ),
        (
            "/components/schemas/distance",
            json!({"type": "integer", "minimum": 1, "multipleOf": null}),
            "an integer above 0, as the reference's code requires",
        ),
        (
            "/components/schemas/lat",
            json!({"minimum": -90, "maximum": 90}),
            "within -90..90",
        ),
        (
            "/components/schemas/lon",
            json!({"minimum": -180, "maximum": 180}),
            "within -180..180",
        ),
        (
            "/components/schemas/datetime",
            json!({"maxLength": 64}),
            "RFC 3339 with its offset (`Z` or `+01:00`), at most 64 characters",
        ),
        (
            "/components/schemas/application_timestamp",
            json!({"format": "date-time", "maxLength": 64}),
            "an RFC 3339 date-time (the published `datetime` format is not one), at most 64 characters",
        ),
        (
            "/components/schemas/identity_key",
            json!({"pattern": "^[a-f0-9]{64}$"}),
            "64 lowercase hexadecimal characters (CONTRACT §7)",
        ),
        (
            "/components/schemas/phone",
            json!({"format": "phone", "minLength": 10, "maxLength": 20}),
            "a valid phone number, French numbering by default, stored in E.164 (CONTRACT §7)",
        ),
        (
            "/components/schemas/phone_trunc",
            json!({"format": "phonetrunc", "minLength": 8, "maxLength": 20, "pattern": null}),
            "a phone number without its last 2 digits (valid once `00` is added), stored in E.164",
        ),
        (
            "/components/schemas/identity",
            json!({
                "required": ["operator_user_id", "identity_key"],
                "anyOf": [{"required": ["phone"]}, {"required": ["phone_trunc"]}],
                "properties": {
                    "application_timestamp": null,
                    "driving_license": null,
                    "firstname": varchar.clone(),
                    "lastname": varchar.clone(),
                    "company": varchar.clone(),
                    "email": {"type": "string", "format": "email", "minLength": 5, "maxLength": 256},
                },
            }),
            "`phone` or `phone_trunc` is required (CONTRACT §7); `driving_license` and `application_timestamp` are refused and `firstname`, `lastname`, `company`, `email` accepted, as by the reference's code",
        ),
        (
            "/components/schemas/incentives",
            json!({"maxItems": 20, "items": {"properties": {
                "index": {"type": "integer", "maximum": 19, "multipleOf": null},
                "amount": {"type": "integer", "maximum": 100000, "multipleOf": null},
                "siret": {"pattern": "^[0-9]{14}$"},
            }}}),
            "at most 20, `index` 0..19, `amount` 0..100 000 cents, `siret` 14 digits, as the reference's code requires",
        ),
        (
            "/components/schemas/payments",
            json!({"maxItems": 20, "items": {"properties": {
                "index": {"type": "integer", "maximum": 19, "multipleOf": null},
                "amount": {"type": "integer", "maximum": 100000, "multipleOf": null},
                "siret": {"pattern": "^[0-9]{14}$"},
                "type": varchar.clone(),
            }}}),
            "at most 20, `index` 0..19, `amount` 0..100 000 cents, `siret` 14 digits, as the reference's code requires",
        ),
        (
            "/paths/~1journeys/post/responses/422/content/application~1json/schema/properties/error/properties/data/properties/terms_violation_labels",
            json!({"$ref": null, "type": "array", "items": {"$ref": "#/components/schemas/terms_violation_label"}}),
            "the labels are a list (the published schema gives one label)",
        ),
        (
            "/components/schemas/driving_license",
            json!({"oneOf": null, "anyOf": [
                {"type": "string", "pattern": "^[0-9]{12}$", "description": "12 digits (after 1975)."},
                {"type": "string", "pattern": "^[A-Z0-9]{1,15}[0-9]{4}$", "minLength": 5, "maxLength": 19, "description": "1 to 15 characters then 4 digits (before 1975)."},
                {"type": "string", "pattern": "^[A-Z0-9]{1,15}$"},
                {"type": "string", "pattern": "^99-[^\\r\\n\\u2028\\u2029]+$", "minLength": 4, "maxLength": 64, "description": "A foreign licence."},
            ]}),
            "any of these forms, as the reference's code accepts them (the published `oneOf` refuses 12 digits, which match two forms)",
        ),
        (
            "/paths/~1auth~1access_token/post/requestBody/content/application~1json/schema",
            json!({"additionalProperties": false}),
            "no other field, as the reference's code",
        ),
        (
            "/components/schemas/driver",
            json!({"properties": {"revenue": {"type": "integer", "maximum": 1000000, "multipleOf": null}}}),
            "`revenue` an integer of at most 1 000 000 cents, as the reference's code requires",
        ),
        (
            "/components/schemas/passenger",
            json!({"properties": {
                "contribution": {"type": "integer", "maximum": 1000000, "multipleOf": null},
                "seats": {"type": "integer", "multipleOf": null},
            }}),
            "`contribution` an integer of at most 1 000 000 cents, `seats` an integer, as the reference's code requires",
        ),
    ]
}

/// Answers the reference does not publish for its operations and this registry gives,
/// with the rule behind each (CONTRACT §7).
const MORE_ANSWERS: &[(&str, &str, u16, &str)] = &[
    (
        "PATCH",
        "/{version}/journeys/{id}",
        422,
        "The journey as changed breaks the terms: stored with status `terms_violation_error`; `error.data` is `{\"terms_violation_labels\": [...]}`.",
    ),
    (
        "POST",
        "/{version}/journeys/{id}",
        422,
        "The journey as changed breaks the terms: stored with status `terms_violation_error`; `error.data` is `{\"terms_violation_labels\": [...]}`.",
    ),
    (
        "PATCH",
        "/{version}/journeys/{id}",
        409,
        "`A canceled journey cannot be updated`, or `A journey can only be updated within 24 hours of its start`.",
    ),
    (
        "POST",
        "/{version}/journeys/{id}",
        409,
        "`A canceled journey cannot be updated`, or `A journey can only be updated within 24 hours of its start`.",
    ),
];

/// Merges `patch` into `target`: objects key by key, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// The reference, parsed and converted to OpenAPI 3.1.
pub struct Reference {
    doc: Value,
}

impl Reference {
    pub fn load() -> Self {
        let mut doc: Value = serde_yaml::from_str(SOURCE).expect("the reference is YAML");
        to_3_1(&mut doc);
        inline_extended_references(&mut doc);
        for (pointer, patch, why) in corrections() {
            let target = doc
                .pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{pointer} is not in the reference"));
            merge(target, &patch);
            let before = target["description"]
                .as_str()
                .unwrap_or_default()
                .trim_end();
            let description = format!("{before}\n\nThis registry: {why}.");
            target["description"] = json!(description.trim_start());
        }
        Self { doc }
    }

    /// The reference's path and method for a route of ours, when it publishes one.
    pub fn locate(entry: &Entry) -> Option<(String, &'static str)> {
        let method = entry.method;
        let (path, method) = match (method, entry.template) {
            ("POST", "/journeys/push") => ("/journeys".to_owned(), "post"),
            ("POST", "/{version}/journeys/{id}") => {
                ("/journeys/{operator_journey_id}".to_owned(), "patch")
            }
            (_, template) => {
                let path = template.strip_prefix("/{version}")?;
                let path = path.replace("/journeys/{id}", "/journeys/{operator_journey_id}");
                (path, lower(method))
            }
        };
        Some((path, method))
    }

    /// The reference's operation for `entry`, its path-level parameters included, with
    /// CONTRACT.md's decisions in its description; `None` for routes it does not publish.
    pub fn operation(&self, entry: &Entry) -> Option<Value> {
        let (path, method) = Self::locate(entry)?;
        let item = self.doc["paths"].get(&path)?;
        let mut op = item.get(method)?.clone();
        let object = op.as_object_mut()?;
        if let Some(shared) = item.get("parameters").and_then(Value::as_array) {
            let mut parameters = shared.clone();
            if let Some(own) = object.get("parameters").and_then(Value::as_array) {
                parameters.extend(own.iter().cloned());
            }
            object.insert("parameters".into(), Value::Array(parameters));
        }
        // The reference names every operation but its journey list.
        if !object.contains_key("operationId") {
            let id = match (method, path.as_str()) {
                ("get", "/journeys") => "acquisition:list".to_owned(),
                _ => format!("{method}:{path}"),
            };
            object.insert("operationId".into(), json!(id));
        }
        if let Some(id) = object.get("operationId").and_then(Value::as_str) {
            // The aliases keep the reference's operation under another id.
            let id = match (entry.method, entry.template) {
                ("POST", "/journeys/push") => format!("{id}:push"),
                ("POST", "/{version}/journeys/{id}") => format!("{id}:post"),
                _ => id.to_owned(),
            };
            object.insert("operationId".into(), json!(id));
        }
        for (m, t, status, text) in MORE_ANSWERS {
            if *m == entry.method && *t == entry.template {
                object["responses"][status.to_string()] = json!({
                    "description": text,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcError"}}},
                });
            }
        }
        let decision = DECISIONS
            .iter()
            .find(|(m, t, _)| *m == entry.method && *t == entry.template)
            .map(|(_, _, text)| *text);
        let mut description = object
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim_end()
            .to_owned();
        description.push_str("\n\n**Reference operation** (`api-v3.3.yaml`).");
        if let Some(decision) = decision {
            description.push_str(" Where this implementation decides otherwise: ");
            description.push_str(decision);
        }
        object.insert("description".into(), json!(description.trim_start()));
        Some(op)
    }

    /// Adds the reference's schemas and responses to `components` (ours use other names).
    pub fn merge_components(&self, components: &mut Map<String, Value>) {
        for section in ["schemas", "responses", "parameters"] {
            let Some(theirs) = self.doc["components"][section].as_object() else {
                continue;
            };
            let ours = components
                .entry(section)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("a components section is an object");
            for (name, value) in theirs {
                assert!(
                    !ours.contains_key(name),
                    "components/{section}/{name} is both the reference's and ours"
                );
                ours.insert(name.clone(), value.clone());
            }
        }
    }

    /// The reference's operations, as (path, method).
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for (path, item) in self.doc["paths"].as_object().into_iter().flatten() {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    all.push((path.clone(), method.to_owned()));
                }
            }
        }
        all
    }

    pub fn doc(&self) -> &Value {
        &self.doc
    }
}

fn lower(method: &str) -> &'static str {
    match method {
        "GET" => "get",
        "POST" => "post",
        "PUT" => "put",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "options",
    }
}

/// A response given as a `$ref` with more beside it (which 3.0 ignores and 3.1 refuses)
/// becomes the referenced response with those additions, as the reference meant.
fn inline_extended_references(doc: &mut Value) {
    let components = doc["components"]["responses"].clone();
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|i| i.values_mut())
        {
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for response in responses.values_mut() {
                let Some(map) = response.as_object_mut() else {
                    continue;
                };
                if map.len() < 2 {
                    continue;
                }
                let Some(Value::String(target)) = map.remove("$ref") else {
                    continue;
                };
                let name = target.rsplit('/').next().unwrap_or_default();
                let mut inlined = components[name].clone();
                for (k, v) in std::mem::take(map) {
                    inlined[k] = v;
                }
                *response = inlined;
            }
        }
    }
}

/// OpenAPI 3.0 → 3.1 for what the reference uses: `nullable` becomes a `null` type. And
/// one mistake mended: a bound written as text (`minimum: now-90d` on a date) is not a
/// JSON Schema bound, so it moves into the description.
fn to_3_1(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (bound, words) in [("minimum", "at least"), ("maximum", "at most")] {
                if let Some(Value::String(text)) = map.get(bound).cloned() {
                    map.remove(bound);
                    let before = map.get("description").and_then(Value::as_str);
                    let description = match before {
                        Some(d) => format!("{d} ({words} {text})"),
                        None => format!("{words} {text}"),
                    };
                    map.insert("description".into(), json!(description));
                }
            }
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
            }
            for v in map.values_mut() {
                to_3_1(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_3_1),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_becomes_a_null_type() {
        let mut v = json!({"a": {"type": "string", "nullable": true}, "b": {"$ref": "#/x", "nullable": true}});
        to_3_1(&mut v);
        assert_eq!(v["a"]["type"], json!(["string", "null"]));
        assert_eq!(v["b"]["anyOf"][1], json!({"type": "null"}));
        let mut v = json!({"$ref": "#/d", "minimum": "now-90d"});
        to_3_1(&mut v);
        assert_eq!(v, json!({"$ref": "#/d", "description": "at least now-90d"}));
    }
}
