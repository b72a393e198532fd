//! Issue 32: one visibility policy for every path, tried from outside over real HTTP with real
//! tokens, on both backends.
//!
//! A small graph that crosses visibility is written through the normal write path (GraphQL
//! upserts, as its owners); then for every reader (anonymous, each demo partner with `read`,
//! `read read:sensitive`, `write` only, `research` only, and a partner with a data-sharing
//! agreement) GraphQL, `/export/*` (NDJSON and CSV), lookups and `_entities` must agree field by
//! field; hidden answers exactly as missing (filters and writes); the response cache never mixes
//! callers nor serves what a write hid; bad text is `BAD_USER_INPUT`; `_service` follows the
//! introspection rule; ending an agreement takes effect at once.
//!
//! Record ids a partner writes start with `{partner}-` (the design chosen for issue 32).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Backend, TestApp};
use passerelle::graphql::ids::{encode, Kind};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Callers and HTTP

/// Someone calling over HTTP: anonymous or the holder of a real token.
#[derive(Clone)]
struct Caller {
    label: String,
    partner: Option<&'static str>,
    scopes: Vec<&'static str>,
    token: Option<String>,
}

impl Caller {
    fn anonymous() -> Caller {
        Caller {
            label: "anonymous".into(),
            partner: None,
            scopes: vec![],
            token: None,
        }
    }

    /// A new client of `partner` with `scopes`, and a token from `/oauth/token`.
    async fn new(app: &TestApp, partner: &'static str, scopes: &'static str) -> Caller {
        Caller {
            label: format!("{partner}[{scopes}]"),
            partner: Some(partner),
            scopes: scopes.split_whitespace().collect(),
            token: Some(app.token(partner, scopes).await),
        }
    }

    fn has(&self, scope: &str) -> bool {
        self.scopes.contains(&scope)
    }
}

struct Answer {
    status: u16,
    hit: bool,
    body: Value,
}

async fn gql(app: &TestApp, who: &Caller, query: &str, variables: Value) -> Answer {
    let mut req = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = &who.token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let hit = res
        .headers()
        .get("x-passerelle-cache")
        .is_some_and(|v| v == "hit");
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, hit, body }
}

async fn export(app: &TestApp, who: &Caller, kind: &str, format: &str) -> (u16, String) {
    let mut req = app
        .http
        .get(app.url(&format!("/export/{kind}?format={format}")));
    if let Some(t) = &who.token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// POSTs an NDJSON file to `/import` as `who`; status and JSON body.
async fn import(app: &TestApp, who: &Caller, ndjson: &str) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url("/import"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson.to_owned());
    if let Some(t) = &who.token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The app with the demo data and no rate limits (these tests send many requests quickly).
async fn spawn(
    backend: Backend,
    adjust: impl FnOnce(&mut passerelle::config::Config),
) -> Option<TestApp> {
    let app = TestApp::spawn_with(backend, |c| {
        c.rate_limit.enabled = false;
        adjust(c);
    })
    .await?;
    app.seed().await;
    Some(app)
}

fn gid(kind: Kind, local: &str) -> String {
    encode(kind, local).0
}

fn kind_of(kind: &str) -> Kind {
    match kind {
        "actor" => Kind::Actor,
        "action" => Kind::Action,
        "outcome" => Kind::Outcome,
        "partnership" => Kind::Partnership,
        other => panic!("kind {other}"),
    }
}

fn short(v: &impl std::fmt::Display) -> String {
    let s = v.to_string();
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…({} chars)", &s[..end], s.len())
    } else {
        s
    }
}

fn first_code(body: &Value) -> String {
    common::error_code(body)
}

fn report(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The fixture: a graph that crosses visibility, written through GraphQL upserts by its owners.

struct Fx {
    kind: &'static str,
    id: &'static str,
    vis: &'static str,
    /// The parent actor / parent action / the action served or reported on.
    refers: Option<&'static str>,
    members: &'static [&'static str],
}

const fn fx(
    kind: &'static str,
    id: &'static str,
    vis: &'static str,
    refers: Option<&'static str>,
    members: &'static [&'static str],
) -> Fx {
    Fx {
        kind,
        id,
        vis,
        refers,
        members,
    }
}

/// In writing order (references first). caravan shares with department.
const FIXTURE: &[Fx] = &[
    fx("actor", "caravan-pv", "PRIVATE", None, &[]),
    fx("actor", "caravan-pa", "PARTNERS", None, &[]),
    fx("actor", "anvita-pub", "PUBLIC", None, &[]),
    fx("actor", "caravan-pub", "PUBLIC", Some("caravan-pv"), &[]),
    fx("actor", "caravan-pub2", "PUBLIC", Some("caravan-pa"), &[]),
    fx("action", "caravan-prog", "PRIVATE", None, &[]),
    fx("action", "caravan-pact", "PARTNERS", None, &[]),
    fx("action", "caravan-pubact", "PUBLIC", None, &[]),
    fx("action", "anvita-act", "PUBLIC", None, &[]),
    fx("action", "caravan-sub", "PUBLIC", Some("caravan-prog"), &[]),
    fx(
        "action",
        "caravan-sub2",
        "PUBLIC",
        Some("caravan-pact"),
        &[],
    ),
    fx(
        "outcome",
        "caravan-out",
        "PUBLIC",
        Some("caravan-pubact"),
        &[],
    ),
    fx(
        "outcome",
        "caravan-out2",
        "PUBLIC",
        Some("caravan-prog"),
        &[],
    ),
    fx(
        "outcome",
        "caravan-outpv",
        "PRIVATE",
        Some("caravan-pubact"),
        &[],
    ),
    fx(
        "partnership",
        "caravan-ps",
        "PUBLIC",
        Some("caravan-prog"),
        &["anvita-pub", "caravan-pa", "caravan-pv", "caravan-pub"],
    ),
    fx(
        "partnership",
        "caravan-ps2",
        "PARTNERS",
        Some("caravan-pact"),
        &["caravan-pub", "caravan-pa"],
    ),
    fx(
        "partnership",
        "caravan-ps3",
        "PUBLIC",
        Some("caravan-pact"),
        &["caravan-pa", "anvita-pub"],
    ),
    fx(
        "partnership",
        "caravan-pspv",
        "PRIVATE",
        Some("caravan-pubact"),
        &["caravan-pv"],
    ),
];

fn fixture(id: &str) -> &'static Fx {
    FIXTURE.iter().find(|f| f.id == id).unwrap()
}

fn owner(id: &str) -> &str {
    id.split('-').next().unwrap()
}

/// The policy, stated independently of the code: who may see a fixture record.
fn may_see(who: &Caller, id: &str) -> bool {
    let Some(f) = FIXTURE.iter().find(|f| f.id == id) else {
        return false; // missing
    };
    let me = if who.has("read") { who.partner } else { None };
    let own = match f.vis {
        "PUBLIC" => true,
        "PRIVATE" => me == Some(owner(id)),
        "PARTNERS" => me == Some(owner(id)) || (owner(id) == "caravan" && me == Some("department")),
        other => panic!("visibility {other}"),
    };
    // An outcome is seen with its action only (as every read path has it today).
    own && (f.kind != "outcome" || f.refers.is_some_and(|a| may_see(who, a)))
}

const ROLES: [&str; 4] = ["LEAD", "IMPLEMENTER", "FUNDER", "PARTICIPANT"];

fn input(f: &Fx) -> (&'static str, &'static str, Value) {
    let id = f.id;
    match f.kind {
        "actor" => (
            "upsertActor",
            "ActorInput",
            json!({
                "id": id, "kind": "ASSOCIATION", "name": format!("Actor {id}"),
                "acronym": "ACR", "description": format!("About {id}"),
                "website": format!("https://example.org/{id}"),
                "territoryCode": "38185", "territoryName": "Grenoble",
                "parentActorId": f.refers, "visibility": f.vis, "sourceRef": format!("src-{id}"),
            }),
        ),
        "action" => (
            "upsertAction",
            "ActionInput",
            json!({
                "id": id,
                "kind": if id.ends_with("prog") { "PROGRAMME" } else { "WORKSHOP" },
                "title": format!("Action {id}"), "summary": format!("Summary of {id}"),
                "status": "ACTIVE", "startsOn": "2024-01", "endsOn": "2025", "schedule": "weekly",
                "parentActionId": f.refers, "website": format!("https://example.org/{id}"),
                "themes": ["access-to-rights"],
                "places": [{ "name": "Grenoble", "level": "COMMUNE", "inseeCode": "38185" }],
                "visibility": f.vis, "sourceRef": format!("src-{id}"),
            }),
        ),
        "outcome" => (
            "upsertOutcome",
            "OutcomeInput",
            json!({
                "id": id, "actionId": f.refers, "indicator": format!("Indicator {id}"),
                "measure": "ACTUAL", "value": 12.5, "unit": "people",
                "statement": format!("Stated {id}"), "periodStart": "2024", "periodEnd": "2024-12",
                "disaggregations": [
                    { "dimension": "district", "category": "Nord", "value": 7.5 },
                    { "dimension": "district", "category": "Sud", "value": 5.0 }
                ],
                "visibility": f.vis, "sourceRef": format!("src-{id}"),
            }),
        ),
        "partnership" => (
            "upsertPartnership",
            "PartnershipInput",
            json!({
                "id": id, "actionId": f.refers, "name": format!("Partnership {id}"),
                "description": format!("About {id}"), "startsOn": "2024-02", "endsOn": "2024-11-30",
                "members": f.members.iter().enumerate()
                    .map(|(i, a)| json!({ "actorId": a, "role": ROLES[i % ROLES.len()] }))
                    .collect::<Vec<_>>(),
                "visibility": f.vis, "sourceRef": format!("src-{id}"),
            }),
        ),
        other => panic!("kind {other}"),
    }
}

async fn upsert(
    app: &TestApp,
    who: &Caller,
    field: &str,
    input_type: &str,
    input: &Value,
) -> Answer {
    let q = format!("mutation($input: {input_type}!) {{ {field}(input: $input) {{ effect }} }}");
    gql(app, who, &q, json!({ "input": input })).await
}

/// The writers of the fixture.
struct Writers {
    caravan: Caller,
    anvita: Caller,
}

/// Writes the fixture through GraphQL upserts, as each record's owner; caravan shares its
/// PARTNERS records with department.
async fn write_fixture(app: &TestApp) -> Writers {
    let writers = Writers {
        caravan: Caller::new(app, "caravan", "read write").await,
        anvita: Caller::new(app, "anvita", "read write").await,
    };
    for f in FIXTURE {
        let who = match owner(f.id) {
            "caravan" => &writers.caravan,
            _ => &writers.anvita,
        };
        let (field, ty, value) = input(f);
        let a = upsert(app, who, field, ty, &value).await;
        assert!(
            a.body.get("errors").is_none() && a.body["data"][field]["effect"] == "CREATED",
            "fixture {} by {}: {}",
            f.id,
            who.label,
            a.body
        );
    }
    app.app
        .store
        .run(|c| passerelle::auth::sharing::grant(c, "caravan", "department", "2020-01-01", None))
        .await
        .map_err(|e| e.message())
        .unwrap();
    writers
}

/// Every reader of the matrix.
async fn readers(app: &TestApp) -> Vec<Caller> {
    let mut all = vec![Caller::anonymous()];
    for p in ["collective", "department", "anvita", "caravan"] {
        all.push(Caller::new(app, p, "read").await);
    }
    all.push(Caller::new(app, "anvita", "read read:sensitive").await);
    all.push(Caller::new(app, "caravan", "read read:sensitive").await);
    all.push(Caller::new(app, "department", "read read:sensitive").await);
    all.push(Caller::new(app, "collective", "write").await);
    all.push(Caller::new(app, "caravan", "write").await);
    all.push(Caller::new(app, "anvita", "research").await);
    all
}

// ---------------------------------------------------------------------------------------------
// A. One projection: GraphQL and export agree field by field for every reader.

const KINDS: [(&str, &str); 4] = [
    ("actors", "actor"),
    ("actions", "action"),
    ("outcomes", "outcome"),
    ("partnerships", "partnership"),
];

const PROVENANCE: &str =
    "owner { slug } visibility provenance { source sourceRef importedAt updatedAt }";

fn selection(kind: &str) -> String {
    let fields = match kind {
        "actor" => "localId kind name acronym description website territoryCode territoryName parent { localId }",
        "action" => "localId kind title summary status startsOn endsOn schedule website themes places { name level inseeCode } parent { localId }",
        "outcome" => "localId indicator measure value unit statement periodStart periodEnd disaggregations { dimension category value } action { localId }",
        "partnership" => "localId name description startsOn endsOn action { localId } members { actor { localId } role }",
        other => panic!("kind {other}"),
    };
    format!("{fields} {PROVENANCE}")
}

/// Drops nulls, empty lists and empty strings; numbers as f64: what "absent" means in both
/// GraphQL and export.
fn clean(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(clean).collect())),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| clean(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        Value::Number(n) => Some(json!(n.as_f64().unwrap())),
        other => Some(other.clone()),
    }
}

fn sort_members(rec: &mut serde_json::Map<String, Value>) {
    if let Some(Value::Array(members)) = rec.get_mut("members") {
        members.sort_by_key(|m| m.to_string());
    }
}

type Records = BTreeMap<String, Value>;

/// A GraphQL node in the export's shape (snake_case, references as ids).
fn from_graphql(kind: &str, node: &Value) -> Value {
    let mut m = serde_json::Map::new();
    let get = |k: &str| node.get(k).cloned().unwrap_or(Value::Null);
    m.insert("type".into(), json!(kind));
    m.insert("id".into(), get("localId"));
    m.insert("owner".into(), node["owner"]["slug"].clone());
    m.insert("visibility".into(), get("visibility"));
    for (g, e) in [
        ("source", "source"),
        ("sourceRef", "source_ref"),
        ("importedAt", "imported_at"),
        ("updatedAt", "updated_at"),
    ] {
        m.insert(e.into(), node["provenance"][g].clone());
    }
    let scalars: &[(&str, &str)] = match kind {
        "actor" => &[
            ("kind", "kind"),
            ("name", "name"),
            ("acronym", "acronym"),
            ("description", "description"),
            ("website", "website"),
            ("territoryCode", "territory_code"),
            ("territoryName", "territory_name"),
        ],
        "action" => &[
            ("kind", "kind"),
            ("title", "title"),
            ("summary", "summary"),
            ("status", "status"),
            ("startsOn", "starts_on"),
            ("endsOn", "ends_on"),
            ("schedule", "schedule"),
            ("website", "website"),
            ("themes", "themes"),
        ],
        "outcome" => &[
            ("indicator", "indicator"),
            ("measure", "measure"),
            ("value", "value"),
            ("unit", "unit"),
            ("statement", "statement"),
            ("periodStart", "period_start"),
            ("periodEnd", "period_end"),
            ("disaggregations", "disaggregations"),
        ],
        "partnership" => &[
            ("name", "name"),
            ("description", "description"),
            ("startsOn", "starts_on"),
            ("endsOn", "ends_on"),
        ],
        _ => &[],
    };
    for (g, e) in scalars {
        m.insert((*e).into(), get(g));
    }
    match kind {
        "actor" => {
            m.insert("parent_actor_id".into(), node["parent"]["localId"].clone());
        }
        "action" => {
            m.insert("parent_action_id".into(), node["parent"]["localId"].clone());
            let places: Vec<Value> = node["places"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| json!({ "name": p["name"], "level": p["level"], "insee_code": p["inseeCode"] }))
                .collect();
            m.insert("places".into(), Value::Array(places));
        }
        "outcome" => {
            m.insert("action_id".into(), node["action"]["localId"].clone());
        }
        "partnership" => {
            m.insert("action_id".into(), node["action"]["localId"].clone());
            let members: Vec<Value> = node["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|x| json!({ "actor_id": x["actor"]["localId"], "role": x["role"] }))
                .collect();
            m.insert("members".into(), Value::Array(members));
        }
        _ => {}
    }
    let mut cleaned = clean(&Value::Object(m)).unwrap();
    sort_members(cleaned.as_object_mut().unwrap());
    cleaned
}

/// Every record of `field` the reader gets from GraphQL, in the export's shape; problems with
/// the response itself (unexpected errors, a refused field left out of `data`) go to `problems`.
async fn graphql_records(
    app: &TestApp,
    who: &Caller,
    field: &str,
    kind: &str,
    problems: &mut Vec<String>,
) -> Records {
    let query = format!(
        "query($after: String) {{ {field}(first: 100, after: $after) {{ totalCount pageInfo {{ hasNextPage endCursor }} nodes {{ {} }} }} }}",
        selection(kind)
    );
    let mut out = Records::new();
    let mut after = Value::Null;
    loop {
        let a = gql(app, who, &query, json!({ "after": after })).await;
        let body = &a.body;
        if a.status != 200 || body["data"][field].is_null() {
            problems.push(format!(
                "{} GraphQL {field}: status {} {}",
                who.label,
                a.status,
                short(body)
            ));
            return out;
        }
        for e in body["errors"].as_array().cloned().unwrap_or_default() {
            let code = e["extensions"]["code"].as_str().unwrap_or_default();
            let last = e["path"].as_array().and_then(|p| p.last()).cloned();
            let allowed = code == "FORBIDDEN_FIELD"
                && last == Some(json!("disaggregations"))
                && !who.has("read:sensitive");
            if !allowed {
                problems.push(format!(
                    "{} GraphQL {field}: unexpected error {}",
                    who.label,
                    short(&e)
                ));
            }
        }
        let conn = &body["data"][field];
        let mut omitted = Vec::new();
        for n in conn["nodes"].as_array().cloned().unwrap_or_default() {
            if kind == "outcome" {
                let present = n
                    .as_object()
                    .is_some_and(|o| o.contains_key("disaggregations"));
                if !present {
                    omitted.push(n["localId"].as_str().unwrap_or_default().to_owned());
                } else if !who.has("read:sensitive") && !n["disaggregations"].is_null() {
                    problems.push(format!(
                        "{} GraphQL outcomes: {} shows disaggregations without read:sensitive",
                        who.label, n["localId"]
                    ));
                }
            }
            let r = from_graphql(kind, &n);
            out.insert(r["id"].as_str().unwrap().to_owned(), r);
        }
        if !omitted.is_empty() {
            problems.push(format!(
                "{} GraphQL outcomes: `disaggregations` (refused) is left out of `data` instead of null for {} outcome(s): {}",
                who.label,
                omitted.len(),
                omitted.join(", ")
            ));
        }
        if conn["pageInfo"]["hasNextPage"] != json!(true) {
            if conn["totalCount"].as_u64() != Some(out.len() as u64) {
                problems.push(format!(
                    "{} GraphQL {field}: totalCount {} but {} records listed",
                    who.label,
                    conn["totalCount"],
                    out.len()
                ));
            }
            return out;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
}

fn from_ndjson(text: &str, ctx: &str, problems: &mut Vec<String>) -> Records {
    let mut out = Records::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => {
                let mut r = clean(&v).unwrap();
                sort_members(r.as_object_mut().unwrap());
                out.insert(r["id"].as_str().unwrap_or_default().to_owned(), r);
            }
            Err(e) => problems.push(format!("{ctx}: not JSON ({e}): {}", short(&line))),
        }
    }
    out
}

const JSON_COLUMNS: [&str; 4] = ["themes", "places", "disaggregations", "members"];

fn from_csv(text: &str, ctx: &str, problems: &mut Vec<String>) -> Records {
    let mut out = Records::new();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            problems.push(format!("{ctx}: no CSV header ({e})"));
            return out;
        }
    };
    for row in reader.records() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{ctx}: bad CSV row ({e})"));
                continue;
            }
        };
        let mut m = serde_json::Map::new();
        for (h, cell) in headers.iter().zip(row.iter()) {
            if cell.is_empty() {
                continue;
            }
            let v = if JSON_COLUMNS.contains(&h) {
                serde_json::from_str(cell).unwrap_or_else(|_| json!(format!("<bad JSON> {cell}")))
            } else if h == "value" {
                cell.parse::<f64>()
                    .map(|f| json!(f))
                    .unwrap_or_else(|_| json!(cell))
            } else {
                json!(cell)
            };
            m.insert(h.to_owned(), v);
        }
        let mut r = clean(&Value::Object(m)).unwrap();
        sort_members(r.as_object_mut().unwrap());
        out.insert(r["id"].as_str().unwrap_or_default().to_owned(), r);
    }
    out
}

/// Field-by-field differences between what GraphQL gave and what a path gave.
fn compare(ctx: &str, graphql: &Records, other: &Records, problems: &mut Vec<String>) {
    for id in graphql.keys().filter(|k| !other.contains_key(*k)) {
        problems.push(format!("{ctx}: {id} is in GraphQL but not in the export"));
    }
    for id in other.keys().filter(|k| !graphql.contains_key(*k)) {
        problems.push(format!(
            "{ctx}: {id} is in the export but not in GraphQL: {}",
            short(&other[id])
        ));
    }
    for (id, g) in graphql {
        let Some(o) = other.get(id) else { continue };
        let (g, o) = (g.as_object().unwrap(), o.as_object().unwrap());
        let keys: BTreeSet<&String> = g.keys().chain(o.keys()).collect();
        for k in keys {
            if g.get(k) != o.get(k) {
                problems.push(format!(
                    "{ctx}: {id}.{k}: GraphQL {} vs export {}",
                    g.get(k).map_or("(absent)".into(), short),
                    o.get(k).map_or("(absent)".into(), short)
                ));
            }
        }
    }
}

/// The fixture records as this reader should get them, by the independent policy.
fn check_policy(who: &Caller, kind: &str, got: &Records, problems: &mut Vec<String>) {
    let ref_field = match kind {
        "actor" => "parent_actor_id",
        "action" => "parent_action_id",
        _ => "action_id",
    };
    for f in FIXTURE.iter().filter(|f| f.kind == kind) {
        let ctx = format!("{} GraphQL {kind} {}", who.label, f.id);
        let Some(rec) = got.get(f.id) else {
            if may_see(who, f.id) {
                problems.push(format!(
                    "{ctx}: missing, but the policy lets this reader see it"
                ));
            }
            continue;
        };
        if !may_see(who, f.id) {
            problems.push(format!("{ctx}: shown, but the policy hides it"));
            continue;
        }
        let want = f.refers.filter(|r| may_see(who, r)).map(|r| json!(r));
        if rec.get(ref_field) != want.as_ref() {
            problems.push(format!(
                "{ctx}: {ref_field} is {:?}, expected {:?}",
                rec.get(ref_field),
                want
            ));
        }
        if kind == "partnership" {
            let want: BTreeSet<&str> = f
                .members
                .iter()
                .copied()
                .filter(|m| may_see(who, m))
                .collect();
            let got: BTreeSet<&str> = rec["members"]
                .as_array()
                .map(|a| a.iter().filter_map(|m| m["actor_id"].as_str()).collect())
                .unwrap_or_default();
            if want != got {
                problems.push(format!("{ctx}: members {got:?}, expected {want:?}"));
            }
        }
        if kind == "outcome" && rec.get("disaggregations").is_some() != who.has("read:sensitive") {
            problems.push(format!(
                "{ctx}: disaggregations {} (read:sensitive: {})",
                if rec.get("disaggregations").is_some() {
                    "shown"
                } else {
                    "absent"
                },
                who.has("read:sensitive")
            ));
        }
    }
}

/// node / typed lookup / nodes / `_entities`: a fixture record the reader may see, else null
/// exactly as for an id that never existed.
async fn check_lookups(app: &TestApp, who: &Caller, problems: &mut Vec<String>) {
    let mut targets: Vec<(&str, String)> =
        FIXTURE.iter().map(|f| (f.kind, f.id.to_owned())).collect();
    for (_, kind) in KINDS {
        targets.push((kind, "caravan-zzzz".into()));
    }
    for chunk in targets.chunks(10) {
        let mut doc = String::from("{");
        for (i, (kind, id)) in chunk.iter().enumerate() {
            let g = gid(kind_of(kind), id);
            doc.push_str(&format!(
                " n{i}: node(id: \"{g}\") {{ id }} t{i}: {kind}(id: \"{g}\") {{ id }}"
            ));
        }
        doc.push_str(" }");
        let a = gql(app, who, &doc, json!({})).await;
        if a.body.get("errors").is_some() {
            problems.push(format!("{} lookups: errors {}", who.label, short(&a.body)));
        }
        for (i, (kind, id)) in chunk.iter().enumerate() {
            for p in ["n", "t"] {
                let shown = !a.body["data"][format!("{p}{i}")].is_null();
                if shown != may_see(who, id) {
                    problems.push(format!(
                        "{} {} {kind} {id}: {}",
                        who.label,
                        if p == "n" {
                            "node(id:)"
                        } else {
                            "typed lookup"
                        },
                        if shown {
                            "shown but hidden by the policy"
                        } else {
                            "null but visible"
                        }
                    ));
                }
            }
        }
    }
    let ids: Vec<String> = targets.iter().map(|(k, id)| gid(kind_of(k), id)).collect();
    let reps: Vec<Value> = targets
        .iter()
        .map(|(k, id)| {
            let mut t = k.to_string();
            t[..1].make_ascii_uppercase();
            json!({ "__typename": t, "id": gid(kind_of(k), id) })
        })
        .collect();
    let a = gql(
        app,
        who,
        "query($ids: [ID!]!, $r: [_Any!]!) { nodes(ids: $ids) { id } _entities(representations: $r) { ... on Actor { id } ... on Action { id } ... on Outcome { id } ... on Partnership { id } } }",
        json!({ "ids": ids, "r": reps }),
    )
    .await;
    if a.body.get("errors").is_some() {
        problems.push(format!(
            "{} nodes/_entities: errors {}",
            who.label,
            short(&a.body)
        ));
    }
    for field in ["nodes", "_entities"] {
        for (i, (kind, id)) in targets.iter().enumerate() {
            let shown = !a.body["data"][field][i].is_null();
            if shown != may_see(who, id) {
                problems.push(format!(
                    "{} {field} {kind} {id}: {}",
                    who.label,
                    if shown {
                        "shown but hidden by the policy"
                    } else {
                        "null but visible"
                    }
                ));
            }
        }
    }
}

async fn graphql_and_export_agree_for_every_reader(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    write_fixture(&app).await;
    let mut problems = Vec::new();
    for who in readers(&app).await {
        for (field, kind) in KINDS {
            let g = graphql_records(&app, &who, field, kind, &mut problems).await;
            check_policy(&who, kind, &g, &mut problems);
            for format in ["ndjson", "csv"] {
                let ctx = format!("{} /export/{field}?format={format}", who.label);
                let (status, text) = export(&app, &who, field, format).await;
                if status != 200 {
                    problems.push(format!("{ctx}: status {status} {}", short(&text)));
                    continue;
                }
                let e = if format == "csv" {
                    from_csv(&text, &ctx, &mut problems)
                } else {
                    from_ndjson(&text, &ctx, &mut problems)
                };
                compare(&ctx, &g, &e, &mut problems);
            }
        }
        check_lookups(&app, &who, &mut problems).await;
        check_nested(&app, &who, &mut problems).await;
    }
    report(&problems);
}

fn visible_fixture<'a>(
    who: &'a Caller,
    kind: &'a str,
    keep: impl Fn(&Fx) -> bool + 'a,
) -> BTreeSet<String> {
    FIXTURE
        .iter()
        .filter(|f| f.kind == kind && keep(f) && may_see(who, f.id))
        .map(|f| f.id.to_owned())
        .collect()
}

/// The fixture ids among `v[..][key]` (or `v[..][key][sub]`).
fn fixture_ids(v: &Value, key: &str, sub: Option<&str>) -> BTreeSet<String> {
    v.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| match sub {
                    Some(s) => i[key][s].as_str(),
                    None => i[key].as_str(),
                })
                .filter(|id| FIXTURE.iter().any(|f| f.id == *id))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Nested relations from every fixture action and actor the reader may see.
async fn check_nested(app: &TestApp, who: &Caller, problems: &mut Vec<String>) {
    let targets: Vec<&Fx> = FIXTURE
        .iter()
        .filter(|f| (f.kind == "action" || f.kind == "actor") && may_see(who, f.id))
        .collect();
    let ids: Vec<String> = targets.iter().map(|f| gid(kind_of(f.kind), f.id)).collect();
    let a = gql(
        app,
        who,
        "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Action { localId subActions { localId } outcomes { localId } partnerships { localId } partners { actor { localId } partnershipId } } ... on Actor { localId partnerships { localId } actions { localId } } } }",
        json!({ "ids": ids }),
    )
    .await;
    if a.body.get("errors").is_some() {
        problems.push(format!("{} nested: errors {}", who.label, short(&a.body)));
    }
    let nodes = a.body["data"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if nodes.len() != targets.len() || nodes.iter().any(Value::is_null) {
        problems.push(format!(
            "{} nested: asked {} visible records, got {}",
            who.label,
            targets.len(),
            short(&a.body)
        ));
    }
    for (f, node) in targets.iter().zip(nodes) {
        let mut check = |what: &str, got: BTreeSet<String>, want: BTreeSet<String>| {
            if got != want {
                problems.push(format!(
                    "{} {} {}.{what}: {got:?}, expected {want:?}",
                    who.label, f.kind, f.id
                ));
            }
        };
        let served = visible_fixture(who, "partnership", |p| p.refers == Some(f.id));
        if f.kind == "action" {
            check(
                "subActions",
                fixture_ids(&node["subActions"], "localId", None),
                visible_fixture(who, "action", |x| x.refers == Some(f.id)),
            );
            check(
                "outcomes",
                fixture_ids(&node["outcomes"], "localId", None),
                visible_fixture(who, "outcome", |x| x.refers == Some(f.id)),
            );
            check(
                "partnerships",
                fixture_ids(&node["partnerships"], "localId", None),
                served.clone(),
            );
            let want: BTreeSet<String> = served
                .iter()
                .flat_map(|p| fixture(p).members.iter())
                .filter(|m| may_see(who, m))
                .map(|m| (*m).to_owned())
                .collect();
            check(
                "partners",
                fixture_ids(&node["partners"], "actor", Some("localId")),
                want,
            );
            let through: BTreeSet<String> = node["partners"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p["partnershipId"].as_str().map(str::to_owned))
                .collect();
            let allowed: BTreeSet<String> =
                served.iter().map(|p| gid(Kind::Partnership, p)).collect();
            if !through.is_subset(&allowed) {
                problems.push(format!(
                    "{} action {}.partners names partnerships {through:?}, not all visible ({allowed:?})",
                    who.label, f.id
                ));
            }
        } else {
            let memberships = visible_fixture(who, "partnership", |p| p.members.contains(&f.id));
            check(
                "partnerships",
                fixture_ids(&node["partnerships"], "localId", None),
                memberships.clone(),
            );
            let want: BTreeSet<String> = memberships
                .iter()
                .filter_map(|p| fixture(p).refers)
                .filter(|x| may_see(who, x))
                .map(str::to_owned)
                .collect();
            check(
                "actions",
                fixture_ids(&node["actions"], "localId", None),
                want,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// B. Hidden == missing.

/// The response with every spelling (local and global) of the given ids replaced by `<ID>`, so
/// that an answer which merely echoes the id asked about compares equal.
fn scrub(v: &Value, ids: &[&str]) -> Value {
    let mut text = v.to_string();
    let mut spellings: Vec<String> = Vec::new();
    for id in ids {
        spellings.push((*id).to_owned());
        for k in [Kind::Actor, Kind::Action, Kind::Outcome, Kind::Partnership] {
            spellings.push(gid(k, id));
        }
    }
    spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in spellings {
        text = text.replace(&s, "<ID>");
    }
    serde_json::from_str(&text).unwrap()
}

async fn filters_answer_hidden_ids_as_missing_ones(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    write_fixture(&app).await;
    let who_cannot_see = vec![
        Caller::anonymous(),
        Caller::new(&app, "anvita", "read").await,
        Caller::new(&app, "department", "read").await,
        Caller::new(&app, "collective", "write").await,
        Caller::new(&app, "caravan", "research").await,
    ];
    // (what, query, kind, hidden, missing of the same shape)
    let cases = [
        (
            "actions(filter:{parent})",
            "query($id: ID!) { actions(first: 100, filter: { parent: $id }) { totalCount nodes { localId } } }",
            Kind::Action,
            "caravan-prog",
            "caravan-zzzz",
        ),
        (
            "partnerships(filter:{actions})",
            "query($id: ID!) { partnerships(first: 100, filter: { actions: [$id] }) { totalCount nodes { localId } } }",
            Kind::Action,
            "caravan-prog",
            "caravan-zzzz",
        ),
        (
            "outcomes(filter:{actions})",
            "query($id: ID!) { outcomes(first: 100, filter: { actions: [$id] }) { totalCount nodes { localId } } }",
            Kind::Action,
            "caravan-prog",
            "caravan-zzzz",
        ),
        (
            "partnerships(filter:{actors})",
            "query($id: ID!) { partnerships(first: 100, filter: { actors: [$id] }) { totalCount nodes { localId } } }",
            Kind::Actor,
            "caravan-pv",
            "caravan-zz",
        ),
    ];
    let mut problems = Vec::new();
    // The filters do work for whoever may see the record named.
    let owner = Caller::new(&app, "caravan", "read").await;
    let sub = gql(
        &app,
        &owner,
        cases[0].1,
        json!({ "id": gid(Kind::Action, "caravan-prog") }),
    )
    .await;
    assert!(
        sub.body.to_string().contains("caravan-sub"),
        "the owner filters by its own programme: {}",
        sub.body
    );
    for who in &who_cannot_see {
        for (what, query, kind, hidden, missing) in cases {
            assert!(!may_see(who, hidden));
            let h = gql(&app, who, query, json!({ "id": gid(kind, hidden) })).await;
            let m = gql(&app, who, query, json!({ "id": gid(kind, missing) })).await;
            let (hs, ms) = (
                scrub(&h.body, &[hidden, missing]),
                scrub(&m.body, &[hidden, missing]),
            );
            if h.status != m.status || hs != ms {
                problems.push(format!(
                    "{} {what}: hidden {hidden} answers {} {} but missing {missing} answers {} {}",
                    who.label,
                    h.status,
                    short(&h.body),
                    m.status,
                    short(&m.body)
                ));
            }
        }
    }
    report(&problems);
}

async fn writes_answer_hidden_ids_as_missing_ones(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let w = write_fixture(&app).await;
    let anvita = &w.anvita;
    let mut problems = Vec::new();
    let mut same = |what: &str, hidden: &str, missing: &str, h: (u16, Value), m: (u16, Value)| {
        let (hs, ms) = (
            scrub(&h.1, &[hidden, missing]),
            scrub(&m.1, &[hidden, missing]),
        );
        if h.0 != m.0 || hs != ms {
            problems.push(format!(
                "anvita {what}: caravan's hidden {hidden} answers {} {} but missing {missing} answers {} {}",
                h.0,
                short(&h.1),
                m.0,
                short(&m.1)
            ));
        }
        if h.0 == 500 || first_code(&h.1) == "INTERNAL_SERVER_ERROR" {
            problems.push(format!(
                "anvita {what}: {hidden} gives an internal error {}",
                short(&h.1)
            ));
        }
    };
    // Retiring another partner's record, and a missing one with the same prefix.
    for (kind, hidden, missing) in [
        ("Actor", "caravan-pv", "caravan-zz"),
        ("Action", "caravan-prog", "caravan-zzzz"),
        ("Outcome", "caravan-outpv", "caravan-zzzzz"),
        ("Partnership", "caravan-pspv", "caravan-zzzz"),
    ] {
        let q = format!("mutation($id: String!) {{ retire{kind}(id: $id) {{ localId effect }} }}");
        let h = gql(&app, anvita, &q, json!({ "id": hidden })).await;
        let m = gql(&app, anvita, &q, json!({ "id": missing })).await;
        same(
            &format!("retire{kind}"),
            hidden,
            missing,
            (h.status, h.body),
            (m.status, m.body),
        );
    }
    // Upserting over another partner's record, and a missing one with the same prefix (each
    // missing id used once: a write that wrongly succeeds must not spoil the next case).
    for (hidden, missing) in [
        ("caravan-pv", "caravan-q1"),
        ("caravan-prog", "caravan-q2"),
        ("caravan-outpv", "caravan-qq3"),
        ("caravan-pspv", "caravan-q4"),
    ] {
        let f = fixture(hidden);
        let (field, ty, mut value) = input(f);
        // As anvita would write it: references to its own records.
        value["visibility"] = json!("PUBLIC");
        match f.kind {
            "actor" => value["parentActorId"] = Value::Null,
            "action" => value["parentActionId"] = Value::Null,
            "outcome" => value["actionId"] = json!("anvita-act"),
            _ => {
                value["actionId"] = json!("anvita-act");
                value["members"] = json!([{ "actorId": "anvita-pub", "role": "LEAD" }]);
            }
        }
        let h = upsert(&app, anvita, field, ty, &value).await;
        value["id"] = json!(missing);
        let m = upsert(&app, anvita, field, ty, &value).await;
        same(
            field,
            hidden,
            missing,
            (h.status, h.body),
            (m.status, m.body),
        );
    }
    // References to another partner's hidden record, and to a missing one.
    let refs = [
        (
            "upsertAction.parentActionId",
            "upsertAction",
            "ActionInput",
            json!({ "id": "anvita-r1", "kind": "WORKSHOP", "title": "Ref", "parentActionId": "<REF>" }),
            "caravan-prog",
            "caravan-q5zz",
        ),
        (
            "upsertActor.parentActorId",
            "upsertActor",
            "ActorInput",
            json!({ "id": "anvita-r2", "kind": "ASSOCIATION", "name": "Ref", "parentActorId": "<REF>" }),
            "caravan-pv",
            "caravan-q6",
        ),
        (
            "upsertOutcome.actionId",
            "upsertOutcome",
            "OutcomeInput",
            json!({ "id": "anvita-r3", "actionId": "<REF>", "indicator": "Ref", "measure": "ACTUAL", "value": 1.0 }),
            "caravan-prog",
            "caravan-q7zz",
        ),
        (
            "upsertPartnership.actionId",
            "upsertPartnership",
            "PartnershipInput",
            json!({ "id": "anvita-r4", "name": "Ref", "actionId": "<REF>", "members": [] }),
            "caravan-prog",
            "caravan-q8zz",
        ),
        (
            "upsertPartnership.members.actorId",
            "upsertPartnership",
            "PartnershipInput",
            json!({ "id": "anvita-r5", "name": "Ref", "members": [{ "actorId": "<REF>", "role": "LEAD" }] }),
            "caravan-pv",
            "caravan-q9",
        ),
    ];
    for (what, field, ty, template, hidden, missing) in refs {
        let with = |r: &str| {
            serde_json::from_str::<Value>(&template.to_string().replace("<REF>", r)).unwrap()
        };
        let h = upsert(&app, anvita, field, ty, &with(hidden)).await;
        let m = upsert(&app, anvita, field, ty, &with(missing)).await;
        same(
            what,
            hidden,
            missing,
            (h.status, h.body),
            (m.status, m.body),
        );
    }
    // POST /import: the same, row by row.
    let rows = [
        (
            "import action id",
            r#"{"type":"action","id":"<REF>","kind":"WORKSHOP","title":"Imported","visibility":"PUBLIC"}"#,
            "caravan-prog",
            "caravan-i1zz",
        ),
        (
            "import actor id",
            r#"{"type":"actor","id":"<REF>","kind":"ASSOCIATION","name":"Imported","visibility":"PUBLIC"}"#,
            "caravan-pv",
            "caravan-i2",
        ),
        (
            "import parent_action_id",
            r#"{"type":"action","id":"anvita-i3","kind":"WORKSHOP","title":"Imported","parent_action_id":"<REF>"}"#,
            "caravan-prog",
            "caravan-i3zz",
        ),
        (
            "import outcome action_id",
            r#"{"type":"outcome","id":"anvita-i4","action_id":"<REF>","indicator":"Imported","measure":"ACTUAL","value":1}"#,
            "caravan-prog",
            "caravan-i4zz",
        ),
        (
            "import partnership member",
            r#"{"type":"partnership","id":"anvita-i5","name":"Imported","members":[{"actor_id":"<REF>","role":"LEAD"}]}"#,
            "caravan-pv",
            "caravan-i5",
        ),
    ];
    for (what, row, hidden, missing) in rows {
        let h = import(&app, anvita, &format!("{}\n", row.replace("<REF>", hidden))).await;
        let m = import(
            &app,
            anvita,
            &format!("{}\n", row.replace("<REF>", missing)),
        )
        .await;
        same(what, hidden, missing, h, m);
    }
    // The design that makes this hold: a partner's ids start with its slug; any other id is
    // refused on field `id`, before anything is looked up.
    for id in ["caravan-q10", "no-prefix-1"] {
        let a = upsert(
            &app,
            anvita,
            "upsertAction",
            "ActionInput",
            &json!({ "id": id, "kind": "WORKSHOP", "title": "Not mine" }),
        )
        .await;
        let on_id = a.body["errors"][0]["extensions"]["fields"]
            .as_array()
            .is_some_and(|fs| {
                fs.iter().any(|f| {
                    f["field"]
                        .as_str()
                        .is_some_and(|n| n == "id" || n.ends_with(".id"))
                })
            });
        if first_code(&a.body) != "BAD_USER_INPUT" || !on_id {
            problems.push(format!(
                "anvita upsertAction id {id}: expected BAD_USER_INPUT on field `id`, got {}",
                short(&a.body)
            ));
        }
    }
    for id in ["caravan-i11", "no-prefix-2"] {
        let row = json!({ "type": "actor", "id": id, "kind": "ASSOCIATION", "name": "Not mine" });
        let (status, body) = import(&app, anvita, &format!("{row}\n")).await;
        let on_id = body["fields"].as_array().is_some_and(|fs| {
            fs.iter().any(|f| {
                f["field"]
                    .as_str()
                    .is_some_and(|n| n == "id" || n.ends_with(".id"))
            })
        });
        if status != 400 || body["code"] != "BAD_USER_INPUT" || !on_id {
            problems.push(format!(
                "anvita POST /import id {id}: expected 400 BAD_USER_INPUT on field `id`, got {status} {}",
                short(&body)
            ));
        }
    }
    report(&problems);
}

// ---------------------------------------------------------------------------------------------
// C. The response cache.

const VIEWER: &str = "{ viewer { partner { slug } scopes } }";

async fn cached_answers_never_cross_callers(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let mut problems = Vec::new();
    for (a, b, scopes) in [
        ("anvita", "department", "research"),
        ("collective", "caravan", "write"),
        ("department", "anvita", "write"),
    ] {
        let first = Caller::new(&app, a, scopes).await;
        let second = Caller::new(&app, b, scopes).await;
        for who in [&first, &second, &first] {
            let ans = gql(&app, who, VIEWER, json!({})).await;
            let slug = &ans.body["data"]["viewer"]["partner"]["slug"];
            if slug != &json!(who.partner.unwrap()) {
                problems.push(format!(
                    "{} after {}: viewer.partner.slug is {slug} (cache hit: {})",
                    who.label,
                    if std::ptr::eq(who, &first) {
                        &second.label
                    } else {
                        &first.label
                    },
                    ans.hit
                ));
            }
            // The same through a batch and through GET.
            let mut req = app.http.post(app.url("/graphql")).json(&json!([
                { "query": VIEWER },
                { "query": "query { ...W } fragment W on Query { viewer { partner { slug } } }" }
            ]));
            if let Some(t) = &who.token {
                req = req.bearer_auth(t);
            }
            let batch: Value = req
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or(Value::Null);
            for i in 0..2 {
                let slug = &batch[i]["data"]["viewer"]["partner"]["slug"];
                if slug != &json!(who.partner.unwrap()) {
                    problems.push(format!(
                        "{} batch[{i}]: viewer.partner.slug is {slug}: {}",
                        who.label,
                        short(&batch)
                    ));
                }
            }
            let mut req = app
                .http
                .get(app.url("/graphql"))
                .header("apollo-require-preflight", "1")
                .query(&[("query", VIEWER)]);
            if let Some(t) = &who.token {
                req = req.bearer_auth(t);
            }
            let got: Value = req
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or(Value::Null);
            let slug = &got["data"]["viewer"]["partner"]["slug"];
            if slug != &json!(who.partner.unwrap()) {
                problems.push(format!(
                    "{} GET: viewer.partner.slug is {slug}: {}",
                    who.label,
                    short(&got)
                ));
            }
        }
    }
    report(&problems);
}

/// A deterministic pseudo-random sequence (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn documents() -> Vec<(String, Value)> {
    let prog = gid(Kind::Action, "caravan-prog");
    let pubact = gid(Kind::Action, "caravan-pubact");
    let sub = gid(Kind::Action, "caravan-sub");
    let ps = gid(Kind::Partnership, "caravan-ps");
    let pa = gid(Kind::Actor, "caravan-pa");
    let pv = gid(Kind::Actor, "caravan-pv");
    let out2 = gid(Kind::Outcome, "caravan-out2");
    vec![
        ("query { ...V } fragment V on Query { viewer { partner { slug } scopes } }".into(), json!({})),
        (
            "query { me: viewer { ... on ViewerInfo { who: partner { slug } } } s: viewer { scopes } }".into(),
            json!({}),
        ),
        (
            "query($id: ID!) { node(id: $id) { id ... on Action { title parent { localId } } } }".into(),
            json!({ "id": sub }),
        ),
        (
            format!("query {{ ...F }} fragment F on Query {{ node(id: \"{prog}\") {{ ... on Action {{ title visibility }} }} }}"),
            json!({}),
        ),
        (
            "query { a: actions(first: 50, filter: { partners: [\"caravan\"] }) { totalCount nodes { localId ...P } } } fragment P on Action { parent { localId } visibility }".into(),
            json!({}),
        ),
        (
            "query { ...Q } fragment Q on Query { actors(first: 50, filter: { partners: [\"caravan\", \"anvita\"] }) { nodes { localId parent { localId } } } }".into(),
            json!({}),
        ),
        (
            "{ partnerships(first: 50, filter: { partners: [\"caravan\"] }) { nodes { localId action { ... on Action { localId } } members { actor { localId } role } } } }".into(),
            json!({}),
        ),
        (
            "{ outcomes(first: 50, filter: { partners: [\"caravan\"] }) { nodes { localId action { localId } disaggregations { category value } } } }".into(),
            json!({}),
        ),
        (
            format!("{{ x: action(id: \"{pubact}\") {{ y: outcomes {{ z: localId }} p: partnerships {{ localId members {{ actor {{ localId }} }} }} }} q: partnership(id: \"{ps}\") {{ members {{ actor {{ localId }} }} }} }}"),
            json!({}),
        ),
        (
            "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Actor { name } ... on Action { title } ... on Outcome { indicator } } }".into(),
            json!({ "ids": [pa, pv, prog, out2] }),
        ),
        (
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Actor { name } ... on Action { title } } }".into(),
            json!({ "r": [{ "__typename": "Actor", "id": pa }, { "__typename": "Action", "id": prog }, { "__typename": "Actor", "id": pv }] }),
        ),
        (
            "{ researchAggregate(by: PARTNER) { unit cells { key suppressed } } }".into(),
            json!({}),
        ),
        (
            format!("query {{ ...H }} fragment H on Query {{ some: nodes(ids: [\"{sub}\", \"{pubact}\"]) {{ ... on Action {{ title visibility }} }} }}"),
            json!({}),
        ),
    ]
}

async fn cached_answers_equal_fresh_ones(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let w = write_fixture(&app).await;
    // Another replica on the same database, without a response cache: the fresh answer.
    let fresh = app
        .spawn_beside(|c| {
            c.rate_limit.enabled = false;
            c.response_cache_entries = 0;
        })
        .await;
    let callers = vec![
        Caller::anonymous(),
        Caller::new(&app, "caravan", "read").await,
        Caller::new(&app, "anvita", "read").await,
        Caller::new(&app, "department", "read").await,
        Caller::new(&app, "anvita", "read read:sensitive").await,
        Caller::new(&app, "collective", "write").await,
        Caller::new(&app, "caravan", "write").await,
        Caller::new(&app, "anvita", "research").await,
        Caller::new(&app, "department", "research").await,
    ];
    let docs = documents();
    let mut rng = Rng(0x5eed_3200_0000_0032);
    let mut problems = Vec::new();
    let mut hits = 0;
    for step in 0..160 {
        if step == 80 {
            // Halfway, the owner hides rows that earlier answers held: cached answers must
            // follow.
            for (id, vis) in [("caravan-pubact", "PARTNERS"), ("caravan-sub", "PRIVATE")] {
                let (field, ty, mut value) = input(fixture(id));
                value["visibility"] = json!(vis);
                let a = upsert(&app, &w.caravan, field, ty, &value).await;
                assert_eq!(a.body["data"][field]["effect"], "UPDATED", "{}", a.body);
            }
        }
        let (doc, vars) = &docs[rng.below(docs.len())];
        let first = &callers[rng.below(callers.len())];
        // Half the time the same caller again, so that hits are exercised.
        let second = if step % 2 == 0 {
            first
        } else {
            &callers[rng.below(callers.len())]
        };
        for who in [first, second] {
            let cached = gql(&app, who, doc, vars.clone()).await;
            hits += usize::from(cached.hit);
            let truth = gql(&fresh, who, doc, vars.clone()).await;
            if cached.status != truth.status || cached.body != truth.body {
                problems.push(format!(
                    "step {step}: {} (this step's first caller: {}) on `{}`: got (hit: {}) {} but a fresh server answers {}",
                    who.label,
                    first.label,
                    short(doc),
                    cached.hit,
                    short(&cached.body),
                    short(&truth.body)
                ));
            }
        }
    }
    assert!(
        hits > 0,
        "no answer came from the cache: the test did not exercise it"
    );
    report(&problems);
}

async fn a_write_that_hides_a_row_empties_every_cached_shape(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let w = write_fixture(&app).await;
    let title = "Flip 7b2e title";
    let flip =
        json!({ "id": "caravan-flip", "kind": "WORKSHOP", "title": title, "visibility": "PUBLIC" });
    let a = upsert(&app, &w.caravan, "upsertAction", "ActionInput", &flip).await;
    assert_eq!(
        a.body["data"]["upsertAction"]["effect"], "CREATED",
        "{}",
        a.body
    );
    let g = gid(Kind::Action, "caravan-flip");
    let shapes: Vec<(&str, String, Value)> = vec![
        ("node(id:)", "query($id: ID!) { node(id: $id) { ... on Action { title } } }".into(), json!({ "id": g })),
        (
            "fragment",
            format!("query {{ ...F }} fragment F on Query {{ node(id: \"{g}\") {{ ... on Action {{ title }} }} }}"),
            json!({}),
        ),
        (
            "aliased nested",
            format!("query {{ outer: node(id: \"{g}\") {{ ... on Action {{ t: title subs: subActions {{ localId }} }} }} }}"),
            json!({}),
        ),
        ("typed lookup", format!("{{ action(id: \"{g}\") {{ title }} }}"), json!({})),
        (
            "_entities",
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Action { title } } }".into(),
            json!({ "r": [{ "__typename": "Action", "id": g }] }),
        ),
        (
            "inline fragment list",
            format!("query {{ ... on Query {{ actions(filter: {{ text: \"{title}\" }}) {{ nodes {{ title }} }} }} }}"),
            json!({}),
        ),
        (
            "nested fragments",
            format!("query {{ ...L }} fragment L on Query {{ nodes(ids: [\"{g}\"]) {{ ...T }} }} fragment T on Action {{ title }}"),
            json!({}),
        ),
    ];
    let callers = [
        Caller::anonymous(),
        Caller::new(&app, "anvita", "read").await,
    ];
    let mut problems = Vec::new();
    for who in &callers {
        for (name, doc, vars) in &shapes {
            for _ in 0..2 {
                let before = gql(&app, who, doc, vars.clone()).await;
                assert!(
                    before.body.to_string().contains(title),
                    "{} {name}: the public action is visible before the write: {}",
                    who.label,
                    before.body
                );
            }
        }
    }
    let owner = Caller::new(&app, "caravan", "read").await;
    let mut private = flip.clone();
    private["visibility"] = json!("PRIVATE");
    let a = upsert(&app, &w.caravan, "upsertAction", "ActionInput", &private).await;
    assert_eq!(
        a.body["data"]["upsertAction"]["effect"], "UPDATED",
        "{}",
        a.body
    );
    for who in &callers {
        for (name, doc, vars) in &shapes {
            let after = gql(&app, who, doc, vars.clone()).await;
            if after.body.to_string().contains(title) {
                problems.push(format!(
                    "{} {name}: still shows the action made PRIVATE (cache hit: {}): {}",
                    who.label,
                    after.hit,
                    short(&after.body)
                ));
            }
        }
    }
    // The owner still gets it, whatever the shape.
    for (name, doc, vars) in &shapes {
        let mine = gql(&app, &owner, doc, vars.clone()).await;
        if !mine.body.to_string().contains(title) {
            problems.push(format!(
                "caravan[read] {name}: its own PRIVATE action is gone: {}",
                short(&mine.body)
            ));
        }
    }
    report(&problems);
}

async fn an_audit_log_in_a_fragment_is_never_stale(backend: Backend) {
    let Some(app) = spawn(backend, |c| c.audit_reads_wait_for_flush = true).await else {
        return;
    };
    let admin = Caller::new(&app, "department", "admin").await;
    let reader = Caller::new(&app, "anvita", "read").await;
    let writer = Caller::new(&app, "caravan", "write").await;
    let doc =
        "query AuditFrag { ...A } fragment A on Query { auditLog(last: 50) { operation outcome } }";
    let mut problems = Vec::new();
    // An audited read, then an audited write, between two readings of the log.
    for (who, marker, text) in [
        (&reader, "PolicyAuditRead", "query PolicyAuditRead { actors(first: 1) { totalCount } }"),
        (
            &writer,
            "PolicyAuditWrite",
            "mutation PolicyAuditWrite { upsertAction(input: { id: \"caravan-audit\", kind: WORKSHOP, title: \"Audit\" }) { effect } }",
        ),
    ] {
        for _ in 0..2 {
            let before = gql(&app, &admin, doc, json!({})).await;
            assert!(before.body["data"]["auditLog"].is_array(), "{}", before.body);
        }
        let done = gql(&app, who, text, json!({})).await;
        assert!(done.body.get("errors").is_none(), "{}", done.body);
        let mut last = (false, Value::Null);
        let seen = common::within(common::RECHECK_BOUND, async || {
            let ans = gql(&app, &admin, doc, json!({})).await;
            last = (ans.hit, ans.body);
            last.1.to_string().contains(marker)
        })
        .await;
        if seen.is_none() {
            problems.push(format!(
                "auditLog inside a fragment still misses {marker} by {} after {:?} (cache hit: {}): {}",
                who.label,
                common::RECHECK_BOUND,
                last.0,
                short(&last.1)
            ));
        }
    }
    report(&problems);
}

// ---------------------------------------------------------------------------------------------
// D. Bad text.

/// (operation, variable type, body with `{V}` where the text goes)
const TEXT_INPUTS: &[(&str, &str, &str)] = &[
    ("query", "String", "{ actors(filter: { text: {V} }) { totalCount } }"),
    ("query", "String", "{ actions(filter: { text: {V} }) { totalCount } }"),
    ("query", "String", "{ outcomes(filter: { text: {V} }) { totalCount } }"),
    ("query", "String", "{ partnerships(filter: { text: {V} }) { totalCount } }"),
    ("query", "String", "{ actors(filter: { territory: {V} }) { totalCount } }"),
    ("query", "String", "{ actions(filter: { territory: {V} }) { totalCount } }"),
    ("query", "String", "{ outcomes(filter: { territory: {V} }) { totalCount } }"),
    ("query", "String!", "{ actions(filter: { themes: [{V}] }) { totalCount } }"),
    ("query", "String!", "{ outcomes(filter: { themes: [{V}] }) { totalCount } }"),
    ("query", "String!", "{ actors(filter: { partners: [{V}] }) { totalCount } }"),
    ("query", "String!", "{ actions(filter: { partners: [{V}] }) { totalCount } }"),
    ("query", "String!", "{ outcomes(filter: { partners: [{V}] }) { totalCount } }"),
    ("query", "String!", "{ partnerships(filter: { partners: [{V}] }) { totalCount } }"),
    ("query", "ID!", "{ node(id: {V}) { id } }"),
    ("query", "ID!", "{ nodes(ids: [{V}]) { id } }"),
    ("query", "ID!", "{ action(id: {V}) { id } }"),
    ("query", "ID!", "{ actions(filter: { parent: {V} }) { totalCount } }"),
    ("query", "ID!", "{ partnerships(filter: { actors: [{V}] }) { totalCount } }"),
    ("query", "ID!", "{ outcomes(filter: { actions: [{V}] }) { totalCount } }"),
    ("query", "String", "{ actions(after: {V}) { totalCount } }"),
    ("query", "String", "{ actors(after: {V}) { totalCount } }"),
    ("query", "String!", "{ researchAggregate(by: PARTNER, unit: {V}) { unit } }"),
    ("mutation", "String!", "{ upsertAction(input: { id: \"caravan-bad1\", kind: WORKSHOP, title: {V} }) { effect } }"),
    ("mutation", "String!", "{ upsertAction(input: { id: {V}, kind: WORKSHOP, title: \"t\" }) { effect } }"),
    ("mutation", "String!", "{ upsertAction(input: { id: \"caravan-bad2\", kind: WORKSHOP, title: \"t\", summary: {V} }) { effect } }"),
    ("mutation", "String!", "{ upsertActor(input: { id: \"caravan-bad3\", kind: ASSOCIATION, name: {V} }) { effect } }"),
    ("mutation", "String!", "{ upsertOutcome(input: { id: \"caravan-bad4\", actionId: \"caravan-pubact\", indicator: {V}, measure: ACTUAL }) { effect } }"),
    ("mutation", "String!", "{ upsertPartnership(input: { id: \"caravan-bad5\", name: {V}, members: [] }) { effect } }"),
    ("mutation", "String!", "{ retireAction(id: {V}) { effect } }"),
];

fn bad_texts() -> [(&'static str, String); 2] {
    [
        ("a NUL byte", "a\u{0}b".to_owned()),
        ("200,000 characters", "x".repeat(200_000)),
    ]
}

async fn bad_text_is_bad_user_input_everywhere(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    write_fixture(&app).await;
    let who = Caller::new(&app, "caravan", "read write research").await;
    let mut problems = Vec::new();
    for (op, ty, body) in TEXT_INPUTS {
        for (what, text) in bad_texts() {
            // JSON string syntax is GraphQL string syntax for these (`\u0000` included).
            let literal = serde_json::to_string(&text).unwrap();
            for (how, doc, vars) in [
                (
                    "variable",
                    format!("{op}($v: {ty}) {}", body.replace("{V}", "$v")),
                    json!({ "v": text }),
                ),
                (
                    "literal",
                    format!("{op} {}", body.replace("{V}", &literal)),
                    json!({}),
                ),
            ] {
                let a = gql(&app, &who, &doc, vars).await;
                if a.status >= 500 || first_code(&a.body) != "BAD_USER_INPUT" {
                    problems.push(format!(
                        "`{body}` with {what} as a {how}: status {}, code {:?}: {}",
                        a.status,
                        first_code(&a.body),
                        short(&a.body)
                    ));
                }
            }
        }
    }
    // The same text hidden inside a global id or a cursor (base64): decoded, it must not reach
    // the database either. Refused, or answered as for an id that does not exist; never a 500.
    for (what, local) in [
        ("a NUL byte", "caravan-a\u{0}b".to_owned()),
        (
            "200,000 characters",
            format!("caravan-{}", "x".repeat(200_000)),
        ),
    ] {
        let action = gid(Kind::Action, &local);
        let actor = gid(Kind::Actor, &local);
        let cursor = passerelle::graphql::pagination::encode_cursor(&local, &local);
        let cases: Vec<(&str, String, Value)> = vec![
            (
                "node(id:)",
                "query($v: ID!) { node(id: $v) { id } }".into(),
                json!({ "v": action }),
            ),
            (
                "action(id:)",
                "query($v: ID!) { action(id: $v) { id } }".into(),
                json!({ "v": action }),
            ),
            (
                "actor(id:)",
                "query($v: ID!) { actor(id: $v) { id } }".into(),
                json!({ "v": actor }),
            ),
            (
                "nodes(ids:)",
                "query($v: ID!) { nodes(ids: [$v]) { id } }".into(),
                json!({ "v": action }),
            ),
            (
                "actions(filter:{parent})",
                "query($v: ID!) { actions(filter: { parent: $v }) { totalCount } }".into(),
                json!({ "v": action }),
            ),
            (
                "partnerships(filter:{actions})",
                "query($v: ID!) { partnerships(filter: { actions: [$v] }) { totalCount } }".into(),
                json!({ "v": action }),
            ),
            (
                "partnerships(filter:{actors})",
                "query($v: ID!) { partnerships(filter: { actors: [$v] }) { totalCount } }".into(),
                json!({ "v": actor }),
            ),
            (
                "outcomes(filter:{actions})",
                "query($v: ID!) { outcomes(filter: { actions: [$v] }) { totalCount } }".into(),
                json!({ "v": action }),
            ),
            (
                "_entities",
                "query($r: [_Any!]!) { _entities(representations: $r) { ... on Action { id } } }"
                    .into(),
                json!({ "r": [{ "__typename": "Action", "id": action }] }),
            ),
            (
                "actors(after:)",
                "query($v: String) { actors(after: $v) { totalCount } }".into(),
                json!({ "v": cursor }),
            ),
            (
                "actions(after:)",
                "query($v: String) { actions(after: $v) { totalCount } }".into(),
                json!({ "v": cursor }),
            ),
            (
                "outcomes(after:)",
                "query($v: String) { outcomes(after: $v) { totalCount } }".into(),
                json!({ "v": cursor }),
            ),
            (
                "partnerships(after:)",
                "query($v: String) { partnerships(after: $v) { totalCount } }".into(),
                json!({ "v": cursor }),
            ),
        ];
        for (name, doc, vars) in cases {
            let a = gql(&app, &who, &doc, vars).await;
            let code = first_code(&a.body);
            let refused_or_empty = code == "BAD_USER_INPUT" || a.body.get("errors").is_none();
            if a.status >= 500 || !refused_or_empty {
                problems.push(format!(
                    "{name} with {what} inside the encoded id or cursor: status {}, code {code:?}: {}",
                    a.status,
                    short(&a.body)
                ));
            }
        }
    }
    // An operation name with a NUL byte.
    let a = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(who.token.as_deref().unwrap())
        .json(&json!({ "query": "query A { viewer { scopes } }", "operationName": "A\u{0}B" }))
        .send()
        .await
        .unwrap();
    let status = a.status().as_u16();
    let body: Value = a.json().await.unwrap_or(Value::Null);
    if status >= 500 || first_code(&body) == "INTERNAL_SERVER_ERROR" {
        problems.push(format!(
            "operationName with a NUL byte: status {status}: {}",
            short(&body)
        ));
    }
    // The token endpoint: an OAuth error, never a 500.
    for (what, text) in bad_texts() {
        let res = app
            .http
            .post(app.url("/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", text.as_str()),
                ("client_secret", "nope"),
            ])
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if !(status == 400 || status == 401) || !body["error"].is_string() {
            problems.push(format!(
                "/oauth/token client_id with {what}: status {status}: {}",
                short(&body)
            ));
        }
    }
    // Import rows.
    for (what, text) in bad_texts() {
        let row =
            json!({ "type": "action", "id": "caravan-badimp", "kind": "WORKSHOP", "title": text });
        let (status, body) = import(&app, &who, &format!("{row}\n")).await;
        if status != 400 || body["code"] != "BAD_USER_INPUT" {
            problems.push(format!(
                "POST /import with {what} in a title: status {status}: {}",
                short(&body)
            ));
        }
    }
    report(&problems);
}

// ---------------------------------------------------------------------------------------------
// E. `_service { sdl }` follows the introspection rule.

async fn service_sdl_follows_the_introspection_rule(backend: Backend) {
    let Some(app) = spawn(backend, |c| c.public_introspection = false).await else {
        return;
    };
    let q = "{ _service { sdl } }";
    let anonymous = gql(&app, &Caller::anonymous(), q, json!({})).await;
    let reader = gql(
        &app,
        &Caller::new(&app, "caravan", "read").await,
        q,
        json!({}),
    )
    .await;
    let mut problems = Vec::new();
    for (who, a) in [("anonymous", &anonymous), ("caravan[read]", &reader)] {
        if first_code(&a.body) != "INTROSPECTION_DISABLED"
            || a.body["data"]["_service"]["sdl"].is_string()
        {
            problems.push(format!(
                "{who}: `_service {{ sdl }}` with public_introspection = false: {}",
                short(&a.body)
            ));
        }
    }
    let gateway = Caller::new(&app, "caravan", "introspect").await;
    let ok = gql(&app, &gateway, q, json!({})).await;
    let sdl = ok.body["data"]["_service"]["sdl"]
        .as_str()
        .unwrap_or_default();
    if !sdl.contains("type Action") {
        problems.push(format!(
            "a client with `introspect` gets no SDL: {}",
            short(&ok.body)
        ));
    }
    report(&problems);
}

// ---------------------------------------------------------------------------------------------
// F. Ending an agreement takes effect at once.

async fn ending_an_agreement_takes_effect_at_once(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    write_fixture(&app).await;
    let department = Caller::new(&app, "department", "read").await;
    let q = "query($id: ID!) { node(id: $id) { id } }";
    let vars = json!({ "id": gid(Kind::Actor, "caravan-pa") });
    let sees = |body: &Value| !body["data"]["node"].is_null();
    let before = gql(&app, &department, q, vars.clone()).await;
    assert!(
        sees(&before.body),
        "the grantee sees caravan's PARTNERS actor: {}",
        before.body
    );
    let (_, exported) = export(&app, &department, "actors", "ndjson").await;
    assert!(
        exported.contains("\"caravan-pa\""),
        "the grantee exports it: {exported}"
    );
    let agreements = app
        .app
        .store
        .run(passerelle::auth::sharing::list)
        .await
        .map_err(|e| e.message())
        .unwrap();
    let id = agreements
        .iter()
        .find(|a| a.grantor == "caravan" && a.grantee == "department")
        .unwrap()
        .id
        .clone();
    // As an operator would: the CLI, default day (today).
    let url = app.database_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        common::passerelle(&url)
            .args(["sharing", "end", &id])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "passerelle sharing end: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut last = String::new();
    let gone = common::within(common::RECHECK_BOUND, async || {
        let a = gql(&app, &department, q, vars.clone()).await;
        let (_, exported) = export(&app, &department, "actors", "ndjson").await;
        last = format!(
            "node: {} export has it: {}",
            a.body,
            exported.contains("\"caravan-pa\"")
        );
        !sees(&a.body) && !exported.contains("\"caravan-pa\"")
    })
    .await;
    assert!(
        gone.is_some(),
        "after `passerelle sharing end` (today), department still reads caravan's PARTNERS actor after {:?}: {last}",
        common::RECHECK_BOUND
    );
}

per_backend!(
    graphql_and_export_agree_for_every_reader,
    filters_answer_hidden_ids_as_missing_ones,
    writes_answer_hidden_ids_as_missing_ones,
    cached_answers_never_cross_callers,
    cached_answers_equal_fresh_ones,
    a_write_that_hides_a_row_empties_every_cached_shape,
    an_audit_log_in_a_fragment_is_never_stale,
    bad_text_is_bad_user_input_everywhere,
    service_sdl_follows_the_introspection_rule,
    ending_an_agreement_takes_effect_at_once,
);
