//! Stage 1: turn a GET query string or a POST body into GraphQL requests, after the CSRF check.

use axum::http::{header, HeaderMap};
use serde::Deserialize;

use crate::error::{Error, Result};

/// One GraphQL request as sent: the text may be missing when a persisted query id is sent.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GraphQLBody {
    pub query: Option<String>,
    pub operation_name: Option<String>,
    pub variables: Option<serde_json::Map<String, serde_json::Value>>,
    pub extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

pub struct Incoming {
    pub bodies: Vec<GraphQLBody>,
    /// A JSON array was posted: the answer is an array too.
    pub batch: bool,
}

const SIMPLE_CONTENT_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty())
}

/// Headers a browser only sends cross-site after a CORS preflight; any non-empty value lets a
/// simple request through (Apollo Router's and Apollo Server's names, so Apollo clients pass
/// unmodified). `Error::CsrfPreflightRequired`'s message names each of them.
pub const PREFLIGHT_HEADERS: [&str; 2] = ["apollo-require-preflight", "x-apollo-operation-name"];

/// Apollo's CSRF prevention: a browser can send a "simple" request (GET, or a POST with a form or
/// text content type) cross-site without a preflight. Such requests must carry a header that a
/// browser only sends after a CORS preflight.
pub fn csrf(headers: &HeaderMap) -> Result<()> {
    let preflighted_type =
        media_type(headers).is_some_and(|t| !SIMPLE_CONTENT_TYPES.contains(&t.as_str()));
    let has_header = |name: &str| {
        headers
            .get(name)
            .is_some_and(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
    };
    if preflighted_type || PREFLIGHT_HEADERS.iter().any(|h| has_header(h)) {
        Ok(())
    } else {
        Err(Error::CsrfPreflightRequired)
    }
}

fn json_param<T: serde::de::DeserializeOwned>(name: &str, raw: &str) -> Result<T> {
    serde_json::from_str(raw)
        .map_err(|e| Error::BadRequest(format!("the `{name}` parameter is not valid JSON: {e}")))
}

/// `GET /graphql?query=...&operationName=...&variables={...}&extensions={...}`.
pub fn from_get(query_string: Option<&str>) -> Result<Incoming> {
    let mut body = GraphQLBody::default();
    for (key, value) in url::form_urlencoded::parse(query_string.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "query" => body.query = Some(value.into_owned()),
            "operationName" => {
                body.operation_name = Some(value.into_owned()).filter(|v| !v.is_empty())
            }
            "variables" if !value.is_empty() => body.variables = json_param("variables", &value)?,
            "extensions" if !value.is_empty() => {
                body.extensions = json_param("extensions", &value)?
            }
            _ => {}
        }
    }
    Ok(Incoming {
        bodies: vec![body],
        batch: false,
    })
}

/// A POST body: `application/json` (one request, or an array for a batch) or
/// `application/graphql` (the query text alone).
pub fn from_post(headers: &HeaderMap, bytes: &[u8]) -> Result<Incoming> {
    match media_type(headers).as_deref() {
        Some("application/json") => {
            let value: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| Error::BadRequest(format!("the body is not valid JSON: {e}")))?;
            let parse = |v: serde_json::Value| {
                serde_json::from_value::<GraphQLBody>(v).map_err(|e| {
                    Error::BadRequest(format!("the body is not a GraphQL request: {e}"))
                })
            };
            match value {
                serde_json::Value::Array(items) => Ok(Incoming {
                    bodies: items.into_iter().map(parse).collect::<Result<_>>()?,
                    batch: true,
                }),
                object @ serde_json::Value::Object(_) => Ok(Incoming {
                    bodies: vec![parse(object)?],
                    batch: false,
                }),
                _ => Err(Error::BadRequest(
                    "the body must be a JSON object (or an array of them)".into(),
                )),
            }
        }
        Some("application/graphql") => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| Error::BadRequest("the body is not UTF-8".into()))?;
            Ok(Incoming {
                bodies: vec![GraphQLBody {
                    query: Some(text.to_owned()),
                    ..GraphQLBody::default()
                }],
                batch: false,
            })
        }
        other => Err(Error::UnsupportedMediaType(format!(
            "POST a body of type `application/json`, not `{}`",
            other.unwrap_or("(none)")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_refusal_names_every_header_that_passes() {
        let message = Error::CsrfPreflightRequired.message();
        for name in PREFLIGHT_HEADERS {
            assert!(message.contains(&format!("`{name}`")), "{message}");
            let mut headers = HeaderMap::new();
            headers.insert(name, "1".parse().unwrap());
            assert!(csrf(&headers).is_ok(), "{name}");
            headers.insert(name, " ".parse().unwrap());
            assert!(csrf(&headers).is_err(), "{name} empty");
        }
        assert!(csrf(&HeaderMap::new()).is_err());
        let mut json = HeaderMap::new();
        json.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(csrf(&json).is_ok());
        assert!(message.contains("application/json"), "{message}");
    }
}
