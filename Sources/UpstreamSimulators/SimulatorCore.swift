import FoundationEssentials
import ProfileJobsGateway

/// What both clouds do alike: request log, credentials, routing, the job store and its clock, create validation.
final class SimulatorCore: Sendable {
    /// Everything that changes, behind one lock so concurrent calls see a consistent store.
    private struct State: Sendable {
        var store = JobStore()
        var received: [HTTPRequest] = []
    }

    let options: SimulatorOptions
    let faults = FaultSwitch()
    private let state = Locked(State())

    init(options: SimulatorOptions) {
        self.options = options
    }

    var now: Double {
        options.clock()
    }

    // MARK: Faults

    /// A control call's answer, or an injected fault's, before the platform's own; nil for the platform's answer.
    /// Control calls stay out of the request log, every other call is recorded, faulted or not.
    func intercept(_ request: HTTPRequest) async -> HTTPResponse? {
        if let answer = faults.control(request) {
            return answer
        }
        record(request)
        guard let fault = faults.take(for: request) else { return nil }
        return await fault.answer()
    }

    // MARK: Request log

    /// Requests kept for tests to inspect; older ones are dropped, so a long demo or soak run stays small.
    static let requestLogLimit = 10_000

    func record(_ request: HTTPRequest) {
        state.withLock { state in
            state.received.append(request)
            // Dropped in batches, so that keeping the newest costs no copy per request.
            if state.received.count >= 2 * Self.requestLogLimit {
                state.received.removeFirst(state.received.count - Self.requestLogLimit)
            }
        }
    }

    /// The calls received, oldest first: all of them, or at least the newest `requestLogLimit`.
    var receivedRequests: [HTTPRequest] {
        state.withLock { $0.received }
    }

    // MARK: Routing

    /// The route of a call, or 404 for an unknown path and 405 for a method the route does not take.
    func route(_ request: HTTPRequest, removalSupported: Bool) throws(PlatformError) -> Route {
        guard let route = Route(path: request.path) else {
            throw .notFound("No resource at \(request.path).")
        }

        let allowed: [String]
        switch route {
        case .jobs: allowed = ["GET", "POST"]
        case .job: allowed = removalSupported ? ["GET", "DELETE"] : ["GET"]
        case .sandbox: allowed = ["GET"]
        }

        guard allowed.contains(request.method) else {
            let unsupportedRemoval = request.method == "DELETE" && route != .jobs && !removalSupported
            throw .methodNotAllowed(
                allowed: allowed,
                detail: unsupportedRemoval ? "Removing a system job is not supported on this deployment." : nil)
        }

        return route
    }

    // MARK: Sandboxes

    func sandbox(named name: String) -> SimulatedSandbox? {
        options.sandboxes[name].map { SimulatedSandbox(name: name, id: $0) }
    }

    func sandbox(id: String) -> SimulatedSandbox? {
        options.sandboxes.first { $0.value == id }.map { SimulatedSandbox(name: $0.key, id: $0.value) }
    }

    /// The Sandbox Management API's answer; the `id` is left out for user tokens, as the published schema says.
    func lookUpSandbox(named name: String, for caller: Caller) throws(PlatformError) -> HTTPResponse {
        guard let sandbox = sandbox(named: name) else {
            throw .notFound("Sandbox \(name) not found.")
        }

        let isProduction = sandbox.name == "prod"
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("name", sandbox.name)
        if caller.tokenKind == .service {
            writer.field("id", sandbox.id)
        }
        writer.field("title", isProduction ? "Production" : sandbox.name)
        writer.field("state", "active")
        writer.field("type", isProduction ? "production" : "development")
        writer.field("region", "VA6")
        writer.key("isDefault")
        writer.bool(isProduction)
        writer.field("eTag", 2)
        writer.field("createdDate", "2019-09-04 04:57:24")
        writer.field("lastModifiedDate", "2019-09-04 04:57:24")
        writer.field("createdBy", "{USER_ID}")
        writer.field("modifiedBy", "{USER_ID}")
        writer.endObject()
        return .json(200, writer.bytes)
    }

    // MARK: Creating jobs

    /// The documented create body; other keys are ignored, as the platform ignores them.
    private struct CreateBody: Decodable {
        var dataSetId: String?
        var datasetId: String?
        var batchId: String?
    }

    /// Checks the media type and reads the target from the body.
    ///
    /// Only the documented spellings are accepted: `{"dataSetId": D}` for a dataset, `{"datasetId": D, "batchId": B}`
    /// or `{"batchId": B}` for a batch. `{"datasetId": D}` alone, or both spellings at once, is an invalid payload,
    /// so a gateway that sends anything else is caught by its tests.
    func deleteTarget(of request: HTTPRequest) throws(PlatformError) -> DeleteTarget {
        guard let contentType = request.headers["Content-Type"],
            contentType.split(separator: ";", omittingEmptySubsequences: false)[0].trimmingSpaces
                .equalsIgnoringASCIICase("application/json")
        else {
            throw .unsupportedMediaType
        }

        guard let body = try? JSONDecoder().decode(CreateBody.self, from: Data(request.body)) else {
            throw .invalidPayload
        }

        switch (body.dataSetId, body.datasetId, body.batchId) {
        case (let datasetId?, nil, nil) where !datasetId.isEmpty:
            return .dataset(datasetId)
        case (nil, let datasetId, let batchId?) where !batchId.isEmpty && datasetId?.isEmpty != true:
            return .batch(datasetId: datasetId, batchId: batchId)
        default:
            throw .invalidPayload
        }
    }

    /// Refuses a batch the simulated platform does not know: ids starting with `missing` stand for one.
    func checkBatchExists(_ target: DeleteTarget) throws(PlatformError) {
        guard case .batch(let datasetId, let batchId) = target, batchId.hasPrefix("missing") else { return }
        throw .batchNotFound(datasetId ?? batchId)
    }

    /// Stores a new job unless one for the same target is still new or running in that sandbox.
    func createJob(_ target: DeleteTarget, for caller: Caller, in sandbox: SimulatedSandbox) throws(PlatformError)
        -> SimulatedJob
    {
        let now = self.now
        let scope = JobStore.Scope(orgId: caller.orgId, sandboxId: sandbox.id)
        let job = SimulatedJob(
            id: UUID().uuidString.lowercased(), orgId: caller.orgId, sandbox: sandbox, target: target, createdAt: now)

        let created = state.withLock { state in
            let pending = state.store.jobs(in: scope).contains { earlier in
                earlier.target.duplicates(target) && progress(of: earlier, at: now).phase != .finished
            }
            if pending {
                return false
            }
            state.store.insert(job)
            return true
        }

        guard created else { throw .duplicate(target) }
        return job
    }

    // MARK: Reading and removing jobs

    func progress(of job: SimulatedJob, at now: Double) -> JobProgress {
        job.progress(at: now, runningAfter: options.runningAfter, finishedAfter: options.finishedAfter)
    }

    func job(id: String, for caller: Caller, in sandbox: SimulatedSandbox) throws(PlatformError) -> SimulatedJob {
        let scope = JobStore.Scope(orgId: caller.orgId, sandboxId: sandbox.id)
        guard let job = state.withLock({ $0.store.job(id: id, in: scope) }) else {
            throw .notFound("System job \(id) not found.")
        }
        return job
    }

    func removeJob(id: String, for caller: Caller, in sandbox: SimulatedSandbox) throws(PlatformError) {
        let scope = JobStore.Scope(orgId: caller.orgId, sandboxId: sandbox.id)
        guard state.withLock({ $0.store.remove(id: id, in: scope) }) else {
            throw .notFound("System job \(id) not found.")
        }
    }

    /// The caller's jobs in that sandbox, newest first.
    func jobs(for caller: Caller, in sandbox: SimulatedSandbox) -> [SimulatedJob] {
        let scope = JobStore.Scope(orgId: caller.orgId, sandboxId: sandbox.id)
        return state.withLock { $0.store.jobs(in: scope) }
    }

    // MARK: Seeding

    /// Stores one finished dataset delete and one finished batch delete, so a first list is not empty.
    func seed(orgId: String, sandboxName: String, batchId: String) throws(UnknownSandbox) -> [String] {
        guard let sandbox = sandbox(named: sandboxName) else { throw UnknownSandbox(name: sandboxName) }

        let finishedBefore = now - max(options.finishedAfter, options.runningAfter)
        let jobs = [
            SimulatedJob(
                id: UUID().uuidString.lowercased(), orgId: orgId, sandbox: sandbox,
                target: .dataset("5c802d3cd83fc114b741c4b5"), createdAt: finishedBefore - 120),
            SimulatedJob(
                id: UUID().uuidString.lowercased(), orgId: orgId, sandbox: sandbox,
                target: .batch(datasetId: "66a92c5910df2d1767de13f3", batchId: batchId),
                createdAt: finishedBefore - 60),
        ]

        state.withLock { state in
            for job in jobs {
                state.store.insert(job)
            }
        }
        return jobs.map(\.id)
    }
}

/// A list query's integer parameter, checked as both clouds check `limit`, `start` and `page`.
struct QueryInteger {
    var name: String
    var range: ClosedRange<Int>

    /// The value, nil when absent, or a description of what is wrong with it.
    func read(from request: HTTPRequest) -> Result<Int?, QueryProblem> {
        guard let text = request.queryValue(name) else { return .success(nil) }
        guard let value = Int(text), range.contains(value) else {
            let upper = range.upperBound == Int.max ? "" : " to \(range.upperBound)"
            return .failure(
                QueryProblem(
                    message: "Invalid value '\(text)' for query parameter '\(name)': expected an integer from "
                        + "\(range.lowerBound)\(upper)."))
        }
        return .success(value)
    }
}

/// Why a list query was refused; each cloud wraps the message in its own error shape.
struct QueryProblem: Error, Sendable {
    var message: String
}

extension Array {
    /// The elements from `offset` on, at most `limit` of them; empty past the end, even for huge offsets.
    func page(offset: Int, limit: Int) -> ArraySlice<Element> {
        guard offset < count else { return [] }
        let (end, overflow) = offset.addingReportingOverflow(limit)
        return self[offset..<(overflow ? count : Swift.min(end, count))]
    }
}
