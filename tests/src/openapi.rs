//! Checking real answers against an OpenAPI 3.1 document (central's `openapi.json`).
//!
//! Two parts: [`find_response`] finds the operation a concrete request matched (templated paths,
//! literal segments before templated ones) and the response documented for its status, failing
//! with what is documented when it is not; [`validate`] checks a JSON value against a schema of
//! the document. The validator knows the subset of JSON Schema 2020-12 the document uses and
//! refuses any other keyword, so a schema can never look stricter than what is checked:
//!
//! - `type` (a name or a list of names, `["string", "null"]` for a nullable field), `enum`,
//!   `const`;
//! - objects: `properties`, `required`, `additionalProperties` (`false` or a schema),
//!   `propertyNames`;
//! - arrays: `items`, `minItems`, `maxItems`;
//! - numbers: `minimum`, `maximum` (`integer` is a number without a fraction);
//! - strings: `minLength`, `maxLength`, `format` `date-time` (RFC 3339), `date` (YYYY-MM-DD),
//!   `uuid`;
//! - `$ref` to a pointer in the same document (`#/components/schemas/...`), `oneOf`, `anyOf`,
//!   `allOf`;
//! - annotations, which check nothing: `description`, `title`, `examples`, `default`,
//!   `deprecated`, `readOnly`, `writeOnly`, `$comment`.
//!
//! Every failure names the JSON pointer of the failing value, the rule and the schema's place in
//! the document.

use std::fmt;

use serde_json::Value;

/// One way a value fails its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the failing value in the checked instance (`""` is the whole value).
    pub pointer: String,
    /// The keyword that failed (`type`, `required`, ...), or `schema` for a schema the validator
    /// cannot apply.
    pub rule: &'static str,
    /// JSON pointer (in the document) of the schema holding the rule.
    pub schema: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(
            f,
            "{at}: {}: {} (schema #{})",
            self.rule, self.message, self.schema
        )
    }
}

/// Every violation, one per line, for a test's failure message.
pub fn report(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks `instance` against the schema at `schema_pointer` in `doc` (a JSON pointer such as
/// `/components/schemas/Alert`).
pub fn validate_at(
    doc: &Value,
    schema_pointer: &str,
    instance: &Value,
) -> Result<(), Vec<Violation>> {
    let Some(schema) = doc.pointer(schema_pointer) else {
        return Err(vec![Violation {
            pointer: String::new(),
            rule: "$ref",
            schema: schema_pointer.to_string(),
            message: "the document has no schema at this pointer".into(),
        }]);
    };
    let mut out = Vec::new();
    Checker { doc, depth: 0 }.check(schema, schema_pointer, instance, "", &mut out);
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// Checks `instance` against `schema`, resolving its `$ref`s in `doc`.
pub fn validate(doc: &Value, schema: &Value, instance: &Value) -> Result<(), Vec<Violation>> {
    let mut out = Vec::new();
    Checker { doc, depth: 0 }.check(schema, "", instance, "", &mut out);
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// How deep `$ref`s may nest before the schema counts as a loop.
const MAX_DEPTH: usize = 64;

const ANNOTATIONS: [&str; 8] = [
    "description",
    "title",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
];

struct Checker<'d> {
    doc: &'d Value,
    depth: usize,
}

fn child(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", token.replace('~', "~0").replace('/', "~1"))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "integer" => match value {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "number" => value.is_number(),
        other => type_name(value) == other,
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

impl Checker<'_> {
    fn check(
        &mut self,
        schema: &Value,
        at: &str,
        instance: &Value,
        pointer: &str,
        out: &mut Vec<Violation>,
    ) {
        let fail = |out: &mut Vec<Violation>, rule: &'static str, message: String| {
            out.push(Violation {
                pointer: pointer.to_string(),
                rule,
                schema: at.to_string(),
                message,
            });
        };
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                return fail(out, "false", "no value is allowed here".into());
            }
            Value::Object(schema) => schema,
            other => {
                return fail(
                    out,
                    "schema",
                    format!("a schema is an object or a boolean, not {}", short(other)),
                );
            }
        };
        for (keyword, rule) in schema {
            let rule_at = child(at, keyword);
            match keyword.as_str() {
                "$ref" => self.reference(rule, &rule_at, instance, pointer, out),
                "type" => {
                    let names: Vec<&str> = match rule {
                        Value::String(name) => vec![name.as_str()],
                        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                        _ => Vec::new(),
                    };
                    if names.is_empty() {
                        fail(out, "schema", format!("type {} names no type", short(rule)));
                    } else if !names.iter().any(|name| has_type(instance, name)) {
                        fail(
                            out,
                            "type",
                            format!(
                                "expected {}, found {} {}",
                                names.join(" or "),
                                type_name(instance),
                                short(instance)
                            ),
                        );
                    }
                }
                "enum" => match rule.as_array() {
                    Some(allowed) if allowed.contains(instance) => {}
                    Some(allowed) => fail(
                        out,
                        "enum",
                        format!(
                            "{} is not one of {}",
                            short(instance),
                            short(&Value::Array(allowed.clone()))
                        ),
                    ),
                    None => fail(out, "schema", "enum is not a list".into()),
                },
                "const" => {
                    if rule != instance {
                        fail(
                            out,
                            "const",
                            format!("expected {}, found {}", short(rule), short(instance)),
                        );
                    }
                }
                "properties" => {
                    let (Some(properties), Some(object)) = (rule.as_object(), instance.as_object())
                    else {
                        if !rule.is_object() {
                            fail(out, "schema", "properties is not an object".into());
                        }
                        continue;
                    };
                    for (name, property) in properties {
                        if let Some(value) = object.get(name) {
                            self.check(
                                property,
                                &child(&rule_at, name),
                                value,
                                &child(pointer, name),
                                out,
                            );
                        }
                    }
                }
                "required" => {
                    let Some(names) = rule.as_array() else {
                        fail(out, "schema", "required is not a list".into());
                        continue;
                    };
                    if let Some(object) = instance.as_object() {
                        for name in names.iter().filter_map(Value::as_str) {
                            if !object.contains_key(name) {
                                fail(
                                    out,
                                    "required",
                                    format!("required property {name:?} is missing"),
                                );
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    let Some(object) = instance.as_object() else {
                        continue;
                    };
                    let declared = schema.get("properties").and_then(Value::as_object);
                    for (name, value) in object {
                        if declared.is_some_and(|d| d.contains_key(name)) {
                            continue;
                        }
                        if rule == &Value::Bool(false) {
                            out.push(Violation {
                                pointer: child(pointer, name),
                                rule: "additionalProperties",
                                schema: rule_at.clone(),
                                message: format!("property {name:?} is not documented"),
                            });
                        } else {
                            self.check(rule, &rule_at, value, &child(pointer, name), out);
                        }
                    }
                }
                "propertyNames" => {
                    if let Some(object) = instance.as_object() {
                        for name in object.keys() {
                            self.check(
                                rule,
                                &rule_at,
                                &Value::String(name.clone()),
                                &child(pointer, name),
                                out,
                            );
                        }
                    }
                }
                "items" => {
                    if let Some(items) = instance.as_array() {
                        for (i, item) in items.iter().enumerate() {
                            self.check(rule, &rule_at, item, &child(pointer, &i.to_string()), out);
                        }
                    }
                }
                "minItems" | "maxItems" => {
                    let (Some(limit), Some(items)) = (rule.as_u64(), instance.as_array()) else {
                        if rule.as_u64().is_none() {
                            fail(out, "schema", format!("{keyword} is not a count"));
                        }
                        continue;
                    };
                    let count = items.len() as u64;
                    if keyword == "minItems" && count < limit {
                        fail(
                            out,
                            "minItems",
                            format!("{count} items, at least {limit} expected"),
                        );
                    }
                    if keyword == "maxItems" && count > limit {
                        fail(
                            out,
                            "maxItems",
                            format!("{count} items, at most {limit} expected"),
                        );
                    }
                }
                "minimum" | "maximum" => {
                    let (Some(limit), Some(n)) = (rule.as_f64(), instance.as_f64()) else {
                        if rule.as_f64().is_none() {
                            fail(out, "schema", format!("{keyword} is not a number"));
                        }
                        continue;
                    };
                    if keyword == "minimum" && n < limit {
                        fail(
                            out,
                            "minimum",
                            format!("{instance} is below the minimum {rule}"),
                        );
                    }
                    if keyword == "maximum" && n > limit {
                        fail(
                            out,
                            "maximum",
                            format!("{instance} is above the maximum {rule}"),
                        );
                    }
                }
                "minLength" | "maxLength" => {
                    let (Some(limit), Some(text)) = (rule.as_u64(), instance.as_str()) else {
                        if rule.as_u64().is_none() {
                            fail(out, "schema", format!("{keyword} is not a count"));
                        }
                        continue;
                    };
                    let length = text.chars().count() as u64;
                    if keyword == "minLength" && length < limit {
                        fail(
                            out,
                            "minLength",
                            format!("{length} characters, at least {limit} expected"),
                        );
                    }
                    if keyword == "maxLength" && length > limit {
                        fail(
                            out,
                            "maxLength",
                            format!("{length} characters, at most {limit} expected"),
                        );
                    }
                }
                "format" => {
                    let Some(text) = instance.as_str() else {
                        continue;
                    };
                    let ok = match rule.as_str() {
                        Some("date-time") => time::OffsetDateTime::parse(
                            text,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .is_ok(),
                        Some("date") => {
                            text.len() == 10
                                && time::Date::parse(
                                    text,
                                    time::macros::format_description!("[year]-[month]-[day]"),
                                )
                                .is_ok()
                        }
                        Some("uuid") => text.len() == 36 && uuid::Uuid::parse_str(text).is_ok(),
                        _ => {
                            fail(
                                out,
                                "schema",
                                format!(
                                    "format {} is not one the validator checks (date-time, date, uuid)",
                                    short(rule)
                                ),
                            );
                            continue;
                        }
                    };
                    if !ok {
                        fail(
                            out,
                            "format",
                            format!("{} is not a {}", short(instance), short(rule)),
                        );
                    }
                }
                "oneOf" | "anyOf" | "allOf" => {
                    let Some(branches) = rule.as_array() else {
                        fail(out, "schema", format!("{keyword} is not a list"));
                        continue;
                    };
                    let results: Vec<Vec<Violation>> = branches
                        .iter()
                        .enumerate()
                        .map(|(i, branch)| {
                            let mut found = Vec::new();
                            self.check(
                                branch,
                                &child(&rule_at, &i.to_string()),
                                instance,
                                pointer,
                                &mut found,
                            );
                            found
                        })
                        .collect();
                    let matched: Vec<usize> = results
                        .iter()
                        .enumerate()
                        .filter(|(_, found)| found.is_empty())
                        .map(|(i, _)| i)
                        .collect();
                    match keyword.as_str() {
                        "allOf" => out.extend(results.into_iter().flatten()),
                        _ if matched.is_empty() => {
                            // The closest branches (fewest violations) say what is wrong: for a
                            // union tagged by a `const`, the branch of the value's own tag.
                            let fewest = results.iter().map(Vec::len).min().unwrap_or(0);
                            let why = results
                                .iter()
                                .enumerate()
                                .filter(|(_, found)| found.len() == fewest)
                                .map(|(i, found)| {
                                    let each: Vec<String> =
                                        found.iter().map(Violation::to_string).collect();
                                    format!("[{i}] {}", each.join(", "))
                                })
                                .collect::<Vec<_>>()
                                .join("; ");
                            fail(
                                out,
                                if keyword == "oneOf" { "oneOf" } else { "anyOf" },
                                format!(
                                    "matches none of the {} branches; the closest: {why}",
                                    branches.len()
                                ),
                            );
                        }
                        "oneOf" if matched.len() > 1 => fail(
                            out,
                            "oneOf",
                            format!("matches more than one branch: {matched:?}"),
                        ),
                        _ => {}
                    }
                }
                other if ANNOTATIONS.contains(&other) => {}
                other => fail(
                    out,
                    "schema",
                    format!("keyword {other:?} is not one the validator checks"),
                ),
            }
        }
    }

    fn reference(
        &mut self,
        rule: &Value,
        rule_at: &str,
        instance: &Value,
        pointer: &str,
        out: &mut Vec<Violation>,
    ) {
        let mut fail = |message: String| {
            out.push(Violation {
                pointer: pointer.to_string(),
                rule: "$ref",
                schema: rule_at.to_string(),
                message,
            })
        };
        let Some(target) = rule.as_str().and_then(|r| r.strip_prefix('#')) else {
            return fail(format!(
                "{} is not a reference into this document (#/...)",
                short(rule)
            ));
        };
        let Some(schema) = self.doc.pointer(target) else {
            return fail(format!("#{target} is not in the document"));
        };
        if self.depth >= MAX_DEPTH {
            return fail(format!("references nest deeper than {MAX_DEPTH}: a loop?"));
        }
        self.depth += 1;
        self.check(schema, target, instance, pointer, out);
        self.depth -= 1;
    }
}

// ------------------------------------------------------------------------------- operations

/// Why a request has no documented response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No path template matches the path.
    Path { path: String },
    /// The path is documented, the method is not.
    Method {
        template: String,
        method: String,
        documented: Vec<String>,
    },
    /// The operation documents no response for the status (nor its class, nor `default`).
    Status {
        template: String,
        method: String,
        status: u16,
        documented: Vec<String>,
    },
    /// The response is documented without a body of this media type.
    MediaType {
        template: String,
        method: String,
        status: u16,
        media_type: String,
        documented: Vec<String>,
    },
    /// The document itself is malformed where the lookup went (a dangling `$ref`, ...).
    Document { pointer: String, problem: String },
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::Path { path } => {
                write!(f, "{path} is not documented: no path template matches it")
            }
            LookupError::Method {
                template,
                method,
                documented,
            } => write!(
                f,
                "{method} {template} is not documented (the path documents {})",
                documented.join(", ")
            ),
            LookupError::Status {
                template,
                method,
                status,
                documented,
            } => write!(
                f,
                "{method} {template} documents no {status} response (it documents {})",
                documented.join(", ")
            ),
            LookupError::MediaType {
                template,
                method,
                status,
                media_type,
                documented,
            } => write!(
                f,
                "{method} {template} {status} documents no {media_type} body (it documents {})",
                if documented.is_empty() {
                    "none".to_string()
                } else {
                    documented.join(", ")
                }
            ),
            LookupError::Document { pointer, problem } => {
                write!(f, "the document at #{pointer}: {problem}")
            }
        }
    }
}

impl std::error::Error for LookupError {}

/// The response documented for one request.
#[derive(Debug, Clone)]
pub struct Found<'d> {
    /// The path template that matched (`/api/v1/sites/{site_code}/events`).
    pub template: String,
    pub method: String,
    pub status: u16,
    /// JSON pointer of the response object (after following a `$ref`).
    pub pointer: String,
    pub response: &'d Value,
}

impl Found<'_> {
    /// The media types the response documents a body in.
    pub fn media_types(&self) -> Vec<String> {
        self.response
            .get("content")
            .and_then(Value::as_object)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// JSON pointer of the schema of the body in `media_type` (e.g. `application/json`).
    pub fn schema_pointer(&self, media_type: &str) -> Result<String, LookupError> {
        let content = self.response.get("content").and_then(Value::as_object);
        match content.and_then(|c| c.get(media_type)) {
            Some(media) if media.get("schema").is_some() => Ok(format!(
                "{}/content/{}/schema",
                self.pointer,
                media_type.replace('~', "~0").replace('/', "~1")
            )),
            _ => Err(LookupError::MediaType {
                template: self.template.clone(),
                method: self.method.clone(),
                status: self.status,
                media_type: media_type.to_string(),
                documented: self.media_types(),
            }),
        }
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every documented operation: (method in capitals, path template), sorted by template, then
/// method.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (template, item) in paths {
            for method in METHODS {
                if item.get(method).is_some() {
                    found.push((method.to_ascii_uppercase(), template.clone()));
                }
            }
        }
    }
    found.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    found
}

/// How specific a template is for `segments`: `None` if it does not match; else one flag per
/// segment, literal first, so the greatest key is the template OpenAPI says to pick.
fn specificity(template: &str, segments: &[&str]) -> Option<Vec<bool>> {
    let parts: Vec<&str> = template.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    parts
        .iter()
        .zip(segments)
        .map(|(part, segment)| {
            if part.starts_with('{') && part.ends_with('}') {
                (!segment.is_empty()).then_some(false)
            } else {
                (part == segment).then_some(true)
            }
        })
        .collect()
}

/// The path template of `doc` that `path` (concrete, a query string allowed) matches: literal
/// segments win over templated ones (`/certificates/alerts` before `/certificates/{id}`).
pub fn match_path<'d>(doc: &'d Value, path: &str) -> Result<(&'d str, &'d Value), LookupError> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    doc.get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(template, item)| {
            specificity(template, &segments).map(|key| (key, template.as_str(), item))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, template, item)| (template, item))
        .ok_or_else(|| LookupError::Path {
            path: path.to_string(),
        })
}

/// The response `doc` documents for `method` on the concrete `path` answering `status`: the
/// exact status, else its class (`4XX`), else `default`. A `$ref` to `#/components/responses`
/// is followed.
pub fn find_response<'d>(
    doc: &'d Value,
    method: &str,
    path: &str,
    status: u16,
) -> Result<Found<'d>, LookupError> {
    let (template, item) = match_path(doc, path)?;
    let lower = method.to_ascii_lowercase();
    let method = method.to_ascii_uppercase();
    let Some(operation) = item.get(&lower) else {
        return Err(LookupError::Method {
            template: template.to_string(),
            method,
            documented: METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| m.to_ascii_uppercase())
                .collect(),
        });
    };
    let responses = operation.get("responses").and_then(Value::as_object);
    let exact = status.to_string();
    let class = format!("{}XX", status / 100);
    let Some((key, response)) = [exact.as_str(), class.as_str(), "default"]
        .into_iter()
        .find_map(|key| responses.and_then(|r| r.get(key)).map(|r| (key, r)))
    else {
        return Err(LookupError::Status {
            template: template.to_string(),
            method,
            status,
            documented: responses
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default(),
        });
    };
    let mut pointer = format!(
        "/paths/{}/{lower}/responses/{key}",
        template.replace('~', "~0").replace('/', "~1")
    );
    let mut response = response;
    if let Some(reference) = response.get("$ref") {
        let target = reference
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .ok_or_else(|| LookupError::Document {
                pointer: pointer.clone(),
                problem: format!("{reference} is not a reference into this document"),
            })?;
        response = doc.pointer(target).ok_or_else(|| LookupError::Document {
            pointer: pointer.clone(),
            problem: format!("#{target} is not in the document"),
        })?;
        pointer = target.to_string();
    }
    Ok(Found {
        template: template.to_string(),
        method,
        status,
        pointer,
        response,
    })
}

/// JSON pointer of the `application/json` schema `doc` documents for `method` on the concrete
/// `path` answering `status`; fails, saying what is documented, when there is none.
pub fn response_schema(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
) -> Result<String, LookupError> {
    find_response(doc, method, path, status)?.schema_pointer("application/json")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "paths": {
                "/api/v1/sites/{site_code}/events": {
                    "get": {"responses": {
                        "200": {"description": "events", "content": {"application/json": {
                            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}
                        }}},
                        "4XX": {"$ref": "#/components/responses/Error"}
                    }}
                },
                "/api/v1/certificates/{id}": {
                    "get": {"responses": {"200": {"description": "one", "content": {
                        "application/json": {"schema": {"const": "templated"}}}}}}
                },
                "/api/v1/certificates/alerts": {
                    "get": {"responses": {"200": {"description": "alerts", "content": {
                        "application/json": {"schema": {"const": "literal"}}}}}},
                    "post": {"responses": {"default": {"description": "whatever", "content": {
                        "text/plain": {"schema": {"type": "string"}}}}}}
                }
            },
            "components": {
                "schemas": {
                    "Event": {
                        "type": "object",
                        "required": ["id", "at", "kind", "note"],
                        "additionalProperties": false,
                        "properties": {
                            "id": {"type": "string", "format": "uuid"},
                            "at": {"type": "string", "format": "date-time"},
                            "day": {"type": "string", "format": "date"},
                            "kind": {"enum": ["lookup", "consent"]},
                            "note": {"type": ["string", "null"], "maxLength": 5},
                            "count": {"type": "integer", "minimum": 0, "maximum": 10},
                            "tags": {"type": "array", "items": {"type": "string", "minLength": 1},
                                     "minItems": 1, "maxItems": 2},
                            "body": {"oneOf": [
                                {"type": "object", "required": ["a"]},
                                {"type": "object", "required": ["b"]}
                            ]},
                            "any": {"anyOf": [{"type": "boolean"}, {"$ref": "#/components/schemas/Code"}]},
                            "all": {"allOf": [{"type": "number"}, {"minimum": 1}]},
                            "map": {"type": "object", "propertyNames": {"enum": ["mon", "tue"]},
                                    "additionalProperties": {"type": "array"}},
                            "version": {"const": 1}
                        }
                    },
                    "Code": {"type": "string", "description": "a code"},
                    "Loop": {"$ref": "#/components/schemas/Loop"}
                },
                "responses": {
                    "Error": {"description": "an error", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Code"}}}}
                }
            }
        })
    }

    fn good() -> Value {
        json!({
            "id": "0190a6f2-0c4e-7a3b-9c1d-2e3f4a5b6c7d",
            "at": "2026-12-01T09:00:00+09:00",
            "day": "2026-12-01",
            "kind": "lookup",
            "note": null,
            "count": 3,
            "tags": ["x"],
            "body": {"a": 1},
            "any": "code",
            "all": 2.5,
            "map": {"mon": []},
            "version": 1
        })
    }

    fn event_errors(instance: Value) -> Vec<Violation> {
        validate_at(&doc(), "/components/schemas/Event", &instance)
            .err()
            .unwrap_or_default()
    }

    type Change = Box<dyn FnOnce(&mut Value)>;

    /// The one violation `change` to a good event causes.
    fn only_violation(change: impl FnOnce(&mut Value)) -> Violation {
        let mut instance = good();
        change(&mut instance);
        let errors = event_errors(instance);
        assert_eq!(errors.len(), 1, "{}", report(&errors));
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn a_good_value_passes_and_nullable_fields_take_both() {
        assert_eq!(event_errors(good()), vec![]);
        let mut with_note = good();
        with_note["note"] = json!("ok");
        assert_eq!(event_errors(with_note), vec![]);
        let minimal = json!({"id": "0190a6f2-0c4e-7a3b-9c1d-2e3f4a5b6c7d",
                             "at": "2026-12-01T00:00:00Z", "kind": "consent", "note": null});
        assert_eq!(event_errors(minimal), vec![]);
        // An integral float is an integer.
        let mut float = good();
        float["count"] = json!(3.0);
        assert_eq!(event_errors(float), vec![]);
    }

    #[test]
    fn each_rule_is_named_with_the_pointer_of_the_failing_value() {
        let cases: Vec<(Change, &str, &str)> = vec![
            (Box::new(|v| v["note"] = json!(7)), "/note", "type"),
            (Box::new(|v| v["count"] = json!(1.5)), "/count", "type"),
            (Box::new(|v| v["count"] = json!("3")), "/count", "type"),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("kind");
                }),
                "",
                "required",
            ),
            (
                Box::new(|v| v["extra"] = json!(true)),
                "/extra",
                "additionalProperties",
            ),
            (Box::new(|v| v["kind"] = json!("loss")), "/kind", "enum"),
            (Box::new(|v| v["version"] = json!(2)), "/version", "const"),
            (
                Box::new(|v| v["at"] = json!("2026-12-01 09:00")),
                "/at",
                "format",
            ),
            (Box::new(|v| v["at"] = json!("2026-12-01")), "/at", "format"),
            (
                Box::new(|v| v["day"] = json!("2026-02-30")),
                "/day",
                "format",
            ),
            (Box::new(|v| v["day"] = json!([2026, 335])), "/day", "type"),
            (Box::new(|v| v["id"] = json!("not-a-uuid")), "/id", "format"),
            (Box::new(|v| v["count"] = json!(-1)), "/count", "minimum"),
            (Box::new(|v| v["count"] = json!(11)), "/count", "maximum"),
            (
                Box::new(|v| v["note"] = json!("123456")),
                "/note",
                "maxLength",
            ),
            (
                Box::new(|v| v["tags"] = json!([""])),
                "/tags/0",
                "minLength",
            ),
            (Box::new(|v| v["tags"] = json!([1])), "/tags/0", "type"),
            (Box::new(|v| v["tags"] = json!([])), "/tags", "minItems"),
            (
                Box::new(|v| v["tags"] = json!(["a", "b", "c"])),
                "/tags",
                "maxItems",
            ),
            (Box::new(|v| v["body"] = json!({"c": 1})), "/body", "oneOf"),
            (
                Box::new(|v| v["body"] = json!({"a": 1, "b": 2})),
                "/body",
                "oneOf",
            ),
            (Box::new(|v| v["any"] = json!(3)), "/any", "anyOf"),
            (Box::new(|v| v["all"] = json!(0.5)), "/all", "minimum"),
            (
                Box::new(|v| v["map"] = json!({"wed": []})),
                "/map/wed",
                "enum",
            ),
            (
                Box::new(|v| v["map"] = json!({"mon": "09:00"})),
                "/map/mon",
                "type",
            ),
        ];
        for (change, pointer, rule) in cases {
            let violation = only_violation(change);
            assert_eq!(
                (violation.pointer.as_str(), violation.rule),
                (pointer, rule),
                "{violation}"
            );
        }
    }

    #[test]
    fn a_violation_says_where_what_and_which_schema() {
        let violation = only_violation(|v| v["count"] = json!("3"));
        assert_eq!(
            violation.to_string(),
            "/count: type: expected integer, found string \"3\" \
             (schema #/components/schemas/Event/properties/count)"
        );
        let missing = only_violation(|v| {
            v.as_object_mut().unwrap().remove("note");
        });
        assert!(missing.message.contains("\"note\""), "{missing}");
        // Inside arrays and through references, the pointer is the value's own.
        let errors = validate(
            &doc(),
            &json!({"type": "array", "items": {"$ref": "#/components/schemas/Event"}}),
            &json!([good(), {"kind": "lookup"}]),
        )
        .unwrap_err();
        assert!(
            errors
                .iter()
                .all(|e| e.pointer == "/1" && e.rule == "required"),
            "{}",
            report(&errors)
        );
        assert_eq!(errors.len(), 3, "{}", report(&errors));
    }

    #[test]
    fn a_tagged_union_names_the_branch_of_its_own_tag() {
        let branch = |tag: &str, field: &str| {
            json!({"type": "object", "required": ["kind", field], "additionalProperties": false,
                   "properties": {"kind": {"const": tag}, field: {"type": "integer"}}})
        };
        let schema = json!({"oneOf": [branch("a", "x"), branch("b", "y")]});
        let errors = validate(&doc(), &schema, &json!({"kind": "a", "x": "1"})).unwrap_err();
        assert_eq!(errors.len(), 1, "{}", report(&errors));
        assert!(
            errors[0].message.contains("the closest: [0] /x: type")
                && !errors[0].message.contains("[1]"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn json_pointer_tokens_are_escaped() {
        let schema = json!({"type": "object", "additionalProperties": {"type": "integer"}});
        let errors = validate(&doc(), &schema, &json!({"a/b~c": "x"})).unwrap_err();
        assert_eq!(errors[0].pointer, "/a~1b~0c");
    }

    #[test]
    fn what_the_validator_cannot_check_is_refused_not_ignored() {
        let refused = |schema: Value| {
            let errors = validate(&doc(), &schema, &json!("x")).unwrap_err();
            assert_eq!(errors[0].rule, "schema", "{}", report(&errors));
            errors[0].message.clone()
        };
        assert!(refused(json!({"pattern": "^x$"})).contains("pattern"));
        assert!(refused(json!({"format": "email"})).contains("email"));
        assert!(refused(json!({"type": []})).contains("no type"));
        let dangling = validate(
            &doc(),
            &json!({"$ref": "#/components/schemas/Nope"}),
            &json!(1),
        )
        .unwrap_err();
        assert_eq!(dangling[0].rule, "$ref");
        let looping = validate(
            &doc(),
            &json!({"$ref": "#/components/schemas/Loop"}),
            &json!(1),
        )
        .unwrap_err();
        assert!(looping[0].message.contains("loop"), "{}", report(&looping));
        // Annotations are fine.
        assert_eq!(
            validate(
                &doc(),
                &json!({"description": "d", "examples": ["x"]}),
                &json!("x")
            ),
            Ok(())
        );
        assert!(validate(&doc(), &json!(false), &json!(1)).is_err());
        assert_eq!(validate(&doc(), &json!(true), &json!(1)), Ok(()));
    }

    #[test]
    fn a_concrete_path_finds_its_templated_operation_and_response() {
        let doc = doc();
        let pointer =
            response_schema(&doc, "GET", "/api/v1/sites/1312345676/events?limit=5", 200).unwrap();
        assert_eq!(
            pointer,
            "/paths/~1api~1v1~1sites~1{site_code}~1events/get/responses/200/content/application~1json/schema"
        );
        assert_eq!(
            validate_at(&doc, &pointer, &json!([good()])),
            Ok(()),
            "the schema the pointer names"
        );
        // A status class, through a $ref to components/responses.
        let found = find_response(&doc, "get", "/api/v1/sites/1312345676/events", 404).unwrap();
        assert_eq!(found.template, "/api/v1/sites/{site_code}/events");
        assert_eq!(found.pointer, "/components/responses/Error");
        assert_eq!(
            found.schema_pointer("application/json").unwrap(),
            "/components/responses/Error/content/application~1json/schema"
        );
        // Literal segments win over templated ones.
        let literal = response_schema(&doc, "GET", "/api/v1/certificates/alerts", 200).unwrap();
        assert_eq!(doc.pointer(&literal), Some(&json!({"const": "literal"})));
        let templated = response_schema(&doc, "GET", "/api/v1/certificates/42", 200).unwrap();
        assert_eq!(
            doc.pointer(&templated),
            Some(&json!({"const": "templated"}))
        );
        // `default` covers any status.
        let other = find_response(&doc, "POST", "/api/v1/certificates/alerts", 503).unwrap();
        assert_eq!(other.media_types(), vec!["text/plain".to_string()]);
        assert_eq!(
            operations(&doc),
            vec![
                ("GET".to_string(), "/api/v1/certificates/alerts".to_string()),
                (
                    "POST".to_string(),
                    "/api/v1/certificates/alerts".to_string()
                ),
                ("GET".to_string(), "/api/v1/certificates/{id}".to_string()),
                (
                    "GET".to_string(),
                    "/api/v1/sites/{site_code}/events".to_string()
                ),
            ]
        );
    }

    #[test]
    fn what_is_not_documented_fails_saying_what_is() {
        let doc = doc();
        let error = |method: &str, path: &str, status: u16| {
            response_schema(&doc, method, path, status)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("GET", "/api/v1/sites", 200),
            "/api/v1/sites is not documented: no path template matches it"
        );
        assert_eq!(
            error("GET", "/api/v1/sites//events", 200),
            "/api/v1/sites//events is not documented: no path template matches it",
            "a template segment is never empty"
        );
        assert_eq!(
            error("DELETE", "/api/v1/sites/1312345676/events", 200),
            "DELETE /api/v1/sites/{site_code}/events is not documented (the path documents GET)"
        );
        assert_eq!(
            error("GET", "/api/v1/sites/1312345676/events", 500),
            "GET /api/v1/sites/{site_code}/events documents no 500 response (it documents 200, 4XX)"
        );
        assert_eq!(
            error("POST", "/api/v1/certificates/alerts", 200),
            "POST /api/v1/certificates/alerts 200 documents no application/json body (it documents text/plain)"
        );
    }
}
