import CEpoll
import Glibc
import Synchronization

/// What an event loop drives besides tasks: a set of file descriptors and a deadline of its own.
///
/// The loop calls every method on its own thread only.
protocol EventLoopClient: AnyObject {
    /// One of the client's descriptors is ready; `events` are epoll's flags.
    func ready(_ descriptor: Int32, events: UInt32)
    /// Milliseconds until the client wants `due` called whether or not a descriptor is ready; nil for never.
    func millisecondsUntilDue() -> Int?
    /// Called after every wait, so the client can run its timers and deliver what finished.
    func due()
}

/// A thread that waits on descriptors with epoll and runs the jobs of tasks that prefer it, so that a connection's
/// request, its handler and its upstream call all run on one thread, without a switch between them.
///
/// Safe as `@unchecked Sendable`: the fields marked loop-only are touched by the loop thread alone; the rest are
/// immutable, atomic or behind `inbox`'s lock.
public final class EventLoop: TaskExecutor, @unchecked Sendable {
    /// What other threads hand to the loop thread.
    private struct Inbox {
        var jobs: [UnownedJob] = []
        var work: [() -> Void] = []
        var isStopping = false
        /// Set once the loop has returned: jobs then go to the global executor, since nothing here would run them.
        var hasEnded = false
    }

    /// Why a loop could not start.
    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    private let poller: Int32
    private let wakeEvent: Int32
    private let inbox = Locked(Inbox())
    /// Whether a wake-up is written and not yet read, so a burst of submissions writes the eventfd once.
    private let wakePending = Atomic(false)
    /// The loop thread's id once it runs; 0 before.
    private let owner = Atomic<UInt>(0)
    /// The thread until it has been joined; nil afterwards.
    private let thread = Locked<pthread_t?>(nil)

    /// Loop-only: who is told of each watched descriptor, by the index stored with it in the poller.
    private var clients: [EventLoopClient] = []

    /// Starts `count` loops, each on a thread of its own.
    public static func start(count: Int) throws(StartError) -> [EventLoop] {
        var loops: [EventLoop] = []
        for _ in 0..<max(count, 1) {
            do {
                let loop = try EventLoop()
                try loop.startThread()
                loops.append(loop)
            } catch {
                for loop in loops { loop.stop() }
                throw error
            }
        }
        return loops
    }

    private init() throws(StartError) {
        poller = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeEvent = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard poller >= 0, wakeEvent >= 0 else {
            let reason = String(cString: strerror(errno))
            if poller >= 0 { close(poller) }
            if wakeEvent >= 0 { close(wakeEvent) }
            throw StartError(description: "could not create an event loop's poller: \(reason)")
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = UInt64.max
        epoll_ctl(poller, EPOLL_CTL_ADD, wakeEvent, &event)
    }

    deinit {
        close(poller)
        close(wakeEvent)
    }

    /// Whether the caller runs on this loop's thread.
    var isCurrentThread: Bool {
        owner.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// The loop whose thread the caller runs on, among `loops`.
    static func current(among loops: [EventLoop]) -> EventLoop? {
        let me = UInt(pthread_self())
        return loops.first { $0.owner.load(ordering: .relaxed) == me }
    }

    private func startThread() throws(StartError) {
        var created = pthread_t()
        // Unmanaged: the retain taken here is released by the thread when its loop has returned.
        let context = Unmanaged.passRetained(self).toOpaque()
        let started = pthread_create(
            &created, nil,
            { context in
                // Unmanaged: balances the retain taken by `startThread`.
                let loop = Unmanaged<EventLoop>.fromOpaque(context!).takeRetainedValue()
                loop.run()
                return nil
            }, context)
        guard started == 0 else {
            Unmanaged<EventLoop>.fromOpaque(context).release()
            throw StartError(description: "could not start an event-loop thread (error \(started))")
        }
        thread.withLock { $0 = created }
    }

    /// Runs a job of a task that prefers this loop on the loop thread.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let queued = inbox.withLock { inbox in
            guard !inbox.hasEnded else { return false }
            inbox.jobs.append(job)
            return true
        }
        guard queued else {
            globalConcurrentExecutor.enqueue(job)
            return
        }
        if !isCurrentThread {
            wakeUp()
        }
    }

    /// Runs `work` on the loop thread: at once when called there, else on its next turn. Returns false, running
    /// nothing, once the loop has stopped.
    @discardableResult
    func execute(_ work: @escaping () -> Void) -> Bool {
        if isCurrentThread {
            work()
            return true
        }
        let queued = inbox.withLock { inbox in
            guard !inbox.hasEnded else { return false }
            inbox.work.append(work)
            return true
        }
        if queued {
            wakeUp()
        }
        return queued
    }

    /// Runs `work` on the loop thread and waits for it; runs it on the caller's thread once the loop has stopped.
    func executeAndWait(_ work: @escaping () -> Void) {
        let finished = Semaphore()
        let queued = execute {
            work()
            finished.post()
        }
        guard queued else {
            work()
            return
        }
        finished.wait()
    }

    /// Watches `descriptor` for `events` on behalf of `client`; loop thread only.
    func watch(_ descriptor: Int32, events: UInt32, for client: EventLoopClient) -> Bool {
        let index: Int
        if let known = clients.firstIndex(where: { $0 === client }) {
            index = known
        } else {
            index = clients.count
            clients.append(client)
        }
        var event = epoll_event()
        event.events = events
        event.data.u64 = UInt64(index) << 32 | UInt64(UInt32(bitPattern: descriptor))
        if epoll_ctl(poller, EPOLL_CTL_MOD, descriptor, &event) == 0 { return true }
        return epoll_ctl(poller, EPOLL_CTL_ADD, descriptor, &event) == 0
    }

    /// Stops watching `descriptor`; loop thread only. A closed descriptor has left the poller already.
    func unwatch(_ descriptor: Int32) {
        epoll_ctl(poller, EPOLL_CTL_DEL, descriptor, nil)
    }

    /// Adds a client that has no descriptor yet, so its deadline counts; loop thread only.
    func register(_ client: EventLoopClient) {
        if !clients.contains(where: { $0 === client }) {
            clients.append(client)
        }
    }

    /// Forgets a client; its descriptors must be unwatched first. Loop thread only.
    func unregister(_ client: EventLoopClient) {
        // Indexes in the poller stay valid: the slot is kept, pointing at a client that ignores everything.
        if let index = clients.firstIndex(where: { $0 === client }) {
            clients[index] = RetiredClient.shared
        }
    }

    /// Ends the loop after the work already queued and waits for its thread; jobs queued later run on the global
    /// executor.
    public func stop() {
        inbox.withLock { $0.isStopping = true }
        wakeUp()
        let joinable = thread.withLock { thread in
            defer { thread = nil }
            return thread
        }
        guard let joinable else { return }
        if pthread_equal(joinable, pthread_self()) != 0 {
            pthread_detach(joinable)
        } else {
            pthread_join(joinable, nil)
        }
    }

    private func wakeUp() {
        guard !wakePending.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var one: UInt64 = 1
        // A full counter already wakes the loop, so a failed write loses nothing.
        _ = write(wakeEvent, &one, 8)
    }

    /// The thread's body: run queued work and jobs, wait for descriptors or the nearest deadline, tell the clients.
    private func run() {
        owner.store(UInt(pthread_self()), ordering: .relaxed)
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        let executor = asUnownedTaskExecutor()

        while true {
            let (jobs, work, isStopping) = inbox.withLock { inbox in
                defer { (inbox.jobs, inbox.work) = ([], []) }
                return (inbox.jobs, inbox.work, inbox.isStopping)
            }
            for item in work {
                item()
            }
            for job in jobs {
                job.runSynchronously(on: executor)
            }
            if isStopping {
                end()
                return
            }

            let hasWork = inbox.withLock { !$0.jobs.isEmpty || !$0.work.isEmpty || $0.isStopping }
            let ready = epoll_wait(poller, events, Int32(capacity), hasWork ? 0 : waitMilliseconds())
            for index in 0..<max(Int(ready), 0) {
                let event = events[index]
                if event.data.u64 == UInt64.max {
                    var count: UInt64 = 0
                    _ = read(wakeEvent, &count, 8)
                    wakePending.store(false, ordering: .releasing)
                    continue
                }
                let client = Int(event.data.u64 >> 32)
                let descriptor = Int32(bitPattern: UInt32(truncatingIfNeeded: event.data.u64))
                if client < clients.count {
                    clients[client].ready(descriptor, events: event.events)
                }
            }
            for client in clients {
                client.due()
            }
        }
    }

    /// How long epoll may wait: until the nearest client deadline, and at most a second.
    private func waitMilliseconds() -> Int32 {
        var wait = 1000
        for client in clients {
            if let due = client.millisecondsUntilDue() {
                wait = min(wait, max(due, 0))
            }
        }
        return Int32(wait)
    }

    /// Hands the work and jobs still queued on, so nothing waiting in them is lost.
    private func end() {
        let (jobs, work) = inbox.withLock { inbox in
            inbox.hasEnded = true
            defer { (inbox.jobs, inbox.work) = ([], []) }
            return (inbox.jobs, inbox.work)
        }
        for item in work {
            item()
        }
        for job in jobs {
            globalConcurrentExecutor.enqueue(job)
        }
        clients = []
    }
}

/// Stands in for a client that left, so the indexes of the others stay put.
private final class RetiredClient: EventLoopClient, Sendable {
    static let shared = RetiredClient()

    func ready(_ descriptor: Int32, events: UInt32) {}
    func millisecondsUntilDue() -> Int? { nil }
    func due() {}
}

/// A counting semaphore on a pthread mutex and condition, which ThreadSanitizer understands.
///
/// Safe as `@unchecked Sendable`: `count` is only touched with `mutex` held.
private final class Semaphore: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var count = 0

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func post() {
        pthread_mutex_lock(mutex)
        count += 1
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    func wait() {
        pthread_mutex_lock(mutex)
        while count == 0 {
            pthread_cond_wait(condition, mutex)
        }
        count -= 1
        pthread_mutex_unlock(mutex)
    }
}
