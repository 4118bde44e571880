import FoundationEssentials

/// What reloading the configuration file changed in a running gateway.
///
/// Routing (organizations, their platforms, sandbox maps and timeouts), the gateway-wide upstream timeouts, the
/// sandbox cache durations and the readiness delay take their new values. The other settings live in objects made
/// once at start (the listening socket and its limits, the upstream client with its CA bundle, each upstream's
/// breaker and cap, the open audit trail and its sinks); their running values are kept and `needsRestart` names them.
public struct ConfigurationReload: Sendable, Equatable {
    /// The configuration new calls are served under: the file's, with the running values of restart-only settings.
    public var applied: GatewayConfiguration
    /// Settings whose value in the file differs from the running one and waits for a restart.
    public var needsRestart: [String]
    /// Gateway-wide settings that took the file's value.
    public var changed: [String]
    public var organizationsAdded: [String]
    public var organizationsRemoved: [String]
    /// Organizations whose platform, base URL, sandboxes or timeouts changed; sandbox ids looked up for them before
    /// are looked up again.
    public var organizationsChanged: [String]

    /// Whether the file said anything the running gateway did not already do.
    public var changesNothing: Bool {
        needsRestart.isEmpty && changed.isEmpty && organizationsAdded.isEmpty && organizationsRemoved.isEmpty
            && organizationsChanged.isEmpty
    }

    public init(running: GatewayConfiguration, file: GatewayConfiguration) {
        var applied = file
        var needsRestart: [String] = []
        var changed: [String] = []

        /// A restart-only setting: the running value stays, and a different one in the file is reported.
        func keep<Value: Equatable>(_ key: String, _ path: WritableKeyPath<GatewayConfiguration, Value>) {
            if file[keyPath: path] != running[keyPath: path] {
                needsRestart.append(key)
                applied[keyPath: path] = running[keyPath: path]
            }
        }
        /// A setting a running gateway takes: reported when it changes.
        func take<Value: Equatable>(_ key: String, _ path: KeyPath<GatewayConfiguration, Value>) {
            if file[keyPath: path] != running[keyPath: path] {
                changed.append(key)
            }
        }

        keep("listen.host", \.host)
        keep("listen.port", \.port)
        keep("listen.maxConnections", \.clientLimits.maxConnections)
        keep("listen.idleTimeoutSeconds", \.clientLimits.idleTimeoutSeconds)
        keep("listen.requestTimeoutSeconds", \.clientLimits.requestTimeoutSeconds)
        keep("listen.maxHeaderBytes", \.clientLimits.maxHeaderBytes)
        keep("upstream.caBundle", \.caBundlePath)
        keep("upstream.retries", \.upstreamPolicy.retries)
        keep("upstream.retryAfterCapSeconds", \.upstreamPolicy.retryAfterCapSeconds)
        keep("upstream.circuitBreaker.failures", \.upstreamPolicy.circuitBreakerFailures)
        keep("upstream.circuitBreaker.openSeconds", \.upstreamPolicy.circuitBreakerOpenSeconds)
        keep("upstream.maxInFlight", \.upstreamPolicy.maxInFlight)
        keep("audit.file", \.audit.filePath)
        keep("audit.stdout", \.audit.standardOutput)
        keep("audit.syslog", \.audit.syslog)

        take("upstream.connectTimeoutSeconds", \.connectTimeoutSeconds)
        take("upstream.timeoutSeconds", \.upstreamTimeoutSeconds)
        take("sandboxLookup.cacheSeconds", \.sandboxCacheSeconds)
        take("sandboxLookup.failureCacheSeconds", \.sandboxFailureCacheSeconds)
        take("shutdown.readinessDelaySeconds", \.shutdownReadinessDelaySeconds)

        self.applied = applied
        self.needsRestart = needsRestart
        self.changed = changed
        let before = Set(running.organizations.keys)
        let after = Set(file.organizations.keys)
        organizationsAdded = after.subtracting(before).sorted()
        organizationsRemoved = before.subtracting(after).sorted()
        organizationsChanged = before.intersection(after).filter {
            running.organizations[$0] != file.organizations[$0]
        }.sorted()
    }
}

extension GatewayConfiguration {
    /// Reads and checks a configuration file; a file that cannot be read is refused like one that does not parse.
    public static func load(path: String) throws(ConfigurationError) -> GatewayConfiguration {
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(key: "", problem: "the file cannot be read")
        }
        return try parse(Array(contents))
    }
}

extension Gateway {
    /// SIGHUP: reads the configuration file again and applies it (see `apply`). A file that cannot be read or is not
    /// valid changes nothing: the running configuration stays and the log says why.
    ///
    /// - Returns: what changed, or nil when the file was refused.
    @discardableResult
    public func reloadConfiguration(from path: String) -> ConfigurationReload? {
        let file: GatewayConfiguration
        do {
            file = try GatewayConfiguration.load(path: path)
        } catch {
            metrics.configurationReload(applied: false)
            logger.error(
                "configuration not reloaded; the running configuration stays",
                [("config.file", .string(path)), ("error", .string(error.description))])
            return nil
        }

        let reload = apply(file)
        metrics.configurationReload(applied: true)
        logger.info(
            "configuration reloaded",
            [
                ("config.file", .string(path)), ("organizations", .int(reload.applied.organizations.count)),
                ("organizations.added", .string(reload.organizationsAdded.joined(separator: ","))),
                ("organizations.removed", .string(reload.organizationsRemoved.joined(separator: ","))),
                ("organizations.changed", .string(reload.organizationsChanged.joined(separator: ","))),
                ("settings.changed", .string(reload.changed.joined(separator: ","))),
            ])
        if !reload.needsRestart.isEmpty {
            logger.warning(
                "configuration settings need a restart; their running values stay",
                [
                    ("config.file", .string(path)),
                    ("settings.restart.required", .string(reload.needsRestart.joined(separator: ","))),
                ])
        }
        return reload
    }
}
