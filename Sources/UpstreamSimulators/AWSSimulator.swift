import FoundationEssentials
import ProfileJobsGateway

/// Profile system jobs as an AWS deployment of the platform answers them.
///
/// Every jobs call must carry `x-sandbox-id` (a name alone is refused); jobs go NEW -> IN-PROGRESS -> SUCCESS by the
/// clock; removal is not supported (405). Lists take the shape `SimulatorOptions.awsListShape` selects; paged lists
/// take `start` (0-based page number, default 0) and `limit` (1-1000, default 100). See `Caller` for bearer tokens.
public final class AWSSimulator: HTTPHandler {
    private let core: SimulatorCore

    public init(options: SimulatorOptions = .init()) {
        core = SimulatorCore(options: options)
    }

    /// Every request received, in order, whether or not it was refused or faulted.
    public var receivedRequests: [HTTPRequest] {
        core.receivedRequests
    }

    /// Makes the platform struggle on demand: see `FaultSwitch`.
    public var faults: FaultSwitch {
        core.faults
    }

    /// Stores one finished dataset delete and one finished batch delete for the org's sandbox; returns their ids.
    @discardableResult
    public func seed(orgId: String, sandboxName: String = "prod") throws(UnknownSandbox) -> [String] {
        try core.seed(orgId: orgId, sandboxName: sandboxName, batchId: "01JFSYFDFW9JAAEKHX672JMPSB")
    }

    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        if let answer = await core.intercept(request) {
            return answer
        }

        do throws(PlatformError) {
            // Every answer of the platform carries a request id of its own, as support asks for it.
            var response = try answer(request)
            response.headers.set("x-request-id", UUID().uuidString.lowercased())
            return response
        } catch {
            return error.response(at: core.now)
        }
    }

    private func answer(_ request: HTTPRequest) throws(PlatformError) -> HTTPResponse {
        let caller = try Caller(headers: request.headers)
        let route = try core.route(request, removalSupported: false)

        if case .sandbox(let name) = route {
            return try core.lookUpSandbox(named: name, for: caller)
        }

        let sandbox = try sandbox(of: request)

        switch (route, request.method) {
        case (.jobs, "POST"):
            return try create(request, for: caller, in: sandbox)

        case (.jobs, _):
            return try list(request, for: caller, in: sandbox)

        case (.job(let id), _):
            let job = try core.job(id: id, for: caller, in: sandbox)
            return .json(200, write(job, at: core.now))

        case (.sandbox, _):
            throw .notFound("No resource at \(request.path).")
        }
    }

    /// The sandbox given by `x-sandbox-id`, which this deployment requires.
    private func sandbox(of request: HTTPRequest) throws(PlatformError) -> SimulatedSandbox {
        guard let id = request.headers["x-sandbox-id"]?.trimmingSpaces, !id.isEmpty else {
            throw .sandboxIdRequired
        }
        guard let sandbox = core.sandbox(id: id) else {
            throw .unknownSandbox("with id '\(id)'")
        }
        return sandbox
    }

    private func create(_ request: HTTPRequest, for caller: Caller, in sandbox: SimulatedSandbox) throws(PlatformError)
        -> HTTPResponse
    {
        let target = try core.deleteTarget(of: request)

        if case .batch(let datasetId, _) = target {
            guard let datasetId else { throw .invalidPayload }
            if core.options.recordDatasets.contains(datasetId) {
                throw .awsRecordBatch
            }
        }

        try core.checkBatchExists(target)

        let job = try core.createJob(target, for: caller, in: sandbox)
        return .json(200, write(job, at: core.now))
    }

    private func list(_ request: HTTPRequest, for caller: Caller, in sandbox: SimulatedSandbox) throws(PlatformError)
        -> HTTPResponse
    {
        let now = core.now
        let all = core.jobs(for: caller, in: sandbox)

        guard core.options.awsListShape == .paged else {
            var writer = JSONWriter()
            writer.beginArray()
            for job in all.prefix(100) {
                writer.raw(write(job, at: now))
            }
            writer.endArray()
            return .json(200, writer.bytes)
        }

        let start: Int
        let limit: Int
        do throws(QueryProblem) {
            start = try QueryInteger(name: "start", range: 0...Int.max).read(from: request).get() ?? 0
            limit = try QueryInteger(name: "limit", range: 1...1000).read(from: request).get() ?? 100
        } catch {
            throw .awsInvalidQuery(error.message)
        }

        let (offset, overflow) = start.multipliedReportingOverflow(by: limit)

        var writer = JSONWriter()
        writer.beginObject()
        writer.key("_page")
        writer.beginObject()
        writer.field("pageSize", limit)
        writer.field("start", String(start))
        writer.field("totalCount", all.count)
        writer.field("next", start == Int.max ? start : start + 1)
        writer.endObject()
        writer.key("children")
        writer.beginArray()
        for job in all.page(offset: overflow ? Int.max : offset, limit: limit) {
            writer.raw(write(job, at: now))
        }
        writer.endArray()
        writer.endObject()
        return .json(200, writer.bytes)
    }

    /// One job as AWS writes it: `requestType` by target, ids under `properties`, RFC 3339 stamps in microseconds.
    private func write(_ job: SimulatedJob, at now: Double) -> [UInt8] {
        let progress = core.progress(of: job, at: now)

        var writer = JSONWriter()
        writer.beginObject()
        writer.field("requestId", job.id)
        switch job.target {
        case .dataset: writer.field("requestType", "TRUNCATE_DATASET")
        case .batch: writer.field("requestType", "DELETE_EE_BATCH")
        }
        writer.field("imsOrgId", job.orgId)
        writer.key("sandbox")
        writer.beginObject()
        writer.field("sandboxName", job.sandbox.name)
        writer.field("sandboxId", job.sandbox.id)
        writer.endObject()
        writer.field("status", status(progress.phase))
        writer.key("properties")
        writer.beginObject()
        switch job.target {
        case .dataset(let datasetId):
            writer.field("datasetId", datasetId)
        case .batch(let datasetId, let batchId):
            writer.field("batchId", batchId)
            writer.field("datasetId", datasetId)
        }
        writer.endObject()
        writer.field("createdAt", Timestamp.rfc3339Microseconds(job.createdAt))
        writer.field("updatedAt", Timestamp.rfc3339Microseconds(progress.updatedAt))
        writer.endObject()
        return writer.bytes
    }

    private func status(_ phase: JobPhase) -> String {
        switch phase {
        case .new: "NEW"
        case .running: "IN-PROGRESS"
        case .finished: "SUCCESS"
        }
    }
}
