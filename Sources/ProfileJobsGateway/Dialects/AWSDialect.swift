import FoundationEssentials

/// The dialect of AEP's AWS deployments: `requestId`, `requestType`, a sandbox object, RFC 3339 strings.
public enum AWSDialect: Dialect {
    public static var cloud: Cloud { .aws }

    public static func readJob(_ body: [UInt8]) throws(MalformedUpstreamBody) -> SystemJob {
        guard UpstreamJSON.opening(of: body) != .array else {
            throw MalformedUpstreamBody(reason: "expected a job object, got an array")
        }
        return try UpstreamJSON.decode(AWSJobBody.self, from: body).systemJob()
    }

    /// Reads the bare array of older documentation or the paged object of newer documentation.
    public static func readList(_ body: [UInt8]) throws(MalformedUpstreamBody) -> UpstreamJobPage {
        if UpstreamJSON.opening(of: body) == .array {
            let children = try UpstreamJSON.decode([AWSJobBody].self, from: body)
            return UpstreamJobPage(shape: .awsArray, jobs: try jobs(children, path: ""))
        }

        let list = try UpstreamJSON.decode(AWSListBody.self, from: body)
        guard let children = list.children else {
            throw MalformedUpstreamBody(reason: "children: missing")
        }

        return UpstreamJobPage(
            shape: .awsPaged,
            jobs: try jobs(children, path: "children"),
            total: list.page?.totalCount?.integer,
            next: nonEmpty(list.page?.next?.text),
            pageSize: list.page?.pageSize?.integer,
            start: list.page?.start?.integer
        )
    }

    public static func writeCreateBody(_ request: DeleteRequest) -> [UInt8] {
        CreateBody.write(request)
    }

    private static func jobs(_ children: [AWSJobBody], path: String) throws(MalformedUpstreamBody) -> [SystemJob] {
        var jobs: [SystemJob] = []
        jobs.reserveCapacity(children.count)
        for (index, child) in children.enumerated() {
            do {
                jobs.append(try child.systemJob())
            } catch {
                throw MalformedUpstreamBody(reason: "\(path)[\(index)]: \(error.reason)")
            }
        }
        return jobs
    }
}

/// One AWS job as the upstream writes it; unknown fields are ignored.
struct AWSJobBody: ScannableBody {
    struct Sandbox: Decodable {
        var sandboxName: String?
        var sandboxId: String?
    }

    struct Properties: Decodable {
        var datasetId: String?
        /// Not documented for AWS, accepted because Azure uses this spelling for the same thing.
        var dataSetId: String?
        var batchId: String?
    }

    var requestId: String?
    var requestType: String?
    var imsOrgId: String?
    var sandbox: Sandbox?
    var status: String?
    var properties: Properties?
    var createdAt: String?
    var updatedAt: String?

    init(scanned node: JSONNode) throws(NotScanned) {
        let object = try ScannedObject(node)
        requestId = try object.string("requestId")
        requestType = try object.string("requestType")
        imsOrgId = try object.string("imsOrgId")
        sandbox = try object.object("sandbox").map { sandbox throws(NotScanned) in
            Sandbox(sandboxName: try sandbox.string("sandboxName"), sandboxId: try sandbox.string("sandboxId"))
        }
        status = try object.string("status")
        properties = try object.object("properties").map { properties throws(NotScanned) in
            Properties(
                datasetId: try properties.string("datasetId"), dataSetId: try properties.string("dataSetId"),
                batchId: try properties.string("batchId"))
        }
        createdAt = try object.string("createdAt")
        updatedAt = try object.string("updatedAt")
    }

    func systemJob() throws(MalformedUpstreamBody) -> SystemJob {
        guard let id = nonEmpty(requestId) else {
            throw MalformedUpstreamBody(reason: "requestId: missing")
        }

        let type: JobType =
            switch requestType {
            case "TRUNCATE_DATASET": .deleteDataset
            case "DELETE_EE_BATCH": .deleteBatch
            case "BACKFILL_TTL": .backfillTTL
            default: .unknown
            }

        return SystemJob(
            id: id,
            cloud: .aws,
            orgId: imsOrgId,
            sandbox: SandboxRef(name: nonEmpty(sandbox?.sandboxName), id: nonEmpty(sandbox?.sandboxId)),
            type: type,
            upstreamType: requestType,
            datasetId: nonEmpty(properties?.datasetId) ?? nonEmpty(properties?.dataSetId),
            batchId: nonEmpty(properties?.batchId),
            status: canonicalStatus(status),
            upstreamStatus: status,
            createdAt: try time(createdAt, field: "createdAt"),
            updatedAt: try time(updatedAt, field: "updatedAt")
        )
    }

    private func time(_ text: String?, field: String) throws(MalformedUpstreamBody) -> String? {
        guard let text else { return nil }
        do {
            return try UpstreamTime.normalise(text)
        } catch {
            throw MalformedUpstreamBody(reason: "\(field): \(error.reason)")
        }
    }
}

/// AWS's newer list page; `start` arrives as a string, `next` as a number.
struct AWSListBody: ScannableBody {
    struct Page: Decodable {
        var pageSize: LenientScalar?
        var start: LenientScalar?
        var totalCount: LenientScalar?
        var next: LenientScalar?

        enum CodingKeys: String, CodingKey {
            case pageSize, start, totalCount, next
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            pageSize = container.lenient(.pageSize)
            start = container.lenient(.start)
            totalCount = container.lenient(.totalCount)
            next = container.lenient(.next)
        }

        init(scanned object: ScannedObject) throws(NotScanned) {
            pageSize = try object.lenient("pageSize")
            start = try object.lenient("start")
            totalCount = try object.lenient("totalCount")
            next = try object.lenient("next")
        }
    }

    var page: Page?
    var children: [AWSJobBody]?

    enum CodingKeys: String, CodingKey {
        case page = "_page"
        case children
    }

    init(scanned node: JSONNode) throws(NotScanned) {
        let object = try ScannedObject(node)
        page = try object.object("_page").map { object throws(NotScanned) in try Page(scanned: object) }
        children = try object.value("children").map { node throws(NotScanned) in try [AWSJobBody](scanned: node) }
    }
}
