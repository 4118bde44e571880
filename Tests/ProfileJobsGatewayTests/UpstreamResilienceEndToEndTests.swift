import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// Retries, Retry-After, the circuit breaker and the in-flight cap through the running gateway, against an upstream
/// the test scripts. Counts and statuses only: nothing here measures how long anything took.
@Suite(.timeLimit(.minutes(3)))
struct UpstreamResilienceEndToEndTests {
    static let azure = UpstreamErrorMappingTests.scriptedAzure
    static let aws = UpstreamErrorMappingTests.scriptedAWS

    static func withScripted<T>(
        _ upstream: ScriptedUpstream,
        timeoutSeconds: Double? = nil,
        configure: @escaping (inout UpstreamPolicy) -> Void = { _ in },
        _ body: (DemoEnvironment) async throws -> T
    ) async throws -> T {
        try await UpstreamErrorMappingTests.withScripted(
            upstream, timeoutSeconds: timeoutSeconds, configure: { configure(&$0.upstreamPolicy) }, body)
    }

    static func azureJob() throws -> ScriptedUpstream.Script {
        .init(status: 200, body: try DialectFixture.bytes("azure/get.json"))
    }

    static func failing(_ status: Int, retryAfter: String? = nil) -> ScriptedUpstream.Script {
        var headers = [("Content-Type", "application/json")]
        if let retryAfter {
            headers.append(("Retry-After", retryAfter))
        }
        return .init(
            status: status, headers: headers,
            body: Array(#"{"error_code": "\#(status)050", "message": "Platform trouble"}"#.utf8))
    }

    /// One series' value in the gateway's metrics.
    static func metric(_ demo: DemoEnvironment, _ series: String) async throws -> Double? {
        let text = try await RawHTTPClient(port: demo.gatewayPort).sendOffPool("GET", "/metrics").text
        return text.split(separator: "\n").first { $0.hasPrefix(series + " ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    /// The deletion call's intent and outcome records, by the request id it was answered with.
    static func audit(_ demo: DemoEnvironment, _ response: RawHTTPClient.Response) throws -> (
        intent: AuditRecord?, outcome: AuditRecord?
    ) {
        try GatewayAuditTests.records(demo, requestId: response.header("x-request-id"))
    }

    // MARK: Retries

    @Test func aLookupThatFailsOnceIsAnsweredFromTheRetry() async throws {
        let upstream = ScriptedUpstream()
        upstream.answerInTurn([Self.failing(503), try Self.azureJob()])
        try await Self.withScripted(upstream) { demo in
            let response = try await GatewayCaller(demo, orgId: Self.azure).get("job-1")
            #expect(response.status == 200, "\(response.text)")
            #expect(upstream.receivedRequests.count == 2)
            #expect(try await Self.metric(demo, #"profile_jobs_gateway_upstream_retries_total{cloud="azure"}"#) == 1)
            #expect(
                try await Self.metric(
                    demo, #"profile_jobs_gateway_upstream_errors_total{cloud="azure",kind="status_5xx"}"#)
                    == 1)
        }
    }

    @Test(arguments: [502, 503, 504])
    func aLookupIsTriedThreeTimesAtMost(status: Int) async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(Self.failing(status))
        try await Self.withScripted(upstream) { demo in
            let response = try await GatewayCaller(demo, orgId: Self.aws).list()
            let type = status == 503 ? "/problems/upstream-unavailable" : "/problems/upstream-error"
            let problem = try response.expectProblem(status: status == 503 ? 503 : 502, type: type)
            #expect(problem.string("detail")?.contains("AWS") == true)
            #expect(upstream.receivedRequests.count == 3)
        }
    }

    /// The rule that matters most: a create or a removal reaches the platform once, whatever it answered.
    @Test(arguments: [500, 502, 503, 504, 429])
    func aCreateOrRemovalIsSentExactlyOnce(status: Int) async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(Self.failing(status, retryAfter: "1"))
        try await Self.withScripted(upstream) { demo in
            let calls = [
                ("POST", try await GatewayCaller(demo, orgId: Self.azure).create(#"{"datasetId": "d1"}"#)),
                ("POST", try await GatewayCaller(demo, orgId: Self.aws).create(#"{"datasetId": "d2"}"#)),
                ("DELETE", try await GatewayCaller(demo, orgId: Self.azure).remove("job-1")),
            ]
            #expect(upstream.receivedRequests.map(\.method) == ["POST", "POST", "DELETE"])
            for (method, response) in calls {
                #expect(response.status >= 429, "\(method): \(response.text)")
                let (intent, outcome) = try Self.audit(demo, response)
                #expect(intent != nil)
                #expect(outcome?.outcome == (status == 429 ? .rejected : .failed), "\(method)")
                #expect(outcome?.upstreamStatus == status)
            }
        }
    }

    @Test func aStalledCreateTimesOutAndIsNotSentAgain() async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(.init(status: 200, body: Array("{}".utf8), stall: true))
        try await Self.withScripted(upstream, timeoutSeconds: 0.5) { demo in
            let response = try await GatewayCaller(demo, orgId: Self.aws).create(#"{"datasetId": "d1"}"#)
            let problem = try response.expectProblem(status: 504, type: "/problems/upstream-timeout")
            #expect(problem.string("detail")?.contains("AWS") == true)
            #expect(upstream.receivedRequests.count == 1)
            #expect(try Self.audit(demo, response).outcome?.outcome == .failed)
        }
    }

    // MARK: Retry-After

    @Test func aRateLimitKeeps429AndPassesItsRetryAfter() async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(Self.failing(429, retryAfter: "7"))
        try await Self.withScripted(upstream) { demo in
            // Longer than the 5-second cap: the lookup is not retried, and the caller is told to wait.
            let lookup = try await GatewayCaller(demo, orgId: Self.azure).get("job-1")
            let problem = try lookup.expectProblem(status: 429, type: "/problems/upstream-refused")
            #expect(lookup.header("Retry-After") == "7")
            #expect(problem.string("detail")?.contains("Azure") == true)
            #expect(problem.string("detail")?.contains("7 seconds") == true)
            #expect(problem.object("upstream")["status"] as? Int == 429)
            #expect(upstream.receivedRequests.count == 1)

            let create = try await GatewayCaller(demo, orgId: Self.aws).create(#"{"datasetId": "d1"}"#)
            try create.expectProblem(status: 429, type: "/problems/upstream-refused")
            #expect(create.header("Retry-After") == "7")
            #expect(upstream.receivedRequests.count == 2)
        }
    }

    @Test func aShortRetryAfterIsWaitedOutByTheGatewayForALookup() async throws {
        let upstream = ScriptedUpstream()
        upstream.answerInTurn([Self.failing(429, retryAfter: "1"), try Self.azureJob()])
        try await Self.withScripted(upstream) { demo in
            let response = try await GatewayCaller(demo, orgId: Self.azure).get("job-1")
            #expect(response.status == 200, "\(response.text)")
            #expect(upstream.receivedRequests.count == 2)
        }
    }

    @Test func anHTTPDateRetryAfterReachesTheCallerInSeconds() async throws {
        let upstream = ScriptedUpstream()
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        upstream.answer(Self.failing(503, retryAfter: formatter.string(from: Date().addingTimeInterval(600))))
        try await Self.withScripted(upstream) { demo in
            let response = try await GatewayCaller(demo, orgId: Self.azure).create(#"{"datasetId": "d1"}"#)
            try response.expectProblem(status: 503, type: "/problems/upstream-unavailable")
            let seconds = try #require(Int(response.header("Retry-After") ?? ""), "\(response.headers)")
            #expect((1...600).contains(seconds))
        }
    }

    // MARK: Circuit breaker

    @Test func repeatedFailuresOpenTheCircuitAndCallsFailFastWithoutReachingThePlatform() async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(Self.failing(500))
        // Open for an hour, so that however slowly this machine runs the test, the circuit is still open at its end.
        try await Self.withScripted(upstream, configure: { $0.circuitBreakerOpenSeconds = 3600 }) { demo in
            let azure = GatewayCaller(demo, orgId: Self.azure)
            // 500 is not retried, so each lookup is one failure; five in a row open the circuit.
            for _ in 0..<5 {
                try (try await azure.get("job-1")).expectProblem(status: 502, type: "/problems/upstream-error")
            }
            #expect(upstream.receivedRequests.count == 5)

            // Both organizations share the upstream, and with it the open circuit.
            for (response, cloud) in [
                (try await azure.get("job-1"), "Azure"), (try await GatewayCaller(demo, orgId: Self.aws).list(), "AWS"),
            ] {
                let problem = try response.expectProblem(status: 503, type: "/problems/upstream-circuit-open")
                let seconds = try #require(Int(response.header("Retry-After") ?? ""))
                #expect((1...3600).contains(seconds))
                #expect(problem.string("detail")?.contains(cloud) == true)
            }

            // A deletion is refused before its intent is written: recorded as refused, and never forwarded.
            for response in [
                try await azure.remove("job-1"),
                try await GatewayCaller(demo, orgId: Self.aws).create(#"{"datasetId": "d1"}"#),
            ] {
                try response.expectProblem(status: 503, type: "/problems/upstream-circuit-open")
                let (intent, outcome) = try Self.audit(demo, response)
                #expect(intent == nil)
                #expect(outcome?.outcome == .refused)
                #expect(outcome?.problemType == "/problems/upstream-circuit-open")
            }
            #expect(upstream.receivedRequests.count == 5)

            let origin = "http://127.0.0.1:\(try Self.port(of: demo))"
            #expect(
                try await Self.metric(demo, #"profile_jobs_gateway_upstream_circuit_state{upstream="\#(origin)"}"#) == 1
            )
            #expect(
                try await Self.metric(
                    demo, #"profile_jobs_gateway_upstream_errors_total{cloud="azure",kind="circuit_open"}"#)
                    == 2)
        }
    }

    /// A platform answering 200 with bodies that do not decode is failing as surely as one answering 500.
    @Test func unreadableAnswersCountAsFailuresAndOpenTheCircuit() async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(.init(status: 200, body: Array(#"{"id": "job-1", "status": "#.utf8)))
        try await Self.withScripted(upstream, configure: { $0.circuitBreakerOpenSeconds = 3600 }) { demo in
            let azure = GatewayCaller(demo, orgId: Self.azure)
            for _ in 0..<5 {
                try (try await azure.get("job-1")).expectProblem(status: 502, type: "/problems/upstream-malformed")
            }
            #expect(upstream.receivedRequests.count == 5, "an unreadable answer is not retried")

            try (try await azure.get("job-1")).expectProblem(status: 503, type: "/problems/upstream-circuit-open")
            #expect(upstream.receivedRequests.count == 5)
            #expect(
                try await Self.metric(
                    demo, #"profile_jobs_gateway_upstream_errors_total{cloud="azure",kind="malformed"}"#) == 5)
        }
    }

    @Test func afterTheOpenTimeOneProbeClosesTheCircuit() async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(Self.failing(500))
        try await Self.withScripted(
            upstream,
            configure: {
                $0.circuitBreakerFailures = 2
                $0.circuitBreakerOpenSeconds = 0.3
            }
        ) { demo in
            let caller = GatewayCaller(demo, orgId: Self.azure)
            for _ in 0..<2 {
                _ = try await caller.get("job-1")
            }
            // Read from the gauge rather than from a refused call: a call could come after the short open time on
            // a busy machine, and the gauge only leaves "open" when a call arrives.
            let state =
                #"profile_jobs_gateway_upstream_circuit_state{upstream="http://127.0.0.1:\#(try Self.port(of: demo))"}"#
            #expect(try await Self.metric(demo, state) == 1)
            #expect(upstream.receivedRequests.count == 2)

            // Waiting out the open time is not a measurement: the probe is let through whenever it comes after it.
            try await Task.sleep(for: .milliseconds(400))
            upstream.answer(try Self.azureJob())
            let probe = try await caller.get("job-1")
            #expect(probe.status == 200, "\(probe.text)")
            #expect(try await Self.metric(demo, state) == 0)
            let next = try await caller.get("job-1")
            #expect(next.status == 200, "\(next.text)")
            #expect(upstream.receivedRequests.count == 4)
        }
    }

    // MARK: In-flight cap

    @Test func callsBeyondTheInFlightCapAreRefusedAndADeletionIsRecordedAsRefused() async throws {
        let upstream = ScriptedUpstream()
        var stalled = try Self.azureJob()
        stalled.stall = true
        upstream.answer(stalled)
        try await Self.withScripted(upstream, configure: { $0.maxInFlight = 2 }) { demo in
            let caller = GatewayCaller(demo, orgId: Self.azure)
            let held = [Task { try await caller.get("job-1") }, Task { try await caller.get("job-1") }]
            var polls = 0
            while upstream.receivedRequests.count < 2 && polls < 2000 {
                try await Task.sleep(for: .milliseconds(10))
                polls += 1
            }
            try #require(upstream.receivedRequests.count == 2)

            let lookup = try await GatewayCaller(demo, orgId: Self.aws).get("job-1")
            let problem = try lookup.expectProblem(status: 503, type: "/problems/upstream-overloaded")
            #expect(lookup.header("Retry-After") == "1")
            #expect(problem.string("detail")?.contains("AWS") == true)

            let removal = try await caller.remove("job-1")
            try removal.expectProblem(status: 503, type: "/problems/upstream-overloaded")
            let (intent, outcome) = try Self.audit(demo, removal)
            #expect(intent == nil)
            #expect(outcome?.outcome == .refused)
            #expect(upstream.receivedRequests.count == 2)
            #expect(upstream.receivedRequests.allSatisfy { $0.method == "GET" })

            upstream.release()
            for call in held {
                #expect(try await call.value.status == 200)
            }
            #expect(try await caller.get("job-1").status == 200)
        }
    }

    /// The port the scripted organizations' upstream listens on, from the configuration.
    static func port(of demo: DemoEnvironment) throws -> String {
        let baseURL = try #require(demo.configuration.organizations[azure]?.baseURL)
        return String(baseURL.split(separator: ":").last ?? "")
    }
}
