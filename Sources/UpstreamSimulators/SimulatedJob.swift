/// A sandbox both clouds know: Azure callers name it, AWS callers give its id.
struct SimulatedSandbox: Sendable, Equatable, Hashable {
    var name: String
    var id: String
}

/// What a simulated job deletes, with the ids exactly as the caller sent them.
enum DeleteTarget: Sendable, Equatable {
    case dataset(String)
    /// `datasetId` is nil when the caller named the batch alone (only Azure accepts that).
    case batch(datasetId: String?, batchId: String)

    /// Whether a job for `other` would delete the same thing, which the platform refuses while one is pending.
    func duplicates(_ other: DeleteTarget) -> Bool {
        switch (self, other) {
        case (.dataset(let mine), .dataset(let theirs)): mine == theirs
        case (.batch(_, let mine), .batch(_, let theirs)): mine == theirs
        default: false
        }
    }

    /// How the duplicate error names the target.
    var label: String {
        switch self {
        case .dataset(let datasetId): "dataset '\(datasetId)'"
        case .batch(_, let batchId): "batch '\(batchId)'"
        }
    }
}

/// Where a job is in its life; both clouds walk the same three steps under their own names.
///
/// `new` -> `running` at `runningAfter` seconds after creation -> `finished` at `finishedAfter`; nothing goes back.
enum JobPhase: Sendable, Equatable {
    case new
    case running
    case finished
}

/// A job's state as seen at one instant of the simulator's clock.
struct JobProgress: Sendable, Equatable {
    var phase: JobPhase
    /// The last time the job changed: creation while new, now while running (metrics move), the finish once done.
    var updatedAt: Double
    /// Whole seconds spent processing; nil while the job is new, as Azure sends no metrics then.
    var secondsProcessing: Int?

    /// A steady five records a second, enough to show movement in the metrics.
    var recordsProcessed: Int? {
        secondsProcessing.map { $0 * 5 }
    }
}

/// A delete request the simulator holds, in neither cloud's shape; each dialect writes it its own way.
struct SimulatedJob: Sendable, Equatable {
    var id: String
    var orgId: String
    var sandbox: SimulatedSandbox
    var target: DeleteTarget
    /// Seconds since 1970, with the sub-second part AWS shows as microseconds.
    var createdAt: Double

    /// The state machine: the phase follows from the time elapsed since creation alone.
    func progress(at now: Double, runningAfter: Double, finishedAfter: Double) -> JobProgress {
        let startedAt = createdAt + runningAfter
        let finishedAt = createdAt + max(finishedAfter, runningAfter)

        if now < startedAt {
            return JobProgress(phase: .new, updatedAt: createdAt, secondsProcessing: nil)
        }

        if now < finishedAt {
            return JobProgress(phase: .running, updatedAt: now, secondsProcessing: Int(now - startedAt))
        }

        return JobProgress(phase: .finished, updatedAt: finishedAt, secondsProcessing: Int(finishedAt - startedAt))
    }

    /// Newest first by creation, ties by id, so every list and page is in a stable order.
    static func newestFirst(_ lhs: SimulatedJob, _ rhs: SimulatedJob) -> Bool {
        lhs.createdAt != rhs.createdAt ? lhs.createdAt > rhs.createdAt : lhs.id < rhs.id
    }
}

/// Jobs grouped by organization and sandbox, as the platform keeps them apart.
struct JobStore: Sendable {
    /// One organization's sandbox.
    struct Scope: Sendable, Hashable {
        var orgId: String
        var sandboxId: String
    }

    private var jobs: [Scope: [SimulatedJob]] = [:]

    mutating func insert(_ job: SimulatedJob) {
        jobs[Scope(orgId: job.orgId, sandboxId: job.sandbox.id), default: []].append(job)
    }

    func job(id: String, in scope: Scope) -> SimulatedJob? {
        jobs[scope]?.first { $0.id == id }
    }

    /// Returns whether a job was removed.
    mutating func remove(id: String, in scope: Scope) -> Bool {
        guard let index = jobs[scope]?.firstIndex(where: { $0.id == id }) else { return false }
        jobs[scope]?.remove(at: index)
        return true
    }

    /// All jobs of a scope, newest first.
    func jobs(in scope: Scope) -> [SimulatedJob] {
        (jobs[scope] ?? []).sorted(by: SimulatedJob.newestFirst)
    }
}
