//! The GraphQL API over HTTP, on both backends, against the demo data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{error_code, TestApp};
use serde_json::{json, Value};

const CARAVAN: &str = r#"
query Caravan {
  actions(filter: { partners: ["caravan"] }, orderBy: { field: STARTS_ON }) {
    totalCount
    nodes {
      title startsOn endsOn status schedule
      places { name level inseeCode }
      outcomes { indicator measure value unit periodStart periodEnd statement }
      partners { role actor { name kind } }
      owner { slug }
      provenance { source sourceRef importedAt }
    }
  }
}"#;

async fn caravan_actions_answer_with_the_seed_facts(app: TestApp) {
    app.seed().await;
    let data = app.data(CARAVAN, json!({})).await;
    let actions = data["actions"]["nodes"].as_array().unwrap();
    assert_eq!(data["actions"]["totalCount"], 3);
    // Sorted by start: the 2017 plan, the 2020 experiment, the 2021 resumption.
    let titles: Vec<&str> = actions
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert!(
        titles[0].starts_with("Plan d'action pour l'accès aux droits"),
        "{titles:?}"
    );
    let experiment = &actions[1];
    assert_eq!(experiment["startsOn"], "2020");
    assert_eq!(experiment["status"], "COMPLETED");
    let districts: Vec<&str> = experiment["places"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["level"] == "DISTRICT")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(districts, ["Clos d'Or", "Abry", "Saint-Laurent"]);
    let supported = experiment["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["unit"] == "people")
        .expect("people supported");
    assert_eq!(supported["value"], 128.0);
    assert_eq!(supported["measure"], "ACTUAL");
    assert_eq!(supported["periodStart"], "2020");
    let partners: Vec<(&str, &str)> = experiment["partners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["role"].as_str().unwrap(),
                p["actor"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        partners.contains(&("LEAD", "Ville de Grenoble")),
        "{partners:?}"
    );
    assert!(
        partners.contains(&(
            "IMPLEMENTER",
            "Centre Communal d'Action Sociale de Grenoble"
        )),
        "{partners:?}"
    );
    assert_eq!(experiment["owner"]["slug"], "caravan");
    assert_eq!(
        experiment["provenance"]["source"],
        "seed:004_27d9875efba170f6.txt"
    );
    // Unknown stays null: the 2021 resumption has no stated end and no outcome figures.
    assert_eq!(actions[2]["endsOn"], Value::Null);
}

async fn seeding_twice_changes_nothing(app: TestApp) {
    let first = app.seed().await;
    assert!(
        first["actions"]
            .keys()
            .all(|e| format!("{e:?}") == "Created"),
        "{first:?}"
    );
    let everything = r#"{
      actions(first: 100) { nodes { id title summary status startsOn endsOn themes places { name inseeCode }
        provenance { importedAt updatedAt } outcomes { id value provenance { updatedAt } } } }
      actors(first: 100) { nodes { id name provenance { importedAt updatedAt } } }
      partnerships(first: 100) { nodes { id name members { role actor { id } } provenance { updatedAt } } }
    }"#;
    let before = app.data(everything, json!({})).await;
    let second = app.seed().await;
    for (kind, effects) in &second {
        assert_eq!(effects.len(), 1, "{kind}: {effects:?}");
        assert!(
            effects.keys().all(|e| format!("{e:?}") == "Unchanged"),
            "{kind}: {effects:?}"
        );
    }
    let after = app.data(everything, json!({})).await;
    assert_eq!(before, after);
}

async fn pages_walk_every_action_once_in_a_stable_order(app: TestApp) {
    app.seed().await;
    let all = app
        .data(
            "{ actions(first: 100) { totalCount nodes { id title } } }",
            json!({}),
        )
        .await;
    let total = all["actions"]["totalCount"].as_i64().unwrap();
    assert_eq!(total, 17);
    let expected: Vec<Value> = all["actions"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    let titles: Vec<&str> = all["actions"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    let mut sorted = titles.clone();
    sorted.sort();
    assert_eq!(titles, sorted, "sorted by title");

    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app
            .data(
                "query($after: String) { actions(first: 5, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }",
                json!({ "after": after }),
            )
            .await;
        let conn = &page["actions"];
        let edges = conn["edges"].as_array().unwrap();
        assert!(edges.len() <= 5);
        seen.extend(edges.iter().map(|e| e["node"]["id"].clone()));
        assert_eq!(
            conn["pageInfo"]["endCursor"],
            edges
                .last()
                .map(|e| e["cursor"].clone())
                .unwrap_or(Value::Null)
        );
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, expected);

    // Descending order is the exact reverse.
    let desc = app
        .data(
            "{ actions(first: 100, orderBy: { direction: DESC }) { nodes { id } } }",
            json!({}),
        )
        .await;
    let mut reversed: Vec<Value> = desc["actions"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    reversed.reverse();
    assert_eq!(reversed, expected);
}

async fn filters_select_by_partner_kind_territory_period_theme_and_text(app: TestApp) {
    app.seed().await;
    let titles = |data: &Value| -> Vec<String> {
        data["actions"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = "query($f: ActionFilter) { actions(first: 100, filter: $f) { totalCount nodes { title } } }";

    let gard = app.data(q, json!({ "f": { "territory": "30" } })).await;
    assert_eq!(gard["actions"]["totalCount"], 3, "{gard}");

    // A department code matches its communes: Grenoble (38185) is in Isère (38).
    let isere = app.data(q, json!({ "f": { "territory": "38" } })).await;
    let isere = titles(&isere);
    assert!(isere.iter().any(|t| t.contains("Caravane")), "{isere:?}");
    assert!(
        isere
            .iter()
            .any(|t| t.contains("Groupe de travail thématique #1")),
        "{isere:?}"
    );

    let migration = app
        .data(
            q,
            json!({ "f": { "themes": ["migration"], "kinds": ["EVENT"] } }),
        )
        .await;
    assert_eq!(migration["actions"]["totalCount"], 2);

    let in_2020 = app
        .data(
            q,
            json!({ "f": { "period": { "from": "2020", "to": "2020" } } }),
        )
        .await;
    let in_2020 = titles(&in_2020);
    assert!(in_2020.iter().any(|t| t.contains("expérimentation 2020")));
    assert!(
        in_2020.iter().any(|t| t.contains("2017-2021")),
        "the PDI overlaps 2020"
    );
    assert!(!in_2020.iter().any(|t| t.contains("reprise 2021")));

    // Case-insensitive text search; LIKE wildcards are taken literally.
    let text = app.data(q, json!({ "f": { "text": "TIKTOK" } })).await;
    assert_eq!(
        titles(&text),
        [
            "Lives TikTok d'écoute et de soutien aux parents",
            "Projet de Ministère de la Protection de l'Enfance"
        ]
    );
    let wildcard = app.data(q, json!({ "f": { "text": "%" } })).await;
    assert_eq!(wildcard["actions"]["totalCount"], 0);

    let proposed = app
        .data(
            q,
            json!({ "f": { "statuses": ["PROPOSED"], "partners": ["collective"] } }),
        )
        .await;
    assert_eq!(titles(&proposed), ["Ateliers citoyens locaux"]);

    let actors = app
        .data("{ actors(first: 100, filter: { kinds: [LOCAL_AUTHORITY], territory: \"69\" }) { nodes { name } } }", json!({}))
        .await;
    assert_eq!(
        actors["actors"]["nodes"],
        json!([{ "name": "Lyon" }, { "name": "Villeurbanne" }])
    );

    let outcomes = app
        .data("{ outcomes(filter: { measures: [ACTUAL], themes: [\"migration\"] }) { totalCount nodes { value } } }", json!({}))
        .await;
    assert_eq!(outcomes["outcomes"]["totalCount"], 2);
}

async fn relations_resolve_both_ways_and_node_refetches_everything(app: TestApp) {
    app.seed().await;
    let data = app
        .data(
            r#"{ actors(filter: { text: "IFRI" }) { nodes { id name
                   partnerships { id name action { id title partners { role actor { name } } } }
                   actions { id title } } } }"#,
            json!({}),
        )
        .await;
    let ifri = &data["actors"]["nodes"][0];
    assert_eq!(
        ifri["name"],
        "Institut Français des Relations Internationales"
    );
    let partnerships = ifri["partnerships"].as_array().unwrap();
    assert_eq!(partnerships.len(), 2, "{partnerships:?}");
    for p in partnerships {
        let members: Vec<&str> = p["action"]["partners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["actor"]["name"].as_str().unwrap())
            .collect();
        assert!(members.contains(&"Institut Français des Relations Internationales"));
    }
    assert_eq!(ifri["actions"].as_array().unwrap().len(), 2);

    // Sub-actions and parents.
    let tree = app
        .data(r#"{ actions(filter: { text: "Plan Départemental" }) { nodes { id subActions { title parent { title } } } } }"#, json!({}))
        .await;
    let subs = tree["actions"]["nodes"][0]["subActions"]
        .as_array()
        .unwrap();
    assert_eq!(subs.len(), 2);
    assert!(subs
        .iter()
        .all(|s| s["parent"]["title"] == "Plan Départemental de l'Insertion 2017-2021"));

    // Every kind of object comes back by its global id.
    let ids = app
        .data(
            "{ partners { id } actors(first: 1) { nodes { id } } actions(first: 1) { nodes { id } }
               outcomes(first: 1) { nodes { id action { id } } } partnerships(first: 1) { nodes { id } } }",
            json!({}),
        )
        .await;
    let all_ids = [
        ids["partners"][0]["id"].clone(),
        ids["actors"]["nodes"][0]["id"].clone(),
        ids["actions"]["nodes"][0]["id"].clone(),
        ids["outcomes"]["nodes"][0]["id"].clone(),
        ids["partnerships"]["nodes"][0]["id"].clone(),
    ];
    let nodes = app
        .data(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id __typename } }",
            json!({ "ids": all_ids }),
        )
        .await;
    let typenames: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["__typename"].as_str().unwrap())
        .collect();
    assert_eq!(
        typenames,
        ["Partner", "Actor", "Action", "Outcome", "Partnership"]
    );
    for (node, id) in nodes["nodes"].as_array().unwrap().iter().zip(&all_ids) {
        assert_eq!(&node["id"], id);
    }
    let outcome_action = &ids["outcomes"]["nodes"][0]["action"]["id"];
    let refetched = app
        .data(
            "query($id: ID!) { action(id: $id) { id } }",
            json!({ "id": outcome_action }),
        )
        .await;
    assert_eq!(&refetched["action"]["id"], outcome_action);

    // Unknown ids are null; ids of the wrong type are a clear input error.
    let missing = app
        .data(r#"{ node(id: "QWN0aW9uOm5vcGU") { id } }"#, json!({}))
        .await;
    assert_eq!(missing["node"], Value::Null);
    let wrong = app
        .graphql(
            "query($id: ID!) { action(id: $id) { id } }",
            json!({ "id": all_ids[1] }),
        )
        .await;
    assert_eq!(error_code(&wrong), "BAD_USER_INPUT");
}

async fn page_size_is_capped_and_bad_cursors_are_refused(app: TestApp) {
    let too_big = app
        .graphql("{ actions(first: 1000) { nodes { id } } }", json!({}))
        .await;
    assert_eq!(error_code(&too_big), "BAD_USER_INPUT", "{too_big}");
    assert!(too_big["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("first"));
    let negative = app
        .graphql("{ actors(first: -1) { nodes { id } } }", json!({}))
        .await;
    assert_eq!(error_code(&negative), "BAD_USER_INPUT");
    let cursor = app
        .graphql(
            r#"{ actions(after: "garbage") { nodes { id } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(error_code(&cursor), "BAD_USER_INPUT");
    let date = app
        .graphql(
            r#"{ actions(filter: { period: { from: "2021-13" } }) { nodes { id } } }"#,
            json!({}),
        )
        .await;
    assert!(
        date["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ISO 8601"),
        "{date}"
    );
}

async fn health_readiness_metrics_and_http_errors(app: TestApp) {
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("passerelle_sql_statements_total"),
        "{metrics}"
    );

    let missing = app.http.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "NOT_FOUND");

    // Request ids: generated when absent, echoed when given.
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(!res.headers()["x-request-id"].is_empty());

    // Bodies over the limit are refused from their declared length, before any is read.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 2097152\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let n = stream.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        // With our error body and its stable code, not the limit layer's plain text.
        assert!(answer.contains("application/json"), "{answer}");
        assert!(
            answer.contains("\"code\":\"PAYLOAD_TOO_LARGE\""),
            "{answer}"
        );
    }
    // A chunked body, without a length, is cut off once it outgrows the limit.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 1024 * 1024 + 10];
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        let _ = stream.write_all(&chunk).await;
        let mut buf = vec![0u8; 2048];
        let n = stream.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");
    }

    let res = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// `passerelle_stage_seconds_count{stage="..."}` from `/metrics`.
async fn stage_count(app: &TestApp, stage: &str) -> u64 {
    let metrics = app.metrics().await;
    let series = format!("passerelle_stage_seconds_count{{stage=\"{stage}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
        .parse()
        .unwrap()
}

/// Each stage of an authenticated request is timed once per request (the database stages at
/// least once: the audit writer uses the pool too on SQLite), and only `/graphql` requests
/// count as requests.
async fn metrics_time_each_stage_of_a_request(app: TestApp) {
    app.seed().await;
    let token = app.token("caravan", "read").await;
    const STAGES: [&str; 6] = passerelle::metrics::STAGE_NAMES;
    let mut before = Vec::new();
    for stage in STAGES {
        before.push(stage_count(&app, stage).await);
    }
    let data = app
        .data_as(
            &token,
            "{ actions(first: 2) { nodes { title } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["actions"]["nodes"].as_array().map(Vec::len), Some(2));
    for (stage, before) in STAGES.into_iter().zip(before) {
        let grew = stage_count(&app, stage).await - before;
        match stage {
            "request" | "admission" | "audit" => assert_eq!(grew, 1, "{stage}"),
            _ => assert!(grew >= 1, "{stage} did not grow"),
        }
    }
}

async fn internal_errors_are_masked(app: TestApp) {
    app.seed().await;
    // Break the database under the running app: the client must get a stable code and no SQL.
    app.app
        .store
        .run(|conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query("DROP TABLE outcome_disaggregations").execute(conn)?;
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    let body = app
        .graphql(
            "{ outcomes { nodes { id disaggregations { value } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    let text = body.to_string().to_lowercase();
    assert!(
        !text.contains("outcome_disaggregations")
            && !text.contains("select")
            && !text.contains("no such table"),
        "{body}"
    );
}

/// Every scalar field of an outcome, twice under one key, and under an alias.
const OUTCOME_LEAVES: &str = "__typename id localId indicator measure value unit statement \
    periodStart periodEnd visibility again: indicator indicator";

/// Every scalar field of an action's partner and of its actor.
const PARTNER_LEAVES: &str = "__typename role partnershipId who: actor { __typename id localId \
    kind name acronym description website territoryCode territoryName visibility }";

/// Every scalar field of an action, twice under one key, and under an alias.
const ACTION_LEAVES: &str = "__typename id localId kind title summary status startsOn endsOn \
    schedule website themes visibility again: title title";

/// A page of actions, and lists of outcomes and of an action's partners, whose selection is
/// only plain fields are built without async-graphql's per-field resolution (`graphql::leaves`);
/// inside fragments, the same fields take async-graphql's way. Both answers must be the same
/// text, field order included.
async fn lists_answer_the_same_with_or_without_per_field_resolution(app: TestApp) {
    app.seed().await;
    let answer = |selection: String, fragments: String| {
        let app = &app;
        async move {
            let query =
                format!("{{ actions(first: 100) {{ nodes {{ {selection} }} }} }} {fragments}");
            let res = app
                .http
                .post(app.url("/graphql"))
                .json(&json!({ "query": query }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap()
        }
    };
    let direct = answer(
        format!("{ACTION_LEAVES} outcomes {{ {OUTCOME_LEAVES} }} partners {{ {PARTNER_LEAVES} }}"),
        String::new(),
    )
    .await;
    let resolved = answer(
        format!("...A outcomes {{ ... on Outcome {{ {OUTCOME_LEAVES} }} }} partners {{ ...P }}"),
        format!(
            "fragment A on Action {{ {ACTION_LEAVES} }} \
             fragment P on ActionPartner {{ {PARTNER_LEAVES} }}"
        ),
    )
    .await;
    assert_eq!(direct, resolved);
    // The demo covers what the fields can hold: figures and words, periods or none.
    let body: Value = serde_json::from_str(&direct).unwrap();
    assert!(body.get("errors").is_none(), "{body:#}");
    let nodes = body["data"]["actions"]["nodes"].as_array().unwrap();
    let all = |list: &str| -> Vec<Value> {
        nodes
            .iter()
            .flat_map(|a| a[list].as_array().unwrap().clone())
            .collect()
    };
    for field in [
        "summary", "status", "startsOn", "endsOn", "schedule", "website",
    ] {
        assert!(nodes.iter().any(|a| a[field].is_null()), "{field}");
        assert!(nodes.iter().any(|a| !a[field].is_null()), "{field}");
    }
    assert!(nodes
        .iter()
        .any(|a| a["themes"].as_array().unwrap().len() > 1));
    assert_eq!(nodes[0]["again"], nodes[0]["title"]);
    let outcomes = all("outcomes");
    assert!(outcomes.len() >= 5, "{body:#}");
    for field in ["value", "unit", "statement", "periodStart"] {
        assert!(outcomes.iter().any(|o| o[field].is_null()), "{field}");
        assert!(outcomes.iter().any(|o| !o[field].is_null()), "{field}");
    }
    assert_eq!(outcomes[0]["__typename"], "Outcome");
    assert_eq!(outcomes[0]["again"], outcomes[0]["indicator"]);
    let partners = all("partners");
    assert!(partners.len() >= 5, "{body:#}");
    assert!(partners.iter().any(|p| !p["who"]["acronym"].is_null()));
    assert_eq!(partners[0]["who"]["__typename"], "Actor");
}

backend_tests!(
    caravan_actions_answer_with_the_seed_facts,
    seeding_twice_changes_nothing,
    pages_walk_every_action_once_in_a_stable_order,
    filters_select_by_partner_kind_territory_period_theme_and_text,
    relations_resolve_both_ways_and_node_refetches_everything,
    page_size_is_capped_and_bad_cursors_are_refused,
    health_readiness_metrics_and_http_errors,
    metrics_time_each_stage_of_a_request,
    internal_errors_are_masked,
    lists_answer_the_same_with_or_without_per_field_resolution,
);
