import Foundation
import Glibc
import ProfileJobsGateway

/// A program the tests start and stop, spawned with `posix_spawn` directly.
///
/// Foundation's `Process.run()` on Linux copies a fixed 256-byte name out of every `/proc/self/fd` entry and so reads
/// past the end of `readdir`'s buffer when the test process holds many descriptors; that crashed test runs. This
/// spawn closes every inherited descriptor with `closefrom` semantics and gives the child default signal handling
/// and an empty signal mask, so SIGTERM and SIGHUP reach it even when the runner blocks them.
final class ChildProcess: Sendable {
    /// Where one of the child's standard streams goes.
    enum Stream {
        case null
        /// Inherit the test runner's own stream (stderr shows up in the test log).
        case inherit
        /// A pipe whose other end the test holds (`input`, `output` or `errors`).
        case pipe
        /// Appended to a file, created when missing.
        case file(String)
    }

    struct SpawnFailed: Error, CustomStringConvertible {
        var description: String
    }

    let pid: pid_t
    /// The write end of the child's stdin when it was `.pipe`; closing it gives the child end of file.
    let input: FileDescriptor?
    /// The read ends of the child's stdout and stderr when they were `.pipe`.
    let output: FileDescriptor?
    let errors: FileDescriptor?
    private let status = Locked<Int32?>(nil)

    /// Starts `program` (looked up on `PATH` when it has no slash) with `arguments`.
    init(
        _ program: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        stdin: Stream = .null,
        stdout: Stream = .null,
        stderr: Stream = .inherit
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }

        var parentEnds: [Int32: FileDescriptor] = [:]
        var childEnds: [Int32] = []
        defer { childEnds.forEach { close($0) } }
        for (target, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch stream {
            case .inherit:
                continue
            case .null:
                let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
                guard fd >= 0 else { throw SpawnFailed(description: "cannot open /dev/null") }
                childEnds.append(fd)
                posix_spawn_file_actions_adddup2(&actions, fd, target)
            case .file(let path):
                let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw SpawnFailed(description: "cannot open \(path)") }
                childEnds.append(fd)
                posix_spawn_file_actions_adddup2(&actions, fd, target)
            case .pipe:
                var ends: [Int32] = [0, 0]
                guard pipe(&ends) == 0 else { throw SpawnFailed(description: "pipe failed") }
                // Every spawn here closes inherited descriptors, but the parent's end must not leak elsewhere.
                _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
                _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
                let (childEnd, parentEnd) = target == 0 ? (ends[0], ends[1]) : (ends[1], ends[0])
                childEnds.append(childEnd)
                parentEnds[target] = FileDescriptor(parentEnd)
                posix_spawn_file_actions_adddup2(&actions, childEnd, target)
            }
        }
        guard Self.addCloseFrom(&actions, 3) == 0 else {
            throw SpawnFailed(description: "posix_spawn_file_actions_addclosefrom_np failed")
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let environmentLines = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = environmentLines.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }

        var pid: pid_t = 0
        let result = posix_spawnp(&pid, program, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw SpawnFailed(description: "cannot start \(program): \(String(cString: strerror(result)))")
        }
        self.pid = pid
        input = parentEnds[0]
        output = parentEnds[1]
        errors = parentEnds[2]
    }

    /// glibc has `posix_spawn_file_actions_addclosefrom_np` since 2.34, but Swift's Glibc module does not import it.
    private static func addCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32)
        -> Int32
    {
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return -1 }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)(actions, from)
    }

    /// Sends `signal` unless the child was already reaped (its pid may belong to another process by then).
    func signal(_ signal: Int32) {
        status.withLock { status in
            if status == nil { kill(pid, signal) }
        }
    }

    /// Blocks until the child ends; its exit status, or 128 + the signal that ended it.
    @discardableResult
    func wait() -> Int32 {
        reap(blocking: true)!
    }

    /// The exit status if the child has ended, without waiting.
    var exitStatus: Int32? {
        reap(blocking: false)
    }

    private func reap(blocking: Bool) -> Int32? {
        if let known = status.withLock({ $0 }) { return known }

        var raw: Int32 = 0
        var reaped: pid_t
        repeat {
            reaped = waitpid(pid, &raw, blocking ? 0 : WNOHANG)
        } while reaped == -1 && errno == EINTR
        guard reaped != 0 else { return nil }

        return status.withLock { status in
            if let known = status { return known }
            let signal = raw & 0x7f
            let code = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
            status = reaped == pid ? code : -1
            return status
        }
    }

    /// Waits off the cooperative pool; kills the child and throws `DeadlineExceeded` after `seconds`.
    @discardableResult
    func exit(within seconds: Double) async throws -> Int32 {
        do {
            return try await withDeadline(seconds) { try await offPool { self.wait() } }
        } catch {
            signal(SIGKILL)
            throw error
        }
    }

    /// Kills the child and reaps it; for `defer` blocks and deinitializers.
    func terminate() {
        signal(SIGKILL)
        wait()
    }
}

/// An owned descriptor, closed exactly once.
final class FileDescriptor: Sendable {
    private let state: Locked<Int32>

    init(_ fd: Int32) {
        state = Locked(fd)
    }

    deinit {
        close()
    }

    func close() {
        state.withLock { fd in
            if fd >= 0 { _ = Glibc.close(fd) }
            fd = -1
        }
    }

    /// Writes all of `bytes`; false when the other end is gone.
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        let fd = state.withLock { $0 }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    /// Reads whatever is available, blocking for at least one byte; empty at end of file.
    func readSome() -> [UInt8] {
        let fd = state.withLock { $0 }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            return n > 0 ? Array(buffer[..<n]) : []
        }
    }

    /// Reads to end of file.
    func readAll() -> [UInt8] {
        var all: [UInt8] = []
        while true {
            let chunk = readSome()
            if chunk.isEmpty { return all }
            all += chunk
        }
    }
}
