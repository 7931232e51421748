-- The expiry index, usable only by statements that compare expires_at.
--
-- Indexed on "status = 'held'", it could serve any statement about held rows, and right after
-- an analyze that saw no live holds the planner took it for the per-user count and the
-- takeover of expired seats: each walked every live hold (5,942 rows per statement in the
-- benchmark, growing through a rush until the next autoanalyze). "expires_at is not null"
-- is the same set of rows (a hold has a deadline, a booking has none), but only a condition
-- on expires_at implies it, so the planner can no longer choose this index for anything else.
drop index seat_holds_held_expiry_idx;
create index seat_holds_expiry_idx on seat_holds (expires_at) where expires_at is not null;
