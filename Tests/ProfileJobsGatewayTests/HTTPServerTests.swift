import Foundation
import Testing

@testable import ProfileJobsGateway

/// Answers with what it received, after an optional delay, so tests see what the server handed over.
private final class EchoHandler: HTTPHandler {
    let delay: Duration
    /// When set, each handler waits until this many run at once (or ten seconds pass) before answering.
    let barrier: Int?

    init(delay: Duration = .zero, barrier: Int? = nil) {
        self.delay = delay
        self.barrier = barrier
    }

    /// Handlers running right now, and the most seen at once.
    let inFlight = Locked((now: 0, most: 0))
    /// Every path a handler was started for.
    let seen = Locked(Set<String>())

    func handle(_ request: HTTPRequest) async -> HTTPResponse {
        inFlight.withLock { state in
            state.now += 1
            state.most = max(state.most, state.now)
        }
        seen.withLock { _ = $0.insert(request.path) }
        defer { inFlight.withLock { $0.now -= 1 } }
        if delay > .zero {
            try? await Task.sleep(for: delay)
        }
        if let barrier {
            let giveUp = ContinuousClock.now + .seconds(10)
            while inFlight.withLock({ $0.most }) < barrier, ContinuousClock.now < giveUp {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        var text = "\(request.method) \(request.path)\n"
        for (name, value) in request.query {
            text += "q \(name)=\(value)\n"
        }
        text += "h x-test=\(request.headers["X-TEST"] ?? "-")\n"
        text += "from \(request.remoteAddress)\n"
        text += "body \(String(decoding: request.body, as: UTF8.self))"
        return HTTPResponse(status: 201, headers: HTTPHeaders([("X-Echo", "yes")]), body: Array(text.utf8))
    }
}

@Suite struct HTTPServerTests {
    @Test func handsTheWholeRequestToTheHandlerAndReturnsItsAnswer() throws {
        let server = HTTPServer(handler: EchoHandler())
        let port = try server.start()
        defer { server.stop() }

        let response = try RawHTTPClient(port: port).send(
            "POST", "/a%2Fb/c?x=1&y=hello%20world&z", headers: [("X-Test", "v")], body: Array("payload".utf8))

        #expect(response.status == 201)
        #expect(response.header("X-Echo") == "yes")
        #expect(
            response.text
                == "POST /a%2Fb/c\nq x=1\nq y=hello world\nq z=\nh x-test=v\nfrom 127.0.0.1\nbody payload")
    }

    @Test func refusesAnOversizedBodyWithoutCallingTheHandler() throws {
        var configuration = HTTPServerConfiguration()
        configuration.maxBodyBytes = 10
        let handler = EchoHandler()
        let server = HTTPServer(configuration: configuration, handler: handler)
        let port = try server.start()
        defer { server.stop() }

        let response = try RawHTTPClient(port: port).send("POST", "/", body: Array(repeating: 65, count: 100))

        #expect(response.status == 413)
        #expect(handler.inFlight.withLock { $0.most } == 0)
    }

    @Test func carriesManySlowRequestsAtOnceOnTwoThreads() async throws {
        let handler = EchoHandler(barrier: 50)
        let server = HTTPServer(handler: handler)
        let port = try server.start()
        defer { server.stop() }

        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<200 {
                group.addTask {
                    try await RawHTTPClient(port: port).sendOffPool("GET", "/slow/\(index)").status
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }

        #expect(statuses.count == 200)
        #expect(statuses.allSatisfy { $0 == 201 })
        // Two event-loop threads: without suspension at most two handlers could ever run at once.
        #expect(handler.inFlight.withLock { $0.most } >= 50)
    }

    @Test func stopAnswersSuspendedRequestsInsteadOfHanging() async throws {
        let handler = EchoHandler(delay: .seconds(30))
        let server = HTTPServer(handler: handler)
        let port = try server.start()

        async let response = RawHTTPClient(port: port).sendOffPool("GET", "/never")
        let giveUp = ContinuousClock.now + .seconds(10)
        while handler.inFlight.withLock({ $0.now }) == 0, ContinuousClock.now < giveUp {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await stopOffPool { server.stop() }

        #expect(try await response.status == 503)
    }

    @Test func stopClosesTheListeningSocket() throws {
        let server = HTTPServer(handler: EchoHandler())
        let port = try server.start()
        server.stop()

        // A socket left listening would take the connection and then never answer it.
        let failure = #expect(throws: RawHTTPClient.Failure.self) {
            try RawHTTPClient(port: port, timeout: 5).send("GET", "/")
        }
        #expect(failure?.description.hasPrefix("connect") == true, "\(String(describing: failure))")
    }
}

@Suite struct HTTPServerShutdownTests {
    @Test func stopLetsRequestsInFlightFinishWithinTheGrace() async throws {
        let handler = EchoHandler(delay: .milliseconds(300))
        let server = HTTPServer(handler: handler)
        let port = try server.start()

        async let response = RawHTTPClient(port: port).sendOffPool("GET", "/finishing")
        // Stopping before the handler has the request would test the refusal instead; a loaded machine can be slow.
        let giveUp = ContinuousClock.now + .seconds(60)
        while handler.inFlight.withLock({ $0.most }) == 0, ContinuousClock.now < giveUp {
            try await Task.sleep(for: .milliseconds(5))
        }
        try #require(handler.inFlight.withLock { $0.most } == 1)
        try await stopOffPool { server.stop(grace: .seconds(20)) }

        #expect(try await response.status == 201)
    }

    /// The access log hears of answers the server makes itself, with the status the client really got.
    @Test func theAccessLogRecordsWhatWasSent() async throws {
        let logged = Locked([(String, Int)]())
        var configuration = HTTPServerConfiguration()
        configuration.maxBodyBytes = 10
        let handler = EchoHandler(delay: .seconds(30))
        let server = HTTPServer(
            configuration: configuration, handler: handler, errorResponse: HTTPServer.plainError,
            accessLog: { exchange in logged.withLock { $0.append((exchange.path, exchange.response.status)) } })
        let port = try server.start()

        let refused = try await RawHTTPClient(port: port).sendOffPool(
            "POST", "/big?x=1", body: Array(repeating: 1, count: 50))
        async let cutOff = RawHTTPClient(port: port).sendOffPool("GET", "/slow")
        let giveUp = ContinuousClock.now + .seconds(10)
        while handler.inFlight.withLock({ $0.now }) == 0, ContinuousClock.now < giveUp {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await stopOffPool { server.stop() }

        #expect(refused.status == 413)
        #expect(try await cutOff.status == 503)
        let lines = logged.withLock { $0 }
        #expect(lines.count == 2)
        #expect(lines.contains { $0 == ("/big", 413) })
        #expect(lines.contains { $0 == ("/slow", 503) })
    }

    /// Requests keep arriving while the server stops: every request the server handed to its handler gets a whole
    /// answer, and the process survives (a connection suspended after stop began used to abort it inside
    /// libmicrohttpd). Connections still in the kernel's accept backlog may be reset when the listener closes.
    @Test func stoppingUnderLoadAnswersEveryRequestItTook() async throws {
        for _ in 0..<5 {
            let handler = EchoHandler(delay: .milliseconds(20))
            let server = HTTPServer(handler: handler)
            let port = try server.start()

            let outcomes = try await withThrowingTaskGroup(of: (String, String).self) { group in
                for index in 0..<150 {
                    group.addTask {
                        let path = "/load/\(index)"
                        do {
                            let response = try await RawHTTPClient(port: port, timeout: 20).sendOffPool("GET", path)
                            return (path, "\(response.status)")
                        } catch {
                            return (path, "no answer")
                        }
                    }
                }
                let giveUp = ContinuousClock.now + .seconds(10)
                while handler.inFlight.withLock({ $0.most }) < 10, ContinuousClock.now < giveUp {
                    try await Task.sleep(for: .milliseconds(2))
                }
                try await stopOffPool { server.stop() }
                return try await group.reduce(into: [String: String]()) { $0[$1.0] = $1.1 }
            }

            let taken = handler.seen.withLock { $0 }
            #expect(!taken.isEmpty)
            for path in taken {
                #expect(["201", "503"].contains(outcomes[path]), "\(path): \(outcomes[path] ?? "missing")")
            }
        }
    }
}
