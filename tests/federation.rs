//! Passerelle as an Apollo Federation v2 subgraph: its `_service` SDL, batched and authorized
//! `_entities`, and a real gateway from npm (`tests/gateway`, `@apollo/gateway`) composing it
//! with a second subgraph, queried across both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, ID};
use common::node::{self, NodeProcess};
use common::{partner, TestApp};
use passerelle::graphql::ids::{encode, Kind};
use serde_json::{json, Value};

async fn the_service_sdl_declares_keyed_entities(app: TestApp) {
    // Introspection: a gateway's client has the `introspect` scope.
    let gateway = partner("caravan", &["introspect"]);
    let body = app
        .execute_as(&gateway, "{ _service { sdl } }", json!({}))
        .await;
    let sdl = body["data"]["_service"]["sdl"].as_str().unwrap();
    assert!(
        sdl.contains("https://specs.apollo.dev/federation/v2"),
        "{sdl}"
    );
    for ty in ["Actor", "Action", "Outcome", "Partnership", "Partner"] {
        assert!(
            sdl.contains(&format!("type {ty} implements Node @key(fields: \"id\")"))
                || sdl.contains(&format!("type {ty} @key(fields: \"id\")")),
            "{ty} is not an entity in:\n{sdl}"
        );
    }
}

const ENTITIES: &str = r#"
query($reps: [_Any!]!) { _entities(representations: $reps) { ... on Action { localId title } ... on Actor { name } } }"#;

fn action_rep(local: &str) -> Value {
    json!({ "__typename": "Action", "id": encode(Kind::Action, local).0 })
}

async fn entities_are_batched_and_authorized_like_every_read(app: TestApp) {
    app.seed().await;
    let one = json!({ "reps": [action_rep("caravan-2020-experiment")] });
    let three = json!({ "reps": [
        action_rep("caravan-2020-experiment"),
        action_rep("caravan-2021-resumption"),
        action_rep("caravan-access-rights-plan"),
    ]});
    let before = app.statements();
    let body = app.data(ENTITIES, one).await;
    let cost_of_one = app.statements() - before;
    assert_eq!(body["_entities"][0]["localId"], "caravan-2020-experiment");
    let before = app.statements();
    let body = app.data(ENTITIES, three).await;
    let cost_of_three = app.statements() - before;
    let titles: Vec<&str> = body["_entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["localId"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "caravan-2020-experiment",
            "caravan-2021-resumption",
            "caravan-access-rights-plan"
        ]
    );
    assert_eq!(
        cost_of_three, cost_of_one,
        "entities must be loaded in one batch"
    );

    // A private record: null for others, resolved for its owner; a foreign id is null.
    let caravan = partner("caravan", &["read", "write"]);
    let created = app
        .execute_as(
            &caravan,
            r#"mutation { upsertAction(input: { id: "caravan-hidden", kind: EVENT, title: "Réunion interne" }) { effect } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        created["data"]["upsertAction"]["effect"], "CREATED",
        "{created:#}"
    );
    let reps = json!({ "reps": [
        action_rep("caravan-hidden"),
        { "__typename": "Action", "id": encode(Kind::Actor, "caravan-avaad").0 },
    ]});
    let anonymous = app.data(ENTITIES, reps.clone()).await;
    assert_eq!(anonymous["_entities"], json!([null, null]));
    let owner = app.execute_as(&caravan, ENTITIES, reps).await;
    assert_eq!(
        owner["data"]["_entities"][0]["title"], "Réunion interne",
        "{owner:#}"
    );
}

/// Representations that match no visible record answer null in their position, hidden and
/// missing alike; a representation that is not one of this subgraph's entities is the caller's
/// error, `BAD_USER_INPUT`.
async fn unmatched_representations_are_null_and_invalid_ones_bad_user_input(app: TestApp) {
    app.seed().await;
    let caravan = "partner=caravan; scopes=read,write";
    let (_, _, created) = app
        .graphql_with_test_viewer(
            caravan,
            r#"mutation { upsertAction(input: { id: "caravan-hidden", kind: EVENT, title: "Réunion interne" }) { effect } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        created["data"]["upsertAction"]["effect"], "CREATED",
        "{created:#}"
    );
    let ask = |reps: Value| {
        let app = &app;
        async move {
            app.post_json(
                &json!({ "query": ENTITIES, "variables": { "reps": reps } }),
                &[],
            )
            .await
        }
    };
    let (status, _, body) = ask(json!([
        action_rep("caravan-2020-experiment"),
        action_rep("no-such-action"),
        action_rep("caravan-hidden"),
        { "__typename": "Actor", "id": "not a global id" },
        { "__typename": "Action", "id": encode(Kind::Outcome, "caravan-2020-experiment").0 },
    ]))
    .await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body:#}");
    let entities = body["data"]["_entities"].as_array().unwrap();
    assert_eq!(
        entities[0]["localId"], "caravan-2020-experiment",
        "{body:#}"
    );
    assert_eq!(
        &entities[1..],
        &[Value::Null, Value::Null, Value::Null, Value::Null]
    );
    // Hidden and missing: the same answer, byte for byte.
    let (_, _, hidden) = ask(json!([action_rep("caravan-hidden")])).await;
    let (_, _, missing) = ask(json!([action_rep("no-such-action")])).await;
    assert_eq!(hidden, missing);
    assert_eq!(hidden["data"]["_entities"], json!([null]));
    // Not an entity of this subgraph, or no string `id`.
    for invalid in [
        json!({ "__typename": "Nonsense", "id": encode(Kind::Action, "caravan-hidden").0 }),
        json!({ "__typename": "Action" }),
        json!({ "__typename": "Action", "id": true }),
        json!({ "id": encode(Kind::Action, "caravan-hidden").0 }),
        json!("Action"),
    ] {
        let (status, _, body) = ask(json!([action_rep("caravan-2020-experiment"), invalid])).await;
        assert_eq!(status, 200, "{body:#}");
        assert_eq!(
            common::error_code(&body),
            "BAD_USER_INPUT",
            "{invalid}: {body:#}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("__typename"), "{message}");
    }
}

// ---------------------------------------------------------------- a second subgraph

/// The `Action` entity as the volunteering subgraph knows it.
struct Volunteering {
    id: ID,
}

#[Object(name = "Action")]
impl Volunteering {
    async fn id(&self) -> &ID {
        &self.id
    }
    /// A figure only this subgraph holds.
    async fn volunteer_hours(&self) -> i32 {
        self.id.len() as i32
    }
}

struct VolunteeringQuery {
    featured: Vec<ID>,
}

#[Object(name = "Query")]
impl VolunteeringQuery {
    async fn featured(&self) -> Vec<Volunteering> {
        self.featured
            .iter()
            .map(|id| Volunteering { id: id.clone() })
            .collect()
    }
    #[graphql(entity)]
    async fn find_action_by_id(&self, id: ID) -> Volunteering {
        Volunteering { id }
    }
}

async fn spawn_volunteering(featured: Vec<ID>) -> String {
    let schema = Schema::build(
        VolunteeringQuery { featured },
        EmptyMutation,
        EmptySubscription,
    )
    .enable_federation()
    .finish();
    let router = axum::Router::new().route(
        "/graphql",
        axum::routing::post_service(async_graphql_axum::GraphQL::new(schema)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/graphql")
}

fn start_gateway(dir: &std::path::Path, subgraphs: Value) -> NodeProcess {
    node::start(
        dir,
        "gateway.mjs",
        &[("SUBGRAPHS", subgraphs.to_string())],
        "GATEWAY ",
        Duration::from_secs(60),
    )
}

async fn a_real_gateway_composes_passerelle_and_answers_across_subgraphs(app: TestApp) {
    let Some(dir) = node::prepare("gateway", "@apollo/gateway") else {
        return;
    };
    app.seed().await;
    // The gateway composes from the subgraph's `_service` SDL, which follows the introspection
    // rule: this replica lets anyone introspect.
    let first = app;
    let app = first.spawn_beside(|c| c.public_introspection = true).await;
    let featured = vec![
        encode(Kind::Action, "caravan-2020-experiment"),
        encode(Kind::Action, "caravan-2021-resumption"),
    ];
    let volunteering = spawn_volunteering(featured.clone()).await;
    let subgraphs = json!([
        { "name": "passerelle", "url": app.url("/graphql") },
        { "name": "volunteering", "url": volunteering },
    ]);
    let gateway = tokio::task::spawn_blocking(move || start_gateway(&dir, subgraphs))
        .await
        .unwrap();
    let ask = |query: &'static str| {
        let http = app.http.clone();
        let url = gateway.announced.clone();
        async move {
            let res = http
                .post(&url)
                .json(&json!({ "query": query }))
                .send()
                .await
                .unwrap();
            let body: Value = res.json().await.unwrap();
            assert!(body.get("errors").is_none(), "{body:#}");
            body["data"].clone()
        }
    };
    // From the second subgraph into Passerelle (`_entities` on Passerelle, batched).
    let before = app.statements();
    let data = ask("{ featured { title startsOn volunteerHours owner { slug } } }").await;
    let featured_actions = data["featured"].as_array().unwrap();
    assert_eq!(featured_actions.len(), 2, "{data:#}");
    assert_eq!(featured_actions[0]["startsOn"], "2020");
    assert_eq!(featured_actions[1]["startsOn"], "2021-01");
    assert_eq!(featured_actions[0]["owner"]["slug"], "caravan");
    assert_eq!(
        featured_actions[0]["volunteerHours"],
        featured[0].len() as i64
    );
    assert!(app.statements() > before, "Passerelle answered the titles");
    // From Passerelle into the second subgraph.
    let data = ask(
        r#"{ actions(filter: { partners: ["caravan"] }, orderBy: { field: STARTS_ON }) { nodes { id title volunteerHours } } }"#,
    )
    .await;
    let nodes = data["actions"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{data:#}");
    for n in nodes {
        assert_eq!(
            n["volunteerHours"].as_i64().unwrap(),
            n["id"].as_str().unwrap().len() as i64
        );
    }
    drop(gateway);
}

backend_tests!(
    the_service_sdl_declares_keyed_entities,
    entities_are_batched_and_authorized_like_every_read,
    unmatched_representations_are_null_and_invalid_ones_bad_user_input,
    a_real_gateway_composes_passerelle_and_answers_across_subgraphs,
);
