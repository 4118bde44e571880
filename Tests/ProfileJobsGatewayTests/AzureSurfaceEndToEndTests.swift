import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

private let azurePath = "/data/core/ups/system/jobs"

extension GatewayCaller {
    func azureList(_ query: String = "") async throws -> RawHTTPClient.Response {
        try await call("GET", azurePath + query)
    }

    func azureCreate(_ body: String) async throws -> RawHTTPClient.Response {
        try await call("POST", azurePath, body: body)
    }

    /// Creates a dataset delete the Azure way and returns its id, failing the test unless the answer is 200.
    func azureCreateDataset(_ datasetId: String) async throws -> String {
        let response = try await azureCreate(#"{"dataSetId": "\#(datasetId)"}"#)
        #expect(response.status == 200, "\(response.text)")
        return try #require(try response.jsonObject().string("id"), "\(response.text)")
    }
}

/// The Azure-dialect surface, driven through the real gateway for organizations on both clouds.
@Suite struct AzureSurfaceEndToEndTests {
    static let azureKeys: Set<String> = [
        "id", "imsOrgId", "dataSetId", "datasetId", "batchId", "jobType", "status", "metrics", "createEpoch",
        "updateEpoch",
    ]

    // MARK: Create

    @Test(arguments: SimulatedCloud.allCases)
    func createsByDataSetIdAndAnswersInAzuresShape(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let response = try await caller.azureCreate(#"{"dataSetId": "5c8c3c555033b814b69f947f"}"#)

            #expect(response.status == 200, "\(response.text)")
            #expect(response.header("Location") == nil)
            let job = try response.jsonObject()
            #expect(
                Set(job.keys) == ["id", "imsOrgId", "dataSetId", "jobType", "status", "createEpoch", "updateEpoch"])
            #expect(job.string("imsOrgId") == cloud.orgId)
            #expect(job.string("dataSetId") == "5c8c3c555033b814b69f947f")
            #expect(job.string("jobType") == "DELETE")
            #expect(job.string("status") == "NEW")
            #expect(job["createEpoch"] is Int)

            let body = try #require(jobCalls(cloud.received(demo), method: "POST").first?.jsonBody)
            #expect(sameJSON(body, ["dataSetId": "5c8c3c555033b814b69f947f"]), "\(body)")
        }
    }

    @Test func createsByBatchAloneOnAzure() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let response = try await caller.azureCreate(#"{"batchId": "8d075b5a178e48389126b9289dcfd0ac"}"#)

            #expect(response.status == 200, "\(response.text)")
            let job = try response.jsonObject()
            #expect(job.string("batchId") == "8d075b5a178e48389126b9289dcfd0ac")
            #expect(job["datasetId"] == nil && job["dataSetId"] == nil)
            #expect(job.string("jobType") == "DELETE")
        }
    }

    @Test func batchAloneIsRefusedOnAWSAsInTheUnifiedAPI() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let response = try await caller.azureCreate(#"{"batchId": "01JFSYFDFW9JAAEKHX672JMPSB"}"#)

            try response.expectProblem(status: 400, type: "/problems/batch-needs-dataset")
            #expect(jobCalls(demo.aws.receivedRequests, method: "POST").isEmpty)
        }
    }

    @Test(arguments: SimulatedCloud.allCases)
    func batchDeleteWritesBothIdsTheWayAzureSpellsThem(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let response = try await caller.azureCreate(
                #"{"datasetId": "5c8c3c555033b814b69f947f", "batchId": "8d075b5a178e48389126b9289dcfd0ac"}"#)

            #expect(response.status == 200, "\(response.text)")
            let job = try response.jsonObject()
            #expect(job.string("datasetId") == "5c8c3c555033b814b69f947f")
            #expect(job.string("batchId") == "8d075b5a178e48389126b9289dcfd0ac")
            #expect(job["dataSetId"] == nil)
        }
    }

    // MARK: List

    @Test(arguments: SimulatedCloud.allCases)
    func pagesWithPageAndLimitUntilNextIsEmpty(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            var created: [String] = []
            for dataset in ["5c8c3c555033b814b69f9471", "5c8c3c555033b814b69f9472", "5c8c3c555033b814b69f9473"] {
                created.append(try await caller.azureCreateDataset(dataset))
            }

            var ids: [String] = []
            var nexts: [String] = []
            for page in 0..<10 {
                let response = try await caller.azureList("?page=\(page)&limit=2")
                #expect(response.status == 200, "\(response.text)")
                let body = try response.jsonObject()
                #expect(Set(body.keys) == ["_page", "children"])
                let children = try #require(body["children"] as? [[String: Any]], "\(response.text)")
                #expect(children.allSatisfy { Set($0.keys).isSubset(of: Self.azureKeys) })
                ids += children.compactMap { $0.string("id") }
                #expect(body.object("_page")["count"] as? Int == 5, "\(response.text)")
                let next = try #require(body.object("_page").string("next"), "next must be a string: \(response.text)")
                nexts.append(next)
                if next.isEmpty { break }
            }

            #expect(nexts.count == 3, "5 jobs in pages of 2: \(nexts)")
            #expect(nexts.dropLast().allSatisfy { !$0.isEmpty })
            #expect(ids.count == 5 && Set(ids).count == 5, "\(ids)")
            #expect(Set(created).isSubset(of: Set(ids)))

            // `start` is an offset and wins over `page`.
            let fromStart = try await caller.azureList("?start=1&page=2&limit=2").jsonObject()
            let startIds = (fromStart["children"] as? [[String: Any]] ?? []).compactMap { $0.string("id") }
            #expect(startIds == Array(ids[1...2]))
        }
    }

    @Test(arguments: SimulatedCloud.allCases, ["asc", "desc"])
    func sortOrdersThePageReturned(cloud: SimulatedCloud, direction: String) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            _ = try await caller.azureCreateDataset("5c8c3c555033b814b69f9474")

            let response = try await caller.azureList("?sort=createEpoch:\(direction)")
            #expect(response.status == 200, "\(response.text)")
            let children = try #require(try response.jsonObject()["children"] as? [[String: Any]])
            let epochs = children.compactMap { $0["createEpoch"] as? Int }
            #expect(epochs.count == 3)
            #expect(epochs == (direction == "asc" ? epochs.sorted() : epochs.sorted(by: >)), "\(epochs)")
        }
    }

    @Test(arguments: [
        ("?limit=0", "limit"), ("?limit=1001", "limit"), ("?limit=x", "limit"), ("?page=-1", "page"),
        ("?start=-1", "start"), ("?page=1000001&limit=1000", "page"), ("?sort=createdAt:asc", "sort"),
        ("?sort=createEpoch", "sort"), ("?sort=updateEpoch:up", "sort"), ("?limit=1&limit=2", "limit"),
        ("?page=0&page=1", "page"), ("?start=1&start=1", "start"),
        ("?sort=createEpoch:asc&sort=createEpoch:asc", "sort"),
    ])
    func invalidQueryValuesAreAProblemNamingTheParameter(query: String, parameter: String) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let problem = try await caller.azureList(query).expectProblem(status: 400, type: "/problems/invalid-query")
            #expect(problem.string("detail")?.contains("'\(parameter)'") == true, "\(problem)")
            #expect(jobCalls(demo.azure.receivedRequests).isEmpty)
        }
    }

    // MARK: Look up and remove

    @Test(arguments: SimulatedCloud.allCases)
    func looksUpOneJob(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let id = try await caller.azureCreateDataset("5c8c3c555033b814b69f947f")

            let response = try await caller.call("GET", azurePath + "/" + id)
            #expect(response.status == 200, "\(response.text)")
            let job = try response.jsonObject()
            #expect(job.string("id") == id)
            #expect(job.string("dataSetId") == "5c8c3c555033b814b69f947f")
            #expect(job.string("jobType") == "DELETE")
        }
    }

    @Test func removesOnAzureWith200AndAnEmptyBody() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let id = try await caller.azureCreateDataset("5c8c3c555033b814b69f947f")

            let removed = try await caller.call("DELETE", azurePath + "/" + id)
            #expect(removed.status == 200, "\(removed.text)")
            #expect(removed.body.isEmpty)
            #expect(jobCalls(demo.azure.receivedRequests, method: "DELETE").map(\.path) == [jobsPath + "/" + id])

            let after = try await caller.call("GET", azurePath + "/" + id)
            try after.expectProblem(status: 404, type: "/problems/upstream-refused")
        }
    }

    @Test func removalOnAWSIsTheUnifiedAPIsRefusal() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let id = try await caller.azureCreateDataset("5c8c3c555033b814b69f947f")

            let response = try await caller.call("DELETE", azurePath + "/" + id)
            let problem = try response.expectProblem(status: 501, type: "/problems/operation-not-supported")
            #expect(problem.string("detail")?.contains(id) == true)
            // It points the client at the job on the surface it speaks.
            #expect(problem.string("detail")?.contains("GET \(azurePath)/\(id)") == true)
            #expect(!demo.aws.receivedRequests.contains { $0.method == "DELETE" })
        }
    }

    // MARK: Same rules as the canonical API

    @Test func missingCredentialsAreTheSameProblem() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let response = try await caller.call("GET", azurePath, omitting: ["x-api-key"])
            try response.expectProblem(status: 400, type: "/problems/missing-header")
        }
    }

    @Test func otherMethodsAreNotAllowed() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let collection = try await caller.call("PUT", azurePath)
            try collection.expectProblem(status: 405, type: "/problems/method-not-allowed")
            #expect(collection.header("Allow") == "GET, HEAD, POST")

            let one = try await caller.call("POST", azurePath + "/abc", body: "{}")
            try one.expectProblem(status: 405, type: "/problems/method-not-allowed")
            #expect(one.header("Allow") == "GET, HEAD, DELETE")
        }
    }
}
