import Foundation
import Glibc
import Testing

/// A `serve` process as an operator runs it: its own configuration file, audit file and log.
final class ServedGateway: Sendable {
    let port: UInt16
    let directory: URL
    let child: ChildProcess
    /// Each start logs to a file of its own, so what one start reported is not read as another's.
    let logFile: String

    var configurationFile: URL { directory.appendingPathComponent("gateway.json") }
    var auditFile: String { directory.appendingPathComponent("audit.jsonl").path }
    var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    /// The log's lines as JSON objects.
    var logEntries: [[String: Any]] {
        log.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    /// Starts `serve` with the configuration `document` writes for a free port, and waits until it answers /healthz;
    /// another port is tried when the one chosen was taken meanwhile.
    init(directory: URL, configuration document: (UInt16) -> String) async throws {
        self.directory = directory
        let logFile = directory.appendingPathComponent("gateway-\(UUID().uuidString).log").path
        self.logFile = logFile
        let file = directory.appendingPathComponent("gateway.json")
        var started: (UInt16, ChildProcess)?
        for _ in 0..<5 where started == nil {
            let port = try freePort()
            try Data(document(port).utf8).write(to: file)
            let child = try ChildProcess(
                try ExecutableTests.executable().path, ["serve", "--config", file.path], stderr: .file(logFile))
            if try await Self.answers(port: port, child: child) {
                started = (port, child)
            } else {
                child.terminate()
            }
        }
        let (port, child) = try #require(started, "serve did not start")
        self.port = port
        self.child = child
    }

    func signal(_ signal: Int32) {
        child.signal(signal)
    }

    /// Polls /healthz until it answers, or the process ends (its port was taken meanwhile).
    private static func answers(port: UInt16, child: ChildProcess) async throws -> Bool {
        try await withDeadline(60) {
            while true {
                if (try? await RawHTTPClient(port: port, timeout: 5).sendOffPool("GET", "/healthz"))?.status == 200 {
                    return true
                }
                if child.exitStatus != nil { return false }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}
