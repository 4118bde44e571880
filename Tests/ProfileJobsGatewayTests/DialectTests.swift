import Foundation
import Testing

@testable import ProfileJobsGateway

private func bytes(_ text: String) -> [UInt8] {
    Array(text.utf8)
}

private func azureJob(_ fields: String) throws -> SystemJob {
    try AzureDialect.readJob(bytes(#"{"id": "j1", "#) + bytes(fields) + bytes("}"))
}

private func awsJob(_ fields: String) throws -> SystemJob {
    try AWSDialect.readJob(bytes(#"{"requestId": "j1", "#) + bytes(fields) + bytes("}"))
}

/// The reason a read failed with, nil when it succeeded; any other error shows up as itself.
private func malformedReason(_ read: () throws -> Void) -> String? {
    do {
        try read()
        return nil
    } catch let error as MalformedUpstreamBody {
        return error.reason
    } catch {
        return "unexpected error \(error)"
    }
}

@Suite("Dialects: golden canonical JSON")
struct DialectGoldenTests {
    @Test(arguments: [
        (Cloud.azure, "azure/get.json", "azure-get.json"),
        (.azure, "azure/create-batch.response.json", "azure-create-batch.response.json"),
        (.azure, "azure/create-dataset.response.json", "azure-create-dataset.response.json"),
        (.aws, "aws/get.json", "aws-get.json"),
        (.aws, "aws/create-batch.response.json", "aws-create-batch.response.json"),
        (.aws, "aws/create-dataset.response.json", "aws-create-dataset.response.json"),
    ])
    func jobMatchesGolden(cloud: Cloud, fixture: String, golden: String) throws {
        let job = try cloud.dialect.readJob(DialectFixture.bytes(fixture))

        DialectFixture.expectSameJSON(CanonicalJSON.job(job), try DialectFixture.golden(golden), golden)
    }

    @Test(arguments: [
        (Cloud.azure, "azure/list.json", "azure-list.json"),
        (.aws, "aws/list-array.json", "aws-list-array.json"),
        (.aws, "aws/list-paged.json", "aws-list-paged.json"),
    ])
    func listMatchesGolden(cloud: Cloud, fixture: String, golden: String) throws {
        let page = try cloud.dialect.readList(DialectFixture.bytes(fixture))

        let json = CanonicalJSON.list(page.jobs, limit: 2, next: page.next, total: page.total)
        DialectFixture.expectSameJSON(json, try DialectFixture.golden(golden), golden)
    }

    @Test func writeIntoAppendsTheSameDocumentAsJob() throws {
        let job = try AWSDialect.readJob(DialectFixture.bytes("aws/get.json"))
        var writer = JSONWriter()
        writer.beginArray()
        CanonicalJSON.write(job, into: &writer)
        writer.endArray()

        #expect(writer.bytes == bytes("[") + CanonicalJSON.job(job) + bytes("]"))
    }

    @Test func emptyListHasExplicitNulls() {
        let json = CanonicalJSON.list([], limit: 50, next: nil, total: nil)

        #expect(
            String(decoding: json, as: UTF8.self)
                == #"{"jobs":[],"page":{"limit":50,"next":null,"total":null,"complete":true}}"#)
    }

    @Test func fractionalMetricsKeepTheirFraction() {
        let job = SystemJob(
            id: "j",
            cloud: .azure,
            type: .deleteBatch,
            status: .running,
            metrics: JobMetrics(recordsProcessed: 12, durationSeconds: 1.5)
        )

        let text = String(decoding: CanonicalJSON.job(job), as: UTF8.self)
        #expect(text.contains(#""metrics":{"recordsProcessed":12,"durationSeconds":1.5}"#))
    }
}

@Suite("Dialects: job fields")
struct DialectJobTests {
    @Test func cloudsNameTheirDialects() {
        #expect(ObjectIdentifier(Cloud.azure.dialect) == ObjectIdentifier(AzureDialect.self))
        #expect(ObjectIdentifier(Cloud.aws.dialect) == ObjectIdentifier(AWSDialect.self))
        for cloud in Cloud.allCases {
            #expect(cloud.dialect.cloud == cloud)
        }
    }

    @Test func azureDeleteWithBatchIsABatchDelete() throws {
        let job = try azureJob(#""jobType": "DELETE", "datasetId": "d", "batchId": "b""#)

        #expect(job.type == .deleteBatch)
        #expect(job.upstreamType == "DELETE")
        #expect(job.datasetId == "d")
        #expect(job.batchId == "b")
    }

    @Test func azureDeleteWithoutBatchIsADatasetDelete() throws {
        let job = try azureJob(#""jobType": "DELETE", "dataSetId": "d""#)

        #expect(job.type == .deleteDataset)
        #expect(job.datasetId == "d")
        #expect(job.batchId == nil)
    }

    @Test func azureEmptyBatchIdCountsAsNone() throws {
        let job = try azureJob(#""jobType": "DELETE", "dataSetId": "d", "batchId": """#)

        #expect(job.type == .deleteDataset)
        #expect(job.batchId == nil)
    }

    @Test(arguments: [
        (#""jobType": "TRUNCATE_DATASET""#, "TRUNCATE_DATASET" as String?),
        (#""jobType": "delete""#, "delete"),
        (#""jobType": null"#, nil),
        (#""other": 1"#, nil),
    ])
    func azureOtherTypesAreUnknownKeepingTheRawWord(fields: String, raw: String?) throws {
        let job = try azureJob(fields)

        #expect(job.type == .unknown)
        #expect(job.upstreamType == raw)
    }

    @Test(arguments: [
        ("TRUNCATE_DATASET", JobType.deleteDataset),
        ("DELETE_EE_BATCH", .deleteBatch),
        ("BACKFILL_TTL", .backfillTTL),
        ("DELETE", .unknown),
        ("SOMETHING_NEW", .unknown),
    ])
    func awsTypes(word: String, type: JobType) throws {
        let job = try awsJob(#""requestType": "\#(word)""#)

        #expect(job.type == type)
        #expect(job.upstreamType == word)
    }

    @Test func awsAbsentTypeIsUnknown() throws {
        let job = try awsJob(#""status": "NEW""#)

        #expect(job.type == .unknown)
        #expect(job.upstreamType == nil)
    }

    @Test(
        arguments: Cloud.allCases,
        [
            ("NEW", JobStatus.queued),
            ("PROCESSING", .running),
            ("IN-PROGRESS", .running),
            ("COMPLETED", .succeeded),
            ("SUCCESS", .succeeded),
            ("ERROR", .failed),
            ("FAILED", .failed),
            ("IN_PROGRESS", .unknown),
            ("success", .unknown),
            ("CANCELLED", .unknown),
        ])
    func statusWordsOfBothCloudsAreUnderstoodOnBoth(cloud: Cloud, status: (word: String, canonical: JobStatus))
        throws
    {
        let job =
            switch cloud {
            case .azure: try azureJob(#""status": "\#(status.word)""#)
            case .aws: try awsJob(#""status": "\#(status.word)""#)
            }

        #expect(job.status == status.canonical)
        #expect(job.upstreamStatus == status.word)
    }

    @Test func absentStatusIsUnknown() throws {
        let job = try awsJob(#""status": null"#)

        #expect(job.status == .unknown)
        #expect(job.upstreamStatus == nil)
    }

    @Test func awsReadsSandboxAndProperties() throws {
        let job = try AWSDialect.readJob(DialectFixture.bytes("aws/get.json"))

        #expect(job.sandbox == SandboxRef(name: "prod", id: "8129954b-fa83-43ba-a995-4bfa8373ba2b"))
        #expect(job.orgId == "{ORG_ID}")
        #expect(job.datasetId == "66a92c5910df2d1767de13f3")
        #expect(job.batchId == "01JFSYFDFW9JAAEKHX672JMPSB")
        #expect(job.metrics == nil)
    }

    @Test func awsAcceptsEitherDatasetSpellingInProperties() throws {
        let job = try awsJob(#""properties": {"dataSetId": "d"}"#)

        #expect(job.datasetId == "d")
    }

    @Test func azureJobsCarryNoSandbox() throws {
        let job = try AzureDialect.readJob(DialectFixture.bytes("azure/get.json"))

        #expect(job.sandbox == SandboxRef())
        #expect(job.cloud == .azure)
    }

    @Test func unknownFieldsAreIgnored() throws {
        let job = try azureJob(#""jobType": "DELETE", "future": {"nested": [1, null, "x"]}, "flag": true"#)

        #expect(job.type == .deleteDataset)
    }

    @Test(arguments: [
        #"{"imsOrgId": "o", "jobType": "DELETE"}"#,
        #"{"id": null, "jobType": "DELETE"}"#,
        #"{"id": "", "jobType": "DELETE"}"#,
    ])
    func azureJobWithoutIdIsMalformed(body: String) {
        #expect(malformedReason { _ = try AzureDialect.readJob(bytes(body)) } == "id: missing")
    }

    @Test func awsJobWithoutRequestIdIsMalformed() throws {
        let body = bytes(#"{"id": "azure-style", "requestType": "TRUNCATE_DATASET"}"#)

        #expect(malformedReason { _ = try AWSDialect.readJob(body) } == "requestId: missing")
    }

    @Test(arguments: [
        ("", "empty body"),
        ("  \n ", "empty body"),
        ("<html><body>502</body></html>", "not JSON (looks like HTML)"),
        (#"{"id": "j1", "status": "NEW""#, "invalid JSON"),
        (#"[{"id": "j1"}]"#, "expected a job object, got an array"),
        (#""j1""#, "not a JSON object or array"),
        (#"{"id": 42}"#, "id: unexpected type"),
        (#"{"id": "j1", "createEpoch": "yesterday"}"#, "createEpoch: unexpected type"),
    ])
    func unreadableAzureJobsAreMalformed(body: String, reason: String) {
        #expect(malformedReason { _ = try AzureDialect.readJob(bytes(body)) } == reason)
    }

    @Test func wrongTypesDeepInsideNameTheirPath() {
        let body = bytes(#"{"requestId": "j1", "properties": {"batchId": 7}}"#)

        #expect(malformedReason { _ = try AWSDialect.readJob(body) } == "properties.batchId: unexpected type")
    }
}

@Suite("Dialects: metrics")
struct DialectMetricsTests {
    @Test func azureMetricsStringBecomesAnObject() throws {
        let job = try azureJob(#""metrics": "{\"recordsProcessed\":5,\"timeTakenInSec\":1}""#)

        #expect(job.metrics == JobMetrics(recordsProcessed: 5, durationSeconds: 1))
    }

    @Test func azureMetricsObjectIsAcceptedToo() throws {
        let job = try azureJob(#""metrics": {"recordsProcessed": 0, "timeTakenInSec": 15, "extra": "x"}"#)

        #expect(job.metrics == JobMetrics(recordsProcessed: 0, durationSeconds: 15))
    }

    @Test func azureMetricsWithOneFigureKeepsTheOther() throws {
        let job = try azureJob(#""metrics": "{\"timeTakenInSec\":2.5}""#)

        #expect(job.metrics == JobMetrics(recordsProcessed: nil, durationSeconds: 2.5))
    }

    @Test func azureMetricsFiguresSentAsStringsAreRead() throws {
        let job = try azureJob(#""metrics": {"recordsProcessed": "12", "timeTakenInSec": "3"}"#)

        #expect(job.metrics == JobMetrics(recordsProcessed: 12, durationSeconds: 3))
    }

    @Test(arguments: [
        #""other": 1"#,
        #""metrics": null"#,
        #""metrics": "not json at all""#,
        #""metrics": "{\"recordsProcessed\":5,""#,
        #""metrics": """#,
        #""metrics": "{}""#,
        #""metrics": 5"#,
        #""metrics": [1, 2]"#,
    ])
    func unreadableOrAbsentMetricsAreNull(fields: String) throws {
        let job = try azureJob(fields)

        #expect(job.metrics == nil)
        #expect(String(decoding: CanonicalJSON.job(job), as: UTF8.self).contains(#""metrics":null"#))
    }
}

@Suite("Dialects: times")
struct DialectTimeTests {
    @Test(arguments: [
        (0, "1970-01-01T00:00:00Z"),
        (1_559_025_404, "2019-05-28T06:36:44Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (253_402_300_799, "9999-12-31T23:59:59Z"),
    ])
    func azureEpochSecondsBecomeUTC(seconds: Int, text: String) throws {
        let job = try azureJob(#""createEpoch": \#(seconds), "updateEpoch": \#(seconds)"#)

        #expect(job.createdAt == text)
        #expect(job.updatedAt == text)
    }

    @Test func azureEpochBeyondYear9999IsMalformed() {
        let reason = malformedReason { _ = try azureJob(#""createEpoch": 253402300800"#) }

        #expect(reason?.hasPrefix("createEpoch: ") == true)
    }

    @Test(arguments: [
        ("2024-12-22T19:44:50.250006Z", "2024-12-22T19:44:50.250006Z"),
        ("2024-12-22T19:44:50Z", "2024-12-22T19:44:50Z"),
        ("2024-12-22t19:44:50.1z", "2024-12-22T19:44:50.1Z"),
        ("2024-12-22T21:44:50.250006+02:00", "2024-12-22T19:44:50.250006Z"),
        ("2024-12-22T19:44:50.000000+00:00", "2024-12-22T19:44:50.000000Z"),
        ("2024-12-31T20:30:00.5-05:30", "2025-01-01T02:00:00.5Z"),
        ("2024-03-01T01:00:00.123456789+03:00", "2024-02-29T22:00:00.123456789Z"),
        ("2023-03-01T01:00:00+03:00", "2023-02-28T22:00:00Z"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:60Z"),
    ])
    func awsTimesBecomeUTCKeepingTheirFraction(upstream: String, canonical: String) throws {
        let job = try awsJob(#""createdAt": "\#(upstream)", "updatedAt": "\#(upstream)""#)

        #expect(job.createdAt == canonical)
        #expect(job.updatedAt == canonical)
    }

    @Test func awsAbsentTimesAreNull() throws {
        let job = try awsJob(#""createdAt": null"#)

        #expect(job.createdAt == nil)
        #expect(job.updatedAt == nil)
    }

    @Test(arguments: [
        "2024-12-22T19:44:50",
        "2024-12-22 19:44:50Z",
        "2024-13-22T19:44:50Z",
        "2023-02-29T19:44:50Z",
        "2024-12-22T24:00:00Z",
        "2024-12-22T19:44:61Z",
        "2024-12-22T19:44:50.Z",
        "2024-12-22T19:44:50Zjunk",
        "2024-12-22T19:44:50+0200",
        "2024-12-22T19:44:50+24:00",
        "0000-01-01T00:30:00+01:00",
        "yesterday",
        "",
    ])
    func awsUnparseableTimesAreMalformed(text: String) {
        let reason = malformedReason { _ = try awsJob(#""createdAt": "\#(text)""#) }

        #expect(reason?.hasPrefix("createdAt: ") == true)
    }

    @Test func awsTimeAsANumberIsMalformed() {
        #expect(malformedReason { _ = try awsJob(#""updatedAt": 1559025404"#) } == "updatedAt: unexpected type")
    }
}

@Suite("Dialects: lists")
struct DialectListTests {
    @Test func azureListReadsCountAndNextToken() throws {
        let page = try AzureDialect.readList(DialectFixture.bytes("azure/list.json"))

        #expect(page.shape == .azurePaged)
        #expect(
            page.jobs.map(\.id) == ["9c2018e2-cd04-46a4-b38e-89ef7b1fcdf4", "3f225e7e-ac8c-4904-b1d5-0ce79e03c2ec"])
        #expect(page.total == 100)
        #expect(page.next?.hasPrefix("K1JJRDpFaWc5") == true)
        #expect(page.pageSize == nil)
        #expect(page.start == nil)
    }

    @Test(arguments: [
        #"{"_page": {"count": 0, "next": ""}, "children": []}"#,
        #"{"_page": {"count": 0, "next": null}, "children": []}"#,
        #"{"_page": {"count": 0}, "children": []}"#,
    ])
    func azureEmptyOrAbsentNextIsNil(body: String) throws {
        let page = try AzureDialect.readList(bytes(body))

        #expect(page.next == nil)
        #expect(page.total == 0)
        #expect(page.jobs.isEmpty)
    }

    @Test func azureListWithoutPageHasNoTotal() throws {
        let page = try AzureDialect.readList(bytes(#"{"children": [{"id": "a"}]}"#))

        #expect(page.total == nil)
        #expect(page.next == nil)
        #expect(page.jobs.map(\.id) == ["a"])
    }

    @Test func awsBareArrayHasNoTotal() throws {
        let page = try AWSDialect.readList(DialectFixture.bytes("aws/list-array.json"))

        #expect(page.shape == .awsArray)
        #expect(page.jobs.map(\.type) == [.deleteBatch, .deleteDataset])
        #expect(page.total == nil)
        #expect(page.next == nil)
    }

    @Test func awsPagedReadsStartWrittenAsAString() throws {
        let page = try AWSDialect.readList(DialectFixture.bytes("aws/list-paged.json"))

        #expect(page.shape == .awsPaged)
        #expect(page.jobs.count == 2)
        #expect(page.pageSize == 2)
        #expect(page.start == 0)
        #expect(page.total == 2)
        #expect(page.next == "1")
    }

    @Test func awsPagedAcceptsNumbersAndStringsAlike() throws {
        let body = #"{"_page": {"pageSize": "50", "start": 3, "totalCount": "151", "next": "4"}, "children": []}"#
        let page = try AWSDialect.readList(bytes(body))

        #expect(page.pageSize == 50)
        #expect(page.start == 3)
        #expect(page.total == 151)
        #expect(page.next == "4")
    }

    @Test func awsPagedLastPageHasNoNext() throws {
        let body = #"{"_page": {"pageSize": 2, "start": "1", "totalCount": 3, "next": null}, "children": []}"#
        let page = try AWSDialect.readList(bytes(body))

        #expect(page.next == nil)
        #expect(page.start == 1)
    }

    @Test func awsDocumentedInvalidListIsMalformed() throws {
        let body = try DialectFixture.bytes("aws/list-as-documented-invalid.txt")

        #expect(malformedReason { _ = try AWSDialect.readList(body) } == "invalid JSON")
    }

    @Test(arguments: [
        (#"{"_page": {"pageSize": 2}, "children:": []}"#, "children: missing"),
        (#"{"_page": {"pageSize": 2, "start": "0"}}"#, "children: missing"),
        (#"{"children": null}"#, "children: missing"),
        (#"{"children": {"requestId": "a"}}"#, "children: unexpected type"),
        (#"[{"requestId": "a"}, {"requestType": "DELETE_EE_BATCH"}]"#, "[1]: requestId: missing"),
        (#"{"children": [{"requestId": "a"}, {"requestId": "b", "createdAt": "soon"}]}"#, "children[1]: createdAt: "),
        (#"[{"requestId": "a"}, {"requestId": "b""#, "invalid JSON"),
        ("<!DOCTYPE html><html><title>502</title></html>", "not JSON (looks like HTML)"),
        ("", "empty body"),
        ("upstream timed out", "not a JSON object or array"),
    ])
    func awsUnreadableListsAreMalformed(body: String, reasonStart: String) {
        let reason = malformedReason { _ = try AWSDialect.readList(bytes(body)) }

        #expect(reason?.hasPrefix(reasonStart) == true, "reason was \(reason ?? "nil")")
    }

    @Test(arguments: [
        (#"[{"id": "a"}]"#, "expected a paged object, got a bare array"),
        (#"{"_page": {"count": 1}}"#, "children: missing"),
        (#"{"_page": {"count": 1}, "children:": []}"#, "children: missing"),
        (#"{"children": [{"id": "a"}, {"jobType": "DELETE"}]}"#, "children[1]: id: missing"),
        (#"{"children": [{"id": "a"}, {"id": 3}]}"#, "children[1].id: unexpected type"),
        (#"{"_page": {"count": 1}, "children": [{"id": "a"#, "invalid JSON"),
        ("<html><body>Bad gateway</body></html>", "not JSON (looks like HTML)"),
        ("", "empty body"),
    ])
    func azureUnreadableListsAreMalformed(body: String, reason: String) {
        #expect(malformedReason { _ = try AzureDialect.readList(bytes(body)) } == reason)
    }

    @Test func eachReaderReadsOnlyItsOwnDialect() throws {
        let awsPaged = try DialectFixture.bytes("aws/list-paged.json")
        let azureList = try DialectFixture.bytes("azure/list.json")

        #expect(malformedReason { _ = try AzureDialect.readList(awsPaged) } == "children[0]: id: missing")
        #expect(malformedReason { _ = try AWSDialect.readList(azureList) } == "children[0]: requestId: missing")
    }
}

@Suite("Dialects: create bodies")
struct DialectCreateBodyTests {
    @Test(arguments: [
        (DeleteRequest.dataset(datasetId: "5c802d3cd83fc114b741c4b5"), "azure/create-dataset.request.json"),
        (
            .batch(datasetId: "66a92c5910df2d1767de13f3", batchId: "8d075b5a178e48389126b9289dcfd0ac"),
            "azure/create-batch.request.json"
        ),
        (.batch(datasetId: nil, batchId: "8d075b5a178e48389126b9289dcfd0ac"), "azure/create-batch-only.request.json"),
    ])
    func azureBodiesMatchTheDocumentedRequests(request: DeleteRequest, fixture: String) throws {
        let documented = try DialectFixture.bytes(fixture).filter { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }

        #expect(AzureDialect.writeCreateBody(request) == documented)
    }

    @Test(arguments: [
        (DeleteRequest.dataset(datasetId: "D"), #"{"dataSetId":"D"}"#),
        (.batch(datasetId: "D", batchId: "B"), #"{"datasetId":"D","batchId":"B"}"#),
        (.batch(datasetId: nil, batchId: "B"), #"{"batchId":"B"}"#),
    ])
    func awsBodiesUseTheDocumentedSpellings(request: DeleteRequest, body: String) {
        #expect(AWSDialect.writeCreateBody(request) == bytes(body))
    }

    @Test func idsAreEscaped() {
        let body = AzureDialect.writeCreateBody(.dataset(datasetId: "a\"b"))

        #expect(body == bytes(#"{"dataSetId":"a\"b"}"#))
    }
}
