/// One call to an upstream, fully described: the URL is built only from configuration and validated ids.
public struct UpstreamRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]?
    /// Seconds allowed to establish the connection.
    public var connectTimeout: Double
    /// Seconds allowed for the whole exchange.
    public var totalTimeout: Double

    public init(
        method: String,
        url: String,
        headers: HTTPHeaders = HTTPHeaders(),
        body: [UInt8]? = nil,
        connectTimeout: Double = 5,
        totalTimeout: Double = 30
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
    }
}

/// What the upstream answered, whatever the status.
public struct UpstreamResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Why no answer came back from an upstream.
public enum UpstreamFailure: Error, Sendable, Equatable {
    /// The connection could not be made (refused, DNS, TLS handshake or verification).
    case unreachable(String)
    /// The connect or total timeout passed.
    case timedOut(String)
    /// The connection broke or the answer was not valid HTTP: the request may have reached the upstream.
    case brokenResponse(String)
    /// The answer arrived but cannot be used: a compressed body that does not decode, or one over the size limit.
    case unreadable(String)
}

/// Sends upstream calls; the gateway depends on this, libcurl provides it.
public protocol UpstreamTransport: Sendable {
    func send(_ request: UpstreamRequest) async throws(UpstreamFailure) -> UpstreamResponse
}
