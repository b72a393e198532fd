//! Diesel table definitions, written by hand to match `migrations/sqlite` and `migrations/postgres`.
//! Every column type here exists on both backends, so one query serves both.

diesel::table! {
    partners (id) {
        id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        created_at -> Text,
        /// Set by `passerelle partner retire`: its clients get no more tokens.
        retired_at -> Nullable<Text>,
    }
}

diesel::table! {
    actors (id) {
        id -> Text,
        owner_partner_id -> Text,
        kind -> Text,
        name -> Text,
        acronym -> Nullable<Text>,
        description -> Nullable<Text>,
        website -> Nullable<Text>,
        territory_code -> Nullable<Text>,
        territory_name -> Nullable<Text>,
        parent_actor_id -> Nullable<Text>,
        visibility -> Text,
        source -> Text,
        source_ref -> Nullable<Text>,
        imported_at -> Text,
        updated_at -> Text,
        retired_at -> Nullable<Text>,
        content_hash -> Text,
        search_text -> Text,
    }
}

diesel::table! {
    actions (id) {
        id -> Text,
        owner_partner_id -> Text,
        kind -> Text,
        title -> Text,
        summary -> Nullable<Text>,
        status -> Nullable<Text>,
        starts_on -> Nullable<Text>,
        ends_on -> Nullable<Text>,
        start_bound -> Nullable<Text>,
        end_bound -> Nullable<Text>,
        sort_start -> Text,
        schedule -> Nullable<Text>,
        parent_action_id -> Nullable<Text>,
        website -> Nullable<Text>,
        visibility -> Text,
        source -> Text,
        source_ref -> Nullable<Text>,
        imported_at -> Text,
        updated_at -> Text,
        retired_at -> Nullable<Text>,
        content_hash -> Text,
        search_text -> Text,
    }
}

diesel::table! {
    action_themes (action_id, theme) {
        action_id -> Text,
        theme -> Text,
    }
}

diesel::table! {
    action_places (action_id, position) {
        action_id -> Text,
        position -> Integer,
        name -> Text,
        level -> Text,
        insee_code -> Nullable<Text>,
    }
}

diesel::table! {
    outcomes (id) {
        id -> Text,
        owner_partner_id -> Text,
        action_id -> Text,
        indicator -> Text,
        measure -> Text,
        value -> Nullable<Double>,
        unit -> Nullable<Text>,
        statement -> Nullable<Text>,
        period_start -> Nullable<Text>,
        period_end -> Nullable<Text>,
        start_bound -> Nullable<Text>,
        end_bound -> Nullable<Text>,
        visibility -> Text,
        source -> Text,
        source_ref -> Nullable<Text>,
        imported_at -> Text,
        updated_at -> Text,
        retired_at -> Nullable<Text>,
        content_hash -> Text,
        search_text -> Text,
    }
}

diesel::table! {
    outcome_disaggregations (outcome_id, position) {
        outcome_id -> Text,
        position -> Integer,
        dimension -> Text,
        category -> Text,
        value -> Nullable<Double>,
    }
}

diesel::table! {
    partnerships (id) {
        id -> Text,
        owner_partner_id -> Text,
        action_id -> Nullable<Text>,
        name -> Text,
        description -> Nullable<Text>,
        starts_on -> Nullable<Text>,
        ends_on -> Nullable<Text>,
        start_bound -> Nullable<Text>,
        end_bound -> Nullable<Text>,
        visibility -> Text,
        source -> Text,
        source_ref -> Nullable<Text>,
        imported_at -> Text,
        updated_at -> Text,
        retired_at -> Nullable<Text>,
        content_hash -> Text,
        search_text -> Text,
    }
}

diesel::table! {
    partnership_members (partnership_id, position) {
        partnership_id -> Text,
        position -> Integer,
        actor_id -> Text,
        role -> Text,
    }
}

diesel::joinable!(actors -> partners (owner_partner_id));
diesel::joinable!(actions -> partners (owner_partner_id));
diesel::joinable!(action_themes -> actions (action_id));
diesel::joinable!(action_places -> actions (action_id));
diesel::joinable!(outcomes -> actions (action_id));
diesel::joinable!(outcome_disaggregations -> outcomes (outcome_id));
diesel::joinable!(partnerships -> actions (action_id));
diesel::joinable!(partnership_members -> partnerships (partnership_id));
diesel::joinable!(partnership_members -> actors (actor_id));

diesel::allow_tables_to_appear_in_same_query!(
    partners,
    actors,
    actions,
    action_themes,
    action_places,
    outcomes,
    outcome_disaggregations,
    partnerships,
    partnership_members,
    oauth_clients,
    signing_keys,
    revoked_tokens,
    sharing_agreements,
    audit_log,
);

diesel::table! {
    /// Callers held to trusted documents (migration 2026-12-08-000011).
    persisted_only_callers (caller) {
        caller -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    persisted_queries (id) {
        id -> Text,
        body -> Text,
        operation_name -> Nullable<Text>,
        trusted -> Bool,
        created_at -> Text,
    }
}

diesel::table! {
    /// Where each partner's pull connector stopped: the partner API's opaque cursor.
    connector_cursors (partner_id) {
        partner_id -> Text,
        cursor -> Text,
        updated_at -> Text,
    }
}

// Scheduled connector passes (migration 2026-11-24-000005_connector_leases).

diesel::table! {
    connector_leases (partner_id) {
        partner_id -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}

// OAuth2 scoping (migration 2026-11-24-000002_auth).

diesel::table! {
    oauth_clients (id) {
        id -> Text,
        /// NULL for a research client, which has a `research_org` instead.
        partner_id -> Nullable<Text>,
        research_org -> Nullable<Text>,
        scopes -> Text,
        secret_hash -> Text,
        created_at -> Text,
        revoked_at -> Nullable<Text>,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        algorithm -> Text,
        private_key -> Text,
        public_key -> Text,
        created_at -> BigInt,
        retired_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        client_id -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    sharing_agreements (id) {
        id -> Text,
        grantor_partner_id -> Text,
        grantee_partner_id -> Text,
        starts_on -> Text,
        ends_on -> Nullable<Text>,
        created_at -> Text,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        at -> Text,
        client_id -> Nullable<Text>,
        partner_id -> Nullable<Text>,
        operation -> Text,
        partners -> Text,
        outcome -> Text,
    }
}

diesel::table! {
    auth_changes (id) {
        id -> Integer,
        n -> BigInt,
    }
}
