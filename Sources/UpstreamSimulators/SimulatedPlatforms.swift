import ProfileJobsGateway

/// Both simulated platforms on their own, without a gateway: what `simulate` runs, so that soak and benchmark runs
/// can put a gateway (or another proxy) in a process of its own in front of them and measure it alone.
public final class SimulatedPlatforms: Sendable {
    public let azure: AzureSimulator
    public let aws: AWSSimulator
    private let servers: [HTTPServer]
    private let host: String

    /// Starts both simulators, seeded with the demo organizations' jobs; port 0 picks a free one.
    public init(
        host: String = "127.0.0.1",
        azurePort: UInt16 = 0,
        awsPort: UInt16 = 0,
        options: SimulatorOptions = SimulatorOptions(),
        awsOptions: SimulatorOptions? = nil
    ) throws {
        self.host = host
        azure = AzureSimulator(options: options)
        aws = AWSSimulator(options: awsOptions ?? options)
        _ = try azure.seed(orgId: DemoEnvironment.azureOrg)
        _ = try aws.seed(orgId: DemoEnvironment.awsOrg)

        var configuration = HTTPServerConfiguration()
        configuration.host = host
        configuration.threads = 1
        // A load test opens many connections and holds them; the simulators must not be what turns them away.
        configuration.connectionLimit = 16_384
        configuration.requestTimeoutSeconds = 300
        var azureConfiguration = configuration
        azureConfiguration.port = azurePort
        var awsConfiguration = configuration
        awsConfiguration.port = awsPort
        let azureServer = HTTPServer(configuration: azureConfiguration, handler: azure)
        let awsServer = HTTPServer(configuration: awsConfiguration, handler: aws)
        try azureServer.start()
        do {
            try awsServer.start()
        } catch {
            azureServer.stop()
            throw error
        }
        servers = [azureServer, awsServer]
    }

    public var azurePort: UInt16 { servers[0].port }
    public var awsPort: UInt16 { servers[1].port }
    /// Base URLs as an organization's `baseURL` takes them.
    public var azureURL: String { "http://\(urlHost(host)):\(azurePort)" }
    public var awsURL: String { "http://\(urlHost(host)):\(awsPort)" }

    public func stop() {
        servers.forEach { $0.stop() }
    }
}
