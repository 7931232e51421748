-- An idempotency key keeps the command's typed outcome (its effect, or a refusal the same
-- request meets again) as JSON, which the HTTP layer renders the first time and on every
-- retry alike, rather than a rendered HTTP answer. Keys kept as answers before this
-- migration are replayed as they are until the reaper forgets them, a day later.
--
-- A server of an earlier version reads a typed outcome as no kept answer: run one version
-- against a database at a time (as migration 0011 already requires).

alter table idempotency_keys
    add column outcome jsonb,
    alter column status drop not null,
    alter column body drop not null,
    add constraint idempotency_keys_kept_one_way check (
        (outcome is not null and status is null and body is null)
        or (outcome is null and status is not null and body is not null));

comment on column idempotency_keys.outcome is
    'What the request did, as the server renders it again for a retry: {"done": effect} or {"refused": reason}.';
comment on column idempotency_keys.status is
    'The HTTP status of an answer kept before migration 0012; null since.';
comment on column idempotency_keys.body is
    'The JSON body of an answer kept before migration 0012; null since.';
