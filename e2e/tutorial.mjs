// The tutorial's own kind of page, all inline <script> and <style>, served from STATIC_DIR
// (tests/fixtures/tutorial-page): its policy lets exactly its own blocks run, so the movie
// list appears, its styles apply, and a seat can be held and booked on the seed routes.
import assert from "node:assert/strict";
import { BASE_URL, scenario, sql } from "./lib.mjs";

await scenario("the tutorial's inline page", async (browser) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const refused = [];
  page.on("pageerror", (error) => { throw error; });
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) refused.push(message.text());
  });
  const response = await page.goto(`${BASE_URL}/`);
  const policy = response.headers()["content-security-policy"];
  assert.match(policy, /script-src 'self' 'sha256-[A-Za-z0-9+/]+=*';/, policy);
  assert.match(policy, /style-src 'self' 'sha256-[A-Za-z0-9+/]+=*';/, policy);
  assert.doesNotMatch(policy, /unsafe/, policy);

  // The inline script ran: the movie list is there.
  await page.locator('li.movie[data-movie="inception"]').waitFor({ timeout: 5000 });
  // The inline style applied.
  const color = await page.locator("h1").evaluate((h1) => getComputedStyle(h1).color);
  assert.equal(color, "rgb(178, 34, 34)");

  await page.locator('li.movie[data-movie="inception"]').click();
  await page.locator('.seat[data-seat="B2"]').click();
  await page.locator('.seat.mine[data-seat="B2"]').waitFor({ timeout: 3000 });
  await page.locator("#confirm").click();
  await page.waitForFunction(() => document.getElementById("status").textContent === "Booked B2");
  assert.equal(
    sql("select status from seat_holds where movie_id = 'inception' and seat_id = 'B2'"),
    "confirmed",
  );
  assert.deepEqual(refused, [], "the policy refused nothing");
  await context.close();
});
