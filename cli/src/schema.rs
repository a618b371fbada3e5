//! `portcullis schema`: the JSON Schema (2020-12) of the configuration,
//! generated from the serde types the plugin parses. It refuses what `check`
//! refuses where JSON Schema can say it: unknown fields everywhere
//! (`additionalProperties: false`), a filter entry without exactly one filter
//! type, the lower-case `gateway.getambassador.io/v1alpha1` shape (`jwt:`,
//! `type:`) and AES's `Plugin`. It accepts the AES/Emissary fields the plugin
//! accepts and ignores, so a pasted spec validates in an editor too. What it
//! cannot say (a rule naming a filter that does not exist, a bad glob or
//! duration, a key that is not 32 bytes) only `portcullis check` finds.

use serde_json::{json, Map, Value};

/// Filter-entry fields the plugin refuses with advice (they are in the serde
/// type only to give that advice): left out of the schema.
const REFUSED_ENTRY_FIELDS: &[&str] = &["Plugin", "type", "jwt", "oauth2", "apikey", "external"];

/// Rule filter-reference fields of the v1alpha1 shape, refused with advice.
const REFUSED_REFERENCE_FIELDS: &[&str] = &["type", "jwtArguments", "oauth2Arguments"];

fn properties<'a>(schema: &'a mut Value, definition: &str) -> Option<&'a mut Map<String, Value>> {
    schema
        .get_mut("$defs")
        .and_then(|d| d.get_mut(definition))
        .and_then(|d| d.get_mut("properties"))
        .and_then(Value::as_object_mut)
}

fn ignored(advice: &str) -> Value {
    json!({ "description": format!("accepted and ignored: {advice}") })
}

/// The schema, pretty-printed.
pub fn schema() -> String {
    let mut schema = serde_json::to_value(schemars::schema_for!(
        portcullis_core::config::schema::ConfigSpec
    ))
    .unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "title".to_string(),
            Value::String("Portcullis plugin configuration (v1)".to_string()),
        );
    }
    // The filter entry: `name`, exactly one filter type, AES's `ambassador_id`.
    let mut filter_types = Vec::new();
    if let Some(properties) = properties(&mut schema, "FilterSpec") {
        for field in REFUSED_ENTRY_FIELDS {
            properties.remove(*field);
        }
        filter_types = properties
            .keys()
            .filter(|k| k.starts_with(|c: char| c.is_ascii_uppercase()))
            .cloned()
            .collect();
        for (field, advice) in portcullis_core::config::IGNORED_ENTRY_FIELDS {
            properties.insert((*field).to_string(), ignored(advice));
        }
    }
    if let Some(entry) = schema
        .get_mut("$defs")
        .and_then(|d| d.get_mut("FilterSpec"))
        .and_then(Value::as_object_mut)
    {
        entry.insert("additionalProperties".to_string(), Value::Bool(false));
        entry.insert(
            "oneOf".to_string(),
            Value::Array(
                filter_types
                    .iter()
                    .map(|t| json!({ "required": [t] }))
                    .collect(),
            ),
        );
    }
    if let Some(properties) = properties(&mut schema, "FilterRefSpec") {
        for field in REFUSED_REFERENCE_FIELDS {
            properties.remove(*field);
        }
    }
    for (definition, type_name) in [
        ("JwtSpec", "JWT"),
        ("ExternalSpec", "External"),
        ("OAuth2Spec", "OAuth2"),
        ("ApiKeySpec", "APIKey"),
        ("MtlsSpec", "MTLS"),
    ] {
        if let Some(properties) = properties(&mut schema, definition) {
            for (field, advice) in portcullis_core::config::IGNORED_FIELDS {
                properties.insert((*field).to_string(), ignored(advice));
            }
            for (t, field, advice) in portcullis_core::config::IGNORED_TYPE_FIELDS {
                if *t == type_name {
                    properties.insert((*field).to_string(), ignored(advice));
                }
            }
        }
    }
    // Every object the plugin parses refuses unknown fields.
    close_objects(&mut schema);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// Sets `additionalProperties: false` on every object schema that lists its
/// `properties` and says nothing of others (serde's `deny_unknown_fields`).
fn close_objects(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".to_string(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}
