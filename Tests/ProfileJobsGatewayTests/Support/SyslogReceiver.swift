import Foundation
import Glibc
import ProfileJobsGateway

/// A real rsyslogd on loopback TCP and UDP ports of its own, writing every message it receives as one line of
/// `messages.log`, so the tests see what a production collector makes of the gateway's messages.
final class SyslogReceiver: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// One received message as rsyslog parsed it.
    struct Message: Sendable, Equatable {
        var facility: Int
        var severity: Int
        var appName: String
        var processId: String
        var messageId: String
        var hostname: String
        /// The MSG part: the audit record's JSON line.
        var text: String
    }

    let directory: URL
    let tcpPort: UInt16
    let udpPort: UInt16
    private let child = Locked<ChildProcess?>(nil)

    private var configPath: String { directory.appendingPathComponent("rsyslog.conf").path }
    private var outputPath: String { directory.appendingPathComponent("messages.log").path }
    private var errorPath: String { directory.appendingPathComponent("rsyslogd.stderr").path }

    /// Picks free ports and writes the configuration; rsyslogd starts only with `start`.
    init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        tcpPort = try Self.freePort(type: SOCK_STREAM)
        udpPort = try Self.freePort(type: SOCK_DGRAM)

        // No imuxsock or imklog: this instance hears only the test's ports, never the machine's own logs.
        let config = """
            global(workDirectory="\(directory.path)" net.enableDNS="off")
            module(load="imtcp")
            module(load="imudp")
            input(type="imtcp" port="\(tcpPort)" address="127.0.0.1")
            input(type="imudp" port="\(udpPort)" address="127.0.0.1")
            template(name="line" type="string" string="facility=%syslogfacility% severity=%syslogseverity% \
            app=%app-name% procid=%procid% msgid=%msgid% host=%hostname% msg=%msg%\\n")
            action(type="omfile" file="\(outputPath)" template="line")

            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    deinit {
        terminate()
    }

    /// Kills rsyslogd if it still runs, for `defer`: a failed test must not leave a collector behind.
    func terminate() {
        let process = child.withLock { child in
            defer { child = nil }
            return child
        }
        process?.terminate()
    }

    /// A receiver already listening, on new ports when rsyslogd could not take the first ones.
    static func started(in directory: URL) async throws -> SyslogReceiver {
        var lastError: any Error = Failure(description: "rsyslogd never started")
        for attempt in 1...3 {
            let receiver = try SyslogReceiver(directory: directory.appendingPathComponent("attempt-\(attempt)"))
            do {
                try await receiver.start()
                return receiver
            } catch {
                lastError = error
                try? await receiver.stop()
            }
        }
        throw lastError
    }

    /// Starts rsyslogd and returns once it accepts TCP connections.
    func start() async throws {
        let process = try ChildProcess(
            "/usr/sbin/rsyslogd",
            ["-n", "-f", configPath, "-i", directory.appendingPathComponent("rsyslogd.pid").path],
            stdin: .null, stdout: .null, stderr: .file(errorPath))
        child.withLock { $0 = process }

        let port = tcpPort
        do {
            try await poll(for: 30, "rsyslogd listens on \(port)") { try await offPool { Self.accepts(port: port) } }
        } catch {
            throw Failure(description: "\(error); rsyslogd stderr: \(errors())")
        }
    }

    /// Stops rsyslogd with SIGTERM and reaps it; a receiver can be started again afterwards, on the same ports.
    func stop() async throws {
        guard let process = child.withLock({ $0 }) else { return }
        process.signal(SIGTERM)
        try await process.exit(within: 30)
        child.withLock { $0 = nil }
    }

    /// UDP says nothing about a listener, so probes are sent until rsyslogd writes one down.
    func waitUntilUDPIsReady() async throws {
        let port = udpPort
        let marker = "udp-probe-\(UUID().uuidString)"
        try await poll(for: 30, "a UDP probe reaches rsyslogd") {
            try await offPool { try Self.sendDatagram("<134>1 - probe - - probe - \(marker)", port: port) }
            return try await self.messages().contains { $0.text == marker }
        }
    }

    /// Every message written so far.
    func messages() async throws -> [Message] {
        let path = outputPath
        let text = try await offPool { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        return text.split(separator: "\n").compactMap(Self.parse)
    }

    /// Waits until messages with each of `texts` as MSG have arrived, and returns them in that order.
    func waitForMessages(_ texts: [String], within seconds: Double = 60) async throws -> [Message] {
        do {
            try await poll(for: seconds, "\(texts.count) messages arrive") {
                let received = try await self.messages().map(\.text)
                return texts.allSatisfy(received.contains)
            }
        } catch {
            let received = try await messages().map(\.text)
            let missing = texts.filter { !received.contains($0) }
            throw Failure(description: "\(error): missing \(missing); rsyslogd stderr: \(errors())")
        }

        let received = try await messages()
        return texts.compactMap { text in received.first { $0.text == text } }
    }

    /// What rsyslogd said on standard error, for failure messages.
    func errors() -> String {
        (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
    }

    // MARK: - Lines and sockets

    /// Reads `facility=16 severity=5 app=… procid=… msgid=… host=… msg=…`.
    private static func parse(_ line: Substring) -> Message? {
        guard let split = line.range(of: " msg=") else { return nil }
        var fields: [String: String] = [:]
        for pair in line[..<split.lowerBound].split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        guard let facility = fields["facility"].flatMap(Int.init), let severity = fields["severity"].flatMap(Int.init)
        else { return nil }
        return Message(
            facility: facility, severity: severity, appName: fields["app"] ?? "", processId: fields["procid"] ?? "",
            messageId: fields["msgid"] ?? "", hostname: fields["host"] ?? "", text: String(line[split.upperBound...]))
    }

    /// A loopback port the kernel just had free; rsyslogd binds it moments later.
    /// Binds the TCP port without listening: connections to it are refused, as to a collector that is down, and no
    /// other program on the machine can take the port meanwhile. Close it before `start`.
    /// SO_REUSEADDR lets it bind while connections of a stopped rsyslogd still wait out TIME_WAIT on the port.
    func holdTCPPort() throws -> FileDescriptor {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() failed") }
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: tcpPort)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard bound else {
            close(fd)
            throw Failure(description: "port \(tcpPort) was taken by another program")
        }
        return FileDescriptor(fd)
    }

    private static func freePort(type: __socket_type) throws -> UInt16 {
        for _ in 1...5 {
            let fd = socket(AF_INET, Int32(type.rawValue), 0)
            guard fd >= 0 else { continue }
            defer { close(fd) }

            var address = loopback(port: 0)
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
                }
            }
            if bound { return UInt16(bigEndian: address.sin_port) }
        }
        throw Failure(description: "no free port")
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private static func accepts(port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }

        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    private static func sendDatagram(_ text: String, port: UInt16) throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() failed") }
        defer { close(fd) }

        var address = loopback(port: port)
        let bytes = Array(text.utf8)
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { target in
                bytes.withUnsafeBytes {
                    sendto(fd, $0.baseAddress, $0.count, 0, target, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard sent == bytes.count else { throw Failure(description: "sendto failed") }
    }
}

/// Polls `condition` until it holds, failing after `seconds`.
///
/// The loop checks the time itself as well: `withDeadline` fails the test but cannot stop its body, which would
/// otherwise poll, and keep what it captured alive, until the test process ends.
func poll(
    for seconds: Double,
    _ what: String,
    _ condition: @escaping @Sendable () async throws -> Bool
) async throws {
    let end = ContinuousClock.now + .seconds(seconds)
    try await withDeadline(seconds + 10) {
        while try await !condition() {
            guard ContinuousClock.now < end else {
                throw SyslogReceiver.Failure(description: "\(what): not within \(seconds) s")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
