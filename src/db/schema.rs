// @generated automatically by Diesel CLI.

diesel::table! {
    ai_chat_turns (id) {
        id -> Int8,
        chat_id -> Uuid,
        role -> Text,
        content -> Text,
        model -> Nullable<Text>,
        finish_reason -> Nullable<Text>,
        prompt_tokens -> Nullable<Int8>,
        completion_tokens -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ai_chats (id) {
        id -> Uuid,
        user_id -> Uuid,
        title -> Text,
        model -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    ai_usage (user_id, day) {
        user_id -> Uuid,
        day -> Date,
        requests -> Int8,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        cut_off -> Int8,
        estimated_completion_tokens -> Int8,
    }
}

diesel::table! {
    attachments (id) {
        id -> Uuid,
        message_id -> Nullable<Uuid>,
        uploader_id -> Nullable<Uuid>,
        key -> Text,
        bucket -> Text,
        file_name -> Text,
        size -> Int8,
        content_type -> Text,
        created_at -> Timestamptz,
        state -> Text,
        checksum_sha256 -> Nullable<Text>,
        staging_key -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        at -> Timestamptz,
        action -> Text,
        actor_id -> Nullable<Uuid>,
        target -> Nullable<Text>,
        client_ip -> Nullable<Text>,
        details -> Jsonb,
    }
}

diesel::table! {
    conversation_events (conversation_id, seq) {
        conversation_id -> Uuid,
        seq -> Int8,
        body -> Jsonb,
        created_at -> Timestamptz,
        message_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    conversation_members (conversation_id, user_id) {
        conversation_id -> Uuid,
        user_id -> Uuid,
        last_read_seq -> Int8,
        created_at -> Timestamptz,
        joined_event_seq -> Int8,
        notified_seq -> Int8,
    }
}

diesel::table! {
    conversations (id) {
        id -> Uuid,
        title -> Nullable<Text>,
        is_group -> Bool,
        direct_key -> Nullable<Text>,
        last_seq -> Int8,
        last_message_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_event_seq -> Int8,
        assistant_busy_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    divisions (id) {
        id -> Int4,
        name -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    jobs (id) {
        id -> Int8,
        kind -> Text,
        payload -> Jsonb,
        status -> Text,
        run_at -> Timestamptz,
        attempts -> Int4,
        max_attempts -> Int4,
        locked_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        key -> Nullable<Text>,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        conversation_id -> Uuid,
        seq -> Int8,
        sender_id -> Uuid,
        content -> Jsonb,
        body_text -> Text,
        idempotency_key -> Nullable<Text>,
        edited_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        edited_by -> Nullable<Uuid>,
        thread_root_id -> Nullable<Uuid>,
        in_conversation -> Bool,
    }
}

diesel::table! {
    thread_follows (root_id, user_id) {
        root_id -> Uuid,
        user_id -> Uuid,
        conversation_id -> Uuid,
        last_read_seq -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    message_reactions (message_id, emoji, user_id) {
        message_id -> Uuid,
        emoji -> Text,
        user_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    message_mentions (message_id, user_id) {
        message_id -> Uuid,
        user_id -> Uuid,
        conversation_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    message_pins (message_id) {
        message_id -> Uuid,
        conversation_id -> Uuid,
        pinned_by -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    saved_messages (user_id, message_id) {
        user_id -> Uuid,
        message_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    message_versions (message_id, version) {
        message_id -> Uuid,
        version -> Int4,
        content -> Jsonb,
        body_text -> Text,
        author_id -> Uuid,
        written_at -> Timestamptz,
    }
}

diesel::table! {
    notification_defaults (id) {
        id -> Bool,
        channels -> Jsonb,
        previews -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notification_emails (user_id) {
        user_id -> Uuid,
        told_up_to -> Timestamptz,
    }
}

diesel::table! {
    notification_marks (conversation_id) {
        conversation_id -> Uuid,
        seq -> Int8,
    }
}

diesel::table! {
    notification_mutes (user_id, target_id) {
        user_id -> Uuid,
        target_id -> Uuid,
        until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    notification_settings (user_id) {
        user_id -> Uuid,
        channels -> Jsonb,
        previews -> Bool,
        time_zone -> Text,
        dnd_start -> Nullable<Int2>,
        dnd_end -> Nullable<Int2>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notifications (id) {
        id -> Uuid,
        user_id -> Uuid,
        kind -> Text,
        topic -> Uuid,
        conversation_id -> Nullable<Uuid>,
        message_id -> Nullable<Uuid>,
        message_seq -> Nullable<Int8>,
        project_id -> Nullable<Uuid>,
        task_id -> Nullable<Uuid>,
        actor_id -> Nullable<Uuid>,
        title -> Text,
        body -> Text,
        in_app -> Bool,
        created_at -> Timestamptz,
        read_at -> Nullable<Timestamptz>,
        pushed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    password_reset_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    project_members (project_id, user_id) {
        project_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    projects (id) {
        id -> Uuid,
        name -> Text,
        description -> Text,
        owner_id -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    push_deliveries (notification_id, device_id) {
        notification_id -> Uuid,
        device_id -> Uuid,
        sent_at -> Timestamptz,
    }
}

diesel::table! {
    push_devices (id) {
        id -> Uuid,
        user_id -> Uuid,
        platform -> Text,
        address -> Text,
        p256dh -> Nullable<Text>,
        auth -> Nullable<Text>,
        name -> Text,
        created_at -> Timestamptz,
        last_sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        family_id -> Uuid,
        token_hash -> Bytea,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        successor_sealed -> Nullable<Bytea>,
        session_expires_at -> Timestamptz,
    }
}

diesel::table! {
    roles (id) {
        id -> Int4,
        name -> Text,
    }
}

diesel::table! {
    server_secrets (name) {
        name -> Text,
        secret -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        secret -> Bytea,
        created_at -> Timestamptz,
        retired_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Uuid,
        project_id -> Uuid,
        title -> Text,
        description -> Text,
        status -> Text,
        assignee_id -> Nullable<Uuid>,
        due_date -> Nullable<Date>,
        creator_id -> Uuid,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    user_divisions (user_id, division_id) {
        user_id -> Uuid,
        division_id -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        role_id -> Int4,
        disabled_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    oidc_states (state) {
        state -> Text,
        provider -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        binder_hash -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Bytea,
        user_id -> Uuid,
        name -> Text,
        static_state -> Bytea,
        dynamic_state -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Uuid,
        code_hash -> Bytea,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        user_agent -> Text,
        client_ip -> Nullable<Text>,
        method -> Text,
    }
}

diesel::table! {
    sign_in_challenges (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        purpose -> Text,
        first_factor -> Text,
        pending -> Nullable<Jsonb>,
        attempts -> Int4,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sign_in_policy (id) {
        id -> Bool,
        require_second_factor -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    user_identities (provider, subject) {
        provider -> Text,
        subject -> Text,
        user_id -> Uuid,
        email -> Text,
        linked_at -> Timestamptz,
    }
}

diesel::table! {
    user_totp (user_id) {
        user_id -> Uuid,
        secret -> Bytea,
        confirmed_at -> Nullable<Timestamptz>,
        last_step -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webauthn_ceremonies (challenge) {
        challenge -> Bytea,
        kind -> Text,
        user_id -> Nullable<Uuid>,
        state -> Bytea,
        expires_at -> Timestamptz,
    }
}

diesel::joinable!(ai_chat_turns -> ai_chats (chat_id));
diesel::joinable!(ai_chats -> users (user_id));
diesel::joinable!(ai_usage -> users (user_id));
diesel::joinable!(attachments -> messages (message_id));
diesel::joinable!(attachments -> users (uploader_id));
diesel::joinable!(conversation_events -> conversations (conversation_id));
diesel::joinable!(conversation_members -> conversations (conversation_id));
diesel::joinable!(conversation_members -> users (user_id));
diesel::joinable!(message_mentions -> messages (message_id));
diesel::joinable!(message_pins -> messages (message_id));
diesel::joinable!(message_reactions -> messages (message_id));
diesel::joinable!(message_versions -> messages (message_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(messages -> users (sender_id));
diesel::joinable!(notification_emails -> users (user_id));
diesel::joinable!(notification_marks -> conversations (conversation_id));
diesel::joinable!(notification_mutes -> users (user_id));
diesel::joinable!(notification_settings -> users (user_id));
diesel::joinable!(password_reset_tokens -> users (user_id));
diesel::joinable!(project_members -> projects (project_id));
diesel::joinable!(project_members -> users (user_id));
diesel::joinable!(projects -> users (owner_id));
diesel::joinable!(push_deliveries -> notifications (notification_id));
diesel::joinable!(push_deliveries -> push_devices (device_id));
diesel::joinable!(push_devices -> users (user_id));
diesel::joinable!(passkeys -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(sign_in_challenges -> users (user_id));
diesel::joinable!(user_identities -> users (user_id));
diesel::joinable!(user_totp -> users (user_id));
diesel::joinable!(saved_messages -> messages (message_id));
diesel::joinable!(tasks -> projects (project_id));
diesel::joinable!(user_divisions -> divisions (division_id));
diesel::joinable!(user_divisions -> users (user_id));
diesel::joinable!(users -> roles (role_id));

diesel::allow_tables_to_appear_in_same_query!(
    ai_chat_turns,
    ai_chats,
    ai_usage,
    attachments,
    audit_log,
    conversation_events,
    conversation_members,
    conversations,
    divisions,
    jobs,
    message_mentions,
    message_pins,
    message_reactions,
    message_versions,
    messages,
    notification_defaults,
    notification_emails,
    notification_marks,
    notification_mutes,
    notification_settings,
    notifications,
    password_reset_tokens,
    project_members,
    projects,
    push_deliveries,
    push_devices,
    oidc_states,
    passkeys,
    webauthn_ceremonies,
    recovery_codes,
    refresh_tokens,
    sessions,
    sign_in_challenges,
    sign_in_policy,
    user_identities,
    user_totp,
    roles,
    saved_messages,
    server_secrets,
    signing_keys,
    tasks,
    thread_follows,
    user_divisions,
    users,
);
