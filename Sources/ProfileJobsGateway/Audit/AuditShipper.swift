import Dispatch
import Glibc

/// What became of one attempt to hand a record to a destination.
enum AuditDelivery {
    case delivered
    /// Given up on this record; the next one is tried at once.
    case dropped
    /// The destination is not there (yet); the same record is tried again after a pause.
    case retryLater
}

/// Where a shipper sends records; created on, and only ever used by, the shipper's own thread.
protocol AuditDestination: AnyObject {
    func deliver(_ record: AuditRecord) -> AuditDelivery
}

/// Sends copies of the trail to one destination from a thread of its own, so a slow or absent collector never
/// holds up a deletion: records wait in a bounded queue, the oldest dropped first when it overflows.
final class AuditShipper: Sendable {
    private struct State {
        var pending: [AuditRecord] = []
        /// Index of the oldest record in `pending`; records before it are delivered or dropped.
        var head = 0
        /// The thread is sending the oldest record, so an overflow must drop the next one instead.
        var sendingOldest = false
        /// Set by `beginClose`: records still queued then are given up at this time.
        var closeDeadline: DispatchTime?

        var count: Int { pending.count - head }

        mutating func removeOldest() {
            head += 1
            // Compacts once the spent prefix is the larger part, so dropping stays cheap on average.
            if head > 64 && head * 2 > pending.count {
                pending.removeFirst(head)
                head = 0
            }
        }

        /// Makes room for one more; false when only the record being sent is queued, which is not given up.
        mutating func dropOldestWaiting() -> Bool {
            guard sendingOldest else {
                removeOldest()
                return true
            }
            guard count >= 2 else { return false }
            pending[head + 1] = pending[head]
            removeOldest()
            return true
        }
    }

    /// The name `onWrite` reports deliveries under: `stdout` or `syslog`.
    let sink: String
    private let capacity: Int
    private let firstPause: Double
    private let longestPause: Double
    private let onWrite: @Sendable (String, Bool) -> Void
    private let state = Locked(State())
    /// Signalled for every queued record and for `beginClose`; extra signals only cost the thread a look.
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// Starts the thread, which creates its destination with `makeDestination` and then delivers until closed.
    init(
        sink: String,
        capacity: Int = 10_000,
        firstPause: Double = 0.1,
        longestPause: Double = 5,
        onWrite: @escaping @Sendable (String, Bool) -> Void,
        makeDestination: @escaping @Sendable () -> any AuditDestination
    ) throws(AuditWriteError) {
        self.sink = sink
        self.capacity = capacity
        self.firstPause = firstPause
        self.longestPause = longestPause
        self.onWrite = onWrite

        let started = startDetachedThread { [self] in
            run(makeDestination())
            finished.signal()
        }
        guard started == 0 else {
            throw AuditWriteError(description: "cannot start the \(sink) audit shipper: \(systemErrorText(started))")
        }
    }

    /// Queues a copy without waiting; a full queue loses its oldest record, and a closed shipper this one.
    func ship(_ record: AuditRecord) {
        let accepted = state.withLock { state -> (queued: Bool, droppedOldest: Bool) in
            guard state.closeDeadline == nil else { return (false, false) }
            let dropped = state.count >= capacity && state.dropOldestWaiting()
            state.pending.append(record)
            return (true, dropped)
        }

        if !accepted.queued || accepted.droppedOldest { onWrite(sink, false) }
        if accepted.queued { wake.signal() }
    }

    /// Asks the thread to deliver what is queued and stop, giving up on what is left at `deadline`.
    func beginClose(deadline: DispatchTime) {
        let first = state.withLock { state in
            defer { state.closeDeadline = state.closeDeadline ?? deadline }
            return state.closeDeadline == nil
        }
        if first { wake.signal() }
    }

    /// Waits until the thread has stopped, at most until `deadline`; a thread stuck in a send ends on its own later.
    func awaitClosed(until deadline: DispatchTime) {
        if finished.wait(timeout: deadline) == .success {
            // Left signalled, so that waiting again returns at once too.
            finished.signal()
        }
    }

    // MARK: - The shipper's thread

    private func run(_ destination: any AuditDestination) {
        var pause = firstPause
        while let record = next() {
            switch destination.deliver(record) {
            case .delivered:
                settleOldest(delivered: true)
                pause = firstPause
            case .dropped:
                settleOldest(delivered: false)
            case .retryLater:
                // While it waits, the oldest record is again the one an overflow gives up.
                state.withLock { $0.sendingOldest = false }
                sleep(pause)
                pause = min(pause * 2, longestPause)
            }
        }
    }

    /// The oldest queued record, waiting for one; nil once closed and drained, or closed and past the deadline.
    private func next() -> AuditRecord? {
        while true {
            let (record, abandoned, ended) = state.withLock { state -> (AuditRecord?, Int, Bool) in
                if let deadline = state.closeDeadline, DispatchTime.now() >= deadline {
                    let left = state.count
                    state.pending = []
                    state.head = 0
                    return (nil, left, true)
                }
                if state.count > 0 {
                    state.sendingOldest = true
                    return (state.pending[state.head], 0, false)
                }
                return (nil, 0, state.closeDeadline != nil)
            }

            for _ in 0..<abandoned { onWrite(sink, false) }
            if let record { return record }
            if ended { return nil }
            wake.wait()
        }
    }

    private func settleOldest(delivered: Bool) {
        state.withLock { state in
            state.sendingOldest = false
            state.removeOldest()
        }
        onWrite(sink, delivered)
    }

    /// Pauses before the next attempt; closing shortens the pause to the close deadline, new records do not.
    private func sleep(_ seconds: Double) {
        let until = DispatchTime.now() + seconds
        while true {
            let deadline = state.withLock { state in state.closeDeadline.map { min($0, until) } ?? until }
            guard DispatchTime.now() < deadline else { return }
            _ = wake.wait(timeout: deadline)
        }
    }
}

/// Writes each record line to standard output, for platforms that collect what a container prints.
final class StandardOutputDestination: AuditDestination {
    init() {
        _ = ignoreBrokenPipes
    }

    func deliver(_ record: AuditRecord) -> AuditDelivery {
        let line = record.json + [10]
        var sent = 0
        while sent < line.count {
            let n = line[sent...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return .dropped }
            sent += n
        }
        return .delivered
    }
}

/// A reader that went away must cost a record, not the process; evaluated once, like the upstream transport's.
private let ignoreBrokenPipes: Void = {
    signal(SIGPIPE, SIG_IGN)
}()

/// Boxes a thread's body for `pthread_create`'s untyped context.
private final class ThreadBody: Sendable {
    let run: @Sendable () -> Void

    init(_ run: @escaping @Sendable () -> Void) {
        self.run = run
    }
}

/// Starts a thread nobody joins; 0, or the error `pthread_create` returned.
func startDetachedThread(_ body: @escaping @Sendable () -> Void) -> Int32 {
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))

    // Unmanaged: the retain taken here is taken over by the thread, or released below when it did not start.
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let started = pthread_create(
        &thread, &attributes,
        { context in
            // Unmanaged: takes over the retain `startDetachedThread` took, and releases it when the body returns.
            Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)

    // Unmanaged: no thread took the retain over, so it is given back here.
    if started != 0 { Unmanaged<ThreadBody>.fromOpaque(context).release() }
    return started
}
