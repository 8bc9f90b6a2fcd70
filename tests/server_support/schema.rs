//! A small JSON Schema checker for the subset the OpenAPI document uses (`$ref`, `type` incl.
//! type lists, `enum`, `properties`, `required`, `additionalProperties`, `items`, `oneOf`, `not`,
//! `minimum`/`maximum`, `maxItems`, `maxLength`), so tests can validate real responses against
//! the committed document without a validator crate. Anything else in a schema is ignored.

use serde_json::Value;

/// The OpenAPI document, with lookups for response schemas.
pub struct Document(pub Value);

impl Document {
    /// The `application/json` schema documented for `method path` answering `status`; panics
    /// when the status is not documented (that alone is a contract violation).
    pub fn response_schema(&self, method: &str, path: &str, status: u16) -> &Value {
        let op = &self.0["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let response = &op["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which is not documented"
        );
        &response["content"]["application/json"]["schema"]
    }

    /// Errors of `value` against `schema` (empty: valid), each with its JSON path.
    pub fn errors(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.check(schema, value, "$", &mut out);
        out
    }

    /// Panics with the errors and the value when `value` does not validate.
    pub fn assert_valid(&self, schema: &Value, value: &Value, what: &str) {
        let errors = self.errors(schema, value);
        assert!(
            errors.is_empty(),
            "{what}: {value} violates the document: {errors:?}"
        );
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("unsupported $ref {r}"));
                let target = &self.0["components"]["schemas"][name];
                assert!(target.is_object(), "dangling $ref {r}");
                self.resolve(target)
            }
            None => schema,
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
            let matching = variants
                .iter()
                .filter(|s| self.errors(s, value).is_empty())
                .count();
            if matching != 1 {
                out.push(format!("{at}: matches {matching} of the oneOf variants"));
            }
        }
        if let Some(not) = schema.get("not") {
            if self.errors(not, value).is_empty() {
                out.push(format!("{at}: {value} matches a `not` schema"));
            }
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !types.iter().any(|t| has_type(value, t)) {
                out.push(format!("{at}: {value} is not of type {types:?}"));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                out.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if n < min {
                    out.push(format!("{at}: {n} < minimum {min}"));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if n > max {
                    out.push(format!("{at}: {n} > maximum {max}"));
                }
            }
        }
        if let (Some(s), Some(max)) = (
            value.as_str(),
            schema.get("maxLength").and_then(Value::as_u64),
        ) {
            if s.chars().count() as u64 > max {
                out.push(format!("{at}: longer than {max}"));
            }
        }
        if let Some(items) = value.as_array() {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    out.push(format!("{at}: more than {max} items"));
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.check(item_schema, item, &format!("{at}[{i}]"), out);
                }
            }
        }
        if let Some(object) = value.as_object() {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(name) {
                    out.push(format!("{at}: missing required `{name}`"));
                }
            }
            for (key, v) in object {
                let path = format!("{at}.{key}");
                match (
                    properties.and_then(|p| p.get(key)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(s), _) => self.check(s, v, &path, out),
                    (None, Some(Value::Bool(false))) => {
                        out.push(format!("{at}: unexpected property `{key}`"))
                    }
                    (None, Some(s @ Value::Object(_))) => self.check(s, v, &path, out),
                    (None, _) => {}
                }
            }
        }
    }
}

fn has_type(value: &Value, t: &str) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => {
            value.is_u64() || value.is_i64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => panic!("unknown JSON Schema type {t}"),
    }
}
