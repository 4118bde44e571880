import Foundation
import ProfileJobsGateway
import Testing

@testable import UpstreamSimulators

/// What both simulated clouds do alike: the platform gateway's credential checks, routing, sandbox lookups, creates.
@Suite struct SimulatorTests {
    // MARK: Credentials

    @Test(arguments: SimulatedCloud.allCases)
    func missingTokenIsTheGatewaysDocumented403(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)
        var headers = cloud.headers()
        headers.remove("Authorization")

        let response = await send(simulator, "GET", headers: headers)

        #expect(response.status == 403)
        #expect(sameJSON(try json(response), try fixture("errors/token-missing.403.json")))
    }

    @Test(
        arguments: SimulatedCloud.allCases,
        ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Bearer invalid-token", "token"])
    func badTokenIsTheGatewaysDocumented401(cloud: SimulatedCloud, authorization: String) async throws {
        let simulator = cloud.simulator(TestClock().options)
        var headers = cloud.headers()
        headers.set("Authorization", authorization)

        let response = await send(simulator, "GET", headers: headers)

        #expect(response.status == 401)
        #expect(sameJSON(try json(response), try fixture("errors/token-invalid.401.json")))
    }

    @Test(arguments: SimulatedCloud.allCases)
    func bearerSchemeIsCaseInsensitive(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)
        var headers = cloud.headers()
        headers.set("Authorization", "bearer service-token")

        let response = await send(simulator, "GET", headers: headers)

        #expect(response.status == 200)
    }

    @Test(arguments: SimulatedCloud.allCases)
    func missingAPIKeyAndOrgAreRefused(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)
        var noKey = cloud.headers()
        noKey.remove("x-api-key")
        var noOrg = cloud.headers()
        noOrg.remove("x-gw-ims-org-id")

        let keyResponse = await send(simulator, "GET", headers: noKey)
        let orgResponse = await send(simulator, "GET", headers: noOrg)

        #expect(keyResponse.status == 403)
        #expect(try object(keyResponse)["error_code"] as? String == "403000")
        #expect(orgResponse.status == 400)
        #expect(try object(orgResponse)["error_code"] as? String == "400003")
    }

    @Test(arguments: SimulatedCloud.allCases)
    func credentialsAreCheckedBeforeTheRoute(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)

        let response = await send(simulator, "PUT", "/nowhere", headers: HTTPHeaders())

        #expect(response.status == 403)
        #expect(try object(response)["error_code"] as? String == "403010")
    }

    // MARK: Routing

    @Test(
        arguments: SimulatedCloud.allCases,
        ["/nowhere", jobsPath + "/", jobsPath + "/a/b", "/data/core/ups/systems/jobs"])
    func unknownPathsAre404(cloud: SimulatedCloud, path: String) async throws {
        let simulator = cloud.simulator(TestClock().options)

        let response = await send(simulator, "GET", path, headers: cloud.headers())

        #expect(response.status == 404)
        #expect(shape(try json(response)) == shape(try fixture("errors/problem-with-report.404.json")))
    }

    @Test(arguments: SimulatedCloud.allCases)
    func wrongMethodsAre405WithAllow(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)

        let onList = await send(simulator, "PUT", headers: cloud.headers())
        let onSandbox = await send(simulator, "POST", sandboxesPath + "/prod", headers: cloud.headers())

        #expect(onList.status == 405)
        #expect(onList.headers["Allow"] == "GET, POST")
        #expect(try object(onList)["status"] as? Int == 405)
        #expect(onSandbox.status == 405)
        #expect(onSandbox.headers["Allow"] == "GET")
    }

    // MARK: Sandbox Management API

    @Test(arguments: SimulatedCloud.allCases)
    func serviceTokensSeeTheSandboxId(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)

        let response = await send(simulator, "GET", sandboxesPath + "/prod", headers: cloud.headers())

        #expect(response.status == 200)
        #expect(response.headers["Content-Type"] == "application/json")
        #expect(sameJSON(try json(response), try fixture("sandbox/lookup-service-token.json")))
    }

    @Test(arguments: SimulatedCloud.allCases)
    func userTokensDoNotSeeTheSandboxId(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)

        let response = await send(
            simulator, "GET", sandboxesPath + "/prod", headers: cloud.headers(token: "user-alice"))

        #expect(response.status == 200)
        #expect(sameJSON(try json(response), try fixture("sandbox/lookup-user-token.json")))
    }

    @Test(arguments: SimulatedCloud.allCases)
    func lookupOfAnUnknownSandboxIs404(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)

        let response = await send(simulator, "GET", sandboxesPath + "/nosuch", headers: cloud.headers())

        #expect(response.status == 404)
        #expect(shape(try json(response)) == shape(try fixture("errors/problem-with-report.404.json")))
    }

    @Test(arguments: SimulatedCloud.allCases)
    func configuredSandboxesAreLookedUp(cloud: SimulatedCloud) async throws {
        var options = TestClock().options
        options.sandboxes["dev-1"] = "0f2c1d3e-aaaa-4bbb-8ccc-123456789abc"
        let simulator = cloud.simulator(options)

        let response = await send(simulator, "GET", sandboxesPath + "/dev-1", headers: cloud.headers())

        let sandbox = try object(response)
        #expect(sandbox["id"] as? String == "0f2c1d3e-aaaa-4bbb-8ccc-123456789abc")
        #expect(sandbox["type"] as? String == "development")
        #expect(sandbox["isDefault"] as? Bool == false)
    }

    // MARK: Creating jobs

    @Test(
        arguments: SimulatedCloud.allCases,
        [nil, "text/plain", "application/jsonx", "application/x-www-form-urlencoded"])
    func createsNeedAJSONMediaType(cloud: SimulatedCloud, contentType: String?) async throws {
        let simulator = cloud.simulator(TestClock().options)
        var headers = cloud.headers()
        headers.add("Content-Type", contentType ?? "")
        if contentType == nil {
            headers.remove("Content-Type")
        }
        let request = HTTPRequest(
            method: "POST", path: jobsPath, headers: headers, body: Array(#"{"dataSetId":"d1"}"#.utf8))

        let response = await simulator.handle(request)

        #expect(response.status == 415)
        #expect(sameJSON(try json(response), try fixture("errors/unsupported-media-type.415.json")))
    }

    @Test(arguments: SimulatedCloud.allCases)
    func mediaTypeParametersAreAccepted(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)
        var headers = cloud.headers()
        headers.add("Content-Type", "Application/JSON; charset=utf-8")

        let response = await send(simulator, "POST", headers: headers, body: #"{"dataSetId":"d1"}"#)

        #expect(response.status == 200)
    }

    @Test(
        arguments: SimulatedCloud.allCases,
        [
            "", "not json", "[]", "{}", #"{"dataSetId": ""}"#, #"{"dataSetId": 5}"#, #"{"datasetId": "d1"}"#,
            #"{"dataSetId": "d1", "datasetId": "d1"}"#, #"{"dataSetId": "d1", "batchId": "b1"}"#,
            #"{"datasetId": "d1", "batchId": ""}"#, #"{"datasetId": "", "batchId": "b1"}"#,
        ])
    func invalidPayloadsAreTheDocumented400(cloud: SimulatedCloud, body: String) async throws {
        let simulator = cloud.simulator(TestClock().options)

        let response = await send(simulator, "POST", headers: cloud.headers(), body: body)

        #expect(response.status == 400)
        #expect(sameJSON(try json(response), try fixture("errors/invalid-payload.400.json")))
    }

    @Test(arguments: SimulatedCloud.allCases)
    func unknownBatchesAreTheDocumented400(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)
        let body = #"{"datasetId": "5da688d2b6eb381a7a2b9f0c", "batchId": "missing-01"}"#

        let response = await send(simulator, "POST", headers: cloud.headers(), body: body)

        #expect(response.status == 400)
        let error = try object(response)
        #expect(shape(error) == shape(try fixture("errors/batch-not-found.400.json")))
        let inner = try #require((error["errors"] as? [String: Any])?["400"] as? [[String: Any]])
        #expect(inner.first?["message"] as? String == "Batch not found for profile dataset '5da688d2b6eb381a7a2b9f0c'")
    }

    @Test(arguments: SimulatedCloud.allCases, [#"{"dataSetId": "d1"}"#, #"{"datasetId": "d1", "batchId": "b1"}"#])
    func aPendingJobForTheSameTargetIsADuplicate(cloud: SimulatedCloud, body: String) async throws {
        let clock = TestClock()
        let simulator = cloud.simulator(clock.options)

        let first = await send(simulator, "POST", headers: cloud.headers(), body: body)
        let whileNew = await send(simulator, "POST", headers: cloud.headers(), body: body)
        clock.advance(5)
        let whileRunning = await send(simulator, "POST", headers: cloud.headers(), body: body)
        clock.advance(5)
        let afterFinish = await send(simulator, "POST", headers: cloud.headers(), body: body)

        #expect(first.status == 200)
        for duplicate in [whileNew, whileRunning] {
            #expect(duplicate.status == 422)
            let problem = try object(duplicate)
            #expect(problem["status"] as? Int == 422)
            let title = try #require(problem["title"] as? String)
            #expect(title.hasPrefix("Delete request for ") && title.hasSuffix("already exists."))
        }
        #expect(afterFinish.status == 200)
    }

    @Test(arguments: SimulatedCloud.allCases)
    func duplicatesAreOnlyWithinOneOrganization(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)
        let body = #"{"dataSetId": "d1"}"#

        let first = await send(simulator, "POST", headers: cloud.headers(org: "A@AdobeOrg"), body: body)
        let otherOrg = await send(simulator, "POST", headers: cloud.headers(org: "B@AdobeOrg"), body: body)
        let otherDataset = await send(
            simulator, "POST", headers: cloud.headers(org: "A@AdobeOrg"), body: #"{"dataSetId": "d2"}"#)

        #expect([first.status, otherOrg.status, otherDataset.status] == [Int](repeating: 200, count: 3))
    }

    // MARK: Looking up jobs

    @Test(arguments: SimulatedCloud.allCases)
    func unknownJobsAre404(cloud: SimulatedCloud) async throws {
        let simulator = cloud.simulator(TestClock().options)

        let response = await send(
            simulator, "GET", jobsPath + "/" + UUID().uuidString.lowercased(), headers: cloud.headers())

        #expect(response.status == 404)
        #expect(shape(try json(response)) == shape(try fixture("errors/problem-with-report.404.json")))
    }

    @Test(arguments: SimulatedCloud.allCases)
    func jobsOfAnotherOrganizationOrSandboxAre404(cloud: SimulatedCloud) async throws {
        var options = TestClock().options
        options.sandboxes["dev"] = "11111111-2222-4333-8444-555555555555"
        let simulator = cloud.simulator(options)
        let created = await send(simulator, "POST", headers: cloud.headers(), body: #"{"dataSetId": "d1"}"#)
        let path = jobsPath + "/" + (try #require(jobId(try object(created))))
        var otherSandbox = cloud.headers()
        otherSandbox.set("x-sandbox-name", "dev")
        otherSandbox.set("x-sandbox-id", "11111111-2222-4333-8444-555555555555")

        let mine = await send(simulator, "GET", path, headers: cloud.headers())
        let otherOrg = await send(simulator, "GET", path, headers: cloud.headers(org: "OTHER@AdobeOrg"))
        let inOtherSandbox = await send(simulator, "GET", path, headers: otherSandbox)

        #expect(mine.status == 200)
        #expect(otherOrg.status == 404)
        #expect(inOtherSandbox.status == 404)
    }

    // MARK: Observing calls

    @Test(arguments: SimulatedCloud.allCases)
    func everyRequestIsRecordedEvenWhenRefused(cloud: SimulatedCloud) async throws {
        let clock = TestClock()
        let azure = AzureSimulator(options: clock.options)
        let aws = AWSSimulator(options: clock.options)
        let simulator: any HTTPHandler = cloud == .azure ? azure : aws

        _ = await send(simulator, "GET", headers: HTTPHeaders())
        _ = await send(simulator, "POST", headers: cloud.headers(), body: #"{"dataSetId": "d1"}"#)

        let received = cloud == .azure ? azure.receivedRequests : aws.receivedRequests
        #expect(received.map(\.method) == ["GET", "POST"])
        #expect(received.last?.headers["x-gw-ims-org-id"] == "ORG1@AdobeOrg")
        #expect(received.last?.body == Array(#"{"dataSetId": "d1"}"#.utf8))
    }

    /// A long demo or soak run must not keep every request it ever received.
    @Test func theRequestLogKeepsTheNewestCallsOnly() async throws {
        let azure = AzureSimulator(options: TestClock().options)
        for index in 0..<25_000 {
            _ = await send(azure, "GET", "/data/core/ups/system/jobs/job-\(index)", headers: HTTPHeaders())
        }
        let received = azure.receivedRequests
        #expect((10_000..<20_000).contains(received.count), "\(received.count)")
        #expect(received.last?.path == "/data/core/ups/system/jobs/job-24999")
    }

    @Test func fixtureComparisonsTellBodiesApart() throws {
        let documented = try fixture("errors/token-missing.403.json")

        #expect(sameJSON(documented, ["message": "Oauth token is missing.", "error_code": "403010"]))
        #expect(!sameJSON(documented, ["error_code": "403010", "message": "Oauth token is missing"]))
        #expect(shape(documented) != shape(["error_code": 403010, "message": "Oauth token is missing."]))
    }

    // MARK: Time

    @Test func awsStampsAreRFC3339WithMicroseconds() {
        #expect(Timestamp.rfc3339Microseconds(1_734_896_690.250006) == "2024-12-22T19:44:50.250006Z")
        #expect(Timestamp.rfc3339Microseconds(0) == "1970-01-01T00:00:00.000000Z")
        #expect(Timestamp.rfc3339Microseconds(951_782_400.5) == "2000-02-29T00:00:00.500000Z")
        #expect(Timestamp.rfc3339Microseconds(-0.5) == "1969-12-31T23:59:59.500000Z")
    }

    @Test func problemReportsAreStampedAsDocumented() {
        #expect(Timestamp.report(1_622_520_666.9) == "06-01-2021 04:11:06")
    }
}
