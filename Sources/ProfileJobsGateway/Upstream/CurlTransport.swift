import CCurl
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Sends upstream calls through libcurl multi handles, each driven by an event-loop thread of its own that waits on
/// its sockets with epoll, so thousands of calls can be in flight without a thread each and keep-alive connections
/// are reused across calls.
///
/// Each loop is also a task executor: a handler task that prefers it runs its own code on the loop thread, so a call
/// is started and its answer delivered without a thread switch.
public final class CurlTransport: UpstreamTransport {
    /// Settings fixed for the transport's lifetime.
    public struct Configuration: Sendable {
        /// Idle keep-alive connections each loop keeps open; libcurl's default of 5 closes a connection after nearly
        /// every call under load, leaving thousands of sockets in TIME_WAIT.
        public var maxIdleConnections: Int = 1024
        /// PEM bundle of trusted CAs for upstream TLS; nil uses the system store. Verification is always on.
        public var caBundlePath: String? = nil
        /// Largest upstream body accepted, counted after decompression; a larger one is an unreadable failure.
        public var maxResponseBytes: Int = 8 << 20
        /// Event-loop threads, each with its own multi handle and connection pool; one per core keeps every core
        /// busy without threads waiting on each other.
        public var loops: Int = 2
        /// Bytes libcurl reads from a socket at a time, held by every call in flight: job documents are well under
        /// it, and a larger answer only takes more reads.
        public var receiveBufferBytes: Int = 8 * 1024

        public init() {}
    }

    /// Why the transport could not start.
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    private let loops: [CurlEventLoop]
    /// The loop threads until they have been joined; nil afterwards, which makes `shutdown` idempotent.
    private let threads: Locked<[pthread_t]?>
    /// Spreads calls made from outside the loops over them.
    private let nextLoop = Atomic(0)

    /// Starts the event-loop threads.
    public init(configuration: Configuration = .init()) throws {
        if let failure = libcurlSetupFailure {
            throw SetupError(description: failure)
        }

        if let path = configuration.caBundlePath, access(path, R_OK) != 0 {
            throw SetupError(description: "the CA bundle \(path) is not readable")
        }

        var loops: [CurlEventLoop] = []
        var threads: [pthread_t] = []
        do {
            for _ in 0..<max(configuration.loops, 1) {
                let loop = try CurlEventLoop(configuration: configuration)
                loops.append(loop)
                threads.append(try loop.startThread())
            }
        } catch {
            for loop in loops { loop.stop() }
            for thread in threads { pthread_join(thread, nil) }
            throw SetupError(description: error.message)
        }
        self.loops = loops
        self.threads = Locked(threads)
    }

    deinit {
        shutdown()
    }

    /// The loops as executors for the tasks that call this transport: a task that prefers one runs on its thread.
    public var executors: [any TaskExecutor] { loops }

    /// Suspends until a loop thread delivers the answer or the failure.
    public func send(_ request: UpstreamRequest) async throws(UpstreamFailure) -> UpstreamResponse {
        let loop =
            loops.first { $0.isCurrentThread } ?? loops[nextLoop.add(1, ordering: .relaxed).oldValue % loops.count]
        let maxResponseBytes = loop.configuration.maxResponseBytes

        // TODO: cancelling the calling task does not abort its transfer yet; the request's total timeout bounds it.
        let result = await withCheckedContinuation { continuation in
            loop.submit(Transfer(request: request, maxResponseBytes: maxResponseBytes, continuation: continuation))
        }
        return try result.get()
    }

    /// Stops the loops, fails the calls still pending and waits for the threads to end.
    public func shutdown() {
        for loop in loops {
            loop.stop()
        }

        let joinable = threads.withLock { threads in
            defer { threads = nil }
            return threads ?? []
        }
        for thread in joinable {
            if pthread_equal(thread, pthread_self()) != 0 {
                pthread_detach(thread)
            } else {
                pthread_join(thread, nil)
            }
        }
    }
}

/// libcurl wants one global initialisation before any handle exists; a global's initialiser runs exactly once.
private let libcurlSetupFailure: String? = {
    // A peer closing a socket mid-write must not kill the process; NOSIGNAL covers only libcurl's own signals.
    signal(SIGPIPE, SIG_IGN)

    let code = curl_global_init(Int(CURL_GLOBAL_ALL))
    guard code == CURLE_OK else {
        return "libcurl could not initialise: \(code.text)"
    }
    return nil
}()

// MARK: - Event loop

/// Owns a multi handle and runs the jobs of tasks that prefer it; only its thread touches transfers once they have
/// left the inbox.
///
/// Safe as `@unchecked Sendable`: the fields marked loop-only are touched by the loop thread alone (libcurl's
/// callbacks run inside `curl_multi_socket_action` on it); the rest are immutable, atomic or behind `inbox`'s lock.
private final class CurlEventLoop: TaskExecutor, @unchecked Sendable {
    /// What other threads hand to the loop thread.
    struct Inbox {
        var transfers: [Transfer] = []
        var jobs: [UnownedJob] = []
        var isStopping = false
        /// Set once the loop has returned: jobs then go to the global executor, since nothing here would run them.
        var hasEnded = false
    }

    let configuration: CurlTransport.Configuration
    private let multi: MultiHandle
    private let poller: Int32
    private let wakeEvent: Int32
    private let inbox = Locked(Inbox())
    /// Whether a wake-up is already written and not yet read, so a burst of submissions writes the eventfd once.
    private let wakePending = Atomic(false)
    /// The loop thread's id once it runs; 0 before.
    private let owner = Atomic<UInt>(0)

    /// Loop-only: transfers handed to libcurl and not yet finished.
    private var active: [ObjectIdentifier: Transfer] = [:]
    /// Loop-only: easy handles of finished transfers, reset and kept for the next ones.
    private var idleHandles: [EasyHandle] = []
    /// Loop-only: when libcurl wants `curl_multi_socket_action` called for its timeouts, in monotonic milliseconds.
    fileprivate var timerDeadline: Int?

    init(configuration: CurlTransport.Configuration) throws(CurlError) {
        self.configuration = configuration
        multi = try MultiHandle(maxIdleConnections: configuration.maxIdleConnections)
        poller = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeEvent = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard poller >= 0, wakeEvent >= 0 else {
            let reason = String(cString: strerror(errno))
            if poller >= 0 { close(poller) }
            if wakeEvent >= 0 { close(wakeEvent) }
            multi.cleanup()
            throw CurlError(message: "could not create the upstream loop's poller: \(reason)")
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeEvent
        epoll_ctl(poller, EPOLL_CTL_ADD, wakeEvent, &event)
    }

    deinit {
        for easy in idleHandles {
            easy.cleanup()
        }
        multi.cleanup()
        close(poller)
        close(wakeEvent)
    }

    var isCurrentThread: Bool {
        owner.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// Starts the loop thread; the thread keeps the loop alive until `run` returns.
    func startThread() throws(CurlError) -> pthread_t {
        var thread = pthread_t()

        // Unmanaged: the retain taken here is released by the thread when its loop has returned.
        let context = Unmanaged.passRetained(self).toOpaque()
        let started = pthread_create(
            &thread, nil,
            { context in
                // Unmanaged: balances the retain taken by `startThread`.
                let loop = Unmanaged<CurlEventLoop>.fromOpaque(context!).takeRetainedValue()
                loop.run()
                return nil
            }, context)

        guard started == 0 else {
            Unmanaged<CurlEventLoop>.fromOpaque(context).release()
            throw CurlError(message: "could not start the upstream thread (error \(started))")
        }
        return thread
    }

    /// Runs a job of a task that prefers this loop on the loop thread; from the loop thread itself it only queues it.
    func enqueue(_ job: consuming ExecutorJob) {
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

    /// Queues a transfer for the loop thread, or fails it at once after shutdown.
    func submit(_ transfer: Transfer) {
        let accepted = inbox.withLock { inbox in
            guard !inbox.isStopping else { return false }
            inbox.transfers.append(transfer)
            return true
        }

        guard accepted else {
            transfer.finish(.failure(.unreachable("the upstream transport has been shut down")))
            return
        }
        if !isCurrentThread {
            wakeUp()
        }
    }

    /// Asks the loop to end; calls not yet handed to libcurl fail here so they never wait for the thread.
    func stop() {
        let abandoned = inbox.withLock { inbox in
            inbox.isStopping = true
            defer { inbox.transfers = [] }
            return inbox.transfers
        }

        for transfer in abandoned {
            transfer.finish(.failure(.unreachable("the upstream transport shut down before the call was sent")))
        }
        wakeUp()
    }

    private func wakeUp() {
        guard !wakePending.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var one: UInt64 = 1
        // A full counter already wakes the loop, so a failed write loses nothing.
        _ = write(wakeEvent, &one, 8)
    }

    /// The loop thread's body: run queued jobs, start submitted transfers, wait for sockets or libcurl's timer, let
    /// libcurl work, deliver finished transfers.
    private func run() {
        owner.store(UInt(pthread_self()), ordering: .relaxed)
        do {
            try multi.attach(to: self)
        } catch {
            inbox.withLock { $0.isStopping = true }
        }

        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }

        while true {
            let (jobs, submitted, isStopping) = inbox.withLock { inbox in
                defer { (inbox.jobs, inbox.transfers) = ([], []) }
                return (inbox.jobs, inbox.transfers, inbox.isStopping)
            }
            for job in jobs {
                job.runSynchronously(on: asUnownedTaskExecutor())
            }
            if isStopping {
                for transfer in submitted {
                    transfer.finish(.failure(.unreachable("the upstream transport shut down before the call was sent")))
                }
                abandonActive(.brokenResponse("the upstream transport shut down before the answer arrived"))
                end()
                return
            }
            for transfer in submitted {
                start(transfer)
            }

            let hasWork = inbox.withLock { !$0.jobs.isEmpty || !$0.transfers.isEmpty || $0.isStopping }
            let ready = epoll_wait(poller, events, Int32(capacity), hasWork ? 0 : waitMilliseconds())
            do {
                for index in 0..<max(Int(ready), 0) {
                    let event = events[index]
                    if event.data.fd == wakeEvent {
                        var count: UInt64 = 0
                        _ = read(wakeEvent, &count, 8)
                        wakePending.store(false, ordering: .releasing)
                        continue
                    }
                    try act(on: event.data.fd, flags: Self.curlFlags(event.events))
                }
                if let deadline = timerDeadline, deadline <= monotonicMilliseconds() {
                    timerDeadline = nil
                    try act(on: CURL_SOCKET_TIMEOUT, flags: 0)
                }
                deliverFinished()
            } catch {
                abandonActive(.brokenResponse("the upstream event loop failed: \(error.message)"))

                // A multi handle that keeps failing would otherwise turn this loop into a busy spin.
                usleep(10_000)
            }
        }
    }

    /// Hands the jobs still queued to the global executor, so the tasks waiting in them finish.
    private func end() {
        let jobs = inbox.withLock { inbox in
            inbox.hasEnded = true
            defer { inbox.jobs = [] }
            return inbox.jobs
        }
        for job in jobs {
            globalConcurrentExecutor.enqueue(job)
        }
    }

    /// How long epoll may wait: until libcurl's timer is due, and at most a second so a lost wake-up only delays.
    private func waitMilliseconds() -> Int32 {
        guard let deadline = timerDeadline else { return 1000 }
        return Int32(min(max(deadline - monotonicMilliseconds(), 0), 1000))
    }

    private func act(on socket: curl_socket_t, flags: Int32) throws(CurlError) {
        var running: Int32 = 0
        try check(curl_multi_socket_action(multi.raw, socket, flags, &running), "driving upstream transfers")
    }

    private static func curlFlags(_ events: UInt32) -> Int32 {
        var flags: Int32 = 0
        if events & EPOLLIN.rawValue != 0 { flags |= CURL_CSELECT_IN }
        if events & EPOLLOUT.rawValue != 0 { flags |= CURL_CSELECT_OUT }
        if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { flags |= CURL_CSELECT_ERR }
        return flags
    }

    /// libcurl's socket callback: watches `socket` for what libcurl waits on, or stops watching it.
    fileprivate func watch(_ socket: curl_socket_t, for what: Int32) -> Int32 {
        if what == CURL_POLL_REMOVE {
            // The socket may be closed already, which removed it from the poller too.
            epoll_ctl(poller, EPOLL_CTL_DEL, socket, nil)
            return 0
        }
        var event = epoll_event()
        event.events = 0
        if what & CURL_POLL_IN != 0 { event.events |= EPOLLIN.rawValue }
        if what & CURL_POLL_OUT != 0 { event.events |= EPOLLOUT.rawValue }
        event.data.fd = socket
        if epoll_ctl(poller, EPOLL_CTL_MOD, socket, &event) == 0 { return 0 }
        return epoll_ctl(poller, EPOLL_CTL_ADD, socket, &event) == 0 ? 0 : -1
    }

    /// Configures an easy handle (a reused one when there is one) for a transfer and hands it to the multi handle.
    private func start(_ transfer: Transfer) {
        guard let easy = idleHandles.popLast() ?? EasyHandle() else {
            transfer.finish(.failure(.unreachable("libcurl could not create a transfer")))
            return
        }

        do {
            try transfer.configure(
                easy, caBundlePath: configuration.caBundlePath, receiveBufferBytes: configuration.receiveBufferBytes)
            try check(curl_multi_add_handle(multi.raw, easy.raw), "starting the transfer")
        } catch {
            easy.cleanup()
            transfer.finish(.failure(.unreachable("could not prepare the upstream call: \(error.message)")))
            return
        }

        transfer.easy = easy
        active[ObjectIdentifier(transfer)] = transfer
    }

    /// Resumes the callers of every transfer libcurl reports as done and keeps their handles for later transfers.
    private func deliverFinished() {
        var queued: Int32 = 0
        while let message = curl_multi_info_read(multi.raw, &queued) {
            guard message.pointee.msg == CURLMSG_DONE, let raw = message.pointee.easy_handle else { continue }

            let easy = EasyHandle(raw: raw)
            // Reading PRIVATE cannot fail for a handle libcurl has just reported on.
            guard let context = try? easy.pointerInfo(CURLINFO_PRIVATE) else { continue }

            // Unmanaged: `active` holds the transfer until this function removes it below.
            let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
            let result = transfer.result(of: message.pointee.data.result, on: easy)

            release(transfer, keepingHandle: true)
            active[ObjectIdentifier(transfer)] = nil
            transfer.finish(result)
        }
    }

    /// Fails every active transfer with `failure`; used when the loop stops or breaks.
    private func abandonActive(_ failure: UpstreamFailure) {
        for transfer in active.values {
            release(transfer, keepingHandle: false)
            transfer.finish(.failure(failure))
        }
        active = [:]
    }

    private func release(_ transfer: Transfer, keepingHandle: Bool) {
        guard let easy = transfer.easy else { return }

        // Removal fails only for a handle the multi does not own, which `active` rules out.
        _ = try? check(curl_multi_remove_handle(multi.raw, easy.raw), "removing a finished transfer")
        transfer.easy = nil
        // A reset handle keeps nothing of the transfer (it points at the transfer's header list and buffers); the
        // connection it used stays in the multi handle's pool.
        if keepingHandle, idleHandles.count < configuration.maxIdleConnections {
            curl_easy_reset(easy.raw)
            idleHandles.append(easy)
        } else {
            easy.cleanup()
        }
    }
}

/// Milliseconds on the monotonic clock, as libcurl's timer is given.
private func monotonicMilliseconds() -> Int {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec * 1000 + now.tv_nsec / 1_000_000
}

/// libcurl's socket callback; the context is the loop set as SOCKETDATA.
private func watchSocket(
    _ easy: UnsafeMutableRawPointer?, _ socket: curl_socket_t, _ what: Int32, _ context: UnsafeMutableRawPointer?,
    _ socketContext: UnsafeMutableRawPointer?
) -> Int32 {
    guard let context else { return -1 }
    // Unmanaged: the loop's thread holds the loop while it runs, and libcurl calls back only from that thread.
    return Unmanaged<CurlEventLoop>.fromOpaque(context).takeUnretainedValue().watch(socket, for: what)
}

/// libcurl's timer callback; the context is the loop set as TIMERDATA.
private func setTimer(_ multi: UnsafeMutableRawPointer?, _ milliseconds: Int, _ context: UnsafeMutableRawPointer?)
    -> Int32
{
    guard let context else { return -1 }
    // Unmanaged: the loop's thread holds the loop while it runs, and libcurl calls back only from that thread.
    let loop = Unmanaged<CurlEventLoop>.fromOpaque(context).takeUnretainedValue()
    loop.timerDeadline = milliseconds < 0 ? nil : monotonicMilliseconds() + milliseconds
    return 0
}

// MARK: - Transfer

/// One call's state while libcurl works on it; libcurl's callbacks reach it through a context pointer.
// @unchecked Sendable: one thread at a time owns it, handed over only through the mutex-protected submission queue.
private final class Transfer: @unchecked Sendable {
    typealias Continuation = CheckedContinuation<Result<UpstreamResponse, UpstreamFailure>, Never>

    let request: UpstreamRequest
    let maxResponseBytes: Int
    var easy: EasyHandle?
    private var continuation: Continuation?
    private var headerFields: [(String, String)] = []
    private var body: [UInt8] = []
    private var bodyTooLarge = false
    /// Request headers in libcurl's form; libcurl reads them until the transfer ends.
    private var headerList: UnsafeMutablePointer<curl_slist>?
    /// libcurl writes a detailed reason here, more useful than the generic text of the code.
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))

    init(request: UpstreamRequest, maxResponseBytes: Int, continuation: Continuation) {
        self.request = request
        self.maxResponseBytes = maxResponseBytes
        self.continuation = continuation
        errorBuffer.initialize(to: 0)
    }

    deinit {
        curl_slist_free_all(headerList)
        errorBuffer.deallocate()
    }

    /// Resumes the caller; later calls do nothing, so each continuation is resumed exactly once.
    func finish(_ result: Result<UpstreamResponse, UpstreamFailure>) {
        continuation?.resume(returning: result)
        continuation = nil
    }

    /// Sets every option the call needs; the transfer must outlive the handle, as the handle points back at it.
    func configure(_ easy: EasyHandle, caBundlePath: String?, receiveBufferBytes: Int) throws(CurlError) {
        try easy.set(CURLOPT_URL, request.url)
        try easy.set(CURLOPT_BUFFERSIZE, receiveBufferBytes)
        try easy.set(CURLOPT_PROTOCOLS_STR, "http,https")
        try easy.set(CURLOPT_NOSIGNAL, 1)
        try easy.set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        try easy.set(CURLOPT_FOLLOWLOCATION, 0)

        try easy.set(CURLOPT_SSL_VERIFYPEER, 1)
        try easy.set(CURLOPT_SSL_VERIFYHOST, 2)
        if let caBundlePath {
            try easy.set(CURLOPT_CAINFO, caBundlePath)
        }

        try easy.set(CURLOPT_CONNECTTIMEOUT_MS, milliseconds(request.connectTimeout))
        try easy.set(CURLOPT_TIMEOUT_MS, milliseconds(request.totalTimeout))

        // An empty list offers every encoding this libcurl decodes and decodes the answer, so an upstream that
        // compresses (asked or not) still gives readable JSON; the size limit applies to the decoded bytes.
        try easy.set(CURLOPT_ACCEPT_ENCODING, "")

        try configureMethodAndBody(easy)
        try configureHeaders(easy)

        // Unmanaged: the event loop holds this transfer in its active table until the handle is cleaned up.
        let context = Unmanaged.passUnretained(self).toOpaque()
        try easy.set(CURLOPT_PRIVATE, pointer: context)
        try easy.set(CURLOPT_WRITEDATA, pointer: context)
        try easy.set(CURLOPT_HEADERDATA, pointer: context)
        try easy.set(CURLOPT_WRITEFUNCTION, callback: receiveBody)
        try easy.set(CURLOPT_HEADERFUNCTION, callback: receiveHeaderLine)
        try easy.set(CURLOPT_ERRORBUFFER, pointer: UnsafeMutableRawPointer(errorBuffer))
    }

    private func configureMethodAndBody(_ easy: EasyHandle) throws(CurlError) {
        switch request.method {
        case "GET" where request.body == nil:
            try easy.set(CURLOPT_HTTPGET, 1)
        case "HEAD":
            try easy.set(CURLOPT_NOBODY, 1)
        case "POST":
            try easy.set(CURLOPT_POST, 1)
        default:
            try easy.set(CURLOPT_CUSTOMREQUEST, request.method)
        }

        guard request.method == "POST" || request.body != nil else { return }

        // A zero-length body still needs a valid pointer, or libcurl would read the body from stdin.
        let body = request.body ?? []
        try easy.set(CURLOPT_POSTFIELDSIZE_LARGE, size: body.count)
        let bytes = body.isEmpty ? [0] : body
        let code = bytes.withUnsafeBytes { buffer in
            pjg_easy_setopt_pointer(
                easy.raw, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: buffer.baseAddress))
        }
        try check(code, "setting the request body")
    }

    private func configureHeaders(_ easy: EasyHandle) throws(CurlError) {
        // A line break would let a header smuggle in headers of its own; the value stays out of the message.
        for (name, value) in request.headers where breaksHeaderLine(name) || breaksHeaderLine(value) {
            throw CurlError(
                message: breaksHeaderLine(name)
                    ? "a request header name contains a line break"
                    : "the value of request header \(name) contains a line break"
            )
        }

        var list: UnsafeMutablePointer<curl_slist>? = nil
        for (name, value) in request.headers {
            list = try append("\(name): \(value)", to: list)
        }

        // An empty `Expect:` stops libcurl from waiting for `100 Continue` before sending larger bodies.
        if request.headers["Expect"] == nil {
            list = try append("Expect:", to: list)
        }

        headerList = list
        try easy.set(CURLOPT_HTTPHEADER, pointer: UnsafeMutableRawPointer(list))
    }

    private func append(_ line: String, to list: UnsafeMutablePointer<curl_slist>?) throws(CurlError)
        -> UnsafeMutablePointer<curl_slist>?
    {
        guard let extended = curl_slist_append(list, line) else {
            curl_slist_free_all(list)
            throw CurlError(message: "out of memory building request headers")
        }
        return extended
    }

    /// Collects body bytes; returning less than offered makes libcurl stop with a write error.
    fileprivate func appendBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard body.count + bytes.count <= maxResponseBytes else {
            bodyTooLarge = true
            return 0
        }
        body.append(contentsOf: bytes)
        return bytes.count
    }

    /// Parses one raw header line; a status line starts a new header block (after 1xx or a proxy's answer).
    fileprivate func appendHeaderLine(_ bytes: UnsafeRawBufferPointer) {
        var line = bytes[...]
        while let last = line.last, last == UInt8(ascii: "\r") || last == UInt8(ascii: "\n") {
            line = line.dropLast()
        }

        if line.starts(with: "HTTP/".utf8) {
            headerFields = []
            return
        }

        if let first = line.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") {
            if let (name, value) = headerFields.popLast() {
                headerFields.append((name, value + " " + trimmed(line)))
            }
            return
        }

        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
        headerFields.append((trimmed(line[..<colon]), trimmed(line[(colon + 1)...])))
    }

    /// The caller's answer once libcurl is done with the transfer.
    func result(of code: CURLcode, on easy: EasyHandle) -> Result<UpstreamResponse, UpstreamFailure> {
        guard code == CURLE_OK else {
            return .failure(failure(for: code, on: easy))
        }

        do {
            let status = try easy.info(CURLINFO_RESPONSE_CODE)
            return .success(UpstreamResponse(status: status, headers: HTTPHeaders(headerFields), body: body))
        } catch {
            return .failure(.brokenResponse("could not read the upstream status: \(error.message)"))
        }
    }

    private func failure(for code: CURLcode, on easy: EasyHandle) -> UpstreamFailure {
        let detail = errorBuffer.pointee == 0 ? code.text : "\(code.text): \(String(cString: errorBuffer))"

        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            let requestSent = ((try? easy.info(CURLINFO_REQUEST_SIZE)) ?? 0) > 0
            let status = (try? easy.info(CURLINFO_RESPONSE_CODE)) ?? 0
            if status > 0 {
                return .timedOut(
                    "the upstream began its answer (HTTP \(status), \(body.count) body bytes) and then stopped "
                        + "sending (\(detail))")
            }
            return requestSent
                ? .timedOut("timed out waiting for the upstream's answer (\(detail))")
                : .timedOut("timed out connecting to the upstream (\(detail))")
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_SSL_CONNECT_ERROR,
            CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CIPHER,
            CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_CRL_BADFILE, CURLE_UNSUPPORTED_PROTOCOL,
            CURLE_URL_MALFORMAT:
            return .unreachable("could not reach the upstream (\(detail))")
        case CURLE_WRITE_ERROR where bodyTooLarge:
            return .unreadable("the upstream's answer is larger than \(maxResponseBytes) bytes")
        case CURLE_BAD_CONTENT_ENCODING:
            return .unreadable("the upstream's compressed body could not be decoded (\(detail))")
        default:
            return .brokenResponse("the upstream's answer broke off (\(detail))")
        }
    }
}

/// libcurl's body callback; the context is the transfer set as WRITEDATA.
private func receiveBody(
    _ buffer: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?
)
    -> Int
{
    guard let buffer, let context else { return 0 }

    // Unmanaged: the event loop holds the transfer until its handle is cleaned up, which ends all callbacks.
    let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
    return transfer.appendBody(UnsafeRawBufferPointer(start: buffer, count: size * count))
}

/// libcurl's header callback, called once per complete header line; the context is the transfer set as HEADERDATA.
private func receiveHeaderLine(
    _ buffer: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?
) -> Int {
    guard let buffer, let context else { return 0 }

    // Unmanaged: the event loop holds the transfer until its handle is cleaned up, which ends all callbacks.
    let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
    transfer.appendHeaderLine(UnsafeRawBufferPointer(start: buffer, count: size * count))
    return size * count
}

/// CR, LF or NUL would end or cut short the header line libcurl sends.
private func breaksHeaderLine(_ text: String) -> Bool {
    text.utf8.contains { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") || $0 == 0 }
}

/// Header text without surrounding spaces and tabs.
private func trimmed(_ bytes: Slice<UnsafeRawBufferPointer>) -> String {
    let isBlank = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
    guard let start = bytes.firstIndex(where: { !isBlank($0) }), let end = bytes.lastIndex(where: { !isBlank($0) })
    else { return "" }
    return String(decoding: bytes[start...end], as: UTF8.self)
}

/// libcurl reads a timeout of 0 as "no limit", so every limit becomes at least one millisecond and at most a day.
private func milliseconds(_ seconds: Double) -> Int {
    let limit = 24.0 * 3600 * 1000
    guard seconds.isFinite else { return Int(limit) }
    return Int(min(max((seconds * 1000).rounded(.up), 1), limit))
}

// MARK: - Handles and return codes

/// A libcurl easy handle; a type of its own so it cannot be mixed up with the multi handle.
private struct EasyHandle {
    let raw: UnsafeMutableRawPointer

    init?() {
        guard let raw = curl_easy_init() else { return nil }
        self.raw = raw
    }

    init(raw: UnsafeMutableRawPointer) {
        self.raw = raw
    }

    func set(_ option: CURLoption, _ value: Int) throws(CurlError) {
        try check(pjg_easy_setopt_long(raw, option, value), "setting option \(option.rawValue)")
    }

    /// libcurl copies string options, so the C string only has to live for the call.
    func set(_ option: CURLoption, _ value: String) throws(CurlError) {
        let code = value.withCString { pjg_easy_setopt_string(raw, option, $0) }
        try check(code, "setting option \(option.rawValue)")
    }

    func set(_ option: CURLoption, pointer: UnsafeMutableRawPointer?) throws(CurlError) {
        try check(pjg_easy_setopt_pointer(raw, option, pointer), "setting option \(option.rawValue)")
    }

    func set(_ option: CURLoption, size: Int) throws(CurlError) {
        try check(pjg_easy_setopt_off_t(raw, option, curl_off_t(size)), "setting option \(option.rawValue)")
    }

    func set(_ option: CURLoption, callback: pjg_curl_data_callback) throws(CurlError) {
        try check(pjg_easy_setopt_data_callback(raw, option, callback), "setting option \(option.rawValue)")
    }

    func info(_ info: CURLINFO) throws(CurlError) -> Int {
        var value = 0
        try check(pjg_easy_getinfo_long(raw, info, &value), "reading transfer info \(info.rawValue)")
        return value
    }

    func pointerInfo(_ info: CURLINFO) throws(CurlError) -> UnsafeMutableRawPointer? {
        var value: UnsafeMutableRawPointer? = nil
        try check(pjg_easy_getinfo_pointer(raw, info, &value), "reading transfer info \(info.rawValue)")
        return value
    }

    func cleanup() {
        curl_easy_cleanup(raw)
    }
}

/// The libcurl multi handle that drives every transfer.
private struct MultiHandle {
    let raw: UnsafeMutableRawPointer

    init(maxIdleConnections: Int) throws(CurlError) {
        guard let raw = curl_multi_init() else {
            throw CurlError(message: "libcurl could not create a multi handle")
        }

        do {
            try check(
                pjg_multi_setopt_long(raw, CURLMOPT_MAXCONNECTS, max(maxIdleConnections, 1)), "setting MAXCONNECTS")
        } catch {
            curl_multi_cleanup(raw)
            throw error
        }
        self.raw = raw
    }

    /// Lets `loop` watch the sockets and keep the timer of every transfer on this handle.
    fileprivate func attach(to loop: CurlEventLoop) throws(CurlError) {
        // Unmanaged: the loop owns this handle and detaches itself before the handle is cleaned up.
        let context = Unmanaged.passUnretained(loop).toOpaque()
        try check(pjg_multi_setopt_pointer(raw, CURLMOPT_SOCKETDATA, context), "setting SOCKETDATA")
        try check(pjg_multi_setopt_socket_callback(raw, watchSocket), "setting SOCKETFUNCTION")
        try check(pjg_multi_setopt_pointer(raw, CURLMOPT_TIMERDATA, context), "setting TIMERDATA")
        try check(pjg_multi_setopt_timer_callback(raw, setTimer), "setting TIMERFUNCTION")
    }

    /// Cleans up without calling back into a loop that is going away.
    func cleanup() {
        _ = pjg_multi_setopt_socket_callback(raw, nil)
        _ = pjg_multi_setopt_timer_callback(raw, nil)
        _ = try? check(curl_multi_cleanup(raw), "closing the multi handle")
    }
}

/// A failed libcurl call, described without any request header values.
private struct CurlError: Error {
    var message: String
}

/// The return codes of libcurl's easy and multi interfaces, so one helper can check both.
private protocol CurlReturnCode {
    var isSuccess: Bool { get }
    var text: String { get }
}

extension CURLcode: CurlReturnCode {
    fileprivate var isSuccess: Bool { self == CURLE_OK }
    fileprivate var text: String { String(cString: curl_easy_strerror(self)) }
}

extension CURLMcode: CurlReturnCode {
    fileprivate var isSuccess: Bool { self == CURLM_OK }
    fileprivate var text: String { String(cString: curl_multi_strerror(self)) }
}

/// Turns any libcurl return code into a thrown error that says what was being done.
private func check<Code: CurlReturnCode>(_ code: Code, _ context: @autoclosure () -> String) throws(CurlError) {
    guard code.isSuccess else {
        throw CurlError(message: "\(context()): \(code.text)")
    }
}
