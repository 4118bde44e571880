import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// The trail's JSON-lines file: appends and syncs on one serial queue, so a slow disk never holds Swift's pool.
final class AuditFile: Sendable {
    private struct State {
        var fd: Int32
        /// The file ends inside a line (a crash, or a short write on a full disk): the next append starts a new one.
        var needsNewline: Bool
        /// When the last append failed; readiness stays off for a while after one.
        var lastFailure: ContinuousClock.Instant? = nil
    }

    /// How long after a failed append the file counts as not writable.
    static let failureMemory = Duration.seconds(30)

    let path: String
    private let state: Mutex<State>
    /// Orders appends and reopens; each block owns the descriptor while it runs.
    private let queue = DispatchQueue(label: "audit-trail-file")

    /// Opens `path` for appending, creating it and its parent directories when missing.
    init(path: String) throws(AuditWriteError) {
        self.path = path
        let fd = try AuditFile.open(path)
        state = Mutex(State(fd: fd, needsNewline: false))
        endTornLine(fd)
    }

    deinit {
        state.withLock { _ = Glibc.close($0.fd) }
    }

    /// Appends one line with a single write(2) and syncs it, off the cooperative pool; returns once it is on disk.
    func append(_ line: [UInt8]) async throws(AuditWriteError) {
        let result: Result<Void, AuditWriteError> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { () throws(AuditWriteError) in try self.appendNow(line) })
            }
        }
        try result.get()
    }

    /// The same append on the calling thread; only for `AuditTrail.init`, before anything else can append.
    func appendNow(_ line: [UInt8]) throws(AuditWriteError) {
        do {
            try appendOnce(line)
            state.withLock { $0.lastFailure = nil }
        } catch {
            state.withLock { $0.lastFailure = .now }
            throw error
        }
    }

    private func appendOnce(_ line: [UInt8]) throws(AuditWriteError) {
        // A file removed from under the gateway would take records nobody can read again: start a new one.
        if isUnlinked(state.withLock { $0.fd }) {
            try replaceDescriptor()
        }
        let (fd, needsNewline) = state.withLock { ($0.fd, $0.needsNewline) }
        let bytes = needsNewline ? [10] + line : line

        var written: Int
        repeat {
            written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        } while written < 0 && errno == EINTR
        let writeError = errno

        guard written == bytes.count else {
            // A short write left part of a line behind; the next record must not be glued to it.
            if written > 0 { state.withLock { $0.needsNewline = true } }
            let reason =
                written < 0 ? systemErrorText(writeError) : "only \(written) of \(bytes.count) bytes were written"
            throw AuditWriteError(description: "cannot append to the audit trail \(path): \(reason)")
        }
        if needsNewline { state.withLock { $0.needsNewline = false } }

        guard fsync(fd) == 0 else {
            throw AuditWriteError(description: "cannot sync the audit trail \(path): \(systemErrorText(errno))")
        }
    }

    /// Opens the path anew (logrotate moved the old file away); on failure the old file keeps taking records.
    func reopen() throws(AuditWriteError) {
        let result: Result<Void, AuditWriteError> = queue.sync {
            Result { () throws(AuditWriteError) in
                // A SIGHUP that only reloads the configuration finds the path still naming the open file; opening it
                // again would collide with this process's own lock.
                guard !pathNamesOpenFile() else { return }
                try replaceDescriptor()
            }
        }
        try result.get()
    }

    /// Whether the path still leads to the file the descriptor has open (same device and inode).
    private func pathNamesOpenFile() -> Bool {
        var open = stat()
        var named = stat()
        let fd = state.withLock { $0.fd }
        return fstat(fd, &open) == 0 && stat(path, &named) == 0 && open.st_dev == named.st_dev
            && open.st_ino == named.st_ino
    }

    /// Opens the path and swaps the new descriptor in; only on `queue` (or before anything else can append).
    private func replaceDescriptor() throws(AuditWriteError) {
        let fd = try AuditFile.open(path)
        let old = state.withLock { state in
            defer { state = State(fd: fd, needsNewline: false, lastFailure: state.lastFailure) }
            return state.fd
        }
        _ = Glibc.close(old)
        endTornLine(fd)
    }

    /// Lets another process take the file (a restarted gateway); records written after this still land.
    func unlock() {
        queue.sync { _ = flock(state.withLock { $0.fd }, LOCK_UN) }
    }

    /// Whether an append can succeed now: the file is open, no append failed in the last `failureMemory`, and
    /// a file removed from under the gateway can be created again.
    var isWritable: Bool {
        let (fd, lastFailure) = state.withLock { ($0.fd, $0.lastFailure) }
        guard fd >= 0 else { return false }
        if let lastFailure, ContinuousClock.now - lastFailure < AuditFile.failureMemory { return false }
        if isUnlinked(fd) { return access(AuditFile.directory(of: path), W_OK | X_OK) == 0 }
        return true
    }

    private func isUnlinked(_ fd: Int32) -> Bool {
        var info = stat()
        return fstat(fd, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && info.st_nlink == 0
    }

    /// Everything the open file holds; empty for anything but a regular file (`/dev/full` reads zeros forever).
    func contents() -> [UInt8] {
        let fd = state.withLock { dup($0.fd) }
        guard fd >= 0 else { return [] }
        defer { _ = Glibc.close(fd) }

        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return [] }

        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(info.st_size))
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return bytes }
            bytes += buffer[..<n]
            offset += off_t(n)
        }
    }

    /// Ends a torn last line (a crash mid-write) with a newline now, so the first new record starts a line of its own.
    private func endTornLine(_ fd: Int32) {
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size > 0 else { return }

        var last: UInt8 = 0
        guard pread(fd, &last, 1, info.st_size - 1) == 1, last != 10 else { return }

        let newline: [UInt8] = [10]
        let written = newline.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, 1) }
        if written != 1 || fsync(fd) != 0 {
            state.withLock { $0.needsNewline = written != 1 }
        }
    }

    /// Opens for appending (and reading back, to scan it), creating the file 0640 and its directories 0750.
    private static func open(_ path: String) throws(AuditWriteError) -> Int32 {
        let directory = directory(of: path)
        makeDirectories(directory)

        var fd = Glibc.open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        let created = fd >= 0
        if !created && errno == EEXIST {
            fd = Glibc.open(path, O_RDWR | O_APPEND | O_CLOEXEC)
        }
        guard fd >= 0 else {
            throw AuditWriteError(description: "cannot open the audit trail \(path): \(systemErrorText(errno))")
        }

        // Two writers would report each other's deletions in flight as orphans: one gateway process per file.
        var info = stat()
        if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let reason = errno == EWOULDBLOCK ? "another gateway process is writing to it" : systemErrorText(errno)
            _ = Glibc.close(fd)
            throw AuditWriteError(
                description: "cannot use the audit trail \(path): \(reason); give each instance its own audit.file")
        }

        // A new file's name is durable only once its directory is synced.
        if created { syncDirectory(directory) }
        return fd
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// `mkdir -p`; failures are left for `open` to report, with the path the operator configured.
    private static func makeDirectories(_ directory: String) {
        var prefix = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o750) != 0 && errno != EEXIST { return }
        }
    }

    private static func syncDirectory(_ directory: String) {
        let fd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        _ = Glibc.close(fd)
    }
}

func systemErrorText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
