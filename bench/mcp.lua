-- wrk script: MCP tools/call requests rotating over the session ids in $SESSIONS (one per line),
-- or initialize requests when $MODE is "initialize". done() prints one JSON line of results.
local ids = {}
local mode = os.getenv("MODE") or "call"
if mode == "call" then
  for line in io.lines(os.getenv("SESSIONS")) do ids[#ids + 1] = line end
end
local i = 0
-- $AUTH: an Authorization value sent with every request (a bound session's identity).
local auth = os.getenv("AUTH")
local call = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
local init = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",' ..
             '"capabilities":{},"clientInfo":{"name":"wrk","version":"1"}}}'

request = function()
  if mode == "initialize" then
    return wrk.format("POST", "/mcp", {["Content-Type"] = "application/json",
      ["Accept"] = "application/json, text/event-stream"}, init)
  end
  i = i % #ids + 1
  local headers = {["Content-Type"] = "application/json", ["Accept"] = "application/json, text/event-stream",
    ["Mcp-Session-Id"] = ids[i], ["MCP-Protocol-Version"] = "2025-11-25"}
  if auth then headers["Authorization"] = auth end
  return wrk.format("POST", "/mcp", headers, call)
end

done = function(summary, latency, requests)
  -- errors.status counts answers that were not 2xx/3xx.
  io.write(string.format('RESULT {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"errors":%d,"non2xx":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
