/// The gateway's listening side: an HTTP server whose own refusals (413, 414, 431, 503 over the connection cap or at
/// shutdown) are problems too.
public enum GatewayServer {
    /// How long a stopping gateway lets calls in flight finish: at least 10 s, and long enough for an upstream call
    /// to run to its timeout, since a deletion cut off midway leaves its caller unsure whether it happened.
    public static func drainGrace(_ configuration: GatewayConfiguration) -> Duration {
        let longest = configuration.longestTimeouts
        return .seconds(max(10, (longest.connect + longest.total + 1).rounded(.up)))
    }

    /// - Parameter eventLoops: where connections and calls run; the upstream transport's loops, so that a call and
    ///   its upstream exchange stay on one thread.
    public static func make(
        configuration: GatewayConfiguration, gateway: Gateway, eventLoops: [EventLoop] = []
    ) -> HTTPServer {
        var server = HTTPServerConfiguration()
        server.eventLoops = eventLoops
        server.host = configuration.host
        server.port = configuration.port
        server.maxBodyBytes = 64 * 1024
        server.connectionLimit = configuration.clientLimits.maxConnections
        server.pathsBeyondConnectionLimit = ["/healthz", "/readyz"]
        server.connectionTimeoutSeconds = configuration.clientLimits.idleTimeoutSeconds
        server.requestTimeoutSeconds = configuration.clientLimits.requestTimeoutSeconds
        server.maxHeaderBytes = configuration.clientLimits.maxHeaderBytes
        // libmicrohttpd writes over the whole of this per connection, so it is most of a connection's memory: the
        // largest head plus room for the request line, one list entry per header and the answer's head.
        server.connectionMemoryLimit = configuration.clientLimits.maxHeaderBytes + 8 * 1024
        return HTTPServer(
            configuration: server, handler: gateway,
            errorResponse: { refusal, headers in
                let requestId = Gateway.requestId(from: headers)
                var response = Gateway.problemResponse(GatewayError(refusal), requestId: requestId)
                response.headers.set("x-request-id", requestId)
                return response
            },
            accessLog: { gateway.log($0) })
    }
}

extension GatewayError {
    /// The problem for an answer the HTTP server gave by itself.
    init(_ refusal: ServerRefusal) {
        self =
            switch refusal {
            case .bodyTooLarge(let detail): .bodyTooLarge(detail)
            case .targetTooLong(let limit): .targetTooLong(limit: limit)
            case .headersTooLarge(let limit): .headersTooLarge(limit: limit)
            case .tooManyFields(let fields): .tooManyFields(fields: fields)
            case .malformedHeader(let name, let reason): .invalidHeader(name: name, reason: reason)
            case .tooManyConnections(let limit): .tooManyConnections(limit: limit)
            case .shuttingDown: .shuttingDown
            case .interrupted: .interruptedByShutdown
            }
    }
}
