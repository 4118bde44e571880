/// What a caller asks of the job list, the same on both clouds: an order and filters.
///
/// Neither platform can filter, and Azure's `sort` only orders within one of its pages, so anything but the
/// plain newest-first walk is done by the gateway over what the upstream returns.
struct JobQuery: Equatable, Sendable {
    enum SortField: String, Sendable {
        case createdAt
        case updatedAt
    }

    var sortField = SortField.createdAt
    var ascending = false
    var statuses: Set<JobStatus> = []
    /// Canonical type names (`DELETE_DATASET`, ...).
    var types: Set<String> = []
    var datasetId: String?
    var batchId: String?

    /// Newest first without filters: the upstream's own offset paging serves it.
    var isPlainWalk: Bool {
        sortField == .createdAt && !ascending && statuses.isEmpty && types.isEmpty && datasetId == nil
            && batchId == nil
    }

    func matches(_ job: SystemJob) -> Bool {
        (statuses.isEmpty || statuses.contains(job.status))
            && (types.isEmpty || types.contains(job.type.canonicalName))
            && (datasetId == nil || job.datasetId == datasetId)
            && (batchId == nil || job.batchId == batchId)
    }

    func sortKey(_ job: SystemJob) -> String {
        switch sortField {
        case .createdAt: orderingTime(job.createdAt)
        case .updatedAt: orderingTime(job.updatedAt)
        }
    }

    /// The list's order: the sort key, ties by id, so every page cuts the same order.
    func precedes(_ a: SystemJob, _ b: SystemJob) -> Bool {
        let left = sortKey(a)
        let right = sortKey(b)
        if left != right {
            return ascending ? left < right : left > right
        }
        return a.id < b.id
    }

    /// Names the query inside a cursor, so a cursor cannot be followed with other filters.
    var fingerprint: UInt32 {
        let parts = [
            sortField.rawValue, ascending ? "asc" : "desc", statuses.map(\.rawValue).sorted().joined(separator: ","),
            types.sorted().joined(separator: ","), datasetId ?? "", batchId ?? "",
        ]
        return ListCursor.Boundary.hash(parts.joined(separator: ";"))
    }

    static let parameters: Set<String> = ["limit", "cursor", "sort", "status", "type", "datasetId", "batchId"]
    static let typeNames: Set<String> = ["DELETE_DATASET", "DELETE_BATCH", "BACKFILL_TTL", "UNKNOWN"]

    /// Reads the list's query string; any unknown or malformed parameter is refused by name, since a mistyped
    /// filter would otherwise silently list everything.
    static func parse(_ request: HTTPRequest) throws(GatewayError) -> JobQuery {
        var query = JobQuery()
        var seen: Set<String> = []
        for (name, value) in request.query {
            guard parameters.contains(name) else {
                throw .invalidQuery(
                    parameter: String(name.prefix(64)),
                    reason: "is not supported; use limit, cursor, sort, status, type, datasetId or batchId")
            }
            if name != "status", name != "type", !seen.insert(name).inserted {
                throw .invalidQuery(parameter: name, reason: "is given more than once")
            }

            switch name {
            case "sort":
                let parts = value.split(separator: ":", omittingEmptySubsequences: false)
                guard parts.count == 2, let field = SortField(rawValue: String(parts[0])),
                    parts[1] == "asc" || parts[1] == "desc"
                else {
                    throw .invalidQuery(
                        parameter: "sort",
                        reason: "must be createdAt:desc, createdAt:asc, updatedAt:desc or updatedAt:asc")
                }
                query.sortField = field
                query.ascending = parts[1] == "asc"

            case "status":
                for word in value.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let status = JobStatus(rawValue: String(word)) else {
                        throw .invalidQuery(
                            parameter: "status",
                            reason: "takes QUEUED, RUNNING, SUCCEEDED, FAILED or UNKNOWN (several: comma-separated)")
                    }
                    query.statuses.insert(status)
                }

            case "type":
                for word in value.split(separator: ",", omittingEmptySubsequences: false) {
                    guard typeNames.contains(String(word)) else {
                        throw .invalidQuery(
                            parameter: "type",
                            reason:
                                "takes DELETE_DATASET, DELETE_BATCH, BACKFILL_TTL or UNKNOWN (several: comma-separated)"
                        )
                    }
                    query.types.insert(String(word))
                }

            case "datasetId", "batchId":
                guard (try? Gateway.checkId(value, field: name)) != nil else {
                    throw .invalidQuery(parameter: name, reason: "must be 1 to 128 letters, digits, '-' or '_'")
                }
                if name == "datasetId" { query.datasetId = value } else { query.batchId = value }

            default:
                break
            }
        }
        return query
    }
}

/// Where a walk over a gateway-ordered list stands: the query it belongs to and the last job handed out.
struct ScanCursor: Equatable {
    var limit: Int
    var fingerprint: UInt32
    /// For walks ordered by update time: the latest update time seen when the walk began. Jobs keep being updated
    /// while they run, so a job updated later would otherwise move past the cursor again and again.
    var asOf: String?
    var boundary: ListCursor.Boundary?

    init(limit: Int, fingerprint: UInt32, asOf: String? = nil, boundary: ListCursor.Boundary? = nil) {
        self.limit = limit
        self.fingerprint = fingerprint
        self.asOf = asOf
        self.boundary = boundary
    }
}

/// A cursor of either kind, as `page.next` carries it.
enum ListPosition: Equatable {
    /// The upstream's own newest-first paging.
    case walk(ListCursor)
    /// A list the gateway read whole, then filtered and ordered.
    case scan(ScanCursor)

    var limit: Int {
        switch self {
        case .walk(let cursor): cursor.limit
        case .scan(let cursor): cursor.limit
        }
    }

    var encoded: String {
        switch self {
        case .walk(let cursor):
            return cursor.encoded
        case .scan(let cursor):
            var fields = ["s1", String(cursor.limit), String(cursor.fingerprint, radix: 16), cursor.asOf ?? ""]
            if let boundary = cursor.boundary {
                fields += [boundary.time, boundary.idHashes.map(ListCursor.hex).joined()]
            }
            return ListCursor.base64URL(fields.joined(separator: "|"))
        }
    }

    init(_ cursor: ListCursor) {
        self = .walk(cursor)
    }

    init(_ cursor: ScanCursor) {
        self = .scan(cursor)
    }

    /// Nil for anything this gateway did not hand out.
    init?(encoded: String) {
        if let walk = ListCursor(encoded: encoded) {
            self = .walk(walk)
            return
        }
        guard let text = ListCursor.fromBase64URL(encoded) else { return nil }
        let fields = text.split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count == 4 || fields.count == 6, fields[0] == "s1", let limit = Int(fields[1]),
            GatewayLimits.pageSizes.contains(limit), let fingerprint = UInt32(fields[2], radix: 16)
        else { return nil }
        var cursor = ScanCursor(
            limit: limit, fingerprint: fingerprint, asOf: fields[3].isEmpty ? nil : String(fields[3]))
        if fields.count == 6 {
            guard let hashes = ListCursor.hashes(fields[5]) else { return nil }
            cursor.boundary = ListCursor.Boundary(time: String(fields[4]), idHashes: hashes)
        }
        self = .scan(cursor)
    }
}

/// Pages of a list the gateway orders and filters itself: it reads the upstream list (up to
/// `scanCalls` windows), keeps the jobs the query matches, orders them, and hands out those after the cursor's
/// last job. Free of I/O, so the rules can be tested on their own.
enum ListScan {
    static func page(
        from cursor: ScanCursor,
        query: JobQuery,
        fetch: (_ offset: Int, _ limit: Int) async throws(GatewayError) -> UpstreamWindow
    ) async throws(GatewayError) -> (jobs: [SystemJob], next: ScanCursor?, total: Int, complete: Bool) {
        var read: [String: SystemJob] = [:]
        var offset = 0
        var complete = false
        for _ in 0..<GatewayLimits.scanCalls {
            let window = try await fetch(offset, GatewayLimits.scanWindow)
            for job in window.jobs {
                read[job.id] = job
            }
            offset += window.jobs.count
            if window.truncated {
                break
            }
            if window.isLast || window.jobs.isEmpty {
                complete = true
                break
            }
        }

        var matching = read.values.filter(query.matches).sorted(by: query.precedes)
        var cursor = cursor
        if query.sortField == .updatedAt {
            let asOf = cursor.asOf ?? read.values.map { query.sortKey($0) }.max() ?? ""
            cursor.asOf = asOf
            let before = matching.count
            matching.removeAll { query.sortKey($0) > asOf }
            complete = complete && matching.count == before
        }

        let ahead = matching.filter { isAhead($0, of: cursor, in: query) }
        let jobs = Array(ahead.prefix(cursor.limit))
        guard ahead.count > jobs.count, !jobs.isEmpty else {
            return (jobs, nil, matching.count, complete)
        }

        var next = cursor
        next.boundary = ListCursor.Boundary.after(jobs, previous: cursor.boundary, time: query.sortKey)
        return (jobs, next, matching.count, complete)
    }

    private static func isAhead(_ job: SystemJob, of cursor: ScanCursor, in query: JobQuery) -> Bool {
        cursor.boundary?.admits(time: query.sortKey(job), id: job.id, ascending: query.ascending) ?? true
    }
}
