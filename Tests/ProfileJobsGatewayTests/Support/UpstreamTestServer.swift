import Foundation
import ProfileJobsGateway

/// The Python upstream in `upstream_test_server.py`, started for one test on a free loopback port.
final class UpstreamTestServer: Sendable {
    struct StartupFailed: Error, CustomStringConvertible {
        var description: String
    }

    let port: Int
    /// Its stdin: closing it tells the script to exit, even if this process dies without running `deinit`.
    private let child: ChildProcess

    /// Starts the script off Swift's cooperative pool: waiting for Python to start would hold one of its few
    /// threads, and with it the gateway handlers of every test running at the same time.
    static func start() async throws -> UpstreamTestServer {
        try await offPool { try UpstreamTestServer(tls: nil) }
    }

    /// The same server over HTTPS, presenting the certificate chain in `certificate` with its `key`.
    static func startTLS(certificate: String, key: String) async throws -> UpstreamTestServer {
        try await offPool { try UpstreamTestServer(tls: (certificate, key)) }
    }

    private init(tls: (certificate: String, key: String)?) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("upstream_test_server.py")
        let arguments = [script.path] + (tls.map { ["--tls", $0.certificate, $0.key] } ?? [])
        child = try ChildProcess("python3", arguments, stdin: .pipe, stdout: .pipe, stderr: .null)

        // The script prints its port once it listens; end of file means it died first.
        var line: [UInt8] = []
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = child.output?.readSome() ?? []
            guard !chunk.isEmpty else {
                child.terminate()
                throw StartupFailed(description: "the test upstream exited before reporting its port")
            }
            line += chunk
        }

        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let port = Int(text) else {
            child.terminate()
            throw StartupFailed(description: "the test upstream printed \(text) instead of a port")
        }
        self.port = port
    }

    deinit {
        child.input?.close()
        child.terminate()
    }

    func url(_ path: String) -> String {
        "http://127.0.0.1:\(port)\(path)"
    }
}

/// A test that ran past its deadline.
struct DeadlineExceeded: Error, CustomStringConvertible {
    var seconds: Double

    var description: String { "no result within \(seconds) seconds" }
}

/// Runs `body`, throwing `DeadlineExceeded` after `seconds` even when `body` never returns, so a hang fails the test.
func withDeadline<T: Sendable>(
    _ seconds: Double,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>, Never>) in
        let waiter = DeadlineWaiter(continuation)
        let timer = Task {
            try await Task.sleep(for: .seconds(seconds))
            waiter.resume(.failure(DeadlineExceeded(seconds: seconds)))
        }
        Task {
            do {
                waiter.resume(.success(try await body()))
            } catch {
                waiter.resume(.failure(error))
            }
            timer.cancel()
        }
    }
    return try result.get()
}

/// Resumes the deadline's continuation with whichever comes first, the result or the timeout.
private final class DeadlineWaiter<T: Sendable>: Sendable {
    private let continuation: Locked<CheckedContinuation<Result<T, any Error>, Never>?>

    init(_ continuation: CheckedContinuation<Result<T, any Error>, Never>) {
        self.continuation = Locked(continuation)
    }

    func resume(_ result: Result<T, any Error>) {
        continuation.withLock { continuation in
            continuation?.resume(returning: result)
            continuation = nil
        }
    }
}
