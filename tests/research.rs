//! Research aggregates: `research` scope only, private rows never counted, small cells withheld
//! with complementary suppression.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{error_code, TestApp};
use passerelle::domain::*;
use serde_json::{json, Value};

const UNIT: &str = "test-participants";

/// (owner, visibility, how many outcomes, value of each)
const FIGURES: [(&str, Visibility, usize, f64); 4] = [
    ("caravan", Visibility::Public, 12, 2.0),
    ("anvita", Visibility::Partners, 11, 5.0),
    ("department", Visibility::Public, 3, 1.0),
    ("collective", Visibility::Private, 20, 100.0),
];

async fn fixtures(app: &TestApp) {
    app.app
        .store
        .run(|c| {
            let now = passerelle::app::now();
            let prov = Provenance {
                source: "test:research".into(),
                source_ref: None,
                imported_at: String::new(),
                updated_at: String::new(),
            };
            for (owner, visibility, n, value) in FIGURES {
                let writer = RowFilter {
                    own: Some(owner.into()),
                    shared_by: vec![],
                };
                let action_id = format!("research-{owner}");
                passerelle::storage::writes::upsert_action(
                    c,
                    &writer,
                    &Action {
                        id: action_id.clone(),
                        owner: owner.into(),
                        kind: ActionKind::Programme,
                        title: format!("Programme {owner}"),
                        summary: None,
                        status: None,
                        starts_on: None,
                        ends_on: None,
                        schedule: None,
                        parent_action_id: None,
                        website: None,
                        themes: vec![],
                        places: vec![],
                        visibility: Visibility::Public,
                        provenance: prov.clone(),
                    },
                    &now,
                )?;
                for i in 0..n {
                    passerelle::storage::writes::upsert_outcome(
                        c,
                        &writer,
                        &Outcome {
                            id: format!("research-{owner}-{i}"),
                            owner: owner.into(),
                            action_id: action_id.clone(),
                            indicator: "Participants".into(),
                            measure: OutcomeMeasure::Actual,
                            value: Some(value),
                            unit: Some(UNIT.into()),
                            statement: None,
                            period_start: Some("2024-01".parse().unwrap()),
                            period_end: None,
                            disaggregations: vec![],
                            visibility,
                            provenance: prov.clone(),
                        },
                        &now,
                    )?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
}

const AGGREGATE: &str = r#"query($by: AggregateDimension!, $unit: String!) {
    researchAggregate(by: $by, unit: $unit) {
        minCell cells { key suppressed records sum } total { suppressed records sum }
    }
}"#;

async fn aggregates_suppress_small_cells_and_never_count_private_rows(app: TestApp) {
    app.seed().await;
    fixtures(&app).await;
    let token = app.token("caravan", "research").await;
    let data = app
        .data_as(&token, AGGREGATE, json!({ "by": "PARTNER", "unit": UNIT }))
        .await;
    let agg = &data["researchAggregate"];
    assert_eq!(agg["minCell"], 11);
    assert_eq!(
        agg["cells"],
        json!([
            // 11 `partners` figures: counted (aggregated only), published.
            { "key": "anvita", "suppressed": false, "records": 11, "sum": 55.0 },
            // Withheld so that department's cannot be derived from the total.
            { "key": "caravan", "suppressed": true, "records": null, "sum": null },
            // 3 figures < 11: withheld.
            { "key": "department", "suppressed": true, "records": null, "sum": null },
            // collective's figures are private: no cell at all.
        ]),
        "{agg:#}"
    );
    assert_eq!(
        agg["total"],
        json!({ "suppressed": false, "records": 26, "sum": 82.0 })
    );
    // By period: one cell of 26 records, published; by programme: as by partner.
    let data = app
        .data_as(&token, AGGREGATE, json!({ "by": "PERIOD", "unit": UNIT }))
        .await;
    assert_eq!(
        data["researchAggregate"]["cells"],
        json!([{ "key": "2024", "suppressed": false, "records": 26, "sum": 82.0 }])
    );
    let data = app
        .data_as(
            &token,
            AGGREGATE,
            json!({ "by": "PROGRAMME", "unit": UNIT }),
        )
        .await;
    let published: Vec<&str> = data["researchAggregate"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["suppressed"] == false)
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(published, vec!["Programme anvita"]);
}

async fn aggregates_need_the_research_scope(app: TestApp) {
    app.seed().await;
    let vars = json!({ "by": "PARTNER", "unit": UNIT });
    let body = app.graphql(AGGREGATE, vars.clone()).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let token = app.token("caravan", "read read:sensitive admin").await;
    let body = app.graphql_as(&token, AGGREGATE, vars).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    assert!(body["data"].is_null());
}

async fn export(app: &TestApp, token: Option<&str>, query: &str) -> reqwest::Response {
    let mut req = app
        .http
        .get(app.url(&format!("/export/aggregates?{query}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

const DIMENSIONS: [(&str, &str); 5] = [
    ("partner", "PARTNER"),
    ("programme", "PROGRAMME"),
    ("territory", "TERRITORY"),
    ("period", "PERIOD"),
    ("theme", "THEME"),
];

async fn the_aggregate_export_equals_research_aggregate(app: TestApp) {
    app.seed().await;
    fixtures(&app).await;
    let token = app.token("caravan", "research").await;
    let res = export(&app, Some(&token), &format!("unit={UNIT}&format=ndjson")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    assert!(res.headers().get("content-length").is_none(), "streamed");
    let text = res.text().await.unwrap();
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // All five dimensions, in order, each as researchAggregate answers it.
    for (name, graphql_name) in DIMENSIONS {
        let data = app
            .data_as(
                &token,
                AGGREGATE,
                json!({ "by": graphql_name, "unit": UNIT }),
            )
            .await;
        let agg = &data["researchAggregate"];
        let mine: Vec<&Value> = rows.iter().filter(|r| r["by"] == name).collect();
        assert!(!mine.is_empty(), "{name}: {text}");
        let (totals, cells): (Vec<&Value>, Vec<&Value>) =
            mine.into_iter().partition(|r| r["total"] == true);
        let as_graphql: Vec<Value> = cells
            .iter()
            .map(|r| {
                assert_eq!((&r["unit"], &r["min_cell"]), (&json!(UNIT), &json!(11)));
                json!({ "key": r["key"], "suppressed": r["suppressed"],
                        "records": r["records"], "sum": r["sum"] })
            })
            .collect();
        assert_eq!(json!(as_graphql), agg["cells"], "{name}");
        assert_eq!(totals.len(), 1, "{name}");
        assert_eq!(totals[0]["key"], Value::Null);
        assert_eq!(
            json!({ "suppressed": totals[0]["suppressed"], "records": totals[0]["records"],
                    "sum": totals[0]["sum"] }),
            agg["total"],
            "{name}"
        );
    }
    // One dimension, as CSV: the header, then its cells and its total.
    let res = export(
        &app,
        Some(&token),
        &format!("by=partner&unit={UNIT}&format=csv"),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = res.text().await.unwrap();
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        [
            "by,unit,min_cell,key,total,suppressed,records,sum",
            "partner,test-participants,11,anvita,false,false,11,55.0",
            "partner,test-participants,11,caravan,false,true,,",
            "partner,test-participants,11,department,false,true,,",
            "partner,test-participants,11,,true,false,26,82.0",
        ],
        "{csv}"
    );
}

async fn a_suppressed_value_never_appears_in_the_export(app: TestApp) {
    app.seed().await;
    fixtures(&app).await;
    let token = app.token("anvita", "research read").await;
    for format in ["ndjson", "csv"] {
        let body = export(&app, Some(&token), &format!("unit={UNIT}&format={format}"))
            .await
            .text()
            .await
            .unwrap();
        // caravan: 12 figures summing 24; department: 3 summing 3; collective (private): 20
        // summing 2000. None of those numbers may leak, in any dimension.
        for leak in [
            "\"records\":12",
            "\"sum\":24.0",
            ",12,24.0",
            "\"records\":3,",
            "\"sum\":3.0",
            ",3,3.0",
            "\"records\":20",
            "2000",
            "collective",
        ] {
            assert!(!body.contains(leak), "{format}: `{leak}` in {body}");
        }
        assert!(body.contains("department"), "{body}");
    }
}

async fn the_aggregate_export_needs_the_research_scope(app: TestApp) {
    app.seed().await;
    fixtures(&app).await;
    let res = export(&app, None, "by=partner").await;
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHENTICATED");
    let token = app
        .token("caravan", "read read:sensitive admin write")
        .await;
    let res = export(&app, Some(&token), "by=partner&format=csv").await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "FORBIDDEN");
    let research = app.token("caravan", "research").await;
    let res = export(&app, Some(&research), "by=colour").await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "BAD_REQUEST");
    let res = export(&app, Some(&research), "format=xlsx").await;
    assert_eq!(res.status(), 400);
}

backend_tests!(
    aggregates_suppress_small_cells_and_never_count_private_rows,
    aggregates_need_the_research_scope,
    the_aggregate_export_equals_research_aggregate,
    a_suppressed_value_never_appears_in_the_export,
    the_aggregate_export_needs_the_research_scope,
);
