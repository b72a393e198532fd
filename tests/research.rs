//! Research aggregates: `research` scope only, private rows never counted, small cells withheld
//! with complementary suppression.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{error_code, TestApp};
use passerelle::domain::*;
use serde_json::json;

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

backend_tests!(
    aggregates_suppress_small_cells_and_never_count_private_rows,
    aggregates_need_the_research_scope,
);
