import FoundationEssentials
import Glibc

/// Where one organization's calls go.
public struct OrganizationRoute: Sendable, Equatable {
    public var orgId: String
    public var cloud: Cloud
    /// Scheme, host and optional port of the platform (`https://platform.adobe.io`), no trailing slash.
    public var baseURL: String
    /// The sandbox used when a caller names none.
    public var defaultSandbox: String
    /// Sandbox names to ids, consulted before the Sandbox Management API.
    public var sandboxes: [String: String]
    /// This organization's own upstream timeouts; nil takes the gateway-wide `upstream` values.
    public var connectTimeoutSeconds: Double?
    public var timeoutSeconds: Double?

    public init(
        orgId: String,
        cloud: Cloud,
        baseURL: String = "https://platform.adobe.io",
        defaultSandbox: String = "prod",
        sandboxes: [String: String] = [:],
        connectTimeoutSeconds: Double? = nil,
        timeoutSeconds: Double? = nil
    ) {
        self.orgId = orgId
        self.cloud = cloud
        self.baseURL = baseURL
        self.defaultSandbox = defaultSandbox
        self.sandboxes = sandboxes
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.timeoutSeconds = timeoutSeconds
    }
}

/// How the gateway keeps a failing or slow upstream from holding up callers, and callers from piling onto it.
public struct UpstreamPolicy: Sendable, Equatable {
    /// Extra attempts for a lookup (GET) that failed in a way worth repeating; creates and removals never get one.
    public var retries = 2
    /// The longest `Retry-After` the gateway waits out itself before retrying a lookup; a longer one goes to the
    /// caller instead.
    public var retryAfterCapSeconds = 5.0
    /// Failures in a row that open an upstream's circuit, and how long it stays open before one probe is let through.
    public var circuitBreakerFailures = 5
    public var circuitBreakerOpenSeconds = 30.0
    /// Calls in flight to one upstream at most; the next is refused at once rather than queued.
    public var maxInFlight = 256

    public init() {}
}

/// How much each client may hold of the listening side, so that slow, idle or oversized clients cannot crowd out
/// the others.
public struct ClientLimits: Sendable, Equatable {
    /// Open connections served at once; a request on one beyond them is answered 503 and its connection closed.
    public var maxConnections = 4096
    /// Seconds a connection may stay silent.
    public var idleTimeoutSeconds = 30
    /// Seconds a client has to deliver a whole request, from its connection's start or its previous answer.
    public var requestTimeoutSeconds = 30.0
    /// Sum of header names and values accepted in one request. Every connection holds this plus 8 KiB of server
    /// memory for its whole life, so it is sized for real callers (an IMS bearer token is 1.5 to 3 KB), as Tomcat's
    /// and Jetty's 8 KiB are, rather than for the largest head imaginable.
    public var maxHeaderBytes = 8 * 1024

    public init() {}
}

/// Everything `serve` needs; every field has a default except the organizations.
public struct GatewayConfiguration: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port: UInt16 = 8080
    public var clientLimits = ClientLimits()
    /// Seconds to establish an upstream connection, and for a whole upstream call.
    public var connectTimeoutSeconds = 5.0
    public var upstreamTimeoutSeconds = 30.0
    /// PEM bundle of trusted CAs for upstream TLS; nil uses the system store.
    public var caBundlePath: String?
    /// Retries, circuit breaker and in-flight cap, applied to each upstream (scheme, host and port) separately.
    public var upstreamPolicy = UpstreamPolicy()
    /// How long a sandbox id from the Sandbox Management API is reused, and how long a failed lookup is remembered.
    public var sandboxCacheSeconds = 3600.0
    public var sandboxFailureCacheSeconds = 10.0
    /// Where deletion traffic is recorded; the file is always written, relative to the working directory unless
    /// absolute.
    public var audit = AuditConfiguration(filePath: "audit.jsonl")
    /// Seconds between a stop signal and closing the listener, while `/readyz` already says not ready, so load
    /// balancers stop sending calls before connections are refused.
    public var shutdownReadinessDelaySeconds = 2.0
    public var organizations: [String: OrganizationRoute] = [:]

    public init(organizations: [OrganizationRoute] = []) {
        for route in organizations {
            self.organizations[route.orgId] = route
        }
    }

    /// The organization's connect and total timeouts: its own when configured, else the gateway-wide ones.
    public func timeouts(for route: OrganizationRoute) -> (connect: Double, total: Double) {
        (route.connectTimeoutSeconds ?? connectTimeoutSeconds, route.timeoutSeconds ?? upstreamTimeoutSeconds)
    }

    /// The longest connect and total timeouts any organization's calls may take.
    public var longestTimeouts: (connect: Double, total: Double) {
        organizations.values.reduce((connectTimeoutSeconds, upstreamTimeoutSeconds)) { longest, route in
            let own = timeouts(for: route)
            return (max(longest.0, own.connect), max(longest.1, own.total))
        }
    }
}

/// A configuration that cannot be used, with the path of the offending key (`organizations.x@AdobeOrg.cloud`).
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var problem: String

    public var description: String {
        key.isEmpty ? problem : "\(key): \(problem)"
    }
}

extension GatewayConfiguration {
    /// Reads the JSON configuration format documented in the README, refusing unknown keys and wrong types.
    public static func parse(_ bytes: [UInt8]) throws(ConfigurationError) -> GatewayConfiguration {
        guard let document = JSONValue.parse(bytes) else {
            throw ConfigurationError(key: "", problem: "the file is not valid JSON")
        }
        let root = try ConfigObject(document, path: "")
        try root.allowOnly(["listen", "upstream", "sandboxLookup", "audit", "shutdown", "organizations"])
        var configuration = GatewayConfiguration()

        if let listen = try root.object("listen") {
            try listen.allowOnly([
                "host", "port", "maxConnections", "idleTimeoutSeconds", "requestTimeoutSeconds", "maxHeaderBytes",
            ])
            configuration.host = try listen.string("host") ?? configuration.host
            var probe = in6_addr()
            guard
                inet_pton(AF_INET, configuration.host, &probe) == 1
                    || inet_pton(AF_INET6, configuration.host, &probe) == 1
            else {
                throw ConfigurationError(
                    key: listen.path("host"), problem: "'\(configuration.host)' is not an IPv4 or IPv6 address literal")
            }
            if let port = try listen.integer("port", in: 1...65535) {
                configuration.port = UInt16(port)
            }
            var limits = configuration.clientLimits
            limits.maxConnections = try listen.integer("maxConnections", in: 1...100_000) ?? limits.maxConnections
            limits.idleTimeoutSeconds =
                try listen.integer("idleTimeoutSeconds", in: 1...3600) ?? limits.idleTimeoutSeconds
            limits.requestTimeoutSeconds =
                try listen.seconds("requestTimeoutSeconds", in: 0.1...3600) ?? limits.requestTimeoutSeconds
            limits.maxHeaderBytes = try listen.integer("maxHeaderBytes", in: 1024...65536) ?? limits.maxHeaderBytes
            configuration.clientLimits = limits
        }

        if let upstream = try root.object("upstream") {
            try upstream.allowOnly([
                "connectTimeoutSeconds", "timeoutSeconds", "caBundle", "retries", "retryAfterCapSeconds",
                "circuitBreaker", "maxInFlight",
            ])
            configuration.connectTimeoutSeconds =
                try upstream.seconds("connectTimeoutSeconds", in: connectTimeouts)
                ?? configuration.connectTimeoutSeconds
            configuration.upstreamTimeoutSeconds =
                try upstream.seconds("timeoutSeconds", in: totalTimeouts) ?? configuration.upstreamTimeoutSeconds
            configuration.caBundlePath = try upstream.string("caBundle")
            if let path = configuration.caBundlePath {
                guard let bundle = FileManager.default.contents(atPath: path) else {
                    throw ConfigurationError(
                        key: upstream.path("caBundle"), problem: "'\(path)' is not a readable file")
                }
                // Caught at start rather than as a 502 on every call that names the local path.
                guard String(decoding: bundle, as: UTF8.self).contains("-----BEGIN CERTIFICATE-----") else {
                    throw ConfigurationError(
                        key: upstream.path("caBundle"), problem: "'\(path)' holds no PEM certificate")
                }
            }
            configuration.upstreamPolicy = try parsePolicy(upstream)
        }

        if let lookup = try root.object("sandboxLookup") {
            try lookup.allowOnly(["cacheSeconds", "failureCacheSeconds"])
            configuration.sandboxCacheSeconds =
                try lookup.seconds("cacheSeconds", in: 0.001...604_800) ?? configuration.sandboxCacheSeconds
            configuration.sandboxFailureCacheSeconds =
                try lookup.seconds("failureCacheSeconds", in: 0.001...3600) ?? configuration.sandboxFailureCacheSeconds
        }

        if let audit = try root.object("audit") {
            configuration.audit = try parseAudit(audit)
        }

        if let shutdown = try root.object("shutdown") {
            try shutdown.allowOnly(["readinessDelaySeconds"])
            configuration.shutdownReadinessDelaySeconds =
                try shutdown.number("readinessDelaySeconds").map { value throws(ConfigurationError) in
                    guard (0...120).contains(value) else {
                        throw ConfigurationError(
                            key: shutdown.path("readinessDelaySeconds"), problem: "must be from 0 to 120 seconds")
                    }
                    return value
                } ?? configuration.shutdownReadinessDelaySeconds
        }

        guard let organizations = try root.object("organizations"), !organizations.fields.isEmpty else {
            throw ConfigurationError(key: "organizations", problem: "name at least one organization to route")
        }
        for orgId in organizations.fields.keys.sorted() {
            guard !orgId.isEmpty, orgId.utf8.count <= 256,
                orgId.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F })
            else {
                throw ConfigurationError(
                    key: organizations.path(orgId), problem: "an organization id must be printable ASCII without spaces"
                )
            }
            configuration.organizations[orgId] = try parseRoute(orgId, try organizations.object(orgId)!)
        }
        return configuration
    }

    /// Retries at most 2: a third repeat would hold a caller for long while the platform is struggling.
    private static func parsePolicy(_ upstream: ConfigObject) throws(ConfigurationError) -> UpstreamPolicy {
        var policy = UpstreamPolicy()
        policy.retries = try upstream.integer("retries", in: 0...2) ?? policy.retries
        policy.retryAfterCapSeconds =
            try upstream.seconds("retryAfterCapSeconds", in: 0...60) ?? policy.retryAfterCapSeconds
        policy.maxInFlight = try upstream.integer("maxInFlight", in: 1...100_000) ?? policy.maxInFlight

        if let breaker = try upstream.object("circuitBreaker") {
            try breaker.allowOnly(["failures", "openSeconds"])
            policy.circuitBreakerFailures =
                try breaker.integer("failures", in: 1...10_000) ?? policy.circuitBreakerFailures
            policy.circuitBreakerOpenSeconds =
                try breaker.seconds("openSeconds", in: 0.1...3600) ?? policy.circuitBreakerOpenSeconds
        }
        return policy
    }

    private static let connectTimeouts = 0.01...600.0
    private static let totalTimeouts = 0.01...3600.0

    private static func parseRoute(_ orgId: String, _ object: ConfigObject) throws(ConfigurationError)
        -> OrganizationRoute
    {
        try object.allowOnly([
            "cloud", "baseURL", "defaultSandbox", "sandboxes", "connectTimeoutSeconds", "timeoutSeconds",
        ])
        guard let cloudName = try object.string("cloud") else {
            throw ConfigurationError(key: object.path("cloud"), problem: "missing; say \"azure\" or \"aws\"")
        }
        guard let cloud = Cloud(rawValue: cloudName) else {
            throw ConfigurationError(key: object.path("cloud"), problem: "'\(cloudName)' is not \"azure\" or \"aws\"")
        }
        var route = OrganizationRoute(orgId: orgId, cloud: cloud)

        if let baseURL = try object.string("baseURL") {
            let trimmed = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
            guard trimmed.hasPrefix("https://") || trimmed.hasPrefix("http://"), !trimmed.contains("?"),
                !trimmed.contains("#"), trimmed.split(separator: "/").count >= 2
            else {
                throw ConfigurationError(
                    key: object.path("baseURL"),
                    problem:
                        "'\(baseURL)' is not an http(s) URL without query or fragment, like https://platform.adobe.io")
            }
            // Credentials travel with each caller's headers; a user and password in the URL would go with every call.
            guard !trimmed.contains("@"), !trimmed.unicodeScalars.contains(where: { $0.value <= 0x20 }) else {
                throw ConfigurationError(
                    key: object.path("baseURL"), problem: "'\(baseURL)' holds a user, a password or whitespace")
            }
            route.baseURL = trimmed
        }
        route.connectTimeoutSeconds = try object.seconds("connectTimeoutSeconds", in: connectTimeouts)
        route.timeoutSeconds = try object.seconds("timeoutSeconds", in: totalTimeouts)
        route.defaultSandbox = try object.string("defaultSandbox") ?? route.defaultSandbox
        guard GatewayLimits.isWellFormedId(route.defaultSandbox) else {
            throw ConfigurationError(key: object.path("defaultSandbox"), problem: sandboxNameRule)
        }

        if let sandboxes = try object.object("sandboxes") {
            for name in sandboxes.fields.keys {
                guard GatewayLimits.isWellFormedId(name) else {
                    throw ConfigurationError(key: sandboxes.path(name), problem: sandboxNameRule)
                }
                guard let id = try sandboxes.string(name), GatewayLimits.isWellFormedId(id) else {
                    throw ConfigurationError(
                        key: sandboxes.path(name), problem: "a sandbox id is 1 to 128 letters, digits, '-' or '_'")
                }
                route.sandboxes[name] = id
            }
        }
        return route
    }

    private static func parseAudit(_ object: ConfigObject) throws(ConfigurationError) -> AuditConfiguration {
        try object.allowOnly(["file", "stdout", "syslog"])
        var audit = AuditConfiguration(filePath: try object.string("file") ?? "audit.jsonl")
        guard !audit.filePath.isEmpty, !audit.filePath.hasSuffix("/") else {
            throw ConfigurationError(
                key: object.path("file"), problem: "must name a file, like /var/lib/gateway/audit.jsonl")
        }
        audit.standardOutput = try object.bool("stdout") ?? false

        guard let syslog = try object.object("syslog") else { return audit }
        try syslog.allowOnly(["transport", "host", "port", "facility", "appName"])
        let transportName = try syslog.string("transport") ?? "tcp"
        guard let transport = SyslogConfiguration.Transport(rawValue: transportName) else {
            throw ConfigurationError(
                key: syslog.path("transport"), problem: "'\(transportName)' is not \"tcp\" or \"udp\"")
        }
        guard let host = try syslog.string("host"), !host.isEmpty, host.utf8.count <= 255 else {
            throw ConfigurationError(key: syslog.path("host"), problem: "missing; name the collector's host or address")
        }
        guard let port = try syslog.integer("port", in: 1...65535) else {
            throw ConfigurationError(key: syslog.path("port"), problem: "missing; the collector's port, often 514")
        }
        var shipping = SyslogConfiguration(transport: transport, host: host, port: UInt16(port))
        if let facility = try syslog.string("facility") {
            guard let code = Self.syslogFacilities.firstIndex(of: facility) else {
                throw ConfigurationError(
                    key: syslog.path("facility"),
                    problem: "'\(facility)' is not a syslog facility; use one of "
                        + Self.syslogFacilities.filter { !$0.isEmpty }.joined(separator: ", "))
            }
            shipping.facility = code
        }
        if let appName = try syslog.string("appName") {
            guard (1...48).contains(appName.utf8.count), appName.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw ConfigurationError(
                    key: syslog.path("appName"), problem: "must be 1 to 48 printable ASCII characters without spaces")
            }
            shipping.appName = appName
        }
        audit.syslog = shipping
        return audit
    }

    /// RFC 5424's facility names by code; the empty ones have no usual name.
    private static let syslogFacilities = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp",
        "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ]

    private static let sandboxNameRule = "a sandbox name is 1 to 128 letters, digits, '-' or '_'"
}

/// A JSON object of the configuration together with where it sits, so every error can name its key.
private struct ConfigObject {
    let fields: [String: JSONValue]
    let prefix: String

    init(_ value: JSONValue, path: String) throws(ConfigurationError) {
        guard case .object(let fields) = value else {
            throw ConfigurationError(key: path, problem: "must be an object, found \(value.kind)")
        }
        self.fields = fields
        self.prefix = path
    }

    func path(_ key: String) -> String {
        prefix.isEmpty ? key : "\(prefix).\(key)"
    }

    func allowOnly(_ keys: Set<String>) throws(ConfigurationError) {
        for key in fields.keys.sorted() where !keys.contains(key) {
            throw ConfigurationError(
                key: path(key), problem: "unknown key; expected one of \(keys.sorted().joined(separator: ", "))")
        }
    }

    func object(_ key: String) throws(ConfigurationError) -> ConfigObject? {
        guard let value = fields[key], value != .null else { return nil }
        return try ConfigObject(value, path: path(key))
    }

    func string(_ key: String) throws(ConfigurationError) -> String? {
        switch fields[key] {
        case nil, .null: return nil
        case .string(let text): return text
        case let other?: throw ConfigurationError(key: path(key), problem: "must be a string, found \(other.kind)")
        }
    }

    func bool(_ key: String) throws(ConfigurationError) -> Bool? {
        switch fields[key] {
        case nil, .null: return nil
        case .bool(let value): return value
        case let other?: throw ConfigurationError(key: path(key), problem: "must be true or false, found \(other.kind)")
        }
    }

    func number(_ key: String) throws(ConfigurationError) -> Double? {
        switch fields[key] {
        case nil, .null: return nil
        case .number(let value): return value
        case let other?: throw ConfigurationError(key: path(key), problem: "must be a number, found \(other.kind)")
        }
    }

    func seconds(_ key: String, in range: ClosedRange<Double>) throws(ConfigurationError) -> Double? {
        guard let value = try number(key) else { return nil }
        guard range.contains(value) else {
            throw ConfigurationError(
                key: path(key), problem: "must be from \(range.lowerBound) to \(range.upperBound) seconds")
        }
        return value
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let value = try number(key) else { return nil }
        guard value == value.rounded(), let whole = Int(exactly: value), range.contains(whole) else {
            throw ConfigurationError(
                key: path(key), problem: "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return whole
    }
}
