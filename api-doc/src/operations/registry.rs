//! The registry's operations the reference does not publish: campaigns, the journeys CSV,
//! export status and download, funding calls and the CEE public key.

use super::{Op, int64, schema_ref, timestamp};
use serde_json::{Value, json};

const OPERATOR_FILTER: &str = "Registry roles: one operator's (else every operator's). Operator roles see their own operator only; naming another is a 404.";

pub(super) fn operation(method: &str, template: &str) -> Option<Value> {
    let op = match (method, template) {
        ("GET", "/admin/campaigns") => Op::new(
            "campaigns:list",
            "Administration",
            "List the incentive campaigns",
            "Every campaign, oldest first (registry admins).",
        )
        .json(
            200,
            "The campaigns.",
            json!({"type": "array", "items": schema_ref("Campaign")}),
        ),
        ("POST", "/admin/campaigns") => Op::new(
            "campaigns:create",
            "Administration",
            "Define an incentive campaign",
            "Journeys of the configured operator classes, inside the dates, the distances and the optional area, earn `amount_per_km` after their 48 h checks (CONTRACT §7).",
        )
        .body(schema_ref("NewCampaign"))
        .json(201, "The campaign as stored.", schema_ref("Campaign")),
        ("GET", "/{version}/exports/journeys") => Op::new(
            "export:journeysCsv",
            "Exports",
            "The caller's journeys of a period, as CSV",
            "Journeys whose start is in [`start`, `end`), canceled ones excluded, oldest first; at most 366 days. Free-text cells starting with `=`, `+`, `-`, `@`, a tab or a carriage return are prefixed with `'`.",
        )
        .query("start", true, timestamp(), "Start of the period (RFC 3339; send `+` as `%2B`).")
        .query("end", true, timestamp(), "End of the period, excluded.")
        .query("operator_id", false, int64(json!({"minimum": 1})), OPERATOR_FILTER)
        .content(
            200,
            "RFC 4180 CSV with a header line: journey_id, operator_id, operator_journey_id, operator_trip_id, operator_class, start_datetime, start_lat, start_lon, end_datetime, end_lat, end_lon, distance, status, incentive.",
            "text/csv",
            json!({"type": "string"}),
        )
        .error(400, "A missing, repeated or unknown parameter, a bad date, or a period over 366 days.")
        .error(404, "Another operator named by an operator role.")
        .error(429, "Every export stream of the replica is busy (`exports_busy`, with `Retry-After`)."),
        ("GET", "/{version}/exports/{uuid}") => Op::new(
            "export:status",
            "Exports",
            "Where an export stands",
            "An export created by `POST /{version}/exports`: pending, running, then success (downloadable until `expires_at`), failure or expired.",
        )
        .path("uuid", json!({"type": "string"}), "The export's id.")
        .json(200, "The export.", schema_ref("Export"))
        .error(404, "No such export visible to the caller."),
        ("GET", "/{version}/exports/{uuid}/download") => Op::new(
            "export:download",
            "Exports",
            "Download a finished export",
            "A zip holding `export-<uuid>.csv`, with the columns of the journeys CSV.",
        )
        .path("uuid", json!({"type": "string"}), "The export's id.")
        .content(
            200,
            "The zip file.",
            "application/zip",
            json!({"type": "string", "contentMediaType": "application/zip"}),
        )
        .header(200, "Content-Disposition", "`attachment; filename=\"export-<uuid>.zip\"`.")
        .error(404, "No such export visible to the caller, not finished, or expired."),
        ("GET", "/{version}/funding-calls") => Op::new(
            "funding:calls",
            "Exports",
            "A month's funding call",
            "Issued on the 6th of the following month, per operator and campaign, with its journeys (CONTRACT §7).",
        )
        .query(
            "month",
            true,
            json!({"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$", "example": "2026-01"}),
            "The month of the journeys.",
        )
        .query("operator_id", false, int64(json!({"minimum": 1})), OPERATOR_FILTER)
        .json(200, "The funding call.", schema_ref("FundingCall"))
        .error(400, "A missing, repeated or unknown parameter, or a bad month.")
        .error(404, "Not issued yet, or another operator named by an operator role."),
        ("GET", "/{version}/policies/cee/public-key") => Op::new(
            "policy:cee:publicKey",
            "Demandes CEE",
            "The key that verifies CEE application tokens",
            "An application's `token` is the base64 RSA PKCS#1 v1.5 SHA-512 signature of `<SIRET>/<journey_type>/<driving_license>/<datetime>`.",
        )
        .content(
            200,
            "The RSA public key, SubjectPublicKeyInfo PEM.",
            "application/x-pem-file",
            json!({"type": "string"}),
        ),
        _ => return None,
    };
    Some(op.done())
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let campaign_fields = json!({
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "start": timestamp(),
        "end": timestamp(),
        "operator_classes": {"type": "array", "minItems": 1, "items": {"enum": ["A", "B", "C"]}},
        "amount_per_km": {"type": "integer", "minimum": 0, "maximum": 10000, "description": "Cents per kilometre."},
        "min_distance": {"type": "integer", "minimum": 0, "maximum": 1000000, "description": "Metres."},
        "max_distance": {"type": "integer", "minimum": 0, "maximum": 1000000, "description": "Metres."},
        "area": {"type": ["object", "null"], "description": "A GeoJSON Polygon or MultiPolygon geometry (longitude, latitude).", "required": ["type", "coordinates"], "properties": {"type": {"enum": ["Polygon", "MultiPolygon"]}, "coordinates": {"type": "array"}}},
        "max_per_person_per_day": {"type": ["integer", "null"], "minimum": 0, "description": "Cents."},
        "max_per_person_per_month": {"type": ["integer", "null"], "minimum": 0, "description": "Cents."},
        "budget": {"type": ["integer", "null"], "minimum": 0, "description": "Cents."},
    });
    let mut stored = campaign_fields.clone();
    stored["id"] = json!({"type": "integer"});
    stored["created_at"] = timestamp();
    let ids = json!({"type": "array", "items": {"type": "integer"}});
    vec![
        (
            "NewCampaign",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "start", "end", "operator_classes", "amount_per_km", "min_distance", "max_distance"],
                "properties": campaign_fields,
                "description": "`start` before `end`, `min_distance` at most `max_distance`.",
            }),
        ),
        (
            "Campaign",
            json!({
                "type": "object",
                "required": ["id", "name", "start", "end", "operator_classes", "amount_per_km", "min_distance", "max_distance", "area", "max_per_person_per_day", "max_per_person_per_month", "budget", "created_at"],
                "properties": stored,
            }),
        ),
        (
            "Export",
            json!({
                "type": "object",
                "required": ["uuid", "target", "status", "start_at", "end_at", "operator_id", "created_at"],
                "properties": {
                    "uuid": {"type": "string", "format": "uuid"},
                    "target": {"enum": ["operator", "opendata"]},
                    "status": {"enum": ["pending", "running", "success", "failure", "expired"]},
                    "start_at": timestamp(),
                    "end_at": timestamp(),
                    "operator_id": ids,
                    "created_at": timestamp(),
                    "completed_at": timestamp(),
                    "rows": {"type": ["integer", "null"]},
                    "expires_at": {"anyOf": [timestamp(), {"type": "null"}]},
                    "error": {"type": "string"},
                },
            }),
        ),
        (
            "FundingCall",
            json!({
                "type": "object",
                "required": ["month", "issued_at", "calls"],
                "properties": {
                    "month": {"type": "string"},
                    "issued_at": timestamp(),
                    "calls": {"type": "array", "items": {
                        "type": "object",
                        "required": ["operator_id", "campaign_id", "campaign_name", "amount", "journeys"],
                        "properties": {
                            "operator_id": {"type": "integer"},
                            "campaign_id": {"type": "integer"},
                            "campaign_name": {"type": "string"},
                            "amount": {"type": "integer", "description": "Cents."},
                            "journeys": {"type": "array", "items": {
                                "type": "object",
                                "required": ["journey_id", "operator_journey_id", "amount"],
                                "properties": {
                                    "journey_id": {"type": "string"},
                                    "operator_journey_id": {"type": "string"},
                                    "amount": {"type": "integer"},
                                },
                            }},
                        },
                    }},
                },
            }),
        ),
    ]
}
