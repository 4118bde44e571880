import Foundation
import Glibc
import Testing

/// The spawn helper every process-starting test relies on.
@Suite struct ChildProcessTests {
    /// Many open descriptors once crashed Foundation's launcher; the child must start and inherit none of them.
    @Test func startsWithManyDescriptorsOpenAndInheritsNone() async throws {
        let held = (0..<3000).map { _ in open("/dev/null", O_RDONLY) }
        defer { held.forEach { close($0) } }
        #expect(held.allSatisfy { $0 >= 0 })

        let child = try ChildProcess("sh", ["-c", "ls /proc/self/fd"], stdout: .pipe)
        let output = try #require(child.output)
        let listing = String(decoding: try await offPool { output.readAll() }, as: UTF8.self)
        #expect(try await child.exit(within: 30) == 0)

        // stdin, stdout, stderr, and the descriptor `ls` opens to read the directory.
        let descriptors = listing.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        #expect(descriptors.allSatisfy { $0 <= 3 }, "the child inherited \(descriptors)")
    }

    @Test func reportsExitStatusAndSignals() async throws {
        #expect(try await ChildProcess("sh", ["-c", "exit 7"]).exit(within: 30) == 7)

        let sleeper = try ChildProcess("sleep", ["60"])
        sleeper.signal(SIGTERM)
        #expect(try await sleeper.exit(within: 30) == 128 + SIGTERM)
    }

    @Test func aMissingProgramIsAnError() {
        #expect(throws: ChildProcess.SpawnFailed.self) {
            try ChildProcess("no-such-program-\(UUID().uuidString)", [])
        }
    }
}
