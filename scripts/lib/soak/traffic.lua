-- Mixed traffic for the soak run: lists, lookups, creates and removals on both demo organizations, on the
-- canonical and the Azure-dialect surfaces. Every answer is checked for being well formed: JSON for a success,
-- an RFC 9457 problem for an error, nothing for a 204.

local orgs = {"azure-demo@AdobeOrg", "aws-demo@AdobeOrg"}
local threads = {}

function setup(thread)
    thread:set("number", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    sent = 0
    statuses = {}
    malformed = 0
    examples = {}
end

local function headers(org)
    return {
        ["Authorization"] = "Bearer soak-service-token",
        ["x-api-key"] = "soak-client",
        ["x-gw-ims-org-id"] = org,
        ["Content-Type"] = "application/json",
    }
end

request = function()
    sent = sent + 1
    local org = orgs[sent % 2 + 1]
    local kind = sent % 10
    if kind < 3 then
        return wrk.format("GET", "/v1/system/jobs?limit=5", headers(org))
    elseif kind < 5 then
        return wrk.format("GET", "/v1/system/jobs/soak-missing-" .. sent, headers(org))
    elseif kind < 7 then
        local body = string.format('{"datasetId": "soak-%d-%d"}', number, sent)
        return wrk.format("POST", "/v1/system/jobs", headers(org), body)
    elseif kind == 7 then
        return wrk.format("DELETE", "/v1/system/jobs/soak-missing-" .. sent, headers(org))
    else
        return wrk.format("GET", "/data/core/ups/system/jobs?limit=5", headers(org))
    end
end

local function header(all, name)
    for key, value in pairs(all) do
        if string.lower(key) == name then return value end
    end
    return nil
end

response = function(status, response_headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    local type = header(response_headers, "content-type") or ""
    local ok
    if status == 204 then
        ok = body == ""
    elseif status < 300 then
        ok = string.find(type, "application/json", 1, true) == 1 and string.sub(body, 1, 1) == "{"
    else
        ok = string.find(type, "application/problem+json", 1, true) == 1
            and string.find(body, '"type":"/problems/', 1, true) ~= nil
            and string.find(body, '"detail":"', 1, true) ~= nil
    end
    if not ok then
        malformed = malformed + 1
        if #examples < 3 then
            table.insert(examples, status .. " " .. type .. " " .. string.sub(body, 1, 200))
        end
    end
end

done = function(summary, latency, requests)
    local merged, bad, seen = {}, 0, {}
    for _, thread in ipairs(threads) do
        for status, count in pairs(thread:get("statuses")) do
            merged[tostring(status)] = (merged[tostring(status)] or 0) + count
        end
        bad = bad + thread:get("malformed")
        for _, example in ipairs(thread:get("examples")) do table.insert(seen, example) end
    end
    local parts = {}
    for status, count in pairs(merged) do table.insert(parts, string.format('"%s": %d', status, count)) end
    local quoted = {}
    for _, example in ipairs(seen) do
        table.insert(quoted, '"' .. string.gsub(string.gsub(example, '\\', '\\\\'), '"', '\\"') .. '"')
    end
    local errors = summary.errors
    io.write(string.format(
        'SOAK {"requests": %d, "seconds": %.3f, "statuses": {%s}, "malformed": %d, "examples": [%s], '
            .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
            .. '"latency": {"p50": %.6f, "p99": %.6f, "max": %.6f}}\n',
        summary.requests, summary.duration / 1e6, table.concat(parts, ", "), bad, table.concat(quoted, ", "),
        errors.connect, errors.read, errors.write, errors.timeout,
        latency:percentile(50) / 1e6, latency:percentile(99) / 1e6, latency.max / 1e6))
end
