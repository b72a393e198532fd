//! Content negotiation (GraphQL over HTTP): `application/graphql-response+json` when the client
//! accepts it, with 4xx statuses for request errors; `application/json` for legacy clients (and
//! when no `Accept` is sent), with 200 for GraphQL request errors.

use axum::http::{header, HeaderMap, HeaderValue};

use crate::error::{Error, Result};

pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
pub const JSON: &str = "application/json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    GraphqlResponseJson,
    Json,
}

impl Format {
    pub fn content_type(self) -> HeaderValue {
        match self {
            Format::GraphqlResponseJson => {
                HeaderValue::from_static("application/graphql-response+json; charset=utf-8")
            }
            Format::Json => HeaderValue::from_static("application/json; charset=utf-8"),
        }
    }
}

/// The response format for this request's `Accept` header.
pub fn negotiate(headers: &HeaderMap) -> Result<Format> {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if accept.is_empty() {
        return Ok(Format::Json);
    }
    // (quality, preference among equals, format)
    let mut best: Option<(f32, u8, Format)> = None;
    for item in accept.iter().flat_map(|v| v.split(',')) {
        let mut params = item.split(';');
        let media = params
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let candidate = match media.as_str() {
            GRAPHQL_RESPONSE_JSON => (2, Format::GraphqlResponseJson),
            JSON => (1, Format::Json),
            "application/*" | "*/*" => (0, Format::Json),
            _ => continue,
        };
        if q <= 0.0 {
            continue;
        }
        if best.is_none_or(|(bq, bp, _)| q > bq || (q == bq && candidate.0 > bp)) {
            best = Some((q, candidate.0, candidate.1));
        }
    }
    best.map(|(_, _, f)| f).ok_or_else(|| {
        Error::NotAcceptable(format!(
            "this endpoint answers `{GRAPHQL_RESPONSE_JSON}` or `{JSON}`"
        ))
    })
}

/// Whether the client accepts a gzip-encoded answer (`Accept-Encoding`, RFC 9110 12.5.3):
/// `gzip` (or `x-gzip`) with a quality above 0, or `*` when gzip is not named.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut named = None;
    let mut any = None;
    for item in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or_default().trim();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            named = Some(q > 0.0);
        } else if coding == "*" {
            any = Some(q > 0.0);
        }
    }
    named.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_accepted_only_when_asked_for_with_a_quality() {
        let accepts = |value: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = value {
                h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            accepts_gzip(&h)
        };
        assert!(accepts(Some("gzip")));
        assert!(accepts(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts(Some("deflate, *")));
        assert!(!accepts(None));
        assert!(!accepts(Some("identity")));
        assert!(!accepts(Some("br, deflate")));
        assert!(!accepts(Some("gzip;q=0")));
        assert!(!accepts(Some("*, gzip;q=0")));
        assert!(!accepts(Some("*;q=0")));
    }

    fn with(accept: &str) -> Result<Format> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        negotiate(&h)
    }

    #[test]
    fn prefers_graphql_response_json_and_falls_back_to_json() {
        assert_eq!(negotiate(&HeaderMap::new()).unwrap(), Format::Json);
        assert_eq!(
            with("application/graphql-response+json, application/json;q=0.9").unwrap(),
            Format::GraphqlResponseJson
        );
        assert_eq!(
            with("application/json, application/graphql-response+json;q=0.5").unwrap(),
            Format::Json
        );
        assert_eq!(
            with("text/html,application/xhtml+xml,*/*;q=0.8").unwrap(),
            Format::Json
        );
        assert!(matches!(with("text/html"), Err(Error::NotAcceptable(_))));
        assert!(matches!(
            with("application/json;q=0"),
            Err(Error::NotAcceptable(_))
        ));
    }
}
