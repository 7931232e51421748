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

export const holdRow = (page, id) => page.locator(`.hold[data-seat="${id}"]`);

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
