-- wrk script: POST identify bodies, cycling through an NDJSON workload (one JSON object per line).
--
--   WORKLOAD=data/generated/workload.ndjson wrk -t2 -c64 -d10s -s benchmarks/wrk/identify.lua \
--       http://127.0.0.1:8080/identify
--
-- The file is read relative to the current directory. Each wrk thread runs this script in its own Lua state,
-- so each reads the file itself and starts at a different offset: otherwise every thread would send the same
-- line at the same moment, which would serialize on that one profile instead of spreading over the workload.

local path = os.getenv("WORKLOAD") or "data/generated/workload.ndjson"

local threads_started = 0

function setup(thread)
    thread:set("thread_index", threads_started)
    threads_started = threads_started + 1
end

local requests = {}
local next_index = 1

function init(args)
    local file, err = io.open(path, "r")
    if not file then
        error("identify.lua: cannot open workload " .. path .. ": " .. tostring(err))
    end
    for line in file:lines() do
        -- Trim, so a CRLF file or trailing spaces do not change the bodies; blank lines are skipped.
        line = line:gsub("^%s+", ""):gsub("%s+$", "")
        if line ~= "" then
            -- Formatting the whole request once here keeps the per-request hook to a table lookup.
            requests[#requests + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
        end
    end
    file:close()
    if #requests == 0 then
        error("identify.lua: workload " .. path .. " has no lines")
    end
    -- thread_index is set by setup() in the main state; stagger threads through the file by it.
    local index = tonumber(thread_index) or 0
    next_index = (index * 7919) % #requests + 1
end

function request()
    local r = requests[next_index]
    next_index = next_index % #requests + 1
    return r
end

-- No response() hook: wrk then skips handing each body to Lua, and it counts non-2xx answers by itself
-- ("Non-2xx or 3xx responses" in its report).
