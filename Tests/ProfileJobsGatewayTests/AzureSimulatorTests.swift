import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// The Azure dialect: shapes, statuses, removal, paging and sorting as documented.
@Suite struct AzureSimulatorTests {
    let clock = TestClock()
    let simulator: AzureSimulator
    let headers = SimulatedCloud.azure.headers()

    init() {
        simulator = AzureSimulator(options: clock.options)
    }

    private func create(_ body: String, headers: HTTPHeaders? = nil) async throws -> [String: Any] {
        let response = await send(simulator, "POST", headers: headers ?? self.headers, body: body)
        try #require(response.status == 200)
        return try object(response)
    }

    private func get(_ id: String) async -> HTTPResponse {
        await send(simulator, "GET", jobsPath + "/" + id, headers: headers)
    }

    // MARK: Creating

    @Test func datasetDeleteAnswersLikeTheDocumentedSample() async throws {
        let job = try await create(#"{"dataSetId": "5c802d3cd83fc114b741c4b5"}"#)

        #expect(shape(job) == shape(try fixture("azure/create-dataset.response.json")))
        #expect(isLowercaseUUID(try #require(job["id"] as? String)))
        #expect(job["imsOrgId"] as? String == "ORG1@AdobeOrg")
        #expect(job["dataSetId"] as? String == "5c802d3cd83fc114b741c4b5")
        #expect(job["jobType"] as? String == "DELETE")
        #expect(job["status"] as? String == "NEW")
        #expect(job["createEpoch"] as? Int == 1_734_896_690)
        #expect(job["updateEpoch"] as? Int == 1_734_896_690)
    }

    @Test func batchDeleteAnswersLikeTheDocumentedSample() async throws {
        let job = try await create(
            try String(contentsOf: fixtureURL("azure/create-batch.request.json"), encoding: .utf8))

        #expect(shape(job) == shape(try fixture("azure/create-batch.response.json")))
        #expect(job["datasetId"] as? String == "66a92c5910df2d1767de13f3")
        #expect(job["batchId"] as? String == "8d075b5a178e48389126b9289dcfd0ac")
    }

    @Test func batchNamedAloneIsAccepted() async throws {
        let job = try await create(
            try String(contentsOf: fixtureURL("azure/create-batch-only.request.json"), encoding: .utf8))

        #expect(job["batchId"] as? String == "8d075b5a178e48389126b9289dcfd0ac")
        #expect(job["datasetId"] == nil)
        #expect(job["dataSetId"] == nil)
    }

    @Test func recordDatasetBatchIsTheDocumentedAzure400() async throws {
        let body = #"{"datasetId": "\#(SimulatorOptions.documentedRecordDataset)", "batchId": "b1"}"#

        let response = await send(simulator, "POST", headers: headers, body: body)

        #expect(response.status == 400)
        let error = try object(response)
        #expect(shape(error) == shape(try fixture("errors/azure-record-batch.400.json")))
        let inner = try #require((error["errors"] as? [String: Any])?["400"] as? [[String: Any]])
        #expect(inner.first?["code"] as? String == "500")
        #expect(
            inner.first?["message"] as? String
                == "Batch can only be specified for EE type '\(SimulatorOptions.documentedRecordDataset)'")
    }

    @Test func datasetDeleteOfARecordDatasetIsAllowed() async throws {
        let job = try await create(#"{"dataSetId": "\#(SimulatorOptions.documentedRecordDataset)"}"#)

        #expect(job["status"] as? String == "NEW")
    }

    // MARK: Sandboxes

    @Test func missingSandboxNameMeansProd() async throws {
        var noSandbox = headers
        noSandbox.remove("x-sandbox-name")
        let job = try await create(#"{"dataSetId": "d1"}"#, headers: noSandbox)

        let response = await get(try #require(job["id"] as? String))

        #expect(response.status == 200)
    }

    @Test func unknownSandboxNameIsRefused() async throws {
        var unknown = headers
        unknown.set("x-sandbox-name", "nosuch")

        let response = await send(simulator, "GET", headers: unknown)

        #expect(response.status == 403)
        #expect(shape(try json(response)) == shape(try fixture("errors/problem-with-report.404.json")))
    }

    // MARK: States

    @Test func jobsGoFromNewThroughProcessingToCompleted() async throws {
        let id = try #require(try await create(#"{"dataSetId": "d1"}"#)["id"] as? String)

        let new = try object(await get(id))
        clock.advance(3)
        let processing = try object(await get(id))
        clock.advance(10)
        let completed = try object(await get(id))

        #expect(new["status"] as? String == "NEW")
        #expect(new["metrics"] == nil)
        #expect(processing["status"] as? String == "PROCESSING")
        #expect(processing["metrics"] as? String == #"{"recordsProcessed":5,"timeTakenInSec":1}"#)
        #expect(processing["updateEpoch"] as? Int == 1_734_896_693)
        #expect(completed["status"] as? String == "COMPLETED")
        #expect(completed["metrics"] as? String == #"{"recordsProcessed":40,"timeTakenInSec":8}"#)
        #expect(completed["updateEpoch"] as? Int == 1_734_896_700)
        #expect(completed["createEpoch"] as? Int == 1_734_896_690)
        #expect(
            shape(completed)
                == shape(try fixture("azure/create-dataset.response.json")).replacingOccurrences(
                    of: "jobType:string,", with: "jobType:string,metrics:string,"))
    }

    @Test func aCompletedBatchJobLooksLikeTheDocumentedLookup() async throws {
        let id = try #require(try await create(#"{"batchId": "8d075b5a178e48389126b9289dcfd0ac"}"#)["id"] as? String)
        clock.advance(60)

        let job = try object(await get(id))

        #expect(shape(job) == shape(try fixture("azure/get.json")))
    }

    // MARK: Removing

    @Test func removedJobsAreGone() async throws {
        let id = try #require(try await create(#"{"dataSetId": "d1"}"#)["id"] as? String)
        clock.advance(5)

        let removal = await send(simulator, "DELETE", jobsPath + "/" + id, headers: headers)
        let lookup = await get(id)
        let again = await send(simulator, "DELETE", jobsPath + "/" + id, headers: headers)

        #expect(removal.status == 200)
        #expect(removal.body.isEmpty)
        #expect(lookup.status == 404)
        #expect(again.status == 404)
    }

    @Test func removalOfAnotherOrganizationsJobIs404() async throws {
        let id = try #require(try await create(#"{"dataSetId": "d1"}"#)["id"] as? String)

        let removal = await send(
            simulator, "DELETE", jobsPath + "/" + id, headers: SimulatedCloud.azure.headers(org: "OTHER@AdobeOrg"))

        #expect(removal.status == 404)
        #expect(await get(id).status == 200)
    }

    // MARK: Lists

    /// Five jobs created a second apart, so `d5` is the newest.
    private func createFive() async throws -> [String] {
        var ids: [String] = []
        for index in 1...5 {
            ids.append(try #require(try await create(#"{"dataSetId": "d\#(index)"}"#)["id"] as? String))
            clock.advance(1)
        }
        return ids
    }

    private func list(_ query: [(String, String)] = []) async throws -> (page: [String: Any], ids: [String]) {
        let response = await send(simulator, "GET", query: query, headers: headers)
        try #require(response.status == 200)
        let body = try object(response)
        let children = try #require(body["children"] as? [[String: Any]])
        return (try #require(body["_page"] as? [String: Any]), children.compactMap { $0["id"] as? String })
    }

    @Test func listIsNewestFirstWithCountAndNoNextOnTheLastPage() async throws {
        let ids = try await createFive()

        let (page, listed) = try await list()

        #expect(listed == Array(ids.reversed()))
        #expect(page["count"] as? Int == 5)
        #expect(page["next"] == nil)
    }

    @Test func listAnswersLikeTheDocumentedSample() async throws {
        _ = try await createFive()
        let documented = try #require(try fixture("azure/list.json") as? [String: Any])

        let response = await send(simulator, "GET", query: [("limit", "2")], headers: headers)

        let body = try object(response)
        #expect(Set(body.keys) == Set(documented.keys))
        #expect(shape(body["_page"] as Any) == shape(documented["_page"] as Any))
    }

    @Test func pagesByPageNumberAndByOffset() async throws {
        let ids = Array(try await createFive().reversed())

        let first = try await list([("limit", "2")])
        let third = try await list([("limit", "2"), ("page", "2")])
        let offset = try await list([("limit", "2"), ("start", "1")])
        let past = try await list([("limit", "2"), ("page", "9")])

        #expect(first.ids == Array(ids[0..<2]))
        let token = try #require(first.page["next"] as? String)
        #expect(Data(base64Encoded: token) != nil)
        #expect(third.ids == [ids[4]])
        #expect(third.page["next"] == nil)
        #expect(third.page["count"] as? Int == 5)
        #expect(offset.ids == Array(ids[1..<3]))
        #expect(offset.page["next"] != nil)
        #expect(past.ids.isEmpty)
    }

    @Test func sortAppliesWithinThePageOnly() async throws {
        let ids = Array(try await createFive().reversed())

        let ascending = try await list([("sort", "createEpoch:asc")])
        let secondPageAscending = try await list([("limit", "2"), ("page", "1"), ("sort", "createEpoch:asc")])
        clock.advance(60)
        let byUpdate = try await list([("sort", "updateEpoch:desc")])

        #expect(ascending.ids == Array(ids.reversed()))
        #expect(secondPageAscending.ids == [ids[3], ids[2]])
        #expect(byUpdate.ids == ids)
    }

    @Test func tiesAreOrderedById() async throws {
        for index in 1...4 {
            _ = try await create(#"{"dataSetId": "d\#(index)"}"#)
        }

        let listed = try await list().ids

        #expect(listed == listed.sorted())
    }

    @Test(arguments: [
        ("limit", "abc"), ("limit", "0"), ("limit", "1001"), ("start", "-1"), ("page", "x"), ("sort", "createEpoch"),
        ("sort", "name:asc"), ("sort", "createEpoch:up"),
    ])
    func invalidQueryValuesAreAzure400s(name: String, value: String) async throws {
        let response = await send(simulator, "GET", query: [(name, value)], headers: headers)

        #expect(response.status == 400)
        let error = try object(response)
        #expect(shape(error) == shape(try fixture("errors/batch-not-found.400.json")))
        let inner = try #require((error["errors"] as? [String: Any])?["400"] as? [[String: Any]])
        #expect((inner.first?["message"] as? String)?.contains("'\(name)'") == true)
    }

    @Test func hugePageNumbersAnswerAnEmptyPage() async throws {
        _ = try await createFive()

        let listed = try await list([("limit", "1000"), ("page", String(Int.max))])

        #expect(listed.ids.isEmpty)
    }

    // MARK: Seeding

    @Test func seedingLeavesOneFinishedDatasetAndOneFinishedBatchDelete() async throws {
        let seeded = try simulator.seed(orgId: "ORG1@AdobeOrg")

        let response = await send(simulator, "GET", headers: headers)
        let children = try #require(try object(response)["children"] as? [[String: Any]])

        #expect(Set(children.compactMap { $0["id"] as? String }) == Set(seeded))
        #expect(children.allSatisfy { $0["status"] as? String == "COMPLETED" })
        #expect(children.contains { $0["dataSetId"] != nil })
        #expect(children.contains { $0["batchId"] != nil && $0["datasetId"] != nil })
        #expect(throws: UnknownSandbox(name: "nosuch")) {
            try simulator.seed(orgId: "ORG1@AdobeOrg", sandboxName: "nosuch")
        }
    }
}
