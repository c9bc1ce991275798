-- SPDX-License-Identifier: BSD-2-Clause
-- wrk script for the Loupe reference workload (used by load.sh and demo-load.sh).
--
--   wrk ... -s mix.lua URL -- mix  [IDS]    realistic read mix (IDS: comma-separated memory ids)
--   wrk ... -s mix.lua URL -- path PATH     one path only (e.g. /healthz)
--
-- Mix (weights): 40 GET /memories/ID, 25 GET /search?q=WORD, 25 GET /graph/ID/neighbors,
-- 10 GET /healthz. Each thread pre-builds a deterministic cycle of 1000 requests.
-- Env LOUPE_WRK_DELAY_MS=N (N > 0) waits N ms before each request on a connection (low-rate
-- demo load). At the end one machine-readable line is printed:
--   loupe-wrk: {"requests":N,"errors":N,"errors_status":N,"duration_s":S,"status":{"200":N,...}}
-- (errors = socket connect/read/write/timeout errors; errors_status = responses >= 400)
-- Env LOUPE_WRK_SECONDS=PREFIX: each thread also appends "UNIX_SECOND RESPONSES" to PREFIX.THREAD for every wall-clock
-- second as it ends (flushed then, so a wrk that is killed leaves every finished second; bench-cost.sh's windows).

local WORDS = { "graph", "memory", "postgres", "latency", "socket", "request", "profile",
                "kernel", "python", "websocket", "query", "index", "cache", "trace",
                "flame", "checkpoint", "histogram", "Worker", "QUEUE", "zebra-not-found" }

local threads = {}
local next_tid = 0

function setup(thread)
   next_tid = next_tid + 1
   thread:set("tid", next_tid)
   table.insert(threads, thread)
end

local cycle = {}
local pos = 0
status = {}     -- global: read back by done() through thread:get

local function split_ids(s)
   local ids = {}
   for id in string.gmatch(s or "", "%d+") do
      ids[#ids + 1] = id
   end
   if #ids == 0 then
      for i = 1, 200 do ids[i] = tostring(i) end
   end
   return ids
end

function init(args)
   local mode = args[1] or "mix"
   math.randomseed(1000 + (tid or 1) * 7919)
   if mode == "path" then
      local path = args[2] or "/healthz"
      cycle[1] = wrk.format("GET", path)
      return
   elseif mode ~= "mix" then
      error("mix.lua: unknown mode '" .. tostring(mode) .. "' (mix|path)")
   end
   local ids = split_ids(args[2])
   for i = 1, 1000 do
      local r = math.random(100)
      local path
      if r <= 40 then
         path = "/memories/" .. ids[math.random(#ids)]
      elseif r <= 65 then
         path = "/search?q=" .. WORDS[math.random(#WORDS)]
      elseif r <= 90 then
         path = "/graph/" .. ids[math.random(#ids)] .. "/neighbors"
      else
         path = "/healthz"
      end
      cycle[i] = wrk.format("GET", path)
   end
end

function request()
   pos = pos % #cycle + 1
   return cycle[pos]
end

local sec_prefix = os.getenv("LOUPE_WRK_SECONDS")
local sec_file, sec_now, sec_n = nil, 0, 0

function response(code, headers, body)
   local k = tostring(code)
   status[k] = (status[k] or 0) + 1
   if sec_prefix then
      local now = os.time()
      if now ~= sec_now then
         if sec_n > 0 then
            sec_file = sec_file or assert(io.open(sec_prefix .. "." .. tostring(tid or 1), "a"))
            sec_file:write(string.format("%d %d\n", sec_now, sec_n))
            sec_file:flush()
         end
         sec_now, sec_n = now, 0
      end
      sec_n = sec_n + 1
   end
end

local delay_ms = tonumber(os.getenv("LOUPE_WRK_DELAY_MS") or "0") or 0
if delay_ms > 0 then
   function delay()
      return delay_ms
   end
end

function done(summary, latency, requests)
   local total = {}
   for _, t in ipairs(threads) do
      local s = t:get("status") or {}
      for k, v in pairs(s) do
         total[k] = (total[k] or 0) + v
      end
   end
   local parts = {}
   for k, v in pairs(total) do
      parts[#parts + 1] = string.format('"%s":%d', k, v)
   end
   table.sort(parts)
   local e = summary.errors
   local errors = e.connect + e.read + e.write + e.timeout
   io.write(string.format('loupe-wrk: {"requests":%d,"errors":%d,"errors_status":%d,' ..
                          '"duration_s":%.3f,"status":{%s}}\n',
                          summary.requests, errors, e.status, summary.duration / 1e6,
                          table.concat(parts, ",")))
end
