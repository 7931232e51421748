-- One scenario of the load benchmark, driven by wrk (benches/loadgen/wrk.rs runs it).
-- Environment: SCENARIO (holds, hot-seat or seat-map), THREADS (wrk's -t), TOLD (a file that
-- gets, when the run is done, a line per status seen and a line per hold granted).
local scenario = os.getenv("SCENARIO")
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  thread:set("nthreads", tonumber(os.getenv("THREADS")))
  table.insert(threads, thread)
end

-- Globals, so that done() can read each thread's with thread:get.
sent, statuses, granted = 0, {}, {}

function request()
  if scenario == "seat-map" then
    return wrk.format("GET", "/movies/bench-map/seats")
  end
  local movie, seat
  local n = id + sent * nthreads
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

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("TOLD"), "w"))
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
