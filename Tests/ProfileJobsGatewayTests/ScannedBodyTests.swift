import Foundation
import Testing

@testable import ProfileJobsGateway

/// The byte-level reader must answer exactly as `JSONDecoder` did for every body it takes, and leave to
/// `JSONDecoder` every body it cannot be sure of.
@Suite struct ScannedBodyTests {
    /// Every upstream body type, each read both ways; what differs is named by body type.
    static func disagreements(_ body: [UInt8]) -> [String] {
        [
            compare(AzureJobBody.self, body), compare(AzureListBody.self, body), compare(AWSJobBody.self, body),
            compare([AWSJobBody].self, body), compare(AWSListBody.self, body), compare(SandboxBody.self, body),
        ].compactMap { $0 }
    }

    /// nil when the readers agree: the byte reader left the body, or both read the same value (compared as their
    /// descriptions, which show every field, NaN included).
    static func compare<T: ScannableBody>(_ type: T.Type, _ body: [UInt8]) -> String? {
        guard let scanned = UpstreamJSON.scanned(T.self, from: body) else { return nil }
        let decoded: String
        do {
            decoded = String(describing: try UpstreamJSON.decodedByFoundation(T.self, from: body))
        } catch {
            decoded = "error: \(error.reason)"
        }
        let read = String(describing: scanned)
        return read == decoded ? nil : "\(T.self): byte reader \(read), JSONDecoder \(decoded)"
    }

    static func fixtures() throws -> [String] {
        let root = try #require(Bundle.module.resourceURL).appendingPathComponent("Fixtures")
        let walker = try #require(FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil))
        return walker.compactMap { $0 as? URL }.filter { !$0.hasDirectoryPath }
            .map { String($0.path.dropFirst(root.path.count + 1)) }.sorted()
    }

    @Test func everyFixtureReadsAlikeBothWays() throws {
        let names = try Self.fixtures()
        #expect(names.count > 30)
        for name in names {
            let body = try DialectFixture.bytes(name)
            #expect(Self.disagreements(body) == [], "\(name)")
        }
    }

    /// The documented answers are what upstreams send on every call: the byte reader must take them itself.
    @Test(arguments: [
        "azure/get.json", "azure/list.json", "azure/create-batch.response.json", "azure/create-dataset.response.json",
        "aws/get.json", "aws/list-array.json", "aws/list-paged.json", "aws/create-batch.response.json",
        "sandbox/lookup-service-token.json", "sandbox/lookup-user-token.json",
    ])
    func documentedAnswersAreReadByTheByteReader(name: String) throws {
        let body = try DialectFixture.bytes(name)
        let read: Any? =
            switch name {
            case "azure/list.json": UpstreamJSON.scanned(AzureListBody.self, from: body)
            case "aws/list-array.json": UpstreamJSON.scanned([AWSJobBody].self, from: body)
            case "aws/list-paged.json": UpstreamJSON.scanned(AWSListBody.self, from: body)
            case _ where name.hasPrefix("azure/"): UpstreamJSON.scanned(AzureJobBody.self, from: body)
            case _ where name.hasPrefix("aws/"): UpstreamJSON.scanned(AWSJobBody.self, from: body)
            default: UpstreamJSON.scanned(SandboxBody.self, from: body)
            }
        #expect(read != nil)
    }

    /// Bodies at the edges of what the two readers share: each must read alike, and `scanned` says whether the byte
    /// reader takes it as the `reader` body type (false: JSONDecoder reads it, errors and odd forms included).
    @Test(arguments: [
        (#"{"id":"a","jobType":"DELETE","createEpoch":1559026134,"updateEpoch":-0}"#, "azureJob", true),
        (#"{"id":"a\/b\u00e9\u0000\n\"\\","status":"NEW"}"#, "azureJob", true),
        (#"{"id":"\ud83d\ude00"}"#, "azureJob", false),
        (#"{"id":"é"}"#, "azureJob", false),
        (#"{"id":"a","id":"b"}"#, "azureJob", false),
        (#"{"id":"a",}"#, "azureJob", false),
        ("\u{FEFF}{\"id\":\"a\"}", "azureJob", false),
        (#"{"id":5}"#, "azureJob", false),
        (#"{"id":"a","createEpoch":1.5}"#, "azureJob", false),
        (#"{"id":"a","createEpoch":1e3}"#, "azureJob", false),
        (#"{"id":"a","createEpoch":"1559026134"}"#, "azureJob", false),
        (#"{"id":"a","createEpoch":9223372036854775808}"#, "azureJob", false),
        (#"{"id":"a","createEpoch":01}"#, "azureJob", false),
        (#"{"id":null,"imsOrgId":null,"metrics":null,"createEpoch":null}"#, "azureJob", true),
        (#"{"id":"a","metrics":"{\"recordsProcessed\":\"7\",\"timeTakenInSec\":2.5}"}"#, "azureJob", true),
        (#"{"id":"a","metrics":{"recordsProcessed":1e2,"timeTakenInSec":true}}"#, "azureJob", true),
        (#"{"id":"a","metrics":"not json"}"#, "azureJob", false),
        (#"{"id":"a","metrics":"[1]"}"#, "azureJob", true),
        (#"{"id":"a","metrics":5}"#, "azureJob", true),
        (#"{"id":"a","metrics":{"recordsProcessed":"nan"}}"#, "azureJob", true),
        (#"{"id":"a","metrics":{"recordsProcessed":1e400}}"#, "azureJob", false),
        (#"{"_page":{"count":"3","next":true},"children":[{"id":"a"}]}"#, "azureList", true),
        (#"{"_page":{"count":[1],"next":{}},"children":[]}"#, "azureList", true),
        (#"{"_page":{"count":2.5},"children":[]}"#, "azureList", false),
        (#"{"_page":null,"children":null}"#, "azureList", true),
        (#"{"_page":5,"children":[]}"#, "azureList", false),
        (#"{"children":[{"id":"a"},7]}"#, "azureList", false),
        (#"[{"requestId":"r","sandbox":{"sandboxName":"prod"},"properties":{"dataSetId":"d"}}]"#, "awsArray", true),
        (#"[{"requestId":"r","sandbox":"prod"}]"#, "awsArray", false),
        (#"{"_page":{"pageSize":2,"start":"0","totalCount":-0,"next":1},"children":[]}"#, "awsList", true),
        (#"{"name":"prod","id":"8129954b-fa83-43ba-a995-4bfa8373ba2b","eTag":2,"isDefault":true}"#, "sandbox", true),
        (#"{"name":"prod"} x"#, "sandbox", false),
        (#"{"name":"prod" "#, "sandbox", false),
        (#"{"name":"pr\od"}"#, "sandbox", false),
        (#"{"name":"\u12"}"#, "sandbox", false),
    ])
    func edgeCasesReadAlike(body: String, reader: String, scanned: Bool) throws {
        let bytes = Array(body.utf8)
        #expect(Self.disagreements(bytes) == [])
        #expect(Self.takes(reader, bytes) == scanned)
    }

    /// Whether the byte reader takes the body as the named body type.
    static func takes(_ reader: String, _ body: [UInt8]) -> Bool {
        switch reader {
        case "azureJob": UpstreamJSON.scanned(AzureJobBody.self, from: body) != nil
        case "azureList": UpstreamJSON.scanned(AzureListBody.self, from: body) != nil
        case "awsArray": UpstreamJSON.scanned([AWSJobBody].self, from: body) != nil
        case "awsList": UpstreamJSON.scanned(AWSListBody.self, from: body) != nil
        default: UpstreamJSON.scanned(SandboxBody.self, from: body) != nil
        }
    }

    /// Nesting far beyond any real body neither overflows the stack nor is read by the byte reader, and the job
    /// reader still answers with a malformed body.
    @Test(arguments: ["[", "{\"a\":"])
    func deepNestingIsRefusedWithoutRecursingDeep(opening: String) {
        let deep = Array(("{\"id\":\"a\",\"x\":" + String(repeating: opening, count: 100_000)).utf8)
        #expect(JSONNode.parse(deep) == nil)
        #expect(throws: MalformedUpstreamBody.self) { try AzureDialect.readJob(deep) }

        let nested = String(repeating: "[", count: JSONNode.maximumDepth) + String(repeating: "]", count: 32)
        #expect(JSONNode.parse(Array(nested.utf8)) != nil)
        let tooDeep = "[" + nested + "]"
        #expect(JSONNode.parse(Array(tooDeep.utf8)) == nil)
    }
}
