/// The canonical schema's JSON.
///
/// Every key is always written, `null` when the upstream did not send it, so clients of either cloud
/// see one shape.
public enum CanonicalJSON {
    public static func job(_ job: SystemJob) -> [UInt8] {
        var writer = JSONWriter(capacity: 512)
        write(job, into: &writer)
        return writer.bytes
    }

    public static func write(_ job: SystemJob, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("id", job.id)
        writer.field("cloud", job.cloud.rawValue)
        writer.field("orgId", job.orgId)

        writer.key("sandbox")
        writer.beginObject()
        writer.field("name", job.sandbox.name)
        writer.field("id", job.sandbox.id)
        writer.endObject()

        writer.field("type", job.type.canonicalName)
        writer.field("upstreamType", job.upstreamType)
        writer.field("datasetId", job.datasetId)
        writer.field("batchId", job.batchId)
        writer.field("status", job.status.rawValue)
        writer.field("upstreamStatus", job.upstreamStatus)

        writer.key("metrics")
        if let metrics = job.metrics {
            writer.beginObject()
            writer.key("recordsProcessed")
            writer.number(metrics.recordsProcessed)
            writer.key("durationSeconds")
            writer.number(metrics.durationSeconds)
            writer.endObject()
        } else {
            writer.null()
        }

        writer.field("createdAt", job.createdAt)
        writer.field("updatedAt", job.updatedAt)
        writer.endObject()
    }

    /// {"jobs": [...], "page": {"limit": L, "next": cursor|null, "total": N|null}}
    /// - Parameter complete: false when the upstream could only give a window, so jobs may be missing.
    public static func list(
        _ jobs: [SystemJob],
        limit: Int,
        next: String?,
        total: Int?,
        complete: Bool = true
    ) -> [UInt8] {
        var writer = JSONWriter(capacity: 64 + jobs.count * 512)
        writer.beginObject()

        writer.key("jobs")
        writer.beginArray()
        for job in jobs {
            write(job, into: &writer)
        }
        writer.endArray()

        writer.key("page")
        writer.beginObject()
        writer.field("limit", limit)
        writer.field("next", next)
        writer.field("total", total)
        writer.key("complete")
        writer.bool(complete)
        writer.endObject()

        writer.endObject()
        return writer.bytes
    }
}
