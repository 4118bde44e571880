import Foundation
import Testing

@testable import ProfileJobsGateway

/// The registry's exposition text, its cap on series, and the gateway's metric set as Prometheus reads it.
@Suite struct MetricsTests {
    @Test func rendersFamiliesSortedWithEscapedLabels() {
        let registry = MetricsRegistry()
        let requests = registry.counter(
            "demo_requests_total", help: "Requests answered.\nA \\ and a \"quote\".", labels: ["path", "code"])
        let temperature = registry.gauge("demo_temperature_celsius", help: "Temperature.")
        let latency = registry.histogram(
            "demo_latency_seconds", help: "Latency.", labels: ["op"], buckets: [0.1, 1])
        _ = registry.counter("demo_idle_total", help: "Never counted.")

        requests.increment(labels: ["/b", "200"])
        requests.increment(labels: ["/a", "500"], by: 2)
        requests.increment(labels: ["say \"hi\"\\\n", "200"])
        temperature.set(-3.5)
        latency.observe(0.0625, labels: ["read"])
        latency.observe(0.5, labels: ["read"])
        latency.observe(3, labels: ["read"])

        let expected = #"""
            # HELP demo_idle_total Never counted.
            # TYPE demo_idle_total counter
            demo_idle_total 0
            # HELP demo_latency_seconds Latency.
            # TYPE demo_latency_seconds histogram
            demo_latency_seconds_bucket{op="read",le="0.1"} 1
            demo_latency_seconds_bucket{op="read",le="1"} 2
            demo_latency_seconds_bucket{op="read",le="+Inf"} 3
            demo_latency_seconds_sum{op="read"} 3.5625
            demo_latency_seconds_count{op="read"} 3
            # HELP demo_requests_total Requests answered.\nA \\ and a "quote".
            # TYPE demo_requests_total counter
            demo_requests_total{path="/a",code="500"} 2
            demo_requests_total{path="/b",code="200"} 1
            demo_requests_total{path="say \"hi\"\\\n",code="200"} 1
            # HELP demo_temperature_celsius Temperature.
            # TYPE demo_temperature_celsius gauge
            demo_temperature_celsius -3.5

            """#
        #expect(String(decoding: registry.render(), as: UTF8.self) == expected)
    }

    @Test func histogramBucketsAreCumulativeAndInfIsTheCount() throws {
        let registry = MetricsRegistry()
        let sizes = registry.histogram("demo_size_bytes", help: "Sizes.", buckets: [1, 2, 3])

        // 1 sits on a bound and belongs to its bucket; -1 is below every bound; 10 is above all of them; NaN is dropped.
        for value in [0.5, 1, 1.5, 2.5, 2.5, 10, -1, .nan] {
            sizes.observe(value)
        }

        let exposition = try Exposition(registry.render())
        #expect(exposition.value("demo_size_bytes_bucket", ["le": "1"]) == 3)
        #expect(exposition.value("demo_size_bytes_bucket", ["le": "2"]) == 4)
        #expect(exposition.value("demo_size_bytes_bucket", ["le": "3"]) == 6)
        #expect(exposition.value("demo_size_bytes_bucket", ["le": "+Inf"]) == 7)
        #expect(exposition.value("demo_size_bytes_count") == 7)
        #expect(exposition.value("demo_size_bytes_sum") == 17)
        #expect(sizes.snapshot()?.bucketCounts == [3, 1, 2])
    }

    @Test func extraLabelCombinationsFoldIntoOther() throws {
        let registry = MetricsRegistry()
        let hits = registry.counter("demo_hits_total", help: "Hits.", labels: ["route", "method"], seriesLimit: 3)

        for route in ["/a", "/b", "/c"] {
            hits.increment(labels: [route, "GET"])
        }
        for junk in 0..<5 {
            hits.increment(labels: ["/junk/\(junk)", "GET"])
        }
        // A combination known before the cap was reached keeps its own series.
        hits.increment(labels: ["/a", "GET"])

        #expect(hits.value(labels: ["/a", "GET"]) == 2)
        #expect(hits.value(labels: ["/junk/0", "GET"]) == nil)
        #expect(hits.value(labels: ["other", "other"]) == 5)
        let exposition = try Exposition(registry.render())
        #expect(exposition.samples.count == 4)
        #expect(exposition.value("demo_hits_total", ["route": "other", "method": "other"]) == 5)
    }

    @Test func gatewayRoutesAreCappedAtTheDefaultLimit() throws {
        let metrics = GatewayMetrics()
        let junk = MetricsRegistry.defaultSeriesLimit + 200

        for index in 0..<junk {
            metrics.requestFinished(route: "/junk/\(index)", method: "GET", status: 404, cloud: "aws", seconds: 0.01)
        }

        let exposition = try Exposition(metrics.render())
        let series = exposition.samples.keys.filter { $0.hasPrefix("profile_jobs_gateway_http_requests_total{") }
        #expect(series.count == MetricsRegistry.defaultSeriesLimit + 1)
        let requests = exposition.gateway(
            "http_requests_total", ["route": "other", "method": "other", "status_class": "other", "cloud": "other"])
        #expect(requests == 200)
        let durations = exposition.gateway(
            "http_request_duration_seconds_count", ["route": "other", "method": "other", "cloud": "other"])
        #expect(durations == 200)
    }

    @Test func concurrentRecordingKeepsExactTotals() async throws {
        let metrics = GatewayMetrics()
        let registry = MetricsRegistry()
        let counter = registry.counter("demo_events_total", help: "Events.", labels: ["worker"])
        let histogram = registry.histogram("demo_wait_seconds", help: "Waits.", buckets: [1])
        let threads = 16
        let rounds = 2000
        let route = "/v1/system/jobs/{id}"

        // Real threads, so recordings overlap instead of taking turns on the cooperative pool.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for thread in 0..<threads {
                group.addTask {
                    try await offPool {
                        for round in 0..<rounds {
                            counter.increment(labels: ["\(thread % 4)"])
                            histogram.observe(0.5)
                            metrics.requestStarted()
                            metrics.sandboxCacheHit()
                            let method = round.isMultiple(of: 2) ? "GET" : "DELETE"
                            metrics.requestFinished(
                                route: route, method: method, status: 200, cloud: "azure", seconds: 0)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }

        let total = Double(threads * rounds)
        for worker in 0..<4 {
            #expect(counter.value(labels: ["\(worker)"]) == total / 4)
        }
        #expect(histogram.snapshot()?.count == UInt64(total))
        #expect(histogram.snapshot()?.sum == total / 2)

        let exposition = try Exposition(metrics.render())
        #expect(exposition.gateway("http_requests_in_flight") == 0)
        #expect(exposition.gateway("sandbox_cache_hits_total") == total)
        for method in ["GET", "DELETE"] {
            let requests = exposition.gateway(
                "http_requests_total", ["route": route, "method": method, "status_class": "2xx", "cloud": "azure"])
            #expect(requests == total / 2)
            let fastest = exposition.gateway(
                "http_request_duration_seconds_bucket",
                ["route": route, "method": method, "cloud": "azure", "le": "0.0005"])
            #expect(fastest == total / 2)
        }
    }

    @Test func gatewayNormalizesLabelsAndShowsZeroCountersFromTheStart() throws {
        let fresh = try Exposition(GatewayMetrics().render())
        #expect(fresh.gateway("sandbox_cache_hits_total") == 0)
        #expect(fresh.gateway("sandbox_cache_misses_total") == 0)
        #expect(fresh.gateway("http_requests_in_flight") == 0)
        #expect(fresh.gateway("build_info", ["version": "0.1.0"]) == 1)

        let metrics = GatewayMetrics()
        let jobs = "/v1/system/jobs"
        metrics.requestStarted()
        metrics.requestStarted()
        metrics.requestFinished(route: jobs, method: "PATCH", status: 404, cloud: "gcp", seconds: 0.003)
        metrics.requestFinished(route: jobs, method: "get", status: 999, cloud: "", seconds: 0.003)
        metrics.upstreamCall(cloud: "aws", seconds: 0.2)
        metrics.upstreamError(cloud: "aws", kind: "exploded")
        metrics.upstreamError(cloud: "aws", kind: "timeout")
        metrics.sandboxCacheMiss()
        metrics.auditWrite(sink: "file", succeeded: true)
        metrics.auditWrite(sink: "kafka", succeeded: false)

        let exposition = try Exposition(metrics.render())
        #expect(exposition.gateway("http_requests_in_flight") == 0)
        for statusClass in ["4xx", "other"] {
            let requests = exposition.gateway(
                "http_requests_total", ["route": jobs, "method": "other", "status_class": statusClass, "cloud": ""])
            #expect(requests == 1)
        }
        let durations = exposition.gateway(
            "http_request_duration_seconds_count", ["route": jobs, "method": "other", "cloud": ""])
        #expect(durations == 2)
        #expect(exposition.gateway("upstream_request_duration_seconds_bucket", ["cloud": "aws", "le": "0.1"]) == 0)
        #expect(exposition.gateway("upstream_request_duration_seconds_bucket", ["cloud": "aws", "le": "0.25"]) == 1)
        #expect(exposition.gateway("upstream_errors_total", ["cloud": "aws", "kind": "other"]) == 1)
        #expect(exposition.gateway("upstream_errors_total", ["cloud": "aws", "kind": "timeout"]) == 1)
        #expect(exposition.gateway("sandbox_cache_misses_total") == 1)
        #expect(exposition.gateway("audit_records_written_total", ["sink": "file"]) == 1)
        #expect(exposition.gateway("audit_write_failures_total", ["sink": "other"]) == 1)
        #expect(GatewayMetrics.contentType == "text/plain; version=0.0.4; charset=utf-8")
    }

    @Test func promtoolAcceptsTheGatewaysExposition() async throws {
        let metrics = GatewayMetrics()
        metrics.requestStarted()
        metrics.requestStarted()
        metrics.requestFinished(
            route: "/v1/system/jobs/{id}", method: "GET", status: 200, cloud: "azure", seconds: 0.004)
        metrics.requestFinished(route: "/v1/system/jobs", method: "POST", status: 502, cloud: "aws", seconds: 31)
        metrics.requestFinished(
            route: "odd \"route\" \\ with\nnewline and ünïcødé", method: "BREW", status: 418, cloud: "", seconds: 0)
        metrics.upstreamCall(cloud: "azure", seconds: 0.0001)
        metrics.upstreamCall(cloud: "aws", seconds: 12)
        for kind in ["timeout", "unreachable", "tls", "status_5xx", "status_4xx", "malformed", "other", "weird\"kind"] {
            metrics.upstreamError(cloud: "aws", kind: kind)
        }
        metrics.sandboxCacheHit()
        metrics.sandboxCacheMiss()
        for sink in ["file", "syslog", "stdout"] {
            metrics.auditWrite(sink: sink, succeeded: true)
            metrics.auditWrite(sink: sink, succeeded: false)
        }

        let check = try await promtoolCheckMetrics(metrics.render())
        #expect(check.status == 0)
        #expect(check.report == "", "promtool found problems")
    }

    /// The check above means something only if promtool does fail on a text that breaks the conventions.
    @Test(arguments: [
        "# HELP demo_requests Requests.\n# TYPE demo_requests counter\ndemo_requests 1\n",
        "# HELP demo_total Bad.\n# TYPE demo_total counter\ndemo_total{route=\"unterminated} 1\n",
    ])
    func promtoolRejectsABrokenExposition(_ text: String) async throws {
        let check = try await promtoolCheckMetrics(Array(text.utf8))
        #expect(check.status != 0)
        #expect(check.report != "")
    }

    /// Runs `promtool check metrics` on `exposition`; its status and whatever it printed on stdout and stderr.
    private func promtoolCheckMetrics(_ exposition: [UInt8]) async throws -> (status: Int32, report: String) {
        let child = try ChildProcess("promtool", ["check", "metrics"], stdin: .pipe, stdout: .pipe, stderr: .pipe)
        defer { child.terminate() }
        let input = try #require(child.input)
        let output = try #require(child.output)
        let errors = try #require(child.errors)

        // Both streams drain while stdin is written, so a full pipe cannot stall either side.
        async let printed = offPool { output.readAll() }
        async let complained = offPool { errors.readAll() }
        try await offPool {
            input.write(exposition)
            input.close()
        }

        let report = String(decoding: try await printed + complained, as: UTF8.self)
        return (try await child.exit(within: 30), report)
    }
}

/// Samples of an exposition keyed by series (`name{labels}` as written), for looking values up in tests.
private struct Exposition {
    struct Malformed: Error {
        var line: String
    }

    var samples: [String: Double] = [:]

    init(_ bytes: [UInt8]) throws {
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            // The value never holds a space; a label value may.
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw Malformed(line: String(line))
            }
            samples[String(line[..<space])] = value
        }
    }

    /// The sample of `name` with exactly `labels`, in the order written; the values here need no escaping.
    func value(_ name: String, _ labels: KeyValuePairs<String, String> = [:]) -> Double? {
        let pairs = labels.map { #"\#($0.key)="\#($0.value)""# }
        return samples[labels.isEmpty ? name : name + "{" + pairs.joined(separator: ",") + "}"]
    }

    /// A sample of the gateway's own metric set, named without its prefix.
    func gateway(_ name: String, _ labels: KeyValuePairs<String, String> = [:]) -> Double? {
        value("profile_jobs_gateway_" + name, labels)
    }
}
