//! A deterministic synthetic data set for benchmarks: `passerelle seed --synthetic --scale N`.
//!
//! Scale 1 is about 100 partners, 5,000 actors, 100,000 actions, 1,000,000 outcomes and 100,000
//! partnerships (three members each); smaller and larger scales keep those proportions. The same
//! scale always gives the same records (a fixed-seed generator), so benchmark runs compare.

use super::*;

/// Per-action proportions.
pub const OUTCOMES_PER_ACTION: usize = 10;
pub const ACTORS_PER_PARTNER: usize = 50;
pub const ACTIONS_AT_SCALE_ONE: f64 = 100_000.0;
pub const PARTNERS_AT_SCALE_ONE: f64 = 100.0;

/// A small, fast, deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const THEMES: &[&str] = &[
    "access-to-rights",
    "child-protection",
    "insertion",
    "migration",
    "participation",
    "housing",
    "health",
    "employment",
    "outreach",
    "non-take-up",
];
const COMMUNES: &[(&str, &str)] = &[
    ("Grenoble", "38185"),
    ("Lyon", "69123"),
    ("Nantes", "44109"),
    ("Paris", "75056"),
    ("Nîmes", "30189"),
    ("Strasbourg", "67482"),
    ("Villeurbanne", "69266"),
    ("Arcueil", "94003"),
    ("Bègles", "33039"),
    ("Clermont-Ferrand", "63113"),
];

/// How big a data set a scale gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub partners: usize,
    pub actions_per_partner: usize,
}

impl Size {
    pub fn for_scale(scale: f64) -> Size {
        let partners = (PARTNERS_AT_SCALE_ONE * scale).round().max(1.0) as usize;
        let actions = (ACTIONS_AT_SCALE_ONE * scale).round().max(1.0) as usize;
        Size {
            partners,
            actions_per_partner: (actions / partners).max(1),
        }
    }
}

/// One partner's share of the synthetic data, ready for the bulk write path.
pub struct PartnerBatch {
    pub partner: Partner,
    pub actors: Vec<Actor>,
    pub actions: Vec<Action>,
    pub outcomes: Vec<Outcome>,
    pub partnerships: Vec<Partnership>,
}

fn provenance(id: &str) -> Provenance {
    Provenance {
        source: "synthetic".into(),
        source_ref: Some(id.into()),
        imported_at: String::new(),
        updated_at: String::new(),
    }
}

fn visibility(rng: &mut Rng) -> Visibility {
    match rng.below(100) {
        0..60 => Visibility::Public,
        60..85 => Visibility::Partners,
        _ => Visibility::Private,
    }
}

/// The records of synthetic partner number `p` (0-based).
pub fn partner_batch(p: usize, size: Size) -> PartnerBatch {
    let mut rng = Rng(0x5EED ^ (p as u64).wrapping_mul(0x1000_0001));
    let owner = format!("synthetic-{p:04}");
    let partner = Partner {
        id: owner.clone(),
        name: format!("Synthetic partner {p}"),
        description: None,
    };
    let actor_kinds = ActorKind::ALL;
    let actors: Vec<Actor> = (0..ACTORS_PER_PARTNER)
        .map(|a| {
            let id = format!("{owner}-actor-{a:03}");
            let (commune, code) = *rng.pick(COMMUNES);
            Actor {
                id: id.clone(),
                owner: owner.clone(),
                kind: *rng.pick(actor_kinds),
                name: format!("Organisation {a} of partner {p}"),
                acronym: None,
                description: Some(format!("A synthetic organisation based in {commune}.")),
                website: None,
                territory_code: Some(code.into()),
                territory_name: Some(commune.into()),
                parent_actor_id: None,
                visibility: if a % 5 == 0 {
                    Visibility::Partners
                } else {
                    Visibility::Public
                },
                provenance: provenance(&id),
            }
        })
        .collect();
    let mut actions = Vec::with_capacity(size.actions_per_partner);
    let mut outcomes = Vec::with_capacity(size.actions_per_partner * OUTCOMES_PER_ACTION);
    let mut partnerships = Vec::with_capacity(size.actions_per_partner);
    for i in 0..size.actions_per_partner {
        let id = format!("{owner}-action-{i:06}");
        let year = 2015 + rng.below(11) as i32;
        let (commune, code) = *rng.pick(COMMUNES);
        let vis = visibility(&mut rng);
        let theme_a = *rng.pick(THEMES);
        let theme_b = *rng.pick(THEMES);
        actions.push(Action {
            id: id.clone(),
            owner: owner.clone(),
            kind: *rng.pick(ActionKind::ALL),
            title: format!("Action {i} of partner {p} in {commune}"),
            summary: Some(format!(
                "Synthetic {theme_a} action in {commune}, started in {year}."
            )),
            status: Some(*rng.pick(ActionStatus::ALL)),
            starts_on: Some(PartialDate::Year(year)),
            ends_on: Some(PartialDate::Year(year + rng.below(3) as i32)),
            schedule: None,
            parent_action_id: None,
            website: None,
            themes: vec![theme_a.into(), theme_b.into()],
            places: vec![Place {
                name: commune.into(),
                level: PlaceLevel::Commune,
                insee_code: Some(code.into()),
            }],
            visibility: vis,
            provenance: provenance(&id),
        });
        for o in 0..OUTCOMES_PER_ACTION {
            let oid = format!("{id}-outcome-{o:02}");
            outcomes.push(Outcome {
                id: oid.clone(),
                owner: owner.clone(),
                action_id: id.clone(),
                indicator: format!("Indicator {}", o % 4),
                measure: if o % 3 == 0 {
                    OutcomeMeasure::Target
                } else {
                    OutcomeMeasure::Actual
                },
                value: Some(rng.below(500) as f64),
                unit: Some("people".into()),
                statement: None,
                period_start: Some(PartialDate::Year(year)),
                period_end: Some(PartialDate::Year(year)),
                disaggregations: Vec::new(),
                visibility: vis,
                provenance: provenance(&oid),
            });
        }
        let members = (0..3)
            .map(|m| Member {
                actor_id: actors[(i + m * 7) % actors.len()].id.clone(),
                role: *rng.pick(PartnershipRole::ALL),
            })
            .collect();
        let pid = format!("{id}-partnership");
        partnerships.push(Partnership {
            id: pid.clone(),
            owner: owner.clone(),
            action_id: Some(id.clone()),
            name: format!("Partnership for action {i} of partner {p}"),
            description: None,
            starts_on: Some(PartialDate::Year(year)),
            ends_on: None,
            members,
            visibility: vis,
            provenance: provenance(&pid),
        });
    }
    PartnerBatch {
        partner,
        actors,
        actions,
        outcomes,
        partnerships,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_one_has_the_documented_proportions() {
        let size = Size::for_scale(1.0);
        assert_eq!(
            size,
            Size {
                partners: 100,
                actions_per_partner: 1000
            }
        );
        assert_eq!(
            Size::for_scale(0.0001),
            Size {
                partners: 1,
                actions_per_partner: 10
            }
        );
    }

    #[test]
    fn batches_are_deterministic_and_valid() {
        let size = Size {
            partners: 1,
            actions_per_partner: 20,
        };
        let a = partner_batch(3, size);
        let b = partner_batch(3, size);
        assert_eq!(a.actions, b.actions);
        assert_eq!(a.outcomes.len(), 20 * OUTCOMES_PER_ACTION);
        for x in &a.actions {
            write::validate_action(x).unwrap();
        }
        for o in &a.outcomes {
            write::validate_outcome(o).unwrap();
        }
        for p in &a.partnerships {
            write::validate_partnership(p).unwrap();
        }
    }
}
