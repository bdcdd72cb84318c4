//! Tool schemas every client can map. A nullable field derived from `Option<T>` comes out of
//! `schemars` as `"type": ["string", "null"]`: legal JSON Schema, but clients that map tool
//! schemas onto a single-`type` dialect (the OpenAPI subset behind Gemini function declarations,
//! for one) reject the tool or drop the constraint; the MCP Inspector warns about each. The
//! published schemas spell it `"anyOf": [{"type": "string", ...}, {"type": "null"}]`, which
//! accepts exactly the same values.

use serde_json::{Map, Value};

/// Keywords that describe a schema rather than constrain it: they stay on the outer schema when
/// a type list is split into `anyOf` branches; every other keyword goes with the typed branch.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
];

/// Constraints that apply to a value of any type, a null among them.
const ANY_TYPE: &[&str] = &[
    "enum", "const", "not", "anyOf", "oneOf", "allOf", "if", "then", "else", "$ref",
];

/// Keywords whose value is one sub-schema.
const ONE: &[&str] = &[
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
];

/// Keywords whose value is a list of sub-schemas.
const LIST: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];

/// Keywords whose value maps names to sub-schemas.
const NAMED: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// Rewrites every `type` list in `schema` (at any depth) as `anyOf` branches with one type each.
pub(crate) fn split_type_lists(schema: &mut Map<String, Value>) {
    for key in ONE {
        if let Some(Value::Object(sub)) = schema.get_mut(*key) {
            split_type_lists(sub);
        }
    }
    for key in LIST {
        if let Some(Value::Array(subs)) = schema.get_mut(*key) {
            for sub in subs.iter_mut().filter_map(Value::as_object_mut) {
                split_type_lists(sub);
            }
        }
    }
    for key in NAMED {
        if let Some(Value::Object(named)) = schema.get_mut(*key) {
            for sub in named.values_mut().filter_map(Value::as_object_mut) {
                split_type_lists(sub);
            }
        }
    }
    let Some(Value::Array(types)) = schema.get("type") else {
        return;
    };
    let types = types.clone();
    schema.remove("type");
    // What constrains the value moves into the branches: all of it into each typed branch,
    // and into the null branch what can refuse a null (`enum`, `const`, ...), so the split
    // schema accepts exactly the values the type list did.
    let mut constraints = Map::new();
    let keys: Vec<String> = schema
        .keys()
        .filter(|k| !ANNOTATIONS.contains(&k.as_str()))
        .cloned()
        .collect();
    for key in keys {
        if let Some(v) = schema.remove(&key) {
            constraints.insert(key, v);
        }
    }
    let branches: Vec<Value> = types
        .into_iter()
        .map(|t| {
            let mut branch = Map::new();
            let null = t == "null";
            branch.insert("type".into(), t);
            for (k, v) in &constraints {
                if !null || ANY_TYPE.contains(&k.as_str()) {
                    branch.insert(k.clone(), v.clone());
                }
            }
            Value::Object(branch)
        })
        .collect();
    schema.insert("anyOf".into(), Value::Array(branches));
}

#[cfg(test)]
mod tests {
    use super::split_type_lists;
    use serde_json::json;

    fn split(v: serde_json::Value) -> serde_json::Value {
        let mut m = v.as_object().unwrap().clone();
        split_type_lists(&mut m);
        serde_json::Value::Object(m)
    }

    #[test]
    fn a_nullable_type_becomes_one_typed_branch_and_a_null_branch() {
        let got = split(json!({
            "type": "object",
            "properties": {
                "name": {
                    "description": "A name.",
                    "type": ["string", "null"],
                    "minLength": 1,
                    "format": "hostname"
                },
                "limit": { "type": "integer", "minimum": 1 },
                "servers": { "type": "array", "items": { "type": ["integer", "null"] } }
            }
        }));
        assert_eq!(
            got["properties"]["name"],
            json!({
                "description": "A name.",
                "anyOf": [
                    { "type": "string", "minLength": 1, "format": "hostname" },
                    { "type": "null" }
                ]
            })
        );
        // A single type is left as it is; lists deeper down are split too.
        assert_eq!(
            got["properties"]["limit"],
            json!({ "type": "integer", "minimum": 1 })
        );
        assert_eq!(
            got["properties"]["servers"]["items"],
            json!({ "anyOf": [{ "type": "integer" }, { "type": "null" }] })
        );
    }

    #[test]
    fn the_split_schema_accepts_exactly_what_the_type_list_did() {
        let before = json!({
            "type": "object",
            "properties": {
                "workspace": { "type": ["string", "null"], "minLength": 2 },
                "count": { "type": ["integer", "null"], "minimum": 1, "maximum": 5 },
                "level": { "type": ["string", "null"], "enum": ["info", "warn"] }
            }
        });
        let after = split(before.clone());
        let (a, b) = (
            jsonschema::validator_for(&before).unwrap(),
            jsonschema::validator_for(&after).unwrap(),
        );
        for args in [
            json!({}),
            json!({ "workspace": null }),
            json!({ "workspace": "lab" }),
            json!({ "workspace": "x" }),
            json!({ "workspace": 7 }),
            json!({ "count": 3 }),
            json!({ "count": 0 }),
            json!({ "count": "3" }),
            json!({ "count": null, "workspace": "prod" }),
            json!({ "level": null }),
            json!({ "level": "info" }),
            json!({ "level": "loud" }),
        ] {
            assert_eq!(a.is_valid(&args), b.is_valid(&args), "{args}");
        }
    }
}
