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
        let lines = file.contents().split(separator: 10)
        let records = lines.compactMap { AuditRecord(json: $0) }

        // A line cut short by a crash or a full disk may have been an outcome: each orphan's warning says how many
        // there are, so the operator knows its outcome may have been written and lost.
        let unreadable = lines.count - records.count

        // An intent without an outcome means the gateway stopped between forwarding and answering.
        var recovered: [AuditRecord] = []
        for intent in AuditTrail.orphans(in: records) {
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

    /// Opens the file at the path anew (on SIGHUP, after logrotate moved it away): later records go to a new file. When
    /// the path still names the open file, it stays open.
    public func reopen() throws(AuditWriteError) {
        try file.reopen()
    }

    /// Whether the trail can take a record now: the file is open and writable (for /readyz).
    public var isWritable: Bool {
        file.isWritable
    }

    /// Records matching every given filter, newest first, at most `limit`.
    ///
    /// A jobId, datasetId or batchId match also brings the other records sharing its `id`, so a create's intent,
    /// written before any job id existed, comes with its outcome. Lines that do not parse are skipped.
    public func search(_ query: AuditQuery) -> [AuditRecord] {
        guard query.limit > 0 else { return [] }
        let records = AuditTrail.records(in: file.contents())

        var chosen = records.map(query.matches)
        if query.jobId != nil || query.datasetId != nil || query.batchId != nil {
            let pairedIds = Set(records.indices.filter { chosen[$0] }.map { records[$0].id })
            chosen = records.map { pairedIds.contains($0.id) }
        }

        // Later lines were written later, so they come first among records of the same time.
        let newestFirst = records.indices.filter { chosen[$0] }.sorted { left, right in
            records[left].time != records[right].time ? records[left].time > records[right].time : left > right
        }
        return newestFirst.prefix(query.limit).map { records[$0] }
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
        let answered = Set(records.filter { $0.event == .outcome }.map(\.id))
        var seen = Set<String>()
        return records.filter { record in
            record.event == .intent && !answered.contains(record.id) && seen.insert(record.id).inserted
        }
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
