//! The write path and the visibility policy, on both backends: validation, atomicity,
//! idempotency, ownership, and rows that anonymous callers must never reach.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::records::*;
use common::TestApp;
use passerelle::domain::Visibility;
use passerelle::error::Error;
use passerelle::storage::writes::{self, WriteEffect};
use serde_json::{json, Value};

async fn setup_partners(app: &TestApp, ids: &[&str]) {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    app.app
        .store
        .run(move |c| {
            for id in &ids {
                writes::upsert_partner(c, &partner(id), "2026-01-01T00:00:00Z")?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
}

async fn writes_are_validated_field_by_field(app: TestApp) {
    setup_partners(&app, &["p1"]).await;
    let mut bad = action("bad id!", "p1", Visibility::Public);
    bad.title = "  ".into();
    bad.starts_on = "2021".parse().ok();
    bad.ends_on = "2020".parse().ok();
    bad.themes = vec!["Not A Slug".into()];
    bad.places[0].insee_code = Some("123456".into());
    let err = app
        .app
        .store
        .run(move |c| writes::upsert_action(c, &writer("p1"), &bad, "t"))
        .await
        .unwrap_err();
    let Error::Invalid(fields) = err else {
        panic!("expected field errors, got {}", err.code())
    };
    let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        names,
        ["id", "title", "endsOn", "themes[0]", "places[0].inseeCode"]
    );
}

async fn a_failed_write_leaves_nothing_behind(app: TestApp) {
    setup_partners(&app, &["p1"]).await;
    let result = app
        .app
        .store
        .run(|c| {
            writes::upsert_actor(
                c,
                &writer("p1"),
                &actor("p1-a1", "p1", Visibility::Public),
                "t",
            )?;
            writes::upsert_action(
                c,
                &writer("p1"),
                &action("p1-x1", "p1", Visibility::Public),
                "t",
            )?;
            // The second member does not exist: the whole partnership is refused.
            writes::upsert_partnership(
                c,
                &writer("p1"),
                &partnership(
                    "p1-ps1",
                    "p1",
                    Some("p1-x1"),
                    &["p1-a1", "p1-ghost"],
                    Visibility::Public,
                ),
                "t",
            )
        })
        .await;
    let Err(Error::Invalid(fields)) = result else {
        panic!("expected a field error")
    };
    assert_eq!(fields[0].field, "members[1].actorId");
    let data = app
        .data(
            "{ partnerships { totalCount } actors { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(data["partnerships"]["totalCount"], 0);
    assert_eq!(data["actors"]["totalCount"], 1);
}

async fn retried_writes_change_nothing_and_updates_keep_their_history(app: TestApp) {
    setup_partners(&app, &["p1"]).await;
    let first = action("p1-x1", "p1", Visibility::Public);
    let again = first.clone();
    let effects = app
        .app
        .store
        .run(move |c| {
            Ok((
                writes::upsert_action(c, &writer("p1"), &first, "2026-01-01T00:00:00Z")?,
                writes::upsert_action(c, &writer("p1"), &again, "2026-01-02T00:00:00Z")?,
            ))
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!(effects, (WriteEffect::Created, WriteEffect::Unchanged));
    let mut changed = action("p1-x1", "p1", Visibility::Public);
    changed.title = "Renamed".into();
    changed.themes = vec!["other".into()];
    let effect = app
        .app
        .store
        .run(move |c| writes::upsert_action(c, &writer("p1"), &changed, "2026-01-03T00:00:00Z"))
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!(effect, WriteEffect::Updated);
    let data = app
        .data(
            "{ actions { nodes { title themes provenance { importedAt updatedAt } } } }",
            json!({}),
        )
        .await;
    let a = &data["actions"]["nodes"][0];
    assert_eq!(a["title"], "Renamed");
    assert_eq!(a["themes"], json!(["other"]));
    assert_eq!(a["provenance"]["importedAt"], "2026-01-01T00:00:00Z");
    assert_eq!(a["provenance"]["updatedAt"], "2026-01-03T00:00:00Z");
}

async fn a_partner_cannot_overwrite_another_partners_record(app: TestApp) {
    setup_partners(&app, &["p1", "p2"]).await;
    let err = app
        .app
        .store
        .run(|c| {
            writes::upsert_action(
                c,
                &writer("p1"),
                &action("p1-x1", "p1", Visibility::Private),
                "t",
            )?;
            writes::upsert_action(
                c,
                &writer("p2"),
                &action("p1-x1", "p2", Visibility::Public),
                "t",
            )
        })
        .await
        .unwrap_err();
    // Outside p2's namespace, the same answer whether the record exists or not.
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let unwritten = app
        .app
        .store
        .run(|c| {
            writes::upsert_action(
                c,
                &writer("p2"),
                &action("p1-never", "p2", Visibility::Public),
                "t",
            )
        })
        .await
        .unwrap_err();
    assert_eq!(unwritten.message(), err.message());
    // Nor reference a record it may not see.
    let err = app
        .app
        .store
        .run(|c| {
            writes::upsert_outcome(
                c,
                &writer("p2"),
                &outcome("p2-o1", "p2", "p1-x1", Visibility::Public),
                "t",
            )
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
}

/// Public rows of p1, and rows of every visibility that anonymous callers must not reach.
async fn mixed_visibility(app: &TestApp) {
    setup_partners(app, &["p1"]).await;
    app.app
        .store
        .run(|c| {
            let w = writer("p1");
            writes::upsert_actor(c, &w, &actor("p1-a-public", "p1", Visibility::Public), "t")?;
            writes::upsert_actor(
                c,
                &w,
                &actor("p1-a-private", "p1", Visibility::Private),
                "t",
            )?;
            writes::upsert_action(c, &w, &action("p1-x-public", "p1", Visibility::Public), "t")?;
            writes::upsert_action(
                c,
                &w,
                &action("p1-x-partners", "p1", Visibility::Partners),
                "t",
            )?;
            let mut child = action("p1-x-private-child", "p1", Visibility::Private);
            child.parent_action_id = Some("p1-x-public".into());
            writes::upsert_action(c, &w, &child, "t")?;
            writes::upsert_outcome(
                c,
                &w,
                &outcome("p1-o-public", "p1", "p1-x-public", Visibility::Public),
                "t",
            )?;
            writes::upsert_outcome(
                c,
                &w,
                &outcome("p1-o-private", "p1", "p1-x-public", Visibility::Private),
                "t",
            )?;
            // A public outcome of a hidden action is hidden with its action.
            writes::upsert_outcome(
                c,
                &w,
                &outcome("p1-o-orphan", "p1", "p1-x-partners", Visibility::Public),
                "t",
            )?;
            writes::upsert_partnership(
                c,
                &w,
                &partnership(
                    "p1-ps-public",
                    "p1",
                    Some("p1-x-public"),
                    &["p1-a-public", "p1-a-private"],
                    Visibility::Public,
                ),
                "t",
            )?;
            writes::upsert_partnership(
                c,
                &w,
                &partnership(
                    "p1-ps-private",
                    "p1",
                    Some("p1-x-public"),
                    &["p1-a-public"],
                    Visibility::Private,
                ),
                "t",
            )?;
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
}

fn local_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["localId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn anonymous_callers_reach_public_rows_only_on_every_path(app: TestApp) {
    mixed_visibility(&app).await;
    let lists = app
        .data(
            "{ actors { totalCount nodes { localId } } actions { totalCount nodes { localId } }
               outcomes { totalCount nodes { localId } } partnerships { totalCount nodes { localId } } }",
            json!({}),
        )
        .await;
    assert_eq!(local_ids(&lists["actors"]["nodes"]), ["p1-a-public"]);
    assert_eq!(local_ids(&lists["actions"]["nodes"]), ["p1-x-public"]);
    assert_eq!(local_ids(&lists["outcomes"]["nodes"]), ["p1-o-public"]);
    assert_eq!(local_ids(&lists["partnerships"]["nodes"]), ["p1-ps-public"]);
    for kind in ["actors", "actions", "outcomes", "partnerships"] {
        assert_eq!(lists[kind]["totalCount"], 1, "{kind}");
    }

    // Nested relations.
    let nested = app
        .data(
            r#"{ actions { nodes { outcomes { localId } subActions { localId } partnerships { localId members { actor { localId } } }
                 partners { actor { localId } } } }
                 actors { nodes { partnerships { localId } actions { localId } } } }"#,
            json!({}),
        )
        .await;
    let x = &nested["actions"]["nodes"][0];
    assert_eq!(local_ids(&x["outcomes"]), ["p1-o-public"]);
    assert_eq!(local_ids(&x["subActions"]), Vec::<String>::new());
    assert_eq!(local_ids(&x["partnerships"]), ["p1-ps-public"]);
    assert_eq!(
        x["partnerships"][0]["members"],
        json!([{ "actor": { "localId": "p1-a-public" } }])
    );
    assert_eq!(
        x["partners"],
        json!([{ "actor": { "localId": "p1-a-public" } }])
    );
    assert_eq!(
        local_ids(&nested["actors"]["nodes"][0]["partnerships"]),
        ["p1-ps-public"]
    );

    // node(id:) and typed lookups of hidden rows are null, exactly as for rows that do not exist.
    use base64::Engine;
    let gid = |kind: &str, id: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
    };
    for (kind, id) in [
        ("Actor", "p1-a-private"),
        ("Action", "p1-x-partners"),
        ("Action", "p1-x-private-child"),
        ("Outcome", "p1-o-private"),
        ("Outcome", "p1-o-orphan"),
        ("Partnership", "p1-ps-private"),
    ] {
        let data = app
            .data(
                "query($id: ID!) { node(id: $id) { id } }",
                json!({ "id": gid(kind, id) }),
            )
            .await;
        assert_eq!(data["node"], Value::Null, "{kind} {id}");
    }
    let typed = app
        .data(
            "query($id: ID!) { action(id: $id) { id } }",
            json!({ "id": gid("Action", "p1-x-partners") }),
        )
        .await;
    assert_eq!(typed["action"], Value::Null);
    // Filters cannot be used to probe hidden rows either.
    let probe = app
        .data(
            r#"{ actions(filter: { partners: ["p1"], statuses: [ACTIVE] }) { totalCount } }"#,
            json!({}),
        )
        .await;
    assert_eq!(probe["actions"]["totalCount"], 1);
}

/// The SQL predicate (`visible_to!`) and the in-memory policy (`RowFilter::allows`) agree on
/// every owner × visibility × viewer combination.
async fn sql_visibility_agrees_with_the_policy(app: TestApp) {
    use passerelle::domain::RowFilter;
    use passerelle::storage::queries;
    setup_partners(&app, &["p1", "p2", "p3"]).await;
    let mut all = Vec::new();
    for owner in ["p1", "p2", "p3"] {
        for vis in Visibility::ALL {
            all.push((format!("{owner}-{}", vis.as_str()), owner.to_string(), *vis));
        }
    }
    let rows = all.clone();
    app.app
        .store
        .run(move |c| {
            for (id, owner, vis) in &rows {
                writes::upsert_actor(c, &writer(owner), &actor(id, owner, *vis), "t")?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    let viewers = [
        RowFilter::default(),
        RowFilter {
            own: Some("p1".into()),
            shared_by: vec![],
        },
        RowFilter {
            own: Some("p1".into()),
            shared_by: vec!["p2".into()],
        },
        RowFilter {
            own: Some("p3".into()),
            shared_by: vec!["p1".into(), "p2".into()],
        },
    ];
    for rf in viewers {
        let ids: Vec<String> = all.iter().map(|(id, _, _)| id.clone()).collect();
        let filter = rf.clone();
        let seen = app
            .app
            .store
            .run(move |c| queries::actors_by_ids(c, &filter, &ids))
            .await
            .map_err(|e| e.message())
            .unwrap();
        let mut seen: Vec<String> = seen.into_iter().map(|a| a.id).collect();
        seen.sort();
        let mut expected: Vec<String> = all
            .iter()
            .filter(|(_, o, v)| rf.allows(o, *v))
            .map(|(id, _, _)| id.clone())
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "{rf:?}");
        let q = passerelle::storage::queries::ActorQuery::default();
        let filter = rf.clone();
        let count = app
            .app
            .store
            .run(move |c| queries::count_actors(c, &filter, &q))
            .await
            .map_err(|e| e.message())
            .unwrap();
        assert_eq!(count as usize, expected.len(), "{rf:?}");
    }
}

/// Partnerships and their members are read in one statement (a row per member): each comes
/// once, with its members in their order, on the action path and the actor path alike; a
/// hidden partnership naming a visible member stays hidden.
async fn partnerships_come_whole_with_their_members_in_order(app: TestApp) {
    setup_partners(&app, &["p1"]).await;
    app.app
        .store
        .run(|c| {
            let w = writer("p1");
            for a in ["p1-a1", "p1-a2", "p1-a3"] {
                writes::upsert_actor(c, &w, &actor(a, "p1", Visibility::Public), "t")?;
            }
            writes::upsert_action(c, &w, &action("p1-x1", "p1", Visibility::Public), "t")?;
            for (id, members, visibility) in [
                (
                    "p1-ps-b",
                    &["p1-a3", "p1-a1", "p1-a2"][..],
                    Visibility::Public,
                ),
                ("p1-ps-a", &["p1-a2"][..], Visibility::Public),
                ("p1-ps-c", &["p1-a1"][..], Visibility::Private),
            ] {
                let p = partnership(id, "p1", Some("p1-x1"), members, visibility);
                writes::upsert_partnership(c, &w, &p, "t")?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    let data = app
        .data(
            r#"{ actions { nodes { partnerships { localId members { actor { localId } } } } }
                 actors { nodes { localId partnerships { localId members { actor { localId } } } } } }"#,
            json!({}),
        )
        .await;
    let members = |ids: &[&str]| -> Value {
        Value::Array(
            ids.iter()
                .map(|a| json!({ "actor": { "localId": a } }))
                .collect(),
        )
    };
    let ps_a = json!({ "localId": "p1-ps-a", "members": members(&["p1-a2"]) });
    let ps_b = json!({ "localId": "p1-ps-b", "members": members(&["p1-a3", "p1-a1", "p1-a2"]) });
    // Sorted by name: "Partnership ps-a", then "Partnership ps-b".
    assert_eq!(
        data["actions"]["nodes"][0]["partnerships"],
        json!([ps_a, ps_b])
    );
    let by_actor: Vec<(&str, &Value)> = data["actors"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["localId"].as_str().unwrap(), &a["partnerships"]))
        .collect();
    assert_eq!(
        by_actor,
        [
            ("p1-a1", &json!([ps_b])),
            ("p1-a2", &json!([ps_a, ps_b])),
            ("p1-a3", &json!([ps_b]))
        ]
    );
}

/// A dashboard's page of one partner's actions holds that partner's first rows, by title and by
/// start; on PostgreSQL it also reads only those rows, however many of another partner's sort
/// before them (`actions_owner_title_idx`, `actions_owner_start_idx`, and an equality on the
/// owner for the database to use them), with the generic plan every pooled connection uses.
/// SQLite keeps no row counts; its plan uses the same indexes.
async fn a_partners_page_reads_that_page_only(app: TestApp) {
    use diesel::connection::Connection;
    use diesel::sql_types::BigInt;
    use diesel::RunQueryDsl;
    use passerelle::storage::queries::{self, ActionQuery, ActionSort, Detail, PageRequest};

    #[derive(diesel::QueryableByName)]
    struct Read {
        #[diesel(sql_type = BigInt)]
        rows: i64,
    }
    #[derive(diesel::QueryableByName)]
    struct PlanCacheMode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        plan_cache_mode: String,
    }

    setup_partners(&app, &["p1", "p2"]).await;
    app.app
        .store
        .run(|c| {
            // p2's 60 actions sort before all of p1's 8, by title and by start.
            for i in 0..60 {
                let mut a = action(&format!("p2-{i:02}"), "p2", Visibility::Public);
                a.title = format!("A {i:02}");
                a.starts_on = "2019-01".parse().ok();
                writes::upsert_action(c, &writer("p2"), &a, "t")?;
            }
            for i in 0..8 {
                let mut a = action(&format!("p1-{i:02}"), "p1", Visibility::Public);
                a.title = format!("B {i:02}");
                a.starts_on = format!("2020-{:02}", i + 1).parse().ok();
                writes::upsert_action(c, &writer("p1"), &a, "t")?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    let postgres = app.backend == common::Backend::Postgres;
    for sort in [ActionSort::Title, ActionSort::Start] {
        let (ids, read) = app
            .app
            .store
            .run(move |c| {
                c.transaction(|c| {
                    // Rows of actions read so far by this connection (PostgreSQL keeps a
                    // session's counts pending for a while, across transactions).
                    let rows_read = |c: &mut passerelle::storage::AnyConnection| {
                        if !postgres {
                            return Ok(0);
                        }
                        diesel::sql_query(
                            "SELECT (idx_tup_fetch + seq_tup_read)::bigint AS rows \
                             FROM pg_stat_xact_user_tables WHERE relname = 'actions'",
                        )
                        .get_result::<Read>(c)
                        .map(|r| r.rows)
                    };
                    if postgres {
                        // The plan checked is the generic one, made without the owner's value
                        // or the LIMIT: the one every pooled connection uses.
                        let mode = diesel::sql_query("SHOW plan_cache_mode")
                            .get_result::<PlanCacheMode>(c)?
                            .plan_cache_mode;
                        assert_eq!(mode, "force_generic_plan");
                        // Whatever the planner thinks of a table this small, an index it may
                        // use; the test then counts the rows that index made it fetch.
                        diesel::sql_query("SET LOCAL enable_seqscan = off").execute(c)?;
                    }
                    let before = rows_read(c)?;
                    let page = queries::actions_page(
                        c,
                        &writer("p1"),
                        Detail::default(),
                        &ActionQuery {
                            owners: vec!["p1".into()],
                            ..Default::default()
                        },
                        sort,
                        &PageRequest {
                            after: None,
                            limit: 4,
                            dir: Default::default(),
                        },
                    )?;
                    let read = rows_read(c)? - before;
                    let ids: Vec<String> = page.into_iter().map(|(_, a)| a.id).collect();
                    Ok::<_, passerelle::error::Error>((ids, read))
                })
            })
            .await
            .map_err(|e| e.message())
            .unwrap();
        assert_eq!(ids, ["p1-00", "p1-01", "p1-02", "p1-03"], "{sort:?}");
        if postgres {
            // The 4 rows of the page: neither p2's 60 that sort before them (an index on the
            // ordering alone) nor p1's other 4 (a sort of all of p1's rows).
            assert!(
                read <= 4,
                "{sort:?}: {read} rows of actions read for a page of 4"
            );
        }
    }
}

backend_tests!(
    a_partners_page_reads_that_page_only,
    sql_visibility_agrees_with_the_policy,
    writes_are_validated_field_by_field,
    a_failed_write_leaves_nothing_behind,
    retried_writes_change_nothing_and_updates_keep_their_history,
    a_partner_cannot_overwrite_another_partners_record,
    anonymous_callers_reach_public_rows_only_on_every_path,
    partnerships_come_whole_with_their_members_in_order,
);
