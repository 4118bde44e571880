import Testing

@testable import ProfileJobsGateway

@Suite struct JSONWriterTests {
    @Test func writesKeysInOrderWithExplicitNulls() {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("b", "x/y\"\n")
        writer.field("a", nil as String?)
        writer.key("list")
        writer.beginArray()
        writer.int(1)
        writer.number(15)
        writer.number(1.5)
        writer.endArray()
        writer.endObject()
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"{"b":"x/y\"\n","a":null,"list":[1,15,1.5]}"#)
    }

    /// Upstream words and caller ids are copied into answers and log lines: escapes at either end, next to each other
    /// and between multi-byte characters must all survive, and the result must read back as the same text.
    @Test(arguments: [
        "", "plain-id", "\"", "\\", "\"quoted\"", "a\\b\"c", "\n\r\t", "\u{01}\u{1F}x\u{7F}", "é€😀\n€",
        "end\\", "\u{00}",
    ])
    func escapesEveryByteJSONRequires(_ text: String) throws {
        var writer = JSONWriter()
        writer.string(text)
        let written = String(decoding: writer.bytes, as: UTF8.self)

        #expect(!written.utf8.dropFirst().dropLast().contains { $0 < 0x20 })
        #expect(try #require(JSONValue.parse(writer.bytes)) == .string(text))
    }

    @Test func writesControlBytesAsUnicodeEscapes() {
        var writer = JSONWriter()
        writer.string("a\u{01}\u{1F}\"\\b")
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #""a\u0001\u001f\"\\b""#)
    }
}
