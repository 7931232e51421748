// Shared helpers for the browser scenarios. Each scenario is run by tests/browser.rs with
// BASE_URL (a server it started), DATABASE_URL (that server's database), ARTIFACTS (a folder
// for screenshots), CHROMIUM (the browser binary) and STREAMS in the environment.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

export const BASE_URL = required("BASE_URL");
export const DATABASE_URL = process.env.DATABASE_URL;
export const ARTIFACTS = process.env.ARTIFACTS ?? "target/e2e-artifacts";
// Whether the server offers event streams (`on`) or refuses them (`off`, MAX_EVENT_STREAMS=0).
export const STREAMS = process.env.STREAMS ?? "on";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set (tests/browser.rs sets it)`);
  return value;
}

export async function launch() {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    throw new Error(`no browser at ${executablePath}: install Debian's chromium (apt-get install chromium) or set CHROMIUM`);
  }
  return chromium.launch({
    executablePath,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

// A fresh browser context (its own localStorage, so its own user) on the given movie.
export async function visitor(browser, movie, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (error) => { throw error; });
  await page.goto(`${BASE_URL}/#${movie}`);
  await page.locator(`.seat[data-seat="A1"]`).waitFor();
  return page;
}

export const seat = (page, id) => page.locator(`.seat[data-seat="${id}"]`);

// Waits until a seat shows `state` (free, mine, held, booked) on `page`.
export async function expectSeat(page, id, state, timeout = 3000) {
  try {
    await page.waitForFunction(
      ([id, state]) => document.querySelector(`.seat[data-seat="${id}"]`)?.dataset.state === state,
      [id, state],
      { timeout },
    );
  } catch {
    const actual = await seat(page, id).getAttribute("data-state");
    throw new Error(`seat ${id} should be ${state} within ${timeout} ms, but is ${actual}`);
  }
}

export async function expectMessage(page, pattern, timeout = 3000) {
  try {
    await page.waitForFunction(
      (source) => new RegExp(source).test(document.getElementById("message").textContent),
      pattern.source,
      { timeout },
    );
  } catch {
    const actual = await page.locator("#message").textContent();
    throw new Error(`message should match ${pattern}, but is ${JSON.stringify(actual)}`);
  }
}

// The row of the sessions panel holding seat `id`.
export const holdRow = (page, id) => page.locator(`.hold[data-seats~="${id}"]`);

// Selects `ids` on the map and holds them together, expecting them to become mine.
export async function holdSeats(page, ...ids) {
  for (const id of ids) {
    await seat(page, id).click();
    await expectSeat(page, id, "selected", 1000);
  }
  await page.locator("#hold-selected").click();
  for (const id of ids) await expectSeat(page, id, "mine", 2000);
}

// A seat map of `rows` × `perRow` free seats, as GET /api/v1/movies/{id}/seats answers it:
// what a page a moment behind would see.
export function emptyMap(movie, rows, perRow) {
  const seats = [];
  for (let r = 0; r < rows; r++) {
    for (let n = 1; n <= perRow; n++) {
      seats.push({ seat_id: `${String.fromCharCode(65 + r)}${n}`, state: "free", yours: false, expires_at: null });
    }
  }
  return { movie_id: movie, rows, seats_per_row: perRow, seats, server_time: new Date().toISOString() };
}

// Makes `page` a moment behind on `movie`: its map and its stream show an empty room until
// the returned function is called.
export async function staleRoom(page, movie, rows, perRow) {
  const routes = { seats: `**/api/v1/movies/${movie}/seats`, events: `**/api/v1/movies/${movie}/events` };
  await page.route(routes.seats, (route) => route.fulfill({ json: emptyMap(movie, rows, perRow) }));
  await page.route(routes.events, (route) => route.fulfill({
    headers: { "content-type": "text/event-stream" },
    body: `retry: 300\nevent: snapshot\ndata: ${JSON.stringify({ version: 1, server_time: new Date().toISOString(), seats: [] })}\n\n`,
  }));
  return async () => {
    await page.unroute(routes.seats);
    await page.unroute(routes.events);
  };
}

// Runs SQL against the test database and returns psql's unaligned output.
export function sql(query, url = DATABASE_URL) {
  return execFileSync("psql", [url, "-qAtc", query], { encoding: "utf8" }).trim();
}

// Runs a scenario, closing the browser whatever happens, and sets the exit code.
export async function scenario(name, body) {
  const browser = await launch();
  const started = Date.now();
  try {
    await body(browser);
    console.log(`ok: ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    console.error(`FAILED: ${name}\n${error.stack ?? error}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
