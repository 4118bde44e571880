import FoundationEssentials

/// Finds the id of an AWS organization's sandbox from its name: the configured map first, then the Sandbox
/// Management API, whose answers are cached and whose concurrent lookups of one sandbox share a single call.
///
/// A found id is a fact about the organization and serves every caller; a failure may be a fact about one caller's
/// credentials (a user token sees no ids, an expired token is refused), so failures and shared calls are kept per
/// credentials, told apart by a hash that never leaves the process.
///
/// Every answer is kept together with the organization's route it was found under. After a configuration reload
/// changes an organization (another platform, another sandbox map), calls under the new route neither read nor share
/// what was found under the old one, while calls still in flight under the old route keep using it.
public actor SandboxResolver {
    /// Credentials and tracing headers of the caller on whose behalf a lookup is made.
    public struct Caller: Sendable {
        public var headers: HTTPHeaders

        public init(headers: HTTPHeaders) {
            self.headers = headers
        }

        /// Tells callers' credentials apart without keeping them.
        var fingerprint: Int {
            var hasher = Hasher()
            hasher.combine(headers["Authorization"] ?? "")
            hasher.combine(headers["x-api-key"] ?? "")
            return hasher.finalize()
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

    private struct CallerKey: Hashable {
        var sandbox: Key
        var credentials: Int
    }

    private struct Entry {
        var route: OrganizationRoute
        var expires: Double
        var outcome: Result<String, GatewayError>
    }

    private struct Lookup {
        var route: OrganizationRoute
        var task: Task<Result<String, GatewayError>, Never>
    }

    private let client: UpstreamClient
    private let clock: @Sendable () -> Double
    /// Told of every cache hit (true) and every lookup the cache could not spare (false), for the metrics.
    private let onCache: @Sendable (Bool) -> Void
    private var found: [Key: Entry] = [:]
    private var failed: [CallerKey: Entry] = [:]
    private var inFlight: [CallerKey: Lookup] = [:]
    public private(set) var statistics = Statistics()

    /// - Parameter client: the gateway's own, so that lookups share each upstream's breaker and in-flight cap with
    ///   the jobs calls.
    public init(
        client: UpstreamClient,
        clock: @escaping @Sendable () -> Double = { ContinuousClock.now.secondsSinceStart },
        onCache: @escaping @Sendable (Bool) -> Void = { _ in }
    ) {
        self.client = client
        self.clock = clock
        self.onCache = onCache
    }

    /// - Parameter configuration: the one the call started under: its timeouts bound the lookup and its cache
    ///   durations decide how long the answer is kept.
    public func resolve(
        _ name: String,
        for route: OrganizationRoute,
        caller: Caller,
        configuration: GatewayConfiguration
    ) async throws(GatewayError) -> String {
        if let id = route.sandboxes[name] {
            statistics.configured += 1
            return id
        }

        let key = Key(orgId: route.orgId, name: name)
        let callerKey = CallerKey(sandbox: key, credentials: caller.fingerprint)
        let now = clock()
        if let entry = found[key], entry.route == route, entry.expires > now {
            statistics.cacheHits += 1
            onCache(true)
            return try entry.outcome.get()
        }
        if let entry = failed[callerKey], entry.route == route, entry.expires > now {
            statistics.cacheHits += 1
            onCache(true)
            return try Self.answer(entry.outcome, sandbox: name, retryAfter: entry.expires - now)
        }

        let lookup: Task<Result<String, GatewayError>, Never>
        if let running = inFlight[callerKey], running.route == route {
            statistics.cacheHits += 1
            onCache(true)
            lookup = running.task
        } else {
            statistics.lookups += 1
            onCache(false)
            let client = self.client
            let request = lookupRequest(name, route: route, caller: caller, configuration: configuration)
            lookup = Task { await Self.lookUp(name, route: route, request: request, client: client) }
            inFlight[callerKey] = Lookup(route: route, task: lookup)
        }

        let outcome = await lookup.value
        if inFlight[callerKey]?.task == lookup {
            inFlight[callerKey] = nil
            remember(outcome, for: callerKey, route: route, configuration: configuration)
        }
        return try Self.answer(outcome, sandbox: name, retryAfter: configuration.sandboxFailureCacheSeconds)
    }

    /// A lookup that failed stopped the call before anything was sent: the caller is told that, and when the
    /// gateway will ask the platform again, rather than the bare upstream failure, which reads as if the call itself
    /// had been sent.
    private static func answer(
        _ outcome: Result<String, GatewayError>,
        sandbox: String,
        retryAfter: Double
    ) throws(GatewayError) -> String {
        switch outcome {
        case .success(let id):
            return id
        case .failure(
            let cause
        ) where cause.isUpstreamFailure:
            throw .sandboxLookupFailed(
                sandbox: sandbox, cause: cause, retryAfter: max(1, Int(retryAfter.rounded(.up))))
        case .failure(let other):
            throw other
        }
    }

    /// Ids for long and for everyone; failures briefly and only for the same credentials, except refused
    /// credentials, which are not remembered at all (the caller will come back with a fresh token), and the
    /// gateway's own refusals to call a failing or busy upstream, which say nothing about the sandbox.
    private func remember(
        _ outcome: Result<String, GatewayError>,
        for key: CallerKey,
        route: OrganizationRoute,
        configuration: GatewayConfiguration
    ) {
        switch outcome {
        case .success:
            found[key.sandbox] = Entry(
                route: route, expires: clock() + configuration.sandboxCacheSeconds, outcome: outcome)
        case .failure(.sandboxLookupRefused(_, _, let detail)) where detail.status == 401 || detail.status == 403:
            failed[key] = nil
        case .failure(.upstreamCircuitOpen), .failure(.upstreamOverloaded):
            failed[key] = nil
        case .failure:
            failed[key] = Entry(
                route: route, expires: clock() + configuration.sandboxFailureCacheSeconds, outcome: outcome)
        }
        if failed.count > 10_000 {
            let now = clock()
            failed = failed.filter { $0.value.expires > now }
        }
    }

    private func lookupRequest(
        _ name: String,
        route: OrganizationRoute,
        caller: Caller,
        configuration: GatewayConfiguration
    ) -> UpstreamRequest {
        var headers = caller.headers
        headers.set("Accept", "application/json")
        let timeouts = configuration.timeouts(for: route)
        return UpstreamRequest(
            method: "GET",
            url: route.baseURL + "/data/foundation/sandbox-management/sandboxes/" + percentEncode(name),
            headers: headers, connectTimeout: timeouts.connect, totalTimeout: timeouts.total)
    }

    private static func lookUp(
        _ name: String,
        route: OrganizationRoute,
        request: UpstreamRequest,
        client: UpstreamClient
    ) async -> Result<String, GatewayError> {
        let response: UpstreamResponse
        var sandbox: SandboxRef?
        do {
            response = try await client.send(
                request, cloud: route.cloud,
                readAnswer: { body in
                    do throws(MalformedUpstreamBody) {
                        sandbox = try SandboxManagementDialect.readSandbox(body)
                        return nil
                    } catch {
                        return "sandbox lookup: \(error.reason)"
                    }
                })
        } catch {
            return .failure(error)
        }

        guard (200..<300).contains(response.status) else {
            let failure = GatewayError(upstreamStatus: response, cloud: route.cloud)
            if case .upstreamRefused(let cloud, let detail) = failure {
                return .failure(.sandboxLookupRefused(cloud: cloud, sandbox: name, detail))
            }
            return .failure(failure)
        }
        guard let sandbox else {
            return .failure(.upstreamMalformed(cloud: route.cloud, reason: "sandbox lookup: the answer was not read"))
        }
        guard let id = sandbox.id, !id.isEmpty else {
            return .failure(.sandboxIdUnavailable(orgId: route.orgId, sandbox: name))
        }
        return .success(id)
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
    /// The platform failed to answer usefully (as opposed to refusing, or the gateway refusing to call it).
    var isUpstreamFailure: Bool {
        switch self {
        case .upstreamTimedOut, .upstreamUnreachable, .upstreamConnectionLost, .upstreamMalformed, .upstreamFailed,
            .upstreamUnavailable, .upstreamRateLimited:
            true
        default:
            false
        }
    }

    /// A transport failure, named for the cloud it happened with.
    init(_ failure: UpstreamFailure, cloud: Cloud) {
        switch failure {
        case .unreachable(let reason): self = .upstreamUnreachable(cloud: cloud, reason: reason)
        case .timedOut(let reason): self = .upstreamTimedOut(cloud: cloud, reason: reason)
        case .brokenResponse(let reason): self = .upstreamConnectionLost(cloud: cloud, reason: reason)
        case .unreadable(let reason): self = .upstreamMalformed(cloud: cloud, reason: reason)
        }
    }

    /// A non-2xx upstream answer: 4xx keep their status, 429 and 503 pass on their Retry-After (in seconds), other
    /// 5xx become 502.
    init(upstreamStatus response: UpstreamResponse, cloud: Cloud, now: Double = Date().timeIntervalSince1970) {
        let detail = UpstreamErrorReader.read(status: response.status, headers: response.headers, body: response.body)
        let retryAfter = RetryAfter.seconds(response.headers["Retry-After"], now: now)
        switch response.status {
        case 429:
            self = .upstreamRateLimited(cloud: cloud, detail, retryAfter: retryAfter)
        case 400..<500:
            self = .upstreamRefused(cloud: cloud, detail)
        case 503:
            self = .upstreamUnavailable(cloud: cloud, detail, retryAfter: retryAfter)
        default:
            self = .upstreamFailed(cloud: cloud, detail)
        }
    }
}
