import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// A logger that keeps end-to-end tests quiet unless something is really wrong.
let quietLogger = Logger(label: "test", minimum: .error)

/// Starts both simulators and a gateway on free loopback ports, runs `body`, and stops them whatever happens.
func withDemo<T>(
    simulatorOptions: SimulatorOptions = SimulatorOptions(),
    awsOptions: SimulatorOptions? = nil,
    logger: Logger = quietLogger,
    configure: (inout GatewayConfiguration) -> Void = { _ in },
    _ body: (DemoEnvironment) async throws -> T
) async throws -> T {
    let environment = try DemoEnvironment(
        gatewayPort: 0, simulatorOptions: simulatorOptions, awsOptions: awsOptions, logger: logger,
        configure: configure)
    let result: Result<T, any Error>
    do {
        result = .success(try await body(environment))
    } catch {
        result = .failure(error)
    }
    try await stopOffPool { environment.stop() }
    // Only the demo's own temporary directory; a test may point the trail elsewhere (`/dev/full`).
    let directory = URL(fileURLWithPath: environment.configuration.audit.filePath).deletingLastPathComponent()
    if directory.lastPathComponent.hasPrefix("profile-jobs-gateway-demo-") {
        try? FileManager.default.removeItem(at: directory)
    }
    return try result.get()
}

/// Every line a logger wrote, for tests that read the log.
final class LogCapture: Sendable {
    private let lines = Locked<[String]>([])

    var logger: Logger {
        Logger(label: "test", minimum: .info) { line in
            self.lines.withLock { $0.append(String(decoding: line, as: UTF8.self)) }
        }
    }

    var text: String { lines.withLock { $0.joined() } }

    /// The lines as JSON objects.
    var entries: [[String: Any]] {
        lines.withLock { $0 }.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }
}

extension DemoEnvironment {
    /// The audit file's records, oldest first.
    func auditRecords() throws -> [AuditRecord] {
        let text = try String(contentsOfFile: configuration.audit.filePath, encoding: .utf8)
        return text.split(separator: "\n").compactMap { AuditRecord(json: Array($0.utf8)) }
    }
}

/// Stopping a server blocks while it drains; done on Swift's small cooperative pool it would starve the handlers
/// of every other test running at the same time.
func stopOffPool(_ stop: @escaping @Sendable () -> Void) async throws {
    try await offPool { stop() }
}

/// A caller of the gateway: one organization's credentials, sent with every call unless left out.
struct GatewayCaller: Sendable {
    var port: UInt16
    var orgId: String
    var token = "svc-token"
    var apiKey = "k"

    init(port: UInt16, orgId: String) {
        self.port = port
        self.orgId = orgId
    }

    init(_ environment: DemoEnvironment, orgId: String) {
        self.init(port: environment.gatewayPort, orgId: orgId)
    }

    /// The required headers minus `omitting`, then `extra`.
    func headers(omitting: Set<String> = [], extra: [(String, String)] = []) -> [(String, String)] {
        let required = [("Authorization", "Bearer \(token)"), ("x-api-key", apiKey), ("x-gw-ims-org-id", orgId)]
        return required.filter { !omitting.contains($0.0) } + extra
    }

    /// One call over a real socket, off Swift's cooperative pool; the client's read timeout bounds every wait.
    func call(
        _ method: String,
        _ target: String,
        omitting: Set<String> = [],
        headers extra: [(String, String)] = [],
        body: String? = nil,
        contentType: String? = "application/json"
    ) async throws -> RawHTTPClient.Response {
        var extra = extra
        if body != nil, let contentType {
            extra.append(("Content-Type", contentType))
        }
        return try await RawHTTPClient(port: port).sendOffPool(
            method, target, headers: headers(omitting: omitting, extra: extra), body: Array((body ?? "").utf8))
    }

    func list(_ query: String = "", headers: [(String, String)] = []) async throws -> RawHTTPClient.Response {
        try await call("GET", "/v1/system/jobs" + query, headers: headers)
    }

    func create(_ body: String, headers: [(String, String)] = []) async throws -> RawHTTPClient.Response {
        try await call("POST", "/v1/system/jobs", headers: headers, body: body)
    }

    func get(_ id: String, headers: [(String, String)] = []) async throws -> RawHTTPClient.Response {
        try await call("GET", "/v1/system/jobs/" + id, headers: headers)
    }

    func remove(_ id: String, headers: [(String, String)] = []) async throws -> RawHTTPClient.Response {
        try await call("DELETE", "/v1/system/jobs/" + id, headers: headers)
    }

    /// Creates a dataset delete and returns the canonical job, failing the test unless the answer is 201.
    func createDatasetDelete(_ datasetId: String) async throws -> [String: Any] {
        let response = try await create(#"{"datasetId": "\#(datasetId)"}"#)
        #expect(response.status == 201, "\(response.text)")
        return try response.jsonObject()
    }
}

extension RawHTTPClient.Response {
    /// The body as a JSON object, failing the test when it is anything else.
    func jsonObject() throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
        return try #require(value as? [String: Any], "not a JSON object: \(text)")
    }

    /// Checks the RFC 9457 problem the gateway answers with and returns it for further checks.
    @discardableResult
    func expectProblem(
        status: Int,
        type: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> [String: Any] {
        #expect(self.status == status, "\(text)", sourceLocation: sourceLocation)
        #expect(header("Content-Type") == "application/problem+json", sourceLocation: sourceLocation)
        let problem = try jsonObject()
        #expect(problem["type"] as? String == type, "\(text)", sourceLocation: sourceLocation)
        #expect((problem["title"] as? String)?.isEmpty == false, sourceLocation: sourceLocation)
        #expect(problem["status"] as? Int == status, sourceLocation: sourceLocation)
        #expect((problem["detail"] as? String)?.isEmpty == false, sourceLocation: sourceLocation)
        let requestId = problem["requestId"] as? String
        #expect(requestId != nil && requestId == header("x-request-id"), sourceLocation: sourceLocation)
        return problem
    }
}

extension [String: Any] {
    /// A nested object, or an empty one so that the missing keys show in the failing expectations.
    func object(_ key: String) -> [String: Any] {
        self[key] as? [String: Any] ?? [:]
    }

    func string(_ key: String) -> String? {
        self[key] as? String
    }

    func isNull(_ key: String) -> Bool {
        self[key] is NSNull
    }
}

extension HTTPRequest {
    /// The body as a JSON object, or nil.
    var jsonBody: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }
}

/// Requests of `requests` on the jobs endpoint with `method`, optionally for one path under it.
func jobCalls(_ requests: [HTTPRequest], method: String? = nil) -> [HTTPRequest] {
    requests.filter { $0.path.hasPrefix(jobsPath) && (method == nil || $0.method == method) }
}

/// Requests of `requests` to the Sandbox Management API.
func sandboxLookups(_ requests: [HTTPRequest]) -> [HTTPRequest] {
    requests.filter { $0.path.hasPrefix(sandboxesPath) }
}

/// Every job of a list walk, following `page.next` as `?cursor=` until it is null; fails past `maxPages`.
func walkList(_ caller: GatewayCaller, limit: Int, maxPages: Int = 50) async throws -> (ids: [String], pages: Int) {
    var ids: [String] = []
    var query = "?limit=\(limit)"
    for page in 1...maxPages {
        let response = try await caller.list(query)
        #expect(response.status == 200, "\(response.text)")
        let body = try response.jsonObject()
        let jobs = try #require(body["jobs"] as? [[String: Any]], "\(response.text)")
        #expect(jobs.count <= limit)
        ids += jobs.compactMap { $0.string("id") }
        let paging = body.object("page")
        #expect(paging["limit"] as? Int == limit)
        guard let next = paging.string("next") else {
            #expect(paging.isNull("next"), "page.next must be a string or null: \(response.text)")
            return (ids, page)
        }
        query = "?cursor=" + next
    }
    Issue.record("the walk did not end within \(maxPages) pages")
    return (ids, maxPages)
}

/// An upstream the test scripts: answers every call with the status, headers and body it is told, or stalls.
final class ScriptedUpstream: HTTPHandler {
    struct Script: Sendable {
        var status = 200
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        var body: [UInt8] = []
        /// Holds the answer until the test releases it (or the server stops).
        var stall = false
    }

    private let state = Locked((script: Script(), next: [Script](), received: [HTTPRequest]()))

    func answer(_ script: Script) {
        state.withLock { ($0.script, $0.next) = (script, []) }
    }

    /// Answers the next calls with `scripts` in turn, then keeps answering with the last one.
    func answerInTurn(_ scripts: [Script]) {
        state.withLock { ($0.script, $0.next) = (scripts[0], Array(scripts.dropFirst())) }
    }

    func release() {
        state.withLock { $0.script.stall = false }
    }

    var receivedRequests: [HTTPRequest] {
        state.withLock { $0.received }
    }

    func handle(_ request: HTTPRequest) async -> HTTPResponse {
        var script = state.withLock { state in
            state.received.append(request)
            defer {
                if !state.next.isEmpty {
                    state.script = state.next.removeFirst()
                }
            }
            return state.script
        }
        while script.stall {
            try? await Task.sleep(for: .milliseconds(20))
            script.stall = state.withLock { $0.script.stall }
        }
        return HTTPResponse(status: script.status, headers: HTTPHeaders(script.headers), body: script.body)
    }
}

/// A loopback port nothing listens on: bound by a server that is stopped again at once.
/// A loopback port that refuses connections for as long as the returned socket stays open: bound but never
/// listening, so no server started by a test running in parallel can take it.
func closedPort() throws -> (port: UInt16, socket: Int32) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard fd >= 0, bound else {
        throw RawHTTPClient.Failure(description: "could not reserve a loopback port")
    }
    return (UInt16(bigEndian: address.sin_port), fd)
}
