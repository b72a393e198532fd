//! Builders for records written straight through the storage write path in tests.

#![allow(dead_code)]

use passerelle::domain::*;

pub fn provenance(source: &str) -> Provenance {
    Provenance {
        source: source.into(),
        source_ref: None,
        imported_at: String::new(),
        updated_at: String::new(),
    }
}

pub fn partner(id: &str) -> Partner {
    Partner {
        id: id.into(),
        name: format!("Partner {id}"),
        description: None,
    }
}

pub fn actor(id: &str, owner: &str, visibility: Visibility) -> Actor {
    Actor {
        id: id.into(),
        owner: owner.into(),
        kind: ActorKind::Association,
        name: format!("Actor {id}"),
        acronym: None,
        description: None,
        website: None,
        territory_code: None,
        territory_name: None,
        parent_actor_id: None,
        visibility,
        provenance: provenance("test"),
    }
}

pub fn action(id: &str, owner: &str, visibility: Visibility) -> Action {
    Action {
        id: id.into(),
        owner: owner.into(),
        kind: ActionKind::Intervention,
        title: format!("Action {id}"),
        summary: None,
        status: Some(ActionStatus::Active),
        starts_on: "2020-01".parse().ok(),
        ends_on: None,
        schedule: None,
        parent_action_id: None,
        website: None,
        themes: vec!["testing".into()],
        places: vec![Place {
            name: "Grenoble".into(),
            level: PlaceLevel::Commune,
            insee_code: Some("38185".into()),
        }],
        visibility,
        provenance: provenance("test"),
    }
}

pub fn outcome(id: &str, owner: &str, action_id: &str, visibility: Visibility) -> Outcome {
    Outcome {
        id: id.into(),
        owner: owner.into(),
        action_id: action_id.into(),
        indicator: format!("Indicator {id}"),
        measure: OutcomeMeasure::Actual,
        value: Some(42.0),
        unit: Some("people".into()),
        statement: None,
        period_start: "2020".parse().ok(),
        period_end: "2020".parse().ok(),
        disaggregations: vec![Disaggregation {
            dimension: "district".into(),
            category: "Abry".into(),
            value: Some(3.0),
        }],
        visibility,
        provenance: provenance("test"),
    }
}

pub fn partnership(
    id: &str,
    owner: &str,
    action_id: Option<&str>,
    actors: &[&str],
    visibility: Visibility,
) -> Partnership {
    Partnership {
        id: id.into(),
        owner: owner.into(),
        action_id: action_id.map(Into::into),
        name: format!("Partnership {id}"),
        description: None,
        starts_on: None,
        ends_on: None,
        members: actors
            .iter()
            .map(|a| Member {
                actor_id: (*a).into(),
                role: PartnershipRole::Participant,
            })
            .collect(),
        visibility,
        provenance: provenance("test"),
    }
}

/// The row filter of a partner writing its own records.
pub fn writer(owner: &str) -> RowFilter {
    RowFilter {
        own: Some(owner.into()),
        shared_by: Vec::new(),
    }
}
