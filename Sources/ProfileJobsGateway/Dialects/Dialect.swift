import FoundationEssentials

/// An upstream body this gateway cannot understand (invalid JSON, wrong shape, missing id, bad time).
public struct MalformedUpstreamBody: Error, Sendable, Equatable, CustomStringConvertible {
    /// A short sentence naming what was wrong, safe to log and to show in a problem response.
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { "malformed upstream body: \(reason)" }
}

/// One cloud's way of writing jobs: a reader for its answers and a writer for its request bodies.
public protocol Dialect {
    static var cloud: Cloud { get }
    static func readJob(_ body: [UInt8]) throws(MalformedUpstreamBody) -> SystemJob
    static func readList(_ body: [UInt8]) throws(MalformedUpstreamBody) -> UpstreamJobPage
    /// The upstream's POST /system/jobs body for this request.
    static func writeCreateBody(_ request: DeleteRequest) -> [UInt8]
}

extension Cloud {
    /// The reader and writer for the dialect this cloud speaks.
    public var dialect: any Dialect.Type {
        switch self {
        case .azure: AzureDialect.self
        case .aws: AWSDialect.self
        }
    }
}

/// The status words of both clouds, mapped to the canonical states.
///
/// Both vocabularies are accepted on both clouds on purpose: the documentation names AWS's finished
/// state `COMPLETED` in one version, and an upstream that borrows the other cloud's word still means
/// the same state. The raw word always stays in `SystemJob.upstreamStatus`.
func canonicalStatus(_ upstream: String?) -> JobStatus {
    guard let upstream else { return .unknown }
    return statusWords.first { $0.words.contains(upstream) }?.status ?? .unknown
}

/// The one table of status words, read in both directions: each canonical state with the upstream words that mean
/// it, Azure's own word first (the word the gateway writes when it speaks the Azure dialect).
let statusWords: [(status: JobStatus, words: [String])] = [
    (.queued, ["NEW"]),
    (.running, ["PROCESSING", "IN-PROGRESS"]),
    (.succeeded, ["COMPLETED", "SUCCESS"]),
    (.failed, ["ERROR", "FAILED"]),
]

/// The Azure word for a canonical state; nil for `unknown`, whose only word is the upstream's raw one.
func azureStatus(_ status: JobStatus) -> String? {
    statusWords.first { $0.status == status }?.words.first
}

/// Treats an empty string like an absent one, since neither identifies anything.
func nonEmpty(_ text: String?) -> String? {
    guard let text, !text.isEmpty else { return nil }
    return text
}

/// Request bodies both dialects share: the same two documented shapes on both clouds.
enum CreateBody {
    /// `{"dataSetId": D}` for a dataset, `{"datasetId": D, "batchId": B}` (or `{"batchId": B}`) for a batch.
    static func write(_ request: DeleteRequest) -> [UInt8] {
        var writer = JSONWriter(capacity: 96)
        writer.beginObject()

        switch request {
        case .dataset(let datasetId):
            writer.field("dataSetId", datasetId)
        case .batch(let datasetId, let batchId):
            if let datasetId {
                writer.field("datasetId", datasetId)
            }
            writer.field("batchId", batchId)
        }

        writer.endObject()
        return writer.bytes
    }
}
