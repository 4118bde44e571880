import FoundationEssentials
import ProfileJobsGateway

/// Profile system jobs as an Azure deployment of the platform answers them.
///
/// The sandbox is named by `x-sandbox-name` (prod when absent); jobs go NEW -> PROCESSING -> COMPLETED by the clock;
/// a job can be removed with DELETE. Lists page by `start`/`page`/`limit` and sort by `sort` within the page only,
/// as the documentation warns. See `Caller` for how bearer tokens are told apart.
public final class AzureSimulator: HTTPHandler {
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
        try core.seed(orgId: orgId, sandboxName: sandboxName, batchId: "8d075b5a178e48389126b9289dcfd0ac")
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
        let route = try core.route(request, removalSupported: true)

        if case .sandbox(let name) = route {
            return try core.lookUpSandbox(named: name, for: caller)
        }

        let sandbox = try sandbox(of: request)

        switch (route, request.method) {
        case (.jobs, "POST"):
            return try create(request, for: caller, in: sandbox)

        case (.jobs, _):
            return try list(request, for: caller, in: sandbox)

        case (.job(let id), "DELETE"):
            try core.removeJob(id: id, for: caller, in: sandbox)
            return HTTPResponse(status: 200)

        case (.job(let id), _):
            let job = try core.job(id: id, for: caller, in: sandbox)
            return .json(200, write(job, at: core.now))

        case (.sandbox, _):
            throw .notFound("No resource at \(request.path).")
        }
    }

    /// The sandbox named by `x-sandbox-name`; the platform falls back to prod when the header is absent.
    private func sandbox(of request: HTTPRequest) throws(PlatformError) -> SimulatedSandbox {
        let name = request.headers["x-sandbox-name"]?.trimmingSpaces ?? ""
        let effectiveName = name.isEmpty ? "prod" : name
        guard let sandbox = core.sandbox(named: effectiveName) else {
            throw .unknownSandbox("'\(effectiveName)'")
        }
        return sandbox
    }

    private func create(_ request: HTTPRequest, for caller: Caller, in sandbox: SimulatedSandbox) throws(PlatformError)
        -> HTTPResponse
    {
        let target = try core.deleteTarget(of: request)

        if case .batch(let datasetId?, _) = target, core.options.recordDatasets.contains(datasetId) {
            throw .azureRecordBatch(datasetId: datasetId)
        }

        try core.checkBatchExists(target)

        let job = try core.createJob(target, for: caller, in: sandbox)
        return .json(200, write(job, at: core.now))
    }

    /// Sort order of a list page: `createEpoch` or `updateEpoch`, ascending or descending.
    private struct PageSort {
        var byUpdate: Bool
        var ascending: Bool

        init?(_ text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, ["createEpoch", "updateEpoch"].contains(parts[0]),
                ["asc", "desc"].contains(parts[1])
            else { return nil }
            byUpdate = parts[0] == "updateEpoch"
            ascending = parts[1] == "asc"
        }
    }

    private func list(_ request: HTTPRequest, for caller: Caller, in sandbox: SimulatedSandbox) throws(PlatformError)
        -> HTTPResponse
    {
        let limit: Int
        let offset: Int
        let sort: PageSort?
        switch readPaging(request) {
        case .success(let paging): (limit, offset, sort) = paging
        case .failure(let problem): throw .azureInvalidQuery(problem.message)
        }

        let now = core.now
        let all = core.jobs(for: caller, in: sandbox)
        var page = Array(all.page(offset: offset, limit: limit))
        if let sort {
            page.sort { sorted($0, before: $1, by: sort, at: now) }
        }

        var writer = JSONWriter()
        writer.beginObject()
        writer.key("_page")
        writer.beginObject()
        writer.field("count", all.count)
        if offset < all.count - limit {
            writer.field("next", nextToken(offset: offset, limit: limit))
        }
        writer.endObject()
        writer.key("children")
        writer.beginArray()
        for job in page {
            writer.raw(write(job, at: now))
        }
        writer.endArray()
        writer.endObject()
        return .json(200, writer.bytes)
    }

    /// `limit` (1-1000, default 100), then `start` (an offset) or else `page` (a page number), and `sort`.
    private func readPaging(_ request: HTTPRequest) -> Result<(Int, Int, PageSort?), QueryProblem> {
        Result { () throws(QueryProblem) in
            let limit = try QueryInteger(name: "limit", range: 1...1000).read(from: request).get() ?? 100
            let start = try QueryInteger(name: "start", range: 0...Int.max).read(from: request).get()
            let page = try QueryInteger(name: "page", range: 0...Int.max).read(from: request).get() ?? 0
            let (pageOffset, overflow) = page.multipliedReportingOverflow(by: limit)

            var sort: PageSort?
            if let text = request.queryValue("sort") {
                guard let parsed = PageSort(text) else {
                    throw QueryProblem(
                        message: "Invalid value '\(text)' for query parameter 'sort': expected createEpoch or "
                            + "updateEpoch, then :asc or :desc.")
                }
                sort = parsed
            }

            return (limit, start ?? (overflow ? Int.max : pageOffset), sort)
        }
    }

    private func sorted(_ lhs: SimulatedJob, before rhs: SimulatedJob, by sort: PageSort, at now: Double) -> Bool {
        let key = { (job: SimulatedJob) -> Int in
            Int(sort.byUpdate ? self.core.progress(of: job, at: now).updatedAt : job.createdAt)
        }
        let (left, right) = (key(lhs), key(rhs))
        guard left != right else { return lhs.id < rhs.id }
        return sort.ascending ? left < right : left > right
    }

    /// An opaque continuation token in the style of the documented one (base64 of a resource-id cursor).
    private func nextToken(offset: Int, limit: Int) -> String {
        let cursor = "+RID:~sim#RT:\(offset / limit + 1)#TRC:\(offset + limit)"
        return Data(cursor.utf8).base64EncodedString()
    }

    /// One job as Azure writes it: `dataSetId` on dataset deletes, `datasetId` and `batchId` on batch deletes.
    private func write(_ job: SimulatedJob, at now: Double) -> [UInt8] {
        let progress = core.progress(of: job, at: now)

        var writer = JSONWriter()
        writer.beginObject()
        writer.field("id", job.id)
        writer.field("imsOrgId", job.orgId)
        switch job.target {
        case .dataset(let datasetId):
            writer.field("dataSetId", datasetId)
        case .batch(let datasetId, let batchId):
            if let datasetId {
                writer.field("datasetId", datasetId)
            }
            writer.field("batchId", batchId)
        }
        writer.field("jobType", "DELETE")
        writer.field("status", status(progress.phase))
        if let seconds = progress.secondsProcessing, let records = progress.recordsProcessed {
            writer.field("metrics", #"{"recordsProcessed":\#(records),"timeTakenInSec":\#(seconds)}"#)
        }
        writer.field("createEpoch", Int(job.createdAt))
        writer.field("updateEpoch", Int(progress.updatedAt))
        writer.endObject()
        return writer.bytes
    }

    private func status(_ phase: JobPhase) -> String {
        switch phase {
        case .new: "NEW"
        case .running: "PROCESSING"
        case .finished: "COMPLETED"
        }
    }
}
