//! The domain: what Passerelle knows about (partners, actors, actions, outcomes, partnerships),
//! who may see it (`viewer`), and how a record is checked before it is written (`write`).
//!
//! The model follows open standards where they fit: IATI's activity standard (participating
//! organisations with roles, results with indicators and baseline/target/actual measures) and
//! Open Referral HSDS (organisations, services, locations). Nothing here holds personal data
//! about individuals: groups such as the GCRI resource group are actors of kind `USER_GROUP`.

pub mod dates;
pub mod policy;
pub mod records;
pub mod research;
pub mod research_sample;
pub mod seed;
pub mod synthetic;
pub mod viewer;
pub mod write;

pub use dates::PartialDate;
pub use policy::{FieldAccess, Project, References, Visible};
pub use records::*;
pub use viewer::{RowFilter, Viewer};
