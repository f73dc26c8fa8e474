//! Builds the request message of a REST call: the JSON body (`body: "*"` or one field),
//! then path variables, then query parameters (scalars, repeated, enums by name, nested
//! fields via dots, proto or camelCase names). Errors name the field.

use crate::{error::Error, rest::routes::Route};
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions, Value,
};

/// The request message for `route` from the path variables, the query string and the body.
pub fn request(
    route: &Route,
    vars: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, Error> {
    let desc = route.rpc.input();
    let mut msg = match route.body.as_str() {
        "" => DynamicMessage::new(desc.clone()),
        "*" => from_json(&desc, body)?,
        field => {
            let f = field_by_name(&desc, field).ok_or_else(|| {
                Error::internal(format!("http rule body names unknown field {field}"))
            })?;
            // Parse `{"<field>": <body>}` as the whole message: one code path for every kind.
            let value: serde_json::Value = parse_json(body)?;
            let wrapped = serde_json::json!({ f.json_name(): value });
            from_json(&desc, wrapped.to_string().as_bytes())?
        }
    };
    let mut bound: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    for (path, value) in vars {
        set_path(&mut msg, path, path, value)?;
    }
    if route.body != "*" {
        if !route.body.is_empty() {
            bound.push(&route.body);
        }
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if bound.iter().any(|b| same_path(&desc, b, &key)) {
                return Err(Error::invalid(
                    key.as_ref(),
                    "is already bound by the path or body",
                ));
            }
            set_path(&mut msg, &key, &key, &value)?;
        }
    }
    Ok(msg)
}

fn parse_json(body: &[u8]) -> Result<serde_json::Value, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid("body", format!("is not valid JSON: {e}")))
}

/// Decodes canonical proto3 JSON into a `desc` message; an empty body is an empty message.
pub fn from_json(desc: &MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(desc.clone()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(&mut de, &mut track);
    let msg =
        DynamicMessage::deserialize_with_options(desc.clone(), tracked, &DeserializeOptions::new())
            .map_err(|e| {
                let path = track.path().to_string();
                let field = if matches!(path.as_str(), "." | "?" | "") {
                    "body".to_owned()
                } else {
                    path
                };
                Error::invalid(field, e.to_string())
            })?;
    de.end()
        .map_err(|e| Error::invalid("body", format!("is not valid JSON: {e}")))?;
    Ok(msg)
}

/// Canonical proto3 JSON of a message, written straight to bytes.
pub fn to_json_bytes(msg: &DynamicMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::new(&mut out);
    // Writing into a Vec cannot fail, and every dynamic message is serialisable.
    let _ = msg.serialize_with_options(&mut ser, &SerializeOptions::new());
    out
}

/// Canonical proto3 JSON of a message (camelCase, int64 as strings, enums by name).
pub fn to_json(msg: &DynamicMessage) -> serde_json::Value {
    msg.serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .unwrap_or(serde_json::Value::Null)
}

fn field_by_name(desc: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    desc.get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
}

/// True when two dotted paths (proto or JSON names) name the same field.
fn same_path(desc: &MessageDescriptor, a: &str, b: &str) -> bool {
    let first = |p: &str| {
        p.split('.')
            .next()
            .and_then(|h| field_by_name(desc, h))
            .map(|f| f.number())
    };
    first(a).is_some() && first(a) == first(b)
}

/// Sets the field at dotted `path` from its text form (appending to repeated fields).
fn set_path(msg: &mut DynamicMessage, path: &str, full: &str, raw: &str) -> Result<(), Error> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let field = field_by_name(&msg.descriptor(), head)
        .ok_or_else(|| Error::invalid(full, "is not a field of this request"))?;
    match rest {
        Some(rest) => match (field.kind(), field.is_list() || field.is_map()) {
            (Kind::Message(_), false) => match msg.get_field_mut(&field) {
                Value::Message(inner) => set_path(inner, rest, full, raw),
                _ => Err(Error::invalid(full, "is not a field of this request")),
            },
            _ => Err(Error::invalid(full, "is not a message field")),
        },
        None => {
            if field.is_map() {
                return Err(Error::invalid(full, "maps cannot be set from the URL"));
            }
            let value = scalar(&field, full, raw)?;
            if field.is_list() {
                if let Value::List(items) = msg.get_field_mut(&field) {
                    items.push(value);
                }
            } else {
                msg.set_field(&field, value);
            }
            Ok(())
        }
    }
}

/// Parses the text form of one value of `field`.
fn scalar(field: &FieldDescriptor, name: &str, raw: &str) -> Result<Value, Error> {
    let bad = |what: &str| Error::invalid(name, format!("must be {what}"));
    Ok(match field.kind() {
        Kind::String => Value::String(raw.to_owned()),
        Kind::Bool => Value::Bool(match raw {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad("true or false")),
        }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(raw.parse().map_err(|_| bad("a 32-bit integer"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(raw.parse().map_err(|_| bad("a 64-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            Value::U32(raw.parse().map_err(|_| bad("an unsigned 32-bit integer"))?)
        }
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(raw.parse().map_err(|_| bad("an unsigned 64-bit integer"))?)
        }
        Kind::Float => Value::F32(raw.parse().map_err(|_| bad("a number"))?),
        Kind::Double => Value::F64(raw.parse().map_err(|_| bad("a number"))?),
        Kind::Bytes => {
            use base64::Engine;
            let engine = base64::engine::general_purpose::STANDARD;
            Value::Bytes(engine.decode(raw).map_err(|_| bad("base64"))?.into())
        }
        Kind::Enum(e) => match e.get_value_by_name(raw) {
            Some(v) => Value::EnumNumber(v.number()),
            None => match raw.parse::<i32>().ok().and_then(|n| e.get_value(n)) {
                Some(v) => Value::EnumNumber(v.number()),
                None => {
                    let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
                    return Err(bad(&format!("one of {}", names.join(", "))));
                }
            },
        },
        // Well-known types (Timestamp, FieldMask, wrappers, ...) have a JSON string form.
        Kind::Message(m) => Value::Message(
            DynamicMessage::deserialize(m, serde_json::Value::String(raw.to_owned()))
                .map_err(|e| Error::invalid(name, e.to_string()))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::{routes::Route, template::Template};
    use prost_reflect::DescriptorPool;

    fn route(method: &str, template: &str, body: &str) -> Route {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        Route {
            method: http::Method::GET,
            template: Template::parse(template).unwrap(),
            rpc: pool
                .get_service_by_name("epop.v1.TaskService")
                .unwrap()
                .methods()
                .find(|m| m.name() == method)
                .unwrap(),
            body: body.into(),
            response_body: String::new(),
            binding: 0,
        }
    }

    #[test]
    fn query_parameters_fill_repeated_enums_and_nested_fields() {
        let r = route("ListTasks", "/api/tasks", "");
        let msg = request(
            &r,
            &[],
            Some("projectId=p1&status=TASK_STATUS_TODO&status=4&order_by=title%20desc"),
            b"",
        )
        .unwrap();
        let json = to_json(&msg);
        assert_eq!(json["projectId"], "p1");
        assert_eq!(
            json["status"],
            serde_json::json!(["TASK_STATUS_TODO", "TASK_STATUS_DONE"])
        );
        assert_eq!(json["orderBy"], "title desc");

        let r = route("UpdateTask", "/api/tasks/{id}", "");
        let msg = request(
            &r,
            &[("id".into(), "t1".into())],
            Some("update_mask.paths=title&updateMask.paths=due_date&title=New"),
            b"",
        )
        .unwrap();
        let json = to_json(&msg);
        assert_eq!(json["id"], "t1");
        assert_eq!(json["updateMask"], "title,dueDate");
        assert_eq!(json["title"], "New");
    }

    #[test]
    fn a_body_field_binding_and_path_variables_combine() {
        let r = route("UpdateTask", "/api/tasks/{id}", "update_mask");
        let msg = request(
            &r,
            &[("id".into(), "t9".into())],
            Some("etag=7"),
            br#""title,status""#,
        )
        .unwrap();
        let json = to_json(&msg);
        assert_eq!(json["updateMask"], "title,status");
        assert_eq!(
            (json["id"].as_str(), json["etag"].as_str()),
            (Some("t9"), Some("7"))
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let r = route("ListTasks", "/api/tasks", "");
        let field = |q: &str| match request(&r, &[], Some(q), b"") {
            Err(Error::InvalidArgument(v)) => v[0].field.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field("pageSize=x"), "pageSize");
        assert_eq!(field("status=NOPE"), "status");
        assert_eq!(field("nope=1"), "nope");
        let r = route("CreateTask", "/api/tasks", "*");
        match request(&r, &[], None, br#"{"title": 3}"#) {
            Err(Error::InvalidArgument(v)) => assert_eq!(v[0].field, "title"),
            other => panic!("{other:?}"),
        }
    }
}
