// Two people on one movie see each other's holds, bookings and releases, and can't take a
// seat the other holds. With STREAMS=on the pages follow the event stream and don't poll;
// with STREAMS=off the server refuses streams and they poll.
import assert from "node:assert/strict";
import {
  STREAMS, expectMessage, expectSeat, holdRow, holdSeats, scenario, seat, sql, staleRoom, visitor,
} from "./lib.mjs";

await scenario(`two visitors share one seat map (streams ${STREAMS})`, async (browser) => {
  const a = await visitor(browser, "inception");
  const b = await visitor(browser, "inception");
  await b.waitForFunction((mode) => document.documentElement.dataset.updates === mode,
    STREAMS === "on" ? "stream" : "polling");
  let polls = 0;
  b.on("request", (request) => { if (request.url().endsWith("/api/v1/movies/inception/seats")) polls++; });

  // A holds C5: B sees it held within 3 s, and is refused it.
  await holdSeats(a, "C5");
  await holdRow(a, "C5").locator(".countdown").waitFor();
  await expectSeat(b, "C5", "held");
  if (STREAMS === "on") assert.equal(polls, 0, "B follows the stream, without polling");
  else assert.ok(polls > 0, "B polls");
  // aria-disabled seats still take clicks (and say why not); force skips the check that
  // would wait for the seat to become enabled.
  await seat(b, "C5").click({ force: true });
  await expectMessage(b, /held by someone else/);
  await expectSeat(b, "C5", "held");

  // B's map is a moment behind when A takes C6 (B reloads, and both the map and the stream
  // show an empty room): B selects it, loses the race politely, and the map catches up.
  const fresh = await staleRoom(b, "inception", 5, 8);
  await b.reload();
  await expectSeat(b, "C5", "free");
  await holdSeats(a, "C6");
  await seat(b, "C6").click();
  await expectSeat(b, "C6", "selected", 1000);
  await b.locator("#hold-selected").click();
  await expectMessage(b, /seat C6 was just taken by someone else/);
  await fresh();
  await expectSeat(b, "C6", "held");
  assert.equal(await seat(b, "C7").isEnabled(), true, "the map stays usable");

  // A confirms C5: B sees it booked.
  await holdRow(a, "C5").locator(".confirm").click();
  await expectMessage(a, /Booked! Seat C5 is yours/);
  await expectSeat(a, "C5", "booked", 1000);
  await expectSeat(b, "C5", "booked");

  // A holds D2 and releases it with the button: B sees it come and go.
  await holdSeats(a, "D2");
  await expectSeat(b, "D2", "held");
  await holdRow(a, "D2").locator(".release").click();
  await expectSeat(a, "D2", "free", 1000);
  await expectSeat(b, "D2", "free");

  // Clicking a seat I hold changes nothing: the panel releases it.
  await holdSeats(a, "D3");
  await seat(a, "D3").click();
  await expectMessage(a, /Seat D3 is held by you/);
  await expectSeat(a, "D3", "mine");
  await holdRow(a, "D3").locator(".release").click();
  await expectSeat(b, "D3", "free");

  // A holds E3 and closes the page: the holds stay (a reload would find them again; left
  // alone they expire), so B still sees E3 and C6 held.
  await holdSeats(a, "E3");
  await expectSeat(b, "E3", "held");
  await a.close({ runBeforeUnload: true });
  assert.equal(
    sql(`select string_agg(s.status, ',' order by s.created_at) from hold_sessions s`),
    "confirmed,held,released,released,held",
  );
  await expectSeat(b, "E3", "held", 1000);
  await expectSeat(b, "C6", "held", 1000);
  await expectSeat(b, "C5", "booked", 1000);
});
