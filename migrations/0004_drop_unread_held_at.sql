-- seat_holds.held_at had no reader: when a seat was held is history, which the booking ledger
-- (a later migration) keeps for every state change, not only the current one.
alter table seat_holds drop column held_at;
