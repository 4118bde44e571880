import FoundationEssentials

/// Which of the documented AWS list answers a simulator gives, so the gateway can be tried against each.
public enum AWSListShape: String, Sendable {
    /// Older docs and the published OpenAPI: a bare array of at most the 100 newest jobs; query parameters ignored.
    case array
    /// Newer docs: `{"_page": {"pageSize", "start", "totalCount", "next"}, "children"}`, paged by `start` and `limit`.
    case paged
}

/// How a simulated platform behaves; every field has a default, so `SimulatorOptions()` is a usable upstream.
public struct SimulatorOptions: Sendable {
    /// The id the documentation gives the `prod` sandbox.
    public static let prodSandboxId = "8129954b-fa83-43ba-a995-4bfa8373ba2b"

    /// The dataset the documented Azure record-batch error names, so the sample error can be reproduced as written.
    public static let documentedRecordDataset = "a294e36d382649dab2cc6ad64a41b674"

    /// Seconds after creation at which a job starts running, and at which it finishes.
    public var runningAfter: Double
    public var finishedAfter: Double

    /// Sandboxes that exist: name -> id.
    public var sandboxes: [String: String]

    /// Datasets with a record schema: batch deletes on them are refused as each cloud documents.
    ///
    /// Defaults to `documentedRecordDataset` alone; every other dataset counts as time-series.
    public var recordDatasets: Set<String>

    /// AWS only: which documented list shape to answer with (default `.array`, the shape the OpenAPI publishes).
    public var awsListShape: AWSListShape

    /// Seconds since 1970; injectable so tests can walk a job through its states.
    public var clock: @Sendable () -> Double

    public init(
        runningAfter: Double = 2,
        finishedAfter: Double = 10,
        sandboxes: [String: String] = ["prod": SimulatorOptions.prodSandboxId],
        recordDatasets: Set<String> = [SimulatorOptions.documentedRecordDataset],
        awsListShape: AWSListShape = .array,
        clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.runningAfter = runningAfter
        self.finishedAfter = finishedAfter
        self.sandboxes = sandboxes
        self.recordDatasets = recordDatasets
        self.awsListShape = awsListShape
        self.clock = clock
    }
}

/// `seed` was asked to fill a sandbox the simulator does not know.
public struct UnknownSandbox: Error, Sendable, Equatable {
    public var name: String

    public init(name: String) {
        self.name = name
    }
}
