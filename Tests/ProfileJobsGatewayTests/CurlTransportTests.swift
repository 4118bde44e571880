import Foundation
import Testing

@testable import ProfileJobsGateway

/// What the test upstream's `/echo` saw of a request.
private struct Echo: Decodable {
    var method: String
    var path: String
    var headers: [[String]]
    var body: String

    init(_ bytes: [UInt8]) throws {
        self = try JSONDecoder().decode(Echo.self, from: Data(bytes))
    }

    func header(_ name: String) -> String? {
        headers.first { $0[0].equalsIgnoringASCIICase(name) }?[1]
    }
}

/// The call's failure, or nil when it succeeded.
private func failure(
    of request: UpstreamRequest,
    on transport: CurlTransport
) async -> UpstreamFailure? {
    do {
        _ = try await transport.send(request)
        return nil
    } catch {
        return error
    }
}

@Suite(.timeLimit(.minutes(2)))
struct CurlTransportTests {
    @Test func getSendsHeadersAndReturnsTheAnswer() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(
            method: "GET",
            url: server.url("/echo?limit=5"),
            headers: HTTPHeaders([("x-api-key", "key-1"), ("Accept", "application/json")])
        )
        let response = try await withDeadline(10) { try await transport.send(request) }

        #expect(response.status == 200)
        #expect(response.headers["content-type"] == "application/json")
        let echo = try Echo(response.body)
        #expect(echo.method == "GET")
        #expect(echo.path == "/echo?limit=5")
        #expect(echo.header("x-api-key") == "key-1")
        #expect(echo.header("Accept") == "application/json")
        // Offered so that a compressing upstream is understood; libcurl decodes the answer itself.
        #expect(echo.header("Accept-Encoding")?.contains("gzip") == true)
        #expect(echo.body == "")
    }

    @Test func postSendsTheBodyWithoutWaitingForContinue() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let text = #"{"batchId":""# + String(repeating: "a", count: 4000) + #""}"#
        let request = UpstreamRequest(
            method: "POST",
            url: server.url("/echo"),
            headers: HTTPHeaders([("Content-Type", "application/json")]),
            body: Array(text.utf8)
        )
        let response = try await withDeadline(10) { try await transport.send(request) }

        #expect(response.status == 200)
        let echo = try Echo(response.body)
        #expect(echo.method == "POST")
        #expect(echo.body == text)
        #expect(echo.header("Content-Type") == "application/json")
        #expect(echo.header("Content-Length") == String(text.utf8.count))
        #expect(echo.header("Expect") == nil)
    }

    @Test func postWithoutBodySendsAnEmptyBody() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "POST", url: server.url("/echo"))
        let response = try await withDeadline(10) { try await transport.send(request) }

        let echo = try Echo(response.body)
        #expect(echo.method == "POST")
        #expect(echo.header("Content-Length") == "0")
        #expect(echo.body == "")
    }

    @Test func deleteUsesTheDeleteMethod() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "DELETE", url: server.url("/echo"))
        let response = try await withDeadline(10) { try await transport.send(request) }

        #expect(response.status == 200)
        let echo = try Echo(response.body)
        #expect(echo.method == "DELETE")
        #expect(echo.body == "")
    }

    @Test(arguments: [400, 404, 500, 503])
    func errorStatusIsAnAnswerNotAFailure(status: Int) async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: server.url("/status/\(status)"))
        let response = try await withDeadline(10) { try await transport.send(request) }

        #expect(response.status == status)
        #expect(response.body == Array("status \(status)".utf8))
        #expect(response.headers.filter { $0.name == "X-Repeated" }.map(\.value) == ["one", "two"])
    }

    @Test func interimAnswerHeadersAreDropped() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: server.url("/interim"))
        let response = try await withDeadline(10) { try await transport.send(request) }

        #expect(response.status == 200)
        #expect(response.headers["Link"] == nil)
        #expect(response.headers["X-Final"] == "yes")
        #expect(response.body == Array("final".utf8))
    }

    @Test func headerValueWithALineBreakIsRefusedWithoutEchoingIt() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(
            method: "GET",
            url: server.url("/echo"),
            headers: HTTPHeaders([("Authorization", "Bearer secret-token\r\nX-Injected: 1")])
        )
        let outcome = try await withDeadline(10) { await failure(of: request, on: transport) }

        guard case .unreachable(let message) = try #require(outcome) else {
            Issue.record("expected unreachable, got \(String(describing: outcome))")
            return
        }
        #expect(message.contains("Authorization"))
        #expect(!message.contains("secret-token"))
    }

    @Test func refusedConnectionIsUnreachable() async throws {
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: "http://127.0.0.1:1/echo")
        let outcome = try await withDeadline(10) { await failure(of: request, on: transport) }

        guard case .unreachable(let message) = try #require(outcome) else {
            Issue.record("expected unreachable, got \(String(describing: outcome))")
            return
        }
        #expect(message.contains("connect"))
    }

    @Test func tlsHandshakeWithAPlainServerIsUnreachable() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: "https://127.0.0.1:\(server.port)/echo")
        let outcome = try await withDeadline(10) { await failure(of: request, on: transport) }

        guard case .unreachable = try #require(outcome) else {
            Issue.record("expected unreachable, got \(String(describing: outcome))")
            return
        }
    }

    @Test func unreadableCABundleStopsTheTransportFromStarting() {
        var configuration = CurlTransport.Configuration()
        configuration.caBundlePath = "/nonexistent/ca-bundle.pem"

        #expect(throws: CurlTransport.SetupError.self) { try CurlTransport(configuration: configuration) }
    }

    @Test func stalledServerTimesOutWithinTheTotalTimeout() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: server.url("/stall"), totalTimeout: 0.5)
        let clock = ContinuousClock()
        let started = clock.now
        let outcome = try await withDeadline(10) { await failure(of: request, on: transport) }

        // Only the lower bound is a property of the transport; an upper one would measure the machine's load.
        // The server never answers, so without the timeout `withDeadline` would fail the test instead.
        #expect(clock.now - started >= .milliseconds(450))
        guard case .timedOut(let message) = try #require(outcome) else {
            Issue.record("expected timedOut, got \(String(describing: outcome))")
            return
        }
        #expect(message.contains("waiting for the upstream's answer"))
    }

    @Test func connectionClosedMidBodyIsABrokenResponse() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: server.url("/truncated"))
        let outcome = try await withDeadline(10) { await failure(of: request, on: transport) }

        guard case .brokenResponse = try #require(outcome) else {
            Issue.record("expected brokenResponse, got \(String(describing: outcome))")
            return
        }
    }

    @Test func bodyOverTheLimitIsUnreadable() async throws {
        let server = try await UpstreamTestServer.start()
        var configuration = CurlTransport.Configuration()
        configuration.maxResponseBytes = 1024
        let transport = try CurlTransport(configuration: configuration)
        defer { transport.shutdown() }

        let fitting = UpstreamRequest(method: "GET", url: server.url("/large/1024"))
        let response = try await withDeadline(10) { try await transport.send(fitting) }
        #expect(response.body.count == 1024)

        let oversized = UpstreamRequest(method: "GET", url: server.url("/large/100000"))
        let outcome = try await withDeadline(10) { await failure(of: oversized, on: transport) }
        guard case .unreadable(let message) = try #require(outcome) else {
            Issue.record("expected unreadable, got \(String(describing: outcome))")
            return
        }
        #expect(message.contains("1024"))
    }

    @Test(arguments: ["/gzip", "/deflate"])
    func aCompressedAnswerIsDecoded(path: String) async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let (plainURL, compressedURL) = (server.url("/job"), server.url(path))
        let plain = try await withDeadline(10) {
            try await transport.send(UpstreamRequest(method: "GET", url: plainURL))
        }
        let compressed = try await withDeadline(10) {
            try await transport.send(UpstreamRequest(method: "GET", url: compressedURL))
        }

        #expect(compressed.status == 200)
        #expect(compressed.headers["Content-Encoding"] != nil)
        #expect(compressed.body == plain.body)
        #expect(String(decoding: compressed.body, as: UTF8.self).contains(#""id": "job-1""#))
    }

    @Test func aCompressedBodyThatDoesNotDecodeIsUnreadable() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: server.url("/corrupt-gzip"))
        let outcome = try await withDeadline(10) { await failure(of: request, on: transport) }

        guard case .unreadable(let message) = try #require(outcome) else {
            Issue.record("expected unreadable, got \(String(describing: outcome))")
            return
        }
        #expect(message.contains("compressed body could not be decoded"))
    }

    @Test(arguments: ["/reset", "/reset-mid-body"])
    func aResetConnectionIsABrokenResponse(path: String) async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: server.url(path))
        let outcome = try await withDeadline(10) { await failure(of: request, on: transport) }

        guard case .brokenResponse = try #require(outcome) else {
            Issue.record("expected brokenResponse, got \(String(describing: outcome))")
            return
        }
    }

    @Test func anAnswerThatStopsMidBodyTimesOutSayingHowFarItGot() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: server.url("/stall-mid-body"), totalTimeout: 0.5)
        let outcome = try await withDeadline(10) { await failure(of: request, on: transport) }

        guard case .timedOut(let message) = try #require(outcome) else {
            Issue.record("expected timedOut, got \(String(describing: outcome))")
            return
        }
        #expect(message.contains("HTTP 200, 10 body bytes"), "\(message)")
    }

    @Test func fiveHundredConcurrentCallsAllComplete() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }
        let url = server.url("/echo")

        let answered = try await withDeadline(90) {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<500 {
                    group.addTask {
                        let request = UpstreamRequest(method: "POST", url: url, body: Array("call \(index)".utf8))
                        let response = try await transport.send(request)
                        return try response.status == 200 && Echo(response.body).body == "call \(index)"
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }

        #expect(answered == 500)
    }

    @Test func keepAliveConnectionsAreReused() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        defer { transport.shutdown() }
        let url = server.url("/status/200")

        try await withDeadline(30) {
            for _ in 0..<10 {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<10 {
                        group.addTask {
                            let response = try await transport.send(UpstreamRequest(method: "GET", url: url))
                            #expect(response.status == 200)
                        }
                    }
                    try await group.waitForAll()
                }
            }
        }

        let statsRequest = UpstreamRequest(method: "GET", url: server.url("/stats"))
        let stats = try await withDeadline(10) { try await transport.send(statsRequest) }
        let counts = try JSONDecoder().decode([String: Int].self, from: Data(stats.body))
        let connections = try #require(counts["connections"])
        #expect(connections <= 20, "101 calls opened \(connections) connections")
    }

    @Test func releasingTheTransportWithoutShutdownFreesIt() async throws {
        let server = try await UpstreamTestServer.start()
        let request = UpstreamRequest(method: "GET", url: server.url("/status/200"))
        weak var released: CurlTransport?

        do {
            let transport = try CurlTransport()
            released = transport
            _ = try await withDeadline(10) { try await transport.send(request) }
        }

        // The deadline's task lets go of its closure, and with it the transport, just after delivering the answer.
        let clock = ContinuousClock()
        let giveUp = clock.now + .seconds(5)
        while released != nil && clock.now < giveUp {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(released == nil)
    }

    @Test func shutdownFailsCallsInFlight() async throws {
        let server = try await UpstreamTestServer.start()
        let transport = try CurlTransport()
        let observer = try CurlTransport()
        defer { observer.shutdown() }
        let stall = UpstreamRequest(method: "GET", url: server.url("/stall"), totalTimeout: 60)
        let stats = UpstreamRequest(method: "GET", url: server.url("/stats"))

        let calls = (0..<20).map { _ in Task { await failure(of: stall, on: transport) } }

        try await withDeadline(20) {
            while true {
                let body = try await observer.send(stats).body
                let counts = try JSONDecoder().decode([String: Int].self, from: Data(body))
                if counts["connections", default: 0] >= 21 { return }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        transport.shutdown()
        transport.shutdown()

        let outcomes = try await withDeadline(10) {
            var outcomes: [UpstreamFailure?] = []
            for call in calls {
                outcomes.append(await call.value)
            }
            return outcomes
        }
        for outcome in outcomes {
            guard case .brokenResponse = try #require(outcome) else {
                Issue.record("expected brokenResponse, got \(String(describing: outcome))")
                continue
            }
        }

        let late = try await withDeadline(10) { await failure(of: stats, on: transport) }
        guard case .unreachable = try #require(late) else {
            Issue.record("expected unreachable after shutdown, got \(String(describing: late))")
            return
        }
    }
}
