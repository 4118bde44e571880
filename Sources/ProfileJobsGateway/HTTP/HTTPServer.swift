import CEpoll
import CMicroHTTPD
import Dispatch
import Glibc
import Synchronization

/// How the listening side behaves: every limit here bounds memory or threads per client.
public struct HTTPServerConfiguration: Sendable {
    /// Address to bind: an IPv4 or IPv6 literal.
    public var host = "127.0.0.1"
    /// 0 picks a free port; `HTTPServer.port` tells which.
    public var port: UInt16 = 0
    /// Event loops the server starts for itself when given none in `eventLoops`.
    public var threads = 2
    /// Open connections served at most; a request on a connection beyond them is answered 503 and the connection
    /// closed. libmicrohttpd itself closes connections beyond a little more than this without answering.
    public var connectionLimit = 4096
    /// Paths answered even on a connection beyond `connectionLimit`: a health probe must not fail because the server
    /// is busy, or an orchestrator restarts a healthy server and cuts off its calls in flight.
    public var pathsBeyondConnectionLimit: Set<String> = []
    /// Seconds a connection may stay open without sending or receiving a byte.
    public var connectionTimeoutSeconds = 30
    /// Seconds a client has to deliver a whole request (line, headers and body) from the moment its connection
    /// opened or its previous answer was sent; a slow one is disconnected, however steadily it trickles bytes.
    /// Time spent handling the request does not count.
    public var requestTimeoutSeconds = 30.0
    /// Bytes of header and read buffer per connection; the body is copied out of it as it arrives.
    public var connectionMemoryLimit = 32 * 1024
    /// Largest request body accepted; a larger one is answered 413 without reaching the handler.
    public var maxBodyBytes = 1 << 20
    /// Largest request target (path and query); a longer one is answered 414.
    public var maxTargetBytes = 4096
    /// Largest sum of header names and values; more is answered 431. Keep it well below `connectionMemoryLimit`:
    /// a head that does not fit there is refused by libmicrohttpd itself, with a plain page.
    public var maxHeaderBytes = 16 * 1024
    public var listenBacklog = 1024
    /// Loops to serve on, one listener each on the same port; empty starts `threads` loops of the server's own.
    /// Each connection's requests and their handler tasks run on the loop that accepted it, so sharing the loops
    /// with the upstream client keeps a request, its upstream call and its answer on one thread.
    public var eventLoops: [EventLoop] = []

    public init() {}
}

/// One answered request, as the access log sees it: what was asked and what was really sent.
public struct HTTPExchange: Sendable {
    public var method: String
    /// The path without the query string.
    public var path: String
    public var requestHeaders: HTTPHeaders
    public var response: HTTPResponse
    public var seconds: Double
    /// Body bytes received from the client.
    public var requestBytes: Int
    /// The peer's address as text, empty when unknown.
    public var remoteAddress: String
    /// Whether the handler was given the request; false when the server answered before it could.
    public var reachedHandler: Bool
    /// Why the server answered by itself, when it did.
    public var refusal: ServerRefusal?
}

/// An answer the server gives on its own, without the handler.
public enum ServerRefusal: Sendable, Equatable {
    case bodyTooLarge(String)
    /// The request target is longer than `maxTargetBytes`.
    case targetTooLong(limit: Int)
    /// The headers add up to more than `maxHeaderBytes`.
    case headersTooLarge(limit: Int)
    /// The head has so many fields (headers, query parameters, cookies) that the connection's memory would have no
    /// room left for the answer's head.
    case tooManyFields(fields: Int)
    /// A header that makes the request's length ambiguous (two lengths, a length and a transfer coding, an unknown
    /// coding): answered and the connection closed, since what follows cannot be trusted to
    /// be the next request.
    case malformedHeader(name: String, reason: String)
    /// More connections are open than `connectionLimit`; this one is closed after the answer.
    case tooManyConnections(limit: Int)
    /// Stopping: the request was not given to the handler.
    case shuttingDown
    /// Stopping: the handler was still working on the request when the grace period ended, so what it set in
    /// motion may have happened.
    case interrupted

    public var status: Int {
        switch self {
        case .bodyTooLarge: 413
        case .targetTooLong: 414
        case .headersTooLarge, .tooManyFields: 431
        case .malformedHeader: 400
        case .tooManyConnections, .shuttingDown, .interrupted: 503
        }
    }

    public var detail: String {
        switch self {
        case .bodyTooLarge(let detail): detail
        case .targetTooLong(let limit): "The request target is longer than \(limit) bytes; shorten the path or query."
        case .headersTooLarge(let limit):
            "The request headers add up to more than \(limit) bytes; send fewer or shorter ones."
        case .tooManyFields(let fields):
            "The request has \(fields) header fields, query parameters and cookies, too many to answer; send fewer."
        case .malformedHeader(let name, let reason): "The \(name) header \(reason)."
        case .tooManyConnections(let limit):
            "The server already has \(limit) connections open; retry in a moment, reusing one connection."
        case .shuttingDown: "The server is shutting down; retry the request."
        case .interrupted: "The server stopped before the request was answered; it may have been carried out."
        }
    }
}

/// Why the server could not start.
public struct HTTPServerError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// An HTTP/1.1 server on libmicrohttpd: a daemon on each event loop reads requests, suspends each connection while
/// its handler runs asynchronously (as a task on the same loop), and resumes it with the answer, so a slow upstream
/// never holds a thread.
public final class HTTPServer: Sendable {
    private let core: ServerCore

    /// - Parameters:
    ///   - errorResponse: builds the answers the server gives on its own (413, 503 at shutdown), given the
    ///     request's headers.
    ///   - accessLog: told of every answer queued, whoever made it, with the status actually sent.
    public init(
        configuration: HTTPServerConfiguration = .init(),
        handler: any HTTPHandler,
        errorResponse: @escaping @Sendable (_ refusal: ServerRefusal, _ headers: HTTPHeaders) -> HTTPResponse =
            HTTPServer.plainError,
        accessLog: (@Sendable (HTTPExchange) -> Void)? = nil
    ) {
        core = ServerCore(
            configuration: configuration, handler: handler, errorResponse: errorResponse, accessLog: accessLog)
    }

    /// Binds and starts serving; returns the bound port.
    @discardableResult
    public func start() throws(HTTPServerError) -> UInt16 {
        try core.start()
    }

    /// The bound port, 0 before `start`.
    public var port: UInt16 { core.boundPort }

    /// Connections open now, as the server counts them against `connectionLimit`.
    public var openConnections: Int { core.watches.withLock { $0.count } }

    /// Connections closed so far for not delivering a request within `requestTimeoutSeconds`.
    public var slowClientsDisconnected: Int { core.slowClientsDisconnected.load(ordering: .relaxed) }

    /// Stops taking connections, lets requests already being handled finish for up to `grace`, answers the rest
    /// with 503, and stops the threads. New requests on open connections are answered 503 at once meanwhile.
    public func stop(grace: Duration = .zero) {
        core.stop(grace: grace)
    }

    public static func plainError(_ refusal: ServerRefusal, headers: HTTPHeaders) -> HTTPResponse {
        HTTPResponse(
            status: refusal.status,
            headers: HTTPHeaders([("Content-Type", "text/plain; charset=utf-8")]),
            body: Array((refusal.detail + "\n").utf8)
        )
    }
}

/// Per-request state that lives from the request line to the completion callback.
///
/// Safe as `@unchecked Sendable`: libmicrohttpd calls back for one connection from one thread at a time, and the
/// only field another thread touches (`answer`) is written and read under `ServerCore.suspended`'s lock.
private final class RequestContext: @unchecked Sendable {
    enum Phase {
        case headers
        case body
        case handling
    }

    let target: String
    let connection: OpaquePointer
    let started = ContinuousClock.now
    var phase = Phase.headers
    var method = ""
    var headers = HTTPHeaders()
    /// Bytes of the header lines as received (name, value, separator, line end), which the connection's memory holds.
    var headerLineBytes = 0
    var body: [UInt8] = []
    var requestBytes = 0
    var reachedHandler = false
    var bodyTooLarge = false
    /// Why the server answered by itself, when it did.
    var refusal: ServerRefusal?
    var answer: HTTPResponse?
    /// Whether an answer was handed to libmicrohttpd (and the access log told of it).
    var queued = false
    /// The handler answered and the connection was resumed; counted in `answersOwed` until the request completes.
    var owed = false
    /// The daemon the connection belongs to, which must be run again once the connection is resumed.
    var driver: DaemonDriver?
    /// The peer's address as text, read once for the handler and the access log.
    lazy var remoteAddress = ServerCore.clientAddress(connection)

    init(target: String, connection: OpaquePointer) {
        self.target = target
        self.connection = connection
    }
}

/// Safe as `@unchecked Sendable`: `daemons`, `ownLoops` and `boundPort` are written in `start` before any callback
/// can run and cleared in `stop` after the daemons have stopped; everything else is immutable or behind a lock.
private final class ServerCore: @unchecked Sendable {
    /// One open connection, as the request-time watch sees it.
    struct ConnectionWatch {
        let socket: Int32
        /// When the connection began waiting for its next request; nil while a handler has the request.
        var readingSince: ContinuousClock.Instant?
    }

    struct Suspended {
        /// No new request is handed to the handler once set.
        var draining = false
        /// No suspended request is resumed by its handler once set; `stop` answers them all itself.
        var stopped = false
        var contexts: [ObjectIdentifier: RequestContext] = [:]
    }

    let configuration: HTTPServerConfiguration
    let handler: any HTTPHandler
    let errorResponse: @Sendable (ServerRefusal, HTTPHeaders) -> HTTPResponse
    let accessLog: (@Sendable (HTTPExchange) -> Void)?
    let suspended = Locked(Suspended())
    /// Requests between their request line and their completion callback.
    let liveRequests = Atomic(0)
    /// Requests whose handler has answered within the grace but whose answer has not gone out yet.
    let answersOwed = Atomic(0)
    /// Every open connection by the address of its libmicrohttpd handle, from its start notice to its close notice. The close
    /// notice comes before the socket is closed, so a socket found here under the lock is still this connection's.
    let watches = Locked<[UInt: ConnectionWatch]>([:])
    let slowClientsDisconnected = Atomic(0)
    var watchdog: (any DispatchSourceTimer)?
    var daemons: [DaemonDriver] = []
    /// Loops the server started, and stops with it; empty when it was given loops.
    var ownLoops: [EventLoop] = []
    var boundPort: UInt16 = 0
    /// The daemon's callbacks reach this object through an unretained pointer; this keeps it alive meanwhile.
    var selfReference: Unmanaged<ServerCore>?

    init(
        configuration: HTTPServerConfiguration,
        handler: any HTTPHandler,
        errorResponse: @escaping @Sendable (ServerRefusal, HTTPHeaders) -> HTTPResponse,
        accessLog: (@Sendable (HTTPExchange) -> Void)?
    ) {
        self.configuration = configuration
        self.handler = handler
        self.errorResponse = errorResponse
        self.accessLog = accessLog
    }

    func start() throws(HTTPServerError) -> UInt16 {
        let loops: [EventLoop]
        do {
            loops =
                configuration.eventLoops.isEmpty
                ? try EventLoop.start(count: configuration.threads) : configuration.eventLoops
        } catch {
            throw HTTPServerError(description: error.description)
        }
        ownLoops = configuration.eventLoops.isEmpty ? loops : []

        // Unmanaged: retained here and released in `stop`, after the daemons (the only users) have stopped.
        let reference = Unmanaged.passRetained(self)
        selfReference = reference
        var port = configuration.port
        for loop in loops {
            guard let daemon = startDaemon(port: port, sharingPort: loops.count > 1, context: reference.toOpaque())
            else {
                stopDaemons()
                throw HTTPServerError(
                    description:
                        "cannot listen on \(configuration.host):\(configuration.port) (address in use or not local?)")
            }
            let driver = DaemonDriver(daemon: daemon, loop: loop)
            daemons.append(driver)
            guard driver.attach() else {
                stopDaemons()
                throw HTTPServerError(description: "cannot watch the listener on an event loop")
            }
            port = pjg_mhd_bound_port(daemon)
        }
        boundPort = port
        startWatchdog()
        return boundPort
    }

    /// A daemon without threads of its own, for an event loop to drive; every daemon after the first listens on
    /// the port the first one bound, the kernel spreading new connections over them.
    private func startDaemon(port: UInt16, sharingPort: Bool, context: UnsafeMutableRawPointer) -> OpaquePointer? {
        var storage = sockaddr_storage()
        var flags = UInt32(MHD_USE_EPOLL.rawValue) | UInt32(MHD_ALLOW_SUSPEND_RESUME.rawValue)
        guard (try? fillAddress(&storage, port: port, flags: &flags)) != nil else { return nil }
        return withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                pjg_mhd_start(
                    flags, address, accessCallback, completedCallback, uriLogCallback, connectionCallback,
                    context, UInt32(Self.hardConnectionLimit(configuration.connectionLimit)),
                    UInt32(configuration.connectionTimeoutSeconds), configuration.connectionMemoryLimit,
                    UInt32(configuration.listenBacklog), sharingPort ? 1 : 0)
            }
        }
    }

    /// Stops every daemon on its loop, closes their listeners and stops the loops the server started.
    private func stopDaemons(listening: [Int32] = []) {
        for driver in daemons {
            driver.stop()
        }
        for socket in listening where socket >= 0 {
            close(socket)
        }
        daemons = []
        for loop in ownLoops {
            loop.stop()
        }
        ownLoops = []
        selfReference?.release()
        selfReference = nil
    }

    /// libmicrohttpd closes connections beyond its own limit without a word; a little room above ours lets the
    /// server tell the clients in between why it turns them away.
    static func hardConnectionLimit(_ limit: Int) -> Int {
        limit + max(16, limit / 16)
    }

    /// Checks a few times a second for clients that have taken longer than `requestTimeoutSeconds` to deliver a
    /// request, and shuts their sockets down; libmicrohttpd then sees the connection end and closes it. Its own
    /// timeout restarts with every byte, so alone it lets a client trickle a request forever.
    private func startWatchdog() {
        let limit = Duration.seconds(configuration.requestTimeoutSeconds)
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "http-server.request-watch"))
        let period = min(0.25, max(0.01, configuration.requestTimeoutSeconds / 4))
        timer.schedule(deadline: .now() + period, repeating: period)
        timer.setEventHandler { [self] in
            let now = ContinuousClock.now
            let cut = watches.withLock { watches in
                var cut = 0
                for (connection, watch) in watches {
                    guard let since = watch.readingSince, now - since > limit else { continue }
                    shutdown(watch.socket, Int32(SHUT_RDWR))
                    watches[connection]?.readingSince = nil
                    cut += 1
                }
                return cut
            }
            if cut > 0 {
                slowClientsDisconnected.add(cut, ordering: .relaxed)
            }
        }
        timer.resume()
        watchdog = timer
    }

    func connectionStarted(_ connection: OpaquePointer) {
        let socket = pjg_mhd_connection_fd(connection)
        guard socket >= 0 else { return }
        watches.withLock { $0[UInt(bitPattern: connection)] = ConnectionWatch(socket: socket, readingSince: .now) }
    }

    func connectionClosed(_ connection: OpaquePointer) {
        _ = watches.withLock { $0.removeValue(forKey: UInt(bitPattern: connection)) }
    }

    /// The request is read: what happens next (the handler, or the server's own refusal) is not the client's time.
    private func requestRead(_ connection: OpaquePointer) {
        watches.withLock { $0[UInt(bitPattern: connection)]?.readingSince = nil }
    }

    /// An answer went out: the client's time for its next request on this connection starts now.
    func requestCompleted(_ connection: OpaquePointer) {
        watches.withLock { $0[UInt(bitPattern: connection)]?.readingSince = .now }
    }

    /// A request the handler took whose client left before the answer could be queued: libmicrohttpd ends it
    /// without asking for the answer, and the access log and the metrics would never hear of it. It is told as
    /// 499, the status proxies use for a client that closed its request.
    func requestEnded(_ context: RequestContext) {
        guard context.reachedHandler, !context.queued else { return }
        context.queued = true
        var abandoned = context.answer ?? HTTPResponse(status: Self.clientClosedStatus)
        abandoned.status = Self.clientClosedStatus
        log(abandoned, for: context)
    }

    static let clientClosedStatus = 499

    private func log(_ response: HTTPResponse, for context: RequestContext) {
        guard let accessLog else { return }
        let path = String(Self.path(of: context.target))
        accessLog(
            HTTPExchange(
                method: context.method, path: path, requestHeaders: context.headers, response: response,
                seconds: (ContinuousClock.now - context.started).seconds, requestBytes: context.requestBytes,
                remoteAddress: context.remoteAddress, reachedHandler: context.reachedHandler,
                refusal: context.refusal))
    }

    func stop(grace: Duration) {
        guard !daemons.isEmpty else { return }
        // Quiescing hands each listening socket back to the caller; it may only be closed once its daemon has
        // stopped, and left open it keeps taking connections that nobody will ever answer.
        let listening = daemons.map { $0.quiesce() }
        suspended.withLock { $0.draining = true }

        let deadline = ContinuousClock.now + grace
        while !suspended.withLock({ $0.contexts.isEmpty }), ContinuousClock.now < deadline {
            usleep(10_000)
        }

        // Under the lock, so that no handler can resume a connection that this loop resumes too.
        suspended.withLock { state in
            state.stopped = true
            for context in state.contexts.values {
                context.refusal = .interrupted
                context.answer = errorResponse(.interrupted, context.headers)
                MHD_resume_connection(context.connection)
                context.driver?.resumed()
            }
            state.contexts.removeAll()
        }
        // Answers the handlers gave within the grace get the rest of it to go out, however busy the loops are.
        while answersOwed.load(ordering: .acquiring) > 0, ContinuousClock.now < deadline {
            usleep(10_000)
        }
        waitForLiveRequests(upTo: .seconds(2))

        watchdog?.cancel()
        watchdog = nil
        stopDaemons(listening: listening)
    }

    /// Gives answers already queued a moment to reach their clients, and requests already sent on accepted
    /// connections a moment to be read and refused, before the daemon closes every socket: it waits until no
    /// request has been live for a few consecutive checks.
    private func waitForLiveRequests(upTo limit: Duration) {
        let deadline = ContinuousClock.now + limit
        var quietChecks = 0
        while quietChecks < 3, ContinuousClock.now < deadline {
            usleep(10_000)
            quietChecks = liveRequests.load(ordering: .acquiring) == 0 ? quietChecks + 1 : 0
        }
    }

    private func fillAddress(_ storage: inout sockaddr_storage, port: UInt16, flags: inout UInt32)
        throws(HTTPServerError)
    {
        let host = configuration.host
        let port = port.bigEndian
        let ok = withUnsafeMutablePointer(to: &storage) { pointer -> Bool in
            if host.contains(":") {
                flags |= UInt32(MHD_USE_IPv6.rawValue)
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    address.pointee.sin6_family = sa_family_t(AF_INET6)
                    address.pointee.sin6_port = port
                    return inet_pton(AF_INET6, host, &address.pointee.sin6_addr) == 1
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                address.pointee.sin_family = sa_family_t(AF_INET)
                address.pointee.sin_port = port
                return inet_pton(AF_INET, host, &address.pointee.sin_addr) == 1
            }
        }
        guard ok else {
            throw HTTPServerError(description: "listen address '\(host)' is not an IPv4 or IPv6 literal")
        }
    }

    // MARK: Callbacks from the daemon's threads

    func access(
        connection: OpaquePointer,
        method: UnsafePointer<CChar>,
        upload: UnsafePointer<CChar>?,
        uploadSize: UnsafeMutablePointer<Int>,
        context: RequestContext
    ) -> MHD_Result {
        switch context.phase {
        case .headers:
            context.method = String(cString: method)
            MHD_get_connection_values(
                connection, .HEADER_KIND, headerCallback, Unmanaged.passUnretained(context).toOpaque())
            context.phase = .body
            if let refusal = refusalOfHead(context) {
                requestRead(connection)
                return refuse(refusal, context)
            }
            if let length = context.headers["Content-Length"].flatMap(Int.init), length > configuration.maxBodyBytes {
                // Answering before the body arrives spares reading it, and a client that sent
                // `Expect: 100-continue` never sends it.
                context.bodyTooLarge = true
                requestRead(connection)
                return refuse(.bodyTooLarge(bodyTooLargeDetail), context)
            }
            return .YES

        case .body:
            if uploadSize.pointee > 0 {
                receive(upload, count: uploadSize.pointee, into: context)
                uploadSize.pointee = 0
                return .YES
            }
            requestRead(connection)
            if context.bodyTooLarge {
                return refuse(.bodyTooLarge(bodyTooLargeDetail), context)
            }
            return dispatch(context)

        case .handling:
            let answer = suspended.withLock { _ in
                let answer = context.answer
                context.answer = nil
                return answer
            }
            guard let answer else { return .YES }
            return queue(answer, for: context)
        }
    }

    /// A request line or headers beyond the limits, or a connection beyond the cap, is answered before anything
    /// else is read.
    private func refusalOfHead(_ context: RequestContext) -> ServerRefusal? {
        if context.target.utf8.count > configuration.maxTargetBytes {
            return .targetTooLong(limit: configuration.maxTargetBytes)
        }
        let headerBytes = context.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count }
        if headerBytes > configuration.maxHeaderBytes {
            return .headersTooLarge(limit: configuration.maxHeaderBytes)
        }
        let (fields, memory) = headMemory(context)
        if memory + Self.answerHeadReserve > configuration.connectionMemoryLimit {
            return .tooManyFields(fields: fields)
        }
        let path = Self.path(of: context.target)
        if watches.withLock({ $0.count }) > configuration.connectionLimit,
            !configuration.pathsBeyondConnectionLimit.contains(String(path))
        {
            return .tooManyConnections(limit: configuration.connectionLimit)
        }
        return Self.framingRefusal(context.headers)
    }

    /// Room kept in a connection's memory for the answer's head: the longest the gateway sends (status line, date,
    /// media type, length, a 128-byte request id, a `Location`, `Allow` or `Retry-After`) is about 500 bytes.
    static let answerHeadReserve = 1024

    /// The fields of the head and the bytes of connection memory libmicrohttpd holds for it until the request ends:
    /// the raw head, 64 bytes for each header, query parameter and cookie, and a copy of each `Cookie` header. A head
    /// that leaves less than an answer's head of the rest gets no answer at all, after the handler has run; fields
    /// are what make a head costly well inside `maxHeaderBytes` (about 120 of 50 bytes fill 16 KiB).
    private func headMemory(_ context: RequestContext) -> (fields: Int, bytes: Int) {
        let arguments = Int(MHD_get_connection_values(context.connection, .GET_ARGUMENT_KIND, nil, nil))
        let cookies = Int(MHD_get_connection_values(context.connection, .COOKIE_KIND, nil, nil))
        let cookieCopies = cookies == 0 ? 0 : context.headers.values(for: "Cookie").reduce(0) { $0 + $1.utf8.count + 1 }
        let fields = context.headers.fields.count + arguments + cookies

        // "METHOD target HTTP/1.1\r\n", the header lines, the empty line.
        let requestLine = context.method.utf8.count + 1 + context.target.utf8.count + 11
        let rawHead = requestLine + context.headerLineBytes + 2
        return (fields, rawHead + 64 * fields + cookieCopies)
    }

    /// Headers that would let a request be read two ways (RFC 9112, section 6.3): the server reads the body one
    /// way, and something in front of it or behind it could read it another, smuggling a request in the rest.
    static func framingRefusal(_ headers: HTTPHeaders) -> ServerRefusal? {
        let lengths = headers.values(for: "Content-Length")
        let codings = headers.values(for: "Transfer-Encoding")
        if lengths.count > 1 {
            return .malformedHeader(name: "Content-Length", reason: "is given more than once; send it once")
        }
        guard !codings.isEmpty else { return nil }
        if !lengths.isEmpty {
            return .malformedHeader(
                name: "Transfer-Encoding", reason: "comes with a Content-Length; send one of the two, not both")
        }
        guard codings.count == 1, codings[0].lowercased() == "chunked" else {
            return .malformedHeader(
                name: "Transfer-Encoding",
                reason: "names a coding the gateway does not take; send the body with Content-Length or chunked")
        }
        return nil
    }

    private func refuse(_ refusal: ServerRefusal, _ context: RequestContext) -> MHD_Result {
        context.refusal = refusal
        var response = errorResponse(refusal, context.headers)
        switch refusal {
        case .tooManyConnections, .malformedHeader: response.headers.set("Connection", "close")
        default: break
        }
        return queue(response, for: context)
    }

    private var bodyTooLargeDetail: String {
        "The request body is larger than \(configuration.maxBodyBytes) bytes; send a smaller body."
    }

    private func receive(_ upload: UnsafePointer<CChar>?, count: Int, into context: RequestContext) {
        guard !context.bodyTooLarge, let upload else { return }
        guard context.body.count + count <= configuration.maxBodyBytes else {
            context.bodyTooLarge = true
            context.body = []
            return
        }
        upload.withMemoryRebound(to: UInt8.self, capacity: count) { bytes in
            context.body.append(contentsOf: UnsafeBufferPointer(start: bytes, count: count))
        }
    }

    /// Suspends the connection before the handler can finish, so the resume can never overtake the suspend.
    private func dispatch(_ context: RequestContext) -> MHD_Result {
        let (path, query) = HTTPRequest.splitTarget(context.target[...])
        let request = HTTPRequest(
            method: context.method, path: path, query: query, headers: context.headers, body: context.body,
            remoteAddress: context.remoteAddress)
        context.requestBytes = context.body.count
        context.body = []

        context.phase = .handling
        let accepted = suspended.withLock { state in
            guard !state.draining else { return false }
            MHD_suspend_connection(context.connection)
            context.reachedHandler = true
            state.contexts[ObjectIdentifier(context)] = context
            return true
        }
        guard accepted else {
            return refuse(.shuttingDown, context)
        }

        let handler = self.handler
        // The loop running this callback is the connection's: the handler runs there too.
        context.driver = daemons.first { $0.loop.isCurrentThread }
        Task(executorPreference: context.driver?.loop) {
            let answer = await handler.handle(request)
            self.complete(context, with: answer)
        }
        return .YES
    }

    private func complete(_ context: RequestContext, with answer: HTTPResponse) {
        suspended.withLock { state in
            guard !state.stopped, state.contexts.removeValue(forKey: ObjectIdentifier(context)) != nil else { return }
            context.answer = answer
            context.owed = true
            answersOwed.add(1, ordering: .relaxed)
            MHD_resume_connection(context.connection)
            context.driver?.resumed()
        }
    }

    /// The request is over, answered or not: an answer owed is no longer waited for.
    func requestFinished(_ context: RequestContext) {
        guard context.owed else { return }
        context.owed = false
        answersOwed.subtract(1, ordering: .releasing)
    }

    /// The target up to its query, found by bytes: every request needs it twice, and splitting by characters costs
    /// more than the rest of reading the head.
    private static func path(of target: String) -> Substring {
        guard let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return target[...] }
        return target[..<mark]
    }

    static func clientAddress(_ connection: OpaquePointer) -> String {
        var address = [CChar](repeating: 0, count: 64)
        pjg_mhd_client_address(connection, &address, address.count)
        return String(decoding: address.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func queue(_ response: HTTPResponse, for context: RequestContext) -> MHD_Result {
        context.queued = true
        log(response, for: context)
        let connection = context.connection
        let created = response.body.withUnsafeBytes { bytes in
            MHD_create_response_from_buffer(
                bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress), .RESPMEM_MUST_COPY)
        }
        guard let created else { return .NO }
        defer { MHD_destroy_response(created) }

        for field in response.headers {
            MHD_add_response_header(created, field.name, field.value)
        }
        return MHD_queue_response(connection, UInt32(response.status), created)
    }
}

/// Drives one daemon from an event loop: its epoll descriptor is watched there, and `MHD_run` is called when it is
/// ready or when the daemon's own timeout comes.
///
/// Safe as `@unchecked Sendable`: the daemon is only run, quiesced and stopped on the loop's thread (other threads
/// only resume connections, which libmicrohttpd allows from any thread), and `isStopped` is touched there alone.
final class DaemonDriver: EventLoopClient, @unchecked Sendable {
    let daemon: OpaquePointer
    let loop: EventLoop
    private var isStopped = false
    /// A connection was resumed since the daemon last ran: without a thread of its own, libmicrohttpd only takes
    /// it up again in `MHD_run`.
    private var hasResumed = false

    init(daemon: OpaquePointer, loop: EventLoop) {
        self.daemon = daemon
        self.loop = loop
    }

    /// Watches the daemon's epoll descriptor on the loop; false when the daemon has none.
    func attach() -> Bool {
        var watched = false
        loop.executeAndWait { [self] in
            let descriptor = pjg_mhd_epoll_fd(daemon)
            guard descriptor >= 0 else { return }
            watched = loop.watch(descriptor, events: EPOLLIN.rawValue, for: self)
        }
        return watched
    }

    /// Stops accepting connections; returns the listening socket, which the caller closes after `stop`.
    func quiesce() -> Int32 {
        var listening: Int32 = -1
        loop.executeAndWait { [self] in
            listening = MHD_quiesce_daemon(daemon)
        }
        return listening
    }

    /// Stops the daemon on its loop, closing every connection.
    func stop() {
        loop.executeAndWait { [self] in
            guard !isStopped else { return }
            isStopped = true
            let descriptor = pjg_mhd_epoll_fd(daemon)
            if descriptor >= 0 {
                loop.unwatch(descriptor)
            }
            loop.unregister(self)
            MHD_stop_daemon(daemon)
        }
    }

    /// Has the daemon run soon, on its loop, to answer a connection just resumed.
    func resumed() {
        loop.execute { [self] in
            hasResumed = true
        }
    }

    func ready(_ descriptor: Int32, events: UInt32) {
        guard !isStopped else { return }
        hasResumed = false
        MHD_run(daemon)
    }

    func millisecondsUntilDue() -> Int? {
        guard !isStopped else { return nil }
        if hasResumed { return 0 }
        var milliseconds: UInt64 = 0
        guard MHD_get_timeout(daemon, &milliseconds) == .YES else { return nil }
        return Int(min(milliseconds, 60_000))
    }

    func due() {
        guard !isStopped else { return }
        var milliseconds: UInt64 = 0
        if hasResumed || (MHD_get_timeout(daemon, &milliseconds) == .YES && milliseconds == 0) {
            hasResumed = false
            MHD_run(daemon)
        }
    }
}

private let uriLogCallback: pjg_uri_log_callback = { server, uri, connection in
    guard let server, let connection else { return nil }
    // Unmanaged: `ServerCore.start` retained the server for the daemon's lifetime.
    Unmanaged<ServerCore>.fromOpaque(server).takeUnretainedValue().liveRequests.add(1, ordering: .relaxed)
    let context = RequestContext(target: uri.map { String(cString: $0) } ?? "/", connection: connection)
    // Unmanaged: the daemon holds this reference as the connection's context until `completedCallback` releases it.
    return Unmanaged.passRetained(context).toOpaque()
}

private let completedCallback: MHD_RequestCompletedCallback = { server, connection, contextSlot, _ in
    guard let server, let contextSlot, let raw = contextSlot.pointee else { return }
    // Unmanaged: `ServerCore.start` retained the server for the daemon's lifetime.
    let core = Unmanaged<ServerCore>.fromOpaque(server).takeUnretainedValue()
    core.liveRequests.subtract(1, ordering: .releasing)
    if let connection {
        core.requestCompleted(connection)
    }
    let context = Unmanaged<RequestContext>.fromOpaque(raw).takeUnretainedValue()
    core.requestFinished(context)
    core.requestEnded(context)
    Unmanaged<RequestContext>.fromOpaque(raw).release()
    contextSlot.pointee = nil
}

private let connectionCallback: MHD_NotifyConnectionCallback = { server, connection, _, event in
    guard let server, let connection else { return }
    // Unmanaged: `ServerCore.start` retained the server for the daemon's lifetime.
    let core = Unmanaged<ServerCore>.fromOpaque(server).takeUnretainedValue()
    if event == .CONNECTION_NOTIFY_STARTED {
        core.connectionStarted(connection)
    } else {
        core.connectionClosed(connection)
    }
}

private let accessCallback: MHD_AccessHandlerCallback = {
    server, connection, _, method, _, upload, uploadSize, contextSlot in
    guard let server, let connection, let method, let uploadSize, let raw = contextSlot?.pointee else {
        return .NO
    }
    // Unmanaged: `ServerCore.start` retained the server for the daemon's lifetime; the context is the daemon's.
    let core = Unmanaged<ServerCore>.fromOpaque(server).takeUnretainedValue()
    let context = Unmanaged<RequestContext>.fromOpaque(raw).takeUnretainedValue()
    return core.access(
        connection: connection, method: method, upload: upload, uploadSize: uploadSize, context: context)
}

private let headerCallback: MHD_KeyValueIterator = { raw, _, name, value in
    guard let raw, let name else { return .YES }
    // Unmanaged: the context outlives this synchronous iteration, which runs inside `access`.
    let context = Unmanaged<RequestContext>.fromOpaque(raw).takeUnretainedValue()
    context.headerLineBytes += strlen(name) + (value.map { strlen($0) } ?? 0) + 4
    context.headers.add(String(cString: name), value.map { fieldValue(String(cString: $0)) } ?? "")
    return .YES
}

/// A field value without the optional whitespace around it (RFC 9110, section 5.5), which libmicrohttpd leaves at
/// the end: `x-gw-ims-org-id: org@AdobeOrg ` names `org@AdobeOrg`.
func fieldValue(_ raw: String) -> String {
    let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
    let bytes = raw.utf8
    guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) })
    else { return "" }
    return String(raw[first...last])
}
