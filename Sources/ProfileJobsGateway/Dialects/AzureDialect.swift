import FoundationEssentials

/// The dialect of AEP's Azure deployments: `id`, `jobType` DELETE, epoch seconds, metrics as a JSON string.
public enum AzureDialect: Dialect {
    public static var cloud: Cloud { .azure }

    /// Azure's one `jobType` for both kinds of delete; the presence of `batchId` tells them apart.
    static let deleteJobType = "DELETE"

    public static func readJob(_ body: [UInt8]) throws(MalformedUpstreamBody) -> SystemJob {
        guard UpstreamJSON.opening(of: body) != .array else {
            throw MalformedUpstreamBody(reason: "expected a job object, got an array")
        }
        return try UpstreamJSON.decode(AzureJobBody.self, from: body).systemJob()
    }

    /// Reads `{"_page": {"count", "next"}, "children": [...]}`, the only list shape Azure documents.
    public static func readList(_ body: [UInt8]) throws(MalformedUpstreamBody) -> UpstreamJobPage {
        guard UpstreamJSON.opening(of: body) != .array else {
            throw MalformedUpstreamBody(reason: "expected a paged object, got a bare array")
        }
        let list = try UpstreamJSON.decode(AzureListBody.self, from: body)

        guard let children = list.children else {
            throw MalformedUpstreamBody(reason: "children: missing")
        }

        var jobs: [SystemJob] = []
        jobs.reserveCapacity(children.count)
        for (index, child) in children.enumerated() {
            do {
                jobs.append(try child.systemJob())
            } catch {
                throw MalformedUpstreamBody(reason: "children[\(index)]: \(error.reason)")
            }
        }

        return UpstreamJobPage(
            shape: .azurePaged,
            jobs: jobs,
            total: list.page?.count?.integer,
            next: nonEmpty(list.page?.next?.text)
        )
    }

    public static func writeCreateBody(_ request: DeleteRequest) -> [UInt8] {
        CreateBody.write(request)
    }
}

/// One Azure job as the upstream writes it; unknown fields are ignored.
struct AzureJobBody: ScannableBody {
    var id: String?
    var imsOrgId: String?
    /// Dataset deletes spell it with a capital S.
    var dataSetId: String?
    /// Batch deletes in newer documentation spell it with a lower-case s.
    var datasetId: String?
    var batchId: String?
    var jobType: String?
    var status: String?
    var metrics: AzureMetrics?
    var createEpoch: Int?
    var updateEpoch: Int?

    init(scanned node: JSONNode) throws(NotScanned) {
        let object = try ScannedObject(node)
        id = try object.string("id")
        imsOrgId = try object.string("imsOrgId")
        dataSetId = try object.string("dataSetId")
        datasetId = try object.string("datasetId")
        batchId = try object.string("batchId")
        jobType = try object.string("jobType")
        status = try object.string("status")
        metrics = try object.value("metrics").map { node throws(NotScanned) in try AzureMetrics(scanned: node) }
        createEpoch = try object.integer("createEpoch")
        updateEpoch = try object.integer("updateEpoch")
    }

    func systemJob() throws(MalformedUpstreamBody) -> SystemJob {
        guard let id = nonEmpty(id) else {
            throw MalformedUpstreamBody(reason: "id: missing")
        }

        let batchId = nonEmpty(batchId)
        let type: JobType =
            switch jobType {
            case AzureDialect.deleteJobType: batchId == nil ? .deleteDataset : .deleteBatch
            default: .unknown
            }

        return SystemJob(
            id: id,
            cloud: .azure,
            orgId: imsOrgId,
            type: type,
            upstreamType: jobType,
            datasetId: nonEmpty(dataSetId) ?? nonEmpty(datasetId),
            batchId: batchId,
            status: canonicalStatus(status),
            upstreamStatus: status,
            metrics: metrics?.figures,
            createdAt: try time(createEpoch, field: "createEpoch"),
            updatedAt: try time(updateEpoch, field: "updateEpoch")
        )
    }

    private func time(_ seconds: Int?, field: String) throws(MalformedUpstreamBody) -> String? {
        guard let seconds else { return nil }
        do {
            return try UpstreamTime.fromEpoch(seconds)
        } catch {
            throw MalformedUpstreamBody(reason: "\(field): \(error.reason)")
        }
    }
}

/// Azure's metrics: documented as a string holding JSON, accepted as an object too.
///
/// Metrics are informative, so anything unreadable (a string that is not JSON, a number, an object
/// without either figure) yields no metrics instead of failing the whole job.
struct AzureMetrics: Decodable {
    var figures: JobMetrics?

    private struct Figures: Decodable {
        var recordsProcessed: Double?
        var timeTakenInSec: Double?

        enum CodingKeys: String, CodingKey {
            case recordsProcessed, timeTakenInSec
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            recordsProcessed = container.lenientNumber(.recordsProcessed)
            timeTakenInSec = container.lenientNumber(.timeTakenInSec)
        }

        init(scanned object: ScannedObject) throws(NotScanned) {
            recordsProcessed = try object.lenientNumber("recordsProcessed")
            timeTakenInSec = try object.lenientNumber("timeTakenInSec")
        }

        var metrics: JobMetrics? {
            guard recordsProcessed != nil || timeTakenInSec != nil else { return nil }
            return JobMetrics(recordsProcessed: recordsProcessed, durationSeconds: timeTakenInSec)
        }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            figures = (try? UpstreamJSON.decoder.decode(Figures.self, from: Data(text.utf8)))?.metrics
        } else {
            figures = (try? container.decode(Figures.self))?.metrics
        }
    }

    /// As `init(from:)`: the string's own JSON when it holds an object, the object itself, no figures otherwise.
    init(scanned node: JSONNode) throws(NotScanned) {
        switch node {
        case .string(let text):
            guard let inner = JSONNode.parse(Array(text.utf8)) else { throw NotScanned() }
            figures = try Self.figures(inner)
        default:
            figures = try Self.figures(node)
        }
    }

    private static func figures(_ node: JSONNode) throws(NotScanned) -> JobMetrics? {
        guard case .object = node else { return nil }
        return try Figures(scanned: ScannedObject(node)).metrics
    }
}

/// Azure's list page.
struct AzureListBody: ScannableBody {
    struct Page: Decodable {
        var count: LenientScalar?
        var next: LenientScalar?

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            count = container.lenient(.count)
            next = container.lenient(.next)
        }

        init(scanned object: ScannedObject) throws(NotScanned) {
            count = try object.lenient("count")
            next = try object.lenient("next")
        }

        enum CodingKeys: String, CodingKey {
            case count, next
        }
    }

    var page: Page?
    var children: [AzureJobBody]?

    enum CodingKeys: String, CodingKey {
        case page = "_page"
        case children
    }

    init(scanned node: JSONNode) throws(NotScanned) {
        let object = try ScannedObject(node)
        page = try object.object("_page").map { object throws(NotScanned) in try Page(scanned: object) }
        children = try object.value("children").map { node throws(NotScanned) in try [AzureJobBody](scanned: node) }
    }
}
