/// The two clouds that serve the Profile system-jobs API, each with its own dialect.
public enum Cloud: String, Sendable, Equatable, CaseIterable {
    case azure
    case aws
}

/// What a job deletes, in the gateway's vocabulary.
public enum JobType: Sendable, Equatable {
    case deleteDataset
    case deleteBatch
    case backfillTTL
    /// A type this gateway does not know; the raw value stays in `SystemJob.upstreamType`.
    case unknown

    public var canonicalName: String {
        switch self {
        case .deleteDataset: "DELETE_DATASET"
        case .deleteBatch: "DELETE_BATCH"
        case .backfillTTL: "BACKFILL_TTL"
        case .unknown: "UNKNOWN"
        }
    }
}

/// A job's state, in the gateway's vocabulary; `SystemJob.upstreamStatus` keeps the raw value.
public enum JobStatus: String, Sendable, Equatable {
    case queued = "QUEUED"
    case running = "RUNNING"
    case succeeded = "SUCCEEDED"
    case failed = "FAILED"
    case unknown = "UNKNOWN"
}

/// A sandbox as far as it is known: Azure names it, AWS identifies it.
public struct SandboxRef: Sendable, Equatable {
    public var name: String?
    public var id: String?

    public init(name: String? = nil, id: String? = nil) {
        self.name = name
        self.id = id
    }
}

/// Progress figures an upstream reports for a job.
public struct JobMetrics: Sendable, Equatable {
    public var recordsProcessed: Double?
    public var durationSeconds: Double?

    public init(recordsProcessed: Double? = nil, durationSeconds: Double? = nil) {
        self.recordsProcessed = recordsProcessed
        self.durationSeconds = durationSeconds
    }
}

/// A delete request (system job) in canonical form; a nil field is one the upstream did not send.
public struct SystemJob: Sendable, Equatable {
    public var id: String
    public var cloud: Cloud
    public var orgId: String?
    public var sandbox: SandboxRef
    public var type: JobType
    /// The upstream's own word for the type (`DELETE`, `TRUNCATE_DATASET`, ...).
    public var upstreamType: String?
    public var datasetId: String?
    public var batchId: String?
    public var status: JobStatus
    public var upstreamStatus: String?
    public var metrics: JobMetrics?
    /// RFC 3339 in UTC, with exactly the sub-second digits the upstream gave.
    public var createdAt: String?
    public var updatedAt: String?

    public init(
        id: String,
        cloud: Cloud,
        orgId: String? = nil,
        sandbox: SandboxRef = SandboxRef(),
        type: JobType,
        upstreamType: String? = nil,
        datasetId: String? = nil,
        batchId: String? = nil,
        status: JobStatus,
        upstreamStatus: String? = nil,
        metrics: JobMetrics? = nil,
        createdAt: String? = nil,
        updatedAt: String? = nil
    ) {
        self.id = id
        self.cloud = cloud
        self.orgId = orgId
        self.sandbox = sandbox
        self.type = type
        self.upstreamType = upstreamType
        self.datasetId = datasetId
        self.batchId = batchId
        self.status = status
        self.upstreamStatus = upstreamStatus
        self.metrics = metrics
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// What a caller asks to delete.
public enum DeleteRequest: Sendable, Equatable {
    case dataset(datasetId: String)
    /// `datasetId` is nil when the caller named the batch alone (Azure accepts that, AWS does not).
    case batch(datasetId: String?, batchId: String)
}

/// One page of jobs as an upstream returned it, before the gateway pages it for the caller.
public struct UpstreamJobPage: Sendable, Equatable {
    /// Which of the documented list shapes the upstream used.
    public enum Shape: String, Sendable, Equatable {
        /// Azure: `{"_page": {"count", "next"}, "children"}`.
        case azurePaged
        /// AWS, older: a bare array of at most 100 jobs, no paging.
        case awsArray
        /// AWS, newer: `{"_page": {"pageSize", "start", "totalCount", "next"}, "children"}`.
        case awsPaged
    }

    public var shape: Shape
    public var jobs: [SystemJob]
    /// The total number of jobs, when the upstream said.
    public var total: Int?
    /// Azure's opaque next token, or AWS's next page number as text; nil or empty when the upstream gave none.
    public var next: String?
    /// AWS paged: the page size and the 0-based page number the upstream says it answered.
    public var pageSize: Int?
    public var start: Int?

    public init(
        shape: Shape,
        jobs: [SystemJob],
        total: Int? = nil,
        next: String? = nil,
        pageSize: Int? = nil,
        start: Int? = nil
    ) {
        self.shape = shape
        self.jobs = jobs
        self.total = total
        self.next = next
        self.pageSize = pageSize
        self.start = start
    }
}
