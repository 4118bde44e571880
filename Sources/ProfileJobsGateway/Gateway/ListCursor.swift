import FoundationEssentials

/// Where a walk through the job list stands: an offset into the newest-first list and the page size.
///
/// Opaque to callers (base64url), so the encoding can change without breaking them; offsets rather than upstream
/// tokens, because both clouds accept an offset and only Azure has tokens.
struct ListCursor: Equatable {
    var offset: Int
    var limit: Int

    var encoded: String {
        let text = "v1:\(offset):\(limit)"
        let base64 = Data(text.utf8).base64EncodedString()
        return String(base64.compactMap { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 == "=" ? nil : $0 })
    }

    init(offset: Int, limit: Int) {
        self.offset = offset
        self.limit = limit
    }

    /// Nil for anything this gateway did not hand out.
    init?(encoded: String) {
        guard encoded.count <= 64 else { return nil }
        var base64 = String(encoded.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard let data = Data(base64Encoded: base64) else { return nil }

        let parts = String(decoding: data, as: UTF8.self).split(separator: ":")
        guard parts.count == 3, parts[0] == "v1", let offset = Int(parts[1]), let limit = Int(parts[2]),
            offset >= 0, offset <= 1_000_000, GatewayLimits.pageSizes.contains(limit)
        else { return nil }
        self.offset = offset
        self.limit = limit
    }
}

/// Bounds the gateway enforces on what callers send.
enum GatewayLimits {
    static let pageSizes = 1...100
    static let defaultPageSize = 20
    static let maxIdLength = 128
}
