// A plain seat map: pick a movie, click a seat to hold it, then confirm or release it.
// The map is refreshed every 2 s so other people's holds and bookings show up.
"use strict";

const userId = (() => {
  let id = localStorage.getItem("boxoffice-user");
  if (!id) {
    id = "u-" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("boxoffice-user", id);
  }
  return id;
})();

const $ = (id) => document.getElementById(id);
let movies = [];
let hold = null; // {session_id, seat_id, deadline (ms, local clock)}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw Object.assign(new Error(data?.error || response.statusText), { status: response.status });
  return data;
}

function say(text) { $("message").textContent = text || ""; }

async function loadMovies() {
  movies = await api("GET", "/movies");
  $("movie").replaceChildren(...movies.map((m) => new Option(`${m.title} (${m.rows}×${m.seats_per_row})`, m.id)));
  await refresh();
}

async function refresh() {
  const movie = movies.find((m) => m.id === $("movie").value);
  if (!movie) return;
  let taken;
  try {
    taken = await api("GET", `/movies/${movie.id}/seats`);
  } catch (e) {
    say(e.status === 503 ? "Service unavailable, retrying…" : e.message);
    return;
  }
  const bySeat = new Map(taken.map((t) => [t.seat_id, t]));
  const grid = $("seats");
  grid.style.gridTemplateColumns = `repeat(${movie.seats_per_row}, 2rem)`;
  const buttons = [];
  for (let r = 0; r < movie.rows; r++) {
    const row = String.fromCharCode(65 + r);
    for (let n = 1; n <= movie.seats_per_row; n++) {
      const seat = `${row}${n}`;
      const t = bySeat.get(seat);
      const state = !t ? "free" : t.confirmed ? "booked" : t.user_id === userId ? "mine" : "held";
      const b = document.createElement("button");
      b.type = "button";
      b.className = `seat ${state}`;
      b.textContent = seat;
      b.setAttribute("aria-label", `Row ${row}, seat ${n}, ${state === "mine" ? "held by you" : state === "held" ? "held by someone else" : state === "free" ? "available" : "booked"}`);
      b.addEventListener("click", () => clickSeat(movie.id, seat, state));
      buttons.push(b);
    }
  }
  grid.replaceChildren(...buttons);
  if (hold && !bySeat.has(hold.seat_id)) endHold("Your hold has ended.");
}

async function clickSeat(movieId, seat, state) {
  say("");
  try {
    if (state === "mine" && hold) {
      await api("DELETE", `/sessions/${hold.session_id}`, { user_id: userId });
      endHold("");
    } else if (state === "free") {
      if (hold) await api("DELETE", `/sessions/${hold.session_id}`, { user_id: userId }).catch(() => {});
      const h = await api("POST", `/movies/${movieId}/seats/${seat}/hold`, { user_id: userId });
      const offset = Date.parse(h.server_time) - Date.now();
      hold = { session_id: h.session_id, seat_id: h.seat_id, deadline: Date.parse(h.expires_at) - offset };
      $("checkout-seat").textContent = seat;
      $("checkout").hidden = false;
      tick();
    }
  } catch (e) {
    say(e.message);
  }
  await refresh();
}

function endHold(text) {
  hold = null;
  $("checkout").hidden = true;
  if (text) say(text);
}

function tick() {
  if (!hold) return;
  const left = Math.max(0, Math.round((hold.deadline - Date.now()) / 1000));
  $("countdown").textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  if (left === 0) { endHold("Your hold expired."); refresh(); }
}

$("confirm").addEventListener("click", async () => {
  if (!hold) return;
  try {
    await api("PUT", `/sessions/${hold.session_id}/confirm`, { user_id: userId });
    endHold(`Booked seat — enjoy the film!`);
  } catch (e) {
    endHold(e.message);
  }
  await refresh();
});
$("release").addEventListener("click", async () => {
  if (!hold) return;
  await api("DELETE", `/sessions/${hold.session_id}`, { user_id: userId }).catch(() => {});
  endHold("");
  await refresh();
});
$("movie").addEventListener("change", refresh);
setInterval(refresh, 2000);
setInterval(tick, 1000);
loadMovies().catch((e) => say(e.message));
