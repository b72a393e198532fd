//! # Passerelle
//!
//! A GraphQL hub that unifies French social-action partners' data into one schema of actors,
//! actions, outcomes and partnerships, and shows each caller only what it may see.
//!
//! The modules read as the request path:
//!
//! - [`http`]: the axum server: routes, request ids, body limits, health, metrics, shutdown.
//! - [`graphql`]: the schema: one object per domain concept, DataLoaders, global ids, cursors.
//! - [`domain`]: records, vocabularies, the `Viewer` and its visibility policy, validation, seeds.
//! - [`storage`]: diesel on SQLite or PostgreSQL: migrations, reads, idempotent writes.
//!
//! - [`auth`]: OAuth2: clients, signed access tokens, sharing agreements, the audit log.
//!
//! Beside them: [`config`] (one typed configuration), [`error`] (one error type with stable
//! codes), [`app`] (the state shared by handlers) and [`cli`] (the `passerelle` command).

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod storage;
