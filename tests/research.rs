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

fn provenance() -> Provenance {
    Provenance {
        source: "test:research".into(),
        source_ref: None,
        imported_at: String::new(),
        updated_at: String::new(),
    }
}

/// A programme of `owner` with no themes, places or parent.
/// An action of `owner`, whose id is `id` in the owner's namespace.
fn action(owner: &str, id: &str, title: &str, visibility: Visibility) -> Action {
    Action {
        id: format!("{owner}-{id}"),
        owner: owner.into(),
        kind: ActionKind::Programme,
        title: title.into(),
        summary: None,
        status: None,
        starts_on: None,
        ends_on: None,
        schedule: None,
        parent_action_id: None,
        website: None,
        themes: vec![],
        places: vec![],
        visibility,
        provenance: provenance(),
    }
}

/// Writes `action` as its owner, then `n` actual figures of `value` in `unit` on it.
fn write_figures(
    c: &mut passerelle::storage::AnyConnection,
    action: &Action,
    n: usize,
    value: f64,
    unit: &str,
    visibility: Visibility,
) -> passerelle::error::Result<()> {
    let now = passerelle::app::now();
    let writer = RowFilter {
        own: Some(action.owner.clone()),
        shared_by: vec![],
    };
    passerelle::storage::writes::upsert_action(c, &writer, action, &now)?;
    for i in 0..n {
        passerelle::storage::writes::upsert_outcome(
            c,
            &writer,
            &Outcome {
                id: format!("{}-{i}", action.id),
                owner: action.owner.clone(),
                action_id: action.id.clone(),
                indicator: "Participants".into(),
                measure: OutcomeMeasure::Actual,
                value: Some(value),
                unit: Some(unit.into()),
                statement: None,
                period_start: Some("2024-01".parse().unwrap()),
                period_end: None,
                disaggregations: vec![],
                visibility,
                provenance: provenance(),
            },
            &now,
        )?;
    }
    Ok(())
}

async fn fixtures(app: &TestApp) {
    app.app
        .store
        .run(|c| {
            for (owner, visibility, n, value) in FIGURES {
                let a = action(
                    owner,
                    &format!("research-{owner}"),
                    &format!("Programme {owner}"),
                    Visibility::Public,
                );
                write_figures(c, &a, n, value, UNIT, visibility)?;
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

const NESTED_UNIT: &str = "test-nested-participants";

/// Cells by key, as (records, sum), and the total; every cell must be published.
async fn published(app: &TestApp, token: &str, by: &str) -> (Vec<(String, i64, f64)>, Value) {
    let data = app
        .data_as(token, AGGREGATE, json!({ "by": by, "unit": NESTED_UNIT }))
        .await;
    let agg = &data["researchAggregate"];
    let cells = agg["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["suppressed"], false, "{by}: {agg:#}");
            (
                c["key"].as_str().unwrap().to_owned(),
                c["records"].as_i64().unwrap(),
                c["sum"].as_f64().unwrap(),
            )
        })
        .collect();
    (cells, agg["total"].clone())
}

async fn figures_count_once_per_theme_and_place_and_under_the_programme_one_may_see(app: TestApp) {
    app.seed().await;
    app.app
        .store
        .run(|c| {
            let place = |name: &str, insee: Option<&str>| Place {
                name: name.into(),
                level: PlaceLevel::Commune,
                insee_code: insee.map(Into::into),
            };
            // A public programme with no figures of its own, and a sub-action of it with two
            // themes and two places (one without an INSEE code).
            let programme = action(
                "caravan",
                "nested-p",
                "Caravan programme",
                Visibility::Public,
            );
            write_figures(c, &programme, 0, 0.0, NESTED_UNIT, Visibility::Public)?;
            let mut sub = action(
                "caravan",
                "nested-s",
                "Caravan district days",
                Visibility::Public,
            );
            sub.parent_action_id = Some("caravan-nested-p".into());
            sub.themes = vec!["health".into(), "housing".into()];
            sub.places = vec![place("Grenoble", Some("38185")), place("Échirolles", None)];
            write_figures(c, &sub, 12, 1.0, NESTED_UNIT, Visibility::Public)?;
            // A private programme: its public sub-action's figures are counted, under the
            // sub-action's own title, never the private one's.
            let secret = action(
                "collective",
                "nested-q",
                "Secret programme",
                Visibility::Private,
            );
            write_figures(c, &secret, 0, 0.0, NESTED_UNIT, Visibility::Private)?;
            let mut open = action(
                "collective",
                "nested-t",
                "Open workshops",
                Visibility::Public,
            );
            open.parent_action_id = Some("collective-nested-q".into());
            open.themes = vec!["housing".into()];
            write_figures(c, &open, 15, 2.0, NESTED_UNIT, Visibility::Public)?;
            // No themes, no places, no parent.
            let bare = action(
                "department",
                "nested-u",
                "Insertion plan",
                Visibility::Public,
            );
            write_figures(c, &bare, 11, 3.0, NESTED_UNIT, Visibility::Public)?;
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    let token = app.token("anvita", "research").await;
    // 38 figures summing 75, each counted once in the total whatever the dimension.
    let total = json!({ "suppressed": false, "records": 38, "sum": 75.0 });
    let (cells, t) = published(&app, &token, "THEME").await;
    assert_eq!(
        cells,
        [
            ("health".into(), 12, 12.0),
            ("housing".into(), 27, 42.0),
            ("unknown".into(), 11, 33.0),
        ]
    );
    assert_eq!(t, total);
    let (cells, t) = published(&app, &token, "TERRITORY").await;
    assert_eq!(
        cells,
        [
            ("38185".into(), 12, 12.0),
            ("unknown".into(), 26, 63.0),
            ("Échirolles".into(), 12, 12.0),
        ]
    );
    assert_eq!(t, total);
    let (cells, t) = published(&app, &token, "PROGRAMME").await;
    assert_eq!(
        cells,
        [
            ("Caravan programme".into(), 12, 12.0),
            ("Insertion plan".into(), 11, 33.0),
            ("Open workshops".into(), 15, 30.0),
        ]
    );
    assert_eq!(t, total);
    let (cells, _) = published(&app, &token, "PARTNER").await;
    assert_eq!(
        cells,
        [
            ("caravan".into(), 12, 12.0),
            ("collective".into(), 15, 30.0),
            ("department".into(), 11, 33.0),
        ]
    );
}

backend_tests!(
    aggregates_suppress_small_cells_and_never_count_private_rows,
    aggregates_need_the_research_scope,
    the_aggregate_export_equals_research_aggregate,
    a_suppressed_value_never_appears_in_the_export,
    the_aggregate_export_needs_the_research_scope,
    figures_count_once_per_theme_and_place_and_under_the_programme_one_may_see,
);
