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
                guard GatewayLimits.isWellFormedId(value) else {
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
    /// A job's place in the gateway's order: its sort time, and its id, which breaks ties.
    struct Position: Equatable {
        var time: String
        var id: String
    }

    var limit: Int
    var fingerprint: UInt32
    /// For walks ordered by update time: the latest update time seen when the walk began, and the jobs that had
    /// it then. Jobs keep being updated while they run, so a job updated later would otherwise move past the
    /// cursor again and again; with whole-second times "later" may still read as the same second.
    var asOf: String?
    var asOfIdHashes: [UInt32] = []
    var after: Position?

    init(
        limit: Int,
        fingerprint: UInt32,
        asOf: String? = nil,
        asOfIdHashes: [UInt32] = [],
        after: Position? = nil
    ) {
        self.limit = limit
        self.fingerprint = fingerprint
        self.asOf = asOf
        self.asOfIdHashes = asOfIdHashes
        self.after = after
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
            // The id goes last and may contain anything, '|' included: decoding splits off six fields only.
            let fields = [
                "s1", String(cursor.limit), String(cursor.fingerprint, radix: 16), cursor.asOf ?? "",
                cursor.asOfIdHashes.map(ListCursor.hex).joined(), cursor.after?.time ?? "", cursor.after?.id ?? "",
            ]
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
        let fields = text.split(separator: "|", maxSplits: 6, omittingEmptySubsequences: false)
        guard fields.count == 7, fields[0] == "s1", let limit = Int(fields[1]),
            GatewayLimits.pageSizes.contains(limit), let fingerprint = UInt32(fields[2], radix: 16)
        else { return nil }
        var cursor = ScanCursor(limit: limit, fingerprint: fingerprint)
        if !fields[3].isEmpty {
            cursor.asOf = String(fields[3])
            if !fields[4].isEmpty {
                guard let hashes = ListCursor.hashes(fields[4]) else { return nil }
                cursor.asOfIdHashes = hashes
            }
        }
        if !fields[5].isEmpty {
            guard !fields[6].isEmpty else { return nil }
            cursor.after = ScanCursor.Position(time: String(fields[5]), id: String(fields[6]))
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
            if cursor.asOf == nil {
                let latest = read.values.map { query.sortKey($0) }.max() ?? ""
                cursor.asOf = latest
                cursor.asOfIdHashes = Array(
                    read.values.filter { query.sortKey($0) == latest }.map { ListCursor.Boundary.hash($0.id) }
                        .prefix(GatewayLimits.boundaryIds))
            }
            let asOf = cursor.asOf ?? ""
            let before = matching.count
            matching.removeAll { job in
                let time = query.sortKey(job)
                return time > asOf || (time == asOf && !cursor.asOfIdHashes.contains(ListCursor.Boundary.hash(job.id)))
            }
            complete = complete && matching.count == before
        }

        let ahead = matching.filter { isAhead($0, of: cursor, in: query) }
        let jobs = Array(ahead.prefix(cursor.limit))
        guard ahead.count > jobs.count, let last = jobs.last else {
            return (jobs, nil, matching.count, complete)
        }

        var next = cursor
        next.after = ScanCursor.Position(time: query.sortKey(last), id: last.id)
        return (jobs, next, matching.count, complete)
    }

    /// After the cursor's position in the gateway's order: further along in time, or at the same time with a
    /// later id (ties are ordered by id), so the position is exact however many jobs share a time.
    private static func isAhead(_ job: SystemJob, of cursor: ScanCursor, in query: JobQuery) -> Bool {
        guard let after = cursor.after else { return true }
        let time = query.sortKey(job)
        if time == after.time {
            return job.id > after.id
        }
        return query.ascending ? time > after.time : time < after.time
    }
}
