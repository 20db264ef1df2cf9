-- wrk script for bench/era.py: MCP 2026-07-28 requests (no session; Mcp-Method and Mcp-Name
-- headers, as SEP-2243 has clients send them).
--   MODE=sessionless  a tools/call, nothing else
--   MODE=task         a tools/call whose answer creates a task, then one tasks/get of that
--                     task (Mcp-Name: its id) as soon as the answer is in; the answers tell
--                     whether the tasks/get reached the pod that holds the task
-- done() prints one JSON line: wrk's figures, plus tasks created, tasks/get answered by the
-- task's pod (found) and by another pod ("Task not found": misrouted).
local mode = os.getenv("MODE") or "sessionless"
-- A 2026 client that uses tasks declares the extension in every request's _meta.
local meta = '"_meta":{"io.modelcontextprotocol/clientCapabilities":{"extensions":' ..
             '{"io.modelcontextprotocol/tasks":{}}}}'
local function headers(method, name)
  return {["Content-Type"] = "application/json", ["Accept"] = "application/json, text/event-stream",
          ["MCP-Protocol-Version"] = "2026-07-28", ["Mcp-Method"] = method, ["Mcp-Name"] = name}
end
local call_body = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{},' ..
                  meta .. '}}'
local slow_body = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","arguments":{},' ..
                  meta .. '}}'
local call, slow
-- Built once wrk knows the host (the Host field), at the thread's start.
init = function()
  call = wrk.format("POST", "/mcp", headers("tools/call", "whoami"), call_body)
  slow = wrk.format("POST", "/mcp", headers("tools/call", "slow"), slow_body)
end

-- Tasks whose creating answer came, not yet polled (shared by the thread's connections).
local pending, head, tail = {}, 1, 0
created, found, misrouted = 0, 0, 0

request = function()
  if mode ~= "task" then return call end
  if head <= tail then
    local id = pending[head]
    pending[head] = nil
    head = head + 1
    return wrk.format("POST", "/mcp", headers("tasks/get", id),
      '{"jsonrpc":"2.0","id":8,"method":"tasks/get","params":{"taskId":"' .. id .. '",' .. meta .. '}}')
  end
  return slow
end

response = function(status, hdrs, body)
  if mode ~= "task" or status ~= 200 then return end
  local id = body:match('"resultType":"task","taskId":"([^"]+)"')
  if id then
    created = created + 1
    tail = tail + 1
    pending[tail] = id
  elseif body:find('"status":"completed"', 1, true) then
    found = found + 1
  elseif body:find('-32602', 1, true) then
    misrouted = misrouted + 1
  end
end

local threads = {}
setup = function(thread) threads[#threads + 1] = thread end

done = function(summary, latency, requests)
  local c, f, m = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    f = f + t:get("found")
    m = m + t:get("misrouted")
  end
  io.write(string.format('RESULT {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"errors":%d,"non2xx":%d,"created":%d,"found":%d,"misrouted":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, c, f, m))
end
