import Foundation
import ProfileJobsGateway
import Testing

/// The gateway as an operator runs it (`serve`), killed between forwarding a deletion and answering it.
@Suite struct AuditRecoveryTests {
    @Test func aDeletionCutOffByACrashIsReportedAtTheNextStart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "audit-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let upstream = ScriptedUpstream()
        upstream.answer(.init(stall: true))
        let upstreamServer = HTTPServer(configuration: HTTPServerConfiguration(), handler: upstream)
        let upstreamPort = try upstreamServer.start()

        // The platform holds the create; the intent is on disk by then, and the gateway is killed.
        let first = try await ServedGateway(directory: directory, upstreamPort: upstreamPort)
        let caller = GatewayCaller(port: first.port, orgId: "azure@AdobeOrg")
        let pending = Task { try? await caller.create(#"{"datasetId": "crash-dataset"}"#) }
        let intent = try await withDeadline(60) {
            while true {
                let text = (try? String(contentsOfFile: first.auditFile, encoding: .utf8)) ?? ""
                if let line = text.split(separator: "\n").first, let record = AuditRecord(json: Array(line.utf8)) {
                    return record
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(intent.event == .intent)
        #expect(intent.datasetId == "crash-dataset")

        // The intent is synced first and the call forwarded right after, so the platform may see it a moment later.
        try await poll(for: 30, "the intent is written before forwarding, not instead") {
            !upstream.receivedRequests.isEmpty
        }
        first.signal(SIGKILL)
        #expect(try await first.child.exit(within: 30) == 128 + SIGKILL)
        _ = await pending.value
        try await stopOffPool { upstreamServer.stop() }

        // The next start finds the intent without outcome, reports it, and records the outcome as unknown.
        let second = try await ServedGateway(directory: directory, upstreamPort: upstreamPort)
        let log = second.log
        #expect(log.contains("audit intent without outcome"), "\(log)")
        #expect(log.contains(intent.id), "\(log)")
        let records = try String(contentsOfFile: second.auditFile, encoding: .utf8).split(separator: "\n")
            .compactMap { AuditRecord(json: Array($0.utf8)) }
        let outcome = try #require(records.first { $0.event == .outcome && $0.id == intent.id })
        #expect(outcome.outcome == .unknown)
        #expect(outcome.datasetId == "crash-dataset")
        #expect(outcome.requestId == intent.requestId)

        let search = try await RawHTTPClient(port: second.port).sendOffPool("GET", "/v1/audit?datasetId=crash-dataset")
        let found = try search.jsonObject()["records"] as? [[String: Any]] ?? []
        #expect(found.map { $0.string("outcome") ?? "-" } == ["unknown", "-"])

        // Reported once: a third start has nothing left to report.
        second.signal(SIGTERM)
        #expect(try await second.child.exit(within: 60) == 0)
        let third = try await ServedGateway(directory: directory, upstreamPort: upstreamPort)
        #expect(!third.log.contains("audit intent without outcome"))
        third.signal(SIGTERM)
        #expect(try await third.child.exit(within: 60) == 0)
    }
}

extension AuditRecoveryTests {
    /// SIGTERM while a deletion is with the platform: the call is let finish and answered, its outcome recorded,
    /// and the process exits 0.
    @Test func aStopSignalLetsTheDeletionInFlightFinish() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("audit-stop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let upstream = ScriptedUpstream()
        upstream.answer(.init(body: try DialectFixture.bytes("azure/create-dataset.response.json"), stall: true))
        let upstreamServer = HTTPServer(configuration: HTTPServerConfiguration(), handler: upstream)
        let upstreamPort = try upstreamServer.start()
        defer { upstreamServer.stop() }

        let gateway = try await ServedGateway(directory: directory, upstreamPort: upstreamPort)
        let caller = GatewayCaller(port: gateway.port, orgId: "azure@AdobeOrg")
        let pending = Task { try await caller.create(#"{"datasetId": "stop-dataset"}"#) }
        try await withDeadline(60) {
            while upstream.receivedRequests.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        }

        gateway.signal(SIGTERM)
        try await withDeadline(60) {
            while !gateway.log.contains("not ready; stopping") { try await Task.sleep(for: .milliseconds(20)) }
        }
        upstream.release()

        let answer = try await pending.value
        #expect(answer.status == 201, "\(answer.text)")
        #expect(try await gateway.child.exit(within: 90) == 0, "\(gateway.log)")
        #expect(gateway.log.contains("\"message\":\"stopped\""))
        let records = try String(contentsOfFile: gateway.auditFile, encoding: .utf8).split(separator: "\n")
            .compactMap { AuditRecord(json: Array($0.utf8)) }
        #expect(records.map(\.event) == [.intent, .outcome])
        #expect(records.last?.outcome == .succeeded)
    }
}

extension ServedGateway {
    /// `serve` routing one Azure organization to `upstreamPort`, with a long upstream timeout.
    convenience init(directory: URL, upstreamPort: UInt16) async throws {
        let auditFile = directory.appendingPathComponent("audit.jsonl").path
        try await self.init(directory: directory) { port in
            """
            {"listen": {"host": "127.0.0.1", "port": \(port)},
             "upstream": {"timeoutSeconds": 120},
             "shutdown": {"readinessDelaySeconds": 0.5},
             "audit": {"file": "\(auditFile)"},
             "organizations": {"azure@AdobeOrg": {"cloud": "azure", "baseURL": "http://127.0.0.1:\(upstreamPort)"}}}
            """
        }
    }
}

/// A loopback port free at the time of asking.
func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw RawHTTPClient.Failure(description: "bind failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return UInt16(bigEndian: address.sin_port)
}
