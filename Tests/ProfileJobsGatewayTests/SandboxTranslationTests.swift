import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// Sandbox names become ids for AWS (map, then cached and coalesced lookups) and stay names for Azure.
@Suite struct SandboxTranslationTests {
    static let devSandboxId = "0d6f7d3e-5c1e-4e1b-9a41-3f1f5d2b7c90"

    /// Simulated platforms that know a second sandbox, `dev`.
    static var twoSandboxes: SimulatorOptions {
        SimulatorOptions(sandboxes: ["prod": SimulatorOptions.prodSandboxId, "dev": devSandboxId])
    }

    @Test func aMappedSandboxNeedsNoLookup() async throws {
        try await withDemo(configure: {
            $0.organizations[DemoEnvironment.awsOrg]?.sandboxes = ["prod": SimulatorOptions.prodSandboxId]
        }) {
            (demo: DemoEnvironment) async throws in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            for _ in 1...3 {
                #expect(try await caller.list(headers: [("x-sandbox-name", "prod")]).status == 200)
            }
            #expect(try await caller.list().status == 200, "the default sandbox is mapped too")
            #expect(sandboxLookups(demo.aws.receivedRequests).isEmpty)
            #expect(jobCalls(demo.aws.receivedRequests).count == 4)
            #expect(
                jobCalls(demo.aws.receivedRequests).allSatisfy {
                    $0.headers["x-sandbox-id"] == SimulatorOptions.prodSandboxId
                })
        }
    }

    @Test func anUnmappedSandboxIsLookedUpOnceThenCached() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let first = try await caller.list(headers: [("x-request-id", "first-call")])
            #expect(first.status == 200, "\(first.text)")

            let lookups = sandboxLookups(demo.aws.receivedRequests)
            #expect(lookups.count == 1)
            let lookup = try #require(lookups.first)
            #expect(lookup.method == "GET")
            #expect(lookup.path == sandboxesPath + "/prod")
            #expect(lookup.headers["Authorization"] == "Bearer svc-token")
            #expect(lookup.headers["x-api-key"] == "k")
            #expect(lookup.headers["x-gw-ims-org-id"] == DemoEnvironment.awsOrg)
            #expect(lookup.headers["x-request-id"] == "first-call")

            for _ in 1...3 {
                #expect(try await caller.list(headers: [("x-sandbox-name", "prod")]).status == 200)
            }
            // Another caller's credentials use the cached id too.
            var other = caller
            other.token = "user-someone"
            #expect(try await other.list().status == 200)

            #expect(sandboxLookups(demo.aws.receivedRequests).count == 1)
            #expect(jobCalls(demo.aws.receivedRequests).count == 5)
            let statistics = await demo.gateway.sandboxes.statistics
            #expect(statistics.lookups == 1)
        }
    }

    @Test func concurrentFirstCallsShareOneLookup() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 1...20 {
                    group.addTask { try await caller.list().status }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 20))
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 1)
            #expect(jobCalls(demo.aws.receivedRequests).count == 20)
        }
    }

    @Test func aUserTokenWithoutIdGetsAnActionableProblemAndNoJobCall() async throws {
        try await withDemo(configure: { $0.sandboxFailureCacheSeconds = 600 }) { demo in
            var caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            caller.token = "user-x"
            let response = try await caller.create(#"{"datasetId": "d1"}"#)

            let problem = try response.expectProblem(status: 400, type: "/problems/sandbox-id-unavailable")
            let detail = try #require(problem.string("detail"))
            #expect(detail.contains(DemoEnvironment.awsOrg))
            #expect(detail.contains("'prod'"))
            #expect(detail.contains("x-sandbox-id"))
            #expect(jobCalls(demo.aws.receivedRequests).isEmpty)
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 1)

            // The failure is remembered for a while: the next call makes no new lookup.
            let again = try await caller.list()
            try again.expectProblem(status: 400, type: "/problems/sandbox-id-unavailable")
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 1)
            #expect(jobCalls(demo.aws.receivedRequests).isEmpty)

            // A caller who brings the id is not held up by that failure.
            let withId = try await caller.list(headers: [("x-sandbox-id", SimulatorOptions.prodSandboxId)])
            #expect(withId.status == 200, "\(withId.text)")
        }
    }

    @Test func aFailedLookupIsRetriedOnceItsShortCacheExpires() async throws {
        try await withDemo(configure: { $0.sandboxFailureCacheSeconds = 0.001 }) { demo in
            var caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            caller.token = "user-x"
            try await caller.list().expectProblem(status: 400, type: "/problems/sandbox-id-unavailable")
            try await Task.sleep(for: .milliseconds(20))

            try await caller.list().expectProblem(status: 400, type: "/problems/sandbox-id-unavailable")
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 2)
        }
    }

    /// A lookup that fails stops a create before anything is sent: the caller is told so, with the time until the
    /// gateway asks again, both when the lookup fails and when its failure is answered from the cache.
    @Test func aFailedLookupSaysNothingWasSentAndWhenToRetry() async throws {
        try await withDemo(configure: { $0.sandboxFailureCacheSeconds = 600 }) { demo in
            demo.aws.faults.inject(.htmlPage(status: 502), times: 3, method: "GET", sandboxLookups: true)
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)

            for attempt in ["fresh", "cached"] {
                let response = try await caller.create(#"{"datasetId": "5c802d3cd83fc114b741c4b5"}"#)
                let problem = try response.expectProblem(status: 502, type: "/problems/upstream-error")
                let detail = problem.string("detail") ?? ""
                #expect(detail.contains("id of sandbox 'prod'"), "\(attempt): \(detail)")
                #expect(detail.contains("Nothing was sent"), "\(attempt): \(detail)")
                #expect(!detail.contains("may have been carried out"), "\(attempt): \(detail)")
                let seconds = try #require(Int(response.header("Retry-After") ?? ""), "\(attempt)")
                #expect((1...600).contains(seconds), "\(attempt)")
                let (intent, outcome) = try GatewayAuditTests.records(demo, requestId: response.header("x-request-id"))
                #expect(intent == nil, "\(attempt)")
                #expect(outcome?.outcome == .refused, "\(attempt)")
            }
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 3, "the first call's lookup was tried 3 times")
            #expect(jobCalls(demo.aws.receivedRequests).isEmpty)
        }
    }

    /// A user token's failure is about that token: other credentials look the sandbox up for themselves.
    @Test func oneCallersFailureIsNotAnothersAnswer() async throws {
        try await withDemo(configure: { $0.sandboxFailureCacheSeconds = 600 }) { demo in
            var user = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            user.token = "user-x"
            try await user.list().expectProblem(status: 400, type: "/problems/sandbox-id-unavailable")

            let service = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let answer = try await service.list()

            #expect(answer.status == 200, "\(answer.text)")
            #expect(sandboxLookups(demo.aws.receivedRequests).count == 2)
        }
    }

    /// Lookups are shared only among callers with the same credentials, so one bad token in a burst fails alone.
    @Test func aBadTokenInABurstFailsAlone() async throws {
        try await withDemo { demo in
            let outcomes = try await withThrowingTaskGroup(of: (String, Int).self) { group in
                for index in 0..<12 {
                    group.addTask {
                        var caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
                        caller.token = index == 0 ? "invalid-x" : "svc-token"
                        return (caller.token, try await caller.list().status)
                    }
                }
                return try await group.reduce(into: [(String, Int)]()) { $0.append($1) }
            }

            for (token, status) in outcomes {
                #expect(status == (token == "invalid-x" ? 401 : 200), "\(token): \(status)")
            }
        }
    }

    @Test func aCallerSentSandboxIdIsUsedAsIs() async throws {
        try await withDemo(simulatorOptions: Self.twoSandboxes) { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let response = try await caller.create(
                #"{"datasetId": "d1"}"#, headers: [("x-sandbox-id", Self.devSandboxId)])
            #expect(response.status == 201, "\(response.text)")
            let job = try response.jsonObject()
            #expect(job.object("sandbox").string("id") == Self.devSandboxId)
            #expect(job.object("sandbox").string("name") == "dev")

            #expect(sandboxLookups(demo.aws.receivedRequests).isEmpty)
            let post = try #require(jobCalls(demo.aws.receivedRequests, method: "POST").first)
            #expect(post.headers["x-sandbox-id"] == Self.devSandboxId)
            #expect(post.headers["x-sandbox-name"] == nil)
        }
    }

    @Test func anUnknownSandboxNameComesBackAsTheUpstreamRefusal() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let response = try await caller.list(headers: [("x-sandbox-name", "nosuch")])
            let problem = try response.expectProblem(status: 404, type: "/problems/upstream-refused")
            let upstream = problem.object("upstream")
            #expect(upstream["status"] as? Int == 404)
            #expect(upstream.string("message")?.contains("nosuch") == true)
            #expect(sandboxLookups(demo.aws.receivedRequests).map(\.path) == [sandboxesPath + "/nosuch"])
            #expect(jobCalls(demo.aws.receivedRequests).isEmpty)
        }
    }

    @Test func azureForwardsTheSandboxNameAsIsAndDefaultsIt() async throws {
        try await withDemo(simulatorOptions: Self.twoSandboxes) { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let named = try await caller.create(#"{"datasetId": "d1"}"#, headers: [("x-sandbox-name", "dev")])
            #expect(named.status == 201, "\(named.text)")
            #expect(try named.jsonObject().object("sandbox").string("name") == "dev")
            #expect(jobCalls(demo.azure.receivedRequests).last?.headers["x-sandbox-name"] == "dev")

            #expect(try await caller.list().status == 200)
            let defaulted = try #require(jobCalls(demo.azure.receivedRequests).last)
            #expect(defaulted.headers["x-sandbox-name"] == "prod")
            #expect(defaulted.headers["x-sandbox-id"] == nil)
            #expect(sandboxLookups(demo.azure.receivedRequests).isEmpty)
        }
    }

    @Test func theOrganizationsDefaultSandboxIsUsedWhenNoneIsNamed() async throws {
        try await withDemo(
            simulatorOptions: Self.twoSandboxes,
            configure: { configuration in
                configuration.organizations[DemoEnvironment.azureOrg]?.defaultSandbox = "dev"
                configuration.organizations[DemoEnvironment.awsOrg]?.defaultSandbox = "dev"
            }
        ) { (demo: DemoEnvironment) async throws in
            #expect(try await GatewayCaller(demo, orgId: DemoEnvironment.azureOrg).list().status == 200)
            #expect(jobCalls(demo.azure.receivedRequests).last?.headers["x-sandbox-name"] == "dev")

            #expect(try await GatewayCaller(demo, orgId: DemoEnvironment.awsOrg).list().status == 200)
            #expect(sandboxLookups(demo.aws.receivedRequests).map(\.path) == [sandboxesPath + "/dev"])
            #expect(jobCalls(demo.aws.receivedRequests).last?.headers["x-sandbox-id"] == Self.devSandboxId)
        }
    }

    /// A name and an id together could reach different sandboxes on the two clouds, so they must agree.
    @Test func aSandboxNameAndIdThatMayDisagreeAreRefused() async throws {
        try await withDemo(configure: {
            $0.organizations[DemoEnvironment.awsOrg]?.sandboxes = ["prod": SimulatorOptions.prodSandboxId]
        }) { demo in
            for orgId in [DemoEnvironment.azureOrg, DemoEnvironment.awsOrg] {
                let caller = GatewayCaller(demo, orgId: orgId)
                let both = [("x-sandbox-name", "dev"), ("x-sandbox-id", SimulatorOptions.prodSandboxId)]
                try await caller.list(headers: both).expectProblem(status: 400, type: "/problems/invalid-header")

                let agreeing = [("x-sandbox-name", "prod"), ("x-sandbox-id", SimulatorOptions.prodSandboxId)]
                #expect(try await caller.list(headers: agreeing).status == 200)
            }
            #expect(jobCalls(demo.aws.receivedRequests).count == 1)
            #expect(jobCalls(demo.azure.receivedRequests).count == 1)
        }
    }

    @Test func azureRefusesAnIdItCannotName() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let unknown = try await caller.list(headers: [("x-sandbox-id", Self.devSandboxId)])
            try unknown.expectProblem(status: 400, type: "/problems/invalid-header")
            #expect(demo.azure.receivedRequests.isEmpty)

            // An id the map knows is sent as its name.
            let known = try await caller.list(headers: [("x-sandbox-id", SimulatorOptions.prodSandboxId)])
            #expect(known.status == 200, "\(known.text)")
            #expect(jobCalls(demo.azure.receivedRequests).last?.headers["x-sandbox-name"] == "prod")
            #expect(jobCalls(demo.azure.receivedRequests).last?.headers["x-sandbox-id"] == nil)
        }
    }
}
