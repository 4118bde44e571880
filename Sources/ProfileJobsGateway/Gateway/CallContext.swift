import FoundationEssentials

/// What the gateway learns about one call while answering it: the access log, the metrics and the audit trail read
/// it afterwards. Operations find it through `CallContext.current` rather than through every signature.
final class CallContext: Sendable {
    @TaskLocal static var current: CallContext?

    struct Facts: Sendable {
        var cloud: Cloud?
        var orgId: String?
        var sandbox: SandboxRef?
        var datasetId: String?
        var batchId: String?
        var jobId: String?
        var upstreamSeconds = 0.0
        var upstreamStatus: Int?
        var upstreamRequestId: String?
        /// Set once an intent is durably in the audit trail: from then on the deletion may be forwarded.
        var intent: AuditRecord?
    }

    let requestId: String
    let trace: TraceContext
    /// Set when the call is deletion traffic, which the audit trail records.
    let deletion: DeletionAttempt?
    let started = ContinuousClock.now
    /// The configuration the call started under, so that a reload while it runs changes neither its route nor its
    /// timeouts; nil for an answer the server gave by itself.
    let configuration: GatewayConfiguration?
    private let facts = Locked(Facts())

    init(
        requestId: String, trace: TraceContext, deletion: DeletionAttempt?, configuration: GatewayConfiguration? = nil
    ) {
        self.requestId = requestId
        self.trace = trace
        self.deletion = deletion
        self.configuration = configuration
    }

    var snapshot: Facts { facts.withLock { $0 } }

    func update(_ change: (inout Facts) -> Void) {
        facts.withLock { change(&$0) }
    }
}

/// W3C Trace Context: a caller's well-formed `traceparent` (and its `tracestate`) travel upstream unchanged; without
/// one, the gateway starts a trace so every audit record carries a trace id.
struct TraceContext: Sendable, Equatable {
    var traceparent: String
    var tracestate: String?

    /// The 32 hex digits that name the trace: a kept `traceparent` is well-formed, so they follow the two-digit
    /// version and its dash. Read by bytes, since the access log asks on every request.
    var traceId: String {
        String(decoding: traceparent.utf8.dropFirst(3).prefix(32), as: UTF8.self)
    }

    init(_ headers: HTTPHeaders) {
        if let given = headers["traceparent"], Self.isWellFormed(given) {
            traceparent = given
            tracestate = headers["tracestate"].flatMap { $0.utf8.count <= 512 && Self.isPrintable($0) ? $0 : nil }
        } else {
            // A malformed traceparent takes its tracestate with it, as the specification says.
            traceparent = "00-\(Self.randomHex(16))-\(Self.randomHex(8))-01"
            tracestate = nil
        }
    }

    /// `version-traceid-parentid-flags` in lowercase hex, trace and parent ids not all zeros, version not ff; a later
    /// version may carry more after the flags.
    static func isWellFormed(_ value: String) -> Bool {
        guard value.utf8.count <= 512 else { return false }
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].count == 2, parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
            parts.prefix(4).allSatisfy({ $0.utf8.allSatisfy(isHexDigit) }), parts[0] != "ff",
            parts[1] != Substring(repeating: "0", count: 32), parts[2] != Substring(repeating: "0", count: 16)
        else { return false }
        // Version 00 has exactly four parts; later versions may append more.
        return parts[0] != "00" || parts.count == 4
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }

    private static func isPrintable(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    /// Eight random bytes per draw: each draw from the system generator is a system call, taken on every call
    /// that comes without a trace.
    private static func randomHex(_ byteCount: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 2 * byteCount) { text in
            var written = 0
            while written < 2 * byteCount {
                var bits = generator.next()
                for _ in 0..<min(8, byteCount - written / 2) {
                    text[written] = digits.utf8Start[Int(bits >> 4 & 0xF)]
                    text[written + 1] = digits.utf8Start[Int(bits & 0xF)]
                    bits >>= 8
                    written += 2
                }
            }
            return written
        }
    }
}

extension AuditRecord.Requester {
    /// Who the headers say is asking: the API key's client id and, when the bearer token is a JWT, its `sub` and
    /// `client_id` claims. The token is only decoded, never verified, and never kept.
    init(_ headers: HTTPHeaders) {
        self.init()
        apiKey = headers["x-api-key"].flatMap(Self.printable)

        guard let authorization = headers["Authorization"], authorization.lowercased().hasPrefix("bearer ") else {
            return
        }
        let token = authorization.dropFirst("bearer ".count).drop { $0 == " " }
        let segments = token.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 3, segments[1].utf8.count <= 8192,
            let payload = Self.base64URLDecode(segments[1]),
            case .object(let claims)? = JSONValue.parse(payload)
        else { return }

        if case .string(let subject)? = claims["sub"] {
            self.subject = Self.printable(subject)
        }
        if case .string(let clientId)? = claims["client_id"] {
            self.clientId = Self.printable(clientId)
        }
    }

    /// Who asked is never dropped for being odd: the value is kept, cut to 256 bytes (JSON escaping makes any
    /// character safe in a record).
    private static func printable(_ value: String) -> String? {
        value.isEmpty ? nil : auditText(value)
    }

    private static func base64URLDecode(_ text: Substring) -> [UInt8]? {
        var standard = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        standard += String(repeating: "=", count: (4 - standard.utf8.count % 4) % 4)
        return Data(base64Encoded: standard).map(Array.init)
    }
}

/// A caller-supplied value as the audit trail keeps it: at most 256 bytes, cut on a character boundary and marked
/// with "…" when cut, so an odd or oversized value is recorded rather than lost.
func auditText(_ value: String) -> String {
    guard value.utf8.count > 256 else { return value }
    var kept = ""
    for character in value {
        guard kept.utf8.count + character.utf8.count <= 253 else { break }
        kept.append(character)
    }
    return kept + "…"
}
