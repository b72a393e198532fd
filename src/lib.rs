//! # Passerelle
//!
//! A GraphQL hub that unifies French social-action partners' data into one schema of actors,
//! actions, outcomes and partnerships, and shows each caller only what it may see.
//!
//! The modules read as the request path:
//!
//! - [`http`]: the axum server: routes, request ids, body limits, health, metrics, shutdown, and
//!   the GraphQL request pipeline (negotiation, rate limits, CSRF, persisted queries, limits,
//!   response cache, HTTP caching, field order), one module per stage.
//! - [`persisted`]: automatic persisted queries and trusted documents (manifests).
//! - [`graphql`]: the schema: one object per domain concept, DataLoaders, global ids, cursors.
//! - [`domain`]: records, vocabularies, the `Viewer` and its visibility policy, validation, seeds.
//! - [`storage`]: diesel on SQLite or PostgreSQL: migrations, reads, idempotent writes.
//!
//! Partner data in and out: [`ingest`] (bulk import, and the record format it shares with
//! [`export`], the streaming export for researchers), [`connectors`] (pulling from partners'
//! APIs); push mutations are in [`graphql`].
//! - [`auth`]: OAuth2: clients, signed access tokens, sharing agreements, the audit log.
//!
//! Beside them: [`config`] (one typed configuration), [`error`] (one error type with stable
//! codes), [`metrics`] (where a request's time goes), [`app`] (the state shared by handlers) and
//! [`cli`] (the `passerelle` command).

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod domain;
pub mod error;
pub mod export;
pub mod graphql;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod persisted;
pub mod storage;
