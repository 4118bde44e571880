import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// Every documented upstream error body, and the failures that have no body at all, as the gateway maps them.
@Suite struct UpstreamErrorMappingTests {
    static let scriptedAzure = "scripted-azure@AdobeOrg"
    static let scriptedAWS = "scripted-aws@AdobeOrg"

    /// A demo whose two extra organizations are served by `upstream` (the AWS one by a mapped sandbox, so the only
    /// upstream call is the jobs call).
    static func withScripted<T>(
        _ upstream: ScriptedUpstream,
        timeoutSeconds: Double? = nil,
        configure: (inout GatewayConfiguration) -> Void = { _ in },
        _ body: (DemoEnvironment) async throws -> T
    ) async throws -> T {
        let server = HTTPServer(handler: upstream)
        let port = try server.start()
        let result: Result<T, any Error>
        do {
            result = .success(try await runDemo(port))
        } catch {
            result = .failure(error)
        }
        upstream.release()
        try await stopOffPool { server.stop() }
        return try result.get()

        func runDemo(_ port: UInt16) async throws -> T {
            try await withDemo(
                configure: { configuration in
                    let baseURL = "http://127.0.0.1:\(port)"
                    configuration.organizations[scriptedAzure] = OrganizationRoute(
                        orgId: scriptedAzure, cloud: .azure, baseURL: baseURL)
                    configuration.organizations[scriptedAWS] = OrganizationRoute(
                        orgId: scriptedAWS, cloud: .aws, baseURL: baseURL,
                        sandboxes: ["prod": SimulatorOptions.prodSandboxId])
                    if let timeoutSeconds {
                        configuration.upstreamTimeoutSeconds = timeoutSeconds
                    }
                    configure(&configuration)
                }, body)
        }
    }

    struct Documented: Sendable, CustomTestStringConvertible {
        var file: String
        var status: Int
        var code: String?
        var message: String?
        var requestId: String?

        var testDescription: String { file }
    }

    static let documented = [
        Documented(
            file: "azure-record-batch.400.json", status: 400, code: "500",
            message: "Batch can only be specified for EE type 'a294e36d382649dab2cc6ad64a41b674'",
            requestId: "bc4eb29f-63a8-4653-9133-71238884bb81"),
        Documented(
            file: "batch-not-found.400.json", status: 400, code: "400",
            message: "Batch not found for profile dataset '5da688d2b6eb381a7a2b9f0c'", requestId: "LlTmA2d7kQ"),
        Documented(
            file: "invalid-payload.400.json", status: 400, code: "400",
            message: "Invalid delete request (Profile System Job)"),
        Documented(
            file: "problem-with-report.404.json", status: 404, code: "XDM-1010-404",
            message: "The requested resource could not be found."),
        Documented(
            file: "record-batch.422.json", status: 422, code: "UPAPI-036002-422",
            message: "Invalid system job payload.", requestId: "5YrVbqD3iN0bT2l9e8kWq1xZ"),
        Documented(file: "token-invalid.401.json", status: 401, code: "401013", message: "Oauth token is not valid"),
        Documented(file: "token-missing.403.json", status: 403, code: "403010", message: "Oauth token is missing."),
        Documented(file: "unsupported-media-type.415.json", status: 415, message: "HTTP 415 Unsupported Media Type"),
        Documented(
            file: "ups-both-spellings.422.json", status: 422, code: "UPLIB-101221-404",
            message: "Merge policy not found"),
    ]

    @Test(arguments: documented, [scriptedAzure, scriptedAWS])
    func documentedRefusalsKeepTheirStatusAndFillUpstream(error: Documented, orgId: String) async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(
            .init(
                status: error.status, headers: [("Content-Type", "application/json"), ("x-request-id", "hdr-req-9")],
                body: try DialectFixture.bytes("errors/\(error.file)")))
        try await Self.withScripted(upstream) { demo in
            let caller = GatewayCaller(demo, orgId: orgId)
            for response in [
                try await caller.get("job-1"), try await caller.list(),
                try await caller.create(#"{"datasetId": "d1", "batchId": "b1"}"#),
            ] {
                let problem = try response.expectProblem(status: error.status, type: "/problems/upstream-refused")
                let detail = problem.object("upstream")
                #expect(detail["status"] as? Int == error.status)
                #expect(detail.string("code") == error.code)
                #expect(error.code != nil || detail.isNull("code"))
                #expect(detail.string("message") == error.message)
                // The body's request id wins; the response header stands in when the body has none.
                #expect(detail.string("requestId") == (error.requestId ?? "hdr-req-9"))
                #expect(response.header("Retry-After") == nil)
            }
            #expect(upstream.receivedRequests.count == 3)
        }
    }

    @Test func anHTMLPageFromALoadBalancerIsABadGateway() async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(
            .init(
                status: 502, headers: [("Content-Type", "text/html")],
                body: try DialectFixture.bytes("errors/load-balancer.502.html")))
        try await Self.withScripted(upstream) { demo in
            let response = try await GatewayCaller(demo, orgId: Self.scriptedAzure).get("job-1")
            let problem = try response.expectProblem(status: 502, type: "/problems/upstream-error")
            #expect(problem.object("upstream")["status"] as? Int == 502)
            #expect(problem.object("upstream").string("message") == "502 Bad Gateway")
            #expect(problem.object("upstream").isNull("code"))
        }
    }

    @Test(arguments: [500, 501, 504, 599])
    func serverErrorsWithAnEmptyBodyAreABadGateway(status: Int) async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(.init(status: status, headers: [], body: []))
        try await Self.withScripted(upstream) { demo in
            let response = try await GatewayCaller(demo, orgId: Self.scriptedAWS).list()
            let problem = try response.expectProblem(status: 502, type: "/problems/upstream-error")
            #expect(problem.object("upstream")["status"] as? Int == status)
            #expect(problem.object("upstream").isNull("message"))
            #expect(problem.string("detail")?.contains("HTTP \(status)") == true)
        }
    }

    @Test func unavailablePassesThroughWithRetryAfter() async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(
            .init(
                status: 503, headers: [("Content-Type", "application/json"), ("Retry-After", "7")],
                body: Array(#"{"error_code": "503000", "message": "Service unavailable"}"#.utf8)))
        try await Self.withScripted(upstream) { demo in
            for orgId in [Self.scriptedAzure, Self.scriptedAWS] {
                let response = try await GatewayCaller(demo, orgId: orgId).create(#"{"datasetId": "d1"}"#)
                let problem = try response.expectProblem(status: 503, type: "/problems/upstream-unavailable")
                #expect(response.header("Retry-After") == "7")
                #expect(problem.string("detail")?.contains("7 seconds") == true)
                #expect(problem.object("upstream").string("code") == "503000")
            }
        }
    }

    @Test(arguments: [
        #"{"id": "job-1", "imsOrgId": "scripted-azure@AdobeOrg", "dataSetId": "d1", "jobT"#,
        "<html><body>OK</body></html>", "", "[1, 2]", "null",
    ])
    func anUnreadableSuccessIsMalformed(body: String) async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(.init(status: 200, body: Array(body.utf8)))
        try await Self.withScripted(upstream) { demo in
            let response = try await GatewayCaller(demo, orgId: Self.scriptedAzure).get("job-1")
            let problem = try response.expectProblem(status: 502, type: "/problems/upstream-malformed")
            #expect(problem["upstream"] == nil)
        }
    }

    @Test(arguments: [scriptedAzure, scriptedAWS])
    func anUnreadableListIsMalformedNotEmpty(orgId: String) async throws {
        let upstream = ScriptedUpstream()
        for body in [
            try DialectFixture.bytes("aws/list-as-documented-invalid.txt"), Array(#"{"children": [{"#.utf8),
            Array(#"{"_page": {"count": 1}, "children": [{"id": 7}]}"#.utf8),
        ] {
            upstream.answer(.init(status: 200, body: body))
            try await Self.withScripted(upstream) { demo in
                let response = try await GatewayCaller(demo, orgId: orgId).list()
                try response.expectProblem(status: 502, type: "/problems/upstream-malformed")
            }
        }
    }

    /// An AWS upstream that ignores `start` would otherwise hand the same page out forever.
    @Test func anAWSPageOtherThanTheOneAskedForIsMalformed() async throws {
        let upstream = ScriptedUpstream()
        let job = try String(decoding: DialectFixture.bytes("aws/get.json"), as: UTF8.self)
        let firstPage =
            #"{"_page": {"pageSize": 1, "start": "0", "totalCount": 3, "next": 1}, "children": ["#
            + job + "]}"
        upstream.answer(.init(status: 200, body: Array(firstPage.utf8)))

        try await Self.withScripted(upstream) { demo in
            let caller = GatewayCaller(demo, orgId: Self.scriptedAWS)
            let first = try await caller.list("?limit=1")
            #expect(first.status == 200, "\(first.text)")
            let next = try #require(try first.jsonObject()["page"] as? [String: Any])["next"] as? String

            let second = try await caller.list("?cursor=" + (try #require(next)))

            let problem = try second.expectProblem(status: 502, type: "/problems/upstream-malformed")
            #expect(problem.string("detail")?.contains("page 1") == true)
            #expect(upstream.receivedRequests.last?.queryValue("start") == "1")
        }
    }

    @Test func anUnreachableUpstreamIsABadGateway() async throws {
        let (port, reservation) = try closedPort()
        defer { close(reservation) }
        try await withDemo(configure: { configuration in
            for (orgId, cloud) in [(Self.scriptedAzure, Cloud.azure), (Self.scriptedAWS, .aws)] {
                configuration.organizations[orgId] = OrganizationRoute(
                    orgId: orgId, cloud: cloud, baseURL: "http://127.0.0.1:\(port)")
            }
        }) { demo in
            for orgId in [Self.scriptedAzure, Self.scriptedAWS] {
                // On AWS the sandbox lookup is the first call to fail.
                let response = try await GatewayCaller(demo, orgId: orgId).list()
                let problem = try response.expectProblem(status: 502, type: "/problems/upstream-unreachable")
                #expect(problem["upstream"] == nil)
            }
        }
    }

    @Test(arguments: [scriptedAzure, scriptedAWS])
    func aStalledUpstreamTimesOut(orgId: String) async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(.init(status: 200, body: Array("[]".utf8), stall: true))
        try await Self.withScripted(upstream, timeoutSeconds: 0.5) { demo in
            let response = try await GatewayCaller(demo, orgId: orgId).list()
            let problem = try response.expectProblem(status: 504, type: "/problems/upstream-timeout")
            #expect(problem["upstream"] == nil)
            #expect(upstream.receivedRequests.count == 1)
        }
    }
}
