/// The paths a simulated platform serves, read from the raw request path.
enum Route: Sendable, Equatable {
    /// `/data/core/ups/system/jobs`: list and create.
    case jobs
    /// `/data/core/ups/system/jobs/{id}`: look up, and on Azure remove.
    case job(id: String)
    /// `/data/foundation/sandbox-management/sandboxes/{name}`: the Sandbox Management API lookup.
    case sandbox(name: String)

    private static let jobsPath = "/data/core/ups/system/jobs"
    private static let sandboxesPath = "/data/foundation/sandbox-management/sandboxes/"

    /// Nil for any other path, including a trailing slash or extra segments.
    init?(path: String) {
        if path == Self.jobsPath {
            self = .jobs
        } else if let id = Self.segment(of: path, after: Self.jobsPath + "/") {
            self = .job(id: id)
        } else if let name = Self.segment(of: path, after: Self.sandboxesPath) {
            self = .sandbox(name: name)
        } else {
            return nil
        }
    }

    /// The one non-empty segment after `prefix`.
    private static func segment(of path: String, after prefix: String) -> String? {
        guard path.hasPrefix(prefix) else { return nil }
        let rest = path.dropFirst(prefix.count)
        guard !rest.isEmpty, !rest.contains("/") else { return nil }
        return String(rest)
    }
}
