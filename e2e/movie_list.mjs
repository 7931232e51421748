// The movie list shows each movie's free seats from GET /api/v1/movies, without reading any
// other movie's seat map, and follows other people's holds there.
import assert from "node:assert/strict";
import { BASE_URL, scenario, visitor } from "./lib.mjs";

const meta = (page, id) => page.locator(`.movie[data-movie="${id}"] .meta`);

await scenario("free seats in the movie list", async (browser) => {
  const page = await visitor(browser, "inception");
  const mapsRead = [];
  page.on("request", (request) => {
    const path = new URL(request.url()).pathname;
    if (/^\/api\/v1\/movies\/[^/]+\/seats$/.test(path) && !path.includes("/inception/")) mapsRead.push(path);
  });
  const dune = (await (await fetch(`${BASE_URL}/movies`)).json()).find((m) => m.id === "dune-part-two");
  const seats = dune.rows * dune.seats_per_row;
  await page.waitForFunction(
    ([id, text]) => document.querySelector(`.movie[data-movie="${id}"] .meta`)?.textContent.endsWith(text),
    ["dune-part-two", `· ${seats} free`],
  );

  // Someone else holds a seat of another movie: the list counts it at its next poll (5 s).
  const hold = await fetch(`${BASE_URL}/movies/dune-part-two/seats/A1/hold`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: "someone-else" }),
  });
  assert.equal(hold.status, 201);
  await page.waitForFunction(
    ([id, text]) => document.querySelector(`.movie[data-movie="${id}"] .meta`)?.textContent.endsWith(text),
    ["dune-part-two", `· ${seats - 1} free`],
    { timeout: 8000 },
  );
  assert.match(await meta(page, "dune-part-two").textContent(), new RegExp(`${seats - 1} free$`));
  assert.deepEqual(mapsRead, [], "no other movie's seat map was read");
});
