//! The leak matrix: every partner (and anonymous, and a partner token without `read`) × every
//! entity × list / count / `node(id:)` / typed lookup / nested relation, against fixtures of
//! every visibility owned by every partner, with data-sharing agreements active, expired and
//! not yet started. Each viewer must see exactly what the policy allows, no more, no less.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::TestApp;
use passerelle::domain::{self, *};
use passerelle::graphql::ids::{encode, Kind};
use passerelle::storage::writes;
use serde_json::{json, Value};

const PARTNERS: [&str; 4] = ["collective", "department", "anvita", "caravan"];
const VISIBILITIES: [(Visibility, &str); 3] = [
    (Visibility::Public, "public"),
    (Visibility::Partners, "partners"),
    (Visibility::Private, "private"),
];

fn prov() -> Provenance {
    Provenance {
        source: "test:leaks".into(),
        source_ref: None,
        imported_at: String::new(),
        updated_at: String::new(),
    }
}

fn id(owner: &str, vis: &str, what: &str) -> String {
    format!("leak-{owner}-{vis}-{what}")
}

/// For each partner and visibility: an actor, an action (whose parent is the partner's public
/// action, so it is a nested sub-action), an outcome and a partnership on the public action
/// with the actor as member; plus a public child action of the private action (a nested parent).
async fn fixtures(app: &TestApp) {
    app.app
        .store
        .run(|c| {
            let now = passerelle::app::now();
            for owner in PARTNERS {
                let writer = RowFilter {
                    own: Some(owner.into()),
                    shared_by: vec![],
                };
                for (visibility, vis) in VISIBILITIES {
                    writes::upsert_actor(
                        c,
                        &writer,
                        &Actor {
                            id: id(owner, vis, "actor"),
                            owner: owner.into(),
                            kind: ActorKind::Association,
                            name: format!("Leak {owner} {vis}"),
                            acronym: None,
                            description: None,
                            website: None,
                            territory_code: None,
                            territory_name: None,
                            parent_actor_id: None,
                            visibility,
                            provenance: prov(),
                        },
                        &now,
                    )?;
                }
                for (visibility, vis) in VISIBILITIES {
                    writes::upsert_action(
                        c,
                        &writer,
                        &domain::Action {
                            id: id(owner, vis, "action"),
                            owner: owner.into(),
                            kind: ActionKind::Intervention,
                            title: format!("Leak {owner} {vis}"),
                            summary: None,
                            status: None,
                            starts_on: None,
                            ends_on: None,
                            schedule: None,
                            parent_action_id: (vis != "public")
                                .then(|| id(owner, "public", "action")),
                            website: None,
                            themes: vec![],
                            places: vec![],
                            visibility,
                            provenance: prov(),
                        },
                        &now,
                    )?;
                }
                writes::upsert_action(
                    c,
                    &writer,
                    &domain::Action {
                        id: id(owner, "public", "child"),
                        owner: owner.into(),
                        kind: ActionKind::Event,
                        title: format!("Leak {owner} child of private"),
                        summary: None,
                        status: None,
                        starts_on: None,
                        ends_on: None,
                        schedule: None,
                        parent_action_id: Some(id(owner, "private", "action")),
                        website: None,
                        themes: vec![],
                        places: vec![],
                        visibility: Visibility::Public,
                        provenance: prov(),
                    },
                    &now,
                )?;
                for (visibility, vis) in VISIBILITIES {
                    writes::upsert_outcome(
                        c,
                        &writer,
                        &domain::Outcome {
                            id: id(owner, vis, "outcome"),
                            owner: owner.into(),
                            action_id: id(owner, "public", "action"),
                            indicator: format!("Leak {owner} {vis}"),
                            measure: OutcomeMeasure::Actual,
                            value: Some(3.0),
                            unit: Some("people".into()),
                            statement: None,
                            period_start: None,
                            period_end: None,
                            disaggregations: vec![],
                            visibility,
                            provenance: prov(),
                        },
                        &now,
                    )?;
                    writes::upsert_partnership(
                        c,
                        &writer,
                        &domain::Partnership {
                            id: id(owner, vis, "partnership"),
                            owner: owner.into(),
                            action_id: Some(id(owner, "public", "action")),
                            name: format!("Leak {owner} {vis}"),
                            description: None,
                            starts_on: None,
                            ends_on: None,
                            members: VISIBILITIES
                                .iter()
                                .map(|(_, v)| Member {
                                    actor_id: id(owner, v, "actor"),
                                    role: PartnershipRole::Participant,
                                })
                                .collect(),
                            visibility,
                            provenance: prov(),
                        },
                        &now,
                    )?;
                }
            }
            // anvita shares with caravan now; department's agreement with caravan has ended;
            // collective's with anvita has not started.
            use passerelle::auth::sharing::grant;
            grant(c, "anvita", "caravan", "2020-01-01", None)?;
            grant(c, "department", "caravan", "2020-01-01", Some("2021-12-31"))?;
            grant(c, "collective", "anvita", "2999-01-01", None)?;
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
}

/// Who asks: the partner acting (if any) and whether its token has `read`.
#[derive(Clone, Copy, Debug)]
struct Who {
    partner: Option<&'static str>,
    read: bool,
}

/// The policy, stated independently of the code under test.
fn may_see(who: Who, owner: &str, vis: &str) -> bool {
    let me = if who.read { who.partner } else { None };
    match vis {
        "public" => true,
        "private" => me == Some(owner),
        "partners" => me == Some(owner) || (me == Some("caravan") && owner == "anvita"),
        _ => unreachable!(),
    }
}

fn expected(who: Who, what: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for owner in PARTNERS {
        for (_, vis) in VISIBILITIES {
            if may_see(who, owner, vis) {
                set.insert(id(owner, vis, what));
            }
        }
        if what == "action" {
            set.insert(id(owner, "public", "child"));
        }
    }
    set
}

async fn ask(app: &TestApp, token: &Option<String>, query: &str, vars: Value) -> Value {
    let body = match token {
        Some(t) => app.graphql_as(t, query, vars).await,
        None => app.graphql(query, vars).await,
    };
    assert!(body.get("errors").is_none(), "{query}: {body:#}");
    body["data"].clone()
}

/// Every `leak-` local id of a list, through all pages; checks totalCount against the list.
async fn list(app: &TestApp, token: &Option<String>, field: &str) -> BTreeSet<String> {
    let query = format!(
        "query($after: String) {{ {field}(first: 100, after: $after) {{ totalCount nodes {{ localId }} pageInfo {{ hasNextPage endCursor }} }} }}"
    );
    let (mut all, mut after) = (Vec::new(), Value::Null);
    let total = loop {
        let data = ask(app, token, &query, json!({ "after": after })).await;
        let conn = &data[field];
        let total = conn["totalCount"].as_i64();
        for n in conn["nodes"].as_array().unwrap() {
            all.push(n["localId"].as_str().unwrap().to_owned());
        }
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break total;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    };
    assert_eq!(
        total.unwrap() as usize,
        all.len(),
        "{field}: totalCount disagrees with the list"
    );
    all.into_iter().filter(|i| i.starts_with("leak-")).collect()
}

async fn check_viewer(app: &TestApp, who: Who, token: Option<String>) {
    let ctx = format!("{who:?}");
    // Lists and counts.
    for (field, what) in [
        ("actors", "actor"),
        ("actions", "action"),
        ("outcomes", "outcome"),
        ("partnerships", "partnership"),
    ] {
        assert_eq!(
            list(app, &token, field).await,
            expected(who, what),
            "{ctx} {field}"
        );
    }
    // node(id:) and the typed lookups, for every fixture.
    let mut aliases = Vec::new();
    let mut wanted = Vec::new();
    for owner in PARTNERS {
        for (_, vis) in VISIBILITIES {
            for (kind, what, typed) in [
                (Kind::Actor, "actor", "actor"),
                (Kind::Action, "action", "action"),
                (Kind::Outcome, "outcome", "outcome"),
                (Kind::Partnership, "partnership", "partnership"),
            ] {
                let local = id(owner, vis, what);
                let gid = encode(kind, &local).0;
                let n = aliases.len();
                aliases.push(format!(
                    "n{n}: node(id: \"{gid}\") {{ id }} t{n}: {typed}(id: \"{gid}\") {{ id }}"
                ));
                wanted.push((n, local, may_see(who, owner, vis)));
            }
        }
    }
    // In documents of at most 12 lookups (24 aliases): the server caps aliases per document.
    let mut data = serde_json::Map::new();
    for chunk in aliases.chunks(12) {
        let part = ask(
            app,
            &token,
            &format!("{{ {} }}", chunk.join(" ")),
            json!({}),
        )
        .await;
        data.extend(part.as_object().cloned().unwrap_or_default());
    }
    let data = Value::Object(data);
    for (n, local, visible) in wanted {
        for prefix in ["n", "t"] {
            assert_eq!(
                !data[format!("{prefix}{n}")].is_null(),
                visible,
                "{ctx} {prefix} {local}"
            );
        }
    }
    // Nested relations from each partner's public records.
    let nested = r#"query($action: ID!, $actor: ID!, $child: ID!, $ps: ID!) {
        action(id: $action) {
            subActions { localId } outcomes { localId } partnerships { localId }
            partners { actor { localId } }
        }
        actor(id: $actor) { partnerships { localId } actions { localId } }
        child: action(id: $child) { parent { localId } }
        partnership(id: $ps) { members { actor { localId } } }
    }"#;
    for owner in PARTNERS {
        let vars = json!({
            "action": encode(Kind::Action, &id(owner, "public", "action")).0,
            "actor": encode(Kind::Actor, &id(owner, "public", "actor")).0,
            "child": encode(Kind::Action, &id(owner, "public", "child")).0,
            "ps": encode(Kind::Partnership, &id(owner, "public", "partnership")).0,
        });
        let data = ask(app, &token, nested, vars).await;
        let ids = |v: &Value, path: &[&str]| -> BTreeSet<String> {
            let mut out = BTreeSet::new();
            fn walk(v: &Value, path: &[&str], out: &mut BTreeSet<String>) {
                match (v, path.split_first()) {
                    (Value::Array(items), _) => items.iter().for_each(|i| walk(i, path, out)),
                    (_, None) => {
                        out.insert(v.as_str().unwrap().to_owned());
                    }
                    (_, Some((head, rest))) => walk(&v[*head], rest, out),
                }
            }
            walk(v, path, &mut out);
            out
        };
        let visible = |what: &str, only: &[&str]| -> BTreeSet<String> {
            VISIBILITIES
                .iter()
                .filter(|(_, v)| only.contains(v) && may_see(who, owner, v))
                .map(|(_, v)| id(owner, v, what))
                .collect()
        };
        let a = &data["action"];
        assert_eq!(
            ids(a, &["subActions", "localId"]),
            visible("action", &["partners", "private"]),
            "{ctx} {owner} subActions"
        );
        assert_eq!(
            ids(a, &["outcomes", "localId"]),
            visible("outcome", &["public", "partners", "private"]),
            "{ctx} {owner} outcomes"
        );
        assert_eq!(
            ids(a, &["partnerships", "localId"]),
            visible("partnership", &["public", "partners", "private"]),
            "{ctx} {owner} partnerships"
        );
        let partner_actors = ids(a, &["partners", "actor", "localId"]);
        assert!(
            partner_actors.is_subset(&visible("actor", &["public", "partners", "private"])),
            "{ctx} {owner} action partners {partner_actors:?}"
        );
        assert_eq!(
            ids(&data["actor"], &["partnerships", "localId"]),
            visible("partnership", &["public", "partners", "private"]),
            "{ctx} {owner} actor partnerships"
        );
        let acted: BTreeSet<String> = ids(&data["actor"], &["actions", "localId"]);
        assert!(
            acted.is_subset(&visible("action", &["public", "partners", "private"])),
            "{ctx} {owner} actor actions {acted:?}"
        );
        let parent = &data["child"]["parent"];
        assert_eq!(
            !parent.is_null(),
            may_see(who, owner, "private"),
            "{ctx} {owner} parent"
        );
        assert_eq!(
            ids(&data["partnership"], &["members", "actor", "localId"]),
            visible("actor", &["public", "partners", "private"]),
            "{ctx} {owner} members"
        );
    }
}

async fn every_viewer_sees_exactly_what_the_policy_allows(app: TestApp) {
    app.seed().await;
    fixtures(&app).await;
    check_viewer(
        &app,
        Who {
            partner: None,
            read: false,
        },
        None,
    )
    .await;
    for partner in PARTNERS {
        let token = app.token(partner, "read read:sensitive").await;
        check_viewer(
            &app,
            Who {
                partner: Some(partner),
                read: true,
            },
            Some(token),
        )
        .await;
    }
    // A token without `read` (a research-only client) sees public rows only.
    let token = app.token("caravan", "research").await;
    check_viewer(
        &app,
        Who {
            partner: Some("caravan"),
            read: false,
        },
        Some(token),
    )
    .await;
}

async fn ending_an_agreement_closes_access_within_the_recheck(app: TestApp) {
    app.seed().await;
    fixtures(&app).await;
    let token = app.token("caravan", "read").await;
    let q = r#"query($id: ID!) { node(id: $id) { id } }"#;
    let vars = json!({ "id": encode(Kind::Actor, &id("anvita", "partners", "actor")).0 });
    assert!(!app.data_as(&token, q, vars.clone()).await["node"].is_null());
    app.app
        .store
        .run(|c| {
            let agreements = passerelle::auth::sharing::list(c)?;
            let a = agreements.iter().find(|a| a.grantor == "anvita").unwrap();
            // Ended today: at once, not at the end of the day.
            passerelle::auth::sharing::end(c, &a.id, &passerelle::auth::sharing::today())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    // As `passerelle sharing end` would, from another process: within `session_recheck_ms`.
    common::within(common::RECHECK_BOUND, || async {
        app.data_as(&token, q, vars.clone()).await["node"].is_null()
    })
    .await
    .expect("the ended agreement no longer shows the record");
}

backend_tests!(
    every_viewer_sees_exactly_what_the_policy_allows,
    ending_an_agreement_closes_access_within_the_recheck,
);
