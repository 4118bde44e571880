import Dispatch
import FoundationEssentials

/// The durable record of every deletion: an intent synced to the file before forwarding, an outcome after.
///
/// The file is the trail of record; standard output and syslog get copies on threads of their own and never hold
/// up, or fail, a deletion.
public final class AuditTrail: Sendable {
    /// How long `close` lets the shippers deliver what is still queued.
    static let closeGrace = 2.0

    /// The unknown-outcome records written at start, one for each intent the last run left unanswered.
    public let recoveredOrphans: [AuditRecord]

    private let file: AuditFile
    private let shippers: [AuditShipper]
    /// Runs searches one at a time, off Swift's pool: each reads the whole file.
    private let searchQueue = DispatchQueue(label: "audit-trail-search")
    private let onWrite: @Sendable (_ sink: String, _ succeeded: Bool) -> Void

    /// Opens (creating with mode 0640 and parent directory if needed) the file for appending, closes every intent
    /// the last run left without an outcome with an `unknown` one, and starts the shippers.
    ///
    /// - Parameter onWrite: told about every delivery, by sink (`file`, `stdout`, `syslog`), for metrics.
    public init(
        configuration: AuditConfiguration,
        logger: Logger,
        onWrite: @escaping @Sendable (_ sink: String, _ succeeded: Bool) -> Void = { _, _ in }
    ) throws(AuditWriteError) {
        if let syslog = configuration.syslog {
            try AuditTrail.validate(syslog)
        }

        let file = try AuditFile(path: configuration.filePath)
        var scan = OrphanScan()
        file.forEachLine { scan.add(line: $0) }
        // A line cut short by a crash or a full disk may have been an outcome: each orphan's warning says how many
        // there are, so the operator knows its outcome may have been written and lost.
        let (orphans, unreadable) = scan.finish()

        // An intent without an outcome means the gateway stopped between forwarding and answering.
        var recovered: [AuditRecord] = []
        for intent in orphans {
            var outcome = intent
            outcome.event = .outcome
            outcome.outcome = .unknown
            outcome.time = .now
            let line = outcome.json
            // Read back from its line, so the record reported is the one the file holds, to the millisecond.
            outcome = AuditRecord(json: line) ?? outcome
            do {
                try file.appendNow(line + [10])
            } catch {
                onWrite("file", false)
                throw error
            }
            onWrite("file", true)
            var metadata = AuditTrail.orphanMetadata(intent)
            if unreadable > 0 {
                metadata.append(("unreadableLines", .int(unreadable)))
            }
            logger.warning("audit intent without outcome", metadata)
            recovered.append(outcome)
        }

        var shippers: [AuditShipper] = []
        if configuration.standardOutput {
            shippers.append(try AuditShipper(sink: "stdout", onWrite: onWrite) { StandardOutputDestination() })
        }
        if let syslog = configuration.syslog {
            let shipper: AuditShipper
            do {
                shipper = try AuditShipper(sink: "syslog", onWrite: onWrite) {
                    SyslogDestination(configuration: syslog, logger: logger)
                }
            } catch {
                AuditTrail.close(shippers)
                throw error
            }
            shippers.append(shipper)
        }

        self.file = file
        self.shippers = shippers
        self.onWrite = onWrite
        recoveredOrphans = recovered
        for record in recovered {
            shippers.forEach { $0.ship(record) }
        }
    }

    deinit {
        // Without waiting: the shipper threads deliver what they can and end on their own.
        let deadline = DispatchTime.now() + AuditTrail.closeGrace
        shippers.forEach { $0.beginClose(deadline: deadline) }
    }

    /// Appends the record's line with one write(2) and syncs it off Swift's pool; returns once it is on disk.
    ///
    /// Throws when the write or sync fails, and the caller then refuses to forward the deletion. An outcome's copies
    /// for standard output and syslog are queued either way: when the local disk fails, the collector is the one
    /// place that still learns what the gateway did. An intent's copies only once it is durable, since a copy
    /// means "about to be forwarded", and a deletion whose intent failed never is.
    public func write(_ record: AuditRecord) async throws(AuditWriteError) {
        let result: Result<Void, AuditWriteError>
        do {
            try await file.append(record.json + [10])
            result = .success(())
        } catch {
            result = .failure(error)
        }
        let written = (try? result.get()) != nil
        onWrite("file", written)

        if written || record.event == .outcome {
            for shipper in shippers {
                shipper.ship(record)
            }
        }
        try result.get()
    }

    /// Opens the file at the path anew (on SIGHUP, after logrotate moved it away): later records go to a new file.
    @discardableResult
    public func reopen() throws(AuditWriteError) -> Bool {
        try file.reopen()
    }

    /// Whether the trail can take a record now: the file is open and writable (for /readyz).
    public var isWritable: Bool {
        file.isWritable
    }

    /// Records matching every given filter, newest first, at most `limit`.
    ///
    /// A jobId, datasetId or batchId match also brings the other records sharing its `id`, so a create's intent,
    /// written before any job id existed, comes with its outcome. Lines that do not parse are skipped. Searches run
    /// one at a time on a thread of their own and stream the file, so a large trail costs one core and little memory
    /// while deletions and every other call go on.
    public func search(_ query: AuditQuery) async -> [AuditRecord] {
        await withCheckedContinuation { continuation in
            searchQueue.async { continuation.resume(returning: self.searchNow(query)) }
        }
    }

    private func searchNow(_ query: AuditQuery) -> [AuditRecord] {
        guard query.limit > 0 else { return [] }
        var newest = NewestRecords(limit: query.limit)
        // Ids are plain ASCII written unescaped, so a line without them cannot match: most lines are never parsed.
        let needles = [query.jobId, query.datasetId, query.batchId].compactMap { $0.map { Array($0.utf8) } }

        guard !needles.isEmpty else {
            var index = 0
            file.forEachLine { line in
                defer { index += 1 }
                if let record = AuditRecord(json: line), query.matches(record) { newest.add(record, index) }
            }
            return newest.records
        }

        var pairedIds = Set<String>()
        file.forEachLine { line in
            guard needles.allSatisfy({ line.contains(bytes: $0) }), let record = AuditRecord(json: line),
                query.matches(record)
            else { return }
            pairedIds.insert(record.id)
        }
        guard !pairedIds.isEmpty else { return [] }

        let idNeedles = pairedIds.count <= 64 ? pairedIds.map { Array($0.utf8) } : nil
        var index = 0
        file.forEachLine { line in
            defer { index += 1 }
            if let idNeedles, !idNeedles.contains(where: { line.contains(bytes: $0) }) { return }
            if let record = AuditRecord(json: line), pairedIds.contains(record.id) { newest.add(record, index) }
        }
        return newest.records
    }

    /// Stops the shippers after letting them deliver what is queued, for at most about two seconds.
    public func close() {
        AuditTrail.close(shippers)
        file.unlock()
    }

    private static func close(_ shippers: [AuditShipper]) {
        let deadline = DispatchTime.now() + closeGrace
        shippers.forEach { $0.beginClose(deadline: deadline) }
        shippers.forEach { $0.awaitClosed(until: deadline + 0.5) }
    }

    /// A collector's facility and port are checked at start, so a typo fails loudly instead of shipping nowhere.
    private static func validate(_ syslog: SyslogConfiguration) throws(AuditWriteError) {
        guard (0...23).contains(syslog.facility) else {
            throw AuditWriteError(description: "syslog facility \(syslog.facility) is not between 0 and 23")
        }
        guard syslog.port != 0, !syslog.host.isEmpty else {
            throw AuditWriteError(description: "syslog needs a host and a port other than 0")
        }
    }

    /// Every line that parses, in file order.
    static func records(in bytes: [UInt8]) -> [AuditRecord] {
        bytes.split(separator: 10).compactMap { AuditRecord(json: $0) }
    }

    /// Intents whose `id` has no outcome, in file order, each once.
    static func orphans(in records: [AuditRecord]) -> [AuditRecord] {
        var scan = OrphanScan()
        records.forEach { scan.add($0) }
        return scan.finish().orphans
    }

    private static func orphanMetadata(_ intent: AuditRecord) -> [(String, LogValue)] {
        var metadata: [(String, LogValue)] = [
            ("id", .string(intent.id)), ("requestId", .string(intent.requestId)),
            ("action", .string(intent.action.rawValue)),
        ]
        let optional: [(String, String?)] = [
            ("orgId", intent.orgId), ("datasetId", intent.datasetId), ("batchId", intent.batchId),
            ("jobId", intent.jobId),
        ]
        for case (let key, let value?) in optional {
            metadata.append((key, .string(value)))
        }
        metadata.append(("intentTime", .string(AuditRecord.formatTime(intent.time))))
        return metadata
    }
}

extension AuditQuery {
    /// Every given filter holds; the time bounds are inclusive.
    func matches(_ record: AuditRecord) -> Bool {
        let identities: [(String?, String?)] = [
            (datasetId, record.datasetId), (batchId, record.batchId), (jobId, record.jobId), (orgId, record.orgId),
        ]
        for (wanted, actual) in identities where wanted != nil && wanted != actual {
            return false
        }
        if let since, record.time < since { return false }
        if let until, record.time > until { return false }
        return true
    }
}

/// Intents without an outcome, found in one pass over the file: an outcome follows its intent, so only the intents
/// still open are held, however long the file.
///
/// The gateway writes every record as `{"event":"…","id":"…",…}`, so a whole line of that form is paired by its
/// head alone and an intent is parsed only if no outcome ever closes it: a long trail is scanned at about the speed
/// of reading it, and the gateway starts listening sooner.
struct OrphanScan {
    private enum Pending {
        case line([UInt8])
        case record(AuditRecord)
    }

    private var open: [String: (order: Int, intent: Pending)] = [:]
    private var count = 0
    private var unreadableLines = 0

    mutating func add(line: ArraySlice<UInt8>) {
        if let (event, id) = Self.head(of: line) {
            count += 1
            switch event {
            case .outcome: open[id] = nil
            case .intent: if open[id] == nil { open[id] = (count, .line(Array(line))) }
            }
            return
        }
        guard let record = AuditRecord(json: line) else {
            unreadableLines += 1
            return
        }
        add(record)
    }

    mutating func add(_ record: AuditRecord) {
        count += 1
        switch record.event {
        case .outcome: open[record.id] = nil
        case .intent: if open[record.id] == nil { open[record.id] = (count, .record(record)) }
        }
    }

    /// The intents left open, in file order, and the lines that could not be read (an intent left open whose line
    /// does not parse among them).
    func finish() -> (orphans: [AuditRecord], unreadableLines: Int) {
        var unreadable = unreadableLines
        let orphans = open.values.sorted { $0.order < $1.order }.compactMap { entry -> AuditRecord? in
            switch entry.intent {
            case .record(let record): return record
            case .line(let line):
                guard let record = AuditRecord(json: line[...]) else {
                    unreadable += 1
                    return nil
                }
                return record
            }
        }
        return (orphans, unreadable)
    }

    /// The event and id of a whole line the gateway wrote; nil for anything else, which is then parsed in full.
    /// A line cut short ends without its closing brace.
    static func head(of line: ArraySlice<UInt8>) -> (AuditRecord.Event, String)? {
        guard line.last == UInt8(ascii: "}") else { return nil }
        let event: AuditRecord.Event
        var rest: ArraySlice<UInt8>
        if line.starts(with: intentHead) {
            (event, rest) = (.intent, line.dropFirst(intentHead.count))
        } else if line.starts(with: outcomeHead) {
            (event, rest) = (.outcome, line.dropFirst(outcomeHead.count))
        } else {
            return nil
        }
        guard let end = rest.firstIndex(of: UInt8(ascii: "\"")), end > rest.startIndex,
            !rest[..<end].contains(UInt8(ascii: "\\"))
        else { return nil }
        rest = rest[..<end]
        return (event, String(decoding: rest, as: UTF8.self))
    }

    private static let intentHead = Array(#"{"event":"intent","id":""#.utf8)
    private static let outcomeHead = Array(#"{"event":"outcome","id":""#.utf8)
}

/// The `limit` newest records seen, by time and then by place in the file, in bounded memory.
struct NewestRecords {
    let limit: Int
    private var kept: [(record: AuditRecord, index: Int)] = []

    init(limit: Int) {
        self.limit = limit
    }

    mutating func add(_ record: AuditRecord, _ index: Int) {
        kept.append((record, index))
        if kept.count >= 2 * limit + 64 { trim() }
    }

    var records: [AuditRecord] {
        var copy = self
        copy.trim()
        return copy.kept.map(\.record)
    }

    private mutating func trim() {
        kept.sort { $0.record.time != $1.record.time ? $0.record.time > $1.record.time : $0.index > $1.index }
        if kept.count > limit { kept.removeLast(kept.count - limit) }
    }
}

extension ArraySlice<UInt8> {
    /// Whether `needle` occurs in these bytes.
    func contains(bytes needle: [UInt8]) -> Bool {
        guard let first = needle.first, needle.count <= count else { return needle.isEmpty }
        var position = startIndex
        let last = endIndex - needle.count
        while position <= last {
            guard let found = self[position...last].firstIndex(of: first) else { return false }
            if self[found..<(found + needle.count)].elementsEqual(needle) { return true }
            position = found + 1
        }
        return false
    }
}
