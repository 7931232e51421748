--
-- PostgreSQL database dump
--

\restrict schema


SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: booking_events_refuse_change(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.booking_events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
    raise exception 'booking_events is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege',
              hint = 'The ledger keeps every change; correct a mistake with a new row.';
end
$$;


--
-- Name: grant_reporting_access(name); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.grant_reporting_access(reporting_role name) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: FUNCTION grant_reporting_access(reporting_role name); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.grant_reporting_access(reporting_role name) IS 'Creates the read-only reporting role if missing (when allowed) and grants it the report views; false if the role does not exist and could not be created.';


--
-- Name: hold_seats(integer[], text[], text[], uuid[], text[], double precision, integer, inet[], integer, double precision, double precision); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.hold_seats(seat_requests integer[], seat_movies text[], seat_ids text[], sessions uuid[], users text[], ttl double precision, max_holds integer, addresses inet[] DEFAULT '{}'::inet[], max_holds_per_address integer DEFAULT NULL::integer, max_lifetime double precision DEFAULT NULL::double precision, rehold_window double precision DEFAULT NULL::double precision) RETURNS TABLE(request integer, outcome text, taken text[], held_until timestamp with time zone, decided_at timestamp with time zone, retry_at timestamp with time zone)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_hashjoin TO 'off'
    SET enable_mergejoin TO 'off'
    AS $$
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


--
-- Name: FUNCTION hold_seats(seat_requests integer[], seat_movies text[], seat_ids text[], sessions uuid[], users text[], ttl double precision, max_holds integer, addresses inet[], max_holds_per_address integer, max_lifetime double precision, rehold_window double precision); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.hold_seats(seat_requests integer[], seat_movies text[], seat_ids text[], sessions uuid[], users text[], ttl double precision, max_holds integer, addresses inet[], max_holds_per_address integer, max_lifetime double precision, rehold_window double precision) IS 'Decides a batch of seat holds in one call; see migrations/0003, 0005, 0008, 0009 and 0011.';


--
-- Name: new_booking_reference(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.new_booking_reference() RETURNS text
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: reap_expired(integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.reap_expired(batch integer) RETURNS integer
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_hashjoin TO 'off'
    SET enable_mergejoin TO 'off'
    AS $$
declare
    movies text[];
    seats text[];
    gone_sessions uuid[];
    gone_users text[];
    gone_deadlines timestamptz[];
begin
    with doomed as (
        select movie_id, seat_id from seat_holds
         where expires_at <= now()
         limit batch
           for update skip locked),
    gone as (
        delete from seat_holds s using doomed d
         where s.movie_id = d.movie_id and s.seat_id = d.seat_id
        returning s.movie_id, s.seat_id, s.session_id, s.user_id, s.expires_at)
    select coalesce(array_agg(g.movie_id), '{}'), coalesce(array_agg(g.seat_id), '{}'),
           coalesce(array_agg(g.session_id), '{}'), coalesce(array_agg(g.user_id), '{}'),
           coalesce(array_agg(g.expires_at), '{}')
      into movies, seats, gone_sessions, gone_users, gone_deadlines
      from gone g;
    perform record_seat_changes('expired', movies, seats, gone_sessions, gone_users,
                                gone_deadlines);
    return cardinality(seats);
end
$$;


--
-- Name: FUNCTION reap_expired(batch integer); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.reap_expired(batch integer) IS 'Deletes up to batch expired holds (garbage collection: no answer depends on it).';


--
-- Name: record_seat_changes(text, text[], text[], uuid[], text[], timestamp with time zone[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.record_seat_changes(kind text, movies text[], seats text[], changed_sessions uuid[], changed_users text[], deadlines timestamp with time zone[]) RETURNS void
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_hashjoin TO 'off'
    SET enable_mergejoin TO 'off'
    AS $$
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


--
-- Name: FUNCTION record_seat_changes(kind text, movies text[], seats text[], changed_sessions uuid[], changed_users text[], deadlines timestamp with time zone[]); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.record_seat_changes(kind text, movies text[], seats text[], changed_sessions uuid[], changed_users text[], deadlines timestamp with time zone[]) IS 'The side writes of seat changes (held, confirmed, released, expired, extended), in their transaction: the ledger rows, an expired session''s status, and a notification on boxoffice_seats.';


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: _sqlx_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public._sqlx_migrations (
    version bigint NOT NULL,
    description text NOT NULL,
    installed_on timestamp with time zone DEFAULT now() NOT NULL,
    success boolean NOT NULL,
    checksum bytea NOT NULL,
    execution_time bigint NOT NULL
);


--
-- Name: booking_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.booking_events (
    id bigint NOT NULL,
    at timestamp with time zone NOT NULL,
    recorded_at timestamp with time zone DEFAULT now() NOT NULL,
    kind text NOT NULL,
    movie_id text NOT NULL,
    seat_id text NOT NULL,
    session_id uuid NOT NULL,
    user_id text NOT NULL,
    expires_at timestamp with time zone,
    seat_count integer NOT NULL,
    CONSTRAINT booking_events_kind_valid CHECK ((kind = ANY (ARRAY['held'::text, 'confirmed'::text, 'released'::text, 'expired'::text, 'extended'::text])))
);


--
-- Name: TABLE booking_events; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.booking_events IS 'Append-only ledger: one row per seat per state change (held, confirmed, released, expired).';


--
-- Name: COLUMN booking_events.at; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.booking_events.at IS 'When the change happened; for expired, the hold''s deadline.';


--
-- Name: COLUMN booking_events.recorded_at; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.booking_events.recorded_at IS 'When the row was written (an expiry is written when its seat is next taken or reaped).';


--
-- Name: COLUMN booking_events.expires_at; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.booking_events.expires_at IS 'The hold''s deadline at the time of the change.';


--
-- Name: COLUMN booking_events.seat_count; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.booking_events.seat_count IS 'Seats in the session (the group size).';


--
-- Name: booking_events_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.booking_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.booking_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: hold_marks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.hold_marks (
    movie_id text NOT NULL,
    seat_id text NOT NULL,
    holder text NOT NULL,
    first_at timestamp with time zone NOT NULL,
    until timestamp with time zone NOT NULL,
    CONSTRAINT hold_marks_holder_kind CHECK (((holder ~~ 'user:%'::text) OR (holder ~~ 'ip:%'::text))),
    CONSTRAINT hold_marks_run_ordered CHECK ((first_at <= until))
);


--
-- Name: TABLE hold_marks; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.hold_marks IS 'Runs of holds of one seat by one user or address, so that letting a seat go and taking it again does not start its hold lifetime afresh (REHOLD_WINDOW_SECS).';


--
-- Name: hold_sessions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.hold_sessions (
    id uuid NOT NULL,
    movie_id text NOT NULL,
    user_id text NOT NULL,
    seat_count integer NOT NULL,
    status text DEFAULT 'held'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    extensions integer DEFAULT 0 NOT NULL,
    confirmed_at timestamp with time zone,
    ended_at timestamp with time zone,
    seat_ids text[] DEFAULT '{}'::text[] NOT NULL,
    booking_reference text,
    began_at timestamp with time zone,
    CONSTRAINT hold_sessions_booking_reference_format CHECK ((booking_reference ~ '^[ACDEFGHJKMNPQRTUVWXY34679]{3}-[ACDEFGHJKMNPQRTUVWXY34679]{3}$'::text)),
    CONSTRAINT hold_sessions_booking_reference_iff_confirmed CHECK (((status = 'confirmed'::text) = (booking_reference IS NOT NULL))),
    CONSTRAINT hold_sessions_confirmed_at_iff_confirmed CHECK (((status = 'confirmed'::text) = (confirmed_at IS NOT NULL))),
    CONSTRAINT hold_sessions_ended_at_iff_ended CHECK (((status = ANY (ARRAY['released'::text, 'expired'::text])) = (ended_at IS NOT NULL))),
    CONSTRAINT hold_sessions_seat_count_positive CHECK ((seat_count > 0)),
    CONSTRAINT hold_sessions_status_valid CHECK ((status = ANY (ARRAY['held'::text, 'confirmed'::text, 'released'::text, 'expired'::text])))
);


--
-- Name: COLUMN hold_sessions.seat_ids; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.hold_sessions.seat_ids IS 'The seats the session held, in seat order.';


--
-- Name: COLUMN hold_sessions.booking_reference; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.hold_sessions.booking_reference IS 'A confirmed booking''s reference for people (K7Q-4M2); unique.';


--
-- Name: idempotency_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.idempotency_keys (
    user_id text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    status smallint,
    body text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    outcome jsonb,
    CONSTRAINT idempotency_keys_kept_one_way CHECK ((((outcome IS NOT NULL) AND (status IS NULL) AND (body IS NULL)) OR ((outcome IS NULL) AND (status IS NOT NULL) AND (body IS NOT NULL))))
);


--
-- Name: TABLE idempotency_keys; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.idempotency_keys IS 'API idempotency keys: the kept response per user and key, for 24 hours.';


--
-- Name: COLUMN idempotency_keys.status; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.idempotency_keys.status IS 'The HTTP status of an answer kept before migration 0012; null since.';


--
-- Name: COLUMN idempotency_keys.body; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.idempotency_keys.body IS 'The JSON body of an answer kept before migration 0012; null since.';


--
-- Name: COLUMN idempotency_keys.outcome; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.idempotency_keys.outcome IS 'What the request did, as the server renders it again for a retry: {"done": effect} or {"refused": reason}.';


--
-- Name: identity_secret; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.identity_secret (
    singleton boolean DEFAULT true NOT NULL,
    secret bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT identity_secret_long CHECK ((octet_length(secret) >= 32)),
    CONSTRAINT identity_secret_one_row CHECK (singleton)
);


--
-- Name: TABLE identity_secret; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.identity_secret IS 'The signing secret of API tokens (when IDENTITY_SECRET is not set). Whoever reads it can act as any API user: it is not granted to the reporting role.';


--
-- Name: movies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.movies (
    id text NOT NULL,
    title text NOT NULL,
    rows integer NOT NULL,
    seats_per_row integer NOT NULL,
    CONSTRAINT movies_id_is_slug CHECK ((id ~ '^[a-z0-9]+(-[a-z0-9]+)*$'::text)),
    CONSTRAINT movies_rows_range CHECK (((rows >= 1) AND (rows <= 26))),
    CONSTRAINT movies_seats_per_row_range CHECK (((seats_per_row >= 1) AND (seats_per_row <= 50))),
    CONSTRAINT movies_title_not_blank CHECK ((btrim(title) <> ''::text))
);


--
-- Name: report_bookings; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.report_bookings AS
 SELECT s.booking_reference,
    s.movie_id,
    array_to_string(s.seat_ids, ' '::text) AS seats,
    s.seat_count,
    s.user_id,
    s.confirmed_at
   FROM public.hold_sessions s
  WHERE (s.status = 'confirmed'::text);


--
-- Name: VIEW report_bookings; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON VIEW public.report_bookings IS 'One row per booking: its reference, movie, seats and time.';


--
-- Name: report_hold_outcomes; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.report_hold_outcomes AS
 SELECT e.movie_id,
    e.session_id,
    e.user_id,
    e.seat_count,
    min(e.at) FILTER (WHERE (e.kind = 'held'::text)) AS held_at,
    min(e.at) FILTER (WHERE (e.kind = 'confirmed'::text)) AS confirmed_at,
        CASE
            WHEN bool_or((e.kind = 'confirmed'::text)) THEN 'confirmed'::text
            WHEN bool_or((e.kind = 'released'::text)) THEN 'released'::text
            WHEN bool_or((e.kind = 'expired'::text)) THEN 'expired'::text
            WHEN (max(e.expires_at) FILTER (WHERE (e.kind = 'held'::text)) <= now()) THEN 'expired'::text
            ELSE 'held'::text
        END AS outcome
   FROM public.booking_events e
  GROUP BY e.movie_id, e.session_id, e.user_id, e.seat_count
 HAVING bool_or((e.kind = 'held'::text));


--
-- Name: VIEW report_hold_outcomes; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON VIEW public.report_hold_outcomes IS 'One row per hold session: when it was held and confirmed, and how it ended (held while it is still live). Internal to the other views: it carries session ids.';


--
-- Name: report_hold_funnel; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.report_hold_funnel AS
 SELECT m.id AS movie_id,
    m.title,
    (count(o.session_id))::integer AS holds_started,
    (count(*) FILTER (WHERE (o.outcome = 'confirmed'::text)))::integer AS confirmed,
    (count(*) FILTER (WHERE (o.outcome = 'released'::text)))::integer AS released,
    (count(*) FILTER (WHERE (o.outcome = 'expired'::text)))::integer AS expired,
    (count(*) FILTER (WHERE (o.outcome = 'held'::text)))::integer AS still_held,
    round(((100.0 * (count(*) FILTER (WHERE (o.outcome = 'confirmed'::text)))::numeric) / (NULLIF(count(o.session_id), 0))::numeric), 1) AS conversion_pct,
    round((percentile_cont((0.5)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM (o.confirmed_at - o.held_at)))::double precision)))::numeric, 3) AS median_seconds_to_confirm,
    round((percentile_cont((0.9)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM (o.confirmed_at - o.held_at)))::double precision)))::numeric, 3) AS p90_seconds_to_confirm
   FROM (public.movies m
     LEFT JOIN public.report_hold_outcomes o ON ((o.movie_id = m.id)))
  GROUP BY m.id, m.title;


--
-- Name: VIEW report_hold_funnel; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON VIEW public.report_hold_funnel IS 'Per movie: holds started and how they ended, and how long customers took to pay.';


--
-- Name: COLUMN report_hold_funnel.holds_started; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_hold_funnel.holds_started IS 'Hold sessions granted (a group counts once).';


--
-- Name: COLUMN report_hold_funnel.confirmed; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_hold_funnel.confirmed IS 'Holds confirmed (booked).';


--
-- Name: COLUMN report_hold_funnel.released; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_hold_funnel.released IS 'Holds given back by the customer.';


--
-- Name: COLUMN report_hold_funnel.expired; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_hold_funnel.expired IS 'Holds that ran out unpaid, whether or not the reaper has removed them yet.';


--
-- Name: COLUMN report_hold_funnel.still_held; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_hold_funnel.still_held IS 'Holds live now, not yet decided.';


--
-- Name: COLUMN report_hold_funnel.conversion_pct; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_hold_funnel.conversion_pct IS 'confirmed / holds_started, in percent, one decimal; null without holds.';


--
-- Name: COLUMN report_hold_funnel.median_seconds_to_confirm; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_hold_funnel.median_seconds_to_confirm IS 'Median seconds from hold to confirm, over confirmed holds.';


--
-- Name: COLUMN report_hold_funnel.p90_seconds_to_confirm; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_hold_funnel.p90_seconds_to_confirm IS '90th percentile (interpolated) of seconds from hold to confirm.';


--
-- Name: report_ledger; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.report_ledger AS
 SELECT e.id,
    e.at,
    e.recorded_at,
    e.kind,
    e.movie_id,
    e.seat_id,
    e.user_id,
    e.expires_at,
    e.seat_count
   FROM public.booking_events e;


--
-- Name: VIEW report_ledger; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON VIEW public.report_ledger IS 'booking_events without session ids (which would let a reader act on a hold).';


--
-- Name: seat_holds; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.seat_holds (
    movie_id text NOT NULL,
    seat_id text NOT NULL,
    session_id uuid NOT NULL,
    user_id text NOT NULL,
    status text DEFAULT 'held'::text NOT NULL,
    expires_at timestamp with time zone,
    confirmed_at timestamp with time zone,
    client_ip inet,
    CONSTRAINT seat_holds_client_ip_iff_held CHECK (((client_ip IS NULL) OR (status = 'held'::text))),
    CONSTRAINT seat_holds_confirmed_at_iff_confirmed CHECK (((status = 'confirmed'::text) = (confirmed_at IS NOT NULL))),
    CONSTRAINT seat_holds_expiry_iff_held CHECK (((status = 'held'::text) = (expires_at IS NOT NULL))),
    CONSTRAINT seat_holds_seat_id_format CHECK ((seat_id ~ '^[A-Z][1-9][0-9]?$'::text)),
    CONSTRAINT seat_holds_status_valid CHECK ((status = ANY (ARRAY['held'::text, 'confirmed'::text])))
);


--
-- Name: report_occupancy; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.report_occupancy AS
 SELECT m.id AS movie_id,
    m.title,
    (m.rows * m.seats_per_row) AS capacity,
    COALESCE(t.booked, 0) AS booked,
    COALESCE(t.held_now, 0) AS held_now,
    (((m.rows * m.seats_per_row) - COALESCE(t.booked, 0)) - COALESCE(t.held_now, 0)) AS free,
    round(((100.0 * (COALESCE(t.booked, 0))::numeric) / ((m.rows * m.seats_per_row))::numeric), 1) AS occupancy_pct
   FROM (public.movies m
     LEFT JOIN ( SELECT h.movie_id,
            (count(*) FILTER (WHERE (h.status = 'confirmed'::text)))::integer AS booked,
            (count(*) FILTER (WHERE ((h.status = 'held'::text) AND (h.expires_at > now()))))::integer AS held_now
           FROM public.seat_holds h
          GROUP BY h.movie_id) t ON ((t.movie_id = m.id)));


--
-- Name: VIEW report_occupancy; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON VIEW public.report_occupancy IS 'Per movie, now: capacity, seats booked, held, free.';


--
-- Name: COLUMN report_occupancy.capacity; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_occupancy.capacity IS 'Seats in the room.';


--
-- Name: COLUMN report_occupancy.booked; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_occupancy.booked IS 'Seats confirmed.';


--
-- Name: COLUMN report_occupancy.held_now; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_occupancy.held_now IS 'Seats held and not yet past their deadline (a lapsed hold is free).';


--
-- Name: COLUMN report_occupancy.free; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_occupancy.free IS 'Seats anyone may hold now: capacity - booked - held_now.';


--
-- Name: COLUMN report_occupancy.occupancy_pct; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_occupancy.occupancy_pct IS 'booked / capacity, in percent, one decimal.';


--
-- Name: report_settings; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.report_settings (
    singleton boolean DEFAULT true NOT NULL,
    time_zone text DEFAULT 'UTC'::text NOT NULL,
    CONSTRAINT report_settings_one_row CHECK (singleton),
    CONSTRAINT report_settings_time_zone_known CHECK (((now() AT TIME ZONE time_zone) IS NOT NULL))
);


--
-- Name: TABLE report_settings; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.report_settings IS 'Reporting settings: one row.';


--
-- Name: COLUMN report_settings.time_zone; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_settings.time_zone IS 'The cinema''s time zone (an IANA name such as Europe/Paris); report days are cut in it.';


--
-- Name: report_sales_daily; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.report_sales_daily AS
 SELECT ((e.at AT TIME ZONE z.time_zone))::date AS day,
    e.movie_id,
    m.title,
    (count(*))::integer AS seats_booked,
    (count(DISTINCT e.session_id))::integer AS bookings
   FROM ((public.booking_events e
     CROSS JOIN public.report_settings z)
     LEFT JOIN public.movies m ON ((m.id = e.movie_id)))
  WHERE (e.kind = 'confirmed'::text)
  GROUP BY (((e.at AT TIME ZONE z.time_zone))::date), e.movie_id, m.title;


--
-- Name: VIEW report_sales_daily; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON VIEW public.report_sales_daily IS 'Per day (in report_settings.time_zone) and movie: seats booked that day.';


--
-- Name: COLUMN report_sales_daily.day; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_sales_daily.day IS 'The day of the confirm, in the cinema''s time zone.';


--
-- Name: COLUMN report_sales_daily.seats_booked; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_sales_daily.seats_booked IS 'Seats confirmed that day.';


--
-- Name: COLUMN report_sales_daily.bookings; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_sales_daily.bookings IS 'Confirms that day (a group counts once).';


--
-- Name: report_seat_popularity; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.report_seat_popularity AS
 WITH grid AS (
         SELECT m.id AS movie_id,
            (chr((64 + r.r)) || s.s) AS seat_id,
            r.r AS row_number,
            s.s AS seat_number
           FROM public.movies m,
            LATERAL generate_series(1, m.rows) r(r),
            LATERAL generate_series(1, m.seats_per_row) s(s)
        ), counts AS (
         SELECT e.movie_id,
            e.seat_id,
            (count(*) FILTER (WHERE (e.kind = 'held'::text)))::integer AS times_held,
            (count(*) FILTER (WHERE (e.kind = 'confirmed'::text)))::integer AS times_booked,
            min(e.at) FILTER (WHERE (e.kind = 'confirmed'::text)) AS sold_at
           FROM public.booking_events e
          GROUP BY e.movie_id, e.seat_id
        )
 SELECT g.movie_id,
    g.seat_id,
    g.row_number,
    g.seat_number,
    COALESCE(c.times_held, 0) AS times_held,
    COALESCE(c.times_booked, 0) AS times_booked,
        CASE
            WHEN (c.sold_at IS NOT NULL) THEN (rank() OVER (PARTITION BY g.movie_id ORDER BY c.sold_at))::integer
            ELSE NULL::integer
        END AS sold_rank
   FROM (grid g
     LEFT JOIN counts c ON (((c.movie_id = g.movie_id) AND (c.seat_id = g.seat_id))));


--
-- Name: VIEW report_seat_popularity; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON VIEW public.report_seat_popularity IS 'Per movie and seat of its room: how often it was held and booked, and in which order seats sold.';


--
-- Name: COLUMN report_seat_popularity.row_number; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_seat_popularity.row_number IS 'The row, 1 for A.';


--
-- Name: COLUMN report_seat_popularity.seat_number; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_seat_popularity.seat_number IS 'The seat in its row, from 1.';


--
-- Name: COLUMN report_seat_popularity.times_held; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_seat_popularity.times_held IS 'Holds granted on the seat.';


--
-- Name: COLUMN report_seat_popularity.times_booked; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_seat_popularity.times_booked IS 'Confirms of the seat (0 or 1).';


--
-- Name: COLUMN report_seat_popularity.sold_rank; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.report_seat_popularity.sold_rank IS '1 for the seat(s) booked first in the room, 2 for the next, ...; seats of one group share a rank; null if unsold.';


--
-- Name: _sqlx_migrations _sqlx_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public._sqlx_migrations
    ADD CONSTRAINT _sqlx_migrations_pkey PRIMARY KEY (version);


--
-- Name: booking_events booking_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.booking_events
    ADD CONSTRAINT booking_events_pkey PRIMARY KEY (id);


--
-- Name: hold_marks hold_marks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.hold_marks
    ADD CONSTRAINT hold_marks_pkey PRIMARY KEY (movie_id, seat_id, holder);


--
-- Name: hold_sessions hold_sessions_booking_reference_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.hold_sessions
    ADD CONSTRAINT hold_sessions_booking_reference_key UNIQUE (booking_reference);


--
-- Name: hold_sessions hold_sessions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.hold_sessions
    ADD CONSTRAINT hold_sessions_pkey PRIMARY KEY (id);


--
-- Name: idempotency_keys idempotency_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (user_id, key);


--
-- Name: identity_secret identity_secret_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.identity_secret
    ADD CONSTRAINT identity_secret_pkey PRIMARY KEY (singleton);


--
-- Name: movies movies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.movies
    ADD CONSTRAINT movies_pkey PRIMARY KEY (id);


--
-- Name: report_settings report_settings_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.report_settings
    ADD CONSTRAINT report_settings_pkey PRIMARY KEY (singleton);


--
-- Name: seat_holds seat_holds_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.seat_holds
    ADD CONSTRAINT seat_holds_pkey PRIMARY KEY (movie_id, seat_id);


--
-- Name: hold_marks_until_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX hold_marks_until_idx ON public.hold_marks USING btree (until);


--
-- Name: hold_sessions_ended_at_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX hold_sessions_ended_at_idx ON public.hold_sessions USING btree (ended_at) WHERE (ended_at IS NOT NULL);


--
-- Name: hold_sessions_user_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX hold_sessions_user_idx ON public.hold_sessions USING btree (user_id);


--
-- Name: idempotency_keys_created_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX idempotency_keys_created_idx ON public.idempotency_keys USING btree (created_at);


--
-- Name: seat_holds_by_client_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX seat_holds_by_client_idx ON public.seat_holds USING btree (client_ip) WHERE (client_ip IS NOT NULL);


--
-- Name: seat_holds_expiry_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX seat_holds_expiry_idx ON public.seat_holds USING btree (expires_at) WHERE (expires_at IS NOT NULL);


--
-- Name: seat_holds_held_by_user_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX seat_holds_held_by_user_idx ON public.seat_holds USING btree (user_id) WHERE (status = 'held'::text);


--
-- Name: seat_holds_session_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX seat_holds_session_idx ON public.seat_holds USING btree (session_id);


--
-- Name: booking_events booking_events_no_truncate; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER booking_events_no_truncate BEFORE TRUNCATE ON public.booking_events FOR EACH STATEMENT EXECUTE FUNCTION public.booking_events_refuse_change();

ALTER TABLE public.booking_events ENABLE ALWAYS TRIGGER booking_events_no_truncate;


--
-- Name: booking_events booking_events_no_update_or_delete; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER booking_events_no_update_or_delete BEFORE DELETE OR UPDATE ON public.booking_events FOR EACH ROW EXECUTE FUNCTION public.booking_events_refuse_change();

ALTER TABLE public.booking_events ENABLE ALWAYS TRIGGER booking_events_no_update_or_delete;


--
-- Name: hold_sessions hold_sessions_movie_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.hold_sessions
    ADD CONSTRAINT hold_sessions_movie_fkey FOREIGN KEY (movie_id) REFERENCES public.movies(id);


--
-- Name: seat_holds seat_holds_movie_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.seat_holds
    ADD CONSTRAINT seat_holds_movie_fkey FOREIGN KEY (movie_id) REFERENCES public.movies(id);


--
-- Name: seat_holds seat_holds_session_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.seat_holds
    ADD CONSTRAINT seat_holds_session_fkey FOREIGN KEY (session_id) REFERENCES public.hold_sessions(id) DEFERRABLE INITIALLY DEFERRED;


--
-- PostgreSQL database dump complete
--

\unrestrict schema

