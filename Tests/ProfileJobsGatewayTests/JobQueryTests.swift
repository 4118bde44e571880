import Foundation
import Testing

@testable import ProfileJobsGateway

/// Reading the list's query string, and the gateway's own filtering and ordering.
@Suite struct JobQueryTests {
    static func request(_ query: [(String, String)]) -> HTTPRequest {
        HTTPRequest(method: "GET", path: "/v1/system/jobs", query: query.map { (name: $0.0, value: $0.1) })
    }

    @Test func readsEveryParameter() throws {
        let query = try JobQuery.parse(
            Self.request([
                ("sort", "updatedAt:asc"), ("status", "QUEUED,RUNNING"), ("status", "FAILED"),
                ("type", "DELETE_BATCH"), ("datasetId", "d1"), ("batchId", "b1"), ("limit", "5"),
            ]))
        #expect(query.sortField == .updatedAt && query.ascending)
        #expect(query.statuses == [.queued, .running, .failed])
        #expect(query.types == ["DELETE_BATCH"])
        #expect(query.datasetId == "d1" && query.batchId == "b1")
        #expect(!query.isPlainWalk)
        #expect(try JobQuery.parse(Self.request([("limit", "5")])).isPlainWalk)
    }

    @Test(arguments: [
        ("sort", "createdAt", "sort"), ("sort", "name:asc", "sort"), ("status", "DONE", "status"),
        ("status", "QUEUED,", "status"), ("type", "DELETE", "type"), ("datasetId", "../x", "datasetId"),
        ("batchId", "", "batchId"), ("stauts", "QUEUED", "stauts"),
    ])
    func refusesABadParameterByName(name: String, value: String, named: String) {
        let error = #expect(throws: GatewayError.self) { try JobQuery.parse(Self.request([(name, value)])) }
        guard case .invalidQuery(let parameter, _)? = error else {
            Issue.record("expected invalidQuery, got \(String(describing: error))")
            return
        }
        #expect(parameter == named)
    }

    @Test func refusesASingleValueParameterGivenTwice() {
        #expect(throws: GatewayError.self) {
            try JobQuery.parse(Self.request([("sort", "createdAt:asc"), ("sort", "createdAt:desc")]))
        }
    }

    static func job(_ id: String, _ second: Int, _ status: JobStatus = .succeeded, type: JobType = .deleteDataset)
        -> SystemJob
    {
        SystemJob(
            id: id, cloud: .azure, type: type, datasetId: "d\(second % 2)", status: status,
            createdAt: "2024-12-22T19:44:\(second < 10 ? "0" : "")\(second)Z",
            updatedAt: "2024-12-22T19:50:\(59 - second)Z")
    }

    /// Serves `jobs` in windows, newest first, as both platforms page.
    static func fetch(_ jobs: [SystemJob], truncated: Bool = false)
        -> (Int, Int) async throws(GatewayError) -> UpstreamWindow
    {
        let ordered = jobs.sorted(by: SystemJob.newestFirst)
        return { offset, limit throws(GatewayError) in
            let slice = Array(ordered.dropFirst(offset).prefix(limit))
            return UpstreamWindow(
                jobs: slice, isLast: offset + slice.count >= ordered.count, total: ordered.count, truncated: truncated)
        }
    }

    @Test func aFilteredOrderedWalkHandsOutEachMatchOnceInOrder() async throws {
        let jobs = (0..<30).map { Self.job("j\($0)", $0, $0 % 3 == 0 ? .failed : .succeeded) }
        var query = JobQuery()
        query.statuses = [.failed]
        query.ascending = true

        var seen: [String] = []
        var cursor = ScanCursor(limit: 3, fingerprint: query.fingerprint)
        for _ in 0..<20 {
            let page = try await ListScan.page(from: cursor, query: query, fetch: Self.fetch(jobs))
            seen += page.jobs.map(\.id)
            #expect(page.total == 10 && page.complete)
            guard let next = page.next else { break }
            cursor = try #require(
                ListPosition(encoded: ListPosition.scan(next).encoded).flatMap {
                    if case .scan(let scan) = $0 { scan } else { nil }
                })
        }
        #expect(seen == stride(from: 0, to: 30, by: 3).map { "j\($0)" })
    }

    @Test func sortingByUpdateTimeUsesIt() async throws {
        let jobs = (0..<5).map { Self.job("j\($0)", $0) }
        var query = JobQuery()
        query.sortField = .updatedAt
        query.ascending = true
        let page = try await ListScan.page(
            from: ScanCursor(limit: 10, fingerprint: query.fingerprint), query: query, fetch: Self.fetch(jobs))
        #expect(page.jobs.map(\.id) == ["j4", "j3", "j2", "j1", "j0"])
    }

    /// Running jobs are updated on every read; a walk by update time must still end, hand out no job twice, and
    /// say when it left jobs out.
    @Test func aWalkByUpdateTimeEndsWhileJobsKeepChanging() async throws {
        final class Platform: @unchecked Sendable {  // Touched by one task at a time in this test.
            var jobs: [SystemJob]
            var clock = 30

            init(_ jobs: [SystemJob]) {
                self.jobs = jobs
            }

            func window(_ offset: Int, _ limit: Int) -> UpstreamWindow {
                clock += 1
                for index in jobs.indices where jobs[index].status == .running {
                    jobs[index].updatedAt = "2024-12-22T19:51:\(clock)Z"
                }
                let ordered = jobs.sorted(by: SystemJob.newestFirst)
                let slice = Array(ordered.dropFirst(offset).prefix(limit))
                return UpstreamWindow(jobs: slice, isLast: offset + slice.count >= ordered.count, total: ordered.count)
            }
        }
        let platform = Platform((0..<8).map { Self.job("j\($0)", $0, $0 < 2 ? .running : .succeeded) })
        var query = JobQuery()
        query.sortField = .updatedAt
        query.ascending = true

        var seen: [String] = []
        var complete = true
        var cursor = ScanCursor(limit: 2, fingerprint: query.fingerprint)
        var pages = 0
        while pages < 30 {
            pages += 1
            let page = try await ListScan.page(from: cursor, query: query) { (offset, limit) throws(GatewayError) in
                platform.window(offset, limit)
            }
            seen += page.jobs.map(\.id)
            complete = complete && page.complete
            guard let next = page.next else { break }
            guard case .scan(let decoded)? = ListPosition(encoded: ListPosition.scan(next).encoded) else {
                Issue.record("the cursor did not survive its encoding")
                return
            }
            cursor = decoded
        }

        #expect(pages < 30, "the walk ended")
        #expect(seen.count == Set(seen).count, "\(seen)")
        #expect(Set((2..<8).map { "j\($0)" }).isSubset(of: Set(seen)))
        #expect(!complete, "the running jobs updated during the walk were left out, and the answer said so")
    }

    /// Azure's whole-second times: a job updated after the walk began can still show the walk's cutoff second.
    @Test func aJobUpdatedInTheCutoffSecondIsFlaggedNotLost() async throws {
        final class Platform: @unchecked Sendable {  // Touched by one task at a time in this test.
            var jobs: [SystemJob]

            init(_ jobs: [SystemJob]) {
                self.jobs = jobs
            }

            func window(_ offset: Int, _ limit: Int) -> UpstreamWindow {
                let ordered = jobs.sorted(by: SystemJob.newestFirst)
                let slice = Array(ordered.dropFirst(offset).prefix(limit))
                return UpstreamWindow(jobs: slice, isLast: offset + slice.count >= ordered.count, total: ordered.count)
            }
        }
        let platform = Platform(
            [("a", 50), ("e", 49), ("b", 48), ("c", 47), ("d", 46)].map { id, second in
                SystemJob(
                    id: id, cloud: .azure, type: .deleteDataset, status: .queued, createdAt: "2024-12-22T19:44:00Z",
                    updatedAt: "2024-12-22T19:50:\(second)Z")
            })
        var query = JobQuery()
        query.sortField = .updatedAt

        let first = try await ListScan.page(
            from: ScanCursor(limit: 2, fingerprint: query.fingerprint), query: query
        ) { (offset, limit) throws(GatewayError) in platform.window(offset, limit) }
        #expect(first.jobs.map(\.id) == ["a", "e"])
        #expect(first.complete)

        platform.jobs[2].updatedAt = "2024-12-22T19:50:50Z"
        let second = try await ListScan.page(from: try #require(first.next), query: query) {
            (offset, limit) throws(GatewayError) in platform.window(offset, limit)
        }
        #expect(second.jobs.map(\.id) == ["c", "d"])
        #expect(
            !second.complete, "job b moved into the cutoff second after the walk began: it is left out, and said so")
    }

    /// The scan orders ties by id itself, so its cursor is an exact position however many jobs share a second.
    @Test func aScanWalkEndsWithMoreJobsInOneSecondThanACursorCouldList() async throws {
        let jobs = (0..<990).map { index in
            SystemJob(
                id: String(format: "j%04d", index), cloud: .azure, type: .deleteDataset, status: .succeeded,
                createdAt: "2024-12-22T19:44:50Z")
        }
        var query = JobQuery()
        query.ascending = true

        var seen: [String] = []
        var cursor = ScanCursor(limit: 100, fingerprint: query.fingerprint)
        var pages = 0
        while pages < 30 {
            pages += 1
            let page = try await ListScan.page(from: cursor, query: query, fetch: Self.fetch(jobs))
            seen += page.jobs.map(\.id)
            guard let next = page.next else { break }
            guard case .scan(let decoded)? = ListPosition(encoded: ListPosition.scan(next).encoded) else {
                Issue.record("the cursor did not survive its encoding")
                return
            }
            cursor = decoded
        }
        #expect(pages == 10)
        #expect(seen == jobs.map(\.id))
    }

    @Test func timesCompareAsInstantsNotText() {
        #expect(orderingTime("2024-12-22T19:44:50Z") == orderingTime("2024-12-22T19:44:50.000000Z"))
        #expect(orderingTime("2024-12-22T19:44:50Z") < orderingTime("2024-12-22T19:44:50.1Z"))
        #expect(orderingTime("2024-12-22T19:44:50.25Z") < orderingTime("2024-12-22T19:44:50.250001Z"))
        #expect(orderingTime(nil) < orderingTime("1970-01-01T00:00:00Z"))
    }

    @Test func aTruncatedUpstreamMakesTheAnswerIncomplete() async throws {
        var query = JobQuery()
        query.types = ["DELETE_DATASET"]
        let page = try await ListScan.page(
            from: ScanCursor(limit: 10, fingerprint: query.fingerprint), query: query,
            fetch: Self.fetch([Self.job("a", 1)], truncated: true))
        #expect(!page.complete)
        #expect(page.jobs.map(\.id) == ["a"])
    }

    @Test func aListLongerThanTheScanIsIncomplete() async throws {
        let jobs = (0..<1050).map { index in
            SystemJob(
                id: "j\(index)", cloud: .aws, type: .deleteDataset, status: .succeeded,
                createdAt: "2024-12-22T19:44:50.\(String(format: "%06d", index))Z")
        }
        var query = JobQuery()
        query.ascending = true
        let page = try await ListScan.page(
            from: ScanCursor(limit: 5, fingerprint: query.fingerprint), query: query, fetch: Self.fetch(jobs))
        #expect(!page.complete)
        #expect(page.total == 1000)
    }
}
