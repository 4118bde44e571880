import CCurl

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Sends upstream calls through one libcurl multi handle on one event-loop thread, so thousands of calls
/// can be in flight without a thread each and keep-alive connections are reused across calls.
public final class CurlTransport: UpstreamTransport {
    /// Settings fixed for the transport's lifetime.
    public struct Configuration: Sendable {
        /// Idle keep-alive connections kept open; libcurl's default of 5 closes a connection after nearly every call under load.
        public var maxIdleConnections: Int = 256
        /// PEM bundle of trusted CAs for upstream TLS; nil uses the system store. Verification is always on.
        public var caBundlePath: String? = nil
        /// Largest upstream body accepted, counted after decompression; a larger one is an unreadable failure.
        public var maxResponseBytes: Int = 8 << 20

        public init() {}
    }

    /// Why the transport could not start.
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    private let loop: CurlEventLoop
    /// The loop thread until it has been joined; nil afterwards, which makes `shutdown` idempotent.
    private let thread: Locked<pthread_t?>

    /// Starts the event-loop thread.
    public init(configuration: Configuration = .init()) throws {
        if let failure = libcurlSetupFailure {
            throw SetupError(description: failure)
        }

        if let path = configuration.caBundlePath, access(path, R_OK) != 0 {
            throw SetupError(description: "the CA bundle \(path) is not readable")
        }

        let multi: MultiHandle
        do {
            multi = try MultiHandle(maxIdleConnections: configuration.maxIdleConnections)
        } catch {
            throw SetupError(description: error.message)
        }

        loop = CurlEventLoop(multi: multi, configuration: configuration)
        thread = Locked(try loop.startThread())
    }

    deinit {
        shutdown()
    }

    /// Suspends until the loop thread delivers the answer or the failure.
    public func send(_ request: UpstreamRequest) async throws(UpstreamFailure) -> UpstreamResponse {
        let maxResponseBytes = loop.configuration.maxResponseBytes

        // TODO: cancelling the calling task does not abort its transfer yet; the request's total timeout bounds it.
        let result = await withCheckedContinuation { continuation in
            loop.submit(Transfer(request: request, maxResponseBytes: maxResponseBytes, continuation: continuation))
        }
        return try result.get()
    }

    /// Stops the loop, fails the calls still pending and waits for the thread to end.
    public func shutdown() {
        loop.stop()

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

/// Owns the multi handle; only its thread touches transfers once they have left the submission queue.
private final class CurlEventLoop: Sendable {
    /// What callers on other threads share with the loop thread.
    struct Submissions {
        var queue: [Transfer] = []
        var isStopping = false
    }

    let configuration: CurlTransport.Configuration
    private let multi: MultiHandle
    private let submissions = Locked(Submissions())

    init(multi: MultiHandle, configuration: CurlTransport.Configuration) {
        self.multi = multi
        self.configuration = configuration
    }

    deinit {
        multi.cleanup()
    }

    /// Starts the loop thread; the thread keeps the loop alive until `run` returns.
    func startThread() throws(CurlTransport.SetupError) -> pthread_t {
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
            throw CurlTransport.SetupError(description: "could not start the upstream thread (error \(started))")
        }
        return thread
    }

    /// Queues a transfer for the loop thread, or fails it at once after shutdown.
    func submit(_ transfer: Transfer) {
        let accepted = submissions.withLock { submissions in
            guard !submissions.isStopping else { return false }
            submissions.queue.append(transfer)
            return true
        }

        guard accepted else {
            transfer.finish(.failure(.unreachable("the upstream transport has been shut down")))
            return
        }
        wakeUp()
    }

    /// Asks the loop to end; calls not yet handed to libcurl fail here so they never wait for the thread.
    func stop() {
        let abandoned = submissions.withLock { submissions in
            submissions.isStopping = true
            defer { submissions.queue = [] }
            return submissions.queue
        }

        for transfer in abandoned {
            transfer.finish(.failure(.unreachable("the upstream transport shut down before the call was sent")))
        }
        wakeUp()
    }

    private func wakeUp() {
        // A lost wakeup only delays the loop until its poll times out, so there is nothing better to do with an error.
        _ = try? check(curl_multi_wakeup(multi.raw), "waking the upstream loop")
    }

    /// The loop thread's body: start submitted transfers, let libcurl work, deliver finished ones, wait.
    private func run() {
        var active: [ObjectIdentifier: Transfer] = [:]

        while true {
            let (submitted, isStopping) = submissions.withLock { submissions in
                defer { submissions.queue = [] }
                return (submissions.queue, submissions.isStopping)
            }
            if isStopping {
                for transfer in submitted {
                    transfer.finish(.failure(.unreachable("the upstream transport shut down before the call was sent")))
                }
                abandon(&active, .brokenResponse("the upstream transport shut down before the answer arrived"))
                return
            }

            for transfer in submitted {
                start(transfer, in: &active)
            }

            do {
                var running: Int32 = 0
                try check(curl_multi_perform(multi.raw, &running), "driving upstream transfers")
                deliverFinished(from: &active)

                // TODO: curl_multi_socket_action with epoll would scale better than curl_multi_poll, which scans every socket on each pass.
                try check(curl_multi_poll(multi.raw, nil, 0, 1000, nil), "waiting for upstream sockets")
            } catch {
                abandon(&active, .brokenResponse("the upstream event loop failed: \(error.message)"))

                // A multi handle that keeps failing would otherwise turn this loop into a busy spin.
                usleep(10_000)
            }
        }
    }

    /// Creates and configures the easy handle for a transfer and hands it to the multi handle.
    private func start(_ transfer: Transfer, in active: inout [ObjectIdentifier: Transfer]) {
        guard let easy = EasyHandle() else {
            transfer.finish(.failure(.unreachable("libcurl could not create a transfer")))
            return
        }

        do {
            try transfer.configure(easy, caBundlePath: configuration.caBundlePath)
            try check(curl_multi_add_handle(multi.raw, easy.raw), "starting the transfer")
        } catch {
            easy.cleanup()
            transfer.finish(.failure(.unreachable("could not prepare the upstream call: \(error.message)")))
            return
        }

        transfer.easy = easy
        active[ObjectIdentifier(transfer)] = transfer
    }

    /// Resumes the callers of every transfer libcurl reports as done and frees their handles.
    private func deliverFinished(from active: inout [ObjectIdentifier: Transfer]) {
        var queued: Int32 = 0
        while let message = curl_multi_info_read(multi.raw, &queued) {
            guard message.pointee.msg == CURLMSG_DONE, let raw = message.pointee.easy_handle else { continue }

            let easy = EasyHandle(raw: raw)
            // Reading PRIVATE cannot fail for a handle libcurl has just reported on.
            guard let context = try? easy.pointerInfo(CURLINFO_PRIVATE) else { continue }

            // Unmanaged: `active` holds the transfer until this function removes it below.
            let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
            let result = transfer.result(of: message.pointee.data.result, on: easy)

            release(transfer)
            active[ObjectIdentifier(transfer)] = nil
            transfer.finish(result)
        }
    }

    /// Fails every active transfer with `failure`; used when the loop stops or breaks.
    private func abandon(_ active: inout [ObjectIdentifier: Transfer], _ failure: UpstreamFailure) {
        for transfer in active.values {
            release(transfer)
            transfer.finish(.failure(failure))
        }
        active = [:]
    }

    private func release(_ transfer: Transfer) {
        guard let easy = transfer.easy else { return }

        // Removal fails only for a handle the multi does not own, which `active` rules out.
        _ = try? check(curl_multi_remove_handle(multi.raw, easy.raw), "removing a finished transfer")
        easy.cleanup()
        transfer.easy = nil
    }
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
    func configure(_ easy: EasyHandle, caBundlePath: String?) throws(CurlError) {
        try easy.set(CURLOPT_URL, request.url)
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
// @unchecked Sendable: other threads only call curl_multi_wakeup, which libcurl documents as thread-safe.
private struct MultiHandle: @unchecked Sendable {
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

    func cleanup() {
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
