// A hold nobody confirms runs out on the holder's screen and in everyone else's view.
// The server runs with HOLD_TTL of a few seconds for this scenario.
import assert from "node:assert/strict";
import { STREAMS, expectMessage, expectSeat, holdRow, holdSeats, scenario, visitor } from "./lib.mjs";

await scenario(`an unconfirmed hold expires (streams ${STREAMS})`, async (browser) => {
  const a = await visitor(browser, "dune-part-two");
  const b = await visitor(browser, "dune-part-two");

  await holdSeats(a, "B2");
  await expectSeat(b, "B2", "held");

  const countdown = holdRow(a, "B2").locator(".countdown");
  assert.match(await countdown.textContent(), /^00:0\d$/);
  assert.equal(await countdown.evaluate((el) => el.classList.contains("urgent")), true,
    "the last 30 seconds are urgent");

  await expectMessage(a, /hold on B2 expired/, 8000);
  await expectSeat(a, "B2", "free", 1000);
  assert.match(await holdRow(a, "B2").textContent(), /Hold expired/);
  await expectSeat(b, "B2", "free");

  // The seat really is free again: B takes it.
  await holdSeats(b, "B2");
  await expectSeat(a, "B2", "held");
});

await scenario(`a hold whose countdown lags the server's clock still ends as expired (streams ${STREAMS})`, async (browser) => {
  const a = await visitor(browser, "dune-part-two");
  const c = await visitor(browser, "dune-part-two");
  // C's page thinks the server's clock is 5 s behind: its countdown runs 5 s late.
  await c.route("**/api/v1/movies/*/holds", async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    body.server_time = new Date(Date.parse(body.server_time) - 5000).toISOString();
    await route.fulfill({ response, json: body });
  });

  await holdSeats(c, "C3");
  await expectSeat(a, "C3", "held");
  // The hold lapses on the server (A sees the seat free); C's countdown has 5 s to go, so
  // within the next 1.5 s only what the server tells C can end the hold there, and it must
  // say expired, not ended elsewhere.
  await expectSeat(a, "C3", "free", 8000);
  await expectMessage(c, /hold on C3 expired/, 1500);
  assert.match(await holdRow(c, "C3").textContent(), /Hold expired/);
});
