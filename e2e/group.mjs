// A group: seats selected together are held together, the server can pick the best seats
// for a group, and a group that loses a race is offered a block nearby in one click.
import assert from "node:assert/strict";
import {
  expectMessage, expectSeat, holdRow, holdSeats, scenario, seat, sql, staleRoom, visitor,
} from "./lib.mjs";

const mine = (page) => page.evaluate(() =>
  [...document.querySelectorAll('.seat[data-state="mine"]')].map((b) => b.dataset.seat));

await scenario("group holds, best available and the counter-offer", async (browser) => {
  const a = await visitor(browser, "the-grand-budapest-hotel");
  const b = await visitor(browser, "the-grand-budapest-hotel");

  // Three seats selected and held at once: one session, one row in the panel.
  await holdSeats(a, "C3", "C4", "C5");
  await expectMessage(a, /Seats C3, C4, C5 are held for you/);
  assert.equal(await holdRow(a, "C4").getAttribute("data-seats"), "C3 C4 C5");
  assert.equal(sql(`select seat_count from hold_sessions`), "3");
  for (const id of ["C3", "C4", "C5"]) await expectSeat(b, id, "held");

  // Confirmed together, with a booking reference on the page and in the database.
  await holdRow(a, "C4").locator(".confirm").click();
  await expectMessage(a, /Booked! Seats C3, C4, C5 are yours. Your booking reference is [A-Z3-9]{3}-[A-Z3-9]{3}/);
  const reference = sql(`select booking_reference from hold_sessions where status = 'confirmed'`);
  assert.match(await holdRow(a, "C4").locator(".reference").textContent(), new RegExp(reference));
  for (const id of ["C3", "C4", "C5"]) await expectSeat(b, id, "booked");

  // Pick the best: four seats side by side in the middle of the room.
  await b.locator("#quantity").fill("4");
  await b.locator("#pick").click();
  await expectMessage(b, /are held for you/);
  const picked = await mine(b);
  assert.equal(picked.length, 4, `${picked}`);
  assert.ok(picked.every((id) => id[0] === picked[0][0]), `one row: ${picked}`);
  const numbers = picked.map((id) => Number(id.slice(1))).sort((x, y) => x - y);
  assert.deepEqual(numbers, [numbers[0], numbers[0] + 1, numbers[0] + 2, numbers[0] + 3], "adjacent");
  for (const id of picked) await expectSeat(a, id, "held");

  // B is a moment behind when A takes H8: B's pair H7-H8 loses the race, and the page offers
  // a pair nearby, which one click holds.
  const fresh = await staleRoom(b, "the-grand-budapest-hotel", 10, 16);
  await b.reload();
  await expectSeat(b, "C4", "free");
  await holdSeats(a, "H8");
  await seat(b, "H7").click();
  await seat(b, "H8").click();
  await b.locator("#hold-selected").click();
  await expectMessage(b, /seat H8 was just taken by someone else. Seats \w+, \w+ are free nearby/);
  await fresh();
  const offer = b.locator("#offer");
  await offer.waitFor();
  const offered = (await offer.textContent()).match(/Hold (\w+), (\w+) instead/).slice(1);
  assert.ok(!offered.includes("H8"), `${offered}`);
  await expectSeat(b, "H7", "free");
  await offer.click();
  for (const id of offered) await expectSeat(b, id, "mine", 2000);
  assert.equal(await offer.isHidden(), true, "the offer is taken");
  await expectSeat(b, "H8", "held");
  assert.equal(sql(`select count(*) from hold_sessions where status = 'held'`), "3");
});
