import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// Reloading the configuration on SIGHUP: what is applied, what waits for a restart, and calls in flight.
@Suite struct ConfigurationReloadTests {
    static let running = """
        {"listen": {"host": "127.0.0.1", "port": 8080},
         "upstream": {"timeoutSeconds": 20},
         "audit": {"file": "/var/lib/gateway/audit.jsonl"},
         "organizations": {"a@AdobeOrg": {"cloud": "azure"},
                           "b@AdobeOrg": {"cloud": "aws", "sandboxes": {"prod": "id-prod"}},
                           "c@AdobeOrg": {"cloud": "aws"}}}
        """

    @Test func restartOnlySettingsKeepTheirRunningValuesAndAreNamed() throws {
        let running = try GatewayConfigurationTests.parse(Self.running)
        let file = try GatewayConfigurationTests.parse(
            """
            {"listen": {"host": "0.0.0.0", "port": 9090, "maxConnections": 10},
             "upstream": {"timeoutSeconds": 25, "retries": 1, "circuitBreaker": {"failures": 9}},
             "sandboxLookup": {"cacheSeconds": 60},
             "audit": {"file": "/var/lib/gateway/other.jsonl", "stdout": true},
             "organizations": {"a@AdobeOrg": {"cloud": "azure"},
                               "b@AdobeOrg": {"cloud": "aws", "sandboxes": {"prod": "id-other"}},
                               "d@AdobeOrg": {"cloud": "azure", "defaultSandbox": "dev"}}}
            """)
        let reload = ConfigurationReload(running: running, file: file)

        #expect(
            reload.needsRestart == [
                "listen.host", "listen.port", "listen.maxConnections", "upstream.retries",
                "upstream.circuitBreaker.failures", "audit.file", "audit.stdout",
            ])
        #expect(reload.changed == ["upstream.timeoutSeconds", "sandboxLookup.cacheSeconds"])
        #expect(reload.organizationsAdded == ["d@AdobeOrg"])
        #expect(reload.organizationsRemoved == ["c@AdobeOrg"])
        #expect(reload.organizationsChanged == ["b@AdobeOrg"])
        #expect(!reload.changesNothing)

        // What runs: the file's routing and timeouts, the running listener, policy and audit sinks.
        var expected = file
        (expected.host, expected.port, expected.clientLimits) = (running.host, running.port, running.clientLimits)
        (expected.upstreamPolicy, expected.audit) = (running.upstreamPolicy, running.audit)
        #expect(reload.applied == expected)
        #expect(reload.applied.upstreamTimeoutSeconds == 25)
        #expect(reload.applied.organizations["b@AdobeOrg"]?.sandboxes == ["prod": "id-other"])
    }

    @Test func theSameFileChangesNothing() throws {
        let running = try GatewayConfigurationTests.parse(Self.running)
        let reload = ConfigurationReload(running: running, file: running)
        #expect(reload.changesNothing)
        #expect(reload.applied == running)
    }

    /// In process: the Azure organization moves to the AWS platform, and new calls follow it.
    @Test func newCallsFollowTheAppliedRouting() async throws {
        try await withDemo { demo in
            _ = try demo.aws.seed(orgId: DemoEnvironment.azureOrg)
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            #expect(try Self.clouds(try await caller.list()) == ["azure", "azure"])

            var moved = demo.configuration
            moved.organizations[DemoEnvironment.azureOrg] = OrganizationRoute(
                orgId: DemoEnvironment.azureOrg, cloud: .aws, baseURL: "http://127.0.0.1:\(demo.awsPort)",
                sandboxes: ["prod": SimulatorOptions.prodSandboxId])
            let reload = demo.gateway.apply(moved)
            #expect(reload.organizationsChanged == [DemoEnvironment.azureOrg])
            #expect(reload.needsRestart.isEmpty)

            #expect(try Self.clouds(try await caller.list()) == ["aws", "aws"])
            let calls = jobCalls(demo.aws.receivedRequests)
            #expect(!calls.isEmpty)
            #expect(calls.allSatisfy { $0.headers["x-gw-ims-org-id"] == DemoEnvironment.azureOrg })
        }
    }

    /// Sandbox ids found for an organization are reused until its route changes; then they are looked up again.
    @Test func aChangedOrganizationLooksItsSandboxUpAgain() async throws {
        try await withDemo { demo async throws in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            #expect(try await caller.list().status == 200)
            #expect(try await caller.list().status == 200)
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 1)

            // Unchanged, or changed elsewhere: the cached id still serves.
            var other = demo.configuration
            other.organizations[DemoEnvironment.azureOrg]?.defaultSandbox = "dev"
            other.upstreamTimeoutSeconds = 25
            demo.gateway.apply(demo.configuration)
            demo.gateway.apply(other)
            #expect(try await caller.list().status == 200)
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 1)

            var changed = other
            changed.organizations[DemoEnvironment.awsOrg]?.timeoutSeconds = 15
            #expect(demo.gateway.apply(changed).organizationsChanged == [DemoEnvironment.awsOrg])
            #expect(try await caller.list().status == 200)
            #expect(try await caller.list().status == 200)
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 2)
        }
    }

    /// A call in flight when the routing changes finishes with the platform it started with.
    @Test func aCallInFlightKeepsTheConfigurationItStartedWith() async throws {
        let first = ScriptedUpstream()
        first.answer(.init(body: try DialectFixture.bytes("azure/get.json"), stall: true))
        let second = ScriptedUpstream()
        second.answer(.init(body: try DialectFixture.bytes("azure/get.json")))
        let servers = [first, second].map { HTTPServer(configuration: HTTPServerConfiguration(), handler: $0) }
        let ports = try servers.map { try $0.start() }
        defer { servers.forEach { $0.stop() } }

        let org = "moving@AdobeOrg"
        try await withDemo(configure: { configuration in
            configuration.organizations[org] = OrganizationRoute(
                orgId: org, cloud: .azure, baseURL: "http://127.0.0.1:\(ports[0])")
        }) { demo in
            let caller = GatewayCaller(demo, orgId: org)
            let pending = Task { try await caller.get("job-1") }
            try await poll(for: 30, "the first platform has the call") { !first.receivedRequests.isEmpty }

            var moved = demo.configuration
            moved.organizations[org]?.baseURL = "http://127.0.0.1:\(ports[1])"
            demo.gateway.apply(moved)
            #expect(try await caller.get("job-2").status == 200)
            first.release()

            #expect(try await pending.value.status == 200)
            #expect(first.receivedRequests.map(\.path) == ["/data/core/ups/system/jobs/job-1"])
            #expect(second.receivedRequests.map(\.path) == ["/data/core/ups/system/jobs/job-2"])
        }
    }

    /// The `cloud` of every job in a canonical list answer.
    static func clouds(_ response: RawHTTPClient.Response) throws -> [String] {
        #expect(response.status == 200, "\(response.text)")
        let jobs = try #require(try response.jsonObject()["jobs"] as? [[String: Any]], "\(response.text)")
        return jobs.compactMap { $0.string("cloud") }
    }
}

/// The real executable under SIGHUP: `serve` in a process of its own, in front of both simulated platforms.
@Suite struct ConfigurationReloadEndToEndTests {
    let org = DemoEnvironment.azureOrg

    /// A configuration routing the organization as `route` says, on `port`.
    static func document(port: UInt16, directory: URL, org: String, route: String) -> String {
        """
        {"listen": {"host": "127.0.0.1", "port": \(port)},
         "shutdown": {"readinessDelaySeconds": 0.2},
         "audit": {"file": "\(directory.appendingPathComponent("audit.jsonl").path)"},
         "organizations": {"\(org)": \(route)}}
        """
    }

    static func azureRoute(_ platforms: SimulatedPlatforms) -> String {
        #"{"cloud": "azure", "baseURL": "\#(platforms.azureURL)"}"#
    }

    static func awsRoute(_ platforms: SimulatedPlatforms) -> String {
        #"{"cloud": "aws", "baseURL": "\#(platforms.awsURL)", "sandboxes": {"prod": "\#(SimulatorOptions.prodSandboxId)"}}"#
    }

    /// Runs `body` with both platforms (the organization's jobs seeded on each) and a served gateway routing the
    /// organization to Azure; stops everything afterwards and expects a clean exit.
    func withServedGateway(
        _ body: (ServedGateway, SimulatedPlatforms) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let platforms = try SimulatedPlatforms()
        _ = try platforms.aws.seed(orgId: org)

        let gateway = try await ServedGateway(directory: directory) { port in
            Self.document(port: port, directory: directory, org: org, route: Self.azureRoute(platforms))
        }
        do {
            try await body(gateway, platforms)
        } catch {
            gateway.child.terminate()
            try await stopOffPool { platforms.stop() }
            throw error
        }
        gateway.signal(SIGTERM)
        #expect(try await gateway.child.exit(within: 60) == 0, "\(gateway.log)")
        try await stopOffPool { platforms.stop() }
    }

    /// Sends SIGHUP and waits until the log has one more line with `message` than before.
    func hangUp(_ gateway: ServedGateway, awaiting message: String) async throws -> [String: Any] {
        let before = gateway.logEntries.filter { $0.string("message") == message }.count
        gateway.signal(SIGHUP)
        try await poll(for: 30, "'\(message)' is logged") {
            gateway.logEntries.filter { $0.string("message") == message }.count > before
        }
        return try #require(gateway.logEntries.last { $0.string("message") == message })
    }

    @Test func sighupReroutesNewCallsWhileAnOpenConnectionKeepsBeingServed() async throws {
        try await withServedGateway { gateway, platforms in
            let caller = GatewayCaller(port: gateway.port, orgId: org)
            let connection = try KeepAliveConnection(port: gateway.port)
            #expect(
                try ConfigurationReloadTests.clouds(
                    try await connection.send("GET", "/v1/system/jobs", headers: caller.headers())) == [
                        "azure", "azure",
                    ])

            // The organization moves to the AWS platform; the port in the file changes too, which needs a restart.
            let port = try freePort()
            try Data(
                Self.document(port: port, directory: gateway.directory, org: org, route: Self.awsRoute(platforms)).utf8
            )
            .write(to: gateway.configurationFile)
            let applied = try await hangUp(gateway, awaiting: "configuration reloaded")
            #expect(applied.string("organizations.changed") == org)
            let warning = try #require(gateway.logEntries.last { $0.string("settings.restart.required") != nil })
            #expect(warning.string("settings.restart.required") == "listen.port")
            #expect(warning.string("level") == "warning")

            // A new connection, on the port the gateway was started with, goes to the new platform.
            #expect(try ConfigurationReloadTests.clouds(try await caller.list()) == ["aws", "aws"])
            // The connection opened before the reload is still served, under the new routing.
            #expect(
                try ConfigurationReloadTests.clouds(
                    try await connection.send("GET", "/v1/system/jobs", headers: caller.headers())) == ["aws", "aws"])
            #expect(gateway.child.exitStatus == nil)

            let metrics = try await RawHTTPClient(port: gateway.port).sendOffPool("GET", "/metrics").text
            #expect(metrics.contains(#"profile_jobs_gateway_configuration_reloads_total{result="applied"} 1"#))
        }
    }

    @Test func aFileThatIsNotValidIsRefusedAndTheRunningRoutingStays() async throws {
        try await withServedGateway { gateway, platforms in
            let caller = GatewayCaller(port: gateway.port, orgId: org)
            let connection = try KeepAliveConnection(port: gateway.port)
            #expect(
                try ConfigurationReloadTests.clouds(
                    try await connection.send("GET", "/v1/system/jobs", headers: caller.headers())) == [
                        "azure", "azure",
                    ])
            let refusal = "configuration not reloaded; the running configuration stays"
            let file = gateway.configurationFile

            let moved = Self.document(
                port: gateway.port, directory: gateway.directory, org: org, route: Self.awsRoute(platforms))
            try Data(moved.dropLast(3).utf8).write(to: file)
            let notJSON = try await hangUp(gateway, awaiting: refusal)
            #expect(notJSON.string("level") == "error")
            #expect(notJSON.string("error") == "the file is not valid JSON")
            #expect(notJSON.string("config.file") == file.path)

            try Data(moved.replacingOccurrences(of: #""cloud": "aws""#, with: #""cloud": "gcp""#).utf8).write(to: file)
            let badValue = try await hangUp(gateway, awaiting: refusal)
            #expect(badValue.string("error")?.hasPrefix("organizations.\(org).cloud: ") == true, "\(badValue)")

            try FileManager.default.removeItem(at: file)
            let missing = try await hangUp(gateway, awaiting: refusal)
            #expect(missing.string("error") == "the file cannot be read")

            // Still routed as at the start, on a new connection and on the one opened before.
            #expect(try ConfigurationReloadTests.clouds(try await caller.list()) == ["azure", "azure"])
            #expect(
                try ConfigurationReloadTests.clouds(
                    try await connection.send("GET", "/v1/system/jobs", headers: caller.headers())) == [
                        "azure", "azure",
                    ])
            #expect(platforms.aws.receivedRequests.isEmpty)
            #expect(!gateway.log.contains(#""message":"configuration reloaded""#))

            let metrics = try await RawHTTPClient(port: gateway.port).sendOffPool("GET", "/metrics").text
            #expect(metrics.contains(#"profile_jobs_gateway_configuration_reloads_total{result="refused"} 3"#))
            #expect(metrics.contains(#"profile_jobs_gateway_configuration_reloads_total{result="applied"} 0"#))
        }
    }
}
