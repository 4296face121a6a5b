//! The committed description is the one the code generates, and it describes every route.

use gateway::routes::TABLE;
use serde_json::Value;
use std::path::Path;

fn committed(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_committed_copies_are_what_the_code_generates() {
    // A route, field or status changed in the code changes the document: run
    // `cargo run -p api-doc` and commit the copies with the change.
    assert!(
        committed("openapi.json") == api_doc::to_json(),
        "docs/openapi.json differs from the generated document: run `cargo run -p api-doc`"
    );
    assert!(
        committed("openapi.yaml") == api_doc::to_yaml(),
        "docs/openapi.yaml differs from the generated document: run `cargo run -p api-doc`"
    );
    let yaml: Value = serde_yaml::from_str(&committed("openapi.yaml")).unwrap();
    let json: Value = serde_json::from_str(&committed("openapi.json")).unwrap();
    assert_eq!(yaml, json, "the two copies say the same");
}

#[test]
fn every_route_is_described_once_and_nothing_else() {
    let doc = api_doc::document();
    let paths = doc["paths"].as_object().unwrap();
    let mut described = 0;
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            described += 1;
            let known = TABLE.iter().any(|e| {
                api_doc::doc_path(e.template) == *path && e.method.eq_ignore_ascii_case(method)
            }) || api_doc::GATEWAY_ROUTES.contains(&path.as_str());
            assert!(known, "{method} {path} is described but not routed");
        }
    }
    assert_eq!(described, TABLE.len() + api_doc::GATEWAY_ROUTES.len());
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_operation_has_its_own_id() {
    let doc = api_doc::document();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let pointer = r.strip_prefix('#').expect("only local references");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let mut ids = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"]
                .as_str()
                .expect("every operation has an id");
            assert!(!ids.contains(&id), "operationId {id} is used twice");
            ids.push(id);
        }
    }
}

#[test]
fn the_reference_operations_keep_their_bodies_and_examples() {
    let reference = api_doc::reference::Reference::load();
    let doc = api_doc::document();
    // The reference's geography helpers are not part of this registry (docs/api.md).
    let not_served = ["/geo/route", "/geo/point/by_address", "/geo/point/by_insee"];
    for (path, method) in reference.operations() {
        if not_served.contains(&path.as_str()) {
            continue;
        }
        let theirs = &reference.doc()["paths"][&path][&method];
        let ours = &doc["paths"][format!("/{{version}}{path}")][&method];
        assert!(
            ours.is_object(),
            "{method} {path} of the reference is not described"
        );
        if !theirs["operationId"].is_null() {
            assert_eq!(
                ours["operationId"], theirs["operationId"],
                "{method} {path}"
            );
        }
        assert_eq!(ours["summary"], theirs["summary"], "{method} {path}");
        assert_eq!(
            ours["requestBody"], theirs["requestBody"],
            "{method} {path}"
        );
        for (status, response) in theirs["responses"].as_object().unwrap() {
            if matches!(status.as_str(), "401" | "403") {
                continue; // the gateway's, with reason codes (CONTRACT §2)
            }
            let ours = &ours["responses"][status];
            assert!(!ours.is_null(), "{method} {path} lost its {status}");
            if let Some(schema) = response.pointer("/content/application~1json/schema") {
                let kept = ours.pointer("/content/application~1json/schema") == Some(schema)
                    || ours
                        .pointer("/content/application~1json/schema/anyOf/0")
                        .is_some_and(|s| s == schema);
                assert!(kept, "{method} {path} {status} changed its schema");
            }
        }
    }
}
