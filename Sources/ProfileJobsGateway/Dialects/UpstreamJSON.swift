import FoundationEssentials

/// The one place upstream bytes are decoded, so the parser behind every dialect can be swapped.
enum UpstreamJSON {
    /// One decoder for every body: it is Sendable and holds no per-call state, and making one costs time.
    static let decoder = JSONDecoder()

    /// What a body starts with, which decides the list shape before any decoding.
    enum Opening: Equatable {
        case object
        case array
        case other(UInt8)
        case empty
    }

    /// The first byte after whitespace and a UTF-8 byte-order mark.
    static func opening(of body: [UInt8]) -> Opening {
        var index = 0
        if body.starts(with: [0xEF, 0xBB, 0xBF]) {
            index = 3
        }

        while index < body.count {
            switch body[index] {
            case 0x20, 0x09, 0x0A, 0x0D:
                index += 1
            case UInt8(ascii: "{"):
                return .object
            case UInt8(ascii: "["):
                return .array
            case let byte:
                return .other(byte)
            }
        }
        return .empty
    }

    /// Decodes `body` as `T`, turning every decoding failure into a short reason.
    ///
    /// The byte-level reader takes the bodies it is sure of; `JSONDecoder` reads every other one, as it always has.
    static func decode<T: ScannableBody>(_ type: T.Type, from body: [UInt8]) throws(MalformedUpstreamBody) -> T {
        switch opening(of: body) {
        case .empty:
            throw MalformedUpstreamBody(reason: "empty body")
        case .other(UInt8(ascii: "<")):
            throw MalformedUpstreamBody(reason: "not JSON (looks like HTML)")
        case .other:
            throw MalformedUpstreamBody(reason: "not a JSON object or array")
        case .object, .array:
            break
        }

        if let scanned = scanned(T.self, from: body) {
            return scanned
        }
        return try decodedByFoundation(T.self, from: body)
    }

    /// The body as the byte-level reader reads it; nil when it leaves the body to `JSONDecoder`.
    static func scanned<T: ScannableBody>(_ type: T.Type, from body: [UInt8]) -> T? {
        guard let node = JSONNode.parse(body) else { return nil }
        return try? T(scanned: node)
    }

    /// The body as `JSONDecoder` reads it, for bodies the byte-level reader leaves, and for the checks that hold the
    /// two readers to the same answers.
    static func decodedByFoundation<T: Decodable>(
        _ type: T.Type,
        from body: [UInt8]
    ) throws(MalformedUpstreamBody) -> T {
        do {
            return try decoder.decode(T.self, from: Data(body))
        } catch let error as DecodingError {
            throw MalformedUpstreamBody(reason: reason(for: error))
        } catch {
            throw MalformedUpstreamBody(reason: "invalid JSON")
        }
    }

    /// A reason that names the offending field, without echoing upstream data.
    static func reason(for error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "invalid JSON"
        case .dataCorrupted(let context):
            return "\(path(context.codingPath)): invalid value"
        case .typeMismatch(_, let context):
            return "\(path(context.codingPath)): unexpected type"
        case .valueNotFound(_, let context):
            return "\(path(context.codingPath)): unexpected null"
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])): missing"
        @unknown default:
            return "invalid JSON"
        }
    }

    /// `children[1].properties.batchId` style, the way a reader of the body would point at it.
    static func path(_ codingPath: [any CodingKey]) -> String {
        var text = ""
        for key in codingPath {
            if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return text.isEmpty ? "body" : text
    }
}

/// A scalar some upstreams send as a string and others as a number (AWS `start` is `"0"`).
struct LenientScalar: Decodable, Sendable {
    var text: String

    init(text: String) {
        self.text = text
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let string = try? container.decode(String.self) {
            text = string
        } else if let integer = try? container.decode(Int.self) {
            text = String(integer)
        } else if let number = try? container.decode(Double.self) {
            text = String(number)
        } else {
            text = String(try container.decode(Bool.self))
        }
    }

    /// The value as a whole number, when it is one.
    var integer: Int? {
        Int(text)
    }
}

/// A figure some upstreams send as a number and others as a numeric string; anything else reads as nil.
struct LenientNumber: Decodable, Sendable {
    var value: Double?

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Double.self) {
            value = number
        } else {
            value = (try? container.decode(String.self)).flatMap { Double($0) }
        }
    }
}

extension KeyedDecodingContainer {
    /// Reads a field that may be a string or a number; any other type counts as absent.
    func lenient(_ key: Key) -> LenientScalar? {
        (try? decodeIfPresent(LenientScalar.self, forKey: key)) ?? nil
    }

    /// Reads a figure that may be a number or a numeric string; any other type counts as absent.
    func lenientNumber(_ key: Key) -> Double? {
        ((try? decodeIfPresent(LenientNumber.self, forKey: key)) ?? nil)?.value
    }
}

// MARK: - Bodies read from a scanned document

/// A body the byte-level reader can build: `init(scanned:)` reads each field as the Codable conformance would, and
/// throws `NotScanned` wherever it cannot be sure to, so that `UpstreamJSON.decode` hands the body to `JSONDecoder`.
protocol ScannableBody: Decodable {
    init(scanned node: JSONNode) throws(NotScanned)
}

/// This body is for `JSONDecoder`: a field of an unexpected type, a key written twice, a number not in plain form.
/// Errors, with their reasons and paths, always come from `JSONDecoder`.
struct NotScanned: Error {}

extension Array: ScannableBody where Element: ScannableBody {
    init(scanned node: JSONNode) throws(NotScanned) {
        guard case .array(let items) = node else { throw NotScanned() }
        self = []
        reserveCapacity(items.count)
        for item in items {
            append(try Element(scanned: item))
        }
    }
}

/// One object's members, read the way `decodeIfPresent` and the lenient readers read them.
struct ScannedObject {
    let members: [(key: String, value: JSONNode)]

    init(_ node: JSONNode) throws(NotScanned) {
        guard case .object(let members) = node else { throw NotScanned() }
        self.members = members
    }

    /// The member's value; nil when absent or null, as `decodeIfPresent` reads both.
    func value(_ key: String) throws(NotScanned) -> JSONNode? {
        var found: JSONNode?
        for member in members where member.key == key {
            // JSONDecoder keeps the first of two; rather than rely on that, such a body is its to read.
            guard found == nil else { throw NotScanned() }
            found = member.value
        }
        if case .null? = found { return nil }
        return found
    }

    func string(_ key: String) throws(NotScanned) -> String? {
        switch try value(key) {
        case nil: return nil
        case .string(let text)?: return text
        case _?: throw NotScanned()
        }
    }

    /// A whole number written without fraction or exponent that fits an `Int`; other numbers are JSONDecoder's.
    func integer(_ key: String) throws(NotScanned) -> Int? {
        switch try value(key) {
        case nil: return nil
        case .number(let text)?:
            guard let number = Int(text) else { throw NotScanned() }
            return number
        case _?: throw NotScanned()
        }
    }

    func object(_ key: String) throws(NotScanned) -> ScannedObject? {
        guard let node = try value(key) else { return nil }
        return try ScannedObject(node)
    }

    /// As `KeyedDecodingContainer.lenient`: a string, a whole number or a boolean as text; an array or object is
    /// absent. Other numbers (fractions, exponents) are left to JSONDecoder, whose text for them is its own.
    func lenient(_ key: String) throws(NotScanned) -> LenientScalar? {
        switch try value(key) {
        case nil, .array?, .object?: return nil
        case .string(let text)?: return LenientScalar(text: text)
        case .bool(let flag)?: return LenientScalar(text: String(flag))
        case .number(let text)?:
            guard let number = Int(text) else { throw NotScanned() }
            return LenientScalar(text: String(number))
        case .null?: return nil
        }
    }

    /// As `KeyedDecodingContainer.lenientNumber`: a finite number, or a string `Double` reads; anything else is nil.
    func lenientNumber(_ key: String) throws(NotScanned) -> Double? {
        switch try value(key) {
        case .number(let text)?:
            guard let number = Double(text), number.isFinite else { throw NotScanned() }
            return number
        case .string(let text)?: return Double(text)
        default: return nil
        }
    }
}
