/// The Azure-dialect surface at `/data/core/ups/system/jobs`, for scripts written against Azure, whichever cloud
/// serves the organization.
///
/// It reads the caller's request the Azure way and writes the answer with the Azure writer, but runs the same
/// operations as the canonical API: same headers and credentials, same create bodies, same problem documents.
extension Gateway {
    static let azureCollection = "/data/core/ups/system/jobs"

    /// Whether `path` belongs to this surface.
    static func isAzureSurface(_ path: String) -> Bool {
        path == azureCollection || path.hasPrefix(azureCollection + "/")
    }

    func routeAzureSurface(_ request: HTTPRequest, requestId: String) async throws(GatewayError) -> HTTPResponse {
        if request.path == Self.azureCollection {
            switch request.method {
            case "GET", "HEAD":  // HEAD gets the GET answer; the HTTP server leaves the body out.
                let query = try AzureListQuery(request)
                let position = ListCursor(offset: query.offset, limit: query.limit)
                let page = try await listJobs(request, at: position, requestId: requestId)

                var jobs = page.jobs
                if let sort = query.sort {
                    jobs.sort(by: sort.ordersBefore)
                }
                let end = query.offset + jobs.count
                let more = page.next != nil && (page.total.map { end < $0 } ?? true)
                return .json(
                    200,
                    AzureDialect.writeList(
                        jobs, count: page.total ?? end, next: more ? page.next?.encoded : nil, complete: page.complete))

            case "POST":
                // Azure answers a create with 200 and the job, not 201.
                let job = try await createJob(try Self.readDeleteRequest(request), request, requestId: requestId)
                return .json(200, AzureDialect.writeJob(job))

            default:
                throw .methodNotAllowed(method: request.method, allowed: ["GET", "HEAD", "POST"])
            }
        }

        let id = String(request.path.dropFirst(Self.azureCollection.count + 1))
        switch request.method {
        case "GET", "HEAD":  // HEAD gets the GET answer; the HTTP server leaves the body out.
            return .json(200, AzureDialect.writeJob(try await job(id, request, requestId: requestId)))
        case "DELETE":
            // Azure answers a removal with 200 and an empty body; AWS organizations get the canonical 501 problem.
            try await removeJob(id, request, requestId: requestId)
            return HTTPResponse(status: 200)
        default:
            throw .methodNotAllowed(method: request.method, allowed: ["GET", "HEAD", "DELETE"])
        }
    }
}

/// `GET /data/core/ups/system/jobs?limit=&page=&start=&sort=`, as Azure documents it.
struct AzureListQuery: Equatable {
    /// `field:asc|desc`; Azure documents that it orders the page returned, not across pages.
    struct Sort: Equatable {
        enum Field: String {
            case createEpoch, updateEpoch
        }

        var field: Field
        var ascending: Bool

        /// Orders by the chosen time (a job without one counts as oldest), ties by id.
        func ordersBefore(_ a: SystemJob, _ b: SystemJob) -> Bool {
            let (left, right) =
                switch field {
                case .createEpoch: (orderingTime(a.createdAt), orderingTime(b.createdAt))
                case .updateEpoch: (orderingTime(a.updatedAt), orderingTime(b.updatedAt))
                }
            guard left != right else { return a.id < b.id }
            return ascending ? left < right : left > right
        }
    }

    static let pageSizes = 1...1000
    static let defaultPageSize = 100
    /// As far as the canonical cursor walks.
    static let maxOffset = 1_000_000

    var limit: Int
    var offset: Int
    var sort: Sort?

    init(limit: Int, offset: Int, sort: Sort? = nil) {
        self.limit = limit
        self.offset = offset
        self.sort = sort
    }

    /// `limit` 1 to 1000 (default 100); `start` a 0-based offset, else `page` a 0-based page number; `sort`.
    init(_ request: HTTPRequest) throws(GatewayError) {
        // Which of two values was meant cannot be known; other parameters are ignored, as the platform does.
        var seen: Set<String> = []
        for (name, _) in request.query where Self.parameters.contains(name) && !seen.insert(name).inserted {
            throw .invalidQuery(parameter: name, reason: "is given more than once")
        }
        limit = try Self.integer(request, "limit", in: Self.pageSizes) ?? Self.defaultPageSize

        let start = try Self.integer(request, "start", in: 0...Self.maxOffset)
        let page = try Self.integer(request, "page", in: 0...Self.maxOffset)
        if let start {
            offset = start
        } else if let page {
            guard page <= Self.maxOffset / limit else {
                throw .invalidQuery(
                    parameter: "page", reason: "times limit must be at most \(Self.maxOffset), the deepest list offset")
            }
            offset = page * limit
        } else {
            offset = 0
        }

        sort = try request.queryValue("sort").map { text throws(GatewayError) in
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let field = Sort.Field(rawValue: String(parts[0])),
                ["asc", "desc"].contains(parts[1])
            else {
                throw .invalidQuery(
                    parameter: "sort",
                    reason: "must be createEpoch:asc, createEpoch:desc, updateEpoch:asc or updateEpoch:desc")
            }
            return Sort(field: field, ascending: parts[1] == "asc")
        }
    }

    private static let parameters: Set<String> = ["limit", "start", "page", "sort"]

    private static func integer(
        _ request: HTTPRequest,
        _ name: String,
        in range: ClosedRange<Int>
    ) throws(GatewayError) -> Int? {
        guard let text = request.queryValue(name) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw .invalidQuery(
                parameter: name, reason: "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }
}
