/// The Sandbox Management API's answer to GET /data/foundation/sandbox-management/sandboxes/{name}.
public enum SandboxManagementDialect {
    /// name and id as the body gives them; id is nil for user tokens (the API hides it from them).
    ///
    /// A body without a name is malformed: whatever it describes, it cannot be shown to be the sandbox asked for.
    public static func readSandbox(_ body: [UInt8]) throws(MalformedUpstreamBody) -> SandboxRef {
        guard UpstreamJSON.opening(of: body) != .array else {
            throw MalformedUpstreamBody(reason: "expected a sandbox object, got an array")
        }
        let sandbox = try UpstreamJSON.decode(SandboxBody.self, from: body)

        guard let name = nonEmpty(sandbox.name) else {
            throw MalformedUpstreamBody(reason: "name: missing")
        }
        return SandboxRef(name: name, id: nonEmpty(sandbox.id))
    }
}

/// The two fields of a sandbox the gateway needs; title, state, region and the rest are ignored.
struct SandboxBody: ScannableBody {
    var name: String?
    var id: String?

    init(scanned node: JSONNode) throws(NotScanned) {
        let object = try ScannedObject(node)
        name = try object.string("name")
        id = try object.string("id")
    }
}
