// With the database gone the page says so and keeps retrying; when it is back, the page
// recovers by itself. ADMIN_URL and APP_NAME (the server's connections) come from the test.
import { expectSeat, scenario, seat, sql, visitor } from "./lib.mjs";

const ADMIN_URL = process.env.ADMIN_URL;
const APP_NAME = process.env.APP_NAME;
const database = new URL(process.env.DATABASE_URL).pathname.slice(1);

function setConnections(allowed) {
  sql(`alter database ${database} allow_connections ${allowed}`, ADMIN_URL);
  if (!allowed) {
    sql(`select pg_terminate_backend(pid) from pg_stat_activity
         where datname = '${database}' and application_name = '${APP_NAME}'`, ADMIN_URL);
  }
}

await scenario("database outage and recovery", async (browser) => {
  const page = await visitor(browser, "inception");
  const banner = page.locator("#banner");
  try {
    setConnections(false);
    // With a live stream the page reads the database again with the movie list, every 5 s:
    // the banner comes within that and one request.
    await banner.waitFor({ state: "visible", timeout: 8000 });
    // A hold asked for during the outage must not break the page.
    await seat(page, "A1").click();
    await page.locator("#hold-selected").click();
  } finally {
    setConnections(true);
  }
  await banner.waitFor({ state: "hidden", timeout: 5000 });
  // What was selected is still selected: holding it now works.
  await expectSeat(page, "A1", "selected");
  await page.locator("#hold-selected").click();
  await expectSeat(page, "A1", "mine", 2000);
});
