/// Finds the id of an AWS organization's sandbox from its name: the configured map first, then the Sandbox
/// Management API, whose answers are cached and whose concurrent lookups of one sandbox share a single call.
public actor SandboxResolver {
    /// Credentials and tracing headers of the caller on whose behalf a lookup is made.
    public struct Caller: Sendable {
        public var headers: HTTPHeaders

        public init(headers: HTTPHeaders) {
            self.headers = headers
        }
    }

    /// Counts for the metrics endpoint and for tests.
    public struct Statistics: Sendable, Equatable {
        public var configured = 0
        public var cacheHits = 0
        public var lookups = 0
    }

    private struct Key: Hashable {
        var orgId: String
        var name: String
    }

    private struct Entry {
        var expires: Double
        var outcome: Result<String, GatewayError>
    }

    private let transport: any UpstreamTransport
    private let successSeconds: Double
    private let failureSeconds: Double
    private let connectTimeout: Double
    private let totalTimeout: Double
    private let clock: @Sendable () -> Double
    private var cache: [Key: Entry] = [:]
    private var inFlight: [Key: Task<Result<String, GatewayError>, Never>] = [:]
    public private(set) var statistics = Statistics()

    public init(
        transport: any UpstreamTransport,
        configuration: GatewayConfiguration,
        clock: @escaping @Sendable () -> Double = { ContinuousClock.now.secondsSinceStart }
    ) {
        self.transport = transport
        self.successSeconds = configuration.sandboxCacheSeconds
        self.failureSeconds = configuration.sandboxFailureCacheSeconds
        self.connectTimeout = configuration.connectTimeoutSeconds
        self.totalTimeout = configuration.upstreamTimeoutSeconds
        self.clock = clock
    }

    public func resolve(
        _ name: String,
        for route: OrganizationRoute,
        caller: Caller
    ) async throws(GatewayError) -> String {
        if let id = route.sandboxes[name] {
            statistics.configured += 1
            return id
        }

        let key = Key(orgId: route.orgId, name: name)
        if let entry = cache[key], entry.expires > clock() {
            statistics.cacheHits += 1
            return try entry.outcome.get()
        }

        let lookup: Task<Result<String, GatewayError>, Never>
        if let running = inFlight[key] {
            statistics.cacheHits += 1
            lookup = running
        } else {
            statistics.lookups += 1
            let transport = self.transport
            let request = lookupRequest(name, route: route, caller: caller)
            lookup = Task { await Self.lookUp(name, route: route, request: request, transport: transport) }
            inFlight[key] = lookup
        }

        let outcome = await lookup.value
        if inFlight[key] == lookup {
            inFlight[key] = nil
            remember(outcome, for: key)
        }
        return try outcome.get()
    }

    /// Successes for long, answers about the sandbox itself briefly, and the caller's own credential problems not at
    /// all: one caller's expired token must not block the next caller.
    private func remember(_ outcome: Result<String, GatewayError>, for key: Key) {
        switch outcome {
        case .success:
            cache[key] = Entry(expires: clock() + successSeconds, outcome: outcome)
        case .failure(.upstreamRefused(_, let detail)) where detail.status == 401 || detail.status == 403:
            cache[key] = nil
        case .failure:
            cache[key] = Entry(expires: clock() + failureSeconds, outcome: outcome)
        }
    }

    private func lookupRequest(_ name: String, route: OrganizationRoute, caller: Caller) -> UpstreamRequest {
        var headers = caller.headers
        headers.set("Accept", "application/json")
        return UpstreamRequest(
            method: "GET",
            url: route.baseURL + "/data/foundation/sandbox-management/sandboxes/" + percentEncode(name),
            headers: headers, connectTimeout: connectTimeout, totalTimeout: totalTimeout)
    }

    private static func lookUp(
        _ name: String,
        route: OrganizationRoute,
        request: UpstreamRequest,
        transport: any UpstreamTransport
    ) async -> Result<String, GatewayError> {
        let response: UpstreamResponse
        do {
            response = try await transport.send(request)
        } catch {
            return .failure(GatewayError(error, cloud: route.cloud))
        }

        guard (200..<300).contains(response.status) else {
            return .failure(GatewayError(upstreamStatus: response, cloud: route.cloud))
        }
        do {
            let sandbox = try SandboxManagementDialect.readSandbox(response.body)
            guard let id = sandbox.id, !id.isEmpty else {
                return .failure(.sandboxIdUnavailable(orgId: route.orgId, sandbox: name))
            }
            return .success(id)
        } catch {
            return .failure(.upstreamMalformed(cloud: route.cloud, reason: "sandbox lookup: \(error.reason)"))
        }
    }
}

extension ContinuousClock.Instant {
    /// Seconds on a monotonic clock, for cache expiry that wall-clock changes cannot disturb.
    public var secondsSinceStart: Double {
        let parts = (self - ContinuousClock.Instant.processStart).components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    public static let processStart = ContinuousClock.now
}

extension GatewayError {
    /// A transport failure, named for the cloud it happened with.
    init(_ failure: UpstreamFailure, cloud: Cloud) {
        switch failure {
        case .unreachable(let reason): self = .upstreamUnreachable(cloud: cloud, reason: reason)
        case .timedOut(let reason): self = .upstreamTimedOut(cloud: cloud, reason: reason)
        case .brokenResponse(let reason): self = .upstreamUnreachable(cloud: cloud, reason: reason)
        }
    }

    /// A non-2xx upstream answer: 4xx keep their status, 503 passes with its Retry-After, other 5xx become 502.
    init(upstreamStatus response: UpstreamResponse, cloud: Cloud) {
        let detail = UpstreamErrorReader.read(status: response.status, headers: response.headers, body: response.body)
        switch response.status {
        case 400..<500:
            self = .upstreamRefused(cloud: cloud, detail)
        case 503:
            self = .upstreamUnavailable(cloud: cloud, detail, retryAfter: response.headers["Retry-After"])
        default:
            self = .upstreamFailed(cloud: cloud, detail)
        }
    }
}
