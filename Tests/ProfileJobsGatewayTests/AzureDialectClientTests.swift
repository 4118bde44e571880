import Foundation
import Testing
import UpstreamSimulators

/// The outcome of the Python client: its exit status and everything it printed.
private struct ClientRun: Sendable {
    var status: Int32
    var transcript: String
}

/// Runs `Tests/clients/azure_dialect_client.py` against the gateway, killing it if it has not finished by the
/// deadline, and always reaping it.
private func runAzureClient(port: UInt16, orgId: String, deadlineSeconds: Double = 60) async throws -> ClientRun {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("clients").appendingPathComponent("azure_dialect_client.py")
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("azure-client-\(UUID().uuidString).log")
    defer { try? FileManager.default.removeItem(at: output) }

    let arguments = [script.path, "--base", "http://127.0.0.1:\(port)", "--org", orgId]
    let client = try ChildProcess("python3", arguments, stdout: .file(output.path), stderr: .file(output.path))
    let status = try await client.exit(within: deadlineSeconds)

    let transcript = String(decoding: (try? Data(contentsOf: output)) ?? Data(), as: UTF8.self)
    return ClientRun(status: status, transcript: transcript)
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
