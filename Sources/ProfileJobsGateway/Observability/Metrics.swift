import FoundationEssentials

/// The gateway's own metrics, for Prometheus to scrape.
///
/// Every label value a caller passes is either normalized to a short known list or capped by the registry, so no
/// request can make the set of series grow without end.
public final class GatewayMetrics: Sendable {
    /// The content type of the text exposition format that `render()` writes.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Shown as the `version` label of `profile_jobs_gateway_build_info`.
    static let version = "0.1.0"

    /// From half a millisecond for an answer the gateway gives itself to thirty seconds for a slow platform.
    static let durationBuckets: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
    ]

    private let registry = MetricsRegistry()
    private let requests: CounterFamily
    private let requestDuration: HistogramFamily
    private let requestsInFlight: GaugeFamily
    private let upstreamDuration: HistogramFamily
    private let upstreamErrors: CounterFamily
    private let upstreamRetries: CounterFamily
    private let upstreamCircuitState: GaugeFamily
    private let upstreamInFlight: GaugeFamily
    private let sandboxCacheHits: CounterFamily
    private let sandboxCacheMisses: CounterFamily
    private let auditRecordsWritten: CounterFamily
    private let auditWriteFailures: CounterFamily
    private let configurationReloads: CounterFamily

    public init() {
        let prefix = "profile_jobs_gateway_"

        requests = registry.counter(
            prefix + "http_requests_total",
            help: "HTTP requests the gateway answered, by route template, method, status class and cloud.",
            labels: ["route", "method", "status_class", "cloud"])
        requestDuration = registry.histogram(
            prefix + "http_request_duration_seconds",
            help: "Seconds from a request's arrival to its answer, by route template, method and cloud.",
            labels: ["route", "method", "cloud"],
            buckets: Self.durationBuckets)
        requestsInFlight = registry.gauge(
            prefix + "http_requests_in_flight",
            help: "HTTP requests that arrived and are not answered yet.")

        upstreamDuration = registry.histogram(
            prefix + "upstream_request_duration_seconds",
            help: "Seconds one call to the platform took, failed calls included, by cloud.",
            labels: ["cloud"],
            buckets: Self.durationBuckets)
        upstreamErrors = registry.counter(
            prefix + "upstream_errors_total",
            help: "Calls to the platform that failed, by cloud and kind of failure.",
            labels: ["cloud", "kind"])
        upstreamRetries = registry.counter(
            prefix + "upstream_retries_total",
            help: "Lookups sent to the platform again after a failed attempt, by cloud.",
            labels: ["cloud"])
        upstreamCircuitState = registry.gauge(
            prefix + "upstream_circuit_state",
            help: "Each upstream's circuit breaker: 0 closed, 1 open (calls fail fast), 2 half-open (one probe).",
            labels: ["upstream"])
        upstreamInFlight = registry.gauge(
            prefix + "upstream_in_flight",
            help: "Calls in flight to each upstream, sandbox lookups included.",
            labels: ["upstream"])

        sandboxCacheHits = registry.counter(
            prefix + "sandbox_cache_hits_total",
            help: "Sandbox lookups answered from the gateway's cache.")
        sandboxCacheMisses = registry.counter(
            prefix + "sandbox_cache_misses_total",
            help: "Sandbox lookups the cache could not answer, so the platform was asked.")

        auditRecordsWritten = registry.counter(
            prefix + "audit_records_written_total",
            help: "Audit records delivered to a sink, by sink.",
            labels: ["sink"])
        auditWriteFailures = registry.counter(
            prefix + "audit_write_failures_total",
            help: "Audit records a sink failed to take, by sink.",
            labels: ["sink"])
        configurationReloads = registry.counter(
            prefix + "configuration_reloads_total",
            help: "Configuration reloads on SIGHUP, by result: applied, or refused (the running configuration stayed).",
            labels: ["result"])
        for result in ["applied", "refused"] {
            configurationReloads.increment(labels: [result], by: 0)
        }
        // The file's series exist from the start, so an alert on failures sees 0 rather than no data.
        auditRecordsWritten.increment(labels: ["file"], by: 0)
        auditWriteFailures.increment(labels: ["file"], by: 0)
        for cloud in ["azure", "aws"] {
            upstreamRetries.increment(labels: [cloud], by: 0)
        }

        // Constant 1, so a query can join any metric with the version that produced it.
        registry.gauge(
            prefix + "build_info",
            help: "Always 1; the version label names the running gateway's version.",
            labels: ["version"]
        ).set(1, labels: [Self.version])
    }

    /// A request arrived (in-flight gauge +1).
    public func requestStarted() {
        requestsInFlight.add(1)
    }

    /// A request was answered: in-flight -1; counts it and observes its duration.
    /// route: a route template like "/v1/system/jobs/{id}" (never a raw path); method: GET/POST/DELETE/other
    /// (normalize anything unknown to "other"); status: the HTTP status (label is the class "2xx".."5xx");
    /// cloud: "azure", "aws" or "" when unknown.
    public func requestFinished(route: String, method: String, status: Int, cloud: String, seconds: Double) {
        let method = Self.method(method)
        let cloud = Self.cloud(cloud)

        requestsInFlight.add(-1)
        requests.increment(labels: [route, method, Self.statusClass(status), cloud])
        requestDuration.observe(seconds, labels: [route, method, cloud])
    }

    /// One upstream call and its duration (also observed when it failed).
    public func upstreamCall(cloud: String, seconds: Double) {
        upstreamDuration.observe(seconds, labels: [Self.cloud(cloud)])
    }

    /// An upstream call that failed: kind is one of "timeout", "unreachable", "tls", "connection_lost",
    /// "status_5xx", "status_4xx", "malformed", "circuit_open", "overloaded", "other".
    public func upstreamError(cloud: String, kind: String) {
        upstreamErrors.increment(labels: [Self.cloud(cloud), Self.errorKind(kind)])
    }

    /// A lookup is about to be sent again.
    public func upstreamRetry(cloud: String) {
        upstreamRetries.increment(labels: [Self.cloud(cloud)])
    }

    /// An upstream's breaker state and calls in flight; `upstream` is an origin from the configuration.
    public func upstreamGuardChanged(upstream: String, circuit: UpstreamGuard.Circuit, inFlight: Int) {
        let state: Double =
            switch circuit {
            case .closed: 0
            case .open: 1
            case .halfOpen: 2
            }
        upstreamCircuitState.set(state, labels: [upstream])
        upstreamInFlight.set(Double(inFlight), labels: [upstream])
    }

    public func sandboxCacheHit() {
        sandboxCacheHits.increment()
    }

    public func sandboxCacheMiss() {
        sandboxCacheMisses.increment()
    }

    /// An audit record delivered (or not) to a sink ("file", "syslog", "stdout").
    public func auditWrite(sink: String, succeeded: Bool) {
        let family = succeeded ? auditRecordsWritten : auditWriteFailures
        family.increment(labels: [Self.sink(sink)])
    }

    /// A configuration reload, applied or refused.
    public func configurationReload(applied: Bool) {
        configurationReloads.increment(labels: [applied ? "applied" : "refused"])
    }

    /// The exposition text, content type "text/plain; version=0.0.4; charset=utf-8".
    public func render() -> [UInt8] {
        registry.render()
    }

    // The normalizations return literals, so recording allocates no label strings of its own.

    static func method(_ method: String) -> String {
        switch method {
        case "GET": "GET"
        case "POST": "POST"
        case "DELETE": "DELETE"
        default: "other"
        }
    }

    /// "1xx" to "5xx"; anything outside 100...599 is not an HTTP status and becomes "other".
    static func statusClass(_ status: Int) -> String {
        switch status {
        case 100...199: "1xx"
        case 200...299: "2xx"
        case 300...399: "3xx"
        case 400...499: "4xx"
        case 500...599: "5xx"
        default: "other"
        }
    }

    /// Only the two clouds the gateway knows; anything else is as unknown as no cloud at all.
    static func cloud(_ cloud: String) -> String {
        switch cloud {
        case "azure": "azure"
        case "aws": "aws"
        default: ""
        }
    }

    static func errorKind(_ kind: String) -> String {
        switch kind {
        case "timeout": "timeout"
        case "unreachable": "unreachable"
        case "tls": "tls"
        case "connection_lost": "connection_lost"
        case "circuit_open": "circuit_open"
        case "overloaded": "overloaded"
        case "status_5xx": "status_5xx"
        case "status_4xx": "status_4xx"
        case "malformed": "malformed"
        default: "other"
        }
    }

    static func sink(_ sink: String) -> String {
        switch sink {
        case "file": "file"
        case "syslog": "syslog"
        case "stdout": "stdout"
        default: "other"
        }
    }
}
