-- Seats one address can hoard, and holds that outlive their lifetime by being let go and taken
-- again (MAX_HOLDS_PER_IP, REHOLD_WINDOW_SECS in the README).
--
-- * seat_holds.client_ip: the address a live hold came from (null when unknown), counted
--   against the cap per address across users. A booking keeps no address: it is cleared when
--   the hold is confirmed.
-- * hold_marks: per seat and holder (a user, `user:<id>`, or an address, `ip:<address>`),
--   when that holder's run of holds of the seat began and when its last hold's deadline is.
--   A hold of the seat by the same holder within the re-hold window after that deadline
--   continues the run: its lifetime counts from the run's start, not from now.
-- * hold_sessions.began_at: when the run of a session's seats began, which caps its extensions
--   (null for sessions from before this migration: their created_at).

alter table seat_holds add column client_ip inet,
    add constraint seat_holds_client_ip_iff_held check (client_ip is null or status = 'held');
-- The cap per address counts an address's live holds. Its predicate is not `status = 'held'`:
-- the per-user count's index has that one, and with two indexes to choose from on tables
-- analysed empty, the planner took either for either count, reading every held row.
create index seat_holds_by_client_idx on seat_holds (client_ip) where client_ip is not null;

alter table hold_sessions add column began_at timestamptz;

create table hold_marks (
    movie_id text not null,
    seat_id  text not null,
    holder   text not null,
    first_at timestamptz not null,
    until    timestamptz not null,
    constraint hold_marks_pkey primary key (movie_id, seat_id, holder),
    constraint hold_marks_holder_kind check (holder like 'user:%' or holder like 'ip:%'),
    constraint hold_marks_run_ordered check (first_at <= until)
);

-- The reaper deletes marks past the window.
create index hold_marks_until_idx on hold_marks (until);

comment on table hold_marks is
    'Runs of holds of one seat by one user or address, so that letting a seat go and taking it '
    'again does not start its hold lifetime afresh (REHOLD_WINDOW_SECS).';

-- hold_seats as in 0009, with a cap per address and the re-hold clock. The new arguments
-- default to "no such rule", so that a call of the old shape means what it meant.
drop function hold_seats(integer[], text[], text[], uuid[], text[], double precision, integer);

create function hold_seats(
    seat_requests integer[],  -- per requested seat, in lock order: its request (1 = first to arrive)
    seat_movies text[],       --   its movie
    seat_ids text[],          --   its seat
    sessions uuid[],          -- per request: the session it starts if it wins
    users text[],             --   who asks
    ttl double precision,     -- seconds a hold lasts
    max_holds integer,        -- live seats one user may hold
    addresses inet[] default '{}',               -- per request: its client's address, or null
    max_holds_per_address integer default null,  -- live seats one address may hold
    max_lifetime double precision default null,  -- seconds a run of holds of a seat may last
    rehold_window double precision default null) -- seconds after a hold's deadline within which
                                                 -- its holder's next hold of a seat continues it
returns table (request integer, outcome text, taken text[], held_until timestamptz,
               decided_at timestamptz, retry_at timestamptz)
language plpgsql
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    n_seats constant integer := cardinality(seat_ids);
    n_requests constant integer := cardinality(sessions);
    -- per seat
    seen text[];             -- what the first read found: free, live or lapsed
    seen_holder uuid[];      -- the session of the lapsed hold it found
    refused boolean[] := array_fill(false, array[n_seats]);  -- someone else has it
    tried_by integer[] := array_fill(null::integer, array[n_seats]);  -- the request inserting it
    won boolean[] := array_fill(false, array[n_seats]);
    -- per request
    answer text[] := array_fill(null::text, array[n_requests]);
    began timestamptz[] := array_fill(now(), array[n_requests]);  -- when its run began
    deadline timestamptz[] := array_fill(now() + make_interval(secs => least(ttl, max_lifetime)),
                                         array[n_requests]);  -- least() passes over a null
    retry timestamptz[] := array_fill(null::timestamptz, array[n_requests]);  -- when a run ends
    wanted integer[] := array_fill(0, array[n_requests]);
    admitted boolean[] := array_fill(false, array[n_requests]);
    got integer[] := array_fill(0, array[n_requests]);
    -- per user, at the index of their first request
    quota integer[] := array_fill(null::integer, array[n_requests]);
    counted_users text[];
    counted integer[];
    -- per address, at the index of its first request
    room integer[] := array_fill(null::integer, array[n_requests]);
    counted_addresses inet[];
    counted_by_address integer[];
    a integer;
    mark record;
    run integer[] := '{}';   -- seats to insert next, in lock order
    trier integer;           -- the request trying for the seat last tried, and that seat
    trier_movie text;
    trier_seat text;
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
        -- The cap per address the same way, its locks after every user's (another class).
        if max_holds_per_address is not null then
            foreach key in array array(select distinct hashtext(host(addresses[i]))
                                         from generate_series(1, n_requests) i
                                        where answer[i] is null and addresses[i] is not null
                                        order by 1) loop
                perform pg_advisory_xact_lock(45256, key);
            end loop;
            select array_agg(c.client_ip), array_agg(c.live)
              into counted_addresses, counted_by_address
              from (select h.client_ip, count(*) filter (where h.expires_at > now()) as live
                      from seat_holds h
                     where h.client_ip = any(addresses) and h.client_ip is not null
                     group by h.client_ip) c;
        end if;
        -- A seat its user or address held within the window continues that run: the hold
        -- ends no later than the run's lifetime, nor than a deadline of the run still to
        -- come (letting a seat go and taking it again gains no time), and a run past its
        -- lifetime is refused until the window after its last deadline has passed. Read
        -- after the locks: no hold of this user or address is under way.
        if rehold_window is not null then
            for mark in
                select seat_requests[x] as r, min(m.first_at) as first_at,
                       max(m.until) as until,
                       min(m.until) filter (where m.until > now()) as live_until
                  from generate_series(1, n_seats) as x
                  join lateral (
                      select m.first_at, m.until
                        from hold_marks m
                       where m.movie_id = seat_movies[x] and m.seat_id = seat_ids[x]
                         and m.holder in ('user:' || users[seat_requests[x]],
                                          'ip:' || host(addresses[seat_requests[x]]))
                         and m.until > now() - make_interval(secs => rehold_window)
                      offset 0) m on true
                 where answer[seat_requests[x]] is null
                 group by 1
            loop
                began[mark.r] := least(mark.first_at, now());
                deadline[mark.r] := least(deadline[mark.r], mark.live_until,
                    began[mark.r] + make_interval(secs => max_lifetime));
                if deadline[mark.r] <= now() then
                    answer[mark.r] := 'rehold';
                    retry[mark.r] := mark.until + make_interval(secs => rehold_window);
                end if;
            end loop;
        end if;
        -- Each user and address may take up to their remaining quota, first come first
        -- served; a request beyond it waits for the settling below.
        for r in 1..n_requests loop
            continue when answer[r] is not null;
            u := array_position(users, users[r]);
            quota[u] := coalesce(quota[u],
                max_holds - coalesce(counted[array_position(counted_users, users[r])], 0));
            a := null;
            if max_holds_per_address is not null and addresses[r] is not null then
                a := array_position(addresses, addresses[r]);
                room[a] := coalesce(room[a], max_holds_per_address
                    - coalesce(counted_by_address[array_position(counted_addresses,
                                                                 addresses[r])], 0));
            end if;
            if wanted[r] <= quota[u] and (a is null or wanted[r] <= room[a]) then
                quota[u] := quota[u] - wanted[r];
                if a is not null then
                    room[a] := room[a] - wanted[r];
                end if;
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
                -- Requests for one seat are next to each other (lock order); the first
                -- admitted one tries, however many not admitted come between it and the rest.
                if seat_movies[k] = trier_movie and seat_ids[k] = trier_seat then
                    tried_by[k] := trier;
                    continue;
                end if;
                tried_by[k] := seat_requests[k];
                trier := seat_requests[k];
                trier_movie := seat_movies[k];
                trier_seat := seat_ids[k];
            end if;
            if (k > n_seats or seen[k] = 'lapsed') and cardinality(run) > 0 then
                with inserted as (
                    insert into seat_holds
                           (movie_id, seat_id, session_id, user_id, expires_at, client_ip)
                    select seat_movies[x], seat_ids[x], sessions[seat_requests[x]],
                           users[seat_requests[x]], deadline[seat_requests[x]],
                           addresses[seat_requests[x]]
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
                if max_holds_per_address is not null and addresses[r] is not null then
                    a := array_position(addresses, addresses[r]);
                    room[a] := room[a] + wanted[r];
                end if;
            end if;
        end loop;
        if cardinality(partial) > 0 then
            delete from seat_holds where session_id = any(partial);
        end if;
        insert into hold_sessions
               (id, movie_id, user_id, seat_count, seat_ids, expires_at, created_at, began_at)
        select sessions[i], seat_movies[array_position(seat_requests, i)], users[i], wanted[i],
               array(select seat_ids[x] from generate_series(1, n_seats) as x
                      where seat_requests[x] = i order by x),
               deadline[i], now(), began[i]
          from generate_series(1, n_requests) as i
         where admitted[i] and got[i] = wanted[i];
        -- Side writes after every seat: sessions come last in the lock order.
        perform record_seat_changes('expired', expired_movies, expired_seats, expired_sessions,
                                    expired_users, expired_deadlines);
        select coalesce(array_agg(seat_movies[x]), '{}') as movies,
               coalesce(array_agg(seat_ids[x]), '{}') as seats,
               coalesce(array_agg(sessions[seat_requests[x]]), '{}') as sessions,
               coalesce(array_agg(users[seat_requests[x]]), '{}') as users,
               coalesce(array_agg(deadline[seat_requests[x]]), '{}') as deadlines
          into held
          from generate_series(1, n_seats) as x
         where won[x] and got[seat_requests[x]] = wanted[seat_requests[x]];
        perform record_seat_changes('held', held.movies, held.seats, held.sessions, held.users,
                                    held.deadlines);
        -- The runs these holds continue or begin, last in the lock order.
        if rehold_window is not null then
            insert into hold_marks (movie_id, seat_id, holder, first_at, until)
            select seat_movies[x], seat_ids[x], h.holder, began[seat_requests[x]],
                   deadline[seat_requests[x]]
              from generate_series(1, n_seats) as x
             cross join lateral (values ('user:' || users[seat_requests[x]]),
                                        ('ip:' || host(addresses[seat_requests[x]]))) as h(holder)
             where won[x] and got[seat_requests[x]] = wanted[seat_requests[x]]
               and h.holder is not null
             order by 1, 2, 3
            on conflict (movie_id, seat_id, holder) do update
               set first_at = excluded.first_at,
                   until = greatest(hold_marks.until, excluded.until);
        end if;
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
            elsif wanted[r] > quota[array_position(users, users[r])] then
                answer[r] := 'limit';
            elsif max_holds_per_address is not null and addresses[r] is not null
                  and wanted[r] > room[array_position(addresses, addresses[r])] then
                answer[r] := 'address_limit';
            else
                answer[r] := 'again';
            end if;
        end loop;
    end if;

    return query
        select i, answer[i],
               case when answer[i] = 'taken' then
                   array(select seat_ids[x] from generate_series(1, n_seats) as x
                          where seat_requests[x] = i and refused[x])
               end,
               case when answer[i] = 'held' then deadline[i] end,
               now(),
               retry[i]
          from generate_series(1, n_requests) as i;
end
$$;

comment on function hold_seats is
    'Decides a batch of seat holds in one call; see migrations/0003, 0005, 0008, 0009 and 0011.';
