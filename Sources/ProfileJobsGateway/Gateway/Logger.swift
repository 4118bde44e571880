import FoundationEssentials
import Glibc

/// JSON-lines logging with metadata as fields, never interpolated into the message.
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable {
        case debug, info, warning, error

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }

        var name: String {
            switch self {
            case .debug: "debug"
            case .info: "info"
            case .warning: "warning"
            case .error: "error"
            }
        }
    }

    public var label: String
    public var minimum: Level
    private let sink: @Sendable ([UInt8]) -> Void

    /// - Parameter sink: receives each finished line, newline included; standard error when not given.
    public init(label: String, minimum: Level = .info, sink: (@Sendable ([UInt8]) -> Void)? = nil) {
        self.label = label
        self.minimum = minimum
        self.sink = sink ?? Logger.standardError
    }

    public func log(_ level: Level, _ message: String, _ metadata: [(String, LogValue)] = []) {
        guard level >= minimum else { return }
        var writer = JSONWriter(capacity: 256)
        writer.beginObject()
        writer.field("time", Self.timestamp())
        writer.field("level", level.name)
        writer.field("logger", label)
        writer.field("message", message)
        for (key, value) in metadata {
            writer.key(key)
            switch value {
            case .string(let text): writer.string(text)
            case .int(let number): writer.int(number)
            case .double(let number): writer.number(number)
            }
        }
        writer.endObject()
        sink(writer.bytes + [10])
    }

    public func info(_ message: String, _ metadata: [(String, LogValue)] = []) { log(.info, message, metadata) }
    public func warning(_ message: String, _ metadata: [(String, LogValue)] = []) { log(.warning, message, metadata) }
    public func error(_ message: String, _ metadata: [(String, LogValue)] = []) { log(.error, message, metadata) }

    /// The current UTC time to the second in ISO 8601 (`2026-12-04T17:06:10Z`), written by hand: the access log
    /// stamps every request, and Foundation's formatter costs more than the rest of the line.
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        let fields: [(Int32, Int)] = [
            (parts.tm_year + 1900, 4), (parts.tm_mon + 1, 2), (parts.tm_mday, 2), (parts.tm_hour, 2),
            (parts.tm_min, 2), (parts.tm_sec, 2),
        ]
        let separators: [UInt8] = Array("--T::Z".utf8)
        return String(unsafeUninitializedCapacity: 20) { text in
            var written = 0
            for (index, (value, width)) in fields.enumerated() {
                var remaining = Int(value)
                for position in (0..<width).reversed() {
                    text[written + position] = UInt8(ascii: "0") + UInt8(remaining % 10)
                    remaining /= 10
                }
                written += width
                text[written] = separators[index]
                written += 1
            }
            return written
        }
    }

    private static let standardError: @Sendable ([UInt8]) -> Void = { line in
        line.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
    }
}

/// A metadata value; strings are escaped by the writer, so nothing a caller sends can break a line.
public enum LogValue: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case int(Int)
    case double(Double)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
}
