import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// Byte-level upstream faults, from the Python upstream, as a caller of the gateway sees them: each a problem that
/// names the cloud and the kind of fault, retried only for lookups.
@Suite(.timeLimit(.minutes(3)))
struct UpstreamFaultTests {
    /// The Azure and AWS organizations routed to one of the Python upstream's fault routes.
    static func orgId(_ route: String, _ cloud: Cloud) -> String {
        "\(route)-\(cloud.rawValue)@AdobeOrg"
    }

    static let routes = [
        "job", "gzip", "deflate", "corrupt-gzip", "reset", "reset-mid-body", "truncated", "stall-mid-body", "html-502",
        "empty-200", "slow/2000", "slow/10",
    ]

    /// A demo whose extra organizations each reach one fault route of a fresh Python upstream (AWS ones with a mapped
    /// sandbox, so the jobs call is the only upstream call). The breaker is set out of reach: these tests count
    /// attempts, and all routes share one upstream.
    static func withFaultRoutes<T>(
        timeoutSeconds: Double = 30,
        _ body: (DemoEnvironment, UpstreamTestServer) async throws -> T
    ) async throws -> T {
        let server = try await UpstreamTestServer.start()
        return try await withDemo(configure: { configuration in
            configuration.upstreamPolicy.circuitBreakerFailures = 10_000
            for route in routes {
                for cloud in [Cloud.azure, .aws] {
                    let orgId = orgId(route, cloud)
                    configuration.organizations[orgId] = OrganizationRoute(
                        orgId: orgId, cloud: cloud, baseURL: server.url("/" + route),
                        sandboxes: ["prod": SimulatorOptions.prodSandboxId],
                        timeoutSeconds: route.hasPrefix("slow/2000") || route == "stall-mid-body" ? timeoutSeconds : nil
                    )
                }
            }
        }) { demo in try await body(demo, server) }
    }

    /// Requests the Python upstream received on one route.
    static func received(_ server: UpstreamTestServer, _ route: String) async throws -> Int {
        let answer = try await RawHTTPClient(port: UInt16(server.port)).sendOffPool(
            "GET", "/requests", headers: [], body: [])
        let counts = try JSONDecoder().decode([String: Int].self, from: Data(answer.body))
        return counts[String(route.split(separator: "/")[0]), default: 0]
    }

    /// Checks the problem and that its title and detail name the cloud.
    @discardableResult
    static func expectFault(
        _ response: RawHTTPClient.Response,
        status: Int,
        type: String,
        cloud: Cloud,
        detailContains: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> [String: Any] {
        let problem = try response.expectProblem(status: status, type: type, sourceLocation: sourceLocation)
        let detail = problem.string("detail") ?? ""
        #expect(detail.contains(cloud.displayName), "\(detail)", sourceLocation: sourceLocation)
        #expect(problem.string("title")?.contains(cloud.displayName) == true, sourceLocation: sourceLocation)
        if let detailContains {
            #expect(detail.contains(detailContains), "\(detail)", sourceLocation: sourceLocation)
        }
        return problem
    }

    @Test(arguments: ["gzip", "deflate"])
    func aCompressedAnswerIsReadAsIfPlain(route: String) async throws {
        try await Self.withFaultRoutes { demo, server in
            let response = try await GatewayCaller(demo, orgId: Self.orgId(route, .azure)).get("job-1")
            #expect(response.status == 200, "\(response.text)")
            let job = try response.jsonObject()
            #expect(job.string("id") == "job-1")
            #expect(job.string("status") == "SUCCEEDED")
        }
    }

    @Test(arguments: [Cloud.azure, .aws])
    func aCompressedBodyThatDoesNotDecodeIsMalformedAndNotRetried(cloud: Cloud) async throws {
        try await Self.withFaultRoutes { demo, server in
            let response = try await GatewayCaller(demo, orgId: Self.orgId("corrupt-gzip", cloud)).get("job-1")
            try Self.expectFault(
                response, status: 502, type: "/problems/upstream-malformed", cloud: cloud,
                detailContains: "compressed body could not be decoded")
            #expect(try await Self.received(server, "corrupt-gzip") == 1)
        }
    }

    @Test(arguments: ["reset", "reset-mid-body", "truncated"], [Cloud.azure, .aws])
    func aBrokenConnectionIsRetriedForALookupAndNamedAsSuch(route: String, cloud: Cloud) async throws {
        try await Self.withFaultRoutes { demo, server in
            let response = try await GatewayCaller(demo, orgId: Self.orgId(route, cloud)).get("job-1")
            try Self.expectFault(
                response, status: 502, type: "/problems/upstream-connection-lost", cloud: cloud,
                detailContains: "can be retried as it is")
            #expect(try await Self.received(server, route) == 3)
        }
    }

    @Test(arguments: [Cloud.azure, .aws])
    func aCreateWhoseConnectionBreaksIsSentOnceAndRecordedAsFailed(cloud: Cloud) async throws {
        try await Self.withFaultRoutes { demo, server in
            let response = try await GatewayCaller(demo, orgId: Self.orgId("reset", cloud)).create(
                #"{"datasetId": "d1"}"#)
            try Self.expectFault(response, status: 502, type: "/problems/upstream-connection-lost", cloud: cloud)
            #expect(try await Self.received(server, "reset") == 1)

            let (intent, outcome) = try GatewayAuditTests.records(demo, requestId: response.header("x-request-id"))
            #expect(intent != nil)
            #expect(outcome?.outcome == .failed)
            #expect(outcome?.problemType == "/problems/upstream-connection-lost")
        }
    }

    @Test func aLoadBalancersHTMLPageIsABadGatewayRetriedForALookup() async throws {
        try await Self.withFaultRoutes { demo, server in
            let response = try await GatewayCaller(demo, orgId: Self.orgId("html-502", .azure)).get("job-1")
            let problem = try Self.expectFault(response, status: 502, type: "/problems/upstream-error", cloud: .azure)
            #expect(problem.object("upstream").string("message") == "502 Bad Gateway")
            #expect(try await Self.received(server, "html-502") == 3)
        }
    }

    @Test(arguments: [Cloud.azure, .aws])
    func anEmptySuccessIsMalformed(cloud: Cloud) async throws {
        try await Self.withFaultRoutes { demo, server in
            let response = try await GatewayCaller(demo, orgId: Self.orgId("empty-200", cloud)).get("job-1")
            try Self.expectFault(
                response, status: 502, type: "/problems/upstream-malformed", cloud: cloud, detailContains: "empty body")
            #expect(try await Self.received(server, "empty-200") == 1)
        }
    }

    @Test(arguments: [Cloud.azure, .aws])
    func anAnswerThatStallsMidBodyTimesOut(cloud: Cloud) async throws {
        try await Self.withFaultRoutes(timeoutSeconds: 0.5) { demo, server in
            let response = try await GatewayCaller(demo, orgId: Self.orgId("stall-mid-body", cloud)).get("job-1")
            try Self.expectFault(
                response, status: 504, type: "/problems/upstream-timeout", cloud: cloud,
                detailContains: "HTTP 200, 10 body bytes")
            // The one attempt used the organization's whole time, so there is none left for another.
            #expect(try await Self.received(server, "stall-mid-body") == 1)
        }
    }

    @Test func aSlowUpstreamTimesOutOnItsOrganizationsOwnTimeoutWhileOthersWait() async throws {
        try await Self.withFaultRoutes(timeoutSeconds: 0.5) { demo, server in
            let slow = try await GatewayCaller(demo, orgId: Self.orgId("slow/2000", .azure)).get("job-1")
            try Self.expectFault(slow, status: 504, type: "/problems/upstream-timeout", cloud: .azure)

            let prompt = try await GatewayCaller(demo, orgId: Self.orgId("slow/10", .azure)).get("job-1")
            #expect(prompt.status == 200, "\(prompt.text)")
        }
    }

    @Test func aConnectionRefusedIsUnreachableAndSaysNothingWasSent() async throws {
        let (port, reservation) = try closedPort()
        defer { close(reservation) }
        try await withDemo(configure: { configuration in
            configuration.organizations["closed@AdobeOrg"] = OrganizationRoute(
                orgId: "closed@AdobeOrg", cloud: .azure, baseURL: "http://127.0.0.1:\(port)")
        }) { demo in
            let response = try await GatewayCaller(demo, orgId: "closed@AdobeOrg").create(#"{"datasetId": "d1"}"#)
            try Self.expectFault(
                response, status: 502, type: "/problems/upstream-unreachable", cloud: .azure,
                detailContains: "nothing was sent")
        }
    }

    @Test func aConnectionThatCannotBeMadeInTimeIsAConnectTimeout() async throws {
        let blackhole = try BlackholePort()
        defer { blackhole.close() }
        try await withDemo(configure: { configuration in
            configuration.organizations["blackhole@AdobeOrg"] = OrganizationRoute(
                orgId: "blackhole@AdobeOrg", cloud: .aws, baseURL: "http://127.0.0.1:\(blackhole.port)",
                sandboxes: ["prod": SimulatorOptions.prodSandboxId], connectTimeoutSeconds: 0.2, timeoutSeconds: 5)
        }) { demo in
            let response = try await GatewayCaller(demo, orgId: "blackhole@AdobeOrg").create(#"{"datasetId": "d1"}"#)
            try Self.expectFault(
                response, status: 504, type: "/problems/upstream-timeout", cloud: .aws, detailContains: "connecting")
        }
    }
}

/// A loopback port whose accept queue is full, so the kernel drops new connection attempts and a client's connect
/// waits until its own timeout.
final class BlackholePort {
    let port: UInt16
    private var descriptors: [Int32] = []

    init() throws {
        let (port, listener) = try closedPort()
        self.port = port
        descriptors.append(listener)
        guard listen(listener, 0) == 0 else {
            throw RawHTTPClient.Failure(description: "could not listen on the blackhole port")
        }

        // A backlog of 0 still queues one connection; two fill it whatever the kernel rounds it up to.
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        for _ in 0..<2 {
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            descriptors.append(client)
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    func close() {
        for descriptor in descriptors {
            _ = Glibc.close(descriptor)
        }
        descriptors = []
    }
}
