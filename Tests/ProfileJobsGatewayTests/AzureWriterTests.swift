import Foundation
import Testing

@testable import ProfileJobsGateway

/// A JSON document as Foundation objects, so documents compare by keys and values whatever their layout.
private func parsed(_ bytes: [UInt8]) throws -> NSObject {
    try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? NSObject)
}

private func writtenJob(_ job: SystemJob) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(AzureDialect.writeJob(job))) as? [String: Any])
}

@Suite("Azure writer")
struct AzureWriterTests {
    // MARK: Round trips: one model, read and written back

    @Test(arguments: ["azure/get.json", "azure/create-batch.response.json", "azure/create-dataset.response.json"])
    func documentedJobRoundTrips(fixture: String) throws {
        let original = try DialectFixture.bytes(fixture)
        let written = AzureDialect.writeJob(try AzureDialect.readJob(original))

        #expect(try parsed(written) == parsed(original), "\(String(decoding: written, as: UTF8.self))")
    }

    @Test func documentedListRoundTrips() throws {
        let original = try DialectFixture.bytes("azure/list.json")
        let page = try AzureDialect.readList(original)
        let written = AzureDialect.writeList(page.jobs, count: try #require(page.total), next: page.next)

        #expect(try parsed(written) == parsed(original), "\(String(decoding: written, as: UTF8.self))")
    }

    @Test func writtenJobKeepsAzuresFieldOrder() throws {
        let job = try AzureDialect.readJob(DialectFixture.bytes("azure/get.json"))
        let text = String(decoding: AzureDialect.writeJob(job), as: UTF8.self)

        #expect(
            text == #"{"id":"9c2018e2-cd04-46a4-b38e-89ef7b1fcdf4","imsOrgId":"{ORG_ID}","#
                + #""batchId":"8d075b5a178e48389126b9289dcfd0ac","jobType":"DELETE","status":"COMPLETED","#
                + #""metrics":"{\"recordsProcessed\":5,\"timeTakenInSec\":1}","#
                + #""createEpoch":1559026134,"updateEpoch":1559026137}"#)
    }

    // MARK: AWS jobs in the Azure shape

    @Test func awsDatasetDeleteBecomesAnAzureDatasetDelete() throws {
        let job = try AWSDialect.readJob(DialectFixture.bytes("aws/create-dataset.response.json"))
        let expected = """
            {"id": "5f6a1e2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "imsOrgId": "{ORG_ID}",
             "dataSetId": "66a92c5910df2d1767de13f3", "jobType": "DELETE", "status": "NEW",
             "createEpoch": 1734896690, "updateEpoch": 1734897133}
            """

        #expect(try parsed(AzureDialect.writeJob(job)) == parsed(Array(expected.utf8)))
    }

    @Test func awsBatchDeleteBecomesAnAzureBatchDelete() throws {
        let job = try AWSDialect.readJob(DialectFixture.bytes("aws/create-batch.response.json"))
        let expected = """
            {"id": "80a9405a-21ca-4278-aedf-99367f90c055", "imsOrgId": "{ORG_ID}",
             "datasetId": "66a92c5910df2d1767de13f3", "batchId": "01JFSYFDFW9JAAEKHX672JMPSB",
             "jobType": "DELETE", "status": "COMPLETED", "createEpoch": 1734896690, "updateEpoch": 1734897133}
            """

        #expect(try parsed(AzureDialect.writeJob(job)) == parsed(Array(expected.utf8)))
    }

    @Test(arguments: ["aws/list-array.json", "aws/list-paged.json"])
    func awsListBecomesAnAzureList(fixture: String) throws {
        let page = try AWSDialect.readList(DialectFixture.bytes(fixture))
        let written = try #require(
            try JSONSerialization.jsonObject(with: Data(AzureDialect.writeList(page.jobs, count: 2, next: nil)))
                as? [String: Any])

        let paging = try #require(written["_page"] as? [String: Any])
        #expect(paging["count"] as? Int == 2)
        #expect(paging["next"] as? String == "")
        let children = try #require(written["children"] as? [[String: Any]])
        #expect(children.map { $0["jobType"] as? String } == ["DELETE", "DELETE"])
        #expect(children.map { $0["batchId"] as? String } == ["01JFSYFDFW9JAAEKHX672JMPSB", nil])
        #expect(children.map { $0["dataSetId"] as? String } == [nil, "66a92c5910df2d1767de13f3"])
        #expect(children.allSatisfy { $0["sandbox"] == nil && $0["requestId"] == nil })
    }

    // MARK: What Azure cannot express

    @Test func backfillTTLKeepsItsOwnTypeAndItsDataset() throws {
        let job = try AWSDialect.readJob(
            Array(
                #"{"requestId": "t1", "requestType": "BACKFILL_TTL", "status": "IN-PROGRESS", "properties": {"datasetId": "d1"}}"#
                    .utf8))
        let written = try writtenJob(job)

        #expect(written["jobType"] as? String == "BACKFILL_TTL")
        #expect(written["dataSetId"] as? String == "d1")
        #expect(written["status"] as? String == "PROCESSING")
    }

    @Test func unknownTypeAndStatusKeepTheUpstreamsWords() throws {
        let job = SystemJob(
            id: "u1", cloud: .aws, type: .unknown, upstreamType: "REBUILD", status: .unknown, upstreamStatus: "PAUSED")
        let written = try writtenJob(job)

        #expect(written["jobType"] as? String == "REBUILD")
        #expect(written["status"] as? String == "PAUSED")
    }

    @Test func missingFieldsAreOmittedNotNull() throws {
        let job = SystemJob(id: "m1", cloud: .aws, type: .unknown, status: .unknown)

        #expect(Set(try writtenJob(job).keys) == ["id"])
    }

    @Test(arguments: [
        (JobStatus.queued, "NEW"), (.running, "PROCESSING"), (.succeeded, "COMPLETED"), (.failed, "ERROR"),
    ])
    func canonicalStatusesBecomeAzureWords(status: JobStatus, word: String) throws {
        #expect(
            try writtenJob(SystemJob(id: "s1", cloud: .aws, type: .deleteDataset, status: status))["status"]
                as? String == word)
        #expect(canonicalStatus(word) == status)
    }

    @Test(arguments: [
        ("2024-12-22T19:44:50.250006Z", 1_734_896_690), ("2024-12-22T19:44:50.999Z", 1_734_896_690),
        ("2019-05-28T06:36:44Z", 1_559_025_404), ("2019-05-28T08:36:44+02:00", 1_559_025_404),
        ("1969-12-31T23:59:59Z", -1),
    ])
    func timesAreTruncatedToEpochSeconds(time: String, epoch: Int) throws {
        let job = SystemJob(id: "t1", cloud: .aws, type: .deleteDataset, status: .queued, createdAt: time)

        #expect(try writtenJob(job)["createEpoch"] as? Int == epoch)
        #expect(UpstreamTime.toEpoch(time) == epoch)
    }

    @Test func metricsAreAStringLeavingOutAFigureNotReported() throws {
        let job = SystemJob(
            id: "x1", cloud: .azure, type: .deleteDataset, status: .running,
            metrics: JobMetrics(recordsProcessed: 12, durationSeconds: nil))

        #expect(try writtenJob(job)["metrics"] as? String == #"{"recordsProcessed":12}"#)
    }
}
