import Foundation
import Glibc
import Testing

@testable import ProfileJobsGateway

/// The local trail: durable lines, recovery of unanswered intents, refusal when the disk cannot take a record,
/// rotation, and the search an operator runs over it.
@Suite struct AuditTrailTests {
    @Test func writtenRecordsAreLinesThatParseBackEqual() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let observer = AuditObserver()
        // A missing parent directory is created with the file.
        let path = scratch.path("var/audit/trail.jsonl")

        let trail = try await observer.open(path)
        let records = AuditSamples.all
        for record in records {
            try await trail.write(record)
        }

        let lines = try scratch.lines(path)
        #expect(lines.count == records.count)
        #expect(lines.map { Array($0.utf8) } == records.map(\.json))
        #expect(lines.compactMap { AuditRecord(json: Array($0.utf8)) } == records)
        #expect(observer.deliveries("file", true) == records.count)
        #expect(observer.deliveries("file", false) == 0)
        #expect(trail.recoveredOrphans.isEmpty)
        #expect(trail.isWritable)

        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 & ~0o640 == 0, "mode \(String(info.st_mode & 0o777, radix: 8))")
        try await observer.close(trail)
    }

    /// A record read back from its line, as search and recovery do, must be written with the same time again.
    @Test func aTimeReadBackFromALineFormatsToTheSameText() throws {
        for step in 0..<2000 {
            let time = Date(timeIntervalSince1970: 1_780_000_000 + Double(step) * 0.0137)
            let text = AuditRecord.formatTime(time)
            let parsed = try #require(AuditRecord.parseTime(text))
            #expect(AuditRecord.formatTime(parsed) == text)
            #expect(abs(parsed.timeIntervalSince(time)) < 0.000_501, "rounded to the nearest millisecond")
        }
        #expect(AuditRecord.formatTime(Date(timeIntervalSince1970: 1_780_000_000.1236)) == "2026-05-28T20:26:40.124Z")
    }

    @Test func searchFiltersByEveryFieldNewestFirst() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let observer = AuditObserver()
        let path = scratch.path("trail.jsonl")
        let trail = try await observer.open(path)
        for record in AuditSamples.all {
            try await trail.write(record)
        }
        // A line that is not a record, as a crash or a hand edit may leave, is skipped.
        try scratch.append("not json\n", to: path)

        func ids(_ query: AuditQuery) async throws -> [String] {
            await trail.search(query).map { "\($0.id)/\($0.event.rawValue)" }
        }

        #expect(
            try await ids(AuditQuery()) == [
                "c/outcome", "c/intent", "b/outcome", "b/intent", "a/outcome", "a/intent",
            ])
        #expect(try await ids(AuditQuery(limit: 2)) == ["c/outcome", "c/intent"])
        #expect(try await ids(AuditQuery(limit: 0)) == [])
        #expect(
            try await ids(AuditQuery(orgId: "org-1@AdobeOrg")) == ["c/outcome", "c/intent", "a/outcome", "a/intent"])
        #expect(try await ids(AuditQuery(orgId: "org-1@AdobeOrg", limit: 1)) == ["c/outcome"])

        // The create's intent has no job id yet; the job id brings it along with its outcome.
        #expect(try await ids(AuditQuery(jobId: "job-a")) == ["a/outcome", "a/intent"])
        #expect(try await ids(AuditQuery(datasetId: "dataset-a")) == ["a/outcome", "a/intent"])
        #expect(try await ids(AuditQuery(batchId: "batch-c")) == ["c/outcome", "c/intent"])
        #expect(try await ids(AuditQuery(jobId: "job-b")) == ["b/outcome", "b/intent"])
        #expect(try await ids(AuditQuery(jobId: "job-b", orgId: "org-1@AdobeOrg")) == [])
        #expect(try await ids(AuditQuery(jobId: "no-such-job")) == [])

        // Both bounds are inclusive.
        let since = try #require(AuditRecord.parseTime(AuditSamples.times[2]))
        let until = try #require(AuditRecord.parseTime(AuditSamples.times[3]))
        #expect(try await ids(AuditQuery(since: since, until: until)) == ["b/outcome", "b/intent"])
        #expect(try await ids(AuditQuery(since: until)) == ["c/outcome", "c/intent", "b/outcome"])
        #expect(try await ids(AuditQuery(until: since)) == ["b/intent", "a/outcome", "a/intent"])
        try await observer.close(trail)
    }

    @Test func anIntentWithoutOutcomeIsClosedAsUnknownOnceAtStart() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.path("trail.jsonl")

        // The gateway stopped after forwarding `orphan`, and a later write was torn by the crash.
        var orphan = AuditSamples.intent("orphan", at: AuditSamples.times[0])
        orphan.datasetId = "dataset-orphan"
        orphan.orgId = "org-1@AdobeOrg"
        let answered = AuditSamples.intent("answered", at: AuditSamples.times[1])
        let answer = AuditSamples.outcome(answered, .succeeded, at: AuditSamples.times[2])
        let torn = #"{"event":"intent","id":"torn","ti"#
        let lines = [orphan, answered, answer].map { String(decoding: $0.json, as: UTF8.self) + "\n" }
        try scratch.append(lines.joined() + torn, to: path)

        let observer = AuditObserver()
        let trail = try await observer.open(path)

        let recovered = try #require(trail.recoveredOrphans.first)
        #expect(trail.recoveredOrphans.count == 1)
        #expect(recovered.event == .outcome)
        #expect(recovered.outcome == .unknown)
        #expect(recovered.id == "orphan")
        #expect(recovered.requestId == orphan.requestId)
        #expect(recovered.datasetId == "dataset-orphan")
        #expect(recovered.action == orphan.action)
        #expect(recovered.time > orphan.time)
        #expect(observer.deliveries("file", true) == 1)

        // The torn line ends where it was cut; the unknown outcome follows on a line of its own.
        let written = try scratch.lines(path)
        #expect(written.count == 5)
        #expect(written[3] == torn)
        #expect(AuditRecord(json: Array(written[4].utf8)) == recovered)

        let warnings = observer.logs().filter { $0["message"] == .string("audit intent without outcome") }
        #expect(warnings.count == 1)
        let warning = try #require(warnings.first)
        #expect(warning["level"] == .string("warning"))
        #expect(warning["id"] == .string("orphan"))
        #expect(warning["requestId"] == .string(orphan.requestId))
        #expect(warning["action"] == .string("create-dataset-delete"))
        #expect(warning["orgId"] == .string("org-1@AdobeOrg"))
        #expect(warning["datasetId"] == .string("dataset-orphan"))
        #expect(warning["intentTime"] == .string(AuditSamples.times[0]))
        // The torn line might have been the orphan's outcome, so the warning says it is there.
        #expect(warning["unreadableLines"] == .number(1))

        // A record written now is a line of its own too.
        let next = AuditSamples.intent("next", at: AuditSamples.times[3])
        try await trail.write(next)
        #expect(try scratch.lines(path).last.map { AuditRecord(json: Array($0.utf8)) } == next)
        try await observer.close(trail)

        let again = AuditObserver()
        let reopened = try await again.open(path)
        #expect(reopened.recoveredOrphans.map(\.id) == ["next"])
        try await again.close(reopened)

        let third = AuditObserver()
        let settled = try await third.open(path)
        #expect(settled.recoveredOrphans.isEmpty)
        #expect(third.logs().isEmpty)
        try await third.close(settled)
    }

    @Test func aWriteTheDiskRefusesThrowsAndIsCounted() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.path("trail.jsonl")
        let observer = AuditObserver()
        let trail = try await observer.open(path)
        try await trail.write(AuditSamples.all[0])

        // /dev/full fails every write with ENOSPC, for root as well.
        #expect(rename(path, path + ".1") == 0)
        #expect(symlink("/dev/full", path) == 0)
        #expect(try await offPool { try trail.reopen() })

        let error = await #expect(throws: AuditWriteError.self) {
            try await trail.write(AuditSamples.all[1])
        }
        #expect(error?.description.contains(path) == true, "\(String(describing: error))")
        #expect(observer.deliveries("file", false) == 1)
        #expect(observer.deliveries("file", true) == 1)
        #expect(try scratch.lines(path + ".1").count == 1)
        try await observer.close(trail)
    }

    @Test func aTrailOpenedOnAFullDeviceRefusesEveryWrite() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.path("trail.jsonl")
        #expect(symlink("/dev/full", path) == 0)

        let observer = AuditObserver()
        let trail = try await observer.open(path)
        #expect(trail.recoveredOrphans.isEmpty)
        await #expect(throws: AuditWriteError.self) {
            try await trail.write(AuditSamples.all[0])
        }
        #expect(observer.deliveries("file", false) == 1)
        try await observer.close(trail)
    }

    @Test func aPathThatCannotBeCreatedIsAnErrorNamingIt() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        // A regular file where the directory should be: no mode bit lets even root create below it.
        try scratch.append("", to: scratch.path("plain"))
        let path = scratch.path("plain/audit/trail.jsonl")

        let observer = AuditObserver()
        let error = await #expect(throws: AuditWriteError.self) {
            _ = try await observer.open(path)
        }
        #expect(error?.description.contains(path) == true, "\(String(describing: error))")
    }

    @Test func aBadSyslogFacilityIsRefusedAtStart() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let syslog = SyslogConfiguration(transport: .udp, host: "127.0.0.1", port: 514, facility: 24)

        let error = await #expect(throws: AuditWriteError.self) {
            _ = try await AuditObserver().open(scratch.path("trail.jsonl"), syslog: syslog)
        }
        #expect(error?.description.contains("24") == true)
    }

    @Test func reopenAfterRotationWritesToANewFileAtThePath() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.path("trail.jsonl")
        let observer = AuditObserver()
        let trail = try await observer.open(path)
        let (first, second, third) = (AuditSamples.all[0], AuditSamples.all[1], AuditSamples.all[2])
        try await trail.write(first)

        // logrotate moves the file; until SIGHUP the gateway keeps writing to the moved file.
        #expect(rename(path, path + ".1") == 0)
        try await trail.write(second)
        #expect(try await offPool { try trail.reopen() })
        try await trail.write(third)
        // A SIGHUP with nothing moved keeps the open file, and with it the lock that a new open would collide with.
        #expect(try await offPool { try trail.reopen() } == false)

        #expect(try scratch.lines(path + ".1") == [first, second].map { String(decoding: $0.json, as: UTF8.self) })
        #expect(try scratch.lines(path) == [String(decoding: third.json, as: UTF8.self)])
        #expect(await trail.search(AuditQuery()) == [third])
        try await observer.close(trail)
    }

    /// SIGHUP also reloads the configuration, so it often comes with no rotation: the open file must simply stay.
    @Test func reopenWithoutRotationKeepsTheOpenFile() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.path("trail.jsonl")
        let observer = AuditObserver()
        let trail = try await observer.open(path)
        let (first, second) = (AuditSamples.all[0], AuditSamples.all[1])
        try await trail.write(first)

        #expect(try await offPool { try trail.reopen() } == false)
        try await trail.write(second)

        #expect(try scratch.lines(path) == [first, second].map { String(decoding: $0.json, as: UTF8.self) })
        #expect(trail.isWritable)
        try await observer.close(trail)
    }

    @Test func isWritableFollowsTheDirectory() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let directory = scratch.path("audit")
        let path = directory + "/trail.jsonl"
        let observer = AuditObserver()
        let trail = try await observer.open(path)
        #expect(trail.isWritable)

        // Gone with its directory: a rotation could not create the file again.
        #expect(unlink(path) == 0)
        #expect(rmdir(directory) == 0)
        #expect(!trail.isWritable)

        #expect(mkdir(directory, 0o750) == 0)
        #expect(trail.isWritable)

        // Something other than a file now stands at the path: the next record could not be written there.
        #expect(mkdir(path, 0o750) == 0)
        #expect(!trail.isWritable)
        #expect(rmdir(path) == 0)
        #expect(trail.isWritable)
        try await observer.close(trail)
    }

    /// At start, whole lines the gateway wrote are paired by their head; anything else is parsed in full.
    @Test func orphansArePairedByTheHeadOfWholeLines() {
        let intent = AuditSamples.intent("x-1", at: AuditSamples.times[0])
        let outcome = AuditSamples.outcome(intent, .succeeded, at: AuditSamples.times[1])
        #expect(OrphanScan.head(of: intent.json[...])?.1 == "x-1")
        #expect(OrphanScan.head(of: outcome.json[...])?.0 == .outcome)
        #expect(OrphanScan.head(of: outcome.json.dropLast(5)) == nil, "a line cut short is not taken by its head")

        // A torn outcome does not close its intent; the warning counts it as unreadable.
        var scan = OrphanScan()
        scan.add(line: intent.json[...])
        scan.add(line: outcome.json.dropLast(5))
        let (orphans, unreadable) = scan.finish()
        #expect(orphans.map(\.id) == ["x-1"])
        #expect(unreadable == 1)
    }

    /// A trail of several megabytes is read in pieces: lines across the pieces' seams are found, the newest come
    /// first however many match, a search by job brings the intent of its deletion, and an intent left open is
    /// found at start.
    @Test func aLargeTrailIsSearchedAndRecoveredPieceByPiece() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.path("trail.jsonl")
        let start = try #require(AuditRecord.parseTime("2026-03-01T10:00:00.000Z"))
        var text = ""
        var records: [AuditRecord] = []
        // Long requester values make long lines, so a few records fill several pieces.
        let padding = String(repeating: "p", count: 240)
        for index in 0..<1200 {
            var intent = AuditSamples.intent("deletion-\(index)", at: "2026-03-01T10:00:00.000Z")
            intent.requester = AuditRecord.Requester(apiKey: padding + "\(index)", subject: padding, clientId: padding)
            intent.time = start.addingTimeInterval(Double(index))
            intent.datasetId = "dataset\(index % 7)"
            var outcome = AuditSamples.outcome(intent, .succeeded, at: "2026-03-01T10:00:00.000Z")
            outcome.time = intent.time.addingTimeInterval(0.5)
            outcome.jobId = "job-\(index)"
            records += [intent, outcome]
            text += String(decoding: intent.json, as: UTF8.self) + "\n"
            // The last deletion's outcome is missing, as after a crash.
            if index < 1199 { text += String(decoding: outcome.json, as: UTF8.self) + "\n" }
        }
        try scratch.append(text, to: path)
        #expect(text.utf8.count > 2 << 20, "several read pieces")

        let observer = AuditObserver()
        let trail = try await observer.open(path)
        #expect(trail.recoveredOrphans.map(\.id) == ["deletion-1199"])

        let newest = await trail.search(AuditQuery(limit: 1000))
        #expect(newest.count == 1000)
        #expect(newest.first?.outcome == .unknown, "the outcome written at start is the newest record")
        #expect(newest.dropFirst().map(\.time) == newest.dropFirst().map(\.time).sorted(by: >))

        for index in [0, 417, 903, 1198] {
            let found = await trail.search(AuditQuery(jobId: "job-\(index)"))
            #expect(found.map(\.id) == ["deletion-\(index)", "deletion-\(index)"])
            #expect(found.map(\.event) == [.outcome, .intent])
        }
        let byDataset = await trail.search(AuditQuery(datasetId: "dataset3", limit: 200))
        #expect(byDataset.count == 200)
        #expect(byDataset.allSatisfy { $0.datasetId == "dataset3" })
        try await observer.close(trail)
    }
}

/// The queue between the trail and a collector: bounded, oldest dropped first, drained or given up at close.
@Suite struct AuditShipperTests {
    /// A collector that is never there.
    final class AbsentDestination: AuditDestination {
        func deliver(_ record: AuditRecord) -> AuditDelivery { .retryLater }
    }

    /// A TCP socket on loopback, bound to `port` (0: any) before it connects to `target`, if any.
    static func loopbackSocket(bindingPort port: UInt16, connectingTo target: UInt16?) throws -> Int32 {
        func address(_ port: UInt16) -> sockaddr_in {
            sockaddr_in(
                sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian,
                sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var local = address(port)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(bound == 0, "bind: \(String(cString: strerror(errno)))")
        if let target {
            var remote = address(target)
            let connected = withUnsafePointer(to: &remote) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            try #require(connected == 0, "connect: \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// A connection to a local port nobody listens on can end up connected to itself; the syslog sink must not take
    /// it for a collector. Binding the port first and connecting to it makes that happen every time.
    @Test func aSocketConnectedToItselfIsNoCollector() throws {
        let probe = try Self.loopbackSocket(bindingPort: 0, connectingTo: nil)
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(probe, $0, &length) }
        }
        let port = UInt16(bigEndian: bound.sin_port)
        close(probe)

        let selfConnected = try Self.loopbackSocket(bindingPort: port, connectingTo: port)
        defer { close(selfConnected) }
        #expect(isConnectedToItself(selfConnected))

        let listener = try Self.loopbackSocket(bindingPort: 0, connectingTo: nil)
        defer { close(listener) }
        #expect(listen(listener, 1) == 0)
        var listening = sockaddr_in()
        length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &listening) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let client = try Self.loopbackSocket(bindingPort: 0, connectingTo: UInt16(bigEndian: listening.sin_port))
        defer { close(client) }
        #expect(!isConnectedToItself(client))
    }

    @Test func anOverflowDropsTheOldestAndCloseGivesUpTheRest() async throws {
        let observer = AuditObserver()
        let shipper = try AuditShipper(sink: "test", capacity: 2, onWrite: observer.onWrite) { AbsentDestination() }

        for record in AuditSamples.all.prefix(5) {
            shipper.ship(record)
        }
        #expect(observer.deliveries("test", false) == 3)

        try await offPool {
            shipper.beginClose(deadline: .now())
            shipper.awaitClosed(until: .now() + 30)
        }
        #expect(observer.deliveries("test", false) == 5)

        shipper.ship(AuditSamples.all[5])
        #expect(observer.deliveries("test", false) == 6)
        #expect(observer.deliveries("test", true) == 0)
    }
}

/// Records the trail's log lines and deliveries, from whichever thread reports them.
final class AuditObserver: Sendable {
    private let lines = Locked<[[UInt8]]>([])
    private let writes = Locked<[(sink: String, succeeded: Bool)]>([])

    var logger: Logger {
        Logger(label: "audit-test") { line in self.lines.withLock { $0.append(line) } }
    }

    var onWrite: @Sendable (String, Bool) -> Void {
        { sink, succeeded in self.writes.withLock { $0.append((sink, succeeded)) } }
    }

    /// Opens a trail off the cooperative pool: opening reads, writes and syncs the file.
    func open(_ path: String, syslog: SyslogConfiguration? = nil) async throws -> AuditTrail {
        let configuration = AuditConfiguration(filePath: path, syslog: syslog)
        return try await offPool {
            try AuditTrail(configuration: configuration, logger: self.logger, onWrite: self.onWrite)
        }
    }

    /// Closes off the pool: closing waits for the shippers.
    func close(_ trail: AuditTrail) async throws {
        try await offPool { trail.close() }
    }

    func deliveries(_ sink: String, _ succeeded: Bool) -> Int {
        writes.withLock { $0.filter { $0.sink == sink && $0.succeeded == succeeded }.count }
    }

    /// Each log line as its JSON object.
    func logs() -> [[String: JSONValue]] {
        lines.withLock { $0 }.compactMap { line in
            if case .object(let fields)? = JSONValue.parse(line) { return fields }
            return nil
        }
    }
}

/// A directory of its own for one test.
struct Scratch {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString)")

    init() throws {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String {
        url.appendingPathComponent(name).path
    }

    func append(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o640)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        #expect(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count)
    }

    /// The file's lines without their newlines.
    func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}

/// Three deletions, each an intent and an outcome, at times that survive the trail's millisecond precision.
enum AuditSamples {
    static let times = [
        "2026-03-01T10:00:00.250Z", "2026-03-01T10:00:01.500Z", "2026-03-01T10:00:02.750Z",
        "2026-03-01T10:00:03.000Z", "2026-03-01T10:00:04.125Z", "2026-03-01T10:00:05.625Z",
    ]

    static func intent(_ id: String, at time: String, action: AuditRecord.Action = .createDatasetDelete) -> AuditRecord
    {
        var record = AuditRecord(
            event: .intent, id: id, time: AuditRecord.parseTime(time)!, requestId: "request-\(id)", action: action,
            surface: "canonical", requester: AuditRecord.Requester(apiKey: "client-\(id)", subject: "user-\(id)"))
        record.sandboxName = "prod"
        record.cloud = "azure"
        record.clientAddress = "192.0.2.7"
        return record
    }

    static func outcome(_ intent: AuditRecord, _ outcome: AuditRecord.Outcome, at time: String) -> AuditRecord {
        var record = intent
        record.event = .outcome
        record.time = AuditRecord.parseTime(time)!
        record.outcome = outcome
        record.status = outcome == .succeeded ? 200 : 502
        record.durationSeconds = 0.125
        return record
    }

    /// a: a dataset deletion that succeeded; b: a job removal the platform answered badly; c: a batch deletion.
    static let all: [AuditRecord] = {
        var a = intent("a", at: times[0])
        a.orgId = "org-1@AdobeOrg"
        a.datasetId = "dataset-a"
        var aOutcome = outcome(a, .succeeded, at: times[1])
        aOutcome.jobId = "job-a"
        aOutcome.upstreamStatus = 200
        aOutcome.upstreamRequestId = "upstream-a"

        var b = intent("b", at: times[2], action: .removeJob)
        b.orgId = "org-2@AdobeOrg"
        b.jobId = "job-b"
        b.traceId = "trace-b"
        var bOutcome = outcome(b, .failed, at: times[3])
        bOutcome.problemType = "https://example.com/problems/upstream-unavailable"

        var c = intent("c", at: times[4], action: .createBatchDelete)
        c.orgId = "org-1@AdobeOrg"
        c.batchId = "batch-c"
        let cOutcome = outcome(c, .rejected, at: times[5])
        return [a, aOutcome, b, bOutcome, c, cOutcome]
    }()
}

/// Copies of the trail at a real rsyslog: the RFC 5424 fields it parses, over TCP and UDP, and a TCP collector
/// that is not there yet or goes away for a while.
@Suite struct AuditSyslogTests {
    @Test func theMessageIsRFC5424WithTheRecordAsMessage() {
        let intent = AuditSamples.all[0]
        let message = SyslogMessage.format(
            intent, facility: 16, hostname: "gw-1", appName: "profile-jobs-gateway", processId: 42)
        let header = "<133>1 2026-03-01T10:00:00.250Z gw-1 profile-jobs-gateway 42 intent - "
        #expect(message == Array(header.utf8) + intent.json)

        let severities = AuditSamples.all.map(SyslogMessage.severity)
        #expect(severities == [5, 5, 5, 4, 5, 5])
        var unknown = AuditSamples.all[1]
        unknown.outcome = .unknown
        #expect(SyslogMessage.severity(of: unknown) == 4)

        #expect(SyslogMessage.headerField("my gateway\u{7f}é", maxLength: 48) == "my_gateway__")
        #expect(SyslogMessage.headerField("", maxLength: 48) == "-")
        #expect(SyslogMessage.headerField(String(repeating: "a", count: 60), maxLength: 48).count == 48)
    }

    /// A copy of an intent says the deletion is about to be forwarded; one whose intent is not durable never is,
    /// so only its outcome is shipped.
    @Test func anIntentTheDiskRefusedIsNotShippedButItsOutcomeIs() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let receiver = try await SyslogReceiver.started(in: scratch.url.appendingPathComponent("rsyslog"))
        defer { receiver.terminate() }
        let path = scratch.path("trail.jsonl")
        #expect(symlink("/dev/full", path) == 0)

        let observer = AuditObserver()
        let trail = try await observer.open(
            path, syslog: SyslogConfiguration(transport: .tcp, host: "127.0.0.1", port: receiver.tcpPort))
        let intent = AuditSamples.intent("not-durable", at: AuditSamples.times[0])
        await #expect(throws: AuditWriteError.self) { try await trail.write(intent) }
        let outcome = AuditSamples.outcome(intent, .refused, at: AuditSamples.times[1])
        await #expect(throws: AuditWriteError.self) { try await trail.write(outcome) }
        try await observer.close(trail)

        _ = try await receiver.waitForMessages([String(decoding: outcome.json, as: UTF8.self)])
        #expect(try await receiver.messages().allSatisfy { !$0.text.contains(#""event":"intent""#) })
        try await receiver.stop()
    }

    @Test func recordsReachRsyslogOverTCP() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let receiver = try await SyslogReceiver.started(in: scratch.url.appendingPathComponent("rsyslog"))
        defer { receiver.terminate() }
        // A name, not a literal: every address it resolves to is tried until one connects.
        let syslog = SyslogConfiguration(transport: .tcp, host: "localhost", port: receiver.tcpPort)

        try await Self.expectDelivery(of: AuditSamples.all, through: syslog, to: receiver, in: scratch)
        try await receiver.stop()
    }

    @Test func recordsReachRsyslogOverUDP() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let receiver = try await SyslogReceiver.started(in: scratch.url.appendingPathComponent("rsyslog"))
        defer { receiver.terminate() }
        try await receiver.waitUntilUDPIsReady()
        let syslog = SyslogConfiguration(
            transport: .udp, host: "127.0.0.1", port: receiver.udpPort, facility: 23, appName: "audit-udp")

        try await Self.expectDelivery(of: AuditSamples.all, through: syslog, to: receiver, in: scratch)
        try await receiver.stop()
    }

    @Test func tcpRecordsWaitForTheCollectorAndFollowItsRestart() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let receiver = try SyslogReceiver(directory: scratch.url.appendingPathComponent("rsyslog"))
        defer { receiver.terminate() }
        // Held until the collector starts, so that nothing else answers on its port meanwhile.
        let absent = try receiver.holdTCPPort()
        let syslog = SyslogConfiguration(transport: .tcp, host: "127.0.0.1", port: receiver.tcpPort)
        let observer = AuditObserver()
        let trail = try await observer.open(scratch.path("trail.jsonl"), syslog: syslog)
        let records = AuditSamples.all

        // The collector is not up yet: the file takes the records at once, the copies wait.
        for record in records.prefix(3) {
            try await trail.write(record)
        }
        try await poll(for: 30, "the shipper finds the collector missing") {
            observer.logs().contains { $0["message"] == .string("syslog collector unreachable") }
        }
        #expect(observer.deliveries("syslog", true) == 0)
        absent.close()
        try await receiver.start()
        let early = try await receiver.waitForMessages(records.prefix(3).map(Self.text))
        #expect(early.map(\.messageId) == ["intent", "outcome", "intent"])

        // It goes away and comes back on the same port; what was written meanwhile arrives after.
        try await receiver.stop()
        let down = try receiver.holdTCPPort()
        for record in records.dropFirst(3) {
            try await trail.write(record)
        }
        down.close()
        try await receiver.start()
        let late = try await receiver.waitForMessages(records.dropFirst(3).map(Self.text))
        #expect(late.map(\.severity) == [4, 5, 5])

        try await observer.close(trail)
        #expect(observer.deliveries("syslog", true) == records.count)
        #expect(observer.deliveries("syslog", false) == 0)
        #expect(observer.deliveries("file", true) == records.count)
        try await receiver.stop()
    }

    /// Writes `records` through a trail shipping to `syslog` and checks what rsyslog parsed out of each message.
    static func expectDelivery(
        of records: [AuditRecord],
        through syslog: SyslogConfiguration,
        to receiver: SyslogReceiver,
        in scratch: Scratch
    ) async throws {
        let observer = AuditObserver()
        let trail = try await observer.open(scratch.path("trail.jsonl"), syslog: syslog)
        for record in records {
            try await trail.write(record)
        }

        let messages = try await receiver.waitForMessages(records.map(text))
        for (record, message) in zip(records, messages) {
            #expect(message.facility == syslog.facility)
            #expect(message.severity == SyslogMessage.severity(of: record))
            #expect(message.appName == syslog.appName)
            #expect(message.messageId == record.event.rawValue)
            #expect(message.processId == String(getpid()))
            #expect(message.hostname == SyslogMessage.localHostname())
        }

        try await observer.close(trail)
        #expect(observer.deliveries("syslog", true) == records.count)
        #expect(observer.deliveries("syslog", false) == 0)
    }

    static func text(_ record: AuditRecord) -> String {
        String(decoding: record.json, as: UTF8.self)
    }
}
