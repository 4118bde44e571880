/// Every failure a caller can see, so that each maps in exactly one place to an RFC 9457 problem.
public enum GatewayError: Error, Sendable, Equatable {
    case missingHeader(String)
    case invalidHeader(name: String, reason: String)
    case unknownOrganization(String)
    case routeNotFound(path: String)
    case methodNotAllowed(method: String, allowed: [String])
    case unsupportedMediaType(String?)
    case invalidBody(String)
    case invalidId(field: String, value: String)
    case invalidQuery(parameter: String, reason: String)
    case batchNeedsDataset(orgId: String)
    /// `lookupPath` is where the caller can follow the job on the surface it called.
    case removalNotSupported(orgId: String, jobId: String, lookupPath: String)
    case sandboxIdUnavailable(orgId: String, sandbox: String)
    case upstreamRefused(cloud: Cloud, UpstreamErrorDetail)
    /// The Sandbox Management API refused to say which id a sandbox name has.
    case sandboxLookupRefused(cloud: Cloud, sandbox: String, UpstreamErrorDetail)
    /// Looking the sandbox's id up failed (`cause`: a timeout, a 5xx, an unreadable answer...), so the call itself
    /// was never sent; the gateway asks the platform again after `retryAfter` seconds.
    indirect case sandboxLookupFailed(sandbox: String, cause: GatewayError, retryAfter: Int)
    /// The platform's rate limit (429): a refusal like any 4xx, with its `Retry-After` in seconds passed on.
    case upstreamRateLimited(cloud: Cloud, UpstreamErrorDetail, retryAfter: Int?)
    case upstreamFailed(cloud: Cloud, UpstreamErrorDetail)
    case upstreamUnavailable(cloud: Cloud, UpstreamErrorDetail, retryAfter: Int?)
    /// No connection could be made, so nothing reached the platform.
    case upstreamUnreachable(cloud: Cloud, reason: String)
    /// The connection broke after the request went out: the platform may have acted on it.
    case upstreamConnectionLost(cloud: Cloud, reason: String)
    case upstreamTimedOut(cloud: Cloud, reason: String)
    case upstreamMalformed(cloud: Cloud, reason: String)
    /// The upstream failed repeatedly, so the gateway stopped calling it for a while; nothing was sent.
    case upstreamCircuitOpen(cloud: Cloud, retryAfter: Int)
    /// The gateway's cap on calls in flight to the upstream was reached; nothing was sent.
    case upstreamOverloaded(cloud: Cloud, limit: Int)
    case bodyTooLarge(String)
    case targetTooLong(limit: Int)
    case headersTooLarge(limit: Int)
    /// The head has more fields than a connection's memory holds along with the answer.
    case tooManyFields(fields: Int)
    /// The gateway's cap on open connections was reached; this connection is closed after the answer.
    case tooManyConnections(limit: Int)
    case shuttingDown
    /// The gateway stopped while it was still working on the call.
    case interruptedByShutdown
    /// The deletion's intent could not be made durable, so it was not forwarded.
    case auditUnavailable
    /// `/readyz`: this instance should not be sent traffic now.
    case notReady(String)
}

/// The parts of a problem document, before the request id is added.
public struct Problem: Sendable, Equatable {
    /// A stable identifier per kind of problem; relative to the gateway, where `/problems/<slug>` names it.
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String
    public var upstream: UpstreamErrorDetail?
    public var headers: [(String, String)] = []

    public static func == (lhs: Problem, rhs: Problem) -> Bool {
        lhs.type == rhs.type && lhs.status == rhs.status && lhs.detail == rhs.detail && lhs.upstream == rhs.upstream
    }
}

extension Cloud {
    /// How the README and problem details name the cloud.
    public var displayName: String {
        switch self {
        case .azure: "Azure"
        case .aws: "AWS"
        }
    }
}

/// What the caller asked for, so that a problem's advice fits it: a failed lookup changes nothing and can simply be
/// repeated, while a failed create or removal may have been carried out.
public enum CallKind: Sendable {
    case list
    case lookup
    case deletion
    case other
}

extension GatewayError {
    public var problem: Problem {
        problem(for: .other)
    }

    public func problem(for call: CallKind) -> Problem {
        switch self {
        case .missingHeader(let name):
            return Problem(
                type: "/problems/missing-header", title: "A required header is missing", status: 400,
                detail: "Send the \(name) header; every call needs Authorization, x-api-key and x-gw-ims-org-id.")

        case .invalidHeader(let name, let reason):
            return Problem(
                type: "/problems/invalid-header", title: "A header value is not acceptable", status: 400,
                detail: "The \(name) header \(reason).")

        case .unknownOrganization(let orgId):
            return Problem(
                type: "/problems/unknown-organization", title: "The organization is not routed by this gateway",
                status: 403,
                detail: "No route is configured for organization '\(orgId)'. Check the x-gw-ims-org-id header, or ask "
                    + "the gateway's operators to add the organization to its configuration.")

        case .routeNotFound(let path):
            return Problem(
                type: "/problems/not-found", title: "No such resource", status: 404,
                detail: "Nothing is served at '\(path)'. The API is under /v1/system/jobs.")

        case .methodNotAllowed(let method, let allowed):
            return Problem(
                type: "/problems/method-not-allowed", title: "Method not allowed", status: 405,
                detail: "\(method) is not supported here; use \(allowed.joined(separator: " or ")).",
                headers: [("Allow", allowed.joined(separator: ", "))])

        case .unsupportedMediaType(let given):
            return Problem(
                type: "/problems/unsupported-media-type", title: "The request body must be JSON", status: 415,
                detail:
                    "Send the body with 'Content-Type: application/json' (got \(given.map { "'\($0)'" } ?? "none")).")

        case .invalidBody(let reason):
            return Problem(
                type: "/problems/invalid-body", title: "The request body is not a valid delete request", status: 400,
                detail: "\(reason). Send {\"datasetId\": \"<id>\"} to delete a dataset, or "
                    + "{\"datasetId\": \"<id>\", \"batchId\": \"<id>\"} to delete a batch.")

        case .invalidId(let field, let value):
            return Problem(
                type: "/problems/invalid-id", title: "An id is not well-formed", status: 400,
                detail: "\(field) '\(value.prefix(80))' is not a valid id: use 1 to 128 letters, digits, '-' or '_'.")

        case .invalidQuery(let parameter, let reason):
            return Problem(
                type: "/problems/invalid-query", title: "A query parameter is not acceptable", status: 400,
                detail: "The query parameter '\(parameter)' \(reason).")

        case .batchNeedsDataset(let orgId):
            return Problem(
                type: "/problems/batch-needs-dataset", title: "A batch delete needs its dataset on this cloud",
                status: 400,
                detail: "Organization '\(orgId)' is served by AWS, which needs the batch's dataset: send "
                    + "{\"datasetId\": \"<id>\", \"batchId\": \"<id>\"}.")

        case .removalNotSupported(let orgId, let jobId, let lookupPath):
            return Problem(
                type: "/problems/operation-not-supported", title: "Removing a job is not supported on this cloud",
                status: 501,
                detail: "Organization '\(orgId)' is served by AWS, where a delete request cannot be removed; job "
                    + "'\(jobId)' was left as it is. If it is still running, wait for it to finish (GET "
                    + "\(lookupPath)) or ask Adobe support to stop it.")

        case .sandboxIdUnavailable(let orgId, let sandbox):
            return Problem(
                type: "/problems/sandbox-id-unavailable", title: "The sandbox's id could not be found", status: 400,
                detail: "Organization '\(orgId)' is served by AWS, which needs the id of sandbox '\(sandbox)', and the "
                    + "Sandbox Management API did not give it to these credentials (user tokens do not see ids). "
                    + "Send the x-sandbox-id header, call with service (technical account) credentials, or ask the "
                    + "gateway's operators to add the sandbox to the organization's \"sandboxes\" map.")

        case .upstreamRefused(let cloud, let detail):
            return Problem(
                type: "/problems/upstream-refused", title: "The \(cloud.displayName) platform refused the request",
                status: detail.status, detail: Self.refusalAdvice(cloud, detail, call: call), upstream: detail)

        case .sandboxLookupRefused(let cloud, let sandbox, let detail):
            let said =
                "The \(cloud.displayName) platform's Sandbox Management API answered HTTP \(detail.status)"
                + Self.quoted(detail.message) + " when asked for the id of sandbox '\(sandbox)'. "
            let advice =
                switch detail.status {
                case 401: "The access token was not accepted: get a fresh token and retry."
                case 403: "These credentials may not read this sandbox: check the token, API key and organization."
                case 404: "Check the sandbox name (x-sandbox-name), or send its id as x-sandbox-id."
                default: "Send the sandbox's id as x-sandbox-id, or retry later."
                }
            return Problem(
                type: "/problems/upstream-refused", title: "The \(cloud.displayName) platform refused the request",
                status: detail.status, detail: said + advice, upstream: detail)

        case .sandboxLookupFailed(let sandbox, let cause, let retryAfter):
            var problem = cause.problem(for: call)
            problem.title = "The sandbox's id could not be looked up"
            problem.detail =
                "The gateway needs the id of sandbox '\(sandbox)' and could not look it up: \(cause.lookupFailure). "
                + "Nothing was sent to the jobs API. Retry after \(Self.seconds(retryAfter)) (until then the gateway "
                + "gives this answer without asking again), or send the sandbox's id as x-sandbox-id."
            problem.headers = [("Retry-After", String(retryAfter))]
            return problem

        case .upstreamRateLimited(let cloud, let detail, let retryAfter):
            return Problem(
                type: "/problems/upstream-refused", title: "The \(cloud.displayName) platform refused the request",
                status: detail.status,
                detail: "The \(cloud.displayName) platform answered HTTP \(detail.status)" + Self.quoted(detail.message)
                    + ": it is limiting the rate of calls. Slow down and retry after "
                    + (retryAfter.map(Self.seconds) ?? "a while") + ".",
                upstream: detail, headers: retryAfter.map { [("Retry-After", String($0))] } ?? [])

        case .upstreamFailed(let cloud, let detail):
            return Problem(
                type: "/problems/upstream-error", title: "The \(cloud.displayName) platform failed", status: 502,
                detail: "The \(cloud.displayName) platform answered HTTP \(detail.status)"
                    + Self.quoted(detail.message) + ". Retry later; if it persists, report the upstream request id. "
                    + Self.mayHaveHappened(call),
                upstream: detail)

        case .upstreamUnavailable(let cloud, let detail, let retryAfter):
            return Problem(
                type: "/problems/upstream-unavailable", title: "The \(cloud.displayName) platform is unavailable",
                status: 503,
                detail: "The \(cloud.displayName) platform answered 503" + Self.quoted(detail.message)
                    + ". Retry after \(retryAfter.map(Self.seconds) ?? "a while"). " + Self.mayHaveHappened(call),
                upstream: detail, headers: retryAfter.map { [("Retry-After", String($0))] } ?? [])

        case .upstreamUnreachable(let cloud, let reason):
            return Problem(
                type: "/problems/upstream-unreachable", title: "The \(cloud.displayName) platform cannot be reached",
                status: 502,
                detail: "The gateway could not connect to the \(cloud.displayName) platform (\(reason)), so nothing "
                    + "was sent to it. Retry later; if it persists, the gateway's upstream configuration or network "
                    + "needs attention.")

        case .upstreamConnectionLost(let cloud, let reason):
            return Problem(
                type: "/problems/upstream-connection-lost",
                title: "The connection to the \(cloud.displayName) platform broke", status: 502,
                detail: "The connection to the \(cloud.displayName) platform broke before its answer was complete "
                    + "(\(reason)). " + Self.mayHaveHappened(call))

        case .upstreamTimedOut(let cloud, let reason):
            return Problem(
                type: "/problems/upstream-timeout", title: "The \(cloud.displayName) platform did not answer in time",
                status: 504,
                detail: "The \(cloud.displayName) platform did not answer in time (\(reason)). "
                    + Self.mayHaveHappened(call))

        case .upstreamMalformed(let cloud, let reason):
            return Problem(
                type: "/problems/upstream-malformed", title: "The \(cloud.displayName) platform's answer is unreadable",
                status: 502,
                detail: "The \(cloud.displayName) platform answered with a body the gateway cannot read (\(reason)). "
                    + Self.mayHaveHappened(call) + " If it persists, report it with this request id.")

        case .upstreamCircuitOpen(let cloud, let retryAfter):
            return Problem(
                type: "/problems/upstream-circuit-open",
                title: "The gateway has stopped calling the \(cloud.displayName) platform for now", status: 503,
                detail: "Calls to the \(cloud.displayName) platform kept failing (errors, timeouts or broken "
                    + "connections), so the gateway stops sending it calls for a while and nothing was sent. Retry "
                    + "after \(Self.seconds(retryAfter)); if it persists, the platform or the gateway's route to it needs "
                    + "attention.",
                headers: [("Retry-After", String(retryAfter))])

        case .upstreamOverloaded(let cloud, let limit):
            return Problem(
                type: "/problems/upstream-overloaded",
                title: "Too many calls to the \(cloud.displayName) platform are in progress", status: 503,
                detail: "The gateway already has \(limit) calls in progress to the \(cloud.displayName) platform, "
                    + "its limit, so nothing was sent. Retry after 1 second; if it persists, the platform is slow or "
                    + "the gateway's upstream.maxInFlight is too low for the traffic.",
                headers: [("Retry-After", "1")])

        case .bodyTooLarge(let detail):
            return Problem(
                type: "/problems/body-too-large", title: "The request body is too large", status: 413, detail: detail)

        case .targetTooLong(let limit):
            return Problem(
                type: "/problems/uri-too-long", title: "The request target is too long", status: 414,
                detail: "The path and query add up to more than \(limit) bytes. Job ids are at most 128 characters; "
                    + "send fewer or shorter query parameters.")

        case .headersTooLarge(let limit):
            return Problem(
                type: "/problems/headers-too-large", title: "The request headers are too large", status: 431,
                detail: "The request headers add up to more than \(limit) bytes. \(Self.sendOnlyReadHeaders), with "
                    + "shorter values.")

        case .tooManyFields(let fields):
            return Problem(
                type: "/problems/headers-too-large", title: "The request headers are too large", status: 431,
                detail: "The request has \(fields) header fields, query parameters and cookies, more than the gateway "
                    + "can hold with its answer. \(Self.sendOnlyReadHeaders).")

        case .tooManyConnections(let limit):
            return Problem(
                type: "/problems/too-many-connections", title: "The gateway has too many connections open",
                status: 503,
                detail: "This gateway instance already serves \(limit) connections, its limit, so this one is closed "
                    + "and nothing was sent. Retry in a moment and keep one connection open for several calls "
                    + "rather than opening one per call.",
                headers: [("Retry-After", "1")])

        case .shuttingDown:
            return Problem(
                type: "/problems/shutting-down", title: "The gateway is shutting down", status: 503,
                detail: "This gateway instance is stopping; retry the request.", headers: [("Retry-After", "1")])

        case .interruptedByShutdown:
            return Problem(
                type: "/problems/interrupted", title: "The gateway stopped before answering", status: 503,
                detail: "This gateway instance stopped while the call was in progress, so it may have been carried "
                    + "out. A lookup can be retried; before retrying a create or a removal, list the jobs (or GET "
                    + "the job) to see whether it happened.")

        case .auditUnavailable:
            return Problem(
                type: "/problems/audit-unavailable", title: "The deletion could not be recorded", status: 503,
                detail: "The gateway records every deletion before forwarding it and could not write this one to its "
                    + "audit trail, so nothing was sent to the platform. Retry later; if it persists, tell the "
                    + "gateway's operators that the audit trail is not writable.",
                headers: [("Retry-After", "5")])

        case .notReady(let reason):
            return Problem(
                type: "/problems/not-ready", title: "The gateway is not ready for traffic", status: 503,
                detail: "This instance should not take traffic now: \(reason). Send calls to another instance; "
                    + "operators should check the gateway's log.")
        }
    }

    /// How the metrics name an upstream failure; nil for failures that are not the upstream's.
    var upstreamErrorKind: String? {
        switch self {
        case .upstreamTimedOut: "timeout"
        case .upstreamUnreachable(_, let reason) where reason.lowercased().contains("tls"): "tls"
        case .upstreamUnreachable: "unreachable"
        case .upstreamConnectionLost: "connection_lost"
        case .upstreamFailed, .upstreamUnavailable: "status_5xx"
        case .upstreamRefused, .sandboxLookupRefused, .upstreamRateLimited: "status_4xx"
        case .upstreamMalformed: "malformed"
        case .upstreamCircuitOpen: "circuit_open"
        case .upstreamOverloaded: "overloaded"
        case .sandboxLookupFailed(_, let cause, _): cause.upstreamErrorKind
        default: nil
        }
    }

    /// The upstream's answer inside the problem, when there was one.
    var upstreamDetail: UpstreamErrorDetail? {
        problem.upstream
    }

    /// The upstream's message as a clause; the caller's sentence supplies the full stop.
    /// A platform that failed may still have acted on what it was sent, and a repeated create starts a second
    /// deletion; a lookup changes nothing and can be repeated as it is.
    private static func mayHaveHappened(_ call: CallKind) -> String {
        switch call {
        case .list, .lookup:
            "A lookup changes nothing and can be retried as it is."
        case .deletion:
            "The platform may have carried the call out: list the jobs (or GET the job) to see whether it did before "
                + "retrying it."
        case .other:
            "A lookup can be retried; a create or a removal may have been carried out: list the jobs before retrying "
                + "one."
        }
    }

    /// What went wrong with a sandbox lookup, as a clause.
    fileprivate var lookupFailure: String {
        switch self {
        case .upstreamTimedOut(let cloud, let reason):
            "the \(cloud.displayName) platform's Sandbox Management API did not answer in time (\(reason))"
        case .upstreamUnreachable(let cloud, let reason):
            "the \(cloud.displayName) platform's Sandbox Management API could not be reached (\(reason))"
        case .upstreamConnectionLost(let cloud, let reason):
            "the connection to the \(cloud.displayName) platform's Sandbox Management API broke (\(reason))"
        case .upstreamMalformed(let cloud, let reason):
            "the \(cloud.displayName) platform's Sandbox Management API answered with a body the gateway cannot read "
                + "(\(reason))"
        case .upstreamFailed(let cloud, let detail), .upstreamUnavailable(let cloud, let detail, _),
            .upstreamRateLimited(let cloud, let detail, _):
            "the \(cloud.displayName) platform's Sandbox Management API answered HTTP \(detail.status)"
                + Self.quoted(detail.message)
        default:
            problem.detail
        }
    }

    private static func seconds(_ count: Int) -> String {
        count == 1 ? "1 second" : "\(count) seconds"
    }

    private static func quoted(_ message: String?) -> String {
        guard var message, !message.isEmpty else { return "" }
        while let last = message.last, last == "." || last == " " {
            message.removeLast()
        }
        return ": " + message
    }

    /// The advice for a head too large: the headers the gateway reads are all it needs.
    private static let sendOnlyReadHeaders =
        "Send only the headers the gateway reads (Authorization, x-api-key, x-gw-ims-org-id, the sandbox, "
        + "Content-Type, Accept, a request id and trace context)"

    /// What a caller should do about an upstream 4xx, by status.
    private static func refusalAdvice(_ cloud: Cloud, _ detail: UpstreamErrorDetail, call: CallKind) -> String {
        let said = "The \(cloud.displayName) platform answered HTTP \(detail.status)" + quoted(detail.message) + ". "
        switch detail.status {
        case 401:
            return said + "The access token was not accepted: get a fresh token and retry."
        case 403:
            return said + "Check that the token, the API key and the organization belong together and may use this "
                + "sandbox."
        case 404 where call == .list:
            return said + "The platform found no jobs collection for this organization and sandbox: check the "
                + "organization and the sandbox."
        case 404:
            return said + "No such job exists for this organization and sandbox: check the id, the organization and "
                + "the sandbox."
        case 400 where (detail.message ?? "").lowercased().contains("batch"):
            return said + "Only a batch of an ExperienceEvent dataset can be deleted on its own; a record (profile) "
                + "dataset's data is deleted as a whole: send {\"datasetId\": \"<id>\"} without a batchId."
        case 422:
            return said + "The platform will not run this delete request as asked (it may already exist, or a batch "
                + "of a record dataset cannot be deleted): read the upstream message and change the request."
        default:
            return said + "Correct the request as the message says."
        }
    }
}
