// Booking a seat with the keyboard alone.
import assert from "node:assert/strict";
import { expectMessage, expectSeat, scenario, visitor } from "./lib.mjs";

// Presses Tab until `matches(document.activeElement)` holds, at most `limit` times.
async function tabTo(page, description, matches, limit = 80) {
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate(matches)) return;
  }
  throw new Error(`Tab never reached ${description}`);
}

await scenario("keyboard-only booking", async (browser) => {
  const page = await visitor(browser, "inception");
  await tabTo(page, "seat A3", () => document.activeElement?.dataset.seat === "A3");
  assert.equal(
    await page.evaluate(() => document.activeElement.getAttribute("aria-label")),
    "Row A, seat 3, available",
  );
  await page.keyboard.press("Enter");
  await expectSeat(page, "A3", "mine", 1000);
  assert.equal(
    await page.evaluate(() => document.activeElement.getAttribute("aria-label")),
    "Row A, seat 3, held by you",
    "focus stays on the seat after the map refreshes",
  );

  await tabTo(page, "the Confirm button", () => document.activeElement?.classList.contains("confirm"));
  await page.keyboard.press("Enter");
  await expectMessage(page, /Booked! Seat A3 is yours/);
  await expectSeat(page, "A3", "booked", 1000);

  // Space works on a seat as well.
  await page.locator('.seat[data-seat="B1"]').focus();
  await page.keyboard.press(" ");
  await expectSeat(page, "B1", "mine", 1000);
});
