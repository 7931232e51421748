// The seat-map page: pick a movie, click a seat to hold it, confirm or release it before the
// countdown ends. Plain JavaScript against the REST API; no build step. The map follows other
// people's changes over the movie's event stream, and by polling when there is no stream.
"use strict";

const POLL_MS = 1000; // without a stream, the map follows changes within this (plus a request)
const STREAM_RETRY_MS = 30000; // after the server refused a stream, try again this much later
const MOVIES_POLL_MS = 5000; // free-seat counts in the movie list
const URGENT_SECS = 30;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------
// Who I am: one id per browser, kept in localStorage. crypto.randomUUID exists only in
// secure contexts (https, localhost), so a plain-http LAN address uses getRandomValues.
const userId = (() => {
  const key = "boxoffice-user-id";
  let id = null;
  try { id = localStorage.getItem(key); } catch { /* storage disabled: per-page id */ }
  if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    const bytes = new Uint8Array(16);
    if (globalThis.crypto?.getRandomValues) crypto.getRandomValues(bytes);
    else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    id = "u-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    try { localStorage.setItem(key, id); } catch { /* keep it for this page */ }
  }
  return id;
})();

// ---------------------------------------------------------------------------------------
// State
let movies = [];               // [{id, title, rows, seats_per_row, free}]
let movieId = null;            // the movie on screen
let taken = new Map();         // seat_id -> {user_id, confirmed, expiresAt (server ms, held seats from the stream)}
const holds = new Map();       // session_id -> {movieId, seatId, expiresAt (server ms), deadline (local ms)}
const HOLDS_KEY = `boxoffice-holds-${userId}`; // where they are kept across reloads
let clockOffset = 0;           // server clock minus local clock, ms
let serverDate = 0;            // the Date header of the last answer (server ms, whole seconds)
const busySeats = new Set();   // seats with a request in flight
let changes = 0;               // my own changes so far: a map fetched before one is stale
let stream = null;             // the EventSource following the movie on screen
let live = false;              // whether `stream` is up to date (then there is no polling)
let checking = null;           // a look at the map in flight, to see which holds are still mine

// ---------------------------------------------------------------------------------------
// The API
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    serviceDown();
    throw new ApiError(0, "network", "The booking service cannot be reached. Retrying…");
  }
  if (response.status === 503) serviceDown();
  else serviceUp();
  serverDate = Date.parse(response.headers.get("date")) || serverDate;
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, data?.code || "error", data?.error || response.statusText);
  }
  return data;
}

function serviceDown() { $("banner").hidden = false; }
function serviceUp() { $("banner").hidden = true; }

function say(text, kind = "error") {
  const el = $("message");
  el.textContent = text || "";
  el.className = `message ${text ? kind : ""}`;
}

// ---------------------------------------------------------------------------------------
// Movies
async function loadMovies() {
  const list = await api("GET", "/movies");
  const counts = await Promise.all(list.map((m) =>
    m.id === movieId ? taken.size : api("GET", `/movies/${encodeURIComponent(m.id)}/seats`).then((t) => t.length, () => null)));
  movies = list.map((m, i) => ({ ...m, free: counts[i] === null ? null : m.rows * m.seats_per_row - counts[i] }));
  renderMovies();
}

function renderMovies() {
  const items = movies.map((m) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "movie";
    b.dataset.movie = m.id;
    b.setAttribute("aria-current", String(m.id === movieId));
    const free = m.free === null ? "" : ` · ${m.free} free`;
    b.innerHTML = `<span class="title"></span><span class="meta"></span>`;
    b.querySelector(".title").textContent = m.title;
    b.querySelector(".meta").textContent = `${m.rows} rows × ${m.seats_per_row} seats${free}`;
    b.addEventListener("click", () => selectMovie(m.id));
    li.append(b);
    return li;
  });
  $("movies").replaceChildren(...items);
}

async function selectMovie(id) {
  if (id === movieId) return;
  if (movieId !== null) releaseAll(); // switching movies, not opening the page
  movieId = id;
  taken = new Map();
  follow(id);
  if (location.hash !== `#${id}`) history.replaceState(null, "", `#${id}`);
  const movie = movies.find((m) => m.id === id);
  $("room-title").textContent = movie.title;
  $("room").hidden = false;
  buildGrid(movie);
  renderMovies();
  say("");
  if (!stream) await refresh(); // a stream starts with a snapshot
}

// ---------------------------------------------------------------------------------------
// The seat map. The grid is built once per movie and updated in place, so keyboard focus
// survives every refresh.
function buildGrid(movie) {
  const grid = $("seats");
  grid.style.gridTemplateColumns = `auto repeat(${movie.seats_per_row}, var(--seat))`;
  const cells = [];
  for (let r = 0; r < movie.rows; r++) {
    const row = String.fromCharCode(65 + r);
    const label = document.createElement("span");
    label.className = "row-label";
    label.textContent = row;
    label.setAttribute("aria-hidden", "true");
    cells.push(label);
    for (let n = 1; n <= movie.seats_per_row; n++) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "seat free";
      b.dataset.seat = `${row}${n}`;
      b.innerHTML = `<span class="num"></span>`;
      b.querySelector(".num").textContent = n;
      b.addEventListener("click", () => clickSeat(b.dataset.seat));
      cells.push(b);
    }
  }
  grid.replaceChildren(...cells);
  paintSeats();
}

function seatState(seatId) {
  const t = taken.get(seatId);
  if (!t) return "free";
  if (t.confirmed) return "booked";
  return t.user_id === userId ? "mine" : "held";
}

const STATE_WORDS = { free: "available", mine: "held by you", held: "held by someone else", booked: "booked" };

function paintSeats() {
  for (const b of $("seats").querySelectorAll(".seat")) {
    const seat = b.dataset.seat;
    const state = seatState(seat);
    b.className = `seat ${state}${busySeats.has(seat) ? " busy" : ""}`;
    b.dataset.state = state;
    b.setAttribute("aria-label", `Row ${seat[0]}, seat ${seat.slice(1)}, ${STATE_WORDS[state]}`);
    b.setAttribute("aria-disabled", String(state === "held" || state === "booked"));
  }
}

// The seat map as the seat-map route has it (it names holders), or null when it can't be
// read or is stale by the time it comes: the movie changed, or I changed a seat meanwhile.
async function readMap() {
  const id = movieId;
  if (!id) return null;
  const seen = changes;
  let list;
  try {
    list = await api("GET", `/movies/${encodeURIComponent(id)}/seats`);
  } catch {
    return null; // the banner says so; the next look retries
  }
  if (id !== movieId || seen !== changes) return null;
  return new Map(list.map((t) => [t.seat_id, t]));
}

// Polling, while there is no live stream.
async function refresh() {
  if (live) return;
  const map = await readMap();
  if (!map || live) return;
  taken = map;
  settleHolds(map);
  seatsChanged();
}

// A hold of mine that `map` no longer shows as mine expired (the countdown, on an estimate of
// the server's clock, may lag behind by a moment: the answer's Date, whole seconds, decides)
// or ended elsewhere (another tab).
function settleHolds(map) {
  for (const [session, h] of holds) {
    if (h.movieId !== movieId || h.ended || busySeats.has(h.seatId)) continue;
    const t = map.get(h.seatId);
    if (t && t.user_id === userId && !t.confirmed) continue;
    if (serverDate + 1000 >= h.expiresAt) expire(session, h);
    else endHold(session, `Your hold on seat ${h.seatId} has ended.`, "Hold ended");
  }
}

function seatsChanged() {
  const movie = movies.find((m) => m.id === movieId);
  if (movie && movie.free !== movie.rows * movie.seats_per_row - taken.size) {
    movie.free = movie.rows * movie.seats_per_row - taken.size;
    renderMovies();
  }
  paintSeats();
}

// ---------------------------------------------------------------------------------------
// The event stream. It names no holders, so the page tells its own seats by its holds (a
// held seat is mine when it runs out exactly when a hold of mine does). When the stream
// says a seat of mine is no longer mine, that may be an old change still on its way, so the
// seat stays mine on screen until the seat-map route, which names holders, says otherwise.
function follow(id) {
  stream?.close();
  stream = null;
  setLive(false);
  if (typeof EventSource !== "function") return;
  const source = new EventSource(`/movies/${encodeURIComponent(id)}/events`);
  stream = source;
  const current = () => stream === source;
  // A stream that reconnected and resumed is up to date again; one that gets a snapshot is
  // once the snapshot is in.
  source.addEventListener("open", () => { if (current()) setLive(true); });
  source.addEventListener("snapshot", (e) => {
    if (!current()) return;
    const data = JSON.parse(e.data);
    clockOffset = Date.parse(data.server_time) - Date.now();
    taken = new Map(data.seats.map((s) => [s.seat_id, seatEntry(s.seat_id, s.state === "booked", s.expires_at)]));
    setLive(true);
    streamChanged();
  });
  for (const kind of ["held", "confirmed", "released", "expired"]) {
    source.addEventListener(kind, (e) => {
      if (!current()) return;
      const data = JSON.parse(e.data);
      for (const seatId of data.seat_ids) {
        if (kind === "held" || kind === "confirmed") {
          taken.set(seatId, seatEntry(seatId, kind === "confirmed", data.expires_at));
        } else {
          taken.delete(seatId);
        }
      }
      streamChanged();
    });
  }
  source.addEventListener("error", () => {
    if (!current()) return;
    setLive(false); // polling until the stream is back
    if (source.readyState === EventSource.CLOSED) {
      // Refused (the server's cap, or streams turned off): poll, and try again later.
      stream = null;
      refresh();
      setTimeout(() => { if (movieId === id && stream === null) follow(id); }, STREAM_RETRY_MS);
    }
  });
}

// Whether the map follows a live stream or polls; shown on the page element for tests and
// for anyone debugging the page.
function setLive(value) {
  live = value;
  document.documentElement.dataset.updates = value ? "stream" : "polling";
}

function seatEntry(seatId, confirmed, expiresAt) {
  const until = expiresAt ? Date.parse(expiresAt) : null;
  const mine = !confirmed && [...holds.values()].some((h) =>
    !h.ended && h.movieId === movieId && h.seatId === seatId && h.expiresAt === until);
  return { seat_id: seatId, user_id: mine ? userId : null, confirmed, expiresAt: until };
}

function streamChanged() {
  let doubt = false;
  for (const h of holds.values()) {
    if (h.movieId !== movieId || h.ended || busySeats.has(h.seatId)) continue;
    if (seatState(h.seatId) === "mine") continue;
    doubt = true;
    if (!taken.has(h.seatId)) {
      taken.set(h.seatId, { seat_id: h.seatId, user_id: userId, confirmed: false, expiresAt: h.expiresAt });
    }
  }
  if (doubt) checkHolds();
  seatsChanged();
}

// Looks at the map to settle which holds are still mine: one look at a time, looking again
// when my own change made the answer stale. A look that fails is retried by the next event
// or by polling.
function checkHolds() {
  checking ??= (async () => {
    try {
      for (let tries = 0; tries < 3; tries++) {
        const map = await readMap();
        if (map) {
          settleHolds(map);
          seatsChanged();
          return;
        }
      }
    } finally {
      checking = null;
    }
  })();
}

// ---------------------------------------------------------------------------------------
// Holding, confirming, releasing
async function clickSeat(seat) {
  if (busySeats.has(seat)) return;
  const state = seatState(seat);
  if (state === "mine") {
    const session = [...holds].find(([, h]) => h.seatId === seat && h.movieId === movieId && !h.ended)?.[0];
    if (session) await release(session);
    return;
  }
  if (state === "held") { say(`Seat ${seat} is held by someone else. Please pick another seat.`); return; }
  if (state === "booked") { say(`Seat ${seat} is already booked. Please pick another seat.`); return; }
  await hold(seat);
}

// Runs one change to `seat` (a request and its effects on the page): the seat shows busy
// meanwhile, an error becomes a message (`explain` may word it better), and the map is
// fetched afresh afterwards.
async function change(seat, action, explain) {
  busySeats.add(seat);
  paintSeats();
  try {
    await action();
  } catch (e) {
    say(explain(e) ?? e.message);
  } finally {
    busySeats.delete(seat);
    changes++;
  }
  renderHolds();
  paintSeats();
  await refresh();
}

function hold(seat) {
  const id = movieId;
  say("");
  return change(seat, async () => {
    const h = await api("POST", `/movies/${encodeURIComponent(id)}/seats/${seat}/hold`, { user_id: userId });
    clockOffset = Date.parse(h.server_time) - Date.now();
    const expiresAt = Date.parse(h.expires_at);
    holds.set(h.session_id, { movieId: id, seatId: h.seat_id, expiresAt, deadline: expiresAt - clockOffset });
    taken.set(h.seat_id, { seat_id: h.seat_id, user_id: userId, confirmed: false, expiresAt });
    say(`Seat ${seat} is held for you. Confirm it before the timer runs out.`, "ok");
  }, (e) => (e.code === "seat_taken"
    ? `Sorry — seat ${seat} was just taken by someone else. Please pick another seat.`
    : null));
}

function confirm(session) {
  const h = holds.get(session);
  if (!h || h.ended) return;
  return change(h.seatId, async () => {
    await api("PUT", `/sessions/${session}/confirm`, { user_id: userId });
    holds.delete(session);
    taken.set(h.seatId, { seat_id: h.seatId, user_id: userId, confirmed: true });
    say(`Booked! Seat ${h.seatId} is yours. Enjoy the film.`, "ok");
  }, (e) => expired(e, session, `Your hold on seat ${h.seatId} expired before it was confirmed.`));
}

function release(session) {
  const h = holds.get(session);
  if (!h) return;
  return change(h.seatId, async () => {
    await api("DELETE", `/sessions/${session}`, { user_id: userId });
    holds.delete(session);
    if (h.movieId === movieId) taken.delete(h.seatId);
    say(`Seat ${h.seatId} released.`, "ok");
  }, (e) => expired(e, session, `Your hold on seat ${h.seatId} had already expired.`));
}

// If `e` says the hold expired, ends it on the page and returns `text`.
function expired(e, session, text) {
  if (e.code !== "hold_expired") return null;
  endHold(session, text);
  return text;
}

// Releases every unconfirmed hold, on switching movies. Leaving or reloading the page keeps
// them: they expire by themselves, and a reload finds them again (loadHolds).
function releaseAll() {
  for (const [session, h] of holds) {
    if (h.ended) continue;
    api("DELETE", `/sessions/${session}`, { user_id: userId }).catch(() => {});
  }
  holds.clear();
  renderHolds();
}

function expire(session, h) {
  endHold(session, `Your hold on seat ${h.seatId} expired. The seat is available again.`);
}

function endHold(session, text, note = "Hold expired") {
  const h = holds.get(session);
  if (!h || h.ended) return;
  h.ended = note;
  if (h.movieId === movieId && seatState(h.seatId) === "mine") taken.delete(h.seatId);
  say(text);
  renderHolds();
  paintSeats();
  // Ended holds leave the panel after a while; the message stays until the next action.
  setTimeout(() => { holds.delete(session); renderHolds(); }, 5000);
}

// ---------------------------------------------------------------------------------------
// The checkout panel and its countdowns, on the server's clock
function remaining(h) {
  return Math.max(0, Math.ceil((h.deadline - Date.now()) / 1000));
}

function mmss(secs) {
  return `${String(Math.floor(secs / 60)).padStart(2, "0")}:${String(secs % 60).padStart(2, "0")}`;
}

// My live holds, kept in localStorage so that a reload can still confirm or release them.
function saveHolds() {
  const live = [...holds].filter(([, h]) => !h.ended)
    .map(([session, { movieId, seatId, expiresAt, deadline }]) => [session, { movieId, seatId, expiresAt, deadline }]);
  try { localStorage.setItem(HOLDS_KEY, JSON.stringify(live)); } catch { /* storage disabled: this page only */ }
}

function loadHolds() {
  let saved = [];
  try { saved = JSON.parse(localStorage.getItem(HOLDS_KEY) || "[]"); } catch { /* start afresh */ }
  if (!Array.isArray(saved)) return;
  for (const [session, h] of saved) {
    if (typeof session === "string" && typeof h?.seatId === "string" && h.deadline > Date.now()) {
      holds.set(session, h);
    }
  }
}

function renderHolds() {
  saveHolds();
  const movieTitle = (id) => movies.find((m) => m.id === id)?.title ?? id;
  const items = [...holds].map(([session, h]) => {
    const li = document.createElement("li");
    li.className = `hold${h.ended ? " ended" : ""}`;
    li.dataset.seat = h.seatId;
    li.dataset.session = session;
    const what = document.createElement("span");
    what.textContent = `${movieTitle(h.movieId)} — row ${h.seatId[0]}, seat ${h.seatId.slice(1)}`;
    li.append(what);
    if (h.ended) {
      const note = document.createElement("span");
      note.className = "expired";
      note.textContent = h.ended;
      li.append(note);
      return li;
    }
    const countdown = document.createElement("span");
    countdown.className = "countdown";
    countdown.setAttribute("role", "timer");
    li.append(countdown);
    const actions = document.createElement("div");
    actions.className = "actions";
    for (const [cls, label, action] of [["confirm", "Confirm", confirm], ["release", "Release", release]]) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = cls;
      b.textContent = label;
      b.setAttribute("aria-label", `${label} seat ${h.seatId}`);
      b.addEventListener("click", () => action(session));
      actions.append(b);
    }
    li.append(actions);
    return li;
  });
  // Keep the panel's buttons (and keyboard focus) when nothing about the holds changed.
  const key = items.map((li) => li.dataset.session + li.className).join();
  if ($("holds").dataset.key !== key) {
    $("holds").replaceChildren(...items);
    $("holds").dataset.key = key;
  }
  $("checkout").hidden = holds.size === 0;
  tick();
}

function tick() {
  // Someone else's hold runs out on the server's clock, reaped or not: the seat is free.
  const now = Date.now() + clockOffset;
  let lapsed = false;
  for (const [seatId, t] of taken) {
    if (!t.confirmed && t.user_id !== userId && t.expiresAt && t.expiresAt <= now) {
      taken.delete(seatId);
      lapsed = true;
    }
  }
  if (lapsed) seatsChanged();
  for (const li of $("holds").querySelectorAll(".hold:not(.ended)")) {
    const session = li.dataset.session;
    const h = holds.get(session);
    if (!h) continue;
    const secs = remaining(h);
    const el = li.querySelector(".countdown");
    el.textContent = mmss(secs);
    el.classList.toggle("urgent", secs <= URGENT_SECS);
    el.setAttribute("aria-label", `${secs} seconds left`);
    if (secs === 0) expire(session, h);
  }
}

// ---------------------------------------------------------------------------------------
// Start. The map polls only while it has no live stream (refresh returns at once otherwise).
function startUpdates() {
  setInterval(refresh, POLL_MS);
  setInterval(() => loadMovies().catch(() => {}), MOVIES_POLL_MS);
}

setInterval(tick, 250);

(async function start() {
  for (;;) {
    try {
      await loadMovies();
      break;
    } catch (e) {
      say(e.message);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  loadHolds();
  renderHolds();
  const wanted = location.hash.slice(1);
  const first = movies.some((m) => m.id === wanted) ? wanted : movies[0]?.id;
  if (first) await selectMovie(first);
  startUpdates();
})();
