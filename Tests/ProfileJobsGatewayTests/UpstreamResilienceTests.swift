import Foundation
import Testing

@testable import ProfileJobsGateway

/// A clock the test moves by hand: sleeps and calls advance it instead of taking real time.
final class ManualClock: Sendable {
    private let state = Locked((now: 1000.0, sleeps: [Double]()))

    var now: Double { state.withLock { $0.now } }
    var sleeps: [Double] { state.withLock { $0.sleeps } }

    func advance(_ seconds: Double) {
        state.withLock { $0.now += seconds }
    }

    func sleep(_ seconds: Double) {
        state.withLock {
            $0.sleeps.append(seconds)
            $0.now += seconds
        }
    }
}

/// An upstream transport that answers from a script, one entry per call, and keeps every request it was sent.
final class ScriptedTransport: UpstreamTransport {
    enum Step: Sendable {
        case answer(Int, headers: [(String, String)] = [])
        case fail(UpstreamFailure)
        /// Uses up the attempt's whole total timeout, then times out.
        case timeOut
    }

    private let clock: ManualClock
    private let state: Locked<(steps: [Step], requests: [UpstreamRequest])>

    init(_ steps: [Step], clock: ManualClock) {
        self.clock = clock
        self.state = Locked((steps, []))
    }

    var requests: [UpstreamRequest] { state.withLock { $0.requests } }

    func send(_ request: UpstreamRequest) async throws(UpstreamFailure) -> UpstreamResponse {
        let step = state.withLock { state in
            state.requests.append(request)
            return state.steps.isEmpty ? Step.answer(200) : state.steps.removeFirst()
        }
        clock.advance(0.01)
        switch step {
        case .answer(let status, let headers):
            return UpstreamResponse(status: status, headers: HTTPHeaders(headers))
        case .fail(let failure):
            throw failure
        case .timeOut:
            clock.advance(request.totalTimeout)
            throw .timedOut("timed out waiting for the upstream's answer")
        }
    }
}

/// The circuit breaker and in-flight cap on their own, with a clock the test moves.
@Suite struct UpstreamGuardTests {
    static func policy(failures: Int = 3, openSeconds: Double = 30, maxInFlight: Int = 10) -> UpstreamPolicy {
        var policy = UpstreamPolicy()
        policy.circuitBreakerFailures = failures
        policy.circuitBreakerOpenSeconds = openSeconds
        policy.maxInFlight = maxInFlight
        return policy
    }

    static func admit(_ upstream: UpstreamGuard) throws -> UpstreamGuard.Permit {
        try upstream.admit().get()
    }

    static func run(_ upstream: UpstreamGuard, _ outcome: UpstreamGuard.Outcome) throws {
        upstream.finish(try admit(upstream), outcome)
    }

    @Test func failuresInARowOpenTheCircuitAndASuccessStartsTheCountAgain() throws {
        let clock = ManualClock()
        let upstream = UpstreamGuard(origin: "http://u:80", policy: Self.policy(), clock: { clock.now })

        try Self.run(upstream, .failure)
        try Self.run(upstream, .failure)
        try Self.run(upstream, .success)
        try Self.run(upstream, .failure)
        try Self.run(upstream, .failure)
        #expect(upstream.snapshot.circuit == .closed)

        try Self.run(upstream, .failure)
        #expect(upstream.snapshot.circuit == .open(until: clock.now + 30))
        #expect(upstream.admit().failureValue == .circuitOpen(retryAfterSeconds: 30))

        clock.advance(29.2)
        #expect(upstream.admit().failureValue == .circuitOpen(retryAfterSeconds: 1))
        #expect(upstream.snapshot.inFlight == 0)
    }

    @Test func afterTheOpenTimeOneProbeDecides() throws {
        let clock = ManualClock()
        let upstream = UpstreamGuard(origin: "http://u:80", policy: Self.policy(failures: 1), clock: { clock.now })
        try Self.run(upstream, .failure)
        clock.advance(30)

        // Half-open: the first call is the probe, every other call is refused while it runs.
        let probe = try Self.admit(upstream)
        #expect(probe.isProbe)
        #expect(upstream.snapshot.circuit == .halfOpen)
        #expect(upstream.admit().failureValue == .circuitOpen(retryAfterSeconds: 1))
        #expect(upstream.admit().failureValue == .circuitOpen(retryAfterSeconds: 1))

        // A failed probe opens the circuit for the whole open time again.
        upstream.finish(probe, .failure)
        #expect(upstream.snapshot.circuit == .open(until: clock.now + 30))
        clock.advance(30)

        // A successful probe closes it, and calls flow again.
        let second = try Self.admit(upstream)
        #expect(second.isProbe)
        upstream.finish(second, .success)
        #expect(upstream.snapshot.circuit == .closed)
        let afterwards = try Self.admit(upstream)
        #expect(!afterwards.isProbe)
        #expect(try Self.admit(upstream).isProbe == false)
    }

    @Test func aProbeThatWasNeverSentLetsTheNextCallProbe() throws {
        let clock = ManualClock()
        let upstream = UpstreamGuard(origin: "http://u:80", policy: Self.policy(failures: 1), clock: { clock.now })
        try Self.run(upstream, .failure)
        clock.advance(31)

        upstream.finish(try Self.admit(upstream), .notSent)
        #expect(upstream.snapshot.circuit == .halfOpen)
        let probe = try Self.admit(upstream)
        #expect(probe.isProbe)
        upstream.finish(probe, .success)
        #expect(upstream.snapshot.circuit == .closed)
    }

    @Test func outcomesOfCallsFromBeforeTheCircuitChangedDoNotCount() throws {
        let clock = ManualClock()
        let upstream = UpstreamGuard(origin: "http://u:80", policy: Self.policy(failures: 2), clock: { clock.now })
        let slow = try Self.admit(upstream)
        try Self.run(upstream, .failure)
        try Self.run(upstream, .failure)
        #expect(upstream.snapshot.circuit == .open(until: clock.now + 30))

        // A call admitted while the circuit was closed answers late: it neither closes nor extends anything.
        upstream.finish(slow, .success)
        #expect(upstream.snapshot.circuit == .open(until: clock.now + 30))
        #expect(upstream.snapshot.inFlight == 0)
    }

    @Test func notSentCallsAreNotFailures() throws {
        let clock = ManualClock()
        let upstream = UpstreamGuard(origin: "http://u:80", policy: Self.policy(failures: 1), clock: { clock.now })
        for _ in 0..<5 {
            try Self.run(upstream, .notSent)
        }
        #expect(upstream.snapshot == .init(circuit: .closed, failuresInARow: 0, inFlight: 0))
    }

    @Test func callsBeyondTheInFlightCapAreRefusedUntilOneFinishes() throws {
        let clock = ManualClock()
        let upstream = UpstreamGuard(origin: "http://u:80", policy: Self.policy(maxInFlight: 2), clock: { clock.now })
        let first = try Self.admit(upstream)
        _ = try Self.admit(upstream)
        #expect(upstream.admit().failureValue == .overloaded(limit: 2))
        #expect(upstream.snapshot.inFlight == 2)

        upstream.finish(first, .success)
        #expect(upstream.snapshot.inFlight == 1)
        _ = try Self.admit(upstream)
        #expect(upstream.admit().failureValue == .overloaded(limit: 2))
    }

    @Test func everyChangeIsReported() throws {
        let clock = ManualClock()
        let seen = Locked<[(UpstreamGuard.Circuit, Int, Bool)]>([])
        let upstream = UpstreamGuard(
            origin: "http://u:80", policy: Self.policy(failures: 1), clock: { clock.now },
            onChange: { snapshot, changed in seen.withLock { $0.append((snapshot.circuit, snapshot.inFlight, changed)) }
            }
        )
        try Self.run(upstream, .failure)
        let reported = seen.withLock { $0 }
        #expect(reported.map(\.1) == [1, 0])
        #expect(reported.map(\.2) == [false, true])
        #expect(reported.last?.0 == .open(until: clock.now + 30))
    }
}

/// `Retry-After` in both of its forms, as the gateway reads it.
@Suite struct RetryAfterTests {
    /// 1994-11-06T08:49:37Z, the date RFC 9110's examples use.
    static let now = 784_111_777.0

    @Test(arguments: [
        ("7", 7), ("0", 0), (" 120", 120), ("99999999999", RetryAfter.longest),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0), ("Sun, 06 Nov 1994 08:50:07 GMT", 30),
        ("Sunday, 06-Nov-94 08:50:37 GMT", 60), ("Sun Nov  6 08:49:47 1994", 10),
        ("Sat, 05 Nov 1994 08:49:37 GMT", 0), ("Thu, 01 Jan 2099 00:00:00 GMT", RetryAfter.longest),
    ])
    func readsSecondsAndDates(text: String, seconds: Int) {
        #expect(RetryAfter.seconds(text, now: Self.now) == seconds)
    }

    @Test(arguments: ["", "soon", "-1", "1.5", "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT"])
    func dropsWhatIsNeither(text: String) {
        #expect(RetryAfter.seconds(text, now: Self.now) == nil)
    }

    @Test func readsTheEpochRight() {
        #expect(RetryAfter.httpDate("Thu, 01 Jan 1970 00:00:00 GMT") == 0)
        #expect(RetryAfter.httpDate("Tue, 29 Feb 2000 12:00:00 GMT") == 951_825_600)
    }
}

/// The retry rule, the time budget and the guard as every upstream call meets them.
@Suite struct UpstreamClientTests {
    static func client(
        _ transport: ScriptedTransport,
        clock: ManualClock,
        configure: (inout UpstreamPolicy) -> Void = { _ in }
    ) -> UpstreamClient {
        var policy = UpstreamPolicy()
        configure(&policy)
        return UpstreamClient(
            transport: transport, policy: policy, clock: { clock.now }, wallClock: { RetryAfterTests.now },
            sleep: { clock.sleep($0) }, random: { 0.5 })
    }

    static func request(_ method: String, timeout: Double = 30) -> UpstreamRequest {
        UpstreamRequest(
            method: method, url: "https://platform.example/data/core/ups/system/jobs", totalTimeout: timeout)
    }

    /// The call's answer status, or its problem type.
    static func outcome(_ client: UpstreamClient, _ request: UpstreamRequest) async -> String {
        do {
            return String(try await client.send(request, cloud: .azure).status)
        } catch {
            return error.problem.type
        }
    }

    @Test func aLookupIsRetriedTwiceWithGrowingJitteredWaits() async {
        let clock = ManualClock()
        let transport = ScriptedTransport([.answer(503), .fail(.brokenResponse("reset")), .answer(200)], clock: clock)
        let client = Self.client(transport, clock: clock)

        #expect(await Self.outcome(client, Self.request("GET")) == "200")
        #expect(transport.requests.count == 3)
        // 100 ms × 2^n × (0.5 + random), with random fixed at 0.5.
        #expect(clock.sleeps == [0.1, 0.2])
    }

    @Test(arguments: [
        ScriptedTransport.Step.answer(502), .answer(503), .answer(504), .answer(429), .fail(.unreachable("refused")),
        .fail(.brokenResponse("reset")), .fail(.timedOut("timed out connecting to the upstream")),
    ])
    func aLookupStopsAfterTwoRetries(step: ScriptedTransport.Step) async {
        let clock = ManualClock()
        let transport = ScriptedTransport([step, step, step, .answer(200)], clock: clock)
        _ = await Self.outcome(Self.client(transport, clock: clock), Self.request("GET"))
        #expect(transport.requests.count == 3)
    }

    @Test(
        arguments: ["POST", "DELETE"],
        [
            ScriptedTransport.Step.answer(503), .answer(502), .answer(504), .answer(500), .answer(429),
            .fail(.unreachable("refused")), .fail(.brokenResponse("reset")), .timeOut,
        ])
    func aCreateOrARemovalIsNeverRepeated(method: String, step: ScriptedTransport.Step) async {
        let clock = ManualClock()
        let transport = ScriptedTransport([step, .answer(200)], clock: clock)
        let outcome = await Self.outcome(Self.client(transport, clock: clock), Self.request(method))
        #expect(outcome != "200")
        #expect(transport.requests.count == 1)
        #expect(clock.sleeps.isEmpty)
    }

    @Test(arguments: [
        ScriptedTransport.Step.answer(500), .answer(501), .answer(400), .answer(404), .answer(200),
        .fail(.unreadable("the upstream's compressed body could not be decoded")),
    ])
    func failuresARepeatCannotMendAreNotRetried(step: ScriptedTransport.Step) async {
        let clock = ManualClock()
        let transport = ScriptedTransport([step, .answer(200)], clock: clock)
        _ = await Self.outcome(Self.client(transport, clock: clock), Self.request("GET"))
        #expect(transport.requests.count == 1)
    }

    @Test func retryAfterIsWaitedOutUpToTheCap() async {
        let clock = ManualClock()
        let transport = ScriptedTransport(
            [.answer(503, headers: [("Retry-After", "2")]), .answer(429, headers: [("Retry-After", "5")])], clock: clock
        )
        #expect(await Self.outcome(Self.client(transport, clock: clock), Self.request("GET")) == "200")
        #expect(clock.sleeps == [2, 5])
        #expect(transport.requests.count == 3)
    }

    @Test(arguments: ["6", "Sun, 06 Nov 1994 08:50:37 GMT"])
    func aRetryAfterBeyondTheCapGoesToTheCaller(retryAfter: String) async {
        let clock = ManualClock()
        let transport = ScriptedTransport([.answer(503, headers: [("Retry-After", retryAfter)])], clock: clock)
        #expect(await Self.outcome(Self.client(transport, clock: clock), Self.request("GET")) == "503")
        #expect(transport.requests.count == 1)
        #expect(clock.sleeps.isEmpty)
    }

    @Test func retriesShareTheCallsTimeBudget() async {
        let clock = ManualClock()
        let transport = ScriptedTransport([.answer(503), .answer(503)], clock: clock)
        _ = await Self.outcome(Self.client(transport, clock: clock), Self.request("GET", timeout: 10))

        let timeouts = transport.requests.map(\.totalTimeout)
        #expect(timeouts.count == 3)
        #expect(timeouts[0] == 10)
        #expect(timeouts[1] < 10 - 0.1 && timeouts[2] < timeouts[1] - 0.2)
        #expect(transport.requests.allSatisfy { $0.connectTimeout <= $0.totalTimeout })
    }

    @Test func anAttemptThatUsedTheWholeBudgetIsNotRepeated() async {
        let clock = ManualClock()
        let transport = ScriptedTransport([.timeOut, .answer(200)], clock: clock)
        let outcome = await Self.outcome(Self.client(transport, clock: clock), Self.request("GET", timeout: 2))
        #expect(outcome == "/problems/upstream-timeout")
        #expect(transport.requests.count == 1)
    }

    @Test func noRetriesWhenConfiguredSo() async {
        let clock = ManualClock()
        let transport = ScriptedTransport([.answer(503), .answer(200)], clock: clock)
        let client = Self.client(transport, clock: clock) { $0.retries = 0 }
        #expect(await Self.outcome(client, Self.request("GET")) == "503")
        #expect(transport.requests.count == 1)
    }

    @Test func anOpenCircuitRefusesBeforeAnythingIsRecordedOrSent() async {
        let clock = ManualClock()
        let transport = ScriptedTransport(Array(repeating: .answer(500), count: 10), clock: clock)
        let client = Self.client(transport, clock: clock) { $0.circuitBreakerFailures = 3 }
        for _ in 0..<3 {
            #expect(await Self.outcome(client, Self.request("POST")) == "500")
        }

        let intents = Locked(0)
        do {
            _ = try await client.send(
                Self.request("POST"), cloud: .aws, beforeSending: { intents.withLock { $0 += 1 } })
            Issue.record("an open circuit let a call through")
        } catch {
            #expect(error == .upstreamCircuitOpen(cloud: .aws, retryAfter: 30))
            #expect(error.problem.headers.first { $0.0 == "Retry-After" }?.1 == "30")
            #expect(error.problem.detail.contains("AWS"))
        }
        #expect(intents.withLock { $0 } == 0)
        #expect(transport.requests.count == 3)
    }

    @Test func aRefusedRecordSendsNothingAndCountsNothing() async {
        let clock = ManualClock()
        let transport = ScriptedTransport([], clock: clock)
        let client = Self.client(transport, clock: clock) { $0.circuitBreakerFailures = 1 }
        let request = Self.request("DELETE")

        do {
            _ = try await client.send(
                request, cloud: .azure,
                beforeSending: { () throws(GatewayError) in
                    throw .auditUnavailable
                })
            Issue.record("the call went through")
        } catch {
            #expect(error == .auditUnavailable)
        }
        #expect(transport.requests.isEmpty)
        #expect(
            client.upstreamGuard(for: request.url).snapshot == .init(circuit: .closed, failuresInARow: 0, inFlight: 0))
    }

    @Test func aRetryTheOpeningCircuitRefusesGivesTheUpstreamsAnswer() async {
        let clock = ManualClock()
        let transport = ScriptedTransport([.answer(503), .answer(503), .answer(200)], clock: clock)
        let client = Self.client(transport, clock: clock) { $0.circuitBreakerFailures = 2 }
        #expect(await Self.outcome(client, Self.request("GET")) == "503")
        #expect(transport.requests.count == 2)
    }

    @Test func fourHundredsKeepTheCircuitClosed() async {
        let clock = ManualClock()
        let transport = ScriptedTransport(Array(repeating: .answer(404), count: 10), clock: clock)
        let client = Self.client(transport, clock: clock) { $0.circuitBreakerFailures = 2 }
        for _ in 0..<10 {
            #expect(await Self.outcome(client, Self.request("GET")) == "404")
        }
        #expect(transport.requests.count == 10)
    }

    @Test(arguments: [
        ("https://user:secret@Platform.Example/api", "https://platform.example:443"),
        ("http://127.0.0.1:8080/a/b?c", "http://127.0.0.1:8080"), ("http://[::1]:9/x", "http://[::1]:9"),
        ("http://[::1]/x", "http://[::1]:80"), ("https://platform.adobe.io", "https://platform.adobe.io:443"),
    ])
    func upstreamsAreTheirOriginWithoutCredentials(url: String, origin: String) {
        #expect(UpstreamClient.origin(of: url) == origin)
    }

    @Test func onlyLookupsMayBeRetried() {
        #expect(UpstreamClient.mayRetry(method: "GET"))
        for method in ["POST", "DELETE", "PUT", "PATCH", "HEAD", "get"] {
            #expect(!UpstreamClient.mayRetry(method: method))
        }
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}
