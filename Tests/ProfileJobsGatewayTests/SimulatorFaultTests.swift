import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// The simulators' fault switches, and each fault as a caller of the gateway meets it in the demo.
@Suite(.timeLimit(.minutes(3)))
struct SimulatorFaultTests {
    static func jobsCalls(_ simulator: AzureSimulator, method: String = "GET") -> Int {
        jobCalls(simulator.receivedRequests, method: method).count
    }

    static func jobsCalls(_ simulator: AWSSimulator, method: String = "GET") -> Int {
        jobCalls(simulator.receivedRequests, method: method).count
    }

    // MARK: The switch itself

    @Test(arguments: SimulatedCloud.allCases)
    func aFaultReplacesTheNextMatchingAnswersThenTheNormalOnesReturn(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(SimulatorOptions())
        let faults = try #require((simulator as? AzureSimulator)?.faults ?? (simulator as? AWSSimulator)?.faults)
        faults.inject(.status(503, retryAfter: "3"), times: 2, method: "GET")
        faults.inject(.malformedJSON, times: 1, method: "POST")

        for _ in 0..<2 {
            let refused = await send(simulator, "GET", headers: cloud.headers())
            #expect(refused.status == 503)
            #expect(refused.headers["Retry-After"] == "3")
            #expect(try object(refused)["error_code"] as? String == "503050")
        }
        #expect(await send(simulator, "GET", headers: cloud.headers()).status == 200)

        let broken = await send(simulator, "POST", headers: cloud.headers(), body: #"{"dataSetId": "d1"}"#)
        #expect(broken.status == 200)
        #expect((try? json(broken)) == nil)
        #expect(faults.pending.isEmpty)
    }

    @Test func aFaultForeverLastsUntilCleared() async throws {
        let simulator = AzureSimulator()
        simulator.faults.inject(.htmlPage(status: 502), times: nil)
        for _ in 0..<5 {
            let page = await send(simulator, "GET", headers: SimulatedCloud.azure.headers())
            #expect(page.status == 502)
            #expect(page.headers["Content-Type"] == "text/html")
        }
        #expect(simulator.faults.pending.count == 1)
        simulator.faults.clear()
        #expect(await send(simulator, "GET", headers: SimulatedCloud.azure.headers()).status == 200)
    }

    @Test func sandboxLookupsAreSparedUnlessNamed() async throws {
        let simulator = AWSSimulator()
        simulator.faults.inject(.emptyBody, times: 1)
        let lookup = await send(simulator, "GET", sandboxesPath + "/prod", headers: SimulatedCloud.aws.headers())
        #expect(lookup.status == 200 && !lookup.body.isEmpty)

        simulator.faults.inject(.status(500), times: 1, sandboxLookups: true)
        let faulted = await send(simulator, "GET", sandboxesPath + "/prod", headers: SimulatedCloud.aws.headers())
        #expect(faulted.status == 500)
        // The first rule still waits for a jobs call.
        #expect(await send(simulator, "GET", headers: SimulatedCloud.aws.headers()).body.isEmpty)
    }

    @Test func theSwitchIsControlledOverHTTPWithoutEnteringTheRequestLog() async throws {
        let simulator = AzureSimulator()
        let path = FaultSwitch.controlPath
        let added = await send(
            simulator, "POST", path, headers: HTTPHeaders(),
            body: #"{"fault": "status", "status": 429, "retryAfter": "5", "times": 2, "method": "GET"}"#)
        #expect(added.status == 200, "\(String(decoding: added.body, as: UTF8.self))")
        #expect(
            simulator.faults.pending == [
                .init(fault: .status(429, retryAfter: "5"), remaining: 2, method: "GET", sandboxLookups: false)
            ])

        let always = await send(
            simulator, "POST", path, headers: HTTPHeaders(),
            body: #"{"fault": "slow", "seconds": 0.01, "always": true}"#)
        #expect(always.status == 200)
        let listed = try object(await send(simulator, "GET", path, headers: HTTPHeaders()))
        let pending = try #require(listed["pending"] as? [[String: Any]])
        #expect(pending.count == 2)
        #expect(pending.first?["fault"] as? String == "status")
        #expect(pending.first?["status"] as? Int == 429)
        #expect(pending.first?["retryAfter"] as? String == "5")
        #expect(pending.first?["times"] as? Int == 2)
        #expect(pending.last?["fault"] as? String == "slow")
        #expect(pending.last?["always"] as? Bool == true)

        for body in [
            #"{"fault": "teapot"}"#, #"{"fault": "status", "status": 200}"#, #"{"fault": "slow"}"#, "[]",
            #"{"fault": "empty-body", "times": 0}"#,
        ] {
            let refused = await send(simulator, "POST", path, headers: HTTPHeaders(), body: body)
            #expect(refused.status == 400, "\(body)")
        }

        #expect(await send(simulator, "DELETE", path, headers: HTTPHeaders()).status == 200)
        #expect(simulator.faults.pending.isEmpty)
        #expect(simulator.receivedRequests.isEmpty)
    }

    // MARK: Through the gateway

    @Test func aPlatform503OnceIsRetriedAwayForALookup() async throws {
        try await withDemo { demo in
            demo.azure.faults.inject(.status(503), times: 1, method: "GET")
            let response = try await GatewayCaller(demo, orgId: DemoEnvironment.azureOrg).list()
            #expect(response.status == 200, "\(response.text)")
            #expect(Self.jobsCalls(demo.azure) == 2)
        }
    }

    @Test func aFailingSandboxLookupIsRetriedToo() async throws {
        try await withDemo { demo in
            demo.aws.faults.inject(.status(502), times: 1, method: "GET", sandboxLookups: true)
            let response = try await GatewayCaller(demo, orgId: DemoEnvironment.awsOrg).list()
            #expect(response.status == 200, "\(response.text)")
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 2)
            #expect(Self.jobsCalls(demo.aws) == 1)
        }
    }

    @Test(arguments: SimulatedCloud.allCases)
    func aCreateAnswered503IsSentOnceAndItsRetryAfterPassedOn(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let faults = cloud == .azure ? demo.azure.faults : demo.aws.faults
            faults.inject(.status(503, retryAfter: "4"), times: 3, method: "POST")
            let response = try await GatewayCaller(demo, orgId: cloud.orgId).create(#"{"datasetId": "d1"}"#)
            let problem = try response.expectProblem(status: 503, type: "/problems/upstream-unavailable")
            #expect(response.header("Retry-After") == "4")
            #expect(problem.string("detail")?.contains(cloud == .azure ? "Azure" : "AWS") == true)
            #expect(problem.object("upstream").string("message") == "Service unavailable")
            #expect(cloud.received(demo).filter { $0.method == "POST" }.count == 1)
            #expect(
                try GatewayAuditTests.records(demo, requestId: response.header("x-request-id")).outcome?.outcome
                    == .failed)
        }
    }

    @Test func aRemovalAnswered500IsSentOnce() async throws {
        try await withDemo { demo in
            demo.azure.faults.inject(.status(500), times: 3, method: "DELETE")
            let response = try await GatewayCaller(demo, orgId: DemoEnvironment.azureOrg).remove("job-1")
            try response.expectProblem(status: 502, type: "/problems/upstream-error")
            #expect(Self.jobsCalls(demo.azure, method: "DELETE") == 1)
        }
    }

    @Test func aRateLimitBeyondTheCapReachesTheCaller() async throws {
        try await withDemo { demo in
            demo.azure.faults.inject(.status(429, retryAfter: "9"), times: 1, method: "GET")
            let response = try await GatewayCaller(demo, orgId: DemoEnvironment.azureOrg).list()
            try response.expectProblem(status: 429, type: "/problems/upstream-refused")
            #expect(response.header("Retry-After") == "9")
            #expect(Self.jobsCalls(demo.azure) == 1)
        }
    }

    @Test(arguments: [
        (SimulatedFault.malformedJSON, "/problems/upstream-malformed", 502, 1),
        (.emptyBody, "/problems/upstream-malformed", 502, 1),
        (.htmlPage(status: 502), "/problems/upstream-error", 502, 3),
        (.htmlPage(status: 200), "/problems/upstream-malformed", 502, 1),
    ])
    func anUnusableAnswerIsAProblemNamingTheCloud(fault: SimulatedFault, type: String, status: Int, calls: Int)
        async throws
    {
        try await withDemo { demo in
            demo.aws.faults.inject(fault, times: nil, method: "GET")
            let response = try await GatewayCaller(demo, orgId: DemoEnvironment.awsOrg).list()
            let problem = try response.expectProblem(status: status, type: type)
            #expect(problem.string("detail")?.contains("AWS") == true)
            #expect(Self.jobsCalls(demo.aws) == calls)
        }
    }

    /// Azure answers a removal 200 with an empty body; a page or unreadable text in its place does not say the job
    /// is gone, and the caller must not be told it is.
    @Test(arguments: [SimulatedFault.htmlPage(status: 200), .malformedJSON])
    func aRemovalAnsweredWithAnUnreadableBodyIsNotReportedDone(fault: SimulatedFault) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let id = try #require(try await caller.createDatasetDelete("5c8c3c555033b814b69f9a10").string("id"))
            demo.azure.faults.inject(fault, times: 1, method: "DELETE")

            let response = try await caller.remove(id)
            let problem = try response.expectProblem(status: 502, type: "/problems/upstream-malformed")
            #expect(problem.string("detail")?.contains("list the jobs") == true)
            #expect(Self.jobsCalls(demo.azure, method: "DELETE") == 1, "a removal is never repeated")
            #expect(try await caller.get(id).status == 200, "the job is still there")
            try await poll(for: 30, "the removal's outcome is recorded as failed") {
                ((try? demo.auditRecords()) ?? []).contains {
                    $0.action == .removeJob && $0.outcome == .failed && $0.upstreamStatus == 200
                }
            }
        }
    }

    @Test func aSlowPlatformTimesOut() async throws {
        try await withDemo(configure: { $0.upstreamTimeoutSeconds = 0.3 }) { demo in
            demo.azure.faults.inject(.slow(seconds: 1), times: 1, method: "GET")
            let response = try await GatewayCaller(demo, orgId: DemoEnvironment.azureOrg).get("job-1")
            let problem = try response.expectProblem(status: 504, type: "/problems/upstream-timeout")
            #expect(problem.string("detail")?.contains("Azure") == true)
            #expect(Self.jobsCalls(demo.azure) == 1)
        }
    }

    @Test func aPlatformFailingOverAndOverOpensTheCircuit() async throws {
        try await withDemo(configure: { $0.upstreamPolicy.circuitBreakerOpenSeconds = 3600 }) { demo in
            demo.azure.faults.inject(.status(500), times: nil)
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            for _ in 0..<5 {
                try (try await caller.list()).expectProblem(status: 502, type: "/problems/upstream-error")
            }
            let fast = try await caller.create(#"{"datasetId": "d1"}"#)
            try fast.expectProblem(status: 503, type: "/problems/upstream-circuit-open")
            #expect(fast.header("Retry-After") != nil)
            #expect(Self.jobsCalls(demo.azure) == 5)
            #expect(Self.jobsCalls(demo.azure, method: "POST") == 0)

            // The AWS platform is another upstream, with a circuit of its own.
            #expect(try await GatewayCaller(demo, orgId: DemoEnvironment.awsOrg).list().status == 200)
        }
    }

    @Test func theDemoSwitchWorksOverHTTP() async throws {
        try await withDemo { demo in
            let control = RawHTTPClient(port: demo.azurePort)
            let added = try await control.sendOffPool(
                "POST", FaultSwitch.controlPath, headers: [("Content-Type", "application/json")],
                body: Array(#"{"fault": "status", "status": 503, "times": 2, "method": "GET"}"#.utf8))
            #expect(added.status == 200, "\(added.text)")

            let response = try await GatewayCaller(demo, orgId: DemoEnvironment.azureOrg).list()
            #expect(response.status == 200, "\(response.text)")
            #expect(Self.jobsCalls(demo.azure) == 3)
            #expect(demo.azure.faults.pending.isEmpty)
        }
    }
}
