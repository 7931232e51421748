// Screenshots of the seat map at desktop and phone width, with every seat state on screen,
// saved to ARTIFACTS for people to look at.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { ARTIFACTS, expectSeat, holdRow, holdSeats, scenario, seat, visitor } from "./lib.mjs";

await scenario("screenshots", async (browser) => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const other = await visitor(browser, "the-grand-budapest-hotel");
  await holdSeats(other, "E8");
  await holdSeats(other, "E9");
  await holdRow(other, "E9").locator(".confirm").click();
  await expectSeat(other, "E9", "booked", 1000);

  for (const [name, viewport] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
    const page = await visitor(browser, "the-grand-budapest-hotel", viewport);
    await holdSeats(page, "F7");
    await seat(page, "F9").click();
    await expectSeat(page, "F9", "selected", 1000);
    await expectSeat(page, "E8", "held");
    await expectSeat(page, "E9", "booked");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name}: the page is ${overflow}px wider than the screen`);
    await page.screenshot({ path: `${ARTIFACTS}/seat-map-${name}.png`, fullPage: true });
    await holdRow(page, "F7").locator(".release").click();
    await expectSeat(page, "F7", "free", 1000);
  }
});
