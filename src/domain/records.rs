//! The records Passerelle stores, and the closed vocabularies they use.

use serde::{Deserialize, Serialize};

use super::PartialDate;

/// Declares a closed vocabulary stored as lower-case text and exposed in GraphQL as an enum.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, async_graphql::Enum, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Reads the stored text back; `None` for text this version does not know.
            pub fn from_stored(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

vocabulary! {
    /// Who may see a record. `PARTNERS` means the owner and the partners it has an active
    /// data-sharing agreement with.
    Visibility {
        Private => "private",
        Partners => "partners",
        Public => "public",
    }
}

vocabulary! {
    /// What kind of organisation or group an actor is (after IATI's organisation types).
    ActorKind {
        /// A ministry or national public body.
        NationalGovernment => "national_government",
        /// A commune, department or region.
        LocalAuthority => "local_authority",
        /// A public body attached to a local authority, such as a CCAS.
        PublicBody => "public_body",
        /// A network of organisations or local authorities.
        Network => "network",
        /// A non-profit association.
        Association => "association",
        /// A citizen collective or initiative.
        CitizenCollective => "citizen_collective",
        /// A research institute or think tank.
        Research => "research",
        /// A company.
        Company => "company",
        /// A group of service users or residents (never a list of people).
        UserGroup => "user_group",
        Other => "other",
    }
}

vocabulary! {
    /// What kind of action a record describes.
    ActionKind {
        /// A long-running plan or programme that groups other actions.
        Programme => "programme",
        Campaign => "campaign",
        WorkingGroup => "working_group",
        /// Direct work with people, such as outreach.
        Intervention => "intervention",
        /// A dated meeting, session or gathering.
        Event => "event",
        Workshop => "workshop",
        /// A report, charter, video series or other produced work.
        Publication => "publication",
        Petition => "petition",
        /// A recurring online or broadcast format.
        Broadcast => "broadcast",
    }
}

vocabulary! {
    /// Where an action stands.
    ActionStatus {
        /// Considered but not decided.
        Proposed => "proposed",
        Planned => "planned",
        Active => "active",
        Completed => "completed",
    }
}

vocabulary! {
    /// Which kind of figure an outcome reports (IATI's baseline / target / actual).
    OutcomeMeasure {
        Baseline => "baseline",
        Target => "target",
        Actual => "actual",
        /// A result stated in words, with no figure.
        Qualitative => "qualitative",
    }
}

vocabulary! {
    /// The level of a place an action covers.
    PlaceLevel {
        Country => "country",
        Region => "region",
        Department => "department",
        Commune => "commune",
        /// A district within a commune.
        District => "district",
        Online => "online",
    }
}

vocabulary! {
    /// The part an actor plays in a partnership (after IATI's organisation roles).
    PartnershipRole {
        /// Leads and is accountable for the action.
        Lead => "lead",
        Coordinator => "coordinator",
        /// Orders the work from another actor.
        Commissioner => "commissioner",
        Funder => "funder",
        /// Carries the work out.
        Implementer => "implementer",
        /// Runs sessions alongside the coordinator.
        CoFacilitator => "co_facilitator",
        Participant => "participant",
        Contributor => "contributor",
    }
}

/// Where a record comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The source system or document, e.g. `seed:004_27d9875efba170f6.txt` or `push:caravan`.
    pub source: String,
    /// A reference inside the source: a URL, a line, the id the partner uses.
    pub source_ref: Option<String>,
    /// When Passerelle first stored the record (RFC 3339).
    pub imported_at: String,
    /// When the record last changed (RFC 3339).
    pub updated_at: String,
}

/// One of the organisations whose data Passerelle holds; every record has an owning partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    /// A short stable slug such as `caravan`.
    pub id: String,
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    pub id: String,
    pub owner: String,
    pub kind: ActorKind,
    pub name: String,
    pub acronym: Option<String>,
    pub description: Option<String>,
    pub website: Option<String>,
    /// INSEE code of the territory the actor is based in or covers, where known.
    pub territory_code: Option<String>,
    pub territory_name: Option<String>,
    pub parent_actor_id: Option<String>,
    pub visibility: Visibility,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub name: String,
    pub level: PlaceLevel,
    /// INSEE code (commune, department) where one exists.
    pub insee_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub id: String,
    pub owner: String,
    pub kind: ActionKind,
    pub title: String,
    pub summary: Option<String>,
    /// `None` where the source does not say.
    pub status: Option<ActionStatus>,
    pub starts_on: Option<PartialDate>,
    pub ends_on: Option<PartialDate>,
    /// How often it happens, in words ("weekly, one half-day per district").
    pub schedule: Option<String>,
    pub parent_action_id: Option<String>,
    pub website: Option<String>,
    pub themes: Vec<String>,
    pub places: Vec<Place>,
    pub visibility: Visibility,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Disaggregation {
    pub dimension: String,
    pub category: String,
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub owner: String,
    pub action_id: String,
    pub indicator: String,
    pub measure: OutcomeMeasure,
    pub value: Option<f64>,
    pub unit: Option<String>,
    /// The result in words, as the source states it.
    pub statement: Option<String>,
    pub period_start: Option<PartialDate>,
    pub period_end: Option<PartialDate>,
    pub disaggregations: Vec<Disaggregation>,
    pub visibility: Visibility,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub actor_id: String,
    pub role: PartnershipRole,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Partnership {
    pub id: String,
    pub owner: String,
    pub action_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub starts_on: Option<PartialDate>,
    pub ends_on: Option<PartialDate>,
    pub members: Vec<Member>,
    pub visibility: Visibility,
    pub provenance: Provenance,
}
