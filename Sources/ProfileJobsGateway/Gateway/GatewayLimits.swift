/// Bounds the gateway enforces on what callers send.
enum GatewayLimits {
    static let pageSizes = 1...100
    static let defaultPageSize = 20
    static let maxIdLength = 128
    /// Upstream calls one list page may take when jobs handed out earlier have to be skipped.
    static let upstreamCallsPerPage = 5
    /// How much of an upstream list the gateway reads to filter or order it itself: 10 calls of 100 jobs.
    static let scanWindow = 100
    static let scanCalls = 10
    /// The older AWS dialect lists this many jobs at most.
    static let awsArrayCap = 100
    /// Jobs sharing the boundary's creation time that a cursor remembers (a cursor stays under 6.5 KB).
    static let boundaryIds = 600

    /// Credential headers forwarded to the platform as they came, with the most bytes each may have. IMS access
    /// tokens are a few kilobytes; an API key or an organization id is short.
    static let forwardedHeaderLimits = [("Authorization", 8192), ("x-api-key", 256), ("x-gw-ims-org-id", 256)]

    /// A value the gateway may pass on verbatim: visible ASCII, spaces and tabs, nothing that could end a header
    /// line or confuse the platform's parser.
    static func isForwardableHeaderValue(_ value: String, limit: Int) -> Bool {
        value.utf8.count <= limit && value.utf8.allSatisfy { $0 == 0x09 || (0x20...0x7E).contains($0) }
    }

    /// The one rule for ids and sandbox names a caller or the configuration may give: 1 to 128 letters, digits,
    /// `-` or `_`. Nothing else can reach an upstream URL or header.
    static func isWellFormedId(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.count <= maxIdLength && value.utf8.allSatisfy(isIdByte)
    }

    static func isIdByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default:
            false
        }
    }
}
