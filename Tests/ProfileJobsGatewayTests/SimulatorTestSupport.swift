import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// A clock the tests move by hand, so a job's states can be visited one by one.
final class TestClock: Sendable {
    private let time: Locked<Double>

    init(_ start: Double = 1_734_896_690.250006) {
        time = Locked(start)
    }

    var now: Double {
        time.withLock { $0 }
    }

    func advance(_ seconds: Double) {
        time.withLock { $0 += seconds }
    }

    var options: SimulatorOptions {
        SimulatorOptions(clock: { self.now })
    }
}

/// The two simulated clouds, for tests that hold for both.
enum SimulatedCloud: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case azure
    case aws

    var testDescription: String { rawValue }

    func simulator(_ options: SimulatorOptions) -> any HTTPHandler {
        switch self {
        case .azure: AzureSimulator(options: options)
        case .aws: AWSSimulator(options: options)
        }
    }

    /// Valid credentials for `org`, with the sandbox header this cloud expects for prod.
    func headers(org: String = "ORG1@AdobeOrg", token: String = "service-token") -> HTTPHeaders {
        var headers = HTTPHeaders([
            ("Authorization", "Bearer \(token)"), ("x-api-key", "gateway-client"), ("x-gw-ims-org-id", org),
        ])
        switch self {
        case .azure: headers.add("x-sandbox-name", "prod")
        case .aws: headers.add("x-sandbox-id", SimulatorOptions.prodSandboxId)
        }
        return headers
    }
}

let jobsPath = "/data/core/ups/system/jobs"
let sandboxesPath = "/data/foundation/sandbox-management/sandboxes"

/// Sends one request straight to a handler, a JSON body getting its content type unless one is given.
func send(
    _ handler: any HTTPHandler,
    _ method: String,
    _ path: String = jobsPath,
    query: [(String, String)] = [],
    headers: HTTPHeaders,
    body: String? = nil
) async -> HTTPResponse {
    var headers = headers
    if body != nil, headers["Content-Type"] == nil {
        headers.add("Content-Type", "application/json")
    }
    let request = HTTPRequest(
        method: method, path: path, query: query.map { (name: $0.0, value: $0.1) }, headers: headers,
        body: Array((body ?? "").utf8))
    return await handler.handle(request)
}

/// The body parsed as JSON, failing the test if it is not.
func json(_ response: HTTPResponse) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(response.body), options: [.fragmentsAllowed])
}

func object(_ response: HTTPResponse) throws -> [String: Any] {
    try #require(try json(response) as? [String: Any])
}

func array(_ response: HTTPResponse) throws -> [[String: Any]] {
    try #require(try json(response) as? [[String: Any]])
}

/// A fixture file (path under `Fixtures/`) parsed as JSON.
func fixture(_ path: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(contentsOf: try fixtureURL(path)))
}

func fixtureURL(_ path: String) throws -> URL {
    try #require(Bundle.module.resourceURL).appendingPathComponent("Fixtures/\(path)")
}

/// Whether two parsed JSON values are equal, key order aside (compared as sorted-key serializations).
func sameJSON(_ lhs: Any, _ rhs: Any) -> Bool {
    let options: JSONSerialization.WritingOptions = [.sortedKeys, .fragmentsAllowed]
    guard let left = try? JSONSerialization.data(withJSONObject: lhs, options: options),
        let right = try? JSONSerialization.data(withJSONObject: rhs, options: options)
    else { return false }
    return left == right
}

/// The structure of a JSON value (keys and kinds, not values), to compare an answer with a documented sample.
func shape(_ value: Any) -> String {
    switch value {
    case let object as [String: Any]:
        return "{" + object.keys.sorted().map { "\($0):\(shape(object[$0] as Any))" }.joined(separator: ",") + "}"
    case let array as [Any]:
        return "[" + (array.first.map(shape) ?? "") + "]"
    case is String:
        return "string"
    case is NSNull:
        return "null"
    default:
        return "number"
    }
}

/// The `id` (Azure) or `requestId` (AWS) of a job answer.
func jobId(_ job: [String: Any]) -> String? {
    (job["id"] ?? job["requestId"]) as? String
}

/// Whether `text` is a lower-case UUID, as both clouds write job ids.
func isLowercaseUUID(_ text: String) -> Bool {
    UUID(uuidString: text) != nil && text == text.lowercased()
}
