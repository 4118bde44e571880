import Foundation
import Glibc
import Synchronization

/// One HTTP/1.1 connection kept open across requests, so a test can show that something (a reload) happened without
/// the server dropping it. Answers are read by their `Content-Length`; every read is bounded by `timeout`.
final class KeepAliveConnection: Sendable {
    private let fd: Mutex<Int32>
    let port: UInt16

    init(port: UInt16, timeout: Int = 30) throws {
        self.port = port
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RawHTTPClient.Failure(description: "socket() failed") }
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            throw RawHTTPClient.Failure(description: "connect to port \(port) failed")
        }
        self.fd = Mutex(fd)
    }

    deinit {
        fd.withLock { _ = close($0) }
    }

    /// Sends one request on this connection and reads its answer, off Swift's cooperative pool.
    func send(_ method: String, _ target: String, headers: [(String, String)]) async throws -> RawHTTPClient.Response {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
        for (name, value) in headers {
            head += "\(name): \(value)\r\n"
        }
        head += "\r\n"
        let request = Array(head.utf8)
        return try await offPool { try self.exchange(request) }
    }

    /// Sends one request and closes the connection without waiting for the answer: a client that gave up.
    func sendAndHangUp(_ method: String, _ target: String, headers: [(String, String)]) {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
        for (name, value) in headers {
            head += "\(name): \(value)\r\n"
        }
        let request = Array((head + "\r\n").utf8)
        fd.withLock { fd in
            _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            fd = -1
        }
    }

    private func exchange(_ request: [UInt8]) throws -> RawHTTPClient.Response {
        try fd.withLock { fd in
            var sent = 0
            while sent < request.count {
                let n = request[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { throw RawHTTPClient.Failure(description: "write failed: the connection is gone") }
                sent += n
            }

            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                if let length = Self.completeLength(received) {
                    let response = try RawHTTPClient.parse(Array(received[..<length]))
                    guard response.header("Connection")?.lowercased() != "close" else {
                        throw RawHTTPClient.Failure(description: "the server announced it closes the connection")
                    }
                    return response
                }
                let n = read(fd, &buffer, buffer.count)
                guard n > 0 else {
                    throw RawHTTPClient.Failure(
                        description: n == 0 ? "the server closed the connection" : "read failed or timed out")
                }
                received += buffer[..<n]
            }
        }
    }

    /// The length of the first whole answer in `bytes` (head and `Content-Length` body), or nil while it is not all in.
    private static func completeLength(_ bytes: [UInt8]) -> Int? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.indices.first(where: { bytes[$0...].starts(with: separator) }) else { return nil }
        let head = String(decoding: bytes[..<end], as: UTF8.self).lowercased()
        let length =
            head.components(separatedBy: "\r\n")
            .first { $0.hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        let total = end + 4 + length
        return bytes.count >= total ? total : nil
    }
}
