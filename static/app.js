// The seat-map page: pick a movie, select seats and hold them together (or let the server pick
// the best ones), then confirm or release them before the countdown ends. Plain JavaScript
// against /api/v1; no build step. The map follows other people's changes over the movie's
// event stream, and by polling when there is no stream.
"use strict";

const POLL_MS = 1000; // without a stream, the map follows changes within this (plus a request)
const STREAM_RETRY_MS = 30000; // after the server refused a stream, try again this much later
const MOVIES_POLL_MS = 5000; // free-seat counts in the movie list
const URGENT_SECS = 30;
const MAX_GROUP = 8; // the server's default MAX_SEATS_PER_HOLD

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------
// Who I am: an identity the server issued, its token kept in localStorage.
const TOKEN_KEY = "boxoffice-token";
let token = null;
try { token = localStorage.getItem(TOKEN_KEY); } catch { /* storage disabled: per-page identity */ }

async function identify() {
  const response = await fetch("/api/v1/identities", { method: "POST" });
  if (!response.ok) throw new ApiError(response.status, "identity", "The booking service cannot be reached. Retrying…");
  token = (await response.json()).token;
  try { localStorage.setItem(TOKEN_KEY, token); } catch { /* keep it for this page */ }
}

// ---------------------------------------------------------------------------------------
// State
let movies = [];               // [{id, title, rows, seats_per_row, free}]
let movieId = null;            // the movie on screen
let taken = new Map();         // seat_id -> {state: "held" | "booked", expiresAt (server ms)}
const sessions = new Map();    // session_id -> {movieId, seats, status, expiresAt (server ms), deadline (local ms), extensions, reference, ended}
const selected = new Set();    // seats picked on the map, not held yet
let offer = null;              // seats the server suggested after a lost race
let clockOffset = 0;           // server clock minus local clock, ms
const busy = new Set();        // seats with a request in flight
let changes = 0;               // my own changes so far: a map fetched before one is stale
let stream = null;             // the EventSource following the movie on screen
let live = false;              // whether `stream` is up to date (then there is no polling)
let checking = null;           // a look at my sessions in flight

// ---------------------------------------------------------------------------------------
// The API
class ApiError extends Error {
  constructor(status, code, message, data) {
    super(message);
    this.status = status;
    this.code = code;
    this.data = data;
  }
}

async function api(method, path, body, retried = false) {
  if (!token) await identify();
  const init = { method, headers: { Authorization: `Bearer ${token}` } };
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
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (response.status === 401 && !retried) {
    // The server no longer knows the token (its secret changed): a new identity.
    token = null;
    return api(method, path, body, true);
  }
  if (!response.ok) {
    throw new ApiError(response.status, data?.code || "error", data?.error || response.statusText, data);
  }
  return data;
}

// While the service is down, the movie list is read every second (not every 5 s), so the
// page notices soon when it is back, even on a stream that polls nothing.
let retrying = null;

function serviceDown() {
  $("banner").hidden = false;
  retrying ??= setInterval(() => loadMovies().catch(() => {}), POLL_MS);
}

function serviceUp() {
  $("banner").hidden = true;
  if (retrying !== null) {
    clearInterval(retrying);
    retrying = null;
  }
}

function say(text, kind = "error") {
  const el = $("message");
  el.textContent = text || "";
  el.className = `message ${text ? kind : ""}`;
}

const seatList = (seats) => seats.join(", ");
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// ---------------------------------------------------------------------------------------
// Movies
async function loadMovies() {
  movies = await api("GET", "/api/v1/movies");
  renderMovies();
}

function readSeats(id) {
  return api("GET", `/api/v1/movies/${encodeURIComponent(id)}/seats`);
}

function renderMovies() {
  const items = movies.map((m) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "movie";
    b.dataset.movie = m.id;
    b.setAttribute("aria-current", String(m.id === movieId));
    const free = ` · ${m.free} free`;
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
  movieId = id;
  taken = new Map();
  selected.clear();
  offer = null;
  follow(id);
  if (location.hash !== `#${id}`) history.replaceState(null, "", `#${id}`);
  const movie = movies.find((m) => m.id === id);
  $("room-title").textContent = movie.title;
  $("room").hidden = false;
  buildGrid(movie);
  renderMovies();
  renderPicker();
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

// My live hold on a seat of the movie on screen, as [session id, session], if any.
function holdOf(seatId) {
  return [...sessions].find(([, s]) =>
    s.status === "held" && !s.ended && s.movieId === movieId && s.seats.includes(seatId));
}

function seatState(seatId) {
  if (holdOf(seatId)) return "mine";
  const t = taken.get(seatId);
  if (t) return t.state;
  return selected.has(seatId) ? "selected" : "free";
}

const STATE_WORDS = {
  free: "available", selected: "selected", mine: "held by you", held: "held by someone else", booked: "booked",
};

function paintSeats() {
  for (const b of $("seats").querySelectorAll(".seat")) {
    const seat = b.dataset.seat;
    const state = seatState(seat);
    const offered = offer?.includes(seat) && state === "free";
    b.className = `seat ${state}${busy.has(seat) ? " busy" : ""}${offered ? " offered" : ""}`;
    b.dataset.state = state;
    b.setAttribute("aria-label", `Row ${seat[0]}, seat ${seat.slice(1)}, ${STATE_WORDS[state]}${offered ? ", suggested" : ""}`);
    b.setAttribute("aria-disabled", String(state === "held" || state === "booked"));
    b.setAttribute("aria-pressed", String(state === "selected"));
  }
}

// The seat map, or null when it can't be read or is stale by the time it comes: the movie
// changed, or I changed a seat meanwhile.
async function readMap() {
  const id = movieId;
  if (!id) return null;
  const seen = changes;
  let map;
  try {
    map = await readSeats(id);
  } catch {
    return null; // the banner says so; the next look retries
  }
  if (id !== movieId || seen !== changes) return null;
  clockOffset = Date.parse(map.server_time) - Date.now();
  return map;
}

// Polling, while there is no live stream.
async function refresh() {
  if (live) return;
  const map = await readMap();
  if (!map || live) return;
  taken = new Map(map.seats.filter((s) => s.state !== "free" && !(s.yours && s.state === "held"))
    .map((s) => [s.seat_id, { state: s.state, expiresAt: s.expires_at ? Date.parse(s.expires_at) : null }]));
  const yours = new Set(map.seats.filter((s) => s.yours && s.state === "held").map((s) => s.seat_id));
  if (myHolds().some(([, s]) => !s.seats.every((seat) => yours.has(seat)))) checkSessions();
  seatsChanged();
}

function myHolds() {
  return [...sessions].filter(([, s]) => s.status === "held" && !s.ended && s.movieId === movieId);
}

function seatsChanged() {
  for (const seat of selected) if (seatState(seat) !== "selected") selected.delete(seat);
  const movie = movies.find((m) => m.id === movieId);
  if (movie) {
    const mine = myHolds().reduce((n, [, s]) => n + s.seats.length, 0);
    const free = movie.rows * movie.seats_per_row - taken.size - mine;
    if (movie.free !== free) {
      movie.free = free;
      renderMovies();
    }
  }
  paintSeats();
  renderPicker();
}

// ---------------------------------------------------------------------------------------
// The event stream. It names no holders: the page knows its own seats by its sessions, and
// when the stream says a seat of mine changed hands, it asks the server how that session
// stands.
function follow(id) {
  stream?.close();
  stream = null;
  setLive(false);
  if (typeof EventSource !== "function") return;
  const source = new EventSource(`/api/v1/movies/${encodeURIComponent(id)}/events`);
  stream = source;
  const current = () => stream === source;
  // A stream that reconnected and resumed is up to date again; one that gets a snapshot is
  // once the snapshot is in.
  source.addEventListener("open", () => { if (current()) setLive(true); });
  source.addEventListener("snapshot", (e) => {
    if (!current()) return;
    const data = JSON.parse(e.data);
    clockOffset = Date.parse(data.server_time) - Date.now();
    taken = new Map(data.seats.map((s) => [s.seat_id, entry(s.state === "booked" ? "booked" : "held", s.expires_at)]));
    setLive(true);
    streamChanged();
  });
  for (const kind of ["held", "confirmed", "released", "expired", "extended"]) {
    source.addEventListener(kind, (e) => {
      if (!current()) return;
      const data = JSON.parse(e.data);
      for (const seatId of data.seat_ids) {
        if (kind === "released" || kind === "expired") taken.delete(seatId);
        else taken.set(seatId, entry(kind === "confirmed" ? "booked" : "held", data.expires_at));
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

function entry(state, expiresAt) {
  return { state, expiresAt: expiresAt ? Date.parse(expiresAt) : null };
}

// Whether the map follows a live stream or polls; shown on the page element for tests and
// for anyone debugging the page.
function setLive(value) {
  live = value;
  document.documentElement.dataset.updates = value ? "stream" : "polling";
}

// My held seats are mine whatever the stream says; if it says one is free or booked (which
// I did not do), my session may have ended: ask.
function streamChanged() {
  let doubt = false;
  for (const [, s] of myHolds()) {
    for (const seat of s.seats) {
      if (busy.has(seat)) continue;
      const t = taken.get(seat);
      if (!t || t.state !== "held" || (t.expiresAt && t.expiresAt !== s.expiresAt)) doubt = true;
      taken.delete(seat);
    }
  }
  if (doubt) checkSessions();
  seatsChanged();
}

// Asks the server how my live holds on screen stand, one look at a time.
function checkSessions() {
  checking ??= (async () => {
    try {
      for (const [id, s] of myHolds()) {
        const now = await api("GET", `/api/v1/sessions/${id}`).catch(() => null);
        if (now) settle(id, s, now);
      }
    } finally {
      checking = null;
      seatsChanged();
    }
  })();
}

// Brings session `id` in line with what the server says of it (`now`).
function settle(id, s, now) {
  if (s.ended) return;
  if (now.status === "held") {
    s.expiresAt = Date.parse(now.expires_at);
    s.deadline = s.expiresAt - clockOffset;
    s.extensions = now.extensions;
    renderSessions();
  } else if (now.status === "expired") {
    endSession(id, `Your hold on ${seatList(s.seats)} expired. The seats are available again.`);
  } else if (now.status === "confirmed") {
    s.status = "confirmed";
    s.reference = now.booking_reference;
    renderSessions();
  } else {
    endSession(id, `Your hold on ${seatList(s.seats)} has ended.`, "Hold ended");
  }
}

// ---------------------------------------------------------------------------------------
// Selecting and holding
function clickSeat(seat) {
  if (busy.has(seat)) return;
  const state = seatState(seat);
  if (state === "mine") { say(`Seat ${seat} is held by you: confirm or release it under Your seats.`, "ok"); return; }
  if (state === "held") { say(`Seat ${seat} is held by someone else. Please pick another seat.`); return; }
  if (state === "booked") { say(`Seat ${seat} is already booked. Please pick another seat.`); return; }
  if (selected.has(seat)) selected.delete(seat);
  else if (selected.size >= MAX_GROUP) { say(`You can hold at most ${MAX_GROUP} seats at once.`); return; }
  else selected.add(seat);
  say("");
  paintSeats();
  renderPicker();
}

function renderPicker() {
  const n = selected.size;
  const button = $("hold-selected");
  button.disabled = n === 0;
  button.textContent = n === 0 ? "Select seats to hold" : `Hold ${plural(n, "seat")}: ${seatList([...selected].sort(bySeat))}`;
  $("offer").hidden = !offer;
  if (offer) $("offer").textContent = `Hold ${seatList(offer)} instead`;
}

function bySeat(a, b) {
  return a[0] === b[0] ? Number(a.slice(1)) - Number(b.slice(1)) : a.localeCompare(b);
}

// Runs one change to some seats (a request and its effects on the page): the seats show
// busy meanwhile, an error becomes a message (`explain` may word it better), and the map is
// fetched afresh afterwards.
async function change(seats, action, explain) {
  for (const seat of seats) busy.add(seat);
  paintSeats();
  try {
    await action();
  } catch (e) {
    say(explain(e) ?? e.message);
  } finally {
    for (const seat of seats) busy.delete(seat);
    changes++;
  }
  renderSessions();
  seatsChanged();
  await refresh();
}

function hold(body, seats) {
  const id = movieId;
  say("");
  offer = null;
  return change(seats, async () => {
    const h = await api("POST", `/api/v1/movies/${encodeURIComponent(id)}/holds`, body);
    clockOffset = Date.parse(h.server_time) - Date.now();
    const expiresAt = Date.parse(h.expires_at);
    sessions.set(h.session_id, {
      movieId: id, seats: h.seat_ids, status: "held", expiresAt, deadline: expiresAt - clockOffset, extensions: 0,
    });
    for (const seat of h.seat_ids) { selected.delete(seat); taken.delete(seat); }
    say(`${h.seat_ids.length === 1 ? "Seat" : "Seats"} ${seatList(h.seat_ids)} ${h.seat_ids.length === 1 ? "is" : "are"} held for you. Confirm before the timer runs out.`, "ok");
  }, (e) => {
    if (e.code === "seat_taken") {
      const lost = e.data?.seats ?? [];
      // The group is not held: start again from the offer, or from a new selection.
      selected.clear();
      for (const seat of lost) {
        if (!taken.has(seat)) taken.set(seat, { state: "held", expiresAt: null }); // until the map says more
      }
      offer = e.data?.suggestion?.seat_ids ?? null;
      const nearby = offer ? ` Seats ${seatList(offer)} are free nearby.` : "";
      return `Sorry — ${lost.length === 1 ? "seat" : "seats"} ${seatList(lost)} ${lost.length === 1 ? "was" : "were"} just taken by someone else.${nearby}`;
    }
    if (e.code === "not_enough_seats") return `Sorry — only ${plural(e.data?.free ?? 0, "seat")} ${e.data?.free === 1 ? "is" : "are"} free.`;
    return null;
  });
}

function holdSelected() {
  const seats = [...selected].sort(bySeat);
  if (seats.length) return hold({ seat_ids: seats }, seats);
}

function pickForMe() {
  const n = Number($("quantity").value);
  if (!(n >= 1 && n <= MAX_GROUP)) { say(`Choose 1 to ${MAX_GROUP} seats.`); return; }
  selected.clear();
  return hold({ quantity: n }, []);
}

function takeOffer() {
  if (offer) return hold({ seat_ids: offer }, offer);
}

// ---------------------------------------------------------------------------------------
// Confirming, extending, releasing a whole session
function confirm(id) {
  const s = sessions.get(id);
  if (!s || s.ended) return;
  return change(s.seats, async () => {
    const booking = await api("POST", `/api/v1/sessions/${id}/confirm`);
    s.status = "confirmed";
    s.reference = booking.booking_reference;
    for (const seat of s.seats) if (s.movieId === movieId) taken.set(seat, { state: "booked", expiresAt: null });
    say(`Booked! ${s.seats.length === 1 ? "Seat" : "Seats"} ${seatList(s.seats)} ${s.seats.length === 1 ? "is" : "are"} yours. Your booking reference is ${booking.booking_reference}.`, "ok");
  }, (e) => gone(e, id, `Your hold on ${seatList(s.seats)} expired before it was confirmed.`));
}

function extend(id) {
  const s = sessions.get(id);
  if (!s || s.ended) return;
  return change(s.seats, async () => {
    const now = await api("POST", `/api/v1/sessions/${id}/extend`);
    settle(id, s, now);
    say(`More time for ${seatList(s.seats)}.`, "ok");
  }, (e) => (e.code === "extension_limit"
    ? `Your hold on ${seatList(s.seats)} cannot be extended any further.`
    : gone(e, id, `Your hold on ${seatList(s.seats)} had already expired.`)));
}

function release(id) {
  const s = sessions.get(id);
  if (!s) return;
  return change(s.seats, async () => {
    await api("DELETE", `/api/v1/sessions/${id}`);
    sessions.delete(id);
    say(`${seatList(s.seats)} released.`, "ok");
  }, (e) => gone(e, id, `Your hold on ${seatList(s.seats)} had already expired.`));
}

// If `e` says the hold is gone, ends it on the page and returns `text`.
function gone(e, id, text) {
  if (e.code !== "hold_expired" && e.code !== "hold_released") return null;
  endSession(id, text);
  return text;
}

function endSession(id, text, note = "Hold expired") {
  const s = sessions.get(id);
  if (!s || s.ended) return;
  s.ended = note;
  say(text);
  renderSessions();
  seatsChanged();
  // Ended holds leave the panel after a while; the message stays until the next action.
  setTimeout(() => { sessions.delete(id); renderSessions(); }, 5000);
}

// ---------------------------------------------------------------------------------------
// The sessions panel and its countdowns, on the server's clock
function remaining(s) {
  return Math.max(0, Math.ceil((s.deadline - Date.now()) / 1000));
}

function mmss(secs) {
  return `${String(Math.floor(secs / 60)).padStart(2, "0")}:${String(secs % 60).padStart(2, "0")}`;
}

// My live holds and bookings, from the server: what a reload (or another tab) finds again.
async function loadSessions() {
  const mine = await api("GET", "/api/v1/me/sessions");
  for (const s of mine.sessions) {
    const expiresAt = Date.parse(s.expires_at);
    sessions.set(s.session_id, {
      movieId: s.movie_id, seats: s.seat_ids, status: s.status, expiresAt,
      deadline: expiresAt - clockOffset, extensions: s.extensions, reference: s.booking_reference,
    });
  }
}

function renderSessions() {
  const movieTitle = (id) => movies.find((m) => m.id === id)?.title ?? id;
  const items = [...sessions].map(([id, s]) => {
    const li = document.createElement("li");
    li.className = `hold${s.ended ? " ended" : ""}${s.status === "confirmed" ? " booked" : ""}`;
    li.dataset.seats = s.seats.join(" ");
    li.dataset.session = id;
    const what = document.createElement("span");
    what.textContent = `${movieTitle(s.movieId)} — ${s.seats.length === 1 ? "seat" : "seats"} ${seatList(s.seats)}`;
    li.append(what);
    if (s.ended) {
      const note = document.createElement("span");
      note.className = "expired";
      note.textContent = s.ended;
      li.append(note);
      return li;
    }
    if (s.status === "confirmed") {
      const reference = document.createElement("span");
      reference.className = "reference";
      reference.textContent = `Booked — reference ${s.reference}`;
      li.append(reference);
      return li;
    }
    const countdown = document.createElement("span");
    countdown.className = "countdown";
    countdown.setAttribute("role", "timer");
    li.append(countdown);
    const actions = document.createElement("div");
    actions.className = "actions";
    for (const [cls, label, action] of [["confirm", "Confirm", confirm], ["extend", "More time", extend], ["release", "Release", release]]) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = cls;
      b.textContent = label;
      b.setAttribute("aria-label", `${label}: ${seatList(s.seats)}`);
      b.addEventListener("click", () => action(id));
      actions.append(b);
    }
    li.append(actions);
    return li;
  });
  // Keep the panel's buttons (and keyboard focus) when nothing about the sessions changed.
  const key = items.map((li) => li.dataset.session + li.className).join();
  if ($("holds").dataset.key !== key) {
    $("holds").replaceChildren(...items);
    $("holds").dataset.key = key;
  }
  $("checkout").hidden = sessions.size === 0;
  tick();
}

function tick() {
  // Someone else's hold runs out on the server's clock, reaped or not: the seat is free.
  const now = Date.now() + clockOffset;
  let lapsed = false;
  for (const [seatId, t] of taken) {
    if (t.state === "held" && t.expiresAt && t.expiresAt <= now) {
      taken.delete(seatId);
      lapsed = true;
    }
  }
  if (lapsed) seatsChanged();
  let due = false;
  for (const li of $("holds").querySelectorAll(".hold:not(.ended):not(.booked)")) {
    const s = sessions.get(li.dataset.session);
    if (!s) continue;
    const secs = remaining(s);
    const el = li.querySelector(".countdown");
    el.textContent = mmss(secs);
    el.classList.toggle("urgent", secs <= URGENT_SECS);
    el.setAttribute("aria-label", `${secs} seconds left`);
    if (secs === 0) due = true;
  }
  // The countdown is an estimate of the server's clock: the server says when a hold ended
  // (asked at most once a second, while it says not yet).
  if (due && !checking && Date.now() - lastDueCheck >= 1000) {
    lastDueCheck = Date.now();
    checkSessions();
  }
}

let lastDueCheck = 0;

// ---------------------------------------------------------------------------------------
// Start. The map polls only while it has no live stream (refresh returns at once otherwise).
function startUpdates() {
  setInterval(refresh, POLL_MS);
  setInterval(() => loadMovies().catch(() => {}), MOVIES_POLL_MS);
}

$("hold-selected").addEventListener("click", holdSelected);
$("pick").addEventListener("click", pickForMe);
$("offer").addEventListener("click", takeOffer);
setInterval(tick, 250);

(async function start() {
  for (;;) {
    try {
      await loadMovies();
      await loadSessions();
      break;
    } catch (e) {
      say(e.message);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  renderSessions();
  const wanted = location.hash.slice(1);
  const first = movies.some((m) => m.id === wanted) ? wanted : movies[0]?.id;
  if (first) await selectMovie(first);
  startUpdates();
})();
