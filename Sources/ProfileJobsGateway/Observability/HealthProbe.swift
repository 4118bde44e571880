import Glibc

/// Asks a running gateway's health endpoint, for `profile-jobs-gateway healthcheck`: a container image then needs no
/// HTTP client of its own for its health check.
public enum HealthProbe {
    /// Why no status could be read.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// The address to probe for a listening address: the wildcard addresses are reached on loopback.
    public static func probeHost(forListening host: String) -> String {
        switch host {
        case "0.0.0.0": "127.0.0.1"
        case "::": "::1"
        default: host
        }
    }

    /// GETs `path` from `host` (an IPv4 or IPv6 literal) and `port` and returns the answer's status, giving up after
    /// `timeoutSeconds` for connecting and again for the answer.
    public static func status(
        host: String,
        port: UInt16,
        path: String = "/healthz",
        timeoutSeconds: Double = 5
    ) throws(Failure) -> Int {
        let fd = try connect(host: host, port: port, timeoutSeconds: timeoutSeconds)
        defer { close(fd) }

        var limit = timeval(
            tv_sec: Int(timeoutSeconds), tv_usec: Int(timeoutSeconds.truncatingRemainder(dividingBy: 1) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))

        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(authority)\r\nConnection: close\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failure(description: "sending the request failed: \(errorText())") }
            sent += n
        }

        // The status line is all that is read: "HTTP/1.1 200 OK".
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while !head.contains(10) && head.count < 4096 {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw Failure(
                    description: n == 0 ? "the connection closed before an answer" : "no answer: \(errorText())")
            }
            head += buffer[..<n]
        }
        let line = head.prefix { $0 != 13 && $0 != 10 }
        let parts = line.split(separator: UInt8(ascii: " "))
        guard parts.count >= 2, parts[0].starts(with: Array("HTTP/".utf8)),
            let status = Int(String(decoding: parts[1], as: UTF8.self))
        else {
            throw Failure(description: "the answer is not HTTP")
        }
        return status
    }

    /// A connected socket, or the reason there is none; the connect itself is bounded by `timeoutSeconds`.
    private static func connect(host: String, port: UInt16, timeoutSeconds: Double) throws(Failure) -> Int32 {
        var hints = addrinfo()
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let address = found else {
            throw Failure(description: "'\(host)' is not an IPv4 or IPv6 address")
        }
        defer { freeaddrinfo(found) }

        let fd = socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "no socket: \(errorText())") }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 {
            guard errno == EINPROGRESS else {
                let reason = errorText()
                close(fd)
                throw Failure(description: "cannot connect to \(host) port \(port): \(reason)")
            }
            var waiting = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&waiting, 1, Int32(timeoutSeconds * 1000))
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            guard ready == 1, failure == 0 else {
                close(fd)
                let reason = ready == 0 ? "timed out" : String(cString: strerror(failure))
                throw Failure(description: "cannot connect to \(host) port \(port): \(reason)")
            }
        }
        _ = fcntl(fd, F_SETFL, flags)
        return fd
    }

    private static func errorText() -> String {
        String(cString: strerror(errno))
    }
}
