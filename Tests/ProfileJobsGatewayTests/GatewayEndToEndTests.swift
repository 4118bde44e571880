import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// Every operation through the real gateway (libmicrohttpd in, libcurl out) against both simulated clouds.
@Suite struct GatewayEndToEndTests {
    /// Header names the gateway may send upstream: the allow-listed caller headers, the sandbox, and what HTTP
    /// itself needs.
    static let forwardable: Set<String> = [
        "authorization", "x-api-key", "x-gw-ims-org-id", "x-sandbox-name", "x-sandbox-id", "x-request-id",
        "traceparent", "tracestate", "accept", "content-type", "content-length", "host", "user-agent",
        "accept-encoding", "connection", "expect",
    ]

    static let canonicalKeys: Set<String> = [
        "id", "cloud", "orgId", "sandbox", "type", "upstreamType", "datasetId", "batchId", "status", "upstreamStatus",
        "metrics", "createdAt", "updatedAt",
    ]

    // MARK: List

    @Test(arguments: SimulatedCloud.allCases)
    func listAnswersTheCanonicalShape(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let response = try await caller.list()

            #expect(response.status == 200, "\(response.text)")
            #expect(response.header("Content-Type")?.hasPrefix("application/json") == true)
            let body = try response.jsonObject()
            #expect(Set(body.keys) == ["jobs", "page"])
            let jobs = try #require(body["jobs"] as? [[String: Any]])
            #expect(jobs.count == 2, "the demo seeds two jobs per organization")
            for job in jobs {
                #expect(Set(job.keys) == Self.canonicalKeys)
                #expect(job.string("cloud") == cloud.rawValue)
                #expect(job.string("orgId") == cloud.orgId)
                #expect(job.string("status") == "SUCCEEDED")
                #expect(job.object("sandbox").string("name") == "prod")
                #expect(job.object("sandbox").string("id") == SimulatorOptions.prodSandboxId)
            }
            #expect(Set(jobs.compactMap { $0.string("type") }) == ["DELETE_DATASET", "DELETE_BATCH"])
            let page = body.object("page")
            #expect(page["limit"] as? Int == 20)
            #expect(page.isNull("next"))
            #expect(page["total"] as? Int == 2)
        }
    }

    // MARK: Create

    @Test(arguments: SimulatedCloud.allCases, ["datasetId", "dataSetId"])
    func createsADatasetDeleteWithEitherSpelling(cloud: SimulatedCloud, spelling: String) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let response = try await caller.create(#"{"\#(spelling)": "5c8c3c555033b814b69f947f"}"#)

            #expect(response.status == 201, "\(response.text)")
            let job = try response.jsonObject()
            let id = try #require(job.string("id"))
            #expect(response.header("Location") == "/v1/system/jobs/\(id)")
            #expect(Set(job.keys) == Self.canonicalKeys)
            #expect(job.string("cloud") == cloud.rawValue)
            #expect(job.string("orgId") == cloud.orgId)
            #expect(job.string("type") == "DELETE_DATASET")
            #expect(job.string("datasetId") == "5c8c3c555033b814b69f947f")
            #expect(job.isNull("batchId"))
            #expect(job.string("status") == "QUEUED")
            #expect(job.string("upstreamStatus") == "NEW")
            #expect(job.isNull("metrics"))
            #expect(job.object("sandbox").string("name") == "prod")
            #expect(job.object("sandbox").string("id") == SimulatorOptions.prodSandboxId)

            let posts = jobCalls(cloud.received(demo), method: "POST")
            #expect(posts.count == 1)
            let body = try #require(posts.first?.jsonBody)
            #expect(sameJSON(body, ["dataSetId": "5c8c3c555033b814b69f947f"]), "\(body)")
            #expect(posts.first?.headers["Content-Type"] == "application/json")
        }
    }

    @Test(arguments: SimulatedCloud.allCases)
    func createsABatchDelete(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let response = try await caller.create(
                #"{"datasetId": "5c8c3c555033b814b69f947f", "batchId": "8d075b5a178e48389126b9289dcfd0ac"}"#)

            #expect(response.status == 201, "\(response.text)")
            let job = try response.jsonObject()
            #expect(response.header("Location") == "/v1/system/jobs/\(job.string("id") ?? "?")")
            #expect(job.string("type") == "DELETE_BATCH")
            #expect(job.string("upstreamType") == (cloud == .azure ? "DELETE" : "DELETE_EE_BATCH"))
            #expect(job.string("datasetId") == "5c8c3c555033b814b69f947f")
            #expect(job.string("batchId") == "8d075b5a178e48389126b9289dcfd0ac")
            #expect(job.string("status") == "QUEUED")
            #expect(job.string("upstreamStatus") == "NEW")

            let body = try #require(jobCalls(cloud.received(demo), method: "POST").first?.jsonBody)
            #expect(
                sameJSON(
                    body, ["datasetId": "5c8c3c555033b814b69f947f", "batchId": "8d075b5a178e48389126b9289dcfd0ac"]),
                "\(body)")
        }
    }

    @Test func batchAloneIsForwardedAsSuchOnAzure() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let response = try await caller.create(#"{"batchId": "8d075b5a178e48389126b9289dcfd0ac"}"#)

            #expect(response.status == 201, "\(response.text)")
            let job = try response.jsonObject()
            #expect(job.string("type") == "DELETE_BATCH")
            #expect(job.string("batchId") == "8d075b5a178e48389126b9289dcfd0ac")
            #expect(job.isNull("datasetId"))

            let body = try #require(jobCalls(demo.azure.receivedRequests, method: "POST").first?.jsonBody)
            #expect(sameJSON(body, ["batchId": "8d075b5a178e48389126b9289dcfd0ac"]), "\(body)")
        }
    }

    @Test func batchAloneIsRefusedOnAWSWithoutCallingIt() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let response = try await caller.create(#"{"batchId": "01JFSYFDFW9JAAEKHX672JMPSB"}"#)

            let problem = try response.expectProblem(status: 400, type: "/problems/batch-needs-dataset")
            #expect(problem.string("detail")?.contains(DemoEnvironment.awsOrg) == true)
            #expect(jobCalls(demo.aws.receivedRequests, method: "POST").isEmpty)
        }
    }

    // MARK: Get and remove

    @Test(arguments: SimulatedCloud.allCases)
    func getsOneJobInCanonicalForm(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let created = try await caller.createDatasetDelete("5c8c3c555033b814b69f947f")
            let id = try #require(created.string("id"))

            let response = try await caller.get(id)
            #expect(response.status == 200, "\(response.text)")
            let job = try response.jsonObject()
            #expect(Set(job.keys) == Self.canonicalKeys)
            #expect(job.string("id") == id)
            #expect(job.string("cloud") == cloud.rawValue)
            #expect(job.string("type") == "DELETE_DATASET")
            #expect(job.string("datasetId") == "5c8c3c555033b814b69f947f")
            #expect(job.object("sandbox").string("id") == SimulatorOptions.prodSandboxId)
            #expect(job.string("createdAt") == created.string("createdAt"))

            let gets = jobCalls(cloud.received(demo), method: "GET").filter { $0.path == jobsPath + "/" + id }
            #expect(gets.count == 1)
        }
    }

    @Test func removesAJobOnAzureAndItIsGoneAfterwards() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let id = try #require(try await caller.createDatasetDelete("5c8c3c555033b814b69f947f").string("id"))

            let removed = try await caller.remove(id)
            #expect(removed.status == 204, "\(removed.text)")
            #expect(removed.body.isEmpty)
            let deletes = jobCalls(demo.azure.receivedRequests, method: "DELETE")
            #expect(deletes.map(\.path) == [jobsPath + "/" + id])

            let after = try await caller.get(id)
            let problem = try after.expectProblem(status: 404, type: "/problems/upstream-refused")
            #expect(problem.object("upstream")["status"] as? Int == 404)
        }
    }

    @Test func removalOnAWSIsRefusedByTheGatewayItself() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let id = try #require(try await caller.createDatasetDelete("5c8c3c555033b814b69f947f").string("id"))

            let response = try await caller.remove(id)
            let problem = try response.expectProblem(status: 501, type: "/problems/operation-not-supported")
            #expect(problem.string("detail")?.contains(DemoEnvironment.awsOrg) == true)
            #expect(problem.string("detail")?.contains(id) == true)
            #expect(problem["upstream"] == nil)
            #expect(!demo.aws.receivedRequests.contains { $0.method == "DELETE" })

            // The job is left as it was.
            #expect(try await caller.get(id).status == 200)
        }
    }

    // MARK: What reaches the upstream

    /// Whitespace around a field value is not part of it (RFC 9110): a padded organization id is still routed.
    @Test func whitespaceAroundHeaderValuesIsNotPartOfThem() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: " \(DemoEnvironment.azureOrg) \t ")
            let response = try await caller.list(headers: [("x-sandbox-name", "prod  ")])
            #expect(response.status == 200, "\(response.text)")
            let request = try #require(jobCalls(demo.azure.receivedRequests).last)
            #expect(request.headers["x-gw-ims-org-id"] == DemoEnvironment.azureOrg)
            #expect(request.headers["x-sandbox-name"] == "prod")
        }
    }

    @Test func azureGetsTheSandboxNameAndOnlyAllowListedHeaders() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let response = try await caller.list(headers: Self.strayHeaders + [("x-sandbox-name", "prod")])
            #expect(response.status == 200, "\(response.text)")

            let request = try #require(jobCalls(demo.azure.receivedRequests).last)
            #expect(request.headers["x-sandbox-name"] == "prod")
            #expect(request.headers["x-sandbox-id"] == nil)
            Self.expectOnlyAllowListed(
                request, token: "svc-token", orgId: DemoEnvironment.azureOrg, host: "127.0.0.1:\(demo.azurePort)")
        }
    }

    @Test func awsGetsTheSandboxIdAndOnlyAllowListedHeaders() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let response = try await caller.list(headers: Self.strayHeaders + [("x-sandbox-name", "prod")])
            #expect(response.status == 200, "\(response.text)")

            let request = try #require(jobCalls(demo.aws.receivedRequests).last)
            #expect(request.headers["x-sandbox-id"] == SimulatorOptions.prodSandboxId)
            #expect(request.headers["x-sandbox-name"] == nil)
            Self.expectOnlyAllowListed(
                request, token: "svc-token", orgId: DemoEnvironment.awsOrg, host: "127.0.0.1:\(demo.awsPort)")

            let lookup = try #require(sandboxLookups(demo.aws.receivedRequests).first)
            #expect(lookup.headers["Cookie"] == nil)
            #expect(lookup.headers["X-Secret-Internal"] == nil)
        }
    }

    @Test(arguments: SimulatedCloud.allCases)
    func requestIdsAndTraceContextAreKeptAndForwarded(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            let given = try await caller.list(headers: [
                ("x-request-id", "caller-req-42"), ("traceparent", traceparent), ("tracestate", "vendor=1"),
            ])
            #expect(given.status == 200)
            #expect(given.header("x-request-id") == "caller-req-42")
            let forwarded = try #require(jobCalls(cloud.received(demo)).last)
            #expect(forwarded.headers["x-request-id"] == "caller-req-42")
            #expect(forwarded.headers["traceparent"] == traceparent)
            #expect(forwarded.headers["tracestate"] == "vendor=1")

            // Without one, or with one that is not well-formed, the gateway makes its own and forwards it.
            for headers in [[], [("x-request-id", "bad id\twith spaces")]] {
                let made = try await caller.list(headers: headers)
                let id = try #require(made.header("x-request-id"))
                #expect(!id.isEmpty && id != "bad id\twith spaces")
                #expect(jobCalls(cloud.received(demo)).last?.headers["x-request-id"] == id)
            }
        }
    }

    /// Headers a caller may send that must never reach the platform: its own secrets and cookies, proxy
    /// information, and the hop-by-hop headers of RFC 9110 that belong to the caller's connection only.
    static let strayHeaders = [
        ("X-Secret-Internal", "1"), ("Cookie", "a=b"), ("X-Forwarded-For", "10.0.0.1"), ("Origin", "https://x.example"),
        ("Forwarded", "for=192.0.2.60"), ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"), ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"), ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"), ("X-Api-Version", "2"),
    ]

    static func expectOnlyAllowListed(
        _ request: HTTPRequest,
        token: String,
        orgId: String,
        host: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(request.headers["Authorization"] == "Bearer \(token)", sourceLocation: sourceLocation)
        #expect(request.headers["x-api-key"] == "k", sourceLocation: sourceLocation)
        #expect(request.headers["x-gw-ims-org-id"] == orgId, sourceLocation: sourceLocation)
        #expect(request.headers["x-request-id"]?.isEmpty == false, sourceLocation: sourceLocation)
        for (name, _) in strayHeaders {
            #expect(request.headers[name] == nil, "\(name) reached the upstream", sourceLocation: sourceLocation)
        }
        // The caller's connection options and Host are its own: the platform sees the gateway's.
        #expect(request.headers["Connection"]?.lowercased() != "close", sourceLocation: sourceLocation)
        #expect(request.headers["Host"] == host, sourceLocation: sourceLocation)
        let unexpected = request.headers.map { $0.name.lowercased() }.filter { !forwardable.contains($0) }
        #expect(unexpected.isEmpty, "headers beyond the allow-list: \(unexpected)", sourceLocation: sourceLocation)
    }

    // MARK: States

    @Test(arguments: SimulatedCloud.allCases)
    func jobsMoveFromQueuedThroughRunningToSucceeded(cloud: SimulatedCloud) async throws {
        let clock = TestClock()
        try await withDemo(simulatorOptions: clock.options) { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let created = try await caller.createDatasetDelete("5c8c3c555033b814b69f947f")
            let id = try #require(created.string("id"))
            #expect(created.string("status") == "QUEUED")

            clock.advance(clock.options.runningAfter + 1)
            let running = try await caller.get(id).jsonObject()
            #expect(running.string("status") == "RUNNING")
            #expect(running.string("upstreamStatus") == (cloud == .azure ? "PROCESSING" : "IN-PROGRESS"))

            clock.advance(clock.options.finishedAfter)
            let finished = try await caller.get(id).jsonObject()
            #expect(finished.string("status") == "SUCCEEDED")
            #expect(finished.string("upstreamStatus") == (cloud == .azure ? "COMPLETED" : "SUCCESS"))
            #expect(finished.string("createdAt") == created.string("createdAt"))
            #expect(finished.string("updatedAt") != created.string("updatedAt"))
            if cloud == .azure {
                let metrics = finished.object("metrics")
                #expect(metrics["recordsProcessed"] is Int)
                #expect(metrics["durationSeconds"] is Int)
            } else {
                #expect(finished.isNull("metrics"), "AWS sends no metrics; none may be invented")
            }

            // The list shows the same state.
            let listed = try await caller.list().jsonObject()["jobs"] as? [[String: Any]] ?? []
            #expect(listed.first { $0.string("id") == id }?.string("status") == "SUCCEEDED")
        }
    }
}

extension SimulatedCloud {
    var orgId: String {
        switch self {
        case .azure: DemoEnvironment.azureOrg
        case .aws: DemoEnvironment.awsOrg
        }
    }

    func received(_ demo: DemoEnvironment) -> [HTTPRequest] {
        switch self {
        case .azure: demo.azure.receivedRequests
        case .aws: demo.aws.receivedRequests
        }
    }
}
