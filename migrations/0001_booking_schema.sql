-- Movies, hold sessions and seat rows: the whole booking state.
--
-- The no-double-booking rule is the primary key of seat_holds: one row per taken seat,
-- whether a live hold or a confirmed booking. Everything else is bookkeeping around it.

create table movies (
    id            text not null,
    title         text not null,
    rows          integer not null,
    seats_per_row integer not null,
    constraint movies_pkey primary key (id),
    -- Slugs only: ids appear in URLs.
    constraint movies_id_is_slug check (id ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    constraint movies_title_not_blank check (btrim(title) <> ''),
    -- Rows are lettered A..Z.
    constraint movies_rows_range check (rows between 1 and 26),
    constraint movies_seats_per_row_range check (seats_per_row between 1 and 50)
);

-- Kept in step with domain::seed_movies(), which the in-memory store serves.
insert into movies (id, title, rows, seats_per_row) values
    ('inception', 'Inception', 5, 8),
    ('dune-part-two', 'Dune: Part Two', 4, 6),
    ('the-grand-budapest-hotel', 'The Grand Budapest Hotel', 10, 16);

-- One row per hold request. It outlives its seat rows, so a late confirm can still be told
-- "expired" (410) rather than "unknown" (404).
create table hold_sessions (
    id           uuid not null,
    movie_id     text not null,
    user_id      text not null,
    seat_count   integer not null,
    status       text not null default 'held',
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    extensions   integer not null default 0,
    confirmed_at timestamptz,
    ended_at     timestamptz,
    constraint hold_sessions_pkey primary key (id),
    constraint hold_sessions_movie_fkey foreign key (movie_id) references movies (id),
    constraint hold_sessions_seat_count_positive check (seat_count > 0),
    constraint hold_sessions_status_valid
        check (status in ('held', 'confirmed', 'released', 'expired')),
    constraint hold_sessions_confirmed_at_iff_confirmed
        check ((status = 'confirmed') = (confirmed_at is not null)),
    constraint hold_sessions_ended_at_iff_ended
        check ((status in ('released', 'expired')) = (ended_at is not null))
);

create index hold_sessions_user_idx on hold_sessions (user_id);

create table seat_holds (
    movie_id     text not null,
    seat_id      text not null,
    session_id   uuid not null,
    user_id      text not null,
    status       text not null default 'held',
    -- Null once confirmed: a booking never expires.
    expires_at   timestamptz,
    held_at      timestamptz not null default now(),
    confirmed_at timestamptz,
    -- The guard: at most one holder per seat.
    constraint seat_holds_pkey primary key (movie_id, seat_id),
    constraint seat_holds_movie_fkey foreign key (movie_id) references movies (id),
    -- Deferred so a hold can insert its seat rows first and its session row only once it has
    -- won them: a request that loses a seat then writes nothing at all.
    constraint seat_holds_session_fkey foreign key (session_id) references hold_sessions (id)
        deferrable initially deferred,
    constraint seat_holds_seat_id_format check (seat_id ~ '^[A-Z][1-9][0-9]?$'),
    constraint seat_holds_status_valid check (status in ('held', 'confirmed')),
    constraint seat_holds_expiry_iff_held check ((status = 'held') = (expires_at is not null)),
    constraint seat_holds_confirmed_at_iff_confirmed
        check ((status = 'confirmed') = (confirmed_at is not null))
);

create index seat_holds_session_idx on seat_holds (session_id);
-- The per-user limit counts a user's live holds.
create index seat_holds_held_by_user_idx on seat_holds (user_id) where status = 'held';
-- The reaper looks for expired holds.
create index seat_holds_held_expiry_idx on seat_holds (expires_at) where status = 'held';
