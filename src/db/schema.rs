// The schema, written by hand for both backends (see migrations/sqlite and
// migrations/postgres): BigInt ids, Integer, Text, Bool and UTC Timestamp only.

diesel::table! {
    handlers (id) {
        id -> BigInt,
        name -> Text,
        events_id -> Text,
        handler_type -> Text,
        target -> Text,
        status -> Text,
        priority -> Integer,
        timeout_ms -> Integer,
        secret -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        ordering_group -> Nullable<Text>,
        previous_secret -> Nullable<Text>,
        previous_secret_until -> Nullable<Timestamp>,
        hold_until -> Nullable<Timestamp>,
        retry_schedule -> Nullable<Text>,
        max_attempts -> Nullable<Integer>,
        rate_limit_milli -> Nullable<Integer>,
        rate_next -> Nullable<Timestamp>,
        failures_in_a_row -> Integer,
        failing_since -> Nullable<Timestamp>,
        failing_alerted -> Bool,
        auto_disabled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    alerts (id) {
        id -> BigInt,
        alert_type -> Text,
        handler_id -> BigInt,
        handler_name -> Text,
        message -> Text,
        payload -> Text,
        created_at -> Timestamp,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        sent_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        events_id -> Text,
        entity -> Text,
        object_id -> Text,
        payload -> Text,
        received_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (key) {
        key -> Text,
        event_id -> BigInt,
        created_at -> Timestamp,
        body_sha256 -> Nullable<Text>,
    }
}

diesel::table! {
    deliveries (id) {
        id -> BigInt,
        event_id -> BigInt,
        handler_id -> BigInt,
        webhook_id -> Text,
        priority -> Integer,
        entity -> Text,
        object_id -> Text,
        state -> Text,
        attempts -> Integer,
        max_attempts -> Integer,
        first_attempt_done -> Bool,
        next_attempt_at -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        ordering_key -> Text,
    }
}

diesel::table! {
    execution_logs (id) {
        id -> BigInt,
        delivery_id -> BigInt,
        handler_id -> BigInt,
        event_id -> BigInt,
        events_id -> Text,
        entity -> Text,
        object_id -> Text,
        attempt -> Integer,
        started_at -> Timestamp,
        duration_ms -> BigInt,
        outcome -> Text,
        status_code -> Nullable<Integer>,
        request_body -> Text,
        request_headers -> Text,
        response_body -> Text,
        error -> Nullable<Text>,
        next_attempt_at -> Nullable<Timestamp>,
        target -> Nullable<Text>,
        test -> Bool,
    }
}

diesel::table! {
    bulk_jobs (id) {
        id -> BigInt,
        kind -> Text,
        filter -> Text,
        handler_id -> Nullable<BigInt>,
        state -> Text,
        matched -> BigInt,
        done -> BigInt,
        upto -> BigInt,
        position -> BigInt,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    deleted_handlers (id) {
        id -> BigInt,
        name -> Text,
        events_id -> Text,
        handler_type -> Text,
        target -> Text,
        deleted_at -> Timestamp,
    }
}

diesel::table! {
    handler_stats (handler_id, hour) {
        handler_id -> BigInt,
        hour -> Timestamp,
        attempts -> BigInt,
        successes -> BigInt,
    }
}

diesel::table! {
    admins (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        role -> Text,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        name -> Text,
        scope -> Text,
        prefix -> Text,
        token_hash -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        target -> Text,
        changes -> Text,
    }
}

diesel::table! {
    login_failures (id) {
        id -> BigInt,
        key -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Text,
        admin_id -> BigInt,
        csrf_token -> Text,
        flash -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    settings (name) {
        name -> Text,
        value -> Text,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(deliveries -> events (event_id));
diesel::joinable!(deliveries -> handlers (handler_id));
diesel::joinable!(execution_logs -> deliveries (delivery_id));
diesel::joinable!(execution_logs -> handlers (handler_id));
diesel::joinable!(execution_logs -> events (event_id));
diesel::joinable!(idempotency_keys -> events (event_id));
diesel::joinable!(sessions -> admins (admin_id));

diesel::allow_tables_to_appear_in_same_query!(
    handlers,
    events,
    idempotency_keys,
    deliveries,
    execution_logs,
    handler_stats,
    admins,
    sessions,
    settings,
    api_tokens,
    audit_log,
    login_failures,
    bulk_jobs,
    deleted_handlers,
);
