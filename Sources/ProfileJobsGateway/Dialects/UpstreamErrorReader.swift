import FoundationEssentials

/// What an upstream said when it refused, read from any documented error shape.
public struct UpstreamErrorDetail: Sendable, Equatable {
    /// The HTTP status the upstream answered.
    public var status: Int
    /// The upstream's own error code ("401013", "UPAPI-036002-422", "500", ...).
    public var code: String?
    /// A human sentence from the upstream, if any.
    public var message: String?
    /// From the body's requestId, else the x-request-id response header.
    public var requestId: String?
    /// Problem type URI when the upstream sent one.
    public var type: String?

    public init(
        status: Int,
        code: String? = nil,
        message: String? = nil,
        requestId: String? = nil,
        type: String? = nil
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.requestId = requestId
        self.type = type
    }
}

/// Reads every error shape the upstreams and the intermediaries in front of them are known to send.
public enum UpstreamErrorReader {
    /// The most characters of an HTML page or of unreadable text that become a message.
    static let textMessageLimit = 200

    /// The most characters of a JSON error message passed on, so one huge answer cannot flood a client.
    static let jsonMessageLimit = 1000

    /// Only this much of a body is looked at for a message; the rest cannot change a 200-character summary.
    static let scannedBytes = 16 * 1024

    public static func read(status: Int, headers: HTTPHeaders, body: [UInt8]) -> UpstreamErrorDetail {
        var detail = UpstreamErrorDetail(status: status, requestId: nonEmpty(headers["x-request-id"]))

        switch UpstreamJSON.opening(of: body) {
        case .empty:
            return detail
        case .other(UInt8(ascii: "<")):
            detail.message = htmlSummary(body)
            return detail
        case .object:
            if let error = try? UpstreamJSON.decoder.decode(ErrorBody.self, from: Data(body)) {
                detail.code = error.code(status: status)
                detail.message = error.message(status: status).flatMap { cleaned($0, limit: jsonMessageLimit) }
                detail.requestId = error.requestId ?? detail.requestId
                detail.type = error.type
                return detail
            }
        case .array, .other:
            break
        }

        detail.message = cleaned(String(decoding: body.prefix(scannedBytes), as: UTF8.self), limit: textMessageLimit)
        return detail
    }

    /// The page's `<title>`, else its text with the tags taken out.
    static func htmlSummary(_ body: [UInt8]) -> String? {
        let page = body.prefix(scannedBytes)

        if let open = firstIndex(of: "<title", in: page, from: page.startIndex),
            let openEnd = page[open...].firstIndex(of: UInt8(ascii: ">")),
            let close = firstIndex(of: "</title", in: page, from: openEnd)
        {
            let title = String(decoding: page[(openEnd + 1)..<close], as: UTF8.self)
            if let message = cleaned(decodingEntities(title), limit: textMessageLimit) {
                return message
            }
        }

        let text = textOutsideTags(String(decoding: page, as: UTF8.self))
        return cleaned(decodingEntities(text), limit: textMessageLimit)
    }

    /// Where an ASCII `tag` starts in `bytes`, ignoring ASCII case as HTML does.
    private static func firstIndex(of tag: String, in bytes: ArraySlice<UInt8>, from start: Int) -> Int? {
        let needle = Array(tag.utf8)
        guard bytes.endIndex - start >= needle.count else { return nil }

        for index in start...(bytes.endIndex - needle.count) {
            let matches = needle.indices.allSatisfy { offset in
                let byte = bytes[index + offset]
                let lowered = (byte >= 65 && byte <= 90) ? byte + 32 : byte
                return lowered == needle[offset]
            }
            if matches { return index }
        }
        return nil
    }

    /// Control characters and runs of whitespace become one space; nil when nothing readable is left.
    static func cleaned(_ text: String, limit: Int) -> String? {
        var result = ""
        var pendingSpace = false
        var count = 0

        for scalar in text.unicodeScalars {
            if scalar.properties.isWhitespace || scalar.properties.generalCategory == .control {
                pendingSpace = !result.isEmpty
                continue
            }
            if scalar == "\u{FFFD}" {
                continue
            }
            if pendingSpace {
                guard count < limit - 1 else { break }
                result.unicodeScalars.append(" ")
                count += 1
                pendingSpace = false
            }
            guard count < limit else { break }
            result.unicodeScalars.append(scalar)
            count += 1
        }

        return result.isEmpty ? nil : result
    }

    private static func textOutsideTags(_ page: String) -> String {
        var text = ""
        var insideTag = false
        for character in page {
            switch character {
            case "<": insideTag = true
            case ">" where insideTag:
                insideTag = false
                text.append(" ")
            default:
                if !insideTag { text.append(character) }
            }
        }
        return text
    }

    private static func decodingEntities(_ text: String) -> String {
        guard text.contains("&") else { return text }
        return
            text
            .replacing("&lt;", with: "<")
            .replacing("&gt;", with: ">")
            .replacing("&quot;", with: "\"")
            .replacing("&#39;", with: "'")
            .replacing("&nbsp;", with: " ")
            .replacing("&amp;", with: "&")
    }
}

/// Every documented error body at once; each field is optional and read leniently (string or number).
struct ErrorBody: Decodable {
    var requestId: String?
    var type: String?
    /// `status` or `statusCode` as the body states it, which may differ from the HTTP status.
    var bodyStatus: String?
    /// Azure's `{"errors": {"400": [...]}}`.
    var entriesByStatus: [String: [Entry]]?
    /// `{"errors": [...]}`, as other Adobe services write it.
    var entries: [Entry]?
    /// `error-code`, `error_code` or `code`, whichever spelling the service used.
    var namedCode: String?
    /// `error-message`, `message`, `detail` or `title`, in that preference.
    var namedMessage: String?

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }

        init(_ name: String) {
            stringValue = name
        }

        init?(stringValue: String) {
            self.stringValue = stringValue
        }

        init?(intValue: Int) {
            nil
        }
    }

    /// One entry of Azure's `{"errors": {"400": [{"code", "message"}]}}`.
    struct Entry: Decodable {
        var code: String?
        var message: String?

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            code = nonEmpty(container.lenient(Key("code"))?.text)
            message = nonEmpty(container.lenient(Key("message"))?.text)
        }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        func text(_ name: String) -> String? {
            nonEmpty(container.lenient(Key(name))?.text)
        }

        requestId = text("requestId")
        type = text("type")
        bodyStatus = text("status") ?? text("statusCode")
        entriesByStatus = (try? container.decodeIfPresent([String: [Entry]].self, forKey: Key("errors"))) ?? nil
        entries = (try? container.decodeIfPresent([Entry].self, forKey: Key("errors"))) ?? nil

        namedCode = text("error-code") ?? text("error_code") ?? text("code")
        namedMessage = text("error-message") ?? text("message") ?? text("detail") ?? text("title")
    }

    /// Azure's nested entry wins, then the spelled-out fields, then the code inside a problem type.
    func code(status: Int) -> String? {
        entry(status: status)?.code ?? namedCode ?? type.flatMap(Self.problemCode)
    }

    func message(status: Int) -> String? {
        entry(status: status)?.message ?? namedMessage
    }

    /// The first entry under the answered status's key, else the body's own status, else the lowest key.
    private func entry(status: Int) -> Entry? {
        if let entriesByStatus {
            let key = [String(status), bodyStatus].lazy.compactMap { $0 }.first { entriesByStatus[$0] != nil }
            return (key ?? entriesByStatus.keys.min()).flatMap { entriesByStatus[$0]?.first }
        }
        return entries?.first
    }

    /// `UPAPI-036002-422` from `https://ns.adobe.com/aep/errors/UPAPI-036002-422`; nil for descriptive types.
    static func problemCode(_ type: String) -> String? {
        guard let segment = type.split(separator: "/").last else { return nil }
        let parts = segment.split(separator: "-", omittingEmptySubsequences: false)

        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy({ $0.isASCII && $0.isUppercase }),
            parts.dropFirst().allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } })
        else { return nil }

        return String(segment)
    }
}
