//! The OpenAPI 3.1 document of the REST edge, generated from the same descriptors as the
//! routes: paths, parameters, request and response schemas with the proto comments as
//! descriptions, bearer authentication and the error schema.

use crate::{auth::layer::is_public, rest::routes::Routes};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The whole document.
pub fn document(routes: &Routes) -> Value {
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    for route in routes.iter() {
        let rpc = &route.rpc;
        let input = rpc.input();
        let vars = route.template.variables();
        let mut parameters: Vec<Value> = vars
            .iter()
            .map(|v| {
                let schema = field_at(&input, v).map_or(json!({"type": "string"}), |f| {
                    field_schema(&f, &mut schemas)
                });
                json!({ "name": v, "in": "path", "required": true, "schema": schema })
            })
            .collect();
        let top_bound = |f: &FieldDescriptor| {
            vars.iter().any(|v| v.split('.').next() == Some(f.name())) || route.body == f.name()
        };
        let mut operation = Map::new();
        if route.body.is_empty() {
            for f in input.fields().filter(|f| !top_bound(f)) {
                if let Some(p) = query_parameter(&f, &mut schemas) {
                    parameters.push(p);
                }
            }
        } else {
            let schema = if route.body == "*" {
                let mut s = object_schema(&input, &mut schemas, &|f| !top_bound(f));
                s["title"] = json!(input.name());
                s
            } else {
                input
                    .get_field_by_name(&route.body)
                    .map_or(json!({}), |f| field_schema(&f, &mut schemas))
            };
            operation.insert(
                "requestBody".into(),
                json!({ "required": false, "content": { "application/json": { "schema": schema } } }),
            );
        }
        let output = rpc.output();
        let reply_schema = if route.response_body.is_empty() {
            message_ref(&output, &mut schemas)
        } else {
            output
                .get_field_by_name(&route.response_body)
                .map_or(json!({}), |f| field_schema(&f, &mut schemas))
        };
        let content = if rpc.is_server_streaming() {
            json!({
                "text/event-stream": { "schema": { "type": "string", "description": format!(
                    "Server-Sent Events: one `data:` line per {} as JSON; `event: error` carries a google.rpc.Status.",
                    output.name()) } },
                "application/x-ndjson": { "schema": { "type": "string" } },
            })
        } else {
            json!({ "application/json": { "schema": reply_schema } })
        };
        let service = rpc.parent_service();
        let suffix = if route.binding == 0 {
            String::new()
        } else {
            format!("_{}", route.binding)
        };
        operation.insert(
            "operationId".into(),
            json!(format!("{}_{}{}", service.name(), rpc.name(), suffix)),
        );
        operation.insert("tags".into(), json!([service.name()]));
        operation.insert("summary".into(), json!(rpc.name()));
        if let Some(d) = method_comment(rpc) {
            operation.insert("description".into(), json!(d));
        }
        operation.insert("parameters".into(), Value::Array(parameters));
        operation.insert(
            "responses".into(),
            json!({
                "200": { "description": "OK", "content": content },
                "default": {
                    "description": "An error, as a google.rpc.Status",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/google.rpc.Status" } } },
                },
            }),
        );
        if is_public(&route.grpc_path()) {
            operation.insert("security".into(), json!([]));
        }
        paths
            .entry(route.template.openapi_path())
            .or_default()
            .insert(
                route.method.as_str().to_lowercase(),
                Value::Object(operation),
            );
    }
    schemas.insert(
        "google.rpc.Status".into(),
        json!({
            "type": "object",
            "description": "The error model: a gRPC status code, a developer-facing message and details.",
            "properties": {
                "code": { "type": "integer", "format": "int32", "description": "The google.rpc.Code value." },
                "message": { "type": "string", "description": "What went wrong." },
                "details": { "type": "array", "items": { "type": "object", "additionalProperties": true },
                    "description": "Typed details, e.g. a google.rpc.BadRequest with fieldViolations naming fields." },
            },
            "required": ["code", "message"],
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "EPOP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST/JSON edge of the EPOP gRPC API, transcoded from the google.api.http annotations. \
                Bodies are canonical proto3 JSON (camelCase, 64-bit integers as strings, enums by name, RFC 3339 timestamps).",
        },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
        },
        "security": [{ "bearerAuth": [] }],
    })
}

/// The field at a dotted path of proto names.
fn field_at(desc: &MessageDescriptor, path: &str) -> Option<FieldDescriptor> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let f = desc.get_field_by_name(head)?;
    match (rest, f.kind()) {
        (None, _) => Some(f),
        (Some(r), Kind::Message(m)) => field_at(&m, r),
        _ => None,
    }
}

fn query_parameter(f: &FieldDescriptor, schemas: &mut BTreeMap<String, Value>) -> Option<Value> {
    if f.is_map() {
        return None;
    }
    if let Kind::Message(m) = f.kind()
        && wkt_schema(&m).is_none()
    {
        return None;
    }
    let mut p = json!({ "name": f.json_name(), "in": "query", "required": false, "schema": field_schema(f, schemas) });
    if let Some(d) = comment(f.parent_message().parent_file_descriptor_proto(), f.path()) {
        p["description"] = json!(d);
    }
    if f.is_list() {
        p["style"] = json!("form");
        p["explode"] = json!(true);
    }
    Some(p)
}

fn message_ref(m: &MessageDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    if let Some(s) = wkt_schema(m) {
        return s;
    }
    let name = m.full_name().to_owned();
    if !schemas.contains_key(&name) {
        schemas.insert(name.clone(), json!({}));
        let schema = object_schema(m, schemas, &|_| true);
        schemas.insert(name.clone(), schema);
    }
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn object_schema(
    m: &MessageDescriptor,
    schemas: &mut BTreeMap<String, Value>,
    keep: &dyn Fn(&FieldDescriptor) -> bool,
) -> Value {
    let mut props = Map::new();
    for f in m.fields().filter(|f| keep(f)) {
        let mut s = field_schema(&f, schemas);
        if let Some(d) = comment(f.parent_message().parent_file_descriptor_proto(), f.path()) {
            s = json!({ "description": d, "allOf": [s] });
        }
        props.insert(f.json_name().to_owned(), s);
    }
    let mut schema =
        json!({ "type": "object", "properties": props, "additionalProperties": false });
    if let Some(d) = comment(m.parent_file_descriptor_proto(), m.path()) {
        schema["description"] = json!(d);
    }
    schema
}

fn field_schema(f: &FieldDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    if f.is_map()
        && let Kind::Message(entry) = f.kind()
    {
        let value = entry.map_entry_value_field();
        return json!({ "type": "object", "additionalProperties": kind_schema(&value.kind(), schemas) });
    }
    let one = kind_schema(&f.kind(), schemas);
    if f.is_list() {
        json!({ "type": "array", "items": one })
    } else {
        one
    }
}

fn kind_schema(kind: &Kind, schemas: &mut BTreeMap<String, Value>) -> Value {
    match kind {
        Kind::String => json!({ "type": "string" }),
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({ "type": "integer", "format": "int32" })
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX })
        }
        // Canonical proto3 JSON writes 64-bit integers as strings.
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]+$" })
        }
        Kind::Uint64 | Kind::Fixed64 => {
            json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]+$" })
        }
        Kind::Float | Kind::Double => json!({ "type": "number" }),
        Kind::Enum(e) => {
            json!({ "type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>() })
        }
        Kind::Message(m) => message_ref(m, schemas),
    }
}

/// The JSON forms of well-known types.
fn wkt_schema(m: &MessageDescriptor) -> Option<Value> {
    Some(match m.full_name() {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$" })
        }
        "google.protobuf.FieldMask" => {
            json!({ "type": "string", "description": "Comma-separated field paths (camelCase)." })
        }
        "google.protobuf.Struct" => json!({ "type": "object", "additionalProperties": true }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({ "type": "array" }),
        "google.protobuf.Empty" => json!({ "type": "object", "additionalProperties": false }),
        "google.protobuf.StringValue" => json!({ "type": "string" }),
        "google.protobuf.BoolValue" => json!({ "type": "boolean" }),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            json!({ "type": "integer" })
        }
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => json!({ "type": "string" }),
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => json!({ "type": "number" }),
        "google.protobuf.BytesValue" => json!({ "type": "string", "contentEncoding": "base64" }),
        "google.protobuf.Any" => json!({ "type": "object", "additionalProperties": true }),
        _ => return None,
    })
}

fn method_comment(rpc: &MethodDescriptor) -> Option<String> {
    comment(rpc.parent_file().file_descriptor_proto(), rpc.path())
}

/// The leading comment of the element at `path` in `file`.
fn comment(file: &prost_types::FileDescriptorProto, path: &[i32]) -> Option<String> {
    let info = file.source_code_info.as_ref()?;
    let loc = info.location.iter().find(|l| l.path == path)?;
    let text = loc.leading_comments.as_deref()?.trim();
    (!text.is_empty()).then(|| text.lines().map(str::trim).collect::<Vec<_>>().join(" "))
}
