import Foundation
import Testing

@testable import ProfileJobsGateway

/// Ids and timestamps the gateway writes itself, without Foundation, read back by Foundation.
@Suite struct GeneratedIdTests {
    @Test func aGeneratedRequestIdIsALowerCaseVersion4UUID() throws {
        var seen: Set<String> = []
        for _ in 0..<1000 {
            let id = Gateway.randomUUID()
            let parsed = try #require(UUID(uuidString: id))
            #expect(id == id.lowercased())
            #expect(parsed.uuid.6 >> 4 == 4)
            #expect(parsed.uuid.8 >> 6 == 0b10)
            seen.insert(id)
        }
        #expect(seen.count == 1000)
    }

    @Test func aLogTimestampIsTheCurrentSecondInISO8601() throws {
        let before = Date.now.timeIntervalSince1970.rounded(.down)
        let stamp = Logger.timestamp()
        let after = Date.now.timeIntervalSince1970
        let parsed = try #require(try? Date(stamp, strategy: .iso8601))
        #expect(stamp.count == 20)
        #expect(parsed.timeIntervalSince1970 >= before && parsed.timeIntervalSince1970 <= after)
    }
}
