use std::{collections::BTreeMap, fmt};

use lambda_http::{http::header, Body, Request};
use serde::{
    de::{self, IgnoredAny, MapAccess, SeqAccess},
    Deserialize, Deserializer,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{
    echoed, ApiError, FieldError, APPLICATION_MERGE_PATCH_JSON, MAX_BODY_BYTES, MAX_ECHOED,
};

/// The most unknown members one problem lists: the client learns of the rest once it has
/// dropped these.
const MAX_UNKNOWN_LISTED: usize = 10;

/// A request body that is a JSON object, with the field errors found while reading it.
///
/// Reading a field records what is wrong with it instead of stopping, so one 422 lists every
/// invalid field at once.
#[derive(Debug)]
pub struct JsonObject {
    fields: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl JsonObject {
    /// The request's body as a JSON object: 415 for a non-JSON content type, 400 for a missing,
    /// malformed or non-object body.
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        require_json_content_type(req, |media_type| {
            media_type == "application/json"
                || (media_type.starts_with("application/") && media_type.ends_with("+json"))
        })?;
        Self::from_body(req)
    }

    /// A JSON merge patch (RFC 7396) for an object: sent as `application/merge-patch+json` or
    /// `application/json` (415 for any other patch format, such as JSON Patch's), an object.
    pub fn from_merge_patch(req: &Request) -> Result<Self, ApiError> {
        require_json_content_type(req, |media_type| {
            media_type == "application/json" || media_type == APPLICATION_MERGE_PATCH_JSON
        })?;
        Self::from_body(req)
    }

    fn from_body(req: &Request) -> Result<Self, ApiError> {
        let bytes: &[u8] = match req.body() {
            Body::Empty => &[],
            Body::Text(text) => text.as_bytes(),
            Body::Binary(bytes) => bytes,
            // `Body` is non-exhaustive upstream; treat anything new as absent.
            #[allow(unreachable_patterns)]
            _ => &[],
        };
        if bytes.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest(
                "The request body is missing; send a JSON object.".to_owned(),
            ));
        }
        match serde_json::from_slice(bytes) {
            Ok(TopLevel::Object(fields)) => Ok(Self {
                fields,
                errors: Vec::new(),
            }),
            Ok(TopLevel::Other) => Err(ApiError::BadRequest(
                "The request body must be a JSON object.".to_owned(),
            )),
            // The only data error reading `TopLevel` can raise.
            Err(err) if err.is_data() => Err(ApiError::BadRequest(format!(
                "The request body names a member twice: {err}."
            ))),
            // serde_json's message says where the JSON broke ("expected `:` at line 1
            // column 9") and never echoes the input.
            Err(err) => Err(ApiError::BadRequest(format!(
                "The request body is not valid JSON: {err}."
            ))),
        }
    }

    /// Records an error for every field not in `known` (the first [`MAX_UNKNOWN_LISTED`] by
    /// name, each name cut to [`MAX_ECHOED`] characters).
    pub fn reject_unknown_fields(&mut self, known: &[&str]) {
        let mut unknown: Vec<&String> = self
            .fields
            .keys()
            .filter(|key| !known.contains(&key.as_str()))
            .collect();
        unknown.sort();
        for field in unknown.into_iter().take(MAX_UNKNOWN_LISTED) {
            self.errors.push(FieldError {
                field: echoed(field, MAX_ECHOED).into_owned(),
                message: "is not a known field".to_owned(),
            });
        }
    }

    /// Parses a required string field, recording an error if it is absent, null, not a string,
    /// or rejected by `parse`.
    pub fn required_string<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let outcome = match self.fields.get(field) {
            None | Some(Value::Null) => Err("is required".to_owned()),
            Some(Value::String(value)) => parse(value).map_err(|err| err.to_string()),
            Some(_) => Err("must be a string".to_owned()),
        };
        outcome
            .map_err(|message| {
                self.errors.push(FieldError {
                    field: field.to_owned(),
                    message,
                })
            })
            .ok()
    }

    /// Parses a field of a merge patch: `None` when it is absent (kept as it is) or invalid
    /// (recorded); `null`, which would remove it, is invalid for a field that is required.
    pub fn patched_string<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        match self.fields.get(field) {
            None => None,
            Some(Value::Null) => {
                self.errors.push(FieldError {
                    field: field.to_owned(),
                    message: "is required and cannot be removed".to_owned(),
                });
                None
            }
            Some(_) => self.required_string(field, parse),
        }
    }

    /// SHA-256 of the body as canonical JSON (members sorted by name, no insignificant
    /// whitespace): equal for two bodies that differ only in layout and member order.
    pub fn canonical_hash(&self) -> [u8; 32] {
        let sorted: BTreeMap<&String, &Value> = self.fields.iter().collect();
        // Writing a map of JSON values to a Vec cannot fail.
        let canonical = serde_json::to_vec(&sorted).unwrap_or_default();
        Sha256::digest(canonical).into()
    }

    /// `Ok(value)` when no field error was recorded, otherwise the 422 listing them all.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::Validation(self.errors)),
        }
    }
}

/// A body sent with a content type must be of a media type `accepted` takes (given lowercased),
/// in UTF-8. A body without one is read as JSON, as most clients expect.
fn require_json_content_type(
    req: &Request,
    accepted: impl Fn(&str) -> bool,
) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let unsupported = || {
        ApiError::UnsupportedMediaType(
            "The request body must be JSON, sent as Content-Type: application/json \
             (or application/merge-patch+json for a PATCH)."
                .to_owned(),
        )
    };
    let value = value.to_str().map_err(|_| unsupported())?;
    let mut parts = value.split(';').map(str::trim);
    let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
    let is_json = accepted(&media_type);
    let charset_ok = parts.all(|param| match param.split_once('=') {
        Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => {
            let charset = charset.trim().trim_matches('"');
            charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    });
    if is_json && charset_ok {
        Ok(())
    } else {
        Err(unsupported())
    }
}

/// A request body's JSON value: an object whose members are all distinct, or anything else.
///
/// `{"email": "a@x.io", "email": "b@y.io"}` is valid JSON, but parsers disagree on which member
/// counts (serde_json keeps the last), so a client and any intermediary that inspects the body
/// could disagree with us: such a body is refused.
enum TopLevel {
    Object(Map<String, Value>),
    Other,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> de::Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom(format_args!(
                    "{:?}",
                    echoed(&name, MAX_ECHOED)
                )));
            }
            let value = map.next_value()?;
            members.insert(name, value);
        }
        Ok(TopLevel::Object(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other)
    }

    fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_unit<E>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }
}
