//! The tools partner developers point at the live endpoint, installed by the tests themselves:
//! graphql-js's standard introspection query, GraphQL Code Generator with `tsc`, schemathesis
//! (PyPI), the GraphQL-over-HTTP audit (`graphql-http`), GET from graphql-request and urql, and
//! GraphiQL in Debian's headless Chromium with the network off. The npm project is
//! `tests/tools` (`npm ci` on first run); schemathesis goes into `tests/tools/.venv`.
//!
//! Without Node.js, Python or Chromium these tests skip with a message, except under `CI=true`,
//! where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{error_code, node, TestApp, TEST_VIEWER};
use serde_json::{json, Value};

/// Pinned: the version whose CLI these tests speak.
const SCHEMATHESIS: &str = "4.32.5";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (or fails under CI) when `what` is missing.
fn missing(what: &str) -> Option<PathBuf> {
    assert!(!ci(), "{what} is required under CI=true");
    eprintln!("SKIPPED: {what} is not installed; set CI=true to make this fail");
    None
}

/// `tests/tools` with its locked npm dependencies installed.
fn tools() -> Option<PathBuf> {
    node::prepare("tools", "@urql/core")
}

/// Runs `program args` in `dir` with `env`, off the async runtime.
async fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir);
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::task::spawn_blocking(move || command.output().expect("spawn"))
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `node SCRIPT ARGS` in `tests/tools`; its stdout, which must be one JSON value when `json`.
async fn node_script(dir: &Path, script: &str, args: &[&str]) -> String {
    let mut all = vec![script];
    all.extend_from_slice(args);
    let out = run(dir, "node", &all, &[]).await;
    assert!(out.status.success(), "node {script}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------- standard introspection

/// A data query 14 deep, beyond the default `max_query_depth` of 12.
const DEEP_DATA: &str = "actions(first: 1) { nodes { parent { parent { parent { parent { parent { parent { parent { parent { parent { parent { parent { id } } } } } } } } } } } } }";

async fn the_standard_introspection_query_passes_and_data_keeps_its_limits(app: TestApp) {
    let Some(dir) = tools() else {
        return;
    };
    let standard = node_script(&dir, "introspection-query.mjs", &[]).await;
    assert!(standard.contains("isOneOf") && standard.contains("specifiedByURL"));
    let ask = |viewer: &'static str, query: String, operation: Option<&'static str>| {
        let app = &app;
        async move {
            let mut headers = vec![];
            if !viewer.is_empty() {
                headers.push((TEST_VIEWER, viewer));
            }
            let (_, _, body) = app
                .post_json(
                    &json!({ "query": query, "operationName": operation }),
                    &headers,
                )
                .await;
            body
        }
    };
    let may = "scopes=introspect";

    // Every option of graphql-js 16's getIntrospectionQuery, for a caller who may introspect.
    let body = ask(may, standard.clone(), Some("IntrospectionQuery")).await;
    assert!(body.get("errors").is_none(), "{body:#}");
    let schema = &body["data"]["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    let types: Vec<&str> = schema["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for ty in ["Action", "Actor", "ActionFilter", "PartialDate", "__Type"] {
        assert!(types.contains(&ty), "{ty} missing from {types:?}");
    }
    // Anyone else: refused, as before.
    assert_eq!(
        error_code(&ask("", standard.clone(), None).await),
        "INTROSPECTION_DISABLED"
    );
    assert_eq!(
        error_code(&ask("scopes=read", standard.clone(), None).await),
        "INTROSPECTION_DISABLED"
    );

    // A data field beside it: the document reads data, the data limits hold (the standard
    // query's `ofType` chain is 13 deep).
    let mixed = standard.replacen(
        "query IntrospectionQuery {",
        "query IntrospectionQuery {\n    viewer { scopes }",
        1,
    );
    assert_ne!(mixed, standard);
    assert_eq!(error_code(&ask(may, mixed, None).await), "QUERY_TOO_DEEP");
    // A deep data query is refused alone and beside introspection, in one operation or two.
    for document in [
        format!("{{ {DEEP_DATA} }}"),
        format!("{{ __schema {{ queryType {{ name }} }} {DEEP_DATA} }}"),
        format!("{{ __typename ... on Query {{ {DEEP_DATA} }} }}"),
    ] {
        assert_eq!(
            error_code(&ask(may, document.clone(), None).await),
            "QUERY_TOO_DEEP",
            "{document}"
        );
    }
    let beside = format!("{standard}\nquery Data {{ {DEEP_DATA} }}");
    for operation in ["IntrospectionQuery", "Data"] {
        assert_eq!(
            error_code(&ask(may, beside.clone(), Some(operation)).await),
            "QUERY_TOO_DEEP",
            "{operation}"
        );
    }
    // Introspection has bounds of its own: lists of types nested three deep multiply the
    // answer, and the `ofType` chain stops at the introspection depth limit.
    let fan_out =
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
    let body = ask(may, fan_out.into(), None).await;
    assert_eq!(error_code(&body), "QUERY_TOO_DEEP", "{body:#}");
    let chain = |n: usize| {
        format!(
            "{{ __type(name: \"Query\") {{ {} name {} }} }}",
            "ofType { ".repeat(n),
            "}".repeat(n)
        )
    };
    let body = ask(may, chain(15), None).await;
    assert!(body.get("errors").is_none(), "{body:#}");
    assert_eq!(
        error_code(&ask(may, chain(25), None).await),
        "QUERY_TOO_DEEP"
    );
}

// ---------------------------------------------------------------- GraphQL Code Generator

async fn codegen_types_a_dashboard_query_from_the_live_schema(app: TestApp) {
    let Some(dir) = tools() else {
        return;
    };
    app.seed().await;
    let url = app.url("/graphql");
    let out_dir = tempfile::tempdir().unwrap();
    let generated = out_dir.path().join("graphql.ts");
    let codegen = |token: String| {
        let (dir, url, generated) = (dir.clone(), url.clone(), generated.clone());
        async move {
            run(
                &dir,
                "node",
                &[
                    "node_modules/@graphql-codegen/cli/cjs/bin.js",
                    "--config",
                    "codegen.ts",
                ],
                &[
                    ("PASSERELLE_URL", &url),
                    ("PASSERELLE_TOKEN", &token),
                    ("CODEGEN_OUT", generated.to_str().unwrap()),
                ],
            )
            .await
        }
    };
    // A token without the `introspect` scope cannot read the schema.
    let reader = app.token("caravan", "read").await;
    let refused = codegen(reader).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(!generated.exists());

    let developer = app.token("caravan", "read introspect").await;
    let made = codegen(developer).await;
    assert!(made.status.success(), "{}", text(&made));
    let types = std::fs::read_to_string(&generated).unwrap();
    assert!(types.contains("export type DashboardQuery"), "{types}");
    assert!(
        types.contains("export type DashboardQueryVariables"),
        "{types}"
    );

    // The generated file type-checks, and is precise enough to refuse misuse.
    std::fs::copy(
        dir.join("dashboard").join("check.ts"),
        out_dir.path().join("check.ts"),
    )
    .unwrap();
    let check = out_dir.path().join("check.ts");
    let tsc = run(
        &dir,
        "node",
        &[
            "node_modules/typescript/bin/tsc",
            "--noEmit",
            "--strict",
            "--target",
            "es2020",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            check.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(tsc.status.success(), "{}", text(&tsc));
}

// ---------------------------------------------------------------- schemathesis

/// `tests/tools/.venv` with schemathesis installed from PyPI; `None` (skip) without Python.
fn schemathesis() -> Option<PathBuf> {
    let venv = node::package_dir("tools").join(".venv");
    let st = venv.join("bin").join("st");
    static PIP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = PIP.lock().unwrap_or_else(|e| e.into_inner());
    let installed = Command::new(&st)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SCHEMATHESIS));
    if installed {
        return Some(st);
    }
    if Command::new("python3").arg("--version").output().is_err() {
        return missing("python3");
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success(), "python3 -m venv failed");
    let status = Command::new(venv.join("bin").join("pip"))
        .args([
            "install",
            "--quiet",
            &format!("schemathesis=={SCHEMATHESIS}"),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "pip install schemathesis failed");
    Some(st)
}

async fn schemathesis_loads_the_schema_from_the_url_and_finds_no_server_error(app: TestApp) {
    let Some(st) = tokio::task::spawn_blocking(schemathesis).await.unwrap() else {
        return;
    };
    app.seed().await;
    let token = app.token("caravan", "read introspect").await;
    let dir = tempfile::tempdir().unwrap();
    let authorization = format!("Authorization: Bearer {token}");
    let url = app.url("/graphql");
    let hooks = node::package_dir("tools");
    // Bounded by the number of examples per root field, not by time.
    let out = run(
        dir.path(),
        st.to_str().unwrap(),
        &[
            "run",
            &url,
            "--header",
            &authorization,
            "--checks",
            "no_server_error",
            "--phases",
            "fuzzing",
            "--max-examples",
            "20",
            "--seed",
            "38",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
        ],
        &[
            ("PYTHONPATH", hooks.to_str().unwrap()),
            ("SCHEMATHESIS_HOOKS", "schemathesis_hooks"),
        ],
    )
    .await;
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    // It read the schema from the URL and tested every root field, not an empty pass.
    let tested = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or_default();
    assert!(tested >= 20, "{report}");
    assert!(
        report.contains("passed") && !report.contains("failures"),
        "{report}"
    );
}

// ---------------------------------------------------------------- GraphQL over HTTP

async fn the_graphql_over_http_audit_passes_every_must_and_should(app: TestApp) {
    let Some(dir) = tools() else {
        return;
    };
    // The audit asks anonymously, and some of its queries are introspection (`__type`): it
    // runs against a server with public introspection, as `serve --demo` has.
    let public = app.spawn_beside(|c| c.public_introspection = true).await;
    let out = node_script(&dir, "audit.mjs", &[&public.url("/graphql")]).await;
    let results: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(results.len() > 40, "{out}");
    let failed: Vec<&Value> = results.iter().filter(|r| r["status"] != "ok").collect();
    let required: Vec<&&Value> = failed
        .iter()
        .filter(|r| {
            let name = r["name"].as_str().unwrap();
            name.starts_with("MUST") || name.starts_with("SHOULD")
        })
        .collect();
    assert!(required.is_empty(), "{required:#?}");
    // Every MAY refused is listed, with its reason, in docs/clients.md.
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/clients.md"))
            .unwrap();
    for r in &failed {
        let name = r["name"].as_str().unwrap();
        assert!(
            docs.contains(name),
            "docs/clients.md does not list `{name}`: {r:#}"
        );
    }
}

async fn get_from_graphql_request_and_urql_says_which_header_to_send(app: TestApp) {
    let Some(dir) = tools() else {
        return;
    };
    let url = app.url("/graphql");
    let plain: Value =
        serde_json::from_str(&node_script(&dir, "get-clients.mjs", &[&url, "plain"]).await)
            .unwrap();
    for client in ["graphqlRequest", "urql"] {
        let error = &plain[client]["error"][0];
        assert_eq!(
            error["extensions"]["code"], "CSRF_PREFLIGHT_REQUIRED",
            "{client}: {plain:#}"
        );
        let message = error["message"].as_str().unwrap();
        for header in ["apollo-require-preflight", "x-apollo-operation-name"] {
            assert!(message.contains(header), "{message}");
        }
    }
    // With the header the message names (docs/clients.md shows it), both clients' GETs pass.
    let with: Value =
        serde_json::from_str(&node_script(&dir, "get-clients.mjs", &[&url, "preflight"]).await)
            .unwrap();
    assert_eq!(
        with["graphqlRequest"]["data"]["viewer"]["scopes"],
        json!([]),
        "{with:#}"
    );
    assert_eq!(
        with["urql"]["data"]["viewer"]["scopes"],
        json!([]),
        "{with:#}"
    );
    assert_eq!(
        with["methods"],
        json!({ "graphqlRequest": "GET", "urql": "GET" }),
        "{with:#}"
    );
}

// ---------------------------------------------------------------- GraphiQL, offline

async fn graphiql_works_offline_in_headless_chromium(app: TestApp) {
    let Some(dir) = tools() else {
        return;
    };
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        missing("chromium (Debian's `chromium` package)");
        return;
    }
    app.seed().await;
    // Public introspection is off: the schema loads with the pasted token.
    assert!(!app.app.config.public_introspection);
    let token = app.token("caravan", "read introspect").await;
    let origin = app.url("");
    let out = node_script(&dir, "graphiql.mjs", &[&origin, &token]).await;
    let r: Value = serde_json::from_str(&out).unwrap();
    assert!(r.get("error").is_none(), "{r:#}");
    assert_eq!(
        r["steps"],
        json!(["rendered", "headers", "docs", "ran"]),
        "{r:#}"
    );
    // Nothing but the server was asked for anything.
    assert_eq!(r["blocked"], json!([]), "{r:#}");
    let served: Vec<&str> = r["served"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(
        served
            .iter()
            .any(|u| u.ends_with("/graphiql/assets/graphiql-3.8.3.min.js")),
        "{served:?}"
    );
    assert_eq!(r["pageErrors"], json!([]), "{r:#}");
    // The page's Content-Security-Policy (this server only) let GraphiQL do all of it.
    let console = r["console"].to_string();
    assert!(!console.contains("Content Security Policy"), "{console}");
    // GraphiQL's introspection loaded the schema into the docs explorer.
    let docs = r["docs"].as_str().unwrap();
    assert!(
        docs.contains("Query") && docs.contains("Mutation"),
        "{docs}"
    );
    let fields: Vec<&str> = r["queryFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"actions") && fields.contains(&"viewer"),
        "{fields:?}"
    );
    // The query ran with the pasted token, and its answer is in the result pane.
    let response = r["response"].as_str().unwrap();
    for expected in ["\"introspect\"", "\"caravan\"", "\"totalCount\""] {
        assert!(response.contains(expected), "{expected} not in {response}");
    }
}

/// The page and its assets over plain HTTP: no external URL, pinned names cached for good,
/// gzip for clients that take it, plain bytes for the others.
async fn graphiql_assets_are_served_from_the_binary(app: TestApp) {
    let page = app.http.get(app.url("/graphiql")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'self';"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("http:") && !html.contains("https:") && !html.contains("//"));
    let assets: Vec<&str> = html
        .split("\"graphiql/assets/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(assets.len(), 5, "{html}");
    for name in &assets {
        let url = app.url(&format!("/graphiql/assets/{name}"));
        let plain = app
            .http
            .get(&url)
            .header("accept-encoding", "identity")
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), 200, "{name}");
        let content_type = plain.headers()["content-type"].to_str().unwrap().to_owned();
        let expected = if name.ends_with(".css") {
            "text/css; charset=utf-8"
        } else {
            "text/javascript; charset=utf-8"
        };
        assert_eq!(content_type, expected, "{name}");
        assert!(plain.headers().get("content-encoding").is_none(), "{name}");
        let cache = plain.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = plain.bytes().await.unwrap();
        assert!(!body.starts_with(&[0x1f, 0x8b]), "{name} is not gzip");
        if *name == "start.js" {
            assert_eq!(cache, "no-cache");
            continue;
        }
        assert_eq!(cache, "public, max-age=31536000, immutable", "{name}");
        let gz = app
            .http
            .get(&url)
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .unwrap();
        assert_eq!(gz.headers()["content-encoding"], "gzip", "{name}");
        let gz = gz.bytes().await.unwrap();
        assert!(
            gz.starts_with(&[0x1f, 0x8b]) && gz.len() < body.len(),
            "{name}"
        );
    }
    let missing = app
        .http
        .get(app.url("/graphiql/assets/react-17.0.0.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

backend_tests!(
    the_standard_introspection_query_passes_and_data_keeps_its_limits,
    codegen_types_a_dashboard_query_from_the_live_schema,
    schemathesis_loads_the_schema_from_the_url_and_finds_no_server_error,
    the_graphql_over_http_audit_passes_every_must_and_should,
    get_from_graphql_request_and_urql_says_which_header_to_send,
    graphiql_works_offline_in_headless_chromium,
    graphiql_assets_are_served_from_the_binary,
);
