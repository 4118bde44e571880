-- Prints one machine-readable line at the end of a wrk run: requests, rate, p50 and p99 in microseconds, and errors
-- (answers of 400 and above plus connect, read, write and time-out errors).
done = function(summary, latency, requests)
    local errors = summary.errors
    local failed = errors.status + errors.connect + errors.read + errors.write + errors.timeout
    io.write(string.format("RESULT requests=%d rps=%.1f p50=%d p99=%d errors=%d status=%d socket=%d\n",
        summary.requests, summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99), failed, errors.status,
        errors.connect + errors.read + errors.write + errors.timeout))
end
