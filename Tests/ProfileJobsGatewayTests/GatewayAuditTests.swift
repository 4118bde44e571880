import Foundation
import ProfileJobsGateway
import Testing
import UpstreamSimulators

/// Every deletion request, on either surface and either cloud, accepted or refused, leaves its records in the trail.
@Suite struct GatewayAuditTests {
    /// The intent and outcome of one deletion call, found by the request id the gateway answered with.
    static func records(
        _ demo: DemoEnvironment,
        requestId: String?,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (intent: AuditRecord?, outcome: AuditRecord?) {
        let mine = try demo.auditRecords().filter { $0.requestId == requestId }
        #expect(mine.count <= 2, "\(mine)", sourceLocation: sourceLocation)
        let intent = mine.first { $0.event == .intent }
        let outcome = mine.first { $0.event == .outcome }
        if let intent, let outcome {
            #expect(intent.id == outcome.id, sourceLocation: sourceLocation)
            #expect(mine.first?.event == .intent, "the intent is written first", sourceLocation: sourceLocation)
        }
        return (intent, outcome)
    }

    @Test(arguments: SimulatedCloud.allCases)
    func everyKindOfDeletionIsRecordedBeforeAndAfter(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)

            // A dataset delete.
            let dataset = try await caller.create(#"{"datasetId": "5c802d3cd83fc114b741c4b5"}"#)
            #expect(dataset.status == 201, "\(dataset.text)")
            let jobId = try dataset.jsonObject().string("id")
            var (intent, outcome) = try Self.records(demo, requestId: dataset.header("x-request-id"))
            for record in [intent, outcome] {
                #expect(record?.action == .createDatasetDelete)
                #expect(record?.orgId == cloud.orgId)
                #expect(record?.cloud == cloud.rawValue)
                #expect(record?.sandboxName == "prod")
                #expect(record?.sandboxId == SimulatorOptions.prodSandboxId)
                #expect(record?.datasetId == "5c802d3cd83fc114b741c4b5")
                #expect(record?.batchId == nil)
                #expect(record?.surface == "canonical")
                #expect(record?.requester.apiKey == "k")
                #expect(record?.clientAddress == "127.0.0.1")
                #expect(record?.traceId?.count == 32)
            }
            #expect(intent?.jobId == nil && intent?.outcome == nil)
            #expect(outcome?.outcome == .succeeded)
            #expect(outcome?.jobId == jobId)
            #expect(outcome?.status == 201)
            #expect(outcome?.upstreamStatus == 200)
            #expect(outcome?.durationSeconds != nil)

            // A batch delete.
            let batch = try await caller.create(
                #"{"datasetId": "66a92c5910df2d1767de13f3", "batchId": "01JFSYFDFW9JAAEKHX672JMPSB"}"#)
            #expect(batch.status == 201, "\(batch.text)")
            (intent, outcome) = try Self.records(demo, requestId: batch.header("x-request-id"))
            #expect(intent?.action == .createBatchDelete)
            #expect(intent?.batchId == "01JFSYFDFW9JAAEKHX672JMPSB")
            #expect(outcome?.outcome == .succeeded)
            #expect(outcome?.jobId == (try batch.jsonObject().string("id")))

            // A removal: forwarded on Azure; refused by the gateway itself on AWS, so there is nothing to intend.
            let removal = try await caller.remove(try #require(jobId))
            (intent, outcome) = try Self.records(demo, requestId: removal.header("x-request-id"))
            #expect(outcome?.action == .removeJob)
            #expect(outcome?.jobId == jobId)
            switch cloud {
            case .azure:
                #expect(removal.status == 204)
                #expect(intent?.jobId == jobId)
                #expect(outcome?.outcome == .succeeded)
                #expect(outcome?.status == 204)
            case .aws:
                #expect(removal.status == 501)
                #expect(intent == nil)
                #expect(outcome?.outcome == .refused)
                #expect(outcome?.status == 501)
                #expect(outcome?.problemType == "/problems/operation-not-supported")
                #expect(outcome?.sandboxName == "prod", "nothing was sent, and the default sandbox is recorded")
            }
        }
    }

    @Test func theAzureSurfaceIsRecordedToo() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let created = try await caller.call(
                "POST", "/data/core/ups/system/jobs", body: #"{"dataSetId": "5c802d3cd83fc114b741c4b5"}"#)
            #expect(created.status == 200, "\(created.text)")

            let (intent, outcome) = try Self.records(demo, requestId: created.header("x-request-id"))
            #expect(intent?.surface == "azure")
            #expect(intent?.action == .createDatasetDelete)
            #expect(outcome?.outcome == .succeeded)
            #expect(outcome?.cloud == "aws")
        }
    }

    @Test(arguments: SimulatedCloud.allCases)
    func refusedAndRejectedDeletionsAreRecorded(cloud: SimulatedCloud) async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)

            // Refused by the gateway: nothing was forwarded, so only an outcome.
            let unreadable = try await caller.create("{not json")
            var (intent, outcome) = try Self.records(demo, requestId: unreadable.header("x-request-id"))
            #expect(intent == nil)
            #expect(outcome?.action == .createDelete)
            #expect(outcome?.outcome == .refused)
            #expect(outcome?.status == 400)
            #expect(outcome?.problemType == "/problems/invalid-body")

            let stranger = GatewayCaller(port: demo.gatewayPort, orgId: "stranger@AdobeOrg")
            let unknown = try await stranger.remove("job-1")
            (intent, outcome) = try Self.records(demo, requestId: unknown.header("x-request-id"))
            #expect(intent == nil)
            #expect(outcome?.orgId == "stranger@AdobeOrg")
            #expect(outcome?.jobId == "job-1")
            #expect(outcome?.outcome == .refused)
            #expect(outcome?.status == 403)

            // Rejected by the platform: forwarded after the intent, then refused upstream.
            let record = try await caller.create(
                #"{"datasetId": "\#(SimulatorOptions.documentedRecordDataset)", "batchId": "b-1"}"#)
            #expect((400..<500).contains(record.status), "\(record.text)")
            (intent, outcome) = try Self.records(demo, requestId: record.header("x-request-id"))
            #expect(intent?.action == .createBatchDelete)
            #expect(outcome?.outcome == .rejected)
            #expect(outcome?.upstreamStatus == record.status)
            #expect(outcome?.problemType == "/problems/upstream-refused")
        }
    }

    /// The HTTP server refuses an oversized body before the gateway sees the request; it is still a deletion attempt.
    @Test func aDeletionTheServerRefusesItselfIsRecorded() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let huge = #"{"datasetId": "\#(String(repeating: "a", count: 70_000))"}"#
            let refused = try await caller.create(huge)
            try refused.expectProblem(status: 413, type: "/problems/body-too-large")

            let outcome = try await withDeadline(30) {
                while true {
                    if let found = try demo.auditRecords().first(where: {
                        $0.requestId == refused.header("x-request-id")
                    }) {
                        return found
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            #expect(outcome.event == .outcome)
            #expect(outcome.outcome == .refused)
            #expect(outcome.status == 413)
            #expect(outcome.action == .createDelete)
            #expect(outcome.orgId == DemoEnvironment.azureOrg)
            #expect(outcome.problemType == "/problems/body-too-large")
            #expect(jobCalls(demo.azure.receivedRequests, method: "POST").isEmpty)
        }
    }

    /// A DELETE of the collection is refused (405) and recorded, but names no job: `jobs` is not a job id.
    @Test func aRemovalOfTheCollectionNamesNoJob() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            for path in ["/v1/system/jobs", "/data/core/ups/system/jobs"] {
                let refused = try await caller.call("DELETE", path)
                #expect(refused.status == 405)
                let (intent, outcome) = try Self.records(demo, requestId: refused.header("x-request-id"))
                #expect(intent == nil)
                #expect(outcome?.action == .removeJob)
                #expect(outcome?.outcome == .refused)
                #expect(outcome != nil && outcome?.jobId == nil, "\(String(describing: outcome))")
            }
        }
    }

    @Test func whoAskedIsReadFromTheTokenButTheTokenIsNeverKept() async throws {
        try await withDemo { demo in
            var caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let claims = #"{"sub":"alice@example.com","client_id":"cleanup-tool","exp":1}"#
            let payload = Data(claims.utf8).base64EncodedString()
                .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_")
            let signature = "SIGNATURE-\(UUID().uuidString)"
            caller.token = "eyJhbGciOiJSUzI1NiJ9.\(payload).\(signature)"

            let created = try await caller.create(#"{"datasetId": "5c802d3cd83fc114b741c4b5"}"#)
            #expect(created.status == 201, "\(created.text)")
            let (intent, outcome) = try Self.records(demo, requestId: created.header("x-request-id"))
            for record in [intent, outcome] {
                #expect(record?.requester.subject == "alice@example.com")
                #expect(record?.requester.clientId == "cleanup-tool")
            }

            let file = try String(contentsOfFile: demo.configuration.audit.filePath, encoding: .utf8)
            #expect(!file.contains(signature))
            #expect(!file.contains(payload))
            #expect(file.contains(#""verified":false"#))
        }
    }

    @Test func theAuditEndpointAnswersWhoAskedForWhichDeletion() async throws {
        try await withDemo { demo in
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let first = try await caller.createDatasetDelete("dataset-one")
            _ = try await caller.createDatasetDelete("dataset-two")
            let jobId = try #require(first.string("id"))
            let client = RawHTTPClient(port: demo.gatewayPort)

            let byJob = try await client.sendOffPool("GET", "/v1/audit?jobId=\(jobId)")
            #expect(byJob.status == 200, "\(byJob.text)")
            let records = try byJob.jsonObject()["records"] as? [[String: Any]] ?? []
            // The outcome names the job; its intent, written before the job existed, comes with it.
            #expect(records.map { $0.string("event") } == ["outcome", "intent"])
            #expect(records.allSatisfy { $0.string("datasetId") == "dataset-one" })

            let byDataset = try await client.sendOffPool("GET", "/v1/audit?datasetId=dataset-two&limit=1")
            let limited = try byDataset.jsonObject()["records"] as? [[String: Any]] ?? []
            #expect(limited.count == 1)
            #expect(limited.first?.string("datasetId") == "dataset-two")

            let future = try await client.sendOffPool("GET", "/v1/audit?since=2999-01-01T00:00:00Z")
            #expect((try future.jsonObject()["records"] as? [Any])?.isEmpty == true)
            let byOrg = try await client.sendOffPool("GET", "/v1/audit?orgId=\(DemoEnvironment.awsOrg)")
            #expect((try byOrg.jsonObject()["records"] as? [Any])?.isEmpty == true)

            try await client.sendOffPool("GET", "/v1/audit?dataset=x").expectProblem(
                status: 400, type: "/problems/invalid-query")
            try await client.sendOffPool("GET", "/v1/audit?since=yesterday").expectProblem(
                status: 400, type: "/problems/invalid-query")
            for impossible in ["2026-02-30T07:55:00Z", "2026-12-03T24:00:00Z", "2026-13-01T00:00:00Z"] {
                try await client.sendOffPool("GET", "/v1/audit?until=" + impossible).expectProblem(
                    status: 400, type: "/problems/invalid-query")
            }
            let lowerCase = try await client.sendOffPool("GET", "/v1/audit?since=2999-01-01t00:00:00z")
            #expect((try lowerCase.jsonObject()["records"] as? [Any])?.isEmpty == true, "RFC 3339 allows t and z")
            try await client.sendOffPool("GET", "/v1/audit?limit=0").expectProblem(
                status: 400, type: "/problems/invalid-query")
            try await client.sendOffPool("DELETE", "/v1/audit").expectProblem(
                status: 405, type: "/problems/method-not-allowed")
        }
    }

    /// Every record of every kind of deletion, on both clouds, reaches a real rsyslog as well as the file.
    @Test func theTrailIsShippedToARealSyslogCollector() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("audit-ship-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let receiver = try await SyslogReceiver.started(in: scratch)
        defer { receiver.terminate() }

        let lines = try await withDemo(configure: {
            $0.audit.syslog = SyslogConfiguration(transport: .tcp, host: "127.0.0.1", port: receiver.tcpPort)
        }) { demo in
            for cloud in SimulatedCloud.allCases {
                let caller = GatewayCaller(demo, orgId: cloud.orgId)
                let created = try await caller.createDatasetDelete("5c802d3cd83fc114b741c4b5")
                let batch = try await caller.create(#"{"datasetId": "d-1", "batchId": "b-1"}"#)
                #expect(batch.status == 201)
                _ = try await caller.remove(try #require(created.string("id")))
            }
            let text = try String(contentsOfFile: demo.configuration.audit.filePath, encoding: .utf8)
            return text.split(separator: "\n").map(String.init)
        }

        let records = lines.compactMap { AuditRecord(json: Array($0.utf8)) }
        // Per cloud: two creates with intent and outcome, and a removal (intent and outcome on Azure, a refusal on
        // AWS).
        #expect(records.count == 11, "\(lines)")
        for cloud in SimulatedCloud.allCases {
            let actions = records.filter { $0.cloud == cloud.rawValue }.map {
                "\($0.event.rawValue) \($0.action.rawValue)"
            }
            let removal = cloud == .azure ? ["intent remove-job", "outcome remove-job"] : ["outcome remove-job"]
            #expect(
                actions == [
                    "intent create-dataset-delete", "outcome create-dataset-delete", "intent create-batch-delete",
                    "outcome create-batch-delete",
                ] + removal)
        }

        let messages = try await receiver.waitForMessages(lines)
        #expect(messages.count == lines.count)
        for (message, record) in zip(messages, records) {
            #expect(message.appName == "profile-jobs-gateway")
            #expect(message.messageId == record.event.rawValue)
            #expect(message.facility == 16)
        }
    }

    /// The write-ahead rule: a deletion whose intent cannot be written is refused and never reaches the platform.
    @Test(arguments: SimulatedCloud.allCases)
    func anUnwritableTrailRefusesDeletionsWithoutForwardingThem(cloud: SimulatedCloud) async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("audit-full-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let full = scratch.appendingPathComponent("audit.jsonl")
        // Every write to /dev/full fails with ENOSPC: a full disk.
        try FileManager.default.createSymbolicLink(atPath: full.path, withDestinationPath: "/dev/full")
        let ready = try await withDemo(configure: { $0.audit.filePath = full.path }) { demo in
            try await RawHTTPClient(port: demo.gatewayPort).sendOffPool("GET", "/readyz").status
        }
        #expect(ready == 200, "nothing has failed yet")
        let capture = LogCapture()

        try await withDemo(logger: capture.logger, configure: { $0.audit.filePath = full.path }) { demo in
            let caller = GatewayCaller(demo, orgId: cloud.orgId)
            let created = try await caller.create(#"{"datasetId": "5c802d3cd83fc114b741c4b5"}"#)
            let problem = try created.expectProblem(status: 503, type: "/problems/audit-unavailable")
            #expect(created.header("Retry-After") == "5")
            #expect((problem.string("detail") ?? "").contains("nothing was sent"))

            let removal = try await caller.remove("job-1")
            if cloud == .azure {
                try removal.expectProblem(status: 503, type: "/problems/audit-unavailable")
            } else {
                try removal.expectProblem(status: 501, type: "/problems/operation-not-supported")
            }
            #expect(jobCalls(cloud.received(demo), method: "POST").isEmpty)
            #expect(jobCalls(cloud.received(demo), method: "DELETE").isEmpty)

            // Reading is not deletion traffic and goes on.
            #expect(try await caller.list().status == 200)

            let scrape = try await RawHTTPClient(port: demo.gatewayPort).sendOffPool("GET", "/metrics")
            #expect(scrape.text.contains(#"profile_jobs_gateway_audit_write_failures_total{sink="file"}"#))

            // After a failed write the instance says it is not ready, so a balancer sends deletions elsewhere.
            let readiness = try await RawHTTPClient(port: demo.gatewayPort).sendOffPool("GET", "/readyz")
            try readiness.expectProblem(status: 503, type: "/problems/not-ready")
        }
        #expect(capture.text.contains("audit intent not written; deletion refused"))
    }

    /// A deletion still in flight when the drain grace ends: the caller is told it may have happened, and the trail
    /// keeps one intent and one outcome for it, never a made-up refusal.
    @Test func aDeletionCutOffAtShutdownKeepsOneIntentAndOneOutcome() async throws {
        let upstream = ScriptedUpstream()
        upstream.answer(.init(stall: true))
        let upstreamServer = HTTPServer(handler: upstream)
        let upstreamPort = try upstreamServer.start()
        let demo = try DemoEnvironment(logger: quietLogger) { configuration in
            configuration.organizations["held@AdobeOrg"] = OrganizationRoute(
                orgId: "held@AdobeOrg", cloud: .azure, baseURL: "http://127.0.0.1:\(upstreamPort)")
        }
        defer { try? FileManager.default.removeItem(atPath: demo.configuration.audit.filePath) }

        let caller = GatewayCaller(demo, orgId: "held@AdobeOrg")
        let pending = Task { try await caller.create(#"{"datasetId": "held-dataset"}"#) }
        try await withDeadline(30) {
            while upstream.receivedRequests.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        }
        try await stopOffPool { demo.stop(grace: .milliseconds(200)) }
        let answer = try await pending.value
        let problem = try answer.expectProblem(status: 503, type: "/problems/interrupted")
        #expect((problem.string("detail") ?? "").contains("may have been carried out"))
        upstream.release()
        try await stopOffPool { upstreamServer.stop() }

        let records = try await withDeadline(30) {
            while true {
                let mine = try demo.auditRecords().filter { $0.datasetId == "held-dataset" }
                if mine.contains(where: { $0.event == .outcome }) { return mine }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(records.map(\.event) == [.intent, .outcome], "\(records)")
        #expect(Set(records.map(\.id)).count == 1)
        #expect(records.last?.outcome != .refused)
    }

    /// The gateway refuses to pass such values on, but the refusal still says who asked, as far as it can.
    @Test func oddCallerValuesAreRecordedNotDropped() async throws {
        try await withDemo { demo in
            let long = String(repeating: "k", count: 300)
            for apiKey in ["d\u{e9}mo\tclient", long] {
                let response = try await RawHTTPClient(port: demo.gatewayPort).sendOffPool(
                    "POST", "/v1/system/jobs",
                    headers: [
                        ("Authorization", "Bearer opaque-token"), ("x-api-key", apiKey),
                        ("x-gw-ims-org-id", DemoEnvironment.azureOrg), ("Content-Type", "application/json"),
                    ],
                    body: Array(#"{"datasetId": "odd-key-\#(apiKey.count)"}"#.utf8))
                try response.expectProblem(status: 400, type: "/problems/invalid-header")
                let (intent, outcome) = try Self.records(demo, requestId: response.header("x-request-id"))
                #expect(intent == nil)
                #expect(outcome?.outcome == .refused)
                let recorded = try #require(outcome?.requester.apiKey)
                if apiKey == long {
                    #expect(recorded.hasPrefix("kkkk") && recorded.hasSuffix("…") && recorded.utf8.count <= 256)
                } else {
                    #expect(recorded == apiKey)
                }
            }

            // A sandbox lookup that fails is not the platform's answer to a deletion.
            let aws = GatewayCaller(demo, orgId: DemoEnvironment.awsOrg)
            let lookup = try await aws.create(
                #"{"datasetId": "d-1"}"#, headers: [("x-sandbox-name", "nosuch")])
            #expect(lookup.status == 404, "\(lookup.text)")
            let (intent, outcome) = try Self.records(demo, requestId: lookup.header("x-request-id"))
            #expect(intent == nil)
            #expect(outcome?.outcome == .refused)
            #expect(outcome?.sandboxName == "nosuch")
            #expect(outcome?.upstreamStatus == nil)

            // A refused AWS removal still says which sandbox and job it named.
            let removal = try await aws.remove("job-7", headers: [("x-sandbox-name", "prod")])
            let refused = try Self.records(demo, requestId: removal.header("x-request-id")).outcome
            #expect(refused?.sandboxName == "prod")
            #expect(refused?.jobId == "job-7")
        }
    }

    @Test func oneGatewayPerAuditFileAndARemovedFileIsStartedAgain() async throws {
        try await withDemo { demo in
            let path = demo.configuration.audit.filePath
            #expect {
                try AuditTrail(configuration: AuditConfiguration(filePath: path), logger: quietLogger)
            } throws: { error in
                "\(error)".contains("another gateway process is writing to it")
            }

            try FileManager.default.removeItem(atPath: path)
            let caller = GatewayCaller(demo, orgId: DemoEnvironment.azureOrg)
            let created = try await caller.create(#"{"datasetId": "after-removal"}"#)
            #expect(created.status == 201)
            let (intent, outcome) = try Self.records(demo, requestId: created.header("x-request-id"))
            #expect(intent != nil && outcome != nil, "the records are in a new file at the path")

            let client = RawHTTPClient(port: demo.gatewayPort)
            try await client.sendOffPool("GET", "/v1/audit?datasetId=a&datasetId=b").expectProblem(
                status: 400, type: "/problems/invalid-query")
            #expect(try await client.sendOffPool("HEAD", "/healthz").status == 200)
        }
    }
}
