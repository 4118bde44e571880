import CCurl
import CEpoll
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Sends upstream calls through libcurl multi handles, one on each event loop, which tells libcurl of each of its
/// sockets that is ready, so thousands of calls can be in flight without a thread each and keep-alive connections are
/// reused across calls.
///
/// A call made on one of the loops (by a handler task that prefers it) stays on that loop's thread from start to
/// answer.
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
        /// Event loops the transport starts for itself when it is given none.
        public var loops: Int = 2
        /// Bytes libcurl reads from a socket at a time, held by every call in flight: job documents are well under
        /// it, and a larger answer only takes more reads.
        public var receiveBufferBytes: Int = 4 * 1024

        public init() {}
    }

    /// Why the transport could not start.
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    private let multis: [CurlMulti]
    /// Loops this transport started, and stops at shutdown; empty when it was given loops.
    private let ownLoops: [EventLoop]
    private let isShutDown = Atomic(false)
    /// Spreads calls made from outside the loops over them.
    private let nextMulti = Atomic(0)

    /// Drives transfers on `eventLoops`, or on loops of its own when given none.
    public init(configuration: Configuration = .init(), eventLoops: [EventLoop] = []) throws {
        if let failure = libcurlSetupFailure {
            throw SetupError(description: failure)
        }

        if let path = configuration.caBundlePath, access(path, R_OK) != 0 {
            throw SetupError(description: "the CA bundle \(path) is not readable")
        }

        let loops: [EventLoop]
        do {
            loops = eventLoops.isEmpty ? try EventLoop.start(count: configuration.loops) : eventLoops
        } catch {
            throw SetupError(description: error.description)
        }
        ownLoops = eventLoops.isEmpty ? loops : []

        var multis: [CurlMulti] = []
        do {
            for loop in loops {
                multis.append(try CurlMulti(loop: loop, configuration: configuration))
            }
        } catch {
            for multi in multis { multi.close() }
            for loop in ownLoops { loop.stop() }
            throw SetupError(description: error.message)
        }
        self.multis = multis
    }

    deinit {
        shutdown()
    }

    /// Suspends until a loop delivers the answer or the failure.
    public func send(_ request: UpstreamRequest) async throws(UpstreamFailure) -> UpstreamResponse {
        let multi =
            multis.first { $0.loop.isCurrentThread }
            ?? multis[nextMulti.add(1, ordering: .relaxed).oldValue % multis.count]
        let maxResponseBytes = multi.configuration.maxResponseBytes

        // TODO: cancelling the calling task does not abort its transfer yet; the request's total timeout bounds it.
        let result = await withCheckedContinuation { continuation in
            multi.submit(Transfer(request: request, maxResponseBytes: maxResponseBytes, continuation: continuation))
        }
        return try result.get()
    }

    /// Fails the calls still pending, closes every connection, and stops the loops the transport started.
    public func shutdown() {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for multi in multis {
            multi.close()
        }
        for loop in ownLoops {
            loop.stop()
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

// MARK: - Multi handle on an event loop

/// One loop's multi handle and connection pool: the loop tells it of ready sockets and its timer, and only the loop's
/// thread touches its transfers.
///
/// Safe as `@unchecked Sendable`: every field but the immutable ones is touched on the loop thread alone (libcurl's
/// callbacks run inside `curl_multi_socket_action`, called there); other threads reach it through `loop.execute`.
private final class CurlMulti: EventLoopClient, @unchecked Sendable {
    let loop: EventLoop
    let configuration: CurlTransport.Configuration
    private let multi: MultiHandle

    /// Transfers handed to libcurl and not yet finished.
    private var active: [ObjectIdentifier: Transfer] = [:]
    /// Easy handles of finished transfers, reset and kept for the next ones.
    private var idleHandles: [EasyHandle] = []
    /// When libcurl wants `curl_multi_socket_action` called for its timeouts, in monotonic milliseconds.
    fileprivate var timerDeadline: Int?
    private var isClosed = false

    init(loop: EventLoop, configuration: CurlTransport.Configuration) throws(CurlError) {
        self.loop = loop
        self.configuration = configuration
        multi = try MultiHandle(maxIdleConnections: configuration.maxIdleConnections)

        var attached: Result<Void, CurlError> = .success(())
        loop.executeAndWait { [self] in
            loop.register(self)
            do throws(CurlError) {
                try multi.attach(to: self)
            } catch {
                attached = .failure(error)
            }
        }
        if case .failure(let error) = attached {
            close()
            throw error
        }
    }

    /// Starts a transfer on the loop, or fails it once the transport has shut down.
    func submit(_ transfer: Transfer) {
        let queued = loop.execute { [self] in
            guard !isClosed else {
                transfer.finish(.failure(.unreachable("the upstream transport has been shut down")))
                return
            }
            start(transfer)
        }
        if !queued {
            transfer.finish(.failure(.unreachable("the upstream transport has been shut down")))
        }
    }

    /// Fails the transfers in flight and frees the handles, on the loop's thread; later submissions fail at once.
    func close() {
        loop.executeAndWait { [self] in
            guard !isClosed else { return }
            isClosed = true
            abandonActive(.brokenResponse("the upstream transport shut down before the answer arrived"))
            for easy in idleHandles {
                easy.cleanup()
            }
            idleHandles = []
            multi.cleanup()
            loop.unregister(self)
        }
    }

    func ready(_ descriptor: Int32, events: UInt32) {
        guard !isClosed else { return }
        var flags: Int32 = 0
        if events & EPOLLIN.rawValue != 0 { flags |= CURL_CSELECT_IN }
        if events & EPOLLOUT.rawValue != 0 { flags |= CURL_CSELECT_OUT }
        if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { flags |= CURL_CSELECT_ERR }
        act(on: descriptor, flags: flags)
    }

    func millisecondsUntilDue() -> Int? {
        timerDeadline.map { $0 - monotonicMilliseconds() }
    }

    func due() {
        guard !isClosed else { return }
        if let deadline = timerDeadline, deadline <= monotonicMilliseconds() {
            timerDeadline = nil
            act(on: CURL_SOCKET_TIMEOUT, flags: 0)
        }
        deliverFinished()
    }

    private func act(on socket: curl_socket_t, flags: Int32) {
        var running: Int32 = 0
        do {
            try check(curl_multi_socket_action(multi.raw, socket, flags, &running), "driving upstream transfers")
        } catch {
            abandonActive(.brokenResponse("the upstream event loop failed: \(error.message)"))
        }
    }

    /// libcurl's socket callback: watches `socket` for what libcurl waits on, or stops watching it.
    fileprivate func watch(_ socket: curl_socket_t, for what: Int32) -> Int32 {
        if what == CURL_POLL_REMOVE {
            loop.unwatch(socket)
            return 0
        }
        var events: UInt32 = 0
        if what & CURL_POLL_IN != 0 { events |= EPOLLIN.rawValue }
        if what & CURL_POLL_OUT != 0 { events |= EPOLLOUT.rawValue }
        return loop.watch(socket, events: events, for: self) ? 0 : -1
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

    /// Fails every active transfer with `failure`; used when the transport stops or libcurl breaks.
    private func abandonActive(_ failure: UpstreamFailure) {
        let abandoned = active.values
        active = [:]
        for transfer in abandoned {
            release(transfer, keepingHandle: false)
            transfer.finish(.failure(failure))
        }
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

/// libcurl's socket callback; the context is the multi set as SOCKETDATA.
private func watchSocket(
    _ easy: UnsafeMutableRawPointer?, _ socket: curl_socket_t, _ what: Int32, _ context: UnsafeMutableRawPointer?,
    _ socketContext: UnsafeMutableRawPointer?
) -> Int32 {
    guard let context else { return -1 }
    // Unmanaged: the multi detaches its callbacks before it goes, and libcurl calls back only on its loop's thread.
    return Unmanaged<CurlMulti>.fromOpaque(context).takeUnretainedValue().watch(socket, for: what)
}

/// libcurl's timer callback; the context is the multi set as TIMERDATA.
private func setTimer(_ multi: UnsafeMutableRawPointer?, _ milliseconds: Int, _ context: UnsafeMutableRawPointer?)
    -> Int32
{
    guard let context else { return -1 }
    // Unmanaged: the multi detaches its callbacks before it goes, and libcurl calls back only on its loop's thread.
    let owner = Unmanaged<CurlMulti>.fromOpaque(context).takeUnretainedValue()
    owner.timerDeadline = milliseconds < 0 ? nil : monotonicMilliseconds() + milliseconds
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

    /// The smallest upload buffer libcurl takes.
    static let uploadBufferBytes = 16 * 1024

    /// Sets every option the call needs; the transfer must outlive the handle, as the handle points back at it.
    func configure(_ easy: EasyHandle, caBundlePath: String?, receiveBufferBytes: Int) throws(CurlError) {
        try easy.set(CURLOPT_URL, request.url)
        try easy.set(CURLOPT_BUFFERSIZE, receiveBufferBytes)
        // Over TLS libcurl copies what it sends into an upload buffer of this size, allocated for every call in
        // flight: its default of 64 KiB was most of an HTTPS call's memory, for a request head and a small body.
        try easy.set(CURLOPT_UPLOAD_BUFFERSIZE, Self.uploadBufferBytes)
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

        // Each line is assembled as bytes, once per header of every call: string interpolation cost more than
        // libcurl's own work on the line.
        var list: UnsafeMutablePointer<curl_slist>? = nil
        var line: [UInt8] = []
        for (name, value) in request.headers {
            line.removeAll(keepingCapacity: true)
            line.append(contentsOf: name.utf8)
            line.append(contentsOf: ": ".utf8)
            line.append(contentsOf: value.utf8)
            line.append(0)
            list = try line.withUnsafeBufferPointer { bytes throws(CurlError) in
                try bytes.withMemoryRebound(to: CChar.self) { text throws(CurlError) in
                    try append(text.baseAddress!, to: list)
                }
            }
        }

        // An empty `Expect:` stops libcurl from waiting for `100 Continue` before sending larger bodies.
        if request.headers["Expect"] == nil {
            list = try append("Expect:", to: list)
        }

        headerList = list
        try easy.set(CURLOPT_HTTPHEADER, pointer: UnsafeMutableRawPointer(list))
    }

    /// libcurl copies the line, so it only has to live for the call.
    private func append(_ line: UnsafePointer<CChar>, to list: UnsafeMutablePointer<curl_slist>?) throws(CurlError)
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

    /// Lets `owner` watch the sockets and keep the timer of every transfer on this handle.
    fileprivate func attach(to owner: CurlMulti) throws(CurlError) {
        // Unmanaged: the owner cleans this handle up, callbacks detached first, before it goes.
        let context = Unmanaged.passUnretained(owner).toOpaque()
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
