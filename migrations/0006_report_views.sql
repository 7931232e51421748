-- Reporting: the views cinema staff read with plain SQL, the time zone their days are in, and
-- a read-only role that can read the views and nothing else.
--
-- A hold whose deadline has passed is expired in every view, whether or not its seat row has
-- gone yet (the reaper, or the next hold on the seat, writes its 'expired' ledger row later):
-- each session is classified once, so it is never counted twice.

-- One row: the cinema's time zone, in which the views cut days. The server writes it at
-- start-up from REPORT_TIME_ZONE (default UTC).
create table report_settings (
    singleton boolean not null default true,
    time_zone text not null default 'UTC',
    constraint report_settings_pkey primary key (singleton),
    constraint report_settings_one_row check (singleton),
    -- Refuses a name PostgreSQL does not know ("time zone ... not recognized").
    constraint report_settings_time_zone_known check (now() at time zone time_zone is not null)
);
insert into report_settings default values;

comment on table report_settings is 'Reporting settings: one row.';
comment on column report_settings.time_zone is
    'The cinema''s time zone (an IANA name such as Europe/Paris); report days are cut in it.';

-- Per session: how it stands, from the ledger. A session's first 'held' row starts it.
create view report_hold_outcomes as
select e.movie_id,
       e.session_id,
       e.user_id,
       e.seat_count,
       min(e.at) filter (where e.kind = 'held') as held_at,
       min(e.at) filter (where e.kind = 'confirmed') as confirmed_at,
       case
           when bool_or(e.kind = 'confirmed') then 'confirmed'
           when bool_or(e.kind = 'released') then 'released'
           when bool_or(e.kind = 'expired') then 'expired'
           when max(e.expires_at) filter (where e.kind = 'held') <= now() then 'expired'
           else 'held'
       end as outcome
  from booking_events e
 group by e.movie_id, e.session_id, e.user_id, e.seat_count
having bool_or(e.kind = 'held');

comment on view report_hold_outcomes is
    'One row per hold session: when it was held and confirmed, and how it ended (held while '
    'it is still live). Internal to the other views: it carries session ids.';

create view report_occupancy as
select m.id as movie_id,
       m.title,
       m.rows * m.seats_per_row as capacity,
       coalesce(t.booked, 0) as booked,
       coalesce(t.held_now, 0) as held_now,
       m.rows * m.seats_per_row - coalesce(t.booked, 0) - coalesce(t.held_now, 0) as free,
       round(100.0 * coalesce(t.booked, 0) / (m.rows * m.seats_per_row), 1) as occupancy_pct
  from movies m
  left join (
      select h.movie_id,
             count(*) filter (where h.status = 'confirmed')::integer as booked,
             count(*) filter (where h.status = 'held' and h.expires_at > now())::integer
                 as held_now
        from seat_holds h
       group by h.movie_id) t on t.movie_id = m.id;

comment on view report_occupancy is 'Per movie, now: capacity, seats booked, held, free.';
comment on column report_occupancy.capacity is 'Seats in the room.';
comment on column report_occupancy.booked is 'Seats confirmed.';
comment on column report_occupancy.held_now is
    'Seats held and not yet past their deadline (a lapsed hold is free).';
comment on column report_occupancy.free is 'Seats anyone may hold now: capacity - booked - held_now.';
comment on column report_occupancy.occupancy_pct is 'booked / capacity, in percent, one decimal.';

create view report_sales_daily as
select (e.at at time zone z.time_zone)::date as day,
       e.movie_id,
       m.title,
       count(*)::integer as seats_booked,
       count(distinct e.session_id)::integer as bookings
  from booking_events e
  cross join report_settings z
  left join movies m on m.id = e.movie_id
 where e.kind = 'confirmed'
 group by 1, e.movie_id, m.title;

comment on view report_sales_daily is
    'Per day (in report_settings.time_zone) and movie: seats booked that day.';
comment on column report_sales_daily.day is 'The day of the confirm, in the cinema''s time zone.';
comment on column report_sales_daily.seats_booked is 'Seats confirmed that day.';
comment on column report_sales_daily.bookings is 'Confirms that day (a group counts once).';

create view report_hold_funnel as
select m.id as movie_id,
       m.title,
       count(o.session_id)::integer as holds_started,
       count(*) filter (where o.outcome = 'confirmed')::integer as confirmed,
       count(*) filter (where o.outcome = 'released')::integer as released,
       count(*) filter (where o.outcome = 'expired')::integer as expired,
       count(*) filter (where o.outcome = 'held')::integer as still_held,
       round(100.0 * count(*) filter (where o.outcome = 'confirmed')
             / nullif(count(o.session_id), 0), 1) as conversion_pct,
       round(percentile_cont(0.5) within group (
                 order by extract(epoch from o.confirmed_at - o.held_at)
             )::numeric, 3) as median_seconds_to_confirm,
       round(percentile_cont(0.9) within group (
                 order by extract(epoch from o.confirmed_at - o.held_at)
             )::numeric, 3) as p90_seconds_to_confirm
  from movies m
  left join report_hold_outcomes o on o.movie_id = m.id
 group by m.id, m.title;

comment on view report_hold_funnel is
    'Per movie: holds started and how they ended, and how long customers took to pay.';
comment on column report_hold_funnel.holds_started is 'Hold sessions granted (a group counts once).';
comment on column report_hold_funnel.confirmed is 'Holds confirmed (booked).';
comment on column report_hold_funnel.released is 'Holds given back by the customer.';
comment on column report_hold_funnel.expired is
    'Holds that ran out unpaid, whether or not the reaper has removed them yet.';
comment on column report_hold_funnel.still_held is 'Holds live now, not yet decided.';
comment on column report_hold_funnel.conversion_pct is
    'confirmed / holds_started, in percent, one decimal; null without holds.';
comment on column report_hold_funnel.median_seconds_to_confirm is
    'Median seconds from hold to confirm, over confirmed holds.';
comment on column report_hold_funnel.p90_seconds_to_confirm is
    '90th percentile (interpolated) of seconds from hold to confirm.';

create view report_seat_popularity as
with grid as (
    select m.id as movie_id, chr(64 + r) || s as seat_id, r as row_number, s as seat_number
      from movies m,
           generate_series(1, m.rows) as r,
           generate_series(1, m.seats_per_row) as s),
counts as (
    select e.movie_id, e.seat_id,
           count(*) filter (where e.kind = 'held')::integer as times_held,
           count(*) filter (where e.kind = 'confirmed')::integer as times_booked,
           min(e.at) filter (where e.kind = 'confirmed') as sold_at
      from booking_events e
     group by e.movie_id, e.seat_id)
select g.movie_id,
       g.seat_id,
       g.row_number,
       g.seat_number,
       coalesce(c.times_held, 0) as times_held,
       coalesce(c.times_booked, 0) as times_booked,
       case when c.sold_at is not null then
           (rank() over (partition by g.movie_id order by c.sold_at nulls last))::integer
       end as sold_rank
  from grid g
  left join counts c on c.movie_id = g.movie_id and c.seat_id = g.seat_id;

comment on view report_seat_popularity is
    'Per movie and seat of its room: how often it was held and booked, and in which order '
    'seats sold.';
comment on column report_seat_popularity.row_number is 'The row, 1 for A.';
comment on column report_seat_popularity.seat_number is 'The seat in its row, from 1.';
comment on column report_seat_popularity.times_held is 'Holds granted on the seat.';
comment on column report_seat_popularity.times_booked is 'Confirms of the seat (0 or 1).';
comment on column report_seat_popularity.sold_rank is
    '1 for the seat(s) booked first in the room, 2 for the next, ...; seats of one group '
    'share a rank; null if unsold.';

-- The ledger without session ids: a session id is what confirms or releases a hold.
create view report_ledger as
select e.id, e.at, e.recorded_at, e.kind, e.movie_id, e.seat_id, e.user_id, e.expires_at,
       e.seat_count
  from booking_events e;

comment on view report_ledger is
    'booking_events without session ids (which would let a reader act on a hold).';

-- The reporting role: creates it if it is missing and this role may, then grants it the
-- views. Roles are cluster-wide, so another database's migration may create it at the same
-- moment; and the application's role may not be allowed to create roles, in which case an
-- administrator creates it (README, "Reporting") and the next migration, or a call of this
-- function, grants it.
create function grant_reporting_access(reporting_role name)
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
        'report_seat_popularity, report_ledger, report_settings to %I', reporting_role);
    return true;
end
$$;

comment on function grant_reporting_access is
    'Creates the read-only reporting role if missing (when allowed) and grants it the report '
    'views; false if the role does not exist and could not be created.';

select grant_reporting_access('boxoffice_reporting');
