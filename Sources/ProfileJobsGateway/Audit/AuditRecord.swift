import FoundationEssentials

/// One line of the audit trail: the intent written before a deletion is forwarded, or the outcome written after.
///
/// Both lines of one deletion share `id`; the caller's `requestId` is not unique enough for that, since a client may
/// reuse it. A record never holds a credential: only the API key's client id and unverified claims of a JWT.
public struct AuditRecord: Sendable, Equatable {
    public enum Event: String, Sendable {
        /// Written and synced before the deletion is forwarded.
        case intent
        /// What became of it; for requests refused before forwarding, the only record.
        case outcome
    }

    public enum Action: String, Sendable {
        case createDatasetDelete = "create-dataset-delete"
        case createBatchDelete = "create-batch-delete"
        /// A create whose body could not be read, so neither dataset nor batch is known.
        case createDelete = "create-delete"
        case removeJob = "remove-job"
    }

    public enum Outcome: String, Sendable {
        /// The platform accepted it.
        case succeeded
        /// The gateway refused it without forwarding (bad input, unknown organization, AWS removal, no audit).
        case refused
        /// Forwarded, and the platform refused it (a 4xx answer).
        case rejected
        /// Forwarded, and no clear answer came back (5xx, timeout, unreachable): it may or may not have happened.
        case failed
        /// Found at start without an outcome: the gateway stopped between forwarding and answering.
        case unknown
    }

    /// Who asked, as far as the gateway can tell without verifying anything.
    public struct Requester: Sendable, Equatable {
        /// The `x-api-key` header: the client id of the caller's integration, not a secret.
        public var apiKey: String?
        /// `sub` of the bearer token when it is a JWT; read, never verified.
        public var subject: String?
        /// `client_id` of the bearer token when it is a JWT; read, never verified.
        public var clientId: String?

        public init(apiKey: String? = nil, subject: String? = nil, clientId: String? = nil) {
            self.apiKey = apiKey
            self.subject = subject
            self.clientId = clientId
        }
    }

    public var event: Event
    /// Pairs an intent with its outcome.
    public var id: String
    public var time: Date
    public var requestId: String
    public var traceId: String?
    public var action: Action
    /// `canonical` (`/v1/system/jobs`) or `azure` (`/data/core/ups/system/jobs`).
    public var surface: String
    public var orgId: String?
    public var sandboxName: String?
    public var sandboxId: String?
    public var cloud: String?
    public var datasetId: String?
    public var batchId: String?
    public var jobId: String?
    public var requester: Requester
    public var clientAddress: String?
    public var outcome: Outcome?
    /// The status the gateway answered with.
    public var status: Int?
    /// The problem type when the answer was a problem.
    public var problemType: String?
    public var upstreamStatus: Int?
    public var upstreamRequestId: String?
    public var durationSeconds: Double?

    public init(
        event: Event,
        id: String,
        time: Date,
        requestId: String,
        action: Action,
        surface: String,
        requester: Requester = Requester()
    ) {
        self.event = event
        self.id = id
        self.time = time
        self.requestId = requestId
        self.action = action
        self.surface = surface
        self.requester = requester
    }
}

extension AuditRecord {
    /// One JSON object without a newline; absent fields are left out, never written as null.
    public var json: [UInt8] {
        var writer = JSONWriter(capacity: 512)
        writer.beginObject()
        writer.field("event", event.rawValue)
        writer.field("id", id)
        writer.field("time", AuditRecord.formatTime(time))
        writer.field("requestId", requestId)
        optional(&writer, "traceId", traceId)
        writer.field("action", action.rawValue)
        writer.field("surface", surface)
        optional(&writer, "orgId", orgId)
        optional(&writer, "sandboxName", sandboxName)
        optional(&writer, "sandboxId", sandboxId)
        optional(&writer, "cloud", cloud)
        optional(&writer, "datasetId", datasetId)
        optional(&writer, "batchId", batchId)
        optional(&writer, "jobId", jobId)

        writer.key("requester")
        writer.beginObject()
        optional(&writer, "apiKey", requester.apiKey)
        optional(&writer, "subject", requester.subject)
        optional(&writer, "clientId", requester.clientId)
        writer.key("verified")
        writer.bool(false)
        writer.endObject()

        optional(&writer, "clientAddress", clientAddress)
        optional(&writer, "outcome", outcome?.rawValue)
        if let status { writer.field("status", status) }
        optional(&writer, "problemType", problemType)
        if let upstreamStatus { writer.field("upstreamStatus", upstreamStatus) }
        optional(&writer, "upstreamRequestId", upstreamRequestId)
        if let durationSeconds {
            writer.key("durationSeconds")
            writer.number((durationSeconds * 1e6).rounded() / 1e6)
        }
        writer.endObject()
        return writer.bytes
    }

    /// Reads a line `json` wrote; nil for anything else, so a torn last line after a crash is skipped, not fatal.
    public init?(json bytes: some Collection<UInt8>) {
        guard case .object(let fields)? = JSONValue.parse(Array(bytes)) else { return nil }
        func text(_ key: String, in object: [String: JSONValue] = fields) -> String? {
            if case .string(let value)? = object[key] { return value }
            return nil
        }
        func integer(_ key: String) -> Int? {
            if case .number(let value)? = fields[key] { return Int(exactly: value) }
            return nil
        }

        guard let event = text("event").flatMap(Event.init(rawValue:)), let id = text("id"),
            let time = text("time").flatMap(AuditRecord.parseTime), let requestId = text("requestId"),
            let action = text("action").flatMap(Action.init(rawValue:)), let surface = text("surface")
        else { return nil }

        self.init(event: event, id: id, time: time, requestId: requestId, action: action, surface: surface)
        traceId = text("traceId")
        orgId = text("orgId")
        sandboxName = text("sandboxName")
        sandboxId = text("sandboxId")
        cloud = text("cloud")
        datasetId = text("datasetId")
        batchId = text("batchId")
        jobId = text("jobId")
        if case .object(let who)? = fields["requester"] {
            requester = Requester(
                apiKey: text("apiKey", in: who), subject: text("subject", in: who), clientId: text("clientId", in: who))
        }
        clientAddress = text("clientAddress")
        outcome = text("outcome").flatMap(Outcome.init(rawValue:))
        status = integer("status")
        problemType = text("problemType")
        upstreamStatus = integer("upstreamStatus")
        upstreamRequestId = text("upstreamRequestId")
        if case .number(let seconds)? = fields["durationSeconds"] { durationSeconds = seconds }
    }

    /// UTC with milliseconds (`2026-12-03T19:04:05.123Z`), which sorts as text in time order.
    ///
    /// Rounds to the nearest millisecond: the formatter truncates, and a parsed `.123` is often a Double just below
    /// it, so without the quarter-millisecond nudge a record read back from its line would be written 1 ms earlier.
    public static func formatTime(_ date: Date) -> String {
        let milliseconds = (date.timeIntervalSinceReferenceDate * 1000).rounded()
        let nudged = Date(timeIntervalSinceReferenceDate: (milliseconds + 0.25) / 1000)
        return nudged.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func parseTime(_ text: String) -> Date? {
        // The dialects' strict reader decides what is a real RFC 3339 time (Foundation's rolls February 30 into
        // March); Foundation's, given the upper-case T and Z it insists on, turns it into an instant.
        guard RFC3339Stamp(Array(text.utf8)) != nil else { return nil }
        let text = text.uppercased()
        return (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
            ?? (try? Date(text, strategy: Date.ISO8601FormatStyle()))
    }
}

private func optional(_ writer: inout JSONWriter, _ name: String, _ value: String?) {
    if let value { writer.field(name, value) }
}
