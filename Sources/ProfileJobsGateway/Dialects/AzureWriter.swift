/// The Azure dialect's writer: a canonical job in the shape Azure answers with, for callers that speak Azure
/// whichever cloud serves their organization.
///
/// It uses the same vocabulary as the reader (`AzureDialect.deleteJobType`, `statusWords`), so reading an Azure
/// answer and writing it back gives the answer again. Azure omits what it does not know rather than sending null,
/// and so does this writer. What Azure cannot express is written deliberately:
/// - types other than the two deletes (AWS `BACKFILL_TTL`, unknown types) keep their own word in `jobType`;
/// - statuses of neither cloud keep the upstream's raw word;
/// - sub-second times are truncated to whole epoch seconds;
/// - the sandbox is not written (Azure jobs do not carry it).
extension AzureDialect {
    public static func writeJob(_ job: SystemJob) -> [UInt8] {
        var writer = JSONWriter(capacity: 384)
        writeJob(job, into: &writer)
        return writer.bytes
    }

    public static func writeJob(_ job: SystemJob, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("id", job.id)
        if let orgId = job.orgId {
            writer.field("imsOrgId", orgId)
        }

        // Azure spells the dataset `datasetId` next to a batch and `dataSetId` when the job is about the dataset.
        if let batchId = job.batchId {
            if let datasetId = job.datasetId {
                writer.field("datasetId", datasetId)
            }
            writer.field("batchId", batchId)
        } else if let datasetId = job.datasetId {
            writer.field("dataSetId", datasetId)
        }

        if let jobType = jobType(job) {
            writer.field("jobType", jobType)
        }
        if let status = azureStatus(job.status) ?? job.upstreamStatus {
            writer.field("status", status)
        }
        if let metrics = job.metrics {
            writer.field("metrics", metricsText(metrics))
        }
        if let seconds = job.createdAt.flatMap(UpstreamTime.toEpoch) {
            writer.field("createEpoch", seconds)
        }
        if let seconds = job.updatedAt.flatMap(UpstreamTime.toEpoch) {
            writer.field("updateEpoch", seconds)
        }
        writer.endObject()
    }

    /// `{"_page": {"count": N, "next": "<token>"}, "children": [...]}`; `next` is `""` when no job follows, so a
    /// client looping while `next` is non-empty stops after the last page.
    /// - Parameter complete: false when the upstream could only give a window; Azure has no word for that, so
    ///   `_page` then carries `"complete": false`, which Azure clients ignore and careful ones can read.
    public static func writeList(_ jobs: [SystemJob], count: Int, next: String?, complete: Bool = true) -> [UInt8] {
        var writer = JSONWriter(capacity: 64 + jobs.count * 384)
        writer.beginObject()

        writer.key("_page")
        writer.beginObject()
        writer.field("count", count)
        writer.field("next", next ?? "")
        if !complete {
            writer.key("complete")
            writer.bool(false)
        }
        writer.endObject()

        writer.key("children")
        writer.beginArray()
        for job in jobs {
            writeJob(job, into: &writer)
        }
        writer.endArray()

        writer.endObject()
        return writer.bytes
    }

    /// `DELETE` for both deletes; any other type keeps its own word (`BACKFILL_TTL`, or the raw unknown one).
    static func jobType(_ job: SystemJob) -> String? {
        switch job.type {
        case .deleteDataset, .deleteBatch: deleteJobType
        case .backfillTTL: job.upstreamType ?? job.type.canonicalName
        case .unknown: job.upstreamType
        }
    }

    /// Azure's metrics string, `{"recordsProcessed":5,"timeTakenInSec":1}`, leaving out a figure not reported.
    static func metricsText(_ metrics: JobMetrics) -> String {
        var writer = JSONWriter(capacity: 64)
        writer.beginObject()
        if let records = metrics.recordsProcessed {
            writer.key("recordsProcessed")
            writer.number(records)
        }
        if let seconds = metrics.durationSeconds {
            writer.key("timeTakenInSec")
            writer.number(seconds)
        }
        writer.endObject()
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
