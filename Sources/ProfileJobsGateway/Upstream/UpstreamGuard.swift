/// One upstream's circuit breaker and count of calls in flight, shared by every call to it (jobs calls and sandbox
/// lookups of every organization it serves).
///
/// Closed, it lets calls through and counts failures in a row; at the policy's threshold it opens and refuses every
/// call until `circuitBreakerOpenSeconds` have passed. Then it is half-open: exactly one call goes through as a probe,
/// the others are refused, and the probe's outcome closes the circuit or opens it again. Outcomes of calls admitted
/// before the last change of state are not counted, so a slow call from before cannot undo what the probe decided.
public final class UpstreamGuard: Sendable {
    public enum Circuit: Sendable, Equatable {
        case closed
        /// Refusing calls until this time on the guard's clock.
        case open(until: Double)
        case halfOpen
    }

    /// Why a call was not let through; nothing was sent.
    public enum Refusal: Error, Sendable, Equatable {
        case circuitOpen(retryAfterSeconds: Int)
        case overloaded(limit: Int)
    }

    /// What became of an admitted call, as the breaker counts it.
    public enum Outcome: Sendable, Equatable {
        /// The upstream answered (2xx, 3xx or 4xx): it is working.
        case success
        /// No usable answer (connection, timeout, unreadable) or a 5xx.
        case failure
        /// The call was never sent (the deletion's intent could not be recorded): it says nothing of the upstream.
        case notSent
    }

    /// A let-through call's ticket; it must be finished exactly once.
    public struct Permit: Sendable {
        fileprivate let generation: Int
        public let isProbe: Bool
    }

    public struct Snapshot: Sendable, Equatable {
        public var circuit: Circuit
        public var failuresInARow: Int
        public var inFlight: Int
    }

    private struct State {
        var circuit = Circuit.closed
        var failuresInARow = 0
        var inFlight = 0
        var probing = false
        /// Changes with every change of circuit state; a permit from an earlier one no longer counts.
        var generation = 0
    }

    /// scheme://host:port, as the metrics and logs name the upstream.
    public let origin: String
    private let failureThreshold: Int
    private let openSeconds: Double
    private let maxInFlight: Int
    private let clock: @Sendable () -> Double
    /// Told of every change, under the guard's lock, so that gauges and logs never show a stale order of events.
    private let onChange: @Sendable (_ snapshot: Snapshot, _ circuitChanged: Bool) -> Void
    private let state = Locked(State())

    public init(
        origin: String,
        policy: UpstreamPolicy,
        clock: @escaping @Sendable () -> Double,
        onChange: @escaping @Sendable (_ snapshot: Snapshot, _ circuitChanged: Bool) -> Void = { _, _ in }
    ) {
        self.origin = origin
        self.failureThreshold = policy.circuitBreakerFailures
        self.openSeconds = policy.circuitBreakerOpenSeconds
        self.maxInFlight = policy.maxInFlight
        self.clock = clock
        self.onChange = onChange
    }

    public var snapshot: Snapshot {
        state.withLock { Self.snapshot($0) }
    }

    /// Lets a call through, or says why not; checked before anything is sent or recorded.
    public func admit() -> Result<Permit, Refusal> {
        let now = clock()
        return state.withLock { state in
            var circuitChanged = false
            if case .open(let until) = state.circuit {
                guard now >= until else {
                    return .failure(.circuitOpen(retryAfterSeconds: max(1, Int((until - now).rounded(.up)))))
                }
                state.circuit = .halfOpen
                state.probing = false
                state.generation += 1
                circuitChanged = true
            }
            defer { onChange(Self.snapshot(state), circuitChanged) }

            // The probe's answer is due within one call's time; a second later is as good a guess as any.
            if state.circuit == .halfOpen && state.probing {
                return .failure(.circuitOpen(retryAfterSeconds: 1))
            }
            guard state.inFlight < maxInFlight else {
                return .failure(.overloaded(limit: maxInFlight))
            }

            state.inFlight += 1
            let isProbe = state.circuit == .halfOpen
            state.probing = state.probing || isProbe
            return .success(Permit(generation: state.generation, isProbe: isProbe))
        }
    }

    public func finish(_ permit: Permit, _ outcome: Outcome) {
        let now = clock()
        state.withLock { state in
            state.inFlight -= 1
            if permit.isProbe {
                state.probing = false
            }
            var circuitChanged = false
            defer { onChange(Self.snapshot(state), circuitChanged) }
            guard permit.generation == state.generation else { return }

            switch (outcome, state.circuit) {
            case (.notSent, _), (_, .open):
                return
            case (.success, .closed):
                state.failuresInARow = 0
            case (.success, .halfOpen):
                state.circuit = .closed
                state.failuresInARow = 0
                state.generation += 1
                circuitChanged = true
            case (.failure, .closed):
                state.failuresInARow += 1
                if state.failuresInARow >= failureThreshold {
                    state.circuit = .open(until: now + openSeconds)
                    state.generation += 1
                    circuitChanged = true
                }
            case (.failure, .halfOpen):
                state.failuresInARow += 1
                state.circuit = .open(until: now + openSeconds)
                state.generation += 1
                circuitChanged = true
            }
        }
    }

    private static func snapshot(_ state: State) -> Snapshot {
        Snapshot(circuit: state.circuit, failuresInARow: state.failuresInARow, inFlight: state.inFlight)
    }
}
