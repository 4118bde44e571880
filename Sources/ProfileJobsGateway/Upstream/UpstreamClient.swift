import FoundationEssentials

/// Every call to a platform goes through here: the upstream's circuit breaker and in-flight cap are consulted before
/// anything is sent, and lookups (GET) that failed in a way worth repeating are retried within the call's time.
///
/// Whether a call may be retried is decided by its method in `mayRetry` and nowhere else: a create or a removal is
/// sent at most once, since a repeated create can start a second deletion.
public final class UpstreamClient: Sendable {
    /// One attempt, as the caller's metrics and call facts see it.
    public struct Attempt: Sendable {
        public var result: Result<UpstreamResponse, UpstreamFailure>
        public var seconds: Double
        public var willRetry: Bool
        /// The answer's headers, also when its body could not be read: the status and request id still say who
        /// answered what.
        public var answered: UpstreamResponse?
    }

    /// Sleeps for so many seconds; injectable so that tests of the retry loop need not wait.
    public typealias Sleep = @Sendable (Double) async -> Void

    /// The first retry waits about this long; each later one twice as long as the one before, jittered.
    static let backoffBaseSeconds = 0.1

    private let transport: any UpstreamTransport
    private let policy: UpstreamPolicy
    private let metrics: GatewayMetrics?
    private let logger: Logger?
    private let clock: @Sendable () -> Double
    private let wallClock: @Sendable () -> Double
    private let sleep: Sleep
    private let random: @Sendable () -> Double
    private let guards = Locked<[String: UpstreamGuard]>([:])

    /// - Parameters:
    ///   - clock: monotonic seconds, for deadlines and the breaker.
    ///   - wallClock: seconds since 1970, against which an HTTP-date `Retry-After` is read.
    ///   - random: a number in 0..<1, for the backoff's jitter.
    public init(
        transport: any UpstreamTransport,
        policy: UpstreamPolicy,
        metrics: GatewayMetrics? = nil,
        logger: Logger? = nil,
        clock: @escaping @Sendable () -> Double = { ContinuousClock.now.secondsSinceStart },
        wallClock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
        sleep: @escaping Sleep = { seconds in try? await Task.sleep(for: .seconds(seconds)) },
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        self.transport = transport
        self.policy = policy
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
        self.wallClock = wallClock
        self.sleep = sleep
        self.random = random
    }

    /// Only lookups are repeated: a GET changes nothing, while a repeated POST could create a second deletion and a
    /// repeated DELETE could remove a job created since.
    public static func mayRetry(method: String) -> Bool {
        method == "GET"
    }

    /// The guard of the upstream a URL points at, made on first use; the URLs come from configuration, so the set
    /// stays small.
    public func upstreamGuard(for url: String) -> UpstreamGuard {
        let origin = Self.origin(of: url)
        return guards.withLock { guards in
            if let existing = guards[origin] {
                return existing
            }
            let made = UpstreamGuard(
                origin: origin, policy: policy, clock: clock,
                onChange: { [metrics, logger] snapshot, circuitChanged in
                    metrics?.upstreamGuardChanged(
                        upstream: origin, circuit: snapshot.circuit, inFlight: snapshot.inFlight)
                    guard circuitChanged else { return }
                    Self.logCircuit(snapshot, origin: origin, logger: logger)
                })
            metrics?.upstreamGuardChanged(upstream: origin, circuit: .closed, inFlight: 0)
            guards[origin] = made
            return made
        }
    }

    /// Sends `request`, retrying a lookup while that is worth it and the call's time allows.
    ///
    /// - Parameters:
    ///   - beforeSending: runs once the upstream has let the call through and before the first byte is sent (a
    ///     deletion's intent record); if it throws, nothing is sent and the breaker counts nothing.
    ///   - observe: told of every attempt that reached the transport.
    ///   - readAnswer: reads a 2xx answer's body and says why it cannot, if it cannot; such an answer counts and is
    ///     thrown as an unreadable one.
    /// - Returns: the last answer, whatever its status; the caller maps non-2xx answers.
    /// - Throws: the transport's failure named for `cloud`, or the guard's refusal when nothing could be sent.
    public func send(
        _ request: UpstreamRequest,
        cloud: Cloud,
        beforeSending: () async throws(GatewayError) -> Void = {},
        observe: (Attempt) -> Void = { _ in },
        readAnswer: (_ body: [UInt8]) -> String? = { _ in nil }
    ) async throws(GatewayError) -> UpstreamResponse {
        let upstream = upstreamGuard(for: request.url)
        var permit = try Self.admitted(upstream.admit(), cloud: cloud)

        do {
            try await beforeSending()
        } catch {
            upstream.finish(permit, .notSent)
            throw error
        }

        // The whole call, retries and waits included, keeps within the request's total timeout.
        let deadline = clock() + request.totalTimeout
        let retryable = Self.mayRetry(method: request.method)
        var attempt = 0
        while true {
            attempt += 1
            let attemptRequest = attemptRequest(request, deadline: deadline)
            let started = clock()
            let sent: Result<UpstreamResponse, UpstreamFailure>
            do {
                sent = .success(try await transport.send(attemptRequest))
            } catch {
                sent = .failure(error)
            }
            let (result, wait) = conclude(
                sent, of: request, started: started, attempt: attempt, deadline: deadline, retryable: retryable,
                permit: permit, upstream: upstream, observe: observe, readAnswer: readAnswer)
            guard let wait else {
                return try Self.delivered(result, cloud: cloud)
            }

            metrics?.upstreamRetry(cloud: cloud.rawValue)
            await sleep(wait)
            // A retry the guard refuses would only hide what the upstream said; the caller gets that instead.
            guard case .success(let next) = upstream.admit() else {
                return try Self.delivered(result, cloud: cloud)
            }
            permit = next
        }
    }

    /// One attempt's request: the call's, with what is left of its time. A plain function, like `conclude`, since
    /// whatever the retry loop holds is in every call's task memory while the upstream answers.
    @inline(never)
    private func attemptRequest(_ request: UpstreamRequest, deadline: Double) -> UpstreamRequest {
        var attemptRequest = request
        attemptRequest.totalTimeout = max(deadline - clock(), 0.001)
        attemptRequest.connectTimeout = min(request.connectTimeout, attemptRequest.totalTimeout)
        return attemptRequest
    }

    /// Reads what one attempt brought, tells the breaker and the caller of it, and says how long to wait before
    /// the next attempt (nil for none).
    @inline(never)
    private func conclude(
        _ sent: Result<UpstreamResponse, UpstreamFailure>,
        of request: UpstreamRequest,
        started: Double,
        attempt: Int,
        deadline: Double,
        retryable: Bool,
        permit: UpstreamGuard.Permit,
        upstream: UpstreamGuard,
        observe: (Attempt) -> Void,
        readAnswer: (_ body: [UInt8]) -> String?
    ) -> (Result<UpstreamResponse, UpstreamFailure>, wait: Double?) {
        var result = sent
        let answered = try? result.get()
        // A 2xx whose body cannot be read is a failing platform like a 5xx, for the breaker and the metrics.
        if case .success(let response) = result, (200..<300).contains(response.status),
            let reason = readAnswer(response.body)
        {
            result = .failure(.unreadable(reason))
        }
        let seconds = clock() - started
        upstream.finish(permit, Self.breakerOutcome(result))

        let wait =
            retryable
            ? retryWait(after: result, attempt: attempt, deadline: deadline, budget: request.totalTimeout) : nil
        observe(Attempt(result: result, seconds: seconds, willRetry: wait != nil, answered: answered))
        return (result, wait)
    }

    /// Seconds to wait before the next attempt, or nil when there is none: the attempts are used up, the failure
    /// is not one a repeat can mend, the upstream asks for a longer pause than the cap, or the wait and a useful
    /// attempt (a quarter of the call's time, at most 250 ms) would not fit before the deadline.
    func retryWait(
        after result: Result<UpstreamResponse, UpstreamFailure>,
        attempt: Int,
        deadline: Double,
        budget: Double
    ) -> Double? {
        guard attempt <= policy.retries else { return nil }

        var asked: Int?
        switch result {
        case .failure(.unreachable), .failure(.timedOut), .failure(.brokenResponse):
            break
        case .success(let response) where [429, 502, 503, 504].contains(response.status):
            asked = RetryAfter.seconds(response.headers["Retry-After"], now: wallClock())
        default:
            return nil
        }
        if let asked, Double(asked) > policy.retryAfterCapSeconds {
            return nil
        }

        let backoff = Self.backoffBaseSeconds * Double(1 << (attempt - 1)) * (0.5 + random())
        let wait = max(backoff, Double(asked ?? 0))
        guard clock() + wait + min(0.25, budget / 4) <= deadline else { return nil }
        return wait
    }

    // MARK: Outcomes

    /// scheme://host:port without any user information, which must not reach a metric label or a log.
    static func origin(of url: String) -> String {
        guard let colon = url.firstIndex(of: ":"), url[colon...].hasPrefix("://") else { return url }
        let scheme = url[..<colon].lowercased()
        var authority = url[colon...].dropFirst(3).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if let at = authority.lastIndex(of: "@") {
            authority = authority[authority.index(after: at)...]
        }
        let hasPort = authority.hasPrefix("[") ? authority.contains("]:") : authority.contains(":")
        let host = authority.lowercased()
        return hasPort ? "\(scheme)://\(host)" : "\(scheme)://\(host):\(scheme == "https" ? 443 : 80)"
    }

    private static func breakerOutcome(_ result: Result<UpstreamResponse, UpstreamFailure>) -> UpstreamGuard.Outcome {
        switch result {
        case .success(let response): response.status >= 500 ? .failure : .success
        case .failure: .failure
        }
    }

    private static func admitted(
        _ admission: Result<UpstreamGuard.Permit, UpstreamGuard.Refusal>,
        cloud: Cloud
    ) throws(GatewayError) -> UpstreamGuard.Permit {
        switch admission {
        case .success(let permit): return permit
        case .failure(.circuitOpen(let seconds)): throw .upstreamCircuitOpen(cloud: cloud, retryAfter: seconds)
        case .failure(.overloaded(let limit)): throw .upstreamOverloaded(cloud: cloud, limit: limit)
        }
    }

    @inline(never)
    private static func delivered(
        _ result: Result<UpstreamResponse, UpstreamFailure>,
        cloud: Cloud
    ) throws(GatewayError) -> UpstreamResponse {
        switch result {
        case .success(let response): return response
        case .failure(let failure): throw GatewayError(failure, cloud: cloud)
        }
    }

    private static func logCircuit(_ snapshot: UpstreamGuard.Snapshot, origin: String, logger: Logger?) {
        switch snapshot.circuit {
        case .open:
            logger?.warning(
                "upstream circuit opened; calls fail fast",
                [("upstream", .string(origin)), ("failures.in.a.row", .int(snapshot.failuresInARow))])
        case .halfOpen:
            logger?.info("upstream circuit half-open; one probe call let through", [("upstream", .string(origin))])
        case .closed:
            logger?.info("upstream circuit closed", [("upstream", .string(origin))])
        }
    }
}
