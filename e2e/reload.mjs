// A reload keeps a person's holds: the panel shows them again, and they can still be confirmed
// or released. Switching movies still releases them, as in the tutorial.
import assert from "node:assert/strict";
import { expectMessage, expectSeat, holdRow, scenario, seat, sql, visitor } from "./lib.mjs";

await scenario("a reload keeps my holds", async (browser) => {
  const a = await visitor(browser, "inception");
  await seat(a, "B4").click();
  await expectSeat(a, "B4", "mine", 1000);
  await seat(a, "B5").click();
  await expectSeat(a, "B5", "mine", 1000);

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

  // What ended is forgotten: another reload brings back no hold.
  await a.reload();
  await a.locator(`.seat[data-seat="A1"]`).waitFor();
  await expectSeat(a, "B4", "booked");
  assert.equal(await a.locator(".hold").count(), 0, "no ended hold comes back");

  // Switching movies releases what is held.
  await seat(a, "C1").click();
  await expectSeat(a, "C1", "mine", 1000);
  await a.locator(`.movie[data-movie="dune-part-two"]`).click();
  await a.locator(`.seat[data-seat="A1"]`).waitFor();
  const deadline = Date.now() + 3000;
  while (sql(`select status from hold_sessions order by created_at desc limit 1`) !== "released") {
    assert.ok(Date.now() < deadline, "switching movies released the hold");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});
