import ProfileJobsGateway

/// Who is calling, once the platform's API gateway has let the call through.
///
/// The simulators accept any bearer token except those starting with `invalid`. A token starting with `user-` stands
/// for a user's access token; any other stands for a service (technical account) token. The difference shows in
/// sandbox lookups, where only service credentials see a sandbox's `id`.
struct Caller: Sendable, Equatable {
    /// Which kind of credential the bearer token stands for.
    enum TokenKind: Sendable, Equatable {
        case user
        case service
    }

    var orgId: String
    var tokenKind: TokenKind

    /// Checks the headers in the order the platform does: token, API key, organization.
    init(headers: HTTPHeaders) throws(PlatformError) {
        guard let authorization = headers["Authorization"] else { throw .tokenMissing }

        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, String(parts[0]).equalsIgnoringASCIICase("Bearer") else { throw .tokenInvalid }

        let token = parts[1].trimmingSpaces
        guard !token.isEmpty, !token.hasPrefix("invalid") else { throw .tokenInvalid }

        guard let apiKey = headers["x-api-key"], !apiKey.trimmingSpaces.isEmpty else { throw .apiKeyMissing }

        guard let orgId = headers["x-gw-ims-org-id"]?.trimmingSpaces, !orgId.isEmpty else { throw .orgMissing }

        self.orgId = orgId
        self.tokenKind = token.hasPrefix("user-") ? .user : .service
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs, as header values are compared.
    var trimmingSpaces: String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isBlank($0) }), let last = lastIndex(where: { !isBlank($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
