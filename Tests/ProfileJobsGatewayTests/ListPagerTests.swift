import Foundation
import Testing

@testable import ProfileJobsGateway

/// The paging rules on their own, over an upstream list held in memory that changes between pages.
@Suite struct ListPagerTests {
    /// An offset-paged upstream over `jobs`, in the order given.
    final class Upstream: @unchecked Sendable {  // Tests touch it from one task at a time.
        var jobs: [SystemJob]
        var calls = 0

        init(_ jobs: [SystemJob]) {
            self.jobs = jobs
        }

        func window(_ offset: Int, _ limit: Int) -> UpstreamWindow {
            calls += 1
            let slice = Array(jobs.dropFirst(offset).prefix(limit))
            return UpstreamWindow(jobs: slice, isLast: offset + slice.count >= jobs.count, total: jobs.count)
        }
    }

    static func job(_ id: String, _ second: Int) -> SystemJob {
        SystemJob(
            id: id, cloud: .aws, type: .deleteDataset, status: .queued,
            createdAt: "2024-12-22T19:44:\(second < 10 ? "0" : "")\(second)Z")
    }

    static func walk(_ upstream: Upstream, limit: Int, between: (Int) -> Void = { _ in }) async throws -> [String] {
        var ids: [String] = []
        var cursor = ListCursor(offset: 0, limit: limit)
        for page in 0..<50 {
            let result = try await ListPager.page(from: cursor) { (offset, limit) throws(GatewayError) in
                upstream.window(offset, limit)
            }
            ids += result.jobs.map(\.id)
            between(page)
            guard let next = result.next else { return ids }
            cursor = try #require(ListCursor(encoded: next.encoded))
        }
        Issue.record("the walk did not end")
        return ids
    }

    @Test func newestFirstWithJobsArrivingOnTop() async throws {
        let upstream = Upstream((0..<10).reversed().map { Self.job("j\($0)", $0 + 10) })
        let ids = try await Self.walk(upstream, limit: 3) { page in
            upstream.jobs.insert(Self.job("new\(page)", 50 + page), at: 0)
        }
        #expect(ids == (0..<10).reversed().map { "j\($0)" })
    }

    @Test func oldestFirstWithJobsArrivingAtTheEnd() async throws {
        let upstream = Upstream((0..<7).map { Self.job("j\($0)", $0 + 10) })
        let ids = try await Self.walk(upstream, limit: 3) { page in
            upstream.jobs.append(Self.job("new\(page)", 50 + page))
        }
        #expect(Array(ids.prefix(7)) == (0..<7).map { "j\($0)" })
        #expect(ids.count == Set(ids).count)
    }

    /// Azure's times have whole seconds, so many jobs share one; the boundary keeps their ids.
    @Test func jobsSharingACreationTimeAcrossPages() async throws {
        let upstream = Upstream((0..<8).map { Self.job("j\($0)", 30) })
        let ids = try await Self.walk(upstream, limit: 3) { page in
            upstream.jobs.insert(Self.job("new\(page)", 40), at: 0)
        }
        #expect(ids == (0..<8).map { "j\($0)" })
    }

    /// Bulk creation on Azure puts hundreds of jobs in one second; every cursor of the walk must still be accepted.
    @Test func hundredsOfJobsInOneSecondKeepCursorsShortAndTheWalkWhole() async throws {
        let upstream = Upstream((0..<650).map { Self.job(String(format: "j%03d", $0), 30) })
        var longest = 0
        var ids: [String] = []
        var cursor = ListCursor(offset: 0, limit: 100)
        for page in 0..<20 {
            let result = try await ListPager.page(from: cursor) { (offset, limit) throws(GatewayError) in
                upstream.window(offset, limit)
            }
            ids += result.jobs.map(\.id)
            upstream.jobs.insert(Self.job("new\(page)", 40), at: 0)
            guard let next = result.next else { break }
            longest = max(longest, next.encoded.count)
            cursor = try #require(ListCursor(encoded: next.encoded), "cursor of \(next.encoded.count) characters")
        }
        #expect(ids == (0..<650).map { String(format: "j%03d", $0) })
        #expect(longest <= 8192)
    }

    @Test func anEndingWindowGivesNoNextCursor() async throws {
        let upstream = Upstream((0..<6).reversed().map { Self.job("j\($0)", $0 + 10) })
        let first = try await ListPager.page(from: ListCursor(offset: 0, limit: 6)) {
            (offset, limit) throws(GatewayError) in
            upstream.window(offset, limit)
        }
        #expect(first.jobs.count == 6)
        #expect(first.next == nil)
        #expect(first.total == 6)
    }

    @Test func aCursorSurvivesItsEncoding() throws {
        let cursor = ListCursor(
            offset: 42, limit: 7, order: .ascending,
            boundary: .init(time: "2024-12-22T19:44:50.250006Z", ids: ["a", "b-c"]))
        #expect(ListCursor(encoded: cursor.encoded) == cursor)
        #expect(ListCursor(encoded: "djE6MTox") == nil)
    }
}
