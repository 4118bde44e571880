import FoundationEssentials
import Synchronization

/// The unified system-jobs API: routes each call to the organization's cloud, speaks that cloud's dialect upstream,
/// and answers in the canonical schema.
public final class Gateway: HTTPHandler {
    /// What new calls are served under, swapped whole by a reload.
    private struct Live {
        var configuration: GatewayConfiguration
        /// The longest drain any configuration applied so far needs: calls started under an earlier one may still
        /// be waiting for its longer timeouts.
        var drainGrace: Duration
    }

    private let live: Mutex<Live>
    /// Every upstream call, sandbox lookups included, passes its breaker, in-flight cap and retry rule.
    public let upstream: UpstreamClient
    let logger: Logger
    public let sandboxes: SandboxResolver
    /// Every deletion passes it before it is forwarded.
    public let audit: AuditTrail
    public let metrics: GatewayMetrics
    /// Set when the gateway has been told to stop: `/readyz` turns away new traffic before the listener closes.
    private let stopping = Atomic(false)

    public init(
        configuration: GatewayConfiguration,
        transport: any UpstreamTransport,
        audit: AuditTrail,
        metrics: GatewayMetrics,
        logger: Logger
    ) {
        self.live = Mutex(Live(configuration: configuration, drainGrace: GatewayServer.drainGrace(configuration)))
        self.audit = audit
        self.metrics = metrics
        self.logger = logger
        let upstream = UpstreamClient(
            transport: transport, policy: configuration.upstreamPolicy, metrics: metrics, logger: logger)
        for route in configuration.organizations.values {
            _ = upstream.upstreamGuard(for: route.baseURL)
        }
        self.upstream = upstream
        self.sandboxes = SandboxResolver(
            client: upstream,
            onCache: { hit in hit ? metrics.sandboxCacheHit() : metrics.sandboxCacheMiss() })
    }

    /// Marks the instance not ready, so load balancers stop sending calls while those in flight finish.
    public func beginShutdown() {
        stopping.store(true, ordering: .relaxed)
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Inside a call, the configuration it started under; elsewhere, the one new calls are served under.
    public var configuration: GatewayConfiguration {
        CallContext.current?.configuration ?? live.withLock { $0.configuration }
    }

    /// How long a stop lets calls in flight finish: enough for the longest timeouts of any configuration applied
    /// since the start.
    public var drainGrace: Duration {
        live.withLock { $0.drainGrace }
    }

    /// Serves new calls under `file`'s configuration, except the settings only a restart can change, which keep
    /// their running values (`ConfigurationReload.needsRestart` names them). Calls in flight finish under the
    /// configuration they started with; sandbox ids cached for an organization whose route changed are not used again.
    @discardableResult
    public func apply(_ file: GatewayConfiguration) -> ConfigurationReload {
        let reload = live.withLock { live in
            let reload = ConfigurationReload(running: live.configuration, file: file)
            live.configuration = reload.applied
            live.drainGrace = max(live.drainGrace, GatewayServer.drainGrace(reload.applied))
            return reload
        }
        // New upstreams show in the metrics from now on, as those configured at start do.
        for route in reload.applied.organizations.values {
            _ = upstream.upstreamGuard(for: route.baseURL)
        }
        return reload
    }

    /// Kept to the awaits and what lives across them: everything an async function holds, even between its awaits,
    /// is in the task's memory for the whole call, so the work before and after is done in plain functions.
    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let context = start(request)
        // One task-local for the call: each one costs every call in flight a slab of its task's memory.
        let answer: Result<HTTPResponse, GatewayError> = await CallContext.$current.withValue(context) {
            do throws(GatewayError) {
                return .success(try await route(request, requestId: context.requestId))
            } catch {
                return .failure(error)
            }
        }
        let (response, failure) = finish(answer, of: request, context: context)
        if context.deletion != nil {
            await recordOutcome(context, status: response.status, failure: failure)
        }
        return response
    }

    /// Counts the call in and sets up its context, under the configuration it starts with.
    @inline(never)
    private func start(_ request: HTTPRequest) -> CallContext {
        metrics.requestStarted()
        let configuration = live.withLock { $0.configuration }
        let context = CallContext(
            requestId: Self.requestId(from: request.headers), trace: TraceContext(request.headers),
            deletion: DeletionAttempt(request), configuration: configuration)
        if let orgId = request.headers["x-gw-ims-org-id"], let route = configuration.organizations[orgId] {
            context.update { ($0.orgId, $0.cloud) = (route.orgId, route.cloud) }
        }
        return context
    }

    /// The answer to send, a failure made a problem; with the failure, for the audit trail.
    @inline(never)
    private func finish(
        _ answer: Result<HTTPResponse, GatewayError>, of request: HTTPRequest, context: CallContext
    ) -> (HTTPResponse, GatewayError?) {
        var response: HTTPResponse
        var failure: GatewayError?
        switch answer {
        case .success(let answered):
            response = answered
        case .failure(let error):
            failure = error
            let call: CallKind =
                if context.deletion != nil {
                    .deletion
                } else if request.method == "GET" || request.method == "HEAD" {
                    Self.routeTemplate(request.path).hasSuffix("/{id}") ? .lookup : .list
                } else {
                    .other
                }
            response = Self.problemResponse(error, requestId: context.requestId, call: call)
        }
        response.headers.set("x-request-id", context.requestId)
        response.record = context
        return (response, failure)
    }

    /// The access log and the request metrics: one line per answered request, with the status really sent (the
    /// server's own 413 and 503 included); never a header value other than the organization and the request id.
    public func log(_ exchange: HTTPExchange) {
        let context = exchange.response.record as? CallContext
        let facts = context?.snapshot
        let route = Self.routeTemplate(exchange.path)
        let cloud = facts?.cloud?.rawValue ?? ""
        if context == nil && exchange.reachedHandler {
            // Cut off at shutdown: `handle` counted the request in and will still write a deletion's outcome.
            logger.warning(
                "request interrupted by shutdown",
                [
                    ("http.route", .string(route)),
                    ("request.id", .string(exchange.response.headers["x-request-id"] ?? "")),
                ])
        } else if context == nil {
            // The server answered by itself (413, or 503 while stopping), so `handle` never counted the request in,
            // and a deletion it refused still needs its record.
            metrics.requestStarted()
            recordServerRefusal(exchange)
        }
        metrics.requestFinished(
            route: route, method: exchange.method, status: exchange.response.status, cloud: cloud,
            seconds: exchange.seconds)

        logger.info(
            "request",
            [
                ("http.method", .string(String(exchange.method.prefix(16)))), ("http.route", .string(route)),
                ("http.status", .int(exchange.response.status)),
                ("duration.seconds", .double(exchange.seconds)),
                ("upstream.seconds", .double(facts?.upstreamSeconds ?? 0)),
                ("bytes.in", .int(exchange.requestBytes)), ("bytes.out", .int(exchange.response.body.count)),
                ("cloud", .string(cloud)),
                ("org", .string(String((exchange.requestHeaders["x-gw-ims-org-id"] ?? "").prefix(256)))),
                ("request.id", .string(exchange.response.headers["x-request-id"] ?? "")),
                ("trace.id", .string(context?.trace.traceId ?? "")),
            ])
    }

    /// The route a path belongs to, for logs and metric labels: never the raw path, which callers choose.
    static func routeTemplate(_ path: String) -> String {
        for collection in [collection, azureCollection] {
            if path == collection { return collection }
            if path.hasPrefix(collection + "/") { return collection + "/{id}" }
        }
        switch path {
        case "/v1/audit", "/metrics", "/healthz", "/readyz": return path
        default: return "other"
        }
    }

    /// The answer for any failure, in the one problem format.
    public static func problemResponse(
        _ error: GatewayError,
        requestId: String,
        call: CallKind = .other
    ) -> HTTPResponse {
        let problem = error.problem(for: call)
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("type", problem.type)
        writer.field("title", problem.title)
        writer.field("status", problem.status)
        writer.field("detail", problem.detail)
        writer.field("requestId", requestId)
        if let upstream = problem.upstream {
            writer.key("upstream")
            writer.beginObject()
            writer.field("status", upstream.status)
            writer.field("code", upstream.code)
            writer.field("message", upstream.message)
            writer.field("requestId", upstream.requestId)
            writer.field("type", upstream.type)
            writer.endObject()
        }
        writer.endObject()

        var response = HTTPResponse.json(problem.status, writer.bytes, contentType: "application/problem+json")
        for (name, value) in problem.headers {
            response.headers.add(name, value)
        }
        return response
    }

    // MARK: Routing

    private static let collection = "/v1/system/jobs"

    /// The canonical surface: reads the caller's HTTP request, runs the operation, writes the canonical answer.
    private func route(_ request: HTTPRequest, requestId: String) async throws(GatewayError) -> HTTPResponse {
        // Asked first by path: calling it for every job call would give each a slab of task memory for its values.
        if Self.isServiceRoute(request.path) {
            return try await serviceRoute(request)
        }
        if Self.isAzureSurface(request.path) {
            return try await routeAzureSurface(request, requestId: requestId)
        }
        if request.path == Self.collection {
            return try await routeCollection(request, requestId: requestId)
        }

        guard request.path.hasPrefix(Self.collection + "/") else {
            throw .routeNotFound(path: String(request.path.prefix(200)))
        }
        let id = String(request.path.dropFirst(Self.collection.count + 1))
        switch request.method {
        case "GET", "HEAD":  // HEAD gets the GET answer; the HTTP server leaves the body out.
            return .json(200, CanonicalJSON.job(try await job(id, request, requestId: requestId)))
        case "DELETE":
            try await removeJob(id, request, requestId: requestId)
            return HTTPResponse(status: 204)
        default:
            throw .methodNotAllowed(method: request.method, allowed: ["GET", "HEAD", "DELETE"])
        }
    }

    /// The collection itself: a list or a create. A function of its own, so that a lookup, waiting on its upstream,
    /// does not hold the list's and the create's values in its task memory.
    private func routeCollection(_ request: HTTPRequest, requestId: String) async throws(GatewayError) -> HTTPResponse {
        switch request.method {
        case "GET", "HEAD":  // HEAD gets the GET answer; the HTTP server leaves the body out.
            let query = try JobQuery.parse(request)
            let position = try Self.listPosition(request, query: query)
            let page = try await listJobs(request, from: position, query: query, requestId: requestId)
            return .json(
                200,
                CanonicalJSON.list(
                    page.jobs, limit: position.limit, next: page.next?.encoded, total: page.total,
                    complete: page.complete))

        case "POST":
            let job = try await createJob(try Self.readDeleteRequest(request), request, requestId: requestId)
            var answer = HTTPResponse.json(201, CanonicalJSON.job(job))
            answer.headers.add("Location", Self.collection + "/" + job.id)
            return answer

        default:
            throw .methodNotAllowed(method: request.method, allowed: ["GET", "HEAD", "POST"])
        }
    }

    // MARK: Operations, in canonical terms whatever surface the caller used

    /// One page of the organization's jobs, newest first, from an offset.
    func listJobs(
        _ request: HTTPRequest,
        at position: ListCursor,
        requestId: String
    ) async throws(GatewayError) -> (jobs: [SystemJob], next: ListPosition?, total: Int?, complete: Bool) {
        try await listJobs(request, from: .walk(position), query: JobQuery(), requestId: requestId)
    }

    /// One page of the organization's jobs in the query's order and filtered by it.
    func listJobs(
        _ request: HTTPRequest,
        from position: ListPosition,
        query: JobQuery,
        requestId: String
    ) async throws(GatewayError) -> (jobs: [SystemJob], next: ListPosition?, total: Int?, complete: Bool) {
        let call = try await prepareCall(request, requestId: requestId)
        let fetch = { (offset: Int, limit: Int) async throws(GatewayError) -> UpstreamWindow in
            switch call.route.cloud {
            case .azure: try await self.azureWindow(call, offset: offset, limit: limit)
            case .aws: try await self.awsWindow(call, offset: offset, limit: limit)
            }
        }

        switch position {
        case .walk(let cursor):
            let page = try await ListPager.page(from: cursor, fetch: fetch)
            return (page.jobs.map { call.complete($0) }, page.next.map(ListPosition.init), page.total, page.complete)

        case .scan(let cursor):
            let scan = try await ListScan.page(from: cursor, query: query, fetch: fetch)
            return (scan.jobs.map { call.complete($0) }, scan.next.map(ListPosition.init), scan.total, scan.complete)
        }
    }

    /// Creates the delete request on the organization's cloud.
    func createJob(
        _ deleteRequest: DeleteRequest,
        _ request: HTTPRequest,
        requestId: String
    ) async throws(GatewayError) -> SystemJob {
        CallContext.current?.update { facts in
            switch deleteRequest {
            case .dataset(let datasetId): facts.datasetId = datasetId
            case .batch(let datasetId, let batchId): (facts.datasetId, facts.batchId) = (datasetId, batchId)
            }
        }
        let call = try await prepareCall(request, requestId: requestId)
        if case .batch(nil, _) = deleteRequest, call.route.cloud == .aws {
            throw .batchNeedsDataset(orgId: call.route.orgId)
        }

        let body = call.route.cloud.dialect.writeCreateBody(deleteRequest)
        let job = call.complete(try await send(call, method: "POST", path: "", body: body, read: readJob(call)))
        CallContext.current?.update { $0.jobId = job.id }
        return job
    }

    func job(_ id: String, _ request: HTTPRequest, requestId: String) async throws(GatewayError) -> SystemJob {
        try Self.checkId(id, field: "job id")
        let call = try await prepareCall(request, requestId: requestId)

        return call.complete(try await send(call, method: "GET", path: "/" + id, read: readJob(call)))
    }

    /// Removes a job on Azure; AWS cannot, and is refused here without an upstream call.
    func removeJob(_ id: String, _ request: HTTPRequest, requestId: String) async throws(GatewayError) {
        try Self.checkId(id, field: "job id")
        CallContext.current?.update { $0.jobId = id }
        let organization = try Self.organization(request, in: configuration)
        CallContext.current?.update { ($0.orgId, $0.cloud) = (organization.orgId, organization.cloud) }
        if organization.cloud == .aws {
            // Nothing is sent, but the trail still says which sandbox the refused removal was for.
            let givenId = request.headers["x-sandbox-id"]
            let name = request.headers["x-sandbox-name"] ?? (givenId == nil ? organization.defaultSandbox : nil)
            let sandbox = SandboxRef(name: name, id: givenId ?? name.flatMap { organization.sandboxes[$0] })
            CallContext.current?.update { $0.sandbox = sandbox }
            // The removal's own path is where the job is looked up, on whichever surface was called.
            throw .removalNotSupported(orgId: organization.orgId, jobId: id, lookupPath: request.path)
        }
        let call = try await prepareCall(request, requestId: requestId)

        // Azure answers a removal 200 with an empty body. A load balancer's page or unreadable text in its place is
        // not that answer, and the job may well still be there.
        try await send(call, method: "DELETE", path: "/" + id) { body throws(MalformedUpstreamBody) in
            let readable =
                switch UpstreamJSON.opening(of: body) {
                case .empty: true
                case .object, .array: JSONValue.parse(body) != nil
                case .other: false
                }
            guard readable else {
                throw MalformedUpstreamBody(
                    reason: "the removal was answered with a body that is neither empty nor JSON")
            }
        }
    }

    // MARK: Lists

    /// Azure pages by offset natively; its opaque `next` token only says whether more jobs follow.
    private func azureWindow(_ call: UpstreamCall, offset: Int, limit: Int) async throws(GatewayError) -> UpstreamWindow
    {
        let page = try await send(call, method: "GET", path: "?start=\(offset)&limit=\(limit)", read: readList(call))
        let isLast = (page.next ?? "").isEmpty || page.jobs.count < limit
        return UpstreamWindow(jobs: page.jobs, isLast: isLast, total: page.total)
    }

    /// AWS answers either a bare array (no paging, order undocumented) or numbered pages of `limit` jobs. The
    /// gateway sorts the array itself, newest first, and in numbered pages trusts `totalCount` rather than `next`,
    /// which the platform sets even on the last page.
    private func awsWindow(_ call: UpstreamCall, offset: Int, limit: Int) async throws(GatewayError) -> UpstreamWindow {
        let pageNumber = offset / limit
        let skip = offset - pageNumber * limit
        let page = try await send(
            call, method: "GET", path: "?start=\(pageNumber)&limit=\(limit)", read: readList(call))

        switch page.shape {
        case .awsArray:
            let sorted = page.jobs.sorted(by: SystemJob.newestFirst)
            let window = Array(sorted.dropFirst(offset).prefix(limit))
            return UpstreamWindow(
                jobs: window, isLast: offset + window.count >= sorted.count, total: sorted.count,
                truncated: sorted.count >= GatewayLimits.awsArrayCap)

        case .awsPaged, .azurePaged:
            if let start = page.start, start != pageNumber {
                throw .upstreamMalformed(
                    cloud: call.route.cloud, reason: "asked for list page \(pageNumber), the answer is page \(start)")
            }
            let end = pageNumber * limit + page.jobs.count
            let isLast = page.total.map { end >= $0 } ?? (page.jobs.count < limit)
            return UpstreamWindow(jobs: Array(page.jobs.dropFirst(skip)), isLast: isLast, total: page.total)
        }
    }

    /// Where the page starts: the first page of the query, or the caller's cursor, which must belong to it.
    private static func listPosition(_ request: HTTPRequest, query: JobQuery) throws(GatewayError) -> ListPosition {
        var limit = GatewayLimits.defaultPageSize
        if let text = request.queryValue("limit") {
            guard let value = Int(text), GatewayLimits.pageSizes.contains(value) else {
                throw .invalidQuery(parameter: "limit", reason: "must be a whole number from 1 to 100")
            }
            limit = value
        }

        guard let text = request.queryValue("cursor") else {
            return query.isPlainWalk
                ? .walk(ListCursor(offset: 0, limit: limit))
                : .scan(ScanCursor(limit: limit, fingerprint: query.fingerprint))
        }
        let position = ListPosition(encoded: text)
        switch position {
        case .walk? where query.isPlainWalk:
            return position!
        case .scan(let cursor)? where cursor.fingerprint == query.fingerprint:
            return position!
        case nil:
            throw .invalidQuery(
                parameter: "cursor", reason: "is not a cursor this gateway handed out; use page.next from a list answer"
            )
        default:
            throw .invalidQuery(
                parameter: "cursor",
                reason: "belongs to a list with other sort or filters; repeat the query that gave it, with the cursor")
        }
    }

    // MARK: Reading the caller

    /// Accepts a caller's well-formed request id so logs on both sides match; otherwise makes one.
    static func requestId(from headers: HTTPHeaders) -> String {
        if let given = headers["x-request-id"], !given.isEmpty, given.utf8.count <= 128,
            given.utf8.allSatisfy({ GatewayLimits.isIdByte($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: ":") })
        {
            return given
        }
        return randomUUID()
    }

    /// A random (version 4) UUID in lower case, from two draws of the system generator: Foundation's `UUID` opens
    /// and reads a device file for each one, on every call that comes without an id.
    static func randomUUID() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() & ~0xF000 | 0x4000
        let low = generator.next() & ~(0xC << 60) | (0x8 << 60)
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 36) { text in
            var written = 0
            for (word, nibbles) in [(high, 0..<16), (low, 16..<32)] {
                for nibble in nibbles {
                    if nibble == 8 || nibble == 12 || nibble == 16 || nibble == 20 {
                        text[written] = UInt8(ascii: "-")
                        written += 1
                    }
                    let shift = UInt64(60 - 4 * (nibble % 16))
                    text[written] = digits.utf8Start[Int(word >> shift & 0xF)]
                    written += 1
                }
            }
            return written
        }
    }

    @inline(never)
    static func checkId(_ value: String, field: String) throws(GatewayError) {
        guard GatewayLimits.isWellFormedId(value) else {
            throw .invalidId(field: field, value: value)
        }
    }

    private static func organization(
        _ request: HTTPRequest,
        in configuration: GatewayConfiguration
    ) throws(GatewayError) -> OrganizationRoute {
        for name in ["Authorization", "x-api-key", "x-gw-ims-org-id"] where (request.headers[name] ?? "").isEmpty {
            throw .missingHeader(name)
        }
        // The value is never echoed: it may be a credential.
        for (name, limit) in GatewayLimits.forwardedHeaderLimits {
            if let value = request.headers[name], !GatewayLimits.isForwardableHeaderValue(value, limit: limit) {
                throw .invalidHeader(
                    name: name, reason: "must be at most \(limit) bytes of visible ASCII characters, spaces or tabs")
            }
        }
        let orgId = request.headers["x-gw-ims-org-id"] ?? ""
        guard let route = configuration.organizations[orgId] else {
            throw .unknownOrganization(String(orgId.prefix(200)))
        }
        return route
    }

    /// Reads `{"datasetId"}`, `{"dataSetId"}`, `{"datasetId", "batchId"}` or `{"batchId"}`, and nothing else:
    /// a deletion must never be guessed at.
    static func readDeleteRequest(_ request: HTTPRequest) throws(GatewayError) -> DeleteRequest {
        let contentType = request.headers["Content-Type"]
        let mediaType = contentType?.split(separator: ";").first.map { String($0.filter { $0 != " " && $0 != "\t" }) }
        guard let mediaType, mediaType.lowercased() == "application/json" else {
            throw .unsupportedMediaType(contentType)
        }
        guard !request.body.isEmpty else {
            throw .invalidBody("The body is empty")
        }
        guard let document = JSONValue.parse(request.body) else {
            throw .invalidBody("The body is not valid JSON")
        }
        guard case .object(let fields) = document else {
            throw .invalidBody("The body must be a JSON object, found \(document.kind)")
        }
        // The decoder also takes a comma before the closing brace, which the key scan, following RFC 8259, does not.
        guard let keys = JSONValue.topLevelKeys(request.body) else {
            throw .invalidBody("The body is not valid JSON")
        }
        // The decoder keeps one of two equal keys silently; which dataset to delete must not be a guess.
        var seen = Set<String>()
        if let repeated = keys.first(where: { !seen.insert($0).inserted }) {
            throw .invalidBody("Field '\(repeated.prefix(64))' is given more than once; give it once")
        }

        var strings: [String: String] = [:]
        for key in fields.keys.sorted() {
            guard ["datasetId", "dataSetId", "batchId"].contains(key) else {
                throw .invalidBody("Unknown field '\(key.prefix(64))'")
            }
            guard case .string(let value) = fields[key] else {
                throw .invalidBody("Field '\(key)' must be a string, found \(fields[key]?.kind ?? "nothing")")
            }
            try checkId(value, field: key)
            strings[key] = value
        }

        if let lower = strings["datasetId"], let upper = strings["dataSetId"], lower != upper {
            throw .invalidBody("'datasetId' and 'dataSetId' name different datasets")
        }
        let datasetId = strings["datasetId"] ?? strings["dataSetId"]
        switch (datasetId, strings["batchId"]) {
        case (let dataset?, nil): return .dataset(datasetId: dataset)
        case (let dataset, let batch?): return .batch(datasetId: dataset, batchId: batch)
        case (nil, nil): throw .invalidBody("Name a datasetId, a datasetId and a batchId, or (on Azure) a batchId")
        }
    }

    // MARK: Upstream calls

    /// One caller's call, resolved to its organization, cloud and sandbox.
    private struct UpstreamCall {
        var route: OrganizationRoute
        var sandbox: SandboxRef
        var headers: HTTPHeaders

        /// Fills in what the upstream leaves out but the call itself established (the sandbox, on Azure).
        @inline(never)
        func complete(_ job: SystemJob) -> SystemJob {
            var job = job
            job.sandbox.name = job.sandbox.name ?? sandbox.name
            job.sandbox.id = job.sandbox.id ?? sandbox.id
            return job
        }
    }

    private func prepareCall(_ request: HTTPRequest, requestId: String) async throws(GatewayError) -> UpstreamCall {
        let route = try Self.organization(request, in: configuration)
        CallContext.current?.update { ($0.orgId, $0.cloud) = (route.orgId, route.cloud) }

        var headers = HTTPHeaders()
        for name in ["Authorization", "x-api-key", "x-gw-ims-org-id"] {
            if let value = request.headers[name] {
                headers.add(name, value)
            }
        }
        headers.add("x-request-id", requestId)
        if let trace = CallContext.current?.trace {
            headers.add("traceparent", trace.traceparent)
            if let state = trace.tracestate {
                headers.add("tracestate", state)
            }
        }

        let sandbox = try await resolveSandbox(request, route: route, caller: headers)
        CallContext.current?.update { $0.sandbox = sandbox }
        switch route.cloud {
        case .azure: headers.add("x-sandbox-name", sandbox.name ?? route.defaultSandbox)
        case .aws: headers.add("x-sandbox-id", sandbox.id ?? "")
        }
        headers.add("Accept", "application/json")
        return UpstreamCall(route: route, sandbox: sandbox, headers: headers)
    }

    /// Azure wants the sandbox's name, AWS its id: whichever the caller sent, the other is found from the map or,
    /// for AWS, the Sandbox Management API.
    private func resolveSandbox(
        _ request: HTTPRequest,
        route: OrganizationRoute,
        caller: HTTPHeaders
    ) async throws(GatewayError) -> SandboxRef {
        // A sandbox header sent empty is refused, not taken for "no sandbox named": a careless client must not
        // land in the default sandbox by accident.
        let givenName = request.headers["x-sandbox-name"]
        let givenId = request.headers["x-sandbox-id"]
        if let givenName { try Self.checkSandbox(givenName, header: "x-sandbox-name") }
        if let givenId { try Self.checkSandbox(givenId, header: "x-sandbox-id") }

        if let givenName, let givenId, route.sandboxes[givenName] != givenId {
            throw .invalidHeader(
                name: "x-sandbox-id",
                reason: "and x-sandbox-name were both sent, and the gateway cannot tell that they name the same "
                    + "sandbox: send only one of them")
        }

        if let givenId {
            let knownName = route.sandboxes.first { $0.value == givenId }?.key
            if route.cloud == .azure, givenName == nil, knownName == nil {
                throw .invalidHeader(
                    name: "x-sandbox-id",
                    reason: "'\(givenId)' is not a sandbox the gateway knows for this Azure organization, and Azure "
                        + "needs the sandbox's name: send x-sandbox-name instead")
            }
            return SandboxRef(name: givenName ?? knownName, id: givenId)
        }

        let name = givenName ?? route.defaultSandbox
        switch route.cloud {
        case .azure:
            return SandboxRef(name: name, id: route.sandboxes[name])
        case .aws:
            let id = try await sandboxes.resolve(
                name, for: route, caller: SandboxResolver.Caller(headers: caller), configuration: configuration)
            return SandboxRef(name: name, id: id)
        }
    }

    private static func checkSandbox(_ value: String, header: String) throws(GatewayError) {
        guard GatewayLimits.isWellFormedId(value) else {
            throw .invalidHeader(name: header, reason: "must be 1 to 128 letters, digits, '-' or '_'")
        }
    }

    /// Sends to the organization's upstream; any non-2xx answer becomes the matching problem.
    ///
    /// Every call other than a GET is a deletion: its intent is recorded once the upstream's breaker and in-flight
    /// cap have let it through and before it is sent, so a call refused there is recorded as refused, never as
    /// forwarded. Only GETs are retried (`UpstreamClient.mayRetry`).
    /// Sends the call and reads a 2xx answer with `read`; an answer `read` cannot take is 502 `upstream-malformed`
    /// and counts as the platform failing.
    private func send<Answer>(
        _ call: UpstreamCall,
        method: String,
        path: String,
        body: [UInt8]? = nil,
        read: (_ body: [UInt8]) throws(MalformedUpstreamBody) -> Answer
    ) async throws(GatewayError) -> Answer {
        let request = upstreamRequest(call, method: method, path: path, body: body)
        let cloud = call.route.cloud
        let response: UpstreamResponse
        var answer: Answer?
        do {
            response = try await upstream.send(
                request, cloud: cloud,
                beforeSending: { () async throws(GatewayError) in
                    if method != "GET" {
                        try await self.recordIntent()
                    }
                },
                observe: { attempt in self.observe(attempt, cloud: cloud) },
                readAnswer: { body in
                    do throws(MalformedUpstreamBody) {
                        answer = try read(body)
                        return nil
                    } catch {
                        return error.reason
                    }
                })
        } catch {
            countRefusal(error, cloud: cloud)
            throw error
        }
        return try Self.answer(answer, of: response, cloud: cloud)
    }

    /// The request `send` makes of a call. This and the other plain functions `send` calls keep their values out of
    /// its task memory, which every call in flight holds while the upstream answers.
    @inline(never)
    private func upstreamRequest(_ call: UpstreamCall, method: String, path: String, body: [UInt8]?) -> UpstreamRequest
    {
        var headers = call.headers
        if body != nil {
            headers.add("Content-Type", "application/json")
        }
        let timeouts = configuration.timeouts(for: call.route)
        return UpstreamRequest(
            method: method, url: call.route.baseURL + "/data/core/ups/system/jobs" + path, headers: headers, body: body,
            connectTimeout: timeouts.connect, totalTimeout: timeouts.total)
    }

    /// Failed attempts were counted as they happened; a refusal before sending has no attempt, and is counted here.
    @inline(never)
    private func countRefusal(_ error: GatewayError, cloud: Cloud) {
        if case .upstreamCircuitOpen = error {
            metrics.upstreamError(cloud: cloud.rawValue, kind: "circuit_open")
        } else if case .upstreamOverloaded = error {
            metrics.upstreamError(cloud: cloud.rawValue, kind: "overloaded")
        }
    }

    /// The read answer of a 2xx; any other status is the matching problem.
    @inline(never)
    private static func answer<Answer>(
        _ answer: Answer?, of response: UpstreamResponse, cloud: Cloud
    ) throws(GatewayError) -> Answer {
        guard (200..<300).contains(response.status) else {
            throw GatewayError(upstreamStatus: response, cloud: cloud)
        }
        guard let answer else {
            throw .upstreamMalformed(cloud: cloud, reason: "the answer was not read")
        }
        return answer
    }

    /// One attempt's duration, failure and answer, for the metrics and the call's facts.
    private func observe(_ attempt: UpstreamClient.Attempt, cloud: Cloud) {
        metrics.upstreamCall(cloud: cloud.rawValue, seconds: attempt.seconds)
        CallContext.current?.update { facts in
            facts.upstreamSeconds += attempt.seconds
            if let response = attempt.answered {
                facts.upstreamStatus = response.status
                facts.upstreamRequestId = response.headers["x-request-id"].map { String($0.prefix(128)) }
            }
        }

        let kind: String? =
            switch attempt.result {
            case .failure(let failure): GatewayError(failure, cloud: cloud).upstreamErrorKind
            case .success(let response) where (400..<500).contains(response.status): "status_4xx"
            case .success(let response) where !(200..<300).contains(response.status): "status_5xx"
            case .success: nil
            }
        if let kind {
            metrics.upstreamError(cloud: cloud.rawValue, kind: kind)
        }
    }

    private func readJob(_ call: UpstreamCall) -> (_ body: [UInt8]) throws(MalformedUpstreamBody) -> SystemJob {
        call.route.cloud.dialect.readJob
    }

    private func readList(_ call: UpstreamCall) -> (_ body: [UInt8]) throws(MalformedUpstreamBody) -> UpstreamJobPage {
        call.route.cloud.dialect.readList
    }
}

extension SystemJob {
    /// Newest first by creation time, ties broken by id, so that repeated calls slice the same order.
    static func newestFirst(_ a: SystemJob, _ b: SystemJob) -> Bool {
        let left = orderingTime(a.createdAt)
        let right = orderingTime(b.createdAt)
        return left != right ? left > right : a.id < b.id
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
