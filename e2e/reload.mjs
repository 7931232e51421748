// A reload keeps a person's holds and bookings: the page asks the server for them
// (GET /api/v1/me/sessions), shows them again, and they can still be confirmed or released.
import assert from "node:assert/strict";
import { expectMessage, expectSeat, holdRow, holdSeats, scenario, sql, visitor } from "./lib.mjs";

await scenario("a reload keeps my holds", async (browser) => {
  const a = await visitor(browser, "inception");
  await holdSeats(a, "B4");
  await holdSeats(a, "B5");

  await a.reload();
  await a.locator(`.seat[data-seat="A1"]`).waitFor();
  // Both holds are back in the panel, counting down, and still mine on the map.
  await holdRow(a, "B4").locator(".countdown").waitFor();
  await holdRow(a, "B5").locator(".countdown").waitFor();
  await expectSeat(a, "B4", "mine");
  assert.equal(sql(`select count(*) from hold_sessions where status = 'held'`), "2",
    "nothing was released by the reload");

  // One is confirmed, the other released, from the panel of the reloaded page.
  await holdRow(a, "B4").locator(".confirm").click();
  await expectMessage(a, /Booked! Seat B4 is yours/);
  await expectSeat(a, "B4", "booked", 1000);
  await holdRow(a, "B5").locator(".release").click();
  await expectSeat(a, "B5", "free", 1000);
  assert.equal(
    sql(`select string_agg(status, ',' order by created_at) from hold_sessions`),
    "confirmed,released",
  );

  // Another reload brings back the booking with its reference, and no hold.
  const reference = sql(`select booking_reference from hold_sessions where status = 'confirmed'`);
  await a.reload();
  await a.locator(`.seat[data-seat="A1"]`).waitFor();
  await expectSeat(a, "B4", "booked");
  assert.match(await holdRow(a, "B4").locator(".reference").textContent(), new RegExp(reference));
  assert.equal(await a.locator(".hold .countdown").count(), 0, "no ended hold comes back");

  // Switching movies keeps what is held: the panel lists it under its movie.
  await holdSeats(a, "C1");
  await a.locator(`.movie[data-movie="dune-part-two"]`).click();
  await a.locator(`.seat[data-seat="A1"]`).waitFor();
  assert.match(await holdRow(a, "C1").textContent(), /Inception — seat C1/);
  assert.equal(sql(`select status from hold_sessions order by created_at desc limit 1`), "held");
});
