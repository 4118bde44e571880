import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// Request ids, trace context, the access log, metrics and health, as a caller and an operator see them.
@Suite struct ObservabilityTests {
    @Test func aWellFormedRequestIdIsKeptReturnedAndSentUpstream() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)

            let kept = try await caller.list(headers: [("x-request-id", "tool-run-42.7")])
            #expect(kept.header("x-request-id") == "tool-run-42.7")
            #expect(demo.azure.receivedRequests.last?.headers["x-request-id"] == "tool-run-42.7")

            let replaced = try await caller.list(headers: [("x-request-id", "has spaces and {braces}")])
            let made = try #require(replaced.header("x-request-id"))
            #expect(made != "has spaces and {braces}" && !made.isEmpty)
            #expect(demo.azure.receivedRequests.last?.headers["x-request-id"] == made)
        }
    }

    @Test func traceContextIsPropagatedOrStarted() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

            _ = try await caller.list(headers: [("traceparent", parent), ("tracestate", "vendor=abc")])
            var upstream = try #require(jobCalls(demo.aws.receivedRequests).last)
            #expect(upstream.headers["traceparent"] == parent)
            #expect(upstream.headers["tracestate"] == "vendor=abc")

            // A malformed traceparent is replaced by a new trace, and its tracestate is dropped with it.
            _ = try await caller.list(headers: [("traceparent", "00-zz-00-01"), ("tracestate", "vendor=abc")])
            upstream = try #require(jobCalls(demo.aws.receivedRequests).last)
            let started = try #require(upstream.headers["traceparent"])
            #expect(started.wholeMatch(of: /00-[0-9a-f]{32}-[0-9a-f]{16}-01/) != nil, "\(started)")
            #expect(upstream.headers["tracestate"] == nil)

            _ = try await caller.list()
            upstream = try #require(jobCalls(demo.aws.receivedRequests).last)
            let fresh = try #require(upstream.headers["traceparent"])
            #expect(fresh.wholeMatch(of: /00-[0-9a-f]{32}-[0-9a-f]{16}-01/) != nil)
            #expect(fresh != started)
        }
    }

    @Test func oneAccessLogLinePerRequestWithItsRouteAndUpstreamTime() async throws {
        let capture = LogCapture()
        try await withDemo(logger: capture.logger) { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let created = try await caller.createDatasetDelete("5c802d3cd83fc114b741c4b5")
            let id = try #require(created.string("id"))
            let fetched = try await caller.get(id)
            #expect(fetched.status == 200)

            let lines = capture.entries.filter { $0.string("message") == "request" }
            let line = try #require(lines.first { $0.string("request.id") == fetched.header("x-request-id") })
            #expect(line.string("http.method") == "GET")
            #expect(line.string("http.route") == "/v1/system/jobs/{id}")
            #expect(line["http.status"] as? Int == 200)
            #expect(line.string("cloud") == "aws")
            #expect(line.string("org") == DemoEnvironment.awsOrg)
            #expect((line["upstream.seconds"] as? Double ?? 0) > 0)
            #expect((line["duration.seconds"] as? Double ?? 0) >= (line["upstream.seconds"] as? Double ?? 0))
            #expect((line["bytes.out"] as? Int ?? 0) == fetched.body.count)
            #expect(line.string("trace.id")?.count == 32)

            let post = try #require(lines.first { $0.string("http.method") == "POST" })
            #expect((post["bytes.in"] as? Int ?? 0) == #"{"datasetId": "5c802d3cd83fc114b741c4b5"}"#.utf8.count)
            #expect(lines.allSatisfy { $0.string("http.route") != nil && !$0.string("http.route")!.contains(id) })
        }
    }

    /// A client that leaves before its answer is still logged and counted, as 499 when the server learns of it
    /// before answering, and is no longer in flight.
    @Test func aRequestWhoseClientLeftIsLoggedAndLeavesTheInFlightGauge() async throws {
        let capture = LogCapture()
        try await withDemo(logger: capture.logger) { demo in
            demo.azure.faults.inject(.slow(seconds: 0.5), times: 10, method: "GET")
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            for _ in 0..<10 {
                try KeepAliveConnection(port: demo.gatewayPort).sendAndHangUp(
                    "GET", "/v1/system/jobs", headers: caller.headers())
            }

            let logged = { @Sendable in
                capture.entries.filter {
                    $0.string("message") == "request" && $0.string("http.route") == "/v1/system/jobs"
                }
            }
            try await poll(for: 30, "ten access-log lines") { logged().count == 10 }
            let statuses = logged().compactMap { $0["http.status"] as? Int }
            #expect(statuses.allSatisfy { $0 == 200 || $0 == 499 }, "\(statuses)")
            #expect(statuses.contains(499), "a client gone before the answer: \(statuses)")

            let metrics = try await RawHTTPClient(port: demo.gatewayPort).sendOffPool("GET", "/metrics").text
            #expect(metrics.contains("profile_jobs_gateway_http_requests_in_flight 1\n"), "only /metrics itself")
            let counted = metrics.split(separator: "\n").filter {
                $0.hasPrefix(#"profile_jobs_gateway_http_requests_total{route="/v1/system/jobs",method="GET""#)
            }.compactMap { Int($0.split(separator: " ").last ?? "") }
            #expect(counted.reduce(0, +) == 10, "\(counted)")
        }
    }

    @Test func healthAndReadiness() async throws {
        try await withDemo { demo in
            let client = RawHTTPClient(port: demo.gatewayPort)
            let health = try await client.sendOffPool("GET", "/healthz")
            #expect(health.status == 200)
            #expect(try health.jsonObject().string("status") == "ok")

            let ready = try await client.sendOffPool("GET", "/readyz")
            #expect(ready.status == 200, "\(ready.text)")
            #expect(try ready.jsonObject().string("status") == "ready")

            try await client.sendOffPool("POST", "/healthz").expectProblem(
                status: 405, type: "/problems/method-not-allowed")

            // Told to stop, the instance turns new traffic away at /readyz while it still serves.
            demo.gateway.beginShutdown()
            try await client.sendOffPool("GET", "/readyz").expectProblem(status: 503, type: "/problems/not-ready")
            #expect(try await client.sendOffPool("GET", "/healthz").status == 200)
        }
    }

    @Test func metricsCountTrafficAndPassPromtool() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            _ = try await caller.createDatasetDelete("5c802d3cd83fc114b741c4b5")
            _ = try await caller.list()
            _ = try await caller.remove("job-1")
            _ = try await GatewayCaller(demo, orgId: DemoEnvironment.azureOrg).get("no-such-job")
            _ = try await RawHTTPClient(port: demo.gatewayPort).sendOffPool("GET", "/nowhere/\(UUID().uuidString)")

            let scrape = try await RawHTTPClient(port: demo.gatewayPort).sendOffPool("GET", "/metrics")
            #expect(scrape.status == 200)
            #expect(scrape.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = scrape.text

            func value(_ series: String) -> Double? {
                text.split(separator: "\n").first { $0.hasPrefix(series + " ") }
                    .flatMap { Double($0.split(separator: " ").last ?? "") }
            }
            #expect(
                value(
                    #"profile_jobs_gateway_http_requests_total{route="/v1/system/jobs",method="POST",status_class="2xx",cloud="aws"}"#
                ) == 1, "\(text)")
            #expect(
                value(
                    #"profile_jobs_gateway_http_requests_total{route="/v1/system/jobs/{id}",method="DELETE",status_class="5xx",cloud="aws"}"#
                ) == 1)
            #expect(
                value(
                    #"profile_jobs_gateway_http_requests_total{route="/v1/system/jobs/{id}",method="GET",status_class="4xx",cloud="azure"}"#
                ) == 1)
            #expect(value(#"profile_jobs_gateway_upstream_errors_total{cloud="azure",kind="status_4xx"}"#) == 1)
            #expect(value(#"profile_jobs_gateway_audit_records_written_total{sink="file"}"#) == 3)
            #expect(value("profile_jobs_gateway_sandbox_cache_misses_total") == 1)
            #expect((value("profile_jobs_gateway_sandbox_cache_hits_total") ?? 0) >= 1)
            // The scrape itself is in flight while it renders.
            #expect(value("profile_jobs_gateway_http_requests_in_flight") == 1)
            #expect(!text.contains("/nowhere/"))

            let promtool = try ChildProcess(
                "promtool", ["check", "metrics"], stdin: .pipe, stdout: .pipe, stderr: .pipe)
            promtool.input?.write(scrape.body)
            promtool.input?.close()
            let said = try await offPool { (promtool.output?.readAll() ?? []) + (promtool.errors?.readAll() ?? []) }
            #expect(try await promtool.exit(within: 60) == 0, "\(String(decoding: said, as: UTF8.self))")
            #expect(said.isEmpty, "\(String(decoding: said, as: UTF8.self))")
        }
    }

    /// A recognizable token and secret, sent every way a careless client might, must come out nowhere.
    @Test func plantedSecretsAppearInNoOutput() async throws {
        let capture = LogCapture()
        let token = "PLANTEDTOKEN\(UUID().uuidString.replacingOccurrences(of: "-", with: ""))"
        let secret = "PLANTEDSECRET\(UUID().uuidString.replacingOccurrences(of: "-", with: ""))"
        var outputs: [String] = []

        try await withDemo(logger: capture.logger) { demo in
            for orgId in [DemoEnvironment.azureOrg, DemoEnvironment.awsOrg] {
                var caller = GatewayCaller(demo, orgId: orgId)
                caller.token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.\(token)"
                let secretHeaders = [("x-client-secret", secret), ("Cookie", "session=\(secret)")]

                let created = try await caller.create(
                    #"{"datasetId": "5c802d3cd83fc114b741c4b5"}"#, headers: secretHeaders)
                let id = try created.jsonObject().string("id") ?? "none"
                _ = try await caller.create(#"{"datasetId": "d", "clientSecret": "\#(secret)"}"#)
                _ = try await caller.list("?client_secret=\(secret)", headers: secretHeaders)
                _ = try await caller.get(id, headers: secretHeaders)
                _ = try await caller.remove(id, headers: secretHeaders)
                _ = try await caller.call("DELETE", "/v1/system/jobs/\(id)?secret=\(secret)")
                _ = try await caller.call("GET", "/v1/system/jobs/\(id)", omitting: ["x-api-key"])
            }
            var unknownOrg = GatewayCaller(port: demo.gatewayPort, orgId: "other@AdobeOrg")
            unknownOrg.token = token
            _ = try await unknownOrg.create(#"{"datasetId": "d"}"#)

            let client = RawHTTPClient(port: demo.gatewayPort)
            outputs.append(try await client.sendOffPool("GET", "/metrics").text)
            outputs.append(try await client.sendOffPool("GET", "/v1/audit?limit=1000").text)
            outputs.append(try String(contentsOfFile: demo.configuration.audit.filePath, encoding: .utf8))
        }
        outputs.append(capture.text)

        #expect(outputs.allSatisfy { !$0.isEmpty })
        for output in outputs {
            #expect(!output.contains(token))
            #expect(!output.contains(secret))
        }
        // The search is not vacuous: the log and the trail did see these requests.
        #expect(capture.entries.filter { $0.string("message") == "request" }.count >= 15)
        #expect(outputs[2].contains("alice") == false && outputs[2].contains(#""subject":"bob""#))
    }
}
