import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// The AWS dialect: required sandbox id, shapes, statuses, no removal, both documented list shapes.
@Suite struct AWSSimulatorTests {
    let clock = TestClock()
    let headers = SimulatedCloud.aws.headers()

    private func simulator(_ shape: AWSListShape = .array) -> AWSSimulator {
        var options = clock.options
        options.awsListShape = shape
        return AWSSimulator(options: options)
    }

    private func create(_ body: String, on simulator: AWSSimulator) async throws -> [String: Any] {
        let response = await send(simulator, "POST", headers: headers, body: body)
        try #require(response.status == 200)
        return try object(response)
    }

    // MARK: Sandboxes

    @Test func callsWithoutASandboxIdAreRefused() async throws {
        let simulator = simulator()
        var nameOnly = headers
        nameOnly.remove("x-sandbox-id")
        nameOnly.add("x-sandbox-name", "prod")
        var none = headers
        none.remove("x-sandbox-id")

        for headers in [nameOnly, none] {
            let response = await send(simulator, "GET", headers: headers)

            #expect(response.status == 400)
            let problem = try object(response)
            #expect(problem["status"] as? Int == 400)
            #expect((problem["detail"] as? String)?.contains("x-sandbox-id") == true)
        }
    }

    @Test func unknownSandboxIdIsRefused() async throws {
        var unknown = headers
        unknown.set("x-sandbox-id", UUID().uuidString.lowercased())

        let response = await send(simulator(), "POST", headers: unknown, body: #"{"dataSetId": "d1"}"#)

        #expect(response.status == 403)
        #expect(try object(response)["status"] as? Int == 403)
    }

    // MARK: Creating

    @Test func datasetDeleteAnswersLikeTheDocumentedSample() async throws {
        let job = try await create(#"{"dataSetId": "66a92c5910df2d1767de13f3"}"#, on: simulator())

        #expect(shape(job) == shape(try fixture("aws/create-dataset.response.json")))
        #expect(isLowercaseUUID(try #require(job["requestId"] as? String)))
        #expect(job["requestType"] as? String == "TRUNCATE_DATASET")
        #expect(job["status"] as? String == "NEW")
        #expect(job["imsOrgId"] as? String == "ORG1@AdobeOrg")
        let sandbox = try #require(job["sandbox"] as? [String: Any])
        #expect(sandbox["sandboxName"] as? String == "prod")
        #expect(sandbox["sandboxId"] as? String == SimulatorOptions.prodSandboxId)
        #expect((job["properties"] as? [String: Any])?["datasetId"] as? String == "66a92c5910df2d1767de13f3")
        #expect(job["createdAt"] as? String == "2024-12-22T19:44:50.250006Z")
        #expect(job["updatedAt"] as? String == "2024-12-22T19:44:50.250006Z")
    }

    @Test func batchDeleteAnswersLikeTheDocumentedSample() async throws {
        let body = #"{"datasetId": "66a92c5910df2d1767de13f3", "batchId": "01JFSYFDFW9JAAEKHX672JMPSB"}"#

        let job = try await create(body, on: simulator())

        #expect(shape(job) == shape(try fixture("aws/create-batch.response.json")))
        #expect(job["requestType"] as? String == "DELETE_EE_BATCH")
        let properties = try #require(job["properties"] as? [String: Any])
        #expect(properties["batchId"] as? String == "01JFSYFDFW9JAAEKHX672JMPSB")
        #expect(properties["datasetId"] as? String == "66a92c5910df2d1767de13f3")
    }

    @Test func batchNamedAloneIsAnInvalidPayload() async throws {
        let response = await send(
            simulator(), "POST", headers: headers, body: #"{"batchId": "01JFSYFDFW9JAAEKHX672JMPSB"}"#)

        #expect(response.status == 400)
        #expect(sameJSON(try json(response), try fixture("errors/invalid-payload.400.json")))
    }

    @Test func recordDatasetBatchIsTheDocumented422() async throws {
        let body =
            #"{"datasetId": "\#(SimulatorOptions.documentedRecordDataset)", "batchId": "01JFSYFDFW9JAAEKHX672JMPSB"}"#

        let response = await send(simulator(), "POST", headers: headers, body: body)

        #expect(response.status == 422)
        let problem = try object(response)
        #expect(shape(problem) == shape(try fixture("errors/record-batch.422.json")))
        #expect(problem["type"] as? String == "https://ns.adobe.com/aep/errors/UPAPI-036002-422")
        #expect(problem["title"] as? String == "Invalid system job payload.")
    }

    // MARK: States

    @Test func jobsGoFromNewThroughInProgressToSuccess() async throws {
        let simulator = simulator()
        let id = try #require(try await create(#"{"dataSetId": "d1"}"#, on: simulator)["requestId"] as? String)
        let path = jobsPath + "/" + id

        let new = try object(await send(simulator, "GET", path, headers: headers))
        clock.advance(3)
        let running = try object(await send(simulator, "GET", path, headers: headers))
        clock.advance(10)
        let done = try object(await send(simulator, "GET", path, headers: headers))

        #expect(new["status"] as? String == "NEW")
        #expect(running["status"] as? String == "IN-PROGRESS")
        #expect(running["updatedAt"] as? String == "2024-12-22T19:44:53.250006Z")
        #expect(done["status"] as? String == "SUCCESS")
        #expect(done["createdAt"] as? String == "2024-12-22T19:44:50.250006Z")
        #expect(done["updatedAt"] as? String == "2024-12-22T19:45:00.250006Z")
        #expect(shape(done) == shape(try fixture("aws/get.json")).replacingOccurrences(of: "batchId:string,", with: ""))
    }

    // MARK: Removing

    @Test func removalIsNotSupported() async throws {
        let simulator = simulator()
        let id = try #require(try await create(#"{"dataSetId": "d1"}"#, on: simulator)["requestId"] as? String)

        let removal = await send(simulator, "DELETE", jobsPath + "/" + id, headers: headers)
        let lookup = await send(simulator, "GET", jobsPath + "/" + id, headers: headers)

        #expect(removal.status == 405)
        #expect(removal.headers["Allow"] == "GET")
        let problem = try object(removal)
        #expect(problem["status"] as? Int == 405)
        #expect((problem["detail"] as? String)?.contains("not supported") == true)
        #expect(lookup.status == 200)
    }

    // MARK: Lists

    /// Jobs created a second apart, returned newest first.
    private func createJobs(_ count: Int, on simulator: AWSSimulator) async throws -> [String] {
        var ids: [String] = []
        for index in 1...count {
            ids.append(
                try #require(try await create(#"{"dataSetId": "d\#(index)"}"#, on: simulator)["requestId"] as? String))
            clock.advance(1)
        }
        return ids.reversed()
    }

    @Test func arrayListIsTheNewestHundredAndIgnoresTheQuery() async throws {
        let simulator = simulator(.array)
        let ids = try await createJobs(101, on: simulator)

        let response = await send(simulator, "GET", query: [("limit", "abc"), ("start", "3")], headers: headers)

        #expect(response.status == 200)
        let jobs = try array(response)
        #expect(jobs.compactMap(jobId) == Array(ids.prefix(100)))
        #expect(
            shape(jobs)
                == shape(try fixture("aws/list-array.json")).replacingOccurrences(of: "batchId:string,", with: ""))
    }

    @Test func pagedListAnswersLikeTheDocumentedSample() async throws {
        let simulator = simulator(.paged)
        let ids = try await createJobs(5, on: simulator)
        let documented = try #require(try fixture("aws/list-paged.json") as? [String: Any])

        let first = try object(await send(simulator, "GET", query: [("limit", "2")], headers: headers))
        let last = try object(await send(simulator, "GET", query: [("limit", "2"), ("start", "2")], headers: headers))
        let defaults = try object(await send(simulator, "GET", headers: headers))

        #expect(Set(first.keys) == Set(documented.keys))
        #expect(shape(first["_page"] as Any) == shape(documented["_page"] as Any))
        let firstPage = try #require(first["_page"] as? [String: Any])
        #expect(firstPage["pageSize"] as? Int == 2)
        #expect(firstPage["start"] as? String == "0")
        #expect(firstPage["totalCount"] as? Int == 5)
        #expect(firstPage["next"] as? Int == 1)
        #expect((first["children"] as? [[String: Any]])?.compactMap(jobId) == Array(ids[0..<2]))
        let lastPage = try #require(last["_page"] as? [String: Any])
        #expect(lastPage["start"] as? String == "2")
        #expect(lastPage["next"] as? Int == 3)
        #expect((last["children"] as? [[String: Any]])?.compactMap(jobId) == [ids[4]])
        #expect((defaults["_page"] as? [String: Any])?["pageSize"] as? Int == 100)
        #expect((defaults["children"] as? [[String: Any]])?.count == 5)
    }

    @Test(arguments: [("limit", "abc"), ("limit", "0"), ("limit", "1001"), ("start", "-1"), ("start", "1.5")])
    func invalidPagedQueryValuesAreAWS400s(name: String, value: String) async throws {
        let response = await send(simulator(.paged), "GET", query: [(name, value)], headers: headers)

        #expect(response.status == 400)
        let problem = try object(response)
        #expect(problem["status"] as? Int == 400)
        #expect(problem["requestId"] is String)
        #expect((problem["detail"] as? String)?.contains("'\(name)'") == true)
    }

    @Test func hugePageNumbersAnswerAnEmptyPage() async throws {
        let simulator = simulator(.paged)
        _ = try await createJobs(2, on: simulator)

        let response = await send(
            simulator, "GET", query: [("limit", "1000"), ("start", String(Int.max))], headers: headers)

        #expect(response.status == 200)
        #expect((try object(response)["children"] as? [Any])?.isEmpty == true)
    }

    // MARK: Seeding

    @Test func seedingLeavesOneFinishedDatasetAndOneFinishedBatchDelete() async throws {
        let simulator = simulator()
        let seeded = try simulator.seed(orgId: "ORG1@AdobeOrg")

        let jobs = try array(await send(simulator, "GET", headers: headers))

        #expect(Set(jobs.compactMap(jobId)) == Set(seeded))
        #expect(jobs.allSatisfy { $0["status"] as? String == "SUCCESS" })
        #expect(Set(jobs.compactMap { $0["requestType"] as? String }) == ["TRUNCATE_DATASET", "DELETE_EE_BATCH"])
    }
}
