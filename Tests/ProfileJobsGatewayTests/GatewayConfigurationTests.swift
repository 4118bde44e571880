import Foundation
import ProfileJobsGateway
import Testing

/// The JSON configuration `serve` reads: a full document, and every refusal naming its key.
@Suite struct GatewayConfigurationTests {
    static func parse(_ text: String) throws(ConfigurationError) -> GatewayConfiguration {
        try GatewayConfiguration.parse(Array(text.utf8))
    }

    @Test func readsAFullDocument() throws {
        let configuration = try Self.parse(
            """
            {
              "listen": {"host": "0.0.0.0", "port": 9090},
              "upstream": {"connectTimeoutSeconds": 2, "timeoutSeconds": 12.5, "caBundle": "/etc/ssl/certs/ca-certificates.crt",
                           "retries": 1, "retryAfterCapSeconds": 2.5, "maxInFlight": 64,
                           "circuitBreaker": {"failures": 3, "openSeconds": 12}},
              "sandboxLookup": {"cacheSeconds": 600, "failureCacheSeconds": 3},
              "organizations": {
                "a@AdobeOrg": {"cloud": "azure"},
                "b@AdobeOrg": {
                  "cloud": "aws", "baseURL": "http://127.0.0.1:9000/", "defaultSandbox": "dev",
                  "sandboxes": {"dev": "id-dev", "prod": "id-prod"}, "connectTimeoutSeconds": 0.5, "timeoutSeconds": 90
                }
              }
            }
            """)
        #expect(configuration.host == "0.0.0.0")
        #expect(configuration.port == 9090)
        #expect(configuration.connectTimeoutSeconds == 2)
        #expect(configuration.upstreamTimeoutSeconds == 12.5)
        #expect(configuration.caBundlePath == "/etc/ssl/certs/ca-certificates.crt")
        #expect(configuration.sandboxCacheSeconds == 600)
        #expect(configuration.sandboxFailureCacheSeconds == 3)
        var policy = UpstreamPolicy()
        (policy.retries, policy.retryAfterCapSeconds, policy.maxInFlight) = (1, 2.5, 64)
        (policy.circuitBreakerFailures, policy.circuitBreakerOpenSeconds) = (3, 12)
        #expect(configuration.upstreamPolicy == policy)
        #expect(
            configuration.organizations == [
                "a@AdobeOrg": OrganizationRoute(orgId: "a@AdobeOrg", cloud: .azure),
                "b@AdobeOrg": OrganizationRoute(
                    orgId: "b@AdobeOrg", cloud: .aws, baseURL: "http://127.0.0.1:9000", defaultSandbox: "dev",
                    sandboxes: ["dev": "id-dev", "prod": "id-prod"], connectTimeoutSeconds: 0.5, timeoutSeconds: 90),
            ])
    }

    @Test func anOrganizationsOwnTimeoutsWinAndTheLongestSetTheDrainGrace() throws {
        let configuration = try Self.parse(
            """
            {"upstream": {"connectTimeoutSeconds": 2, "timeoutSeconds": 20},
             "organizations": {"a@AdobeOrg": {"cloud": "azure"},
                               "b@AdobeOrg": {"cloud": "aws", "timeoutSeconds": 40},
                               "c@AdobeOrg": {"cloud": "aws", "connectTimeoutSeconds": 0.25}}}
            """)
        let timeouts = { (orgId: String) in configuration.timeouts(for: configuration.organizations[orgId]!) }
        #expect(timeouts("a@AdobeOrg") == (2, 20))
        #expect(timeouts("b@AdobeOrg") == (2, 40))
        #expect(timeouts("c@AdobeOrg") == (0.25, 20))
        #expect(GatewayServer.drainGrace(configuration) == .seconds(43))
    }

    @Test func theExampleConfigurationIsValid() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/config.example.json")
        let configuration = try GatewayConfiguration.parse(Array(try Data(contentsOf: example)))
        #expect(configuration.upstreamPolicy == UpstreamPolicy())
    }

    @Test func readsTheClientLimits() throws {
        let configuration = try Self.parse(
            """
            {"listen": {"maxConnections": 100, "idleTimeoutSeconds": 5, "requestTimeoutSeconds": 2.5,
                        "maxHeaderBytes": 8192},
             "organizations": {"a@AdobeOrg": {"cloud": "aws"}}}
            """)
        var expected = ClientLimits()
        expected.maxConnections = 100
        expected.idleTimeoutSeconds = 5
        expected.requestTimeoutSeconds = 2.5
        expected.maxHeaderBytes = 8192
        #expect(configuration.clientLimits == expected)
        #expect(try Self.parse(#"{"organizations": {"a@AdobeOrg": {"cloud": "aws"}}}"#).clientLimits == ClientLimits())
    }

    @Test func theUpstreamPolicyHasSafeDefaults() throws {
        let policy = try Self.parse(#"{"organizations": {"a@AdobeOrg": {"cloud": "aws"}}}"#).upstreamPolicy
        #expect(policy.retries == 2)
        #expect(policy.retryAfterCapSeconds == 5)
        #expect(policy.circuitBreakerFailures == 5)
        #expect(policy.circuitBreakerOpenSeconds == 30)
        #expect(policy.maxInFlight == 256)
    }

    @Test func readsTheAuditSinks() throws {
        let configuration = try Self.parse(
            """
            {"audit": {"file": "/var/lib/gateway/audit.jsonl", "stdout": true,
                       "syslog": {"transport": "udp", "host": "logs.internal", "port": 5514, "facility": "audit",
                                  "appName": "pjg"}},
             "organizations": {"a@AdobeOrg": {"cloud": "aws"}}}
            """)
        #expect(
            configuration.audit
                == AuditConfiguration(
                    filePath: "/var/lib/gateway/audit.jsonl", standardOutput: true,
                    syslog: SyslogConfiguration(
                        transport: .udp, host: "logs.internal", port: 5514, facility: 13, appName: "pjg")))

        let defaults = try Self.parse(
            #"{"audit": {"syslog": {"host": "::1", "port": 514}}, "organizations": {"a@AdobeOrg": {"cloud": "aws"}}}"#)
        #expect(defaults.audit.filePath == "audit.jsonl")
        #expect(defaults.shutdownReadinessDelaySeconds == 2)
        let quick = try Self.parse(
            #"{"shutdown": {"readinessDelaySeconds": 0}, "organizations": {"a@AdobeOrg": {"cloud": "aws"}}}"#)
        #expect(quick.shutdownReadinessDelaySeconds == 0)
        #expect(defaults.audit.syslog == SyslogConfiguration(transport: .tcp, host: "::1", port: 514, facility: 16))
    }

    @Test func defaultsEverythingButTheOrganizations() throws {
        let configuration = try Self.parse(#"{"organizations": {"a@AdobeOrg": {"cloud": "aws"}}}"#)
        var expected = GatewayConfiguration(organizations: [OrganizationRoute(orgId: "a@AdobeOrg", cloud: .aws)])
        expected.port = 8080
        #expect(configuration == expected)
        #expect(configuration.organizations["a@AdobeOrg"]?.baseURL == "https://platform.adobe.io")
        #expect(configuration.organizations["a@AdobeOrg"]?.defaultSandbox == "prod")
    }

    static let org = #""a@AdobeOrg""#

    /// Each bad document and the key its error must name.
    static let refusals: [(document: String, key: String)] = [
        ("{", ""),
        ("[]", ""),
        (#"{"organizations": {"a@AdobeOrg": {"cloud": "aws"}}, "organisations": {}}"#, "organisations"),
        (#"{"organizations": {\#(org): {"cloud": "aws", "region": "VA6"}}}"#, "organizations.a@AdobeOrg.region"),
        (#"{"organizations": {\#(org): {"cloud": "gcp"}}}"#, "organizations.a@AdobeOrg.cloud"),
        (#"{"organizations": {\#(org): {"cloud": 1}}}"#, "organizations.a@AdobeOrg.cloud"),
        (#"{"organizations": {\#(org): {}}}"#, "organizations.a@AdobeOrg.cloud"),
        (#"{"organizations": {\#(org): {"cloud": "aws", "baseURL": 42}}}"#, "organizations.a@AdobeOrg.baseURL"),
        (#"{"organizations": {\#(org): {"cloud": "aws", "baseURL": "ftp://x"}}}"#, "organizations.a@AdobeOrg.baseURL"),
        (#"{"organizations": {\#(org): {"cloud": "aws", "baseURL": "platform"}}}"#, "organizations.a@AdobeOrg.baseURL"),
        (
            #"{"organizations": {\#(org): {"cloud": "aws", "sandboxes": {"prod": 7}}}}"#,
            "organizations.a@AdobeOrg.sandboxes.prod"
        ),
        (#"{"organizations": {\#(org): "aws"}}"#, "organizations.a@AdobeOrg"),
        (#"{"listen": {"port": 70000}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "listen.port"),
        (#"{"listen": {"port": 0}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "listen.port"),
        (#"{"listen": {"port": 80.5}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "listen.port"),
        (#"{"listen": {"address": "x"}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "listen.address"),
        (#"{"listen": {"maxConnections": 0}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "listen.maxConnections"),
        (
            #"{"listen": {"requestTimeoutSeconds": 0}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "listen.requestTimeoutSeconds"
        ),
        (
            #"{"listen": {"idleTimeoutSeconds": 2.5}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "listen.idleTimeoutSeconds"
        ),
        (
            #"{"listen": {"maxHeaderBytes": 100}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "listen.maxHeaderBytes"
        ),
        (
            #"{"upstream": {"timeoutSeconds": 0}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.timeoutSeconds"
        ),
        (
            #"{"sandboxLookup": {"cacheSeconds": "1h"}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "sandboxLookup.cacheSeconds"
        ),
        (
            #"{"upstream": {"timeoutSeconds": 1e308}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.timeoutSeconds"
        ),
        (
            #"{"organizations": {\#(org): {"cloud": "aws", "defaultSandbox": "a b"}}}"#,
            "organizations.a@AdobeOrg.defaultSandbox"
        ),
        (
            #"{"organizations": {\#(org): {"cloud": "aws", "sandboxes": {"../p": "id"}}}}"#,
            "organizations.a@AdobeOrg.sandboxes.../p"
        ),
        (
            #"{"shutdown": {"readinessDelaySeconds": -1}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "shutdown.readinessDelaySeconds"
        ),
        (#"{"shutdown": {"delay": 1}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "shutdown.delay"),
        (#"{"audit": {"file": ""}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "audit.file"),
        (#"{"audit": {"stdout": "yes"}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "audit.stdout"),
        (#"{"audit": {"sink": "x"}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "audit.sink"),
        (
            #"{"audit": {"syslog": {"transport": "tls", "host": "h", "port": 1}}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "audit.syslog.transport"
        ),
        (
            #"{"audit": {"syslog": {"host": "h"}}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "audit.syslog.port"
        ),
        (
            #"{"audit": {"syslog": {"port": 514}}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "audit.syslog.host"
        ),
        (
            #"{"audit": {"syslog": {"host": "h", "port": 514, "facility": "local9"}}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "audit.syslog.facility"
        ),
        (
            #"{"audit": {"syslog": {"host": "h", "port": 514, "appName": "two words"}}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "audit.syslog.appName"
        ),
        (#"{"organizations": {"": {"cloud": "aws"}}}"#, "organizations."),
        (#"{"organizations": {"a b@AdobeOrg": {"cloud": "aws"}}}"#, "organizations.a b@AdobeOrg"),
        (
            #"{"organizations": {\#(org): {"cloud": "aws", "sandboxes": {"prod": "abc\r\nX-Injected: yes"}}}}"#,
            "organizations.a@AdobeOrg.sandboxes.prod"
        ),
        (#"{"listen": {"host": "localhost"}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "listen.host"),
        (#"{"upstream": {"caBundle": ""}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "upstream.caBundle"),
        (
            #"{"upstream": {"caBundle": "/etc/passwd"}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.caBundle"
        ),
        (
            #"{"organizations": {\#(org): {"cloud": "aws", "baseURL": "https://user:secret@platform.adobe.io"}}}"#,
            "organizations.a@AdobeOrg.baseURL"
        ),
        (#"{"upstream": {"retries": 3}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "upstream.retries"),
        (#"{"upstream": {"retries": -1}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "upstream.retries"),
        (#"{"upstream": {"retries": 1.5}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "upstream.retries"),
        (
            #"{"upstream": {"retryAfterCapSeconds": 61}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.retryAfterCapSeconds"
        ),
        (
            #"{"upstream": {"retryAfterCapSeconds": "5s"}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.retryAfterCapSeconds"
        ),
        (#"{"upstream": {"maxInFlight": 0}, "organizations": {\#(org): {"cloud": "aws"}}}"#, "upstream.maxInFlight"),
        (
            #"{"upstream": {"maxInFlight": 1000000}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.maxInFlight"
        ),
        (
            #"{"upstream": {"circuitBreaker": 5}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.circuitBreaker"
        ),
        (
            #"{"upstream": {"circuitBreaker": {"failures": 0}}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.circuitBreaker.failures"
        ),
        (
            #"{"upstream": {"circuitBreaker": {"openSeconds": 0}}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.circuitBreaker.openSeconds"
        ),
        (
            #"{"upstream": {"circuitBreaker": {"halfOpen": 1}}, "organizations": {\#(org): {"cloud": "aws"}}}"#,
            "upstream.circuitBreaker.halfOpen"
        ),
        (
            #"{"organizations": {\#(org): {"cloud": "aws", "timeoutSeconds": 0}}}"#,
            "organizations.a@AdobeOrg.timeoutSeconds"
        ),
        (
            #"{"organizations": {\#(org): {"cloud": "aws", "connectTimeoutSeconds": "fast"}}}"#,
            "organizations.a@AdobeOrg.connectTimeoutSeconds"
        ),
        (#"{"organizations": []}"#, "organizations"),
        (#"{"organizations": {}}"#, "organizations"),
        (#"{"listen": {}}"#, "organizations"),
    ]

    @Test(arguments: refusals.indices)
    func aBadDocumentIsRefusedNamingTheKey(index: Int) {
        let (document, key) = Self.refusals[index]
        let error = #expect(throws: ConfigurationError.self, "\(document)") { try Self.parse(document) }
        #expect(error?.key == key, "\(document): \(String(describing: error))")
        #expect(error?.problem.isEmpty == false)
        if !key.isEmpty {
            #expect(error?.description.hasPrefix(key + ": ") == true)
        }
    }
}

/// The built executable, run as an operator would.
@Suite struct ExecutableTests {
    /// `profile-jobs-gateway` next to the test bundle, in the build's products directory.
    static func executable() throws -> URL {
        let products = Bundle.module.bundleURL.deletingLastPathComponent()
        let url = products.appendingPathComponent("profile-jobs-gateway")
        try #require(
            FileManager.default.isExecutableFile(atPath: url.path), "no executable at \(url.path); run swift build")
        return url
    }

    /// Runs the executable to its end, killing it if it has not ended within `seconds`.
    static func run(_ arguments: [String], seconds: Double = 30) async throws -> (status: Int32, stderr: String) {
        let child = try ChildProcess(try executable().path, arguments, stderr: .pipe)
        let errors = try #require(child.errors)
        let status = try await child.exit(within: seconds)
        let text = String(decoding: try await offPool { errors.readAll() }, as: UTF8.self)
        return (status, text)
    }

    @Test func serveRefusesABadConfigurationNamingTheKey() async throws {
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("gateway-config-\(UUID().uuidString).json")
        try Data(#"{"organizations": {"a@AdobeOrg": {"cloud": "gcp"}}}"#.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }

        let result = try await Self.run(["serve", "--config", file.path])
        #expect(result.status == 2)
        #expect(result.stderr.contains("organizations.a@AdobeOrg.cloud"), "\(result.stderr)")
        #expect(result.stderr.contains(file.path))
    }

    @Test func serveRefusesAMissingFileAndUnknownCommands() async throws {
        let missing = try await Self.run(["serve", "--config", "/nonexistent/gateway.json"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("/nonexistent/gateway.json"))

        let unknown = try await Self.run(["launch"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("Usage"))
    }
}
