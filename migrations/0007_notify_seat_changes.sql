-- Live seat updates: record_seat_changes, the one place every change's side writes go, also
-- tells the server processes listening on channel boxoffice_seats what changed, with one
-- notification per movie (per 500 seats), delivered at commit and in commit order.
--
-- pg_notify's cost is a lock taken at commit by every transaction that notified, however many
-- notifications it sent; the hold batcher decides many holds in one transaction, so one batch
-- pays it once (BENCHMARKS.md, "The cost of live updates").
--
-- A payload is at most 8000 bytes. Seat ids are short and 500 of them fit with room to spare;
-- a payload that would not fit anyway (a very long movie id) becomes {"kind": "resync"}: the
-- listeners have every subscriber read the seat map afresh instead.

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
    -- A hold's seats share one deadline (the batch's); the other kinds carry none.
    perform pg_notify('boxoffice_seats',
                      case when octet_length(payload) < 8000 then payload
                           else '{"kind": "resync"}' end)
       from (select json_build_object(
                        'kind', kind,
                        'movie_id', movie_id,
                        'seat_ids', array_agg(seat_id order by seat_id collate "C"),
                        'expires_at', case when kind = 'held' then max(deadline) end)::text
                    as payload
               from (select movie_id, seat_id, deadline,
                            (row_number() over (partition by movie_id order by seat_id collate "C")
                             - 1) / 500 as chunk
                       from unnest(movies, seats, deadlines) as c(movie_id, seat_id, deadline)) c
              group by movie_id, chunk) p;
end
$$;

comment on function record_seat_changes is
    'The side writes of seat changes (held, confirmed, released, expired), in their transaction: '
    'the ledger rows, an expired session''s status, and a notification on boxoffice_seats.';
