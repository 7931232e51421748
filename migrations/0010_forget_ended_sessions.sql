-- Released and expired sessions are kept only for SESSION_RETENTION_SECS after they end (to
-- answer 410 rather than 404 for a while; the ledger keeps the history): the reaper deletes
-- older ones in batches, oldest first, through this index.
create index hold_sessions_ended_at_idx on hold_sessions (ended_at) where ended_at is not null;
