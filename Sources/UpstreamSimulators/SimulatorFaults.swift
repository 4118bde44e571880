import FoundationEssentials
import ProfileJobsGateway

/// A fault a simulated platform answers with instead of its normal answer, so the gateway's handling of a struggling
/// platform can be tried end to end (and under load, from outside, through `FaultSwitch.controlPath`).
public enum SimulatedFault: Sendable, Equatable {
    /// An error status with a body in the platform gateway's `{"error_code", "message"}` shape; `retryAfter` adds that
    /// header (as 429 and 503 answers carry it).
    case status(Int, retryAfter: String? = nil)
    /// The normal answer, after this many seconds.
    case slow(seconds: Double)
    /// 200 whose JSON breaks off.
    case malformedJSON
    /// 200 with an empty body.
    case emptyBody
    /// A load balancer's HTML page with this status.
    case htmlPage(status: Int)
}

/// The simulators' runtime fault switch: each injected fault replaces the next matching answers, a given number of
/// times or until cleared, earliest injection first.
///
/// Tests use it directly (`demo.azure.faults.inject(.status(503), times: 2)`); a soak run against `demo` uses the
/// same switch over HTTP on each simulator's own port:
///
///     POST   /_simulator/faults  {"fault": "status", "status": 503, "retryAfter": "2", "times": 3, "method": "GET"}
///            {"fault": "slow", "seconds": 2, "always": true}, {"fault": "malformed-json"}, {"fault": "empty-body"},
///            {"fault": "html-page", "status": 502}; "sandboxLookups": true lets it hit Sandbox Management lookups too
///     GET    /_simulator/faults  the faults still pending
///     DELETE /_simulator/faults  clears them
///
/// Control calls are neither recorded in `receivedRequests` nor faulted themselves.
public final class FaultSwitch: Sendable {
    public static let controlPath = "/_simulator/faults"

    /// One injected fault and what it applies to.
    public struct Rule: Sendable, Equatable {
        public var fault: SimulatedFault
        /// Answers still to replace; nil until cleared.
        public var remaining: Int?
        /// Only calls with this method; nil for any.
        public var method: String?
        /// Whether Sandbox Management lookups are hit too; by default only system-jobs calls are.
        public var sandboxLookups: Bool

        public init(fault: SimulatedFault, remaining: Int?, method: String? = nil, sandboxLookups: Bool = false) {
            self.fault = fault
            self.remaining = remaining
            self.method = method
            self.sandboxLookups = sandboxLookups
        }
    }

    private let rules = Locked<[Rule]>([])

    public init() {}

    /// Replaces the next `times` matching answers (every one until `clear` when nil) with `fault`.
    public func inject(_ fault: SimulatedFault, times: Int? = 1, method: String? = nil, sandboxLookups: Bool = false) {
        guard times.map({ $0 > 0 }) ?? true else { return }
        rules.withLock {
            $0.append(Rule(fault: fault, remaining: times, method: method, sandboxLookups: sandboxLookups))
        }
    }

    public func clear() {
        rules.withLock { $0 = [] }
    }

    public var pending: [Rule] {
        rules.withLock { $0 }
    }

    /// The fault this call gets, used up as it is handed out; nil for the normal answer.
    func take(for request: HTTPRequest) -> SimulatedFault? {
        let isLookup = request.path.hasPrefix("/data/foundation/sandbox-management/")
        return rules.withLock { rules in
            guard
                let index = rules.firstIndex(where: { rule in
                    (rule.method == nil || rule.method == request.method) && (rule.sandboxLookups || !isLookup)
                })
            else { return nil }

            let fault = rules[index].fault
            if let remaining = rules[index].remaining {
                if remaining <= 1 {
                    rules.remove(at: index)
                } else {
                    rules[index].remaining = remaining - 1
                }
            }
            return fault
        }
    }

    /// The answer to a control call, or nil when the request is not one.
    func control(_ request: HTTPRequest) -> HTTPResponse? {
        guard request.path == Self.controlPath else { return nil }

        switch request.method {
        case "GET":
            return .json(200, describe(pending))
        case "DELETE":
            clear()
            return .json(200, describe([]))
        case "POST":
            switch Self.readRule(request.body) {
            case .success(let rule):
                inject(rule.fault, times: rule.remaining, method: rule.method, sandboxLookups: rule.sandboxLookups)
                return .json(200, describe(pending))
            case .failure(let problem):
                return .json(400, Array(#"{"error": "\#(problem.message)"}"#.utf8))
            }
        default:
            var response = HTTPResponse.json(405, Array(#"{"error": "use GET, POST or DELETE"}"#.utf8))
            response.headers.add("Allow", "GET, POST, DELETE")
            return response
        }
    }

    private static func readRule(_ body: [UInt8]) -> Result<Rule, QueryProblem> {
        guard case .object(let fields)? = JSONValue.parse(body) else {
            return .failure(QueryProblem(message: "the body must be a JSON object"))
        }
        func number(_ key: String) -> Double? {
            if case .number(let value)? = fields[key] { return value }
            return nil
        }
        func string(_ key: String) -> String? {
            if case .string(let value)? = fields[key] { return value }
            return nil
        }
        let status = number("status").flatMap { Int(exactly: $0) }

        let fault: SimulatedFault
        switch string("fault") {
        case "status":
            guard let status, (400...599).contains(status) else {
                return .failure(QueryProblem(message: "a status fault needs a status from 400 to 599"))
            }
            fault = .status(status, retryAfter: string("retryAfter"))
        case "slow":
            guard let seconds = number("seconds"), seconds > 0, seconds <= 3600 else {
                return .failure(QueryProblem(message: "a slow fault needs seconds from 0 to 3600"))
            }
            fault = .slow(seconds: seconds)
        case "malformed-json":
            fault = .malformedJSON
        case "empty-body":
            fault = .emptyBody
        case "html-page":
            fault = .htmlPage(status: status ?? 502)
        default:
            return .failure(
                QueryProblem(message: "fault must be status, slow, malformed-json, empty-body or html-page"))
        }

        var times: Int? = number("times").flatMap { Int(exactly: $0) } ?? 1
        if case .bool(true)? = fields["always"] {
            times = nil
        }
        guard times.map({ (1...1_000_000).contains($0) }) ?? true else {
            return .failure(QueryProblem(message: "times must be a whole number from 1 to 1000000"))
        }
        var sandboxLookups = false
        if case .bool(let value)? = fields["sandboxLookups"] {
            sandboxLookups = value
        }
        return .success(Rule(fault: fault, remaining: times, method: string("method"), sandboxLookups: sandboxLookups))
    }

    /// The pending faults in the form a POST takes them.
    private func describe(_ rules: [Rule]) -> [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.key("pending")
        writer.beginArray()
        for rule in rules {
            writer.beginObject()
            switch rule.fault {
            case .status(let status, let retryAfter):
                writer.field("fault", "status")
                writer.field("status", status)
                if let retryAfter {
                    writer.field("retryAfter", retryAfter)
                }
            case .slow(let seconds):
                writer.field("fault", "slow")
                writer.key("seconds")
                writer.number(seconds)
            case .malformedJSON:
                writer.field("fault", "malformed-json")
            case .emptyBody:
                writer.field("fault", "empty-body")
            case .htmlPage(let status):
                writer.field("fault", "html-page")
                writer.field("status", status)
            }
            if let remaining = rule.remaining {
                writer.field("times", remaining)
            } else {
                writer.key("always")
                writer.bool(true)
            }
            if let method = rule.method {
                writer.field("method", method)
            }
            if rule.sandboxLookups {
                writer.key("sandboxLookups")
                writer.bool(true)
            }
            writer.endObject()
        }
        writer.endArray()
        writer.endObject()
        return writer.bytes
    }
}

extension SimulatedFault {
    /// The answer replacing the normal one; nil when the normal answer follows (after a delay, for `slow`).
    func answer() async -> HTTPResponse? {
        switch self {
        case .slow(let seconds):
            try? await Task.sleep(for: .seconds(seconds))
            return nil

        case .status(let status, let retryAfter):
            let message =
                switch status {
                case 429: "Too many requests"
                case 500: "Internal server error"
                case 502: "Bad gateway"
                case 503: "Service unavailable"
                case 504: "Gateway timeout"
                default: "Simulated fault"
                }
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("error_code", "\(status)050")
            writer.field("message", message)
            writer.endObject()
            var response = HTTPResponse.json(status, writer.bytes)
            response.headers.add("x-request-id", UUID().uuidString.lowercased())
            if let retryAfter {
                response.headers.add("Retry-After", retryAfter)
            }
            return response

        case .malformedJSON:
            return .json(200, Array(#"{"id": "3f225e7e-ac8c-4904-b1d5-0ce79e03c2ec", "imsOrgId": "#.utf8))

        case .emptyBody:
            return .json(200, [])

        case .htmlPage(let status):
            let title =
                switch status {
                case 502: "502 Bad Gateway"
                case 503: "503 Service Temporarily Unavailable"
                case 504: "504 Gateway Time-out"
                default: "\(status) Error"
                }
            let page =
                "<html><head><title>\(title)</title></head><body><center><h1>\(title)</h1></center></body></html>"
            return HTTPResponse(
                status: status, headers: HTTPHeaders([("Content-Type", "text/html")]), body: Array(page.utf8))
        }
    }
}
