import Dispatch
import Glibc

/// RFC 5424 messages for audit records: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`.
enum SyslogMessage {
    static let notice = 5
    static let warning = 4

    /// Outcomes that may have left a deletion half done, or unknown, stand out as warnings; the rest are notices.
    static func severity(of record: AuditRecord) -> Int {
        guard record.event == .outcome else { return notice }
        switch record.outcome {
        case .succeeded, .refused, .rejected: return notice
        case .failed, .unknown, nil: return warning
        }
    }

    /// The whole message; MSG is the record's JSON line, so a collector stores exactly what the file holds.
    static func format(
        _ record: AuditRecord,
        facility: Int,
        hostname: String,
        appName: String,
        processId: Int32
    ) -> [UInt8] {
        let priority = facility * 8 + severity(of: record)
        let time = AuditRecord.formatTime(record.time)
        let header = "<\(priority)>1 \(time) \(hostname) \(appName) \(processId) \(record.event.rawValue) - "
        return Array(header.utf8) + record.json
    }

    /// A header field as RFC 5424 allows it: printable ASCII without spaces, at most `maxLength`, `-` when empty.
    static func headerField(_ text: String, maxLength: Int) -> String {
        let printable = text.unicodeScalars.prefix(maxLength).map { scalar in
            (33...126).contains(scalar.value) ? Character(scalar) : "_"
        }
        return printable.isEmpty ? "-" : String(printable)
    }

    /// This machine's name as `gethostname` tells it.
    static func localHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "-" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return headerField(String(decoding: bytes, as: UTF8.self), maxLength: 255)
    }
}

/// Sends records to a syslog collector over TCP (octet-counted, RFC 6587) or UDP; owned by the shipper's thread.
final class SyslogDestination: AuditDestination {
    /// Send failures in a row on connections that did connect, after which a record is given up as undeliverable.
    static let attemptsPerRecord = 3
    /// How long a UDP destination's address is trusted before it is resolved again.
    static let addressLifetime = 60.0

    private let configuration: SyslogConfiguration
    private let logger: Logger
    private let hostname = SyslogMessage.localHostname()
    private let appName: String
    private let processId = getpid()

    private var socket: Int32 = -1
    /// Where UDP datagrams go, resolved when the socket was made.
    private var address = sockaddr_storage()
    private var addressLength = socklen_t(0)
    private var resolvedAt = DispatchTime.now()
    private var failedSends = 0
    /// Whether the last attempt failed, so only a change between reachable and unreachable is logged.
    private var unreachable = false

    init(configuration: SyslogConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        appName = SyslogMessage.headerField(configuration.appName, maxLength: 48)
    }

    deinit {
        closeSocket()
    }

    func deliver(_ record: AuditRecord) -> AuditDelivery {
        let message = SyslogMessage.format(
            record, facility: configuration.facility, hostname: hostname, appName: appName, processId: processId)

        switch configuration.transport {
        case .tcp: return deliverStream(Array("\(message.count) ".utf8) + message)
        case .udp: return deliverDatagram(message)
        }
    }

    // MARK: - TCP

    private func deliverStream(_ frame: [UInt8]) -> AuditDelivery {
        if socket >= 0 && peerHasClosed() { closeSocket() }

        if socket < 0 {
            switch openSocket(type: SOCK_STREAM, connecting: true) {
            case .success(let fd): socket = fd
            case .failure(let reason):
                noteUnreachable(reason)
                return .retryLater
            }
        }

        if sendAll(frame) {
            failedSends = 0
            noteReachable()
            return .delivered
        }

        let reason = systemErrorText(errno)
        closeSocket()
        noteUnreachable(reason)
        failedSends += 1
        guard failedSends < Self.attemptsPerRecord else {
            failedSends = 0
            return .dropped
        }
        return .retryLater
    }

    /// A collector never writes to us, so a readable or hung-up socket means it closed the connection; checking
    /// first keeps a record from vanishing into a socket the collector already left.
    private func peerHasClosed() -> Bool {
        var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 0) != 0
    }

    private func sendAll(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    // MARK: - UDP

    private func deliverDatagram(_ message: [UInt8]) -> AuditDelivery {
        if socket >= 0 && DispatchTime.now() > resolvedAt + Self.addressLifetime { closeSocket() }

        if socket < 0 {
            switch openSocket(type: SOCK_DGRAM, connecting: false) {
            case .success(let fd):
                socket = fd
                resolvedAt = DispatchTime.now()
            case .failure(let reason):
                noteUnreachable(reason)
                return .retryLater
            }
        }

        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { target in
                message.withUnsafeBytes {
                    sendto(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), target, addressLength)
                }
            }
        }
        guard sent == message.count else {
            noteUnreachable(systemErrorText(errno))
            closeSocket()
            return .dropped
        }

        noteReachable()
        return .delivered
    }

    // MARK: - Sockets

    /// Resolves the collector with getaddrinfo and takes the first address that works; a stream socket connects.
    private func openSocket(type: __socket_type, connecting: Bool) -> Result<Int32, SocketFailure> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(type.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var found: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(configuration.host, String(configuration.port), &hints, &found)
        guard resolved == 0, let found else {
            return .failure(SocketFailure("cannot resolve: \(String(cString: gai_strerror(resolved)))"))
        }
        defer { freeaddrinfo(found) }

        var lastError = SocketFailure("no address")
        var entry: UnsafeMutablePointer<addrinfo>? = found
        while let info = entry?.pointee {
            entry = info.ai_next

            let fd = Glibc.socket(info.ai_family, info.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.ai_protocol)
            guard fd >= 0 else {
                lastError = SocketFailure(systemErrorText(errno))
                continue
            }

            // Bounds connect and send, so a collector that stops reading cannot stall shipping for long.
            var limit = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))

            if connecting && Glibc.connect(fd, info.ai_addr, info.ai_addrlen) != 0 {
                lastError = SocketFailure(systemErrorText(errno))
                Glibc.close(fd)
                continue
            }
            if connecting && isConnectedToItself(fd) {
                lastError = SocketFailure("connected to itself: no collector listens on the port")
                Glibc.close(fd)
                continue
            }

            withUnsafeMutableBytes(of: &address) { target in
                target.copyMemory(from: UnsafeRawBufferPointer(start: info.ai_addr, count: Int(info.ai_addrlen)))
            }
            addressLength = info.ai_addrlen
            return .success(fd)
        }
        return .failure(lastError)
    }

    private func closeSocket() {
        if socket >= 0 { Glibc.close(socket) }
        socket = -1
    }

    private func noteUnreachable(_ reason: SocketFailure) {
        noteUnreachable(reason.text)
    }

    private func noteUnreachable(_ reason: String) {
        guard !unreachable else { return }
        unreachable = true
        logger.warning("syslog collector unreachable", metadata + [("error", .string(reason))])
    }

    private func noteReachable() {
        guard unreachable else { return }
        unreachable = false
        logger.info("syslog collector reachable again", metadata)
    }

    private var metadata: [(String, LogValue)] {
        [
            ("transport", .string(configuration.transport.rawValue)), ("host", .string(configuration.host)),
            ("port", .int(Int(configuration.port))),
        ]
    }
}

struct SocketFailure: Error {
    var text: String

    init(_ text: String) {
        self.text = text
    }
}

/// Whether a connected stream socket's two ends are the same address and port.
///
/// A connection to a local port nobody listens on, when the kernel happens to pick that very port as the local one,
/// connects to itself: every record written to it would count as delivered and be lost, and the port stays taken
/// from the collector that should come back on it.
func isConnectedToItself(_ fd: Int32) -> Bool {
    var local = sockaddr_storage()
    var peer = sockaddr_storage()
    var localLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
    var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let named = withUnsafeMutablePointer(to: &local) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &localLength) == 0 }
    }
    let peered = withUnsafeMutablePointer(to: &peer) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &peerLength) == 0 }
    }
    guard named, peered, localLength == peerLength else { return false }
    return withUnsafeBytes(of: &local) { localBytes in
        withUnsafeBytes(of: &peer) { peerBytes in
            localBytes.prefix(Int(localLength)).elementsEqual(peerBytes.prefix(Int(peerLength)))
        }
    }
}
