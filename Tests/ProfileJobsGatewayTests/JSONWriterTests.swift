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
}
