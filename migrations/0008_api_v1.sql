-- API v1: what its sessions show (their seats, a booking reference), extensions in the
-- ledger, idempotency keys, and the secret API tokens are signed with.

-- A session's seats, in seat order, so that it can show them after its seat rows are gone
-- (released or expired). Sessions from before this migration get theirs from the ledger.
alter table hold_sessions add column seat_ids text[] not null default '{}';
update hold_sessions s
   set seat_ids = e.seats
  from (select session_id, array_agg(seat_id order by seat_id collate "C") as seats
          from booking_events where kind = 'held' group by session_id) e
 where e.session_id = s.id;

-- A booking's reference, for people to read out: three and three characters of an alphabet
-- without look-alikes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B), like K7Q-4M2; the same alphabet as
-- domain::BookingReference. 25^6 (244 million) of them: a new one is drawn until unused.
create function new_booking_reference()
returns text
language plpgsql
as $$
declare
    alphabet constant text := 'ACDEFGHJKMNPQRTUVWXY34679';
    random_bytes bytea;
    candidate text;
begin
    loop
        random_bytes := uuid_send(gen_random_uuid());
        candidate := '';
        for i in 0..5 loop
            candidate := candidate
                || case when i = 3 then '-' else '' end
                || substr(alphabet, 1 + get_byte(random_bytes, i) % 25, 1);
        end loop;
        exit when not exists (select from hold_sessions where booking_reference = candidate);
    end loop;
    return candidate;
end
$$;

alter table hold_sessions add column booking_reference text;
update hold_sessions set booking_reference = new_booking_reference() where status = 'confirmed';
alter table hold_sessions
    add constraint hold_sessions_booking_reference_key unique (booking_reference),
    add constraint hold_sessions_booking_reference_iff_confirmed
        check ((status = 'confirmed') = (booking_reference is not null)),
    add constraint hold_sessions_booking_reference_format
        check (booking_reference ~ '^[ACDEFGHJKMNPQRTUVWXY34679]{3}-[ACDEFGHJKMNPQRTUVWXY34679]{3}$');

comment on column hold_sessions.seat_ids is 'The seats the session held, in seat order.';
comment on column hold_sessions.booking_reference is
    'A confirmed booking''s reference for people (K7Q-4M2); unique.';

-- An extension moves a live hold's deadline: a ledger row per seat, with the new deadline.
alter table booking_events drop constraint booking_events_kind_valid;
alter table booking_events add constraint booking_events_kind_valid
    check (kind in ('held', 'confirmed', 'released', 'expired', 'extended'));

-- record_seat_changes as in 0007; an extension's notification carries its new deadline.
create or replace function record_seat_changes(
    kind text, movies text[], seats text[], changed_sessions uuid[], changed_users text[],
    deadlines timestamptz[])
returns void
language plpgsql
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
begin
    if cardinality(seats) = 0 then
        return;
    end if;
    if kind = 'expired' then
        update hold_sessions set status = 'expired', ended_at = now()
         where id = any(changed_sessions) and status = 'held';
    end if;
    insert into booking_events
           (at, kind, movie_id, seat_id, session_id, user_id, expires_at, seat_count)
    select case when kind = 'expired' then coalesce(c.deadline, s.expires_at) else now() end,
           kind, c.movie_id, c.seat_id, c.session_id, c.user_id,
           coalesce(c.deadline, s.expires_at), s.seat_count
      from unnest(movies, seats, changed_sessions, changed_users, deadlines)
               as c(movie_id, seat_id, session_id, user_id, deadline)
      join hold_sessions s on s.id = c.session_id;
    -- A hold's or an extension's seats share one deadline; the other kinds carry none.
    perform pg_notify('boxoffice_seats',
                      case when octet_length(payload) < 8000 then payload
                           else '{"kind": "resync"}' end)
       from (select json_build_object(
                        'kind', kind,
                        'movie_id', movie_id,
                        'seat_ids', array_agg(seat_id order by seat_id collate "C"),
                        'expires_at',
                        case when kind in ('held', 'extended') then max(deadline) end)::text
                    as payload
               from (select movie_id, seat_id, deadline,
                            (row_number() over (partition by movie_id order by seat_id collate "C")
                             - 1) / 500 as chunk
                       from unnest(movies, seats, deadlines) as c(movie_id, seat_id, deadline)) c
              group by movie_id, chunk) p;
end
$$;

comment on function record_seat_changes is
    'The side writes of seat changes (held, confirmed, released, expired, extended), in their '
    'transaction: the ledger rows, an expired session''s status, and a notification on '
    'boxoffice_seats.';

-- hold_seats as in 0005, keeping each session's seats.
create or replace function hold_seats(
    seat_requests integer[],  -- per requested seat, in lock order: its request (1 = first to arrive)
    seat_movies text[],       --   its movie
    seat_ids text[],          --   its seat
    sessions uuid[],          -- per request: the session it starts if it wins
    users text[],             --   who asks
    ttl double precision,     -- seconds a hold lasts
    max_holds integer)        -- live seats one user may hold
returns table (request integer, outcome text, taken text[], held_until timestamptz, decided_at timestamptz)
language plpgsql
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    n_seats constant integer := cardinality(seat_ids);
    n_requests constant integer := cardinality(sessions);
    deadline constant timestamptz := now() + make_interval(secs => ttl);
    -- per seat
    seen text[];             -- what the first read found: free, live or lapsed
    seen_holder uuid[];      -- the session of the lapsed hold it found
    refused boolean[] := array_fill(false, array[n_seats]);  -- someone else has it
    tried_by integer[] := array_fill(null::integer, array[n_seats]);  -- the request inserting it
    won boolean[] := array_fill(false, array[n_seats]);
    -- per request
    answer text[] := array_fill(null::text, array[n_requests]);
    wanted integer[] := array_fill(0, array[n_requests]);
    admitted boolean[] := array_fill(false, array[n_requests]);
    got integer[] := array_fill(0, array[n_requests]);
    -- per user, at the index of their first request
    quota integer[] := array_fill(null::integer, array[n_requests]);
    counted_users text[];
    counted integer[];
    run integer[] := '{}';   -- seats to insert next, in lock order
    expired_movies text[] := '{}';
    expired_seats text[] := '{}';
    expired_sessions uuid[] := '{}';
    expired_users text[] := '{}';
    expired_deadlines timestamptz[] := '{}';
    held record;
    partial uuid[] := '{}';
    gone record;
    key integer;
    k integer;
    r integer;
    u integer;
    again boolean;
begin
    -- Refuse taken seats: one read, before any lock, so a rush on one seat costs only this.
    -- Lateral (and not pulled up, offset 0): each seat is looked up by its key, however few
    -- rows the planner believes the table has.
    select array_agg(coalesce(h.state, 'free') order by w.k), array_agg(h.session_id order by w.k)
      into seen, seen_holder
      from unnest(seat_movies, seat_ids) with ordinality as w(movie_id, seat_id, k)
      left join lateral (
          select case when s.status = 'confirmed' or s.expires_at > now() then 'live'
                      else 'lapsed' end as state,
                 s.session_id
            from seat_holds s
           where s.movie_id = w.movie_id and s.seat_id = w.seat_id
          offset 0) h on true;
    for k in 1..n_seats loop
        r := seat_requests[k];
        wanted[r] := wanted[r] + 1;
        if seen[k] = 'live' then
            refused[k] := true;
            answer[r] := 'taken';
        end if;
    end loop;

    if array_position(answer, null) is not null then
        -- Admit by quota. The limit spans movies, so it is serialised per user: the locks
        -- first, in key order, and the count in a statement of its own after them (a count
        -- in the same statement would read a snapshot taken before the lock waits). The
        -- deadline is checked in the aggregate: a condition on expires_at in WHERE would lead
        -- the planner to the expiry index, past every live hold.
        foreach key in array array(select distinct hashtext(users[i])
                                     from generate_series(1, n_requests) i
                                    where answer[i] is null
                                    order by 1) loop
            perform pg_advisory_xact_lock(45253, key);
        end loop;
        select array_agg(c.user_id), array_agg(c.live)
          into counted_users, counted
          from (select h.user_id, count(*) filter (where h.expires_at > now()) as live
                  from seat_holds h
                 where h.user_id = any(users) and h.status = 'held'
                 group by h.user_id) c;
        -- Each user may take up to their remaining quota, first come first served; a request
        -- beyond it waits for the settling below.
        for r in 1..n_requests loop
            continue when answer[r] is not null;
            u := array_position(users, users[r]);
            quota[u] := coalesce(quota[u],
                max_holds - coalesce(counted[array_position(counted_users, users[r])], 0));
            if wanted[r] <= quota[u] then
                quota[u] := quota[u] - wanted[r];
                admitted[r] := true;
            end if;
        end loop;

        -- Take over lapsed seats and insert, seat by seat in lock order. The first admitted
        -- request for a seat tries for it; a lapsed hold on it is deleted just before its
        -- insert (whether or not the reaper has run), so no seat is locked after a later one.
        -- Runs of seats between lapsed ones are inserted in one statement; a seat someone
        -- holds is skipped (on conflict do nothing) and its request writes nothing.
        for k in 1..n_seats + 1 loop
            if k <= n_seats then
                continue when not admitted[seat_requests[k]];
                if k > 1 and seat_movies[k] = seat_movies[k - 1] and seat_ids[k] = seat_ids[k - 1]
                   and tried_by[k - 1] is not null then
                    tried_by[k] := tried_by[k - 1];
                    continue;
                end if;
                tried_by[k] := seat_requests[k];
            end if;
            if (k > n_seats or seen[k] = 'lapsed') and cardinality(run) > 0 then
                with inserted as (
                    insert into seat_holds (movie_id, seat_id, session_id, user_id, expires_at)
                    select seat_movies[x], seat_ids[x], sessions[seat_requests[x]],
                           users[seat_requests[x]], deadline
                      from unnest(run) as x
                    on conflict do nothing
                    returning movie_id, seat_id)
                select coalesce(array_agg(x), '{}') into run
                  from unnest(run) as x
                  join inserted i on i.movie_id = seat_movies[x] and i.seat_id = seat_ids[x];
                foreach u in array run loop
                    won[u] := true;
                end loop;
                run := '{}';
            end if;
            exit when k > n_seats;
            if seen[k] = 'lapsed' then
                delete from seat_holds h
                 where h.movie_id = seat_movies[k] and h.seat_id = seat_ids[k]
                   and h.session_id = seen_holder[k]
                   and coalesce(h.expires_at, 'infinity') <= now()
                returning h.session_id, h.user_id, h.expires_at into gone;
                if found then
                    expired_movies := expired_movies || seat_movies[k];
                    expired_seats := expired_seats || seat_ids[k];
                    expired_sessions := expired_sessions || gone.session_id;
                    expired_users := expired_users || gone.user_id;
                    expired_deadlines := expired_deadlines || gone.expires_at;
                end if;
            end if;
            run := run || k;
        end loop;

        -- Settle. A request that got only some of its seats gets none: its rows go again,
        -- and its quota was not used after all.
        for k in 1..n_seats loop
            if won[k] then
                got[seat_requests[k]] := got[seat_requests[k]] + 1;
            end if;
        end loop;
        for r in 1..n_requests loop
            if admitted[r] and got[r] < wanted[r] then
                if got[r] > 0 then
                    partial := partial || sessions[r];
                end if;
                u := array_position(users, users[r]);
                quota[u] := quota[u] + wanted[r];
            end if;
        end loop;
        if cardinality(partial) > 0 then
            delete from seat_holds where session_id = any(partial);
        end if;
        insert into hold_sessions
               (id, movie_id, user_id, seat_count, seat_ids, expires_at, created_at)
        select sessions[i], seat_movies[array_position(seat_requests, i)], users[i], wanted[i],
               array(select seat_ids[x] from generate_series(1, n_seats) as x
                      where seat_requests[x] = i order by x),
               deadline, now()
          from generate_series(1, n_requests) as i
         where admitted[i] and got[i] = wanted[i];
        -- Side writes after every seat: sessions come last in the lock order.
        perform record_seat_changes('expired', expired_movies, expired_seats, expired_sessions,
                                    expired_users, expired_deadlines);
        select coalesce(array_agg(seat_movies[x]), '{}') as movies,
               coalesce(array_agg(seat_ids[x]), '{}') as seats,
               coalesce(array_agg(sessions[seat_requests[x]]), '{}') as sessions,
               coalesce(array_agg(users[seat_requests[x]]), '{}') as users
          into held
          from generate_series(1, n_seats) as x
         where won[x] and got[seat_requests[x]] = wanted[seat_requests[x]];
        perform record_seat_changes('held', held.movies, held.seats, held.sessions, held.users,
                                    array_fill(deadline, array[cardinality(held.seats)]));
        set constraints seat_holds_session_fkey immediate;

        -- A seat lost to a batch-mate that got all its seats is taken; one lost to a hold made
        -- since the first read, or to a batch-mate that gave up, is decided again: that hold
        -- may be live, lapsed or gone. A request held back by its quota is decided again if
        -- the quota freed up, and refused otherwise.
        for r in 1..n_requests loop
            continue when answer[r] is not null;
            if admitted[r] and got[r] = wanted[r] then
                answer[r] := 'held';
            elsif admitted[r] then
                again := false;
                for k in 1..n_seats loop
                    continue when seat_requests[k] <> r or won[k];
                    if tried_by[k] <> r and got[tried_by[k]] = wanted[tried_by[k]] then
                        refused[k] := true;
                    else
                        again := true;
                    end if;
                end loop;
                answer[r] := case when again then 'again' else 'taken' end;
            elsif wanted[r] <= quota[array_position(users, users[r])] then
                answer[r] := 'again';
            else
                answer[r] := 'limit';
            end if;
        end loop;
    end if;

    return query
        select i, answer[i],
               case when answer[i] = 'taken' then
                   array(select seat_ids[x] from generate_series(1, n_seats) as x
                          where seat_requests[x] = i and refused[x])
               end,
               case when answer[i] = 'held' then deadline end,
               now()
          from generate_series(1, n_requests) as i;
end
$$;

comment on function hold_seats is
    'Decides a batch of seat holds in one call; see migrations/0003, 0005 and 0008.';

-- Idempotency keys of the API: the response a retry with the same key gets again. Written in
-- the transaction of the change it answers, so a key exists exactly when its change does.
-- Kept 24 hours; the reaper deletes older ones.
create table idempotency_keys (
    user_id     text not null,
    key         text not null,
    -- The request as the server parsed it, with its route: a retry must match it.
    fingerprint text not null,
    status      smallint not null,
    body        text not null,
    created_at  timestamptz not null default now(),
    constraint idempotency_keys_pkey primary key (user_id, key)
);

create index idempotency_keys_created_idx on idempotency_keys (created_at);

comment on table idempotency_keys is
    'API idempotency keys: the kept response per user and key, for 24 hours.';

-- The secret the API's tokens are signed with when IDENTITY_SECRET is not set: made by the
-- first server to start, shared by every instance. One row.
create table identity_secret (
    singleton  boolean not null default true,
    secret     bytea not null,
    created_at timestamptz not null default now(),
    constraint identity_secret_pkey primary key (singleton),
    constraint identity_secret_one_row check (singleton),
    constraint identity_secret_long check (octet_length(secret) >= 32)
);

comment on table identity_secret is
    'The signing secret of API tokens (when IDENTITY_SECRET is not set). Whoever reads it can '
    'act as any API user: it is not granted to the reporting role.';

-- Bookings by reference, for the box office: who booked which seats, when.
create view report_bookings as
select s.booking_reference, s.movie_id, array_to_string(s.seat_ids, ' ') as seats,
       s.seat_count, s.user_id, s.confirmed_at
  from hold_sessions s
 where s.status = 'confirmed';

comment on view report_bookings is 'One row per booking: its reference, movie, seats and time.';

create or replace function grant_reporting_access(reporting_role name)
returns boolean
language plpgsql
as $$
begin
    if not exists (select from pg_roles where rolname = reporting_role) then
        begin
            execute format('create role %I nologin', reporting_role);
        exception
            when duplicate_object or unique_violation then
                null;  -- created by another migration meanwhile
            when insufficient_privilege then
                raise notice 'role % does not exist and % may not create it: '
                             'reports are not granted to it', reporting_role, current_user;
                return false;
        end;
    end if;
    execute format('grant usage on schema %I to %I', current_schema(), reporting_role);
    execute format(
        'grant select on report_occupancy, report_sales_daily, report_hold_funnel, '
        'report_seat_popularity, report_ledger, report_bookings, report_settings to %I',
        reporting_role);
    return true;
end
$$;

select grant_reporting_access('boxoffice_reporting');
