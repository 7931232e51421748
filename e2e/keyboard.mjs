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

const focused = (page) => page.evaluate(() => document.activeElement.getAttribute("aria-label"));

await scenario("keyboard-only booking", async (browser) => {
  const page = await visitor(browser, "inception");
  await tabTo(page, "seat A3", () => document.activeElement?.dataset.seat === "A3");
  assert.equal(await focused(page), "Row A, seat 3, available");
  await page.keyboard.press("Enter");
  await expectSeat(page, "A3", "selected", 1000);
  assert.equal(await focused(page), "Row A, seat 3, selected", "focus stays on the seat");

  await tabTo(page, "the Hold button", () => document.activeElement?.id === "hold-selected");
  await page.keyboard.press("Enter");
  await expectSeat(page, "A3", "mine", 1000);

  await tabTo(page, "the Confirm button", () => document.activeElement?.classList.contains("confirm"));
  await page.keyboard.press("Enter");
  await expectMessage(page, /Booked! Seat A3 is yours/);
  await expectSeat(page, "A3", "booked", 1000);

  // Space works on a seat as well, and the map refreshing keeps focus on it.
  await page.locator('.seat[data-seat="B1"]').focus();
  await page.keyboard.press(" ");
  await expectSeat(page, "B1", "selected", 1000);
  await page.waitForTimeout(1200); // at least one refresh of the map (polling or a stream event)
  assert.equal(await focused(page), "Row B, seat 1, selected");
});
