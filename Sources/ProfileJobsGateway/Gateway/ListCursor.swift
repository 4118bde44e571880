import FoundationEssentials

/// Where a walk through the job list stands, opaque to callers (base64url) so its encoding can change.
///
/// Both clouds page by offset, and offsets shift when jobs are created during a walk. So besides the upstream
/// offset the cursor keeps the last job handed out (its creation time and the ids handed out at that time) and the
/// order the upstream lists in: the next page skips what was already handed out, whatever moved.
struct ListCursor: Equatable {
    /// Newest first (`descending`) or oldest first, as the upstream was seen to list.
    enum Order: String {
        case descending = "d"
        case ascending = "a"
    }

    /// The last job handed out: its creation time and the jobs handed out with that same time.
    ///
    /// Azure's times have whole seconds, so hundreds of jobs can share one; keeping a 32-bit hash per job instead of
    /// its id keeps the cursor short enough for a URL.
    struct Boundary: Equatable {
        var time: String
        var idHashes: [UInt32]

        init(time: String, ids: [String]) {
            self.time = time
            self.idHashes = ids.map(Self.hash)
        }

        init(time: String, idHashes: [UInt32]) {
            self.time = time
            self.idHashes = idHashes
        }

        func contains(_ id: String) -> Bool {
            idHashes.contains(Self.hash(id))
        }

        /// Whether a job at `time` with `id` comes after this boundary in a walk going the given way: not handed
        /// out yet.
        func admits(time: String, id: String, ascending: Bool) -> Bool {
            if time == self.time {
                return !contains(id)
            }
            return ascending ? time > self.time : time < self.time
        }

        /// The boundary after handing out `page` (whose ordering times `time(_:)` gives): its last job's time and
        /// every job handed out at that time, this page's and, when the time is the same, the earlier ones.
        static func after(
            _ page: [SystemJob],
            previous: Boundary?,
            time: (SystemJob) -> String
        ) -> Boundary? {
            guard let last = page.last else { return previous }
            let lastTime = time(last)
            var hashes = page.filter { time($0) == lastTime }.map { hash($0.id) }
            if let previous, previous.time == lastTime {
                hashes = previous.idHashes + hashes
            }
            // TODO: past `boundaryIds` jobs in one second the oldest hashes are dropped; if offsets also shift during
            // such a walk, a job could be handed out twice.
            return Boundary(time: lastTime, idHashes: Array(hashes.suffix(GatewayLimits.boundaryIds)))
        }

        /// FNV-1a: stable across processes and releases, unlike Swift's seeded `Hasher`.
        static func hash(_ id: String) -> UInt32 {
            var value: UInt32 = 2_166_136_261
            for byte in id.utf8 {
                value = (value ^ UInt32(byte)) &* 16_777_619
            }
            return value
        }
    }

    var offset: Int
    var limit: Int
    var order: Order = .descending
    var boundary: Boundary?

    init(offset: Int, limit: Int, order: Order = .descending, boundary: Boundary? = nil) {
        self.offset = offset
        self.limit = limit
        self.order = order
        self.boundary = boundary
    }

    var encoded: String {
        var fields = ["v1", String(offset), String(limit), order.rawValue]
        if let boundary {
            fields.append(boundary.time)
            fields.append(boundary.idHashes.map { Self.hex($0) }.joined())
        }
        return Self.base64URL(fields.joined(separator: "|"))
    }

    static func base64URL(_ text: String) -> String {
        let base64 = Data(text.utf8).base64EncodedString()
        return String(base64.compactMap { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 == "=" ? nil : $0 })
    }

    static func fromBase64URL(_ encoded: String) -> String? {
        guard encoded.count <= 8192 else { return nil }
        var base64 = String(encoded.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Eight hex digits per hash, as cursors write them.
    static func hashes(_ text: Substring) -> [UInt32]? {
        let digits = Array(text.utf8)
        guard !digits.isEmpty, digits.count % 8 == 0, digits.count / 8 <= GatewayLimits.boundaryIds else {
            return nil
        }
        var hashes: [UInt32] = []
        for start in stride(from: 0, to: digits.count, by: 8) {
            guard let value = UInt32(String(decoding: digits[start..<start + 8], as: UTF8.self), radix: 16) else {
                return nil
            }
            hashes.append(value)
        }
        return hashes
    }

    /// Nil for anything this gateway did not hand out.
    init?(encoded: String) {
        guard let text = Self.fromBase64URL(encoded) else { return nil }
        let fields = text.split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count == 4 || fields.count == 6, fields[0] == "v1", let offset = Int(fields[1]),
            let limit = Int(fields[2]), let order = Order(rawValue: String(fields[3])), offset >= 0,
            offset <= 1_000_000, GatewayLimits.pageSizes.contains(limit)
        else { return nil }
        self.init(offset: offset, limit: limit, order: order)

        if fields.count == 6 {
            guard !fields[4].isEmpty, let hashes = Self.hashes(fields[5]) else { return nil }
            boundary = Boundary(time: String(fields[4]), idHashes: hashes)
        }
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// Whether `job` comes after the boundary in the walk's order: not handed out yet.
    func isAhead(_ job: SystemJob) -> Bool {
        boundary?.admits(time: orderingTime(job.createdAt), id: job.id, ascending: order == .ascending) ?? true
    }
}

/// A run of jobs an upstream returned from some offset on, in its own order.
struct UpstreamWindow {
    var jobs: [SystemJob]
    /// No job follows this window.
    var isLast: Bool
    var total: Int?
    /// The upstream may hold jobs it will not list (the older AWS dialect lists at most 100).
    var truncated = false
}

/// Cuts pages out of an upstream list that only pages by offset: skips what earlier pages handed out, reads
/// further upstream windows until the page is full, and says where the next page starts. Free of I/O, so the
/// rules can be tested on their own.
enum ListPager {
    static func page(
        from cursor: ListCursor,
        fetch: (_ offset: Int, _ limit: Int) async throws(GatewayError) -> UpstreamWindow
    ) async throws(GatewayError) -> (jobs: [SystemJob], next: ListCursor?, total: Int?, complete: Bool) {
        var walk = cursor
        var jobs: [SystemJob] = []
        var total: Int?
        var exhausted = false
        var complete = true

        for _ in 0..<GatewayLimits.upstreamCallsPerPage where jobs.count < walk.limit && !exhausted {
            let window = try await fetch(walk.offset, walk.limit)
            total = window.total ?? total
            complete = complete && !window.truncated
            if walk.boundary == nil, let order = observedOrder(window.jobs) {
                walk.order = order
            }

            var used = 0
            for job in window.jobs where jobs.count < walk.limit {
                used += 1
                if walk.isAhead(job) {
                    jobs.append(job)
                }
            }
            walk.offset += used
            exhausted = window.isLast && used == window.jobs.count || window.jobs.isEmpty
        }

        guard !exhausted, !jobs.isEmpty else {
            return (jobs, exhausted ? nil : walk, total, complete)
        }
        walk.boundary = ListCursor.Boundary.after(jobs, previous: walk.boundary) { orderingTime($0.createdAt) }
        return (jobs, walk, total, complete)
    }

    /// The order of a window whose creation times tell it: newest first unless they rise.
    private static func observedOrder(_ jobs: [SystemJob]) -> ListCursor.Order? {
        let times = jobs.compactMap(\.createdAt).map { orderingTime($0) }
        guard let first = times.first, let last = times.last, first != last else { return nil }
        return first < last ? .ascending : .descending
    }
}

/// A canonical time (RFC 3339, UTC, `Z`) as text that sorts and compares like the instant it names: the fraction
/// padded to nine digits, so `…:50Z`, `…:50.0Z` and `…:50.000000Z` are equal and all come before `…:50.1Z`.
/// A missing time is the empty string, which sorts first.
func orderingTime(_ time: String?) -> String {
    guard let time, time.hasSuffix("Z") else { return time ?? "" }
    let body = time.dropLast()
    guard let dot = body.firstIndex(of: ".") else {
        return body + ".000000000Z"
    }
    let fraction = body[body.index(after: dot)...]
    guard fraction.count < 9 else { return time }
    return body + String(repeating: "0", count: 9 - fraction.count) + "Z"
}
