-- One scenario of the load benchmark, driven by wrk (benches/loadgen/wrk.rs runs it).
-- Environment: SCENARIO (holds, group-holds, hot-seat, seat-map or seat-map-v1), THREADS
-- (wrk's -t), TOLD (a file that gets, when the run is done, a line per status seen and a line
-- per hold granted), TOKENS (group-holds and seat-map-v1: a file of API tokens, one per line).
local scenario = os.getenv("SCENARIO")
local threads = {}

local tokens = {}
if scenario == "group-holds" or scenario == "seat-map-v1" then
  for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
end

function setup(thread)
  thread:set("id", #threads)
  thread:set("nthreads", tonumber(os.getenv("THREADS")))
  table.insert(threads, thread)
end

-- Globals, so that done() can read each thread's with thread:get.
sent, statuses, granted = 0, {}, {}

-- Seat maps: as light a client as wrk can be, so that the server, not the client, is measured.
-- No response() (it would copy every body into Lua): done() takes the statuses from wrk's own
-- count. The tutorial's map is one fixed request, which wrk builds once; the API's takes the
-- tokens in turn (as many as connections), each request built once beforehand.
local maps = scenario == "seat-map" or scenario == "seat-map-v1"
if scenario == "seat-map" then
  wrk.path = "/movies/bench-map/seats"
end
local v1 = {}
if scenario == "seat-map-v1" then
  for i, token in ipairs(tokens) do
    v1[i] = wrk.format("GET", "/api/v1/movies/bench-map/seats", { ["Authorization"] = "Bearer " .. token })
  end
end

function request()
  if scenario == "seat-map-v1" then
    sent = sent + 1
    return v1[(id + sent * nthreads) % #v1 + 1]
  end
  local movie, seat
  local n = id + sent * nthreads
  if scenario == "group-holds" then
    -- The n-th group of 4 adjacent seats of the rooms group-1 .. group-400: 12 per row of 50.
    -- Each user holds two groups (8 seats, the hold limit).
    local within = n % 312
    local row = string.char(65 + math.floor(within / 12))
    local first = (within % 12) * 4 + 1
    local seats = {}
    for k = 0, 3 do seats[#seats + 1] = '"' .. row .. (first + k) .. '"' end
    sent = sent + 1
    return wrk.format("POST", "/api/v1/movies/group-" .. (math.floor(n / 312) % 400 + 1) .. "/holds",
      { ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. tokens[math.floor(n / 2) % #tokens + 1] },
      '{"seat_ids":[' .. table.concat(seats, ",") .. ']}')
  end
  if scenario == "hot-seat" then
    movie, seat = "inception", "A1"
  else
    -- The n-th distinct seat of the rooms bench-1 .. bench-400, 26 rows of 50.
    local within = n % 1300
    movie = "bench-" .. (math.floor(n / 1300) % 400 + 1)
    seat = string.char(65 + math.floor(within / 50)) .. (within % 50 + 1)
  end
  sent = sent + 1
  return wrk.format("POST", "/movies/" .. movie .. "/seats/" .. seat .. "/hold",
    { ["Content-Type"] = "application/json" }, '{"user_id":"w' .. n .. '"}')
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 201 then
    granted[#granted + 1] = body
  end
end
if maps then response = nil end
if scenario == "seat-map" then request = nil end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("TOLD"), "w"))
  if maps then
    local failed = summary.errors.status
    out:write("status 2xx/3xx ", summary.requests - failed, "\n")
    if failed > 0 then out:write("status other ", failed, "\n") end
    out:close()
    return
  end
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      out:write("status ", status, " ", count, "\n")
    end
    for _, body in ipairs(thread:get("granted")) do
      out:write("held ", body, "\n")
    end
  end
  out:close()
end
