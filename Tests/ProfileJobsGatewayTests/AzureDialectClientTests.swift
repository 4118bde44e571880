import Foundation
import Testing
import UpstreamSimulators

/// The outcome of the Python client: its exit status and everything it printed.
private struct ClientRun: Sendable {
    var status: Int32
    var transcript: String
}

/// Runs `Tests/clients/azure_dialect_client.py` against the gateway, killing it (SIGKILL: children inherit the test
/// runner's blocked SIGTERM) if it has not finished by the deadline, and always reaping it.
private func runAzureClient(port: UInt16, orgId: String, deadlineSeconds: Double = 60) async throws -> ClientRun {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("clients").appendingPathComponent("azure_dialect_client.py")
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("azure-client-\(UUID().uuidString).log")

    return try await offPool {
        guard FileManager.default.createFile(atPath: output.path, contents: nil) else {
            throw RawHTTPClient.Failure(description: "could not create \(output.path)")
        }
        defer { try? FileManager.default.removeItem(at: output) }
        let log = try FileHandle(forWritingTo: output)
        defer { try? log.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, "--base", "http://127.0.0.1:\(port)", "--org", orgId]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        try launch(process)

        let timedOut = finished.wait(timeout: .now() + deadlineSeconds) == .timedOut
        if timedOut {
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()

        let transcript = String(decoding: (try? Data(contentsOf: output)) ?? Data(), as: UTF8.self)
        if timedOut {
            throw DeadlineExceeded(seconds: deadlineSeconds)
        }
        return ClientRun(status: process.terminationStatus, transcript: transcript)
    }
}

/// An existing Azure-dialect Python script, unchanged, pointed at the gateway for an organization on each cloud.
@Suite struct AzureDialectClientTests {
    @Test(arguments: SimulatedCloud.allCases)
    func existingPythonClientWorksAgainstTheGateway(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let run = try await runAzureClient(port: demo.gatewayPort, orgId: cloud.orgId)

            #expect(run.status == 0, "\(run.transcript)")
            #expect(run.transcript.contains("OK: \(cloud.orgId) (\(cloud.rawValue))"), "\(run.transcript)")
            // The client really walked pages and removed (or was refused) through the gateway.
            #expect(run.transcript.contains("GET ?page=1&limit=2 -> 200"), "\(run.transcript)")
            let removals = demo.azure.receivedRequests.filter { $0.method == "DELETE" }.count
            #expect(removals == (cloud == .azure ? 1 : 0))
            #expect(!demo.aws.receivedRequests.contains { $0.method == "DELETE" })
        }
    }
}
