import FoundationEssentials

extension JSONValue {
    /// The keys of a top-level JSON object in the order written, duplicates included, each decoded (so that
    /// `"\u0064atasetId"` reads as `datasetId`); nil when the bytes are not an object. The decoder behind `parse`
    /// keeps one of two equal keys silently, and a deletion must never be guessed at, so create bodies are checked
    /// with this as well.
    static func topLevelKeys(_ bytes: [UInt8]) -> [String]? {
        var scanner = KeyScanner(bytes: bytes)
        return scanner.objectKeys()
    }
}

/// Walks the raw text just far enough to find the top-level keys; values are skipped, strings with their escapes
/// and nested containers by depth. `parse` has already accepted the text, so this needs no full validation.
private struct KeyScanner {
    let bytes: [UInt8]
    var index = 0

    mutating func objectKeys() -> [String]? {
        skipSpace()
        guard take(UInt8(ascii: "{")) else { return nil }
        var keys: [String] = []
        skipSpace()
        if take(UInt8(ascii: "}")) { return keys }
        while true {
            skipSpace()
            guard let key = string() else { return nil }
            keys.append(key)
            skipSpace()
            guard take(UInt8(ascii: ":")), skipValue() else { return nil }
            skipSpace()
            if take(UInt8(ascii: ",")) { continue }
            return take(UInt8(ascii: "}")) ? keys : nil
        }
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) {
            index += 1
        }
    }

    /// A string token at the cursor, decoded by the JSON decoder itself so escapes mean what they mean there.
    private mutating func string() -> String? {
        let start = index
        guard skipString() else { return nil }
        return try? JSONDecoder().decode(String.self, from: Data(bytes[start..<index]))
    }

    private mutating func skipString() -> Bool {
        guard take(UInt8(ascii: "\"")) else { return false }
        while index < bytes.count {
            let byte = bytes[index]
            index += byte == UInt8(ascii: "\\") ? 2 : 1
            if byte == UInt8(ascii: "\"") { return true }
        }
        return false
    }

    /// Skips one value: a string, or everything up to the comma or brace that ends it at this depth.
    private mutating func skipValue() -> Bool {
        skipSpace()
        var depth = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                guard skipString() else { return false }
                if depth == 0 { return true }
                continue
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if depth == 0 { return true }
                depth -= 1
                if depth == 0 {
                    index += 1
                    return true
                }
            case UInt8(ascii: ","):
                if depth == 0 { return true }
            default:
                break
            }
            index += 1
        }
        return depth == 0
    }
}
