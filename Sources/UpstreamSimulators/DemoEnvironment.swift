import FoundationEssentials
import ProfileJobsGateway

/// Both simulated platforms and a gateway routed to them, on loopback: what `demo` runs and what end-to-end tests
/// drive.
public final class DemoEnvironment: Sendable {
    public static let azureOrg = "azure-demo@AdobeOrg"
    public static let awsOrg = "aws-demo@AdobeOrg"

    public let azure: AzureSimulator
    public let aws: AWSSimulator
    public let gateway: Gateway
    public let configuration: GatewayConfiguration
    public let audit: AuditTrail
    private let servers: [HTTPServer]
    private let transport: CurlTransport

    /// Starts the simulators on free ports and the gateway on `gatewayPort` (0 for a free one).
    ///
    /// - Parameters:
    ///   - auditFile: the audit trail's file; a new file in a new temporary directory when nil.
    ///   - configure: adjusts the gateway's configuration once the simulators' addresses are in it.
    public init(
        host: String = "127.0.0.1",
        gatewayPort: UInt16 = 0,
        simulatorOptions: SimulatorOptions = SimulatorOptions(),
        awsOptions: SimulatorOptions? = nil,
        auditFile: String? = nil,
        logger: Logger = Logger(label: "gateway"),
        configure: (inout GatewayConfiguration) -> Void = { _ in }
    ) throws {
        azure = AzureSimulator(options: simulatorOptions)
        aws = AWSSimulator(options: awsOptions ?? simulatorOptions)
        _ = try azure.seed(orgId: Self.azureOrg)
        _ = try aws.seed(orgId: Self.awsOrg)

        var simulatorServer = HTTPServerConfiguration()
        simulatorServer.host = host
        simulatorServer.threads = 1
        let azureServer = HTTPServer(configuration: simulatorServer, handler: azure)
        let awsServer = HTTPServer(configuration: simulatorServer, handler: aws)
        let azurePort = try azureServer.start()
        let awsPort = try awsServer.start()

        var configuration = GatewayConfiguration(organizations: [
            // Azure is called by sandbox name; the map only lets answers show the id. AWS finds ids by lookup.
            OrganizationRoute(
                orgId: Self.azureOrg, cloud: .azure, baseURL: "http://\(urlHost(host)):\(azurePort)",
                sandboxes: ["prod": SimulatorOptions.prodSandboxId]),
            OrganizationRoute(orgId: Self.awsOrg, cloud: .aws, baseURL: "http://\(urlHost(host)):\(awsPort)"),
        ])
        configuration.host = host
        configuration.port = gatewayPort
        configuration.audit.filePath =
            auditFile
            ?? FileManager.default.temporaryDirectory.appendingPathComponent(
                "profile-jobs-gateway-demo-\(UUID().uuidString)/audit.jsonl"
            ).path
        configure(&configuration)
        self.configuration = configuration

        let metrics = GatewayMetrics()
        do {
            audit = try AuditTrail(
                configuration: configuration.audit, logger: logger,
                onWrite: { sink, succeeded in metrics.auditWrite(sink: sink, succeeded: succeeded) })
            transport = try CurlTransport()
        } catch {
            azureServer.stop()
            awsServer.stop()
            throw error
        }
        gateway = Gateway(
            configuration: configuration, transport: transport, audit: audit, metrics: metrics, logger: logger)
        let gatewayServer = GatewayServer.make(configuration: configuration, gateway: gateway)
        do {
            try gatewayServer.start()
        } catch {
            azureServer.stop()
            awsServer.stop()
            audit.close()
            throw error
        }
        servers = [gatewayServer, azureServer, awsServer]
    }

    public var gatewayPort: UInt16 { servers[0].port }
    public var azurePort: UInt16 { servers[1].port }
    public var awsPort: UInt16 { servers[2].port }

    /// Stops the gateway first, letting its calls in flight finish for up to `grace`, so nothing is forwarded to a
    /// simulator that is already gone.
    public func stop(grace: Duration = .zero) {
        servers[0].stop(grace: grace)
        for server in servers.dropFirst() {
            server.stop()
        }
        transport.shutdown()
        audit.close()
    }
}

/// A host as it stands in a URL: IPv6 literals in brackets.
func urlHost(_ host: String) -> String {
    host.contains(":") ? "[\(host)]" : host
}
