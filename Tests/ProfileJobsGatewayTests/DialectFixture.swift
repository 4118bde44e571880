import Foundation
import Testing

/// Reads the documented payloads and golden files copied into the test bundle.
enum DialectFixture {
    static func bytes(_ path: String) throws -> [UInt8] {
        let root = try #require(Bundle.module.resourceURL)
        let url = root.appendingPathComponent("Fixtures").appendingPathComponent(path)
        return Array(try Data(contentsOf: url))
    }

    /// A golden file without the final newline editors add.
    static func golden(_ name: String) throws -> [UInt8] {
        var bytes = try self.bytes("canonical/\(name)")
        while bytes.last == UInt8(ascii: "\n") {
            bytes.removeLast()
        }
        return bytes
    }

    /// Records an issue showing both documents one field per line, marking where they part.
    static func expectSameJSON(
        _ actual: [UInt8],
        _ expected: [UInt8],
        _ name: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard actual != expected else { return }

        let actualLines = fieldLines(actual)
        let expectedLines = fieldLines(expected)
        var report = "\(name) differs from its golden file:\n"
        for index in 0..<max(actualLines.count, expectedLines.count) {
            let want = index < expectedLines.count ? expectedLines[index] : "<nothing>"
            let got = index < actualLines.count ? actualLines[index] : "<nothing>"
            report += want == got ? "   \(want)\n" : " - \(want)\n + \(got)\n"
        }
        Issue.record(Comment(rawValue: report), sourceLocation: sourceLocation)
    }

    /// Splits compact JSON after each comma and brace outside strings, so a diff reads field by field.
    private static func fieldLines(_ json: [UInt8]) -> [String] {
        var lines: [String] = []
        var current: [UInt8] = []
        var inString = false
        var escaped = false

        for byte in json {
            current.append(byte)
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: ","), UInt8(ascii: "{"), UInt8(ascii: "["):
                lines.append(String(decoding: current, as: UTF8.self))
                current = []
            default: break
            }
        }
        if !current.isEmpty {
            lines.append(String(decoding: current, as: UTF8.self))
        }
        return lines
    }
}
