// A hold nobody confirms runs out on the holder's screen and in everyone else's view.
// The server runs with HOLD_TTL of a few seconds for this scenario.
import assert from "node:assert/strict";
import { expectMessage, expectSeat, holdRow, scenario, seat, visitor } from "./lib.mjs";

await scenario("an unconfirmed hold expires", async (browser) => {
  const a = await visitor(browser, "dune-part-two");
  const b = await visitor(browser, "dune-part-two");

  await seat(a, "B2").click();
  await expectSeat(a, "B2", "mine", 1000);
  await expectSeat(b, "B2", "held");

  const countdown = holdRow(a, "B2").locator(".countdown");
  assert.match(await countdown.textContent(), /^00:0\d$/);
  assert.equal(await countdown.evaluate((el) => el.classList.contains("urgent")), true,
    "the last 30 seconds are urgent");

  await expectMessage(a, /hold on seat B2 expired/, 8000);
  await expectSeat(a, "B2", "free", 1000);
  assert.match(await holdRow(a, "B2").textContent(), /Hold expired/);
  await expectSeat(b, "B2", "free");

  // The seat really is free again: B takes it.
  await seat(b, "B2").click();
  await expectSeat(b, "B2", "mine", 1000);
  await expectSeat(a, "B2", "held");
});
