import FoundationEssentials

/// A call that may delete data: any POST or DELETE on the jobs routes of either surface, refused or not.
struct DeletionAttempt: Sendable {
    /// Pairs the intent record with the outcome record.
    let id = UUID().uuidString.lowercased()
    let isCreate: Bool
    let surface: String
    let requester: AuditRecord.Requester
    let clientAddress: String
    /// What the caller named, kept even when the gateway refuses the call before resolving it.
    let askedOrgId: String?
    let askedSandboxName: String?
    let askedSandboxId: String?
    let jobId: String?

    init?(_ request: HTTPRequest) {
        guard request.method == "POST" || request.method == "DELETE" else { return nil }
        let route = Gateway.routeTemplate(request.path)
        switch route {
        case "/v1/system/jobs", "/v1/system/jobs/{id}": surface = "canonical"
        case "/data/core/ups/system/jobs", "/data/core/ups/system/jobs/{id}": surface = "azure"
        default: return nil
        }
        isCreate = request.method == "POST"
        requester = AuditRecord.Requester(request.headers)
        clientAddress = request.remoteAddress
        askedOrgId = request.headers["x-gw-ims-org-id"].flatMap { $0.isEmpty ? nil : auditText($0) }
        askedSandboxName = request.headers["x-sandbox-name"].flatMap { $0.isEmpty ? nil : auditText($0) }
        askedSandboxId = request.headers["x-sandbox-id"].flatMap { $0.isEmpty ? nil : auditText($0) }

        // A removal names its job in the path; kept when well-formed, even if the call goes no further. A DELETE of
        // the collection itself names none.
        let path = request.path
        if let slash = path.lastIndex(of: "/"), request.method == "DELETE", route.hasSuffix("/{id}") {
            let id = String(path[path.index(after: slash)...])
            jobId = GatewayLimits.isWellFormedId(id) ? id : nil
        } else {
            jobId = nil
        }
    }
}

extension Gateway {
    /// Makes the deletion's intent durable; until it is, nothing is forwarded. Outside a deletion call there is no
    /// record to write, and the gateway refuses rather than forward anything unrecorded.
    func recordIntent() async throws(GatewayError) {
        guard let context = CallContext.current, context.deletion != nil else {
            throw .auditUnavailable
        }
        let record = Self.auditRecord(.intent, context)

        do {
            try await audit.write(record)
        } catch {
            logger.error(
                "audit intent not written; deletion refused",
                [
                    ("audit.id", .string(record.id)), ("request.id", .string(record.requestId)),
                    ("error", .string(error.description)),
                ])
            throw .auditUnavailable
        }
        context.update { $0.intent = record }
    }

    /// Records what became of a deletion call; a failure here is logged, since the answer can no longer change.
    func recordOutcome(_ context: CallContext, status: Int, failure: GatewayError?, seconds: Double? = nil) async {
        let facts = context.snapshot
        var record = Self.auditRecord(.outcome, context)
        record.status = status
        record.problemType = failure?.problem.type
        record.durationSeconds = seconds ?? (ContinuousClock.now - context.started).seconds
        // A sandbox lookup's answer is not the platform's answer to the deletion: only a forwarded one has that.
        if let upstream = failure?.upstreamDetail, facts.intent != nil {
            record.upstreamStatus = upstream.status
            record.upstreamRequestId = upstream.requestId ?? record.upstreamRequestId
        }
        record.outcome =
            switch (failure, facts.intent) {
            case (nil, _): .succeeded
            case (_, nil): .refused
            case (.upstreamRefused?, _), (.upstreamRateLimited?, _): .rejected
            case (_, _?): .failed
            }

        do {
            try await audit.write(record)
        } catch {
            logger.error(
                "audit outcome not written",
                [
                    ("audit.id", .string(record.id)), ("request.id", .string(record.requestId)),
                    ("outcome", .string(record.outcome?.rawValue ?? "")), ("error", .string(error.description)),
                ])
        }
    }

    /// A deletion the HTTP server refused before the gateway saw it (a request over the limits, a connection over
    /// the cap, or stopping): never forwarded, recorded as refused.
    func recordServerRefusal(_ exchange: HTTPExchange) {
        let request = HTTPRequest(
            method: exchange.method, path: exchange.path, headers: exchange.requestHeaders,
            remoteAddress: exchange.remoteAddress)
        guard let deletion = DeletionAttempt(request) else { return }

        let context = CallContext(
            requestId: exchange.response.headers["x-request-id"] ?? Self.requestId(from: request.headers),
            trace: TraceContext(request.headers), deletion: deletion)
        let status = exchange.response.status
        let refusal: GatewayError =
            switch exchange.refusal {
            case .interrupted?, nil: .shuttingDown
            case let refusal?: GatewayError(refusal)
            }
        Task { await self.recordOutcome(context, status: status, failure: refusal, seconds: exchange.seconds) }
    }

    /// The record as far as the call has got; an outcome carries everything the intent did.
    private static func auditRecord(_ event: AuditRecord.Event, _ context: CallContext) -> AuditRecord {
        let facts = context.snapshot
        let deletion = context.deletion!

        let action: AuditRecord.Action =
            switch (deletion.isCreate, facts.datasetId, facts.batchId) {
            case (false, _, _): .removeJob
            case (true, _, _?): .createBatchDelete
            case (true, _?, nil): .createDatasetDelete
            case (true, nil, nil): .createDelete
            }
        var record = AuditRecord(
            event: event, id: deletion.id, time: Date.now, requestId: context.requestId, action: action,
            surface: deletion.surface, requester: deletion.requester)
        record.traceId = context.trace.traceId
        record.orgId = facts.orgId ?? deletion.askedOrgId
        record.cloud = facts.cloud?.rawValue
        record.sandboxName = facts.sandbox?.name ?? deletion.askedSandboxName
        record.sandboxId = facts.sandbox?.id ?? deletion.askedSandboxId
        record.datasetId = facts.datasetId
        record.batchId = facts.batchId
        record.jobId = facts.jobId ?? deletion.jobId
        record.clientAddress = deletion.clientAddress.isEmpty ? nil : deletion.clientAddress
        record.upstreamStatus = facts.upstreamStatus
        record.upstreamRequestId = facts.upstreamRequestId
        return record
    }

    // MARK: Service routes

    /// The paths `serviceRoute` answers.
    static func isServiceRoute(_ path: String) -> Bool {
        ["/healthz", "/readyz", "/metrics", "/v1/audit"].contains(path)
    }

    /// Health, readiness, metrics and the audit search, for a path `isServiceRoute` accepts.
    func serviceRoute(_ request: HTTPRequest) async throws(GatewayError) -> HTTPResponse {
        let path = request.path
        // HEAD gets the GET answer; the HTTP server leaves the body out.
        guard request.method == "GET" || request.method == "HEAD" else {
            throw .methodNotAllowed(method: request.method, allowed: ["GET", "HEAD"])
        }

        switch path {
        case "/healthz":
            return .json(200, Array(#"{"status":"ok"}"#.utf8))
        case "/readyz":
            guard !isStopping else { throw .notReady("it is shutting down") }
            guard audit.isWritable else { throw .notReady("its audit trail cannot be written") }
            return .json(200, Array(#"{"status":"ready"}"#.utf8))
        case "/metrics":
            return HTTPResponse(
                status: 200, headers: HTTPHeaders([("Content-Type", GatewayMetrics.contentType)]),
                body: metrics.render())
        default:
            let query = try Self.auditQuery(request)
            let records = await audit.search(query)
            var writer = JSONWriter(capacity: 512 * (records.count + 1))
            writer.beginObject()
            writer.key("records")
            writer.beginArray()
            for record in records {
                writer.raw(record.json)
            }
            writer.endArray()
            writer.field("count", records.count)
            writer.field("limit", query.limit)
            writer.endObject()
            return .json(200, writer.bytes)
        }
    }

    /// `GET /v1/audit?datasetId=&batchId=&jobId=&orgId=&since=&until=&limit=`; an unknown parameter is refused so
    /// that a misspelt filter cannot quietly widen the answer.
    static func auditQuery(_ request: HTTPRequest) throws(GatewayError) -> AuditQuery {
        let known = ["datasetId", "batchId", "jobId", "orgId", "since", "until", "limit"]
        for (name, _) in request.query where !known.contains(name) {
            throw .invalidQuery(
                parameter: String(name.prefix(64)), reason: "is not known; use \(known.joined(separator: ", "))")
        }
        for name in known where request.query.filter({ $0.name == name }).count > 1 {
            throw .invalidQuery(parameter: name, reason: "is given more than once; give each filter once")
        }

        var query = AuditQuery()
        for (name, field) in [("datasetId", \AuditQuery.datasetId), ("batchId", \.batchId), ("jobId", \.jobId)] {
            if let value = request.queryValue(name) {
                guard GatewayLimits.isWellFormedId(value) else { throw .invalidId(field: name, value: value) }
                query[keyPath: field] = value
            }
        }
        if let orgId = request.queryValue("orgId") {
            // Any value the trail may hold: organizations are recorded as asked, cut to 256 bytes.
            guard !orgId.isEmpty, orgId.utf8.count <= 256, !orgId.unicodeScalars.contains(where: { $0.value < 0x20 })
            else {
                throw .invalidQuery(
                    parameter: "orgId", reason: "must be an organization id like 1234@AdobeOrg, at most 256 bytes")
            }
            query.orgId = orgId
        }
        for (name, field) in [("since", \AuditQuery.since), ("until", \.until)] {
            if let text = request.queryValue(name) {
                guard let time = AuditRecord.parseTime(text) else {
                    throw .invalidQuery(
                        parameter: name,
                        reason: "must be an RFC 3339 time, like 2026-12-03T10:00:00Z or 2026-12-03T11:00:00%2B01:00 "
                            + "(a + in a query is read as a space, so send it as %2B)")
                }
                query[keyPath: field] = time
            }
        }
        if let text = request.queryValue("limit") {
            guard let limit = Int(text), (1...1000).contains(limit) else {
                throw .invalidQuery(parameter: "limit", reason: "must be a whole number from 1 to 1000")
            }
            query.limit = limit
        }
        return query
    }
}
