import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// Walking the job list with the gateway's opaque cursor, over each upstream list shape.
@Suite struct ListPagingTests {
    enum Upstream: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case azure
        case awsArray
        case awsPaged

        var testDescription: String { rawValue }

        var cloud: SimulatedCloud { self == .azure ? .azure : .aws }

        var awsOptions: SimulatorOptions {
            SimulatorOptions(awsListShape: self == .awsPaged ? .paged : .array)
        }
    }

    @Test(arguments: Upstream.allCases)
    func followingNextVisitsEveryJobExactlyOnce(upstream: Upstream) async throws {
        try await withDemo(awsOptions: upstream.awsOptions) { demo in
            let caller = GatewayCaller(demo, orgId: upstream.cloud.orgId)
            var created: Set<String> = []
            for index in 1...7 {
                let job = try await caller.createDatasetDelete("5c8c3c555033b814b69f90\(index)0")
                created.insert(try #require(job.string("id")))
            }

            let everything = try await caller.list("?limit=100").jsonObject()
            let all = (everything["jobs"] as? [[String: Any]] ?? []).compactMap { $0.string("id") }
            #expect(all.count == 9, "seven created and two seeded")
            #expect(created.isSubset(of: Set(all)))
            #expect(everything.object("page")["total"] as? Int == 9)

            let walk = try await walkList(caller, limit: 3)
            #expect(walk.ids.count == 9, "\(walk.ids)")
            #expect(Set(walk.ids) == Set(all), "every job once, none from elsewhere")
            #expect(walk.pages == 3)

            // Page sizes that do not divide the total end on a short page.
            let byFour = try await walkList(caller, limit: 4)
            #expect(byFour.ids.count == 9 && Set(byFour.ids) == Set(all))
            #expect(byFour.pages == 3)
            let single = try await walkList(caller, limit: 100)
            #expect(single.pages == 1 && single.ids.count == 9)
        }
    }

    /// Jobs created while a tool walks the list push older jobs to later offsets; the walk still hands out every
    /// job that existed when it began exactly once.
    @Test(arguments: Upstream.allCases)
    func jobsCreatedDuringAWalkNeitherRepeatNorHideOthers(upstream: Upstream) async throws {
        try await withDemo(awsOptions: upstream.awsOptions) { demo in
            let caller = GatewayCaller(demo, orgId: upstream.cloud.orgId)
            for index in 1...7 {
                _ = try await caller.createDatasetDelete("5c8c3c555033b814b69f91\(index)0")
            }
            let before = Set(try await walkList(caller, limit: 100).ids)
            #expect(before.count == 9)

            var seen: [String] = []
            var query = "?limit=2"
            var pages = 0
            while pages < 20 {
                pages += 1
                let body = try await caller.list(query).jsonObject()
                seen += (body["jobs"] as? [[String: Any]] ?? []).compactMap { $0.string("id") }
                if pages <= 3 {
                    _ = try await caller.createDatasetDelete("5c8c3c555033b814b69f92\(pages)0")
                }
                guard let next = body.object("page").string("next") else { break }
                query = "?cursor=" + next
            }

            #expect(seen.count == Set(seen).count, "no job twice: \(seen)")
            #expect(before.isSubset(of: Set(seen)), "every job that existed when the walk began")
        }
    }

    /// Filters and order, done by the gateway over what each upstream shape returns.
    @Test(arguments: Upstream.allCases)
    func filtersAndOrderWorkAlikeOnEveryUpstream(upstream: Upstream) async throws {
        // A clock that stands still keeps the created jobs queued however slowly a loaded machine runs the test.
        let clock = TestClock()
        var awsOptions = upstream.awsOptions
        awsOptions.clock = { clock.now }
        try await withDemo(simulatorOptions: clock.options, awsOptions: awsOptions) { demo in
            let caller = GatewayCaller(demo, orgId: upstream.cloud.orgId)
            for index in 1...4 {
                _ = try await caller.createDatasetDelete("5c8c3c555033b814b69f93\(index)0")
                let batch = try await caller.create(
                    #"{"datasetId": "66a92c5910df2d1767de13f3", "batchId": "01JFSYFDFW9JAAEKHX672JMP\#(index)0"}"#)
                #expect(batch.status == 201, "\(batch.text)")
            }

            var batches: [String] = []
            var query = "?type=DELETE_BATCH&sort=createdAt:asc&limit=2"
            for _ in 0..<10 {
                let body = try await caller.list(query).jsonObject()
                let jobs = body["jobs"] as? [[String: Any]] ?? []
                #expect(jobs.allSatisfy { $0.string("type") == "DELETE_BATCH" })
                batches += jobs.compactMap { $0.string("id") }
                #expect(body.object("page")["total"] as? Int == 5, "four created and one seeded")
                #expect(body.object("page")["complete"] as? Bool == true)
                guard let next = body.object("page").string("next") else { break }
                query = "?type=DELETE_BATCH&sort=createdAt:asc&limit=2&cursor=" + next
            }
            #expect(batches.count == 5 && Set(batches).count == 5)

            let ascending = try await caller.list("?type=DELETE_BATCH&sort=createdAt:asc&limit=100").jsonObject()
            let times = (ascending["jobs"] as? [[String: Any]] ?? []).compactMap { $0.string("createdAt") }
            #expect(times == times.sorted())

            let queued = try await caller.list("?status=QUEUED,RUNNING&datasetId=5c8c3c555033b814b69f9310").jsonObject()
            #expect((queued["jobs"] as? [[String: Any]])?.count == 1)

            let succeeded = try await caller.list("?status=SUCCEEDED").jsonObject()
            #expect((succeeded["jobs"] as? [[String: Any]])?.count == 2, "the two seeded jobs have finished")
        }
    }

    @Test func aCursorCannotBeFollowedWithOtherFilters() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let first = try await caller.list("?status=SUCCEEDED&limit=1").jsonObject()
            let next = try #require(first.object("page").string("next"))

            let mixed = try await caller.list("?status=QUEUED&limit=1&cursor=" + next)
            let problem = try mixed.expectProblem(status: 400, type: "/problems/invalid-query")
            #expect(problem.string("detail")?.contains("cursor") == true)
            try await caller.list("?limit=1&cursor=" + next).expectProblem(status: 400, type: "/problems/invalid-query")
            #expect(try await caller.list("?status=SUCCEEDED&limit=1&cursor=" + next).status == 200)
        }
    }

    @Test func anUnknownQueryParameterIsRefusedByName() async throws {
        try await withDemo { demo in
            let response = try await GatewayCaller(demo, orgId: DemoEnvironment.awsOrg).list("?stauts=QUEUED")
            let problem = try response.expectProblem(status: 400, type: "/problems/invalid-query")
            #expect(problem.string("detail")?.contains("'stauts'") == true)
            #expect(demo.aws.receivedRequests.isEmpty)
        }
    }

    /// The older AWS dialect lists at most 100 jobs: a full window may hide older ones, and the answer says so.
    @Test func aFullAWSArrayIsMarkedIncomplete() async throws {
        try await withDemo(awsOptions: SimulatorOptions(awsListShape: .array)) { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let small = try await caller.list().jsonObject()
            #expect(small.object("page")["complete"] as? Bool == true)

            for index in 0..<99 {
                _ = try await caller.createDatasetDelete("ds\(index)")
            }
            for query in ["", "?type=DELETE_DATASET"] {
                let full = try await caller.list(query).jsonObject()
                #expect(full.object("page")["complete"] as? Bool == false, "\(query)")
            }

            // The Azure dialect has no word for it; its `_page` says so in a key Azure clients ignore.
            let azureSmall = try await caller.call("GET", "/data/core/ups/system/jobs?limit=5").jsonObject()
            #expect(azureSmall.object("_page")["complete"] as? Bool == false)
        }
        try await withDemo { demo in
            let fresh = try await GatewayCaller(demo, orgId: DemoEnvironment.awsOrg).call(
                "GET", "/data/core/ups/system/jobs"
            ).jsonObject()
            #expect(fresh.object("_page")["complete"] == nil, "a whole list keeps Azure's exact shape")
        }
    }

    @Test(arguments: ["0", "101", "x", "-1", "3.5", ""])
    func invalidLimitIsAQueryProblem(limit: String) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let response = try await caller.list("?limit=\(limit)")
            let problem = try response.expectProblem(status: 400, type: "/problems/invalid-query")
            #expect(problem.string("detail")?.contains("'limit'") == true, "\(response.text)")
            #expect(jobCalls(demo.azure.receivedRequests).isEmpty)
        }
    }

    /// Garbage, then well-formed base64 of a wrong version, a negative offset, a page size out of range, and too long.
    static let badCursors = [
        "garbage", "djI6MDoz", "djE6LTE6Mw", "djE6MDoxMDE", "djE6MDoz" + String(repeating: "A", count: 80),
    ]

    @Test(arguments: SimulatedCloud.allCases, Self.badCursors)
    func aCursorTheGatewayDidNotHandOutIsAQueryProblem(cloud: SimulatedCloud, cursor: String) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let response = try await caller.list("?cursor=\(cursor)")
            let problem = try response.expectProblem(status: 400, type: "/problems/invalid-query")
            #expect(problem.string("detail")?.contains("'cursor'") == true, "\(response.text)")
            #expect(jobCalls(cloud.received(demo)).isEmpty)
        }
    }
}
