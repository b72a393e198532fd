//! `/graphiql`: an in-browser IDE for exploring the schema, served entirely by this binary.
//! React, ReactDOM and GraphiQL are pinned npm builds embedded gzipped (see
//! `graphiql/assets/README.md`): the page works offline and loads nothing from a CDN. A bearer
//! token is pasted in GraphiQL's headers editor, which sends it with every request, the
//! schema's introspection included.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::negotiate;
use crate::app::App;

/// An embedded file: its name under `/graphiql/assets/`, content type and gzipped bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    gzipped: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! gz {
    ($file:literal) => {
        include_bytes!(concat!("graphiql/assets/", $file, ".gz"))
    };
}

/// Names carry the versions, so a browser may keep them for good.
const ASSETS: [Asset; 4] = [
    Asset {
        name: "react-18.3.1.production.min.js",
        content_type: JS,
        gzipped: gz!("react-18.3.1.production.min.js"),
    },
    Asset {
        name: "react-dom-18.3.1.production.min.js",
        content_type: JS,
        gzipped: gz!("react-dom-18.3.1.production.min.js"),
    },
    Asset {
        name: "graphiql-3.8.3.min.js",
        content_type: JS,
        gzipped: gz!("graphiql-3.8.3.min.js"),
    },
    Asset {
        name: "graphiql-3.8.3.min.css",
        content_type: CSS,
        gzipped: gz!("graphiql-3.8.3.min.css"),
    },
];

/// Ours, small and changed with the binary: served as is, revalidated.
const START: &str = include_str!("graphiql/assets/start.js");

/// Relative URLs, so the page also works behind a proxy that mounts Passerelle under a path.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Passerelle · GraphiQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="graphiql/assets/graphiql-3.8.3.min.css">
<style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
<div id="graphiql">Loading…</div>
<script src="graphiql/assets/react-18.3.1.production.min.js"></script>
<script src="graphiql/assets/react-dom-18.3.1.production.min.js"></script>
<script src="graphiql/assets/graphiql-3.8.3.min.js"></script>
<script src="graphiql/assets/start.js"></script>
</body>
</html>
"#;

/// The routes of the page and its assets.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/graphiql", get(page))
        .route("/graphiql/assets/{name}", get(asset))
}

/// The page may load and call this server only (GraphiQL's stylesheet carries its fonts and
/// icons as `data:` URLs and React sets inline styles).
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ],
        Html(PAGE),
    )
        .into_response()
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    if name == "start.js" {
        return (
            [
                (header::CONTENT_TYPE, JS),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            START,
        )
            .into_response();
    }
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return super::health::not_found().await.into_response();
    };
    let common = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        (header::VARY, "Accept-Encoding"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    if negotiate::accepts_gzip(&headers) {
        return (common, [(header::CONTENT_ENCODING, "gzip")], asset.gzipped).into_response();
    }
    // A client that does not take gzip (rare): decompressed for it.
    let mut plain = Vec::new();
    match std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(asset.gzipped), &mut plain) {
        Ok(_) => (common, plain).into_response(),
        Err(e) => {
            tracing::error!(error = %e, asset = asset.name, "embedded asset does not decompress");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_asset_decompresses_and_the_page_names_only_them() {
        for a in &ASSETS {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(a.gzipped), &mut plain)
                .unwrap();
            assert!(plain.len() > 1000, "{}", a.name);
            assert!(
                PAGE.contains(&format!("graphiql/assets/{}", a.name)),
                "{}",
                a.name
            );
        }
        assert!(
            !PAGE.contains("//"),
            "no absolute or protocol-relative URL in the page"
        );
    }
}
