import Foundation
import Testing

@testable import ProfileJobsGateway

/// A certificate authority of the test's own and a server certificate it signed for 127.0.0.1, made with openssl.
private struct TestCertificates {
    let directory: URL
    var authority: String { directory.appendingPathComponent("ca.pem").path }
    var serverCertificate: String { directory.appendingPathComponent("server.pem").path }
    var serverKey: String { directory.appendingPathComponent("server.key").path }

    static func make() async throws -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(directory.path)'
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
                -subj '/CN=Gateway test CA' -keyout ca.key -out ca.pem
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=127.0.0.1' \
                -keyout server.key -out server.csr
            printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile san.ext -out server.pem
            """
        let openssl = try ChildProcess("sh", ["-c", script], stderr: .null)
        let status = try await openssl.exit(within: 60)
        #expect(status == 0, "openssl could not make the test certificates")
        return TestCertificates(directory: directory)
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Verification of the platform's certificate is always on; what can be configured is whom to trust.
@Suite(.timeLimit(.minutes(2)))
struct UpstreamTLSTests {
    /// The call's failure, or nil when it succeeded.
    private static func failure(of request: UpstreamRequest, on transport: CurlTransport) async -> UpstreamFailure? {
        do {
            _ = try await transport.send(request)
            return nil
        } catch {
            return error
        }
    }

    @Test func aCertificateFromAnUnknownAuthorityIsRefused() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let server = try await UpstreamTestServer.startTLS(
            certificate: certificates.serverCertificate, key: certificates.serverKey)
        let transport = try CurlTransport()
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: "https://127.0.0.1:\(server.port)/job")
        let outcome = try await withDeadline(20) { await Self.failure(of: request, on: transport) }

        guard case .unreachable(let message) = try #require(outcome, "an untrusted certificate was accepted") else {
            Issue.record("expected unreachable, got \(String(describing: outcome))")
            return
        }
        #expect(message.lowercased().contains("certificate"), "\(message)")
    }

    @Test func theConfiguredBundleIsTrusted() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let server = try await UpstreamTestServer.startTLS(
            certificate: certificates.serverCertificate, key: certificates.serverKey)
        var configuration = CurlTransport.Configuration()
        configuration.caBundlePath = certificates.authority
        let transport = try CurlTransport(configuration: configuration)
        defer { transport.shutdown() }

        let request = UpstreamRequest(method: "GET", url: "https://127.0.0.1:\(server.port)/job")
        let response = try await withDeadline(20) { try await transport.send(request) }

        #expect(response.status == 200)
        #expect(String(decoding: response.body, as: UTF8.self).contains("\"id\""))
    }

    /// There is no switch to turn verification off: a configuration that tries is refused, naming the key.
    @Test(arguments: ["verifyTLS", "insecure", "sslVerify"])
    func aConfigurationCannotTurnVerificationOff(key: String) {
        let document = #"{"upstream": {"\#(key)": false}, "organizations": {"a@AdobeOrg": {"cloud": "aws"}}}"#
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration.parse(Array(document.utf8)) }
        do {
            _ = try GatewayConfiguration.parse(Array(document.utf8))
        } catch {
            #expect(error.key == "upstream.\(key)")
        }
    }
}
