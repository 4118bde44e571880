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
    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) throws(MalformedUpstreamBody) -> T {
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
