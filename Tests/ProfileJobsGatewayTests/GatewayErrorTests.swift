import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// The gateway's own refusals and the simulated platforms' refusals, each as one RFC 9457 problem.
@Suite struct GatewayErrorTests {
    // MARK: Headers and routing

    @Test(arguments: SimulatedCloud.allCases, ["Authorization", "x-api-key", "x-gw-ims-org-id"])
    func aMissingRequiredHeaderIsABadRequest(cloud: SimulatedCloud, header: String) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            for (method, target, body) in [
                ("GET", "/v1/system/jobs", nil), ("GET", "/v1/system/jobs/abc", nil),
                ("POST", "/v1/system/jobs", #"{"datasetId": "d1"}"#), ("DELETE", "/v1/system/jobs/abc", nil),
            ] {
                let response = try await caller.call(method, target, omitting: [header], body: body)
                let problem = try response.expectProblem(status: 400, type: "/problems/missing-header")
                #expect(problem.string("detail")?.contains(header) == true, "\(method) \(target): \(response.text)")
            }
            #expect(cloud.received(demo).isEmpty)
        }
    }

    @Test func anEmptyRequiredHeaderCountsAsMissing() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let response = try await RawHTTPClient(port: demo.gatewayPort).sendOffPool(
                "GET", "/v1/system/jobs",
                headers: caller.headers(omitting: ["x-api-key"]) + [("x-api-key", "")])
            try response.expectProblem(status: 400, type: "/problems/missing-header")
        }
    }

    @Test func anOrganizationWithoutARouteIsForbidden() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: "nobody@AdobeOrg")
            for response in [
                try await caller.list(), try await caller.get("abc"), try await caller.remove("abc"),
                try await caller.create(#"{"datasetId": "d1"}"#),
            ] {
                let problem = try response.expectProblem(status: 403, type: "/problems/unknown-organization")
                #expect(problem.string("detail")?.contains("nobody@AdobeOrg") == true)
            }
            #expect(demo.azure.receivedRequests.isEmpty && demo.aws.receivedRequests.isEmpty)
        }
    }

    @Test func anOversizedBodyIsAProblemAndNeverForwarded() async throws {
        try await withDemo { demo in
            let padding = String(repeating: "x", count: 70 * 1024)
            for orgId in [DemoEnvironment.azureOrg, DemoEnvironment.awsOrg] {
                let response = try await GatewayCaller(demo, orgId: orgId).create(
                    #"{"datasetId": "d1", "pad": "\#(padding)"}"#)

                let problem = try response.expectProblem(status: 413, type: "/problems/body-too-large")
                #expect(problem.string("detail")?.contains("65536 bytes") == true)
            }
            #expect(demo.azure.receivedRequests.allSatisfy { $0.method != "POST" })
            #expect(demo.aws.receivedRequests.allSatisfy { $0.method != "POST" })
        }
    }

    /// Credentials are passed on verbatim, so a value that could confuse the platform's parser, or an oversized
    /// one, is refused without being echoed back.
    @Test func oddOrOversizedCredentialsAreRefusedWithoutEchoingThem() async throws {
        // A header budget above the 8,192 bytes a token may have, so that limit, not the budget, refuses the long one.
        try await withDemo(configure: { $0.clientLimits.maxHeaderBytes = 16 * 1024 }) { demo in
            let cases: [(String, String)] = [
                ("Authorization", "Bearer secret\u{01}token"),
                ("Authorization", "Bearer " + String(repeating: "t", count: 9000)),
                ("x-api-key", "secret\u{7F}key"), ("x-api-key", String(repeating: "k", count: 300)),
            ]
            for cloud in SimulatedCloud.allCases {
                for (name, value) in cases {
                    var caller = GatewayCaller(demo, orgId: cloud.orgId)
                    if name == "Authorization" {
                        caller.token = String(value.dropFirst("Bearer ".count))
                    } else {
                        caller.apiKey = value
                    }
                    let response = try await caller.create(#"{"datasetId": "odd-credential"}"#)
                    let problem = try response.expectProblem(status: 400, type: "/problems/invalid-header")
                    let detail = try #require(problem.string("detail"))
                    #expect(detail.contains(name))
                    #expect(!response.text.contains("secret") && !response.text.contains("tttt"))
                    #expect(!response.text.contains("kkkk"))
                }
            }
            #expect(demo.azure.receivedRequests.isEmpty && demo.aws.receivedRequests.isEmpty)
        }
    }

    @Test func aBadSandboxHeaderIsRefusedBeforeAnyUpstreamCall() async throws {
        try await withDemo { demo in
            for cloud in SimulatedCloud.allCases {
                let caller = GatewayCaller(demo, orgId: cloud.orgId)
                for header in ["x-sandbox-name", "x-sandbox-id"] {
                    for value in ["../prod", ""] {
                        let response = try await caller.list(headers: [(header, value)])
                        let problem = try response.expectProblem(status: 400, type: "/problems/invalid-header")
                        #expect(problem.string("detail")?.contains(header) == true)
                    }
                }
            }
            #expect(demo.azure.receivedRequests.isEmpty && demo.aws.receivedRequests.isEmpty)
        }
    }

    @Test func wrongMethodsAnswer405WithAllow() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            for (method, target, allow) in [
                ("PUT", "/v1/system/jobs", "GET, HEAD, POST"), ("DELETE", "/v1/system/jobs", "GET, HEAD, POST"),
                ("PATCH", "/v1/system/jobs/abc", "GET, HEAD, DELETE"),
                ("POST", "/v1/system/jobs/abc", "GET, HEAD, DELETE"),
            ] {
                let response = try await caller.call(method, target)
                try response.expectProblem(status: 405, type: "/problems/method-not-allowed")
                #expect(response.header("Allow") == allow, "\(method) \(target)")
            }
            #expect(demo.azure.receivedRequests.isEmpty)
        }
    }

    /// HEAD is answered wherever GET is, with GET's status and headers and no body, and is never a deletion.
    @Test(arguments: SimulatedCloud.allCases)
    func headIsAnsweredLikeGetWithoutABody(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let id = try #require(try await caller.createDatasetDelete("5c802d3cd83fc114b741c4b5").string("id"))
            for target in ["/v1/system/jobs", "/v1/system/jobs/\(id)", "/data/core/ups/system/jobs/\(id)"] {
                let get = try await caller.call("GET", target)
                let head = try await caller.call("HEAD", target)
                #expect(head.status == get.status, "\(target)")
                #expect(head.status == 200, "\(target): \(get.text)")
                #expect(head.body.isEmpty, "\(target)")
                #expect(head.header("Content-Type") == get.header("Content-Type"), "\(target)")
            }
            #expect(jobCalls(cloud.received(demo), method: "DELETE").isEmpty)
            #expect(jobCalls(cloud.received(demo), method: "HEAD").isEmpty, "the platform is asked with GET")
        }
    }

    @Test func unknownPathsAreNotFound() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            // `/data/core/ups/system/jobs` itself is the Azure-dialect surface; its neighbours are not.
            for target in [
                "/", "/v2/system/jobs", "/v1/system/jobsx", "/v1/system", "/data/core/ups/system/jobsx",
                "/data/core/ups/system",
            ] {
                let response = try await caller.call("GET", target)
                try response.expectProblem(status: 404, type: "/problems/not-found")
            }
            #expect(demo.azure.receivedRequests.isEmpty)
        }
    }

    // MARK: Ids and bodies

    @Test(arguments: SimulatedCloud.allCases)
    func malformedIdsInThePathAreRefused(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let ids = [
                "..", "a%2Fb", "a%2F..%2F..%2Fsandboxes", "a/b", "a.b", "%00", String(repeating: "a", count: 129),
            ]
            for id in ids {
                for method in ["GET", "DELETE"] {
                    let response = try await caller.call(method, "/v1/system/jobs/" + id)
                    #expect(response.status == 400, "\(method) \(id): \(response.text)")
                    try response.expectProblem(status: 400, type: "/problems/invalid-id")
                }
            }
            #expect(jobCalls(cloud.received(demo)).isEmpty)

            // The longest id allowed still goes through (and is unknown upstream).
            let longest = try await caller.get(String(repeating: "a", count: 128))
            try longest.expectProblem(status: 404, type: "/problems/upstream-refused")
        }
    }

    static let badBodies: [(body: String, mentions: String)] = [
        ("", "empty"),
        ("{\"datasetId\": ", "not valid JSON"),
        (#"{"datasetId": "d1",}"#, "not valid JSON"),
        (#"{"datasetId": "d1", "batchId": "b1",}"#, "not valid JSON"),
        ("[\"d1\"]", "JSON object"),
        (#"{"datasetId": "d1", "sandbox": "prod"}"#, "sandbox"),
        (#"{"datasetId": 42}"#, "datasetId"),
        (#"{"datasetId": null}"#, "datasetId"),
        (#"{"datasetId": "d1", "batchId": ["b"]}"#, "batchId"),
        (#"{"datasetId": "d1", "dataSetId": "d2"}"#, "different"),
        (#"{"datasetId": "d1", "datasetId": "d2"}"#, "more than once"),
        (#"{"datasetId": "d1", "batchId": "b1", "\u0064atasetId": "d1"}"#, "more than once"),
        ("{}", "datasetId"),
        (#"{"datasetId": "../d1"}"#, "datasetId"),
    ]

    @Test(arguments: SimulatedCloud.allCases)
    func badBodiesAreRefusedBeforeAnyUpstreamCall(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            for (body, mentions) in Self.badBodies {
                let response = try await caller.create(body)
                let type =
                    mentions == "datasetId" && body.contains("..") ? "/problems/invalid-id" : "/problems/invalid-body"
                let problem = try response.expectProblem(status: 400, type: type)
                #expect(problem.string("detail")?.contains(mentions) == true, "\(body): \(response.text)")
            }
            #expect(jobCalls(cloud.received(demo), method: "POST").isEmpty)
        }
    }

    @Test(arguments: SimulatedCloud.allCases)
    func aBodyThatIsNotDeclaredJSONIsUnsupported(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            for contentType in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
                let response = try await caller.call(
                    "POST", "/v1/system/jobs", body: #"{"datasetId": "d1"}"#, contentType: contentType)
                let problem = try response.expectProblem(status: 415, type: "/problems/unsupported-media-type")
                #expect(problem.string("detail")?.contains(contentType) == true)
            }
            let none = try await caller.call("POST", "/v1/system/jobs", body: #"{"datasetId": "d1"}"#, contentType: nil)
            try none.expectProblem(status: 415, type: "/problems/unsupported-media-type")

            // Parameters and case do not matter.
            let withCharset = try await caller.call(
                "POST", "/v1/system/jobs", body: #"{"datasetId": "d1"}"#,
                contentType: "Application/JSON; charset=utf-8")
            #expect(withCharset.status == 201, "\(withCharset.text)")
            #expect(jobCalls(cloud.received(demo), method: "POST").count == 1)
        }
    }

    // MARK: Refusals from the platform

    @Test func aRecordDatasetBatchIsRefusedAsAzureSaysIt() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let dataset = SimulatorOptions.documentedRecordDataset
            let response = try await caller.create(#"{"datasetId": "\#(dataset)", "batchId": "b1"}"#)

            let problem = try response.expectProblem(status: 400, type: "/problems/upstream-refused")
            let upstream = problem.object("upstream")
            #expect(upstream["status"] as? Int == 400)
            #expect(upstream.string("code") == "500")
            #expect(upstream.string("message") == "Batch can only be specified for EE type '\(dataset)'")
            #expect(upstream.string("requestId")?.isEmpty == false)
            #expect(problem.string("detail")?.contains("Batch can only be specified") == true)
            #expect(problem.string("detail")?.contains("send {\"datasetId\": \"<id>\"} without a batchId") == true)
        }
    }

    /// The advice fits the call: a failed lookup is simply repeated, a failed deletion may have happened.
    @Test func aFailureAdvisesAccordingToWhatWasAsked() {
        let detail = UpstreamErrorDetail(status: 500, code: nil, message: "Platform trouble", requestId: nil, type: nil)
        let failures: [GatewayError] = [
            .upstreamFailed(cloud: .azure, detail), .upstreamTimedOut(cloud: .aws, reason: "30 s"),
            .upstreamMalformed(cloud: .azure, reason: "not JSON"),
            .upstreamConnectionLost(cloud: .aws, reason: "reset"),
        ]
        for failure in failures {
            for call in [CallKind.list, .lookup] {
                let text = failure.problem(for: call).detail
                #expect(text.contains("can be retried as it is"), "\(failure) \(call): \(text)")
                #expect(!text.contains("create"), "\(failure) \(call): \(text)")
            }
            let deletion = failure.problem(for: .deletion).detail
            #expect(deletion.contains("may have carried the call out"), "\(failure): \(deletion)")
        }

        let missing = UpstreamErrorDetail(status: 404, code: nil, message: "Not found", requestId: nil, type: nil)
        #expect(
            !GatewayError.upstreamRefused(cloud: .azure, missing).problem(for: .list).detail.contains("No such job"))
        #expect(
            GatewayError.upstreamRefused(cloud: .azure, missing).problem(for: .lookup).detail.contains("No such job"))
    }

    @Test func aRecordDatasetBatchIsRefusedAsAWSSaysIt() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let dataset = SimulatorOptions.documentedRecordDataset
            let response = try await caller.create(#"{"datasetId": "\#(dataset)", "batchId": "b1"}"#)

            let problem = try response.expectProblem(status: 422, type: "/problems/upstream-refused")
            let upstream = problem.object("upstream")
            #expect(upstream["status"] as? Int == 422)
            #expect(upstream.string("code") == "UPAPI-036002-422")
            #expect(upstream.string("message") == "Invalid system job payload.")
            #expect(upstream.string("requestId")?.isEmpty == false)
        }
    }

    @Test(arguments: SimulatedCloud.allCases)
    func aDuplicateActiveRequestIsUnprocessable(cloud: SimulatedCloud) async throws {
        let clock = TestClock()
        try await withDemo(simulatorOptions: clock.options) { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            _ = try await caller.createDatasetDelete("5c8c3c555033b814b69f947f")

            let again = try await caller.create(#"{"dataSetId": "5c8c3c555033b814b69f947f"}"#)
            let problem = try again.expectProblem(status: 422, type: "/problems/upstream-refused")
            #expect(problem.object("upstream")["status"] as? Int == 422)
            #expect(problem.object("upstream").string("message")?.contains("already exists") == true)

            // Once the first has finished, the same delete may be asked for again.
            clock.advance(clock.options.finishedAfter + 1)
            #expect(try await caller.create(#"{"datasetId": "5c8c3c555033b814b69f947f"}"#).status == 201)
        }
    }

    @Test(arguments: SimulatedCloud.allCases)
    func anInvalidTokenIsUnauthorizedWithThePlatformCode(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            var caller = GatewayCaller(demo, orgId: cloud.orgId)
            caller.token = "invalid-x"
            for response in [try await caller.list(), try await caller.create(#"{"datasetId": "d1"}"#)] {
                let problem = try response.expectProblem(status: 401, type: "/problems/upstream-refused")
                let upstream = problem.object("upstream")
                #expect(upstream["status"] as? Int == 401)
                #expect(upstream.string("code") == "401013")
                #expect(upstream.string("message") == "Oauth token is not valid")
            }

            // Nothing about the bad token is remembered: a good one works straight after.
            caller.token = "svc-token"
            #expect(try await caller.list().status == 200)
        }
    }

    @Test(arguments: SimulatedCloud.allCases)
    func anUnknownJobIsNotFound(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let response = try await caller.get("00000000-0000-0000-0000-000000000000")
            let problem = try response.expectProblem(status: 404, type: "/problems/upstream-refused")
            let upstream = problem.object("upstream")
            #expect(upstream["status"] as? Int == 404)
            #expect(upstream.string("code") == "XDM-1010-404")
            #expect(upstream.string("message")?.contains("00000000-0000-0000-0000-000000000000") == true)

            if cloud == .azure {
                let removal = try await caller.remove("00000000-0000-0000-0000-000000000000")
                try removal.expectProblem(status: 404, type: "/problems/upstream-refused")
            }
        }
    }
}
