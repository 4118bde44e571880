/// The gateway's listening side: an HTTP server whose own refusals (413, 503 at shutdown) are problems too.
public enum GatewayServer {
    /// How long a stopping gateway lets calls in flight finish; a deletion cut off midway leaves its caller unsure.
    public static let drainGrace = Duration.seconds(10)

    public static func make(configuration: GatewayConfiguration, gateway: Gateway) -> HTTPServer {
        var server = HTTPServerConfiguration()
        server.host = configuration.host
        server.port = configuration.port
        server.maxBodyBytes = 64 * 1024
        return HTTPServer(
            configuration: server, handler: gateway,
            errorResponse: { status, detail, headers in
                let error: GatewayError = status == 413 ? .bodyTooLarge(detail) : .shuttingDown
                let requestId = Gateway.requestId(from: headers)
                var response = Gateway.problemResponse(error, requestId: requestId)
                response.headers.set("x-request-id", requestId)
                return response
            },
            accessLog: { gateway.log($0) })
    }
}
