import Foundation
import ProfileJobsGateway
import Testing

/// `healthcheck` (what the container image's HEALTHCHECK runs) and `check-config` (what CI runs on the deployed
/// configuration files).
@Suite struct DeploymentCommandsTests {
    @Test func theProbeReadsTheStatusOfARunningGateway() async throws {
        try await withDemo { demo async throws in
            let port = demo.gatewayPort
            #expect(try await offPool { try HealthProbe.status(host: "127.0.0.1", port: port) } == 200)
            demo.gateway.beginShutdown()
            #expect(try await offPool { try HealthProbe.status(host: "127.0.0.1", port: port, path: "/readyz") } == 503)
        }

        let (port, socket) = try closedPort()
        defer { close(socket) }
        let error = #expect(throws: HealthProbe.Failure.self) { try HealthProbe.status(host: "127.0.0.1", port: port) }
        #expect(error?.description.contains("refused") == true, "\(String(describing: error))")
        #expect(throws: HealthProbe.Failure.self) { try HealthProbe.status(host: "localhost", port: port) }
    }

    @Test func aWildcardListenerIsProbedOnLoopback() {
        #expect(HealthProbe.probeHost(forListening: "0.0.0.0") == "127.0.0.1")
        #expect(HealthProbe.probeHost(forListening: "::") == "::1")
        #expect(HealthProbe.probeHost(forListening: "10.1.2.3") == "10.1.2.3")
    }

    @Test func healthcheckExitsZeroOnlyWhenTheGatewayAnswers200() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("health-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        try await withDemo { demo async throws in
            let port = demo.gatewayPort
            let healthy = try await ExecutableTests.run(["healthcheck", "--port", "\(port)"])
            #expect(healthy.status == 0, "\(healthy.stderr)")

            // The listen address comes from the configuration; a wildcard one is reached on loopback.
            let file = directory.appendingPathComponent("gateway.json")
            try Data(
                #"{"listen": {"host": "0.0.0.0", "port": \#(port)}, "organizations": {"a@AdobeOrg": {"cloud": "aws"}}}"#
                    .utf8
            ).write(to: file)
            let viaFile = try await ExecutableTests.run(["healthcheck", "--config", file.path])
            #expect(viaFile.status == 0, "\(viaFile.stderr)")

            demo.gateway.beginShutdown()
            let notReady = try await ExecutableTests.run(["healthcheck", "--port", "\(port)", "--path", "/readyz"])
            #expect(notReady.status == 1)
            #expect(notReady.stderr.contains("answered 503"), "\(notReady.stderr)")
        }

        let (port, socket) = try closedPort()
        defer { close(socket) }
        let down = try await ExecutableTests.run(["healthcheck", "--port", "\(port)"])
        #expect(down.status == 1)
        #expect(down.stderr.hasPrefix("unhealthy: "), "\(down.stderr)")

        // A file that does not parse is unhealthy too, never exit 2, which container engines keep for themselves.
        let broken = directory.appendingPathComponent("broken.json")
        try Data("{".utf8).write(to: broken)
        let unreadable = try await ExecutableTests.run(["healthcheck", "--config", broken.path])
        #expect(unreadable.status == 1)
        #expect(unreadable.stderr.hasPrefix("unhealthy: "), "\(unreadable.stderr)")
    }

    /// Every configuration file under deploy/ is one the gateway accepts.
    @Test func checkConfigAcceptsTheDeployedFilesAndRefusesABadOne() async throws {
        let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy")
        let files = try #require(FileManager.default.enumerator(atPath: deploy.path)).compactMap { $0 as? String }
            .filter { $0.hasSuffix(".json") }
        #expect(files.contains("config.example.json"), "\(files)")
        for file in files {
            let result = try await ExecutableTests.run([
                "check-config", "--config", deploy.appendingPathComponent(file).path,
            ])
            #expect(result.status == 0, "\(file): \(result.stderr)")
        }

        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("check-\(UUID().uuidString).json")
        try Data(#"{"organizations": {"a@AdobeOrg": {"cloud": "aws", "timeoutSeconds": 0}}}"#.utf8).write(to: bad)
        defer { try? FileManager.default.removeItem(at: bad) }
        let refused = try await ExecutableTests.run(["check-config", "--config", bad.path])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("organizations.a@AdobeOrg.timeoutSeconds"), "\(refused.stderr)")
    }
}
