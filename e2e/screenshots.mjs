// Screenshots of the seat map at desktop and phone width, with every seat state on screen,
// saved to ARTIFACTS for people to look at.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { ARTIFACTS, expectSeat, holdRow, scenario, seat, visitor } from "./lib.mjs";

await scenario("screenshots", async (browser) => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const other = await visitor(browser, "the-grand-budapest-hotel");
  await seat(other, "E8").click();
  await expectSeat(other, "E8", "mine", 1000);
  await seat(other, "E9").click();
  await expectSeat(other, "E9", "mine", 1000);
  await holdRow(other, "E9").locator(".confirm").click();
  await expectSeat(other, "E9", "booked", 1000);

  for (const [name, viewport] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
    const page = await visitor(browser, "the-grand-budapest-hotel", viewport);
    await seat(page, "F7").click();
    await expectSeat(page, "F7", "mine", 1000);
    await expectSeat(page, "E8", "held");
    await expectSeat(page, "E9", "booked");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name}: the page is ${overflow}px wider than the screen`);
    await page.screenshot({ path: `${ARTIFACTS}/seat-map-${name}.png`, fullPage: true });
    await holdRow(page, "F7").locator(".release").click();
    await expectSeat(page, "F7", "free", 1000);
  }
});
