#if FUZZING
    import FoundationEssentials

    @testable import ProfileJobsGateway

    /// What one fuzz input exercises: its first byte picks a reader (modulo the count), the rest is what the reader
    /// gets.
    ///
    /// scripts/fuzz reads the raw values below, in this order, to name seed folders and prefix their files; a new
    /// reader goes at the end so existing corpora keep their meaning.
    enum Reader: String, CaseIterable {
        /// A request target: path, query decoding, the list, Azure-list and audit queries, cursors in the query.
        case target = "target"
        case json = "json"
        case azureJob = "azure-job"
        case azureList = "azure-list"
        case awsJob = "aws-job"
        case awsList = "aws-list"
        case sandbox = "sandbox"
        /// Two bytes of HTTP status (big-endian), then the upstream's error body.
        case upstreamError = "upstream-error"
        case configuration = "configuration"
        /// An audit file: records, one per line.
        case auditFile = "audit-file"
        /// The Content-Type header's value, a newline, then the create body.
        case createBody = "create-body"
        case cursor = "cursor"
        /// `name: value` lines: trace context, requester, request id.
        case headers = "headers"
        /// An upstream time stamp (RFC 3339, or whole epoch seconds).
        case time = "time"

        static func pick(_ byte: UInt8) -> Reader {
            allCases[Int(byte) % allCases.count]
        }

        func read(_ input: [UInt8]) {
            switch self {
            case .target: readTarget(input)
            case .json: readJSON(input)
            case .azureJob: readJob(input, cloud: .azure)
            case .azureList: readList(input, cloud: .azure)
            case .awsJob: readJob(input, cloud: .aws)
            case .awsList: readList(input, cloud: .aws)
            case .sandbox: readSandbox(input)
            case .upstreamError: readUpstreamError(input)
            case .configuration: readConfiguration(input)
            case .auditFile: readAuditFile(input)
            case .createBody: readCreateBody(input)
            case .cursor: readCursor(String(decoding: input, as: UTF8.self))
            case .headers: readHeaders(input)
            case .time: readTime(input)
            }
        }
    }

    // MARK: Properties every input must keep

    /// Stops the run, which libFuzzer reports as a crash with the input saved: a property every input keeps was broken.
    func require(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition {
            fatalError(message())
        }
    }

    /// Text of untrusted bytes short enough for a crash message.
    func excerpt(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: bytes.prefix(400), as: UTF8.self)
    }

    /// Every document the gateway writes must be JSON.
    func requireJSON(_ bytes: [UInt8], _ what: String) {
        require(JSONValue.parse(bytes) != nil, "\(what) is not valid JSON: \(excerpt(bytes))")
    }

    /// A refusal, whatever caused it, must still become a well-formed problem document.
    func requireProblem(_ error: GatewayError) {
        requireJSON(Gateway.problemResponse(error, requestId: "fuzz").body, "the problem document for \(error)")
    }

    // MARK: Readers

    func readTarget(_ input: [UInt8]) {
        let target = String(decoding: input, as: UTF8.self)
        let (path, query) = HTTPRequest.splitTarget(target[...])
        _ = Gateway.routeTemplate(path)
        _ = Gateway.isAzureSurface(path)

        // Decoding loses nothing the encoder cannot write again.
        let encoded = query.map { percentEncode($0.name) + "=" + percentEncode($0.value) }.joined(separator: "&")
        let again = HTTPRequest.splitTarget((path + "?" + encoded)[...])
        require(
            again.path == path && again.query.elementsEqual(query) { $0 == $1 },
            "the query of \(excerpt(input)) reads differently once re-encoded")

        let request = HTTPRequest(method: "GET", path: path, query: query)
        do {
            let jobQuery = try JobQuery.parse(request)
            _ = jobQuery.fingerprint
        } catch {
            requireProblem(error)
        }
        do {
            _ = try AzureListQuery(request)
        } catch {
            requireProblem(error)
        }
        do {
            _ = try Gateway.auditQuery(request)
        } catch {
            requireProblem(error)
        }

        for (name, value) in query where name == "cursor" {
            readCursor(value)
        }
    }

    func readJSON(_ input: [UInt8]) {
        guard let value = JSONValue.parse(input) else { return }

        var writer = JSONWriter()
        write(value, into: &writer)
        require(
            JSONValue.parse(writer.bytes) == value || !value.isFinite,
            "JSONWriter's copy of \(excerpt(input)) reads differently: \(excerpt(writer.bytes))")
    }

    /// The byte-level reader answers as JSONDecoder does for every body it takes, as every body type.
    func requireReadersAgree(_ input: [UInt8]) {
        requireReadersAgree(AzureJobBody.self, input)
        requireReadersAgree(AzureListBody.self, input)
        requireReadersAgree(AWSJobBody.self, input)
        requireReadersAgree([AWSJobBody].self, input)
        requireReadersAgree(AWSListBody.self, input)
        requireReadersAgree(SandboxBody.self, input)
    }

    /// Compared as descriptions, which show every field (NaN included, which `==` would not match).
    func requireReadersAgree<T: ScannableBody>(_ type: T.Type, _ input: [UInt8]) {
        guard let scanned = UpstreamJSON.scanned(T.self, from: input) else { return }
        let decoded: String
        do {
            decoded = String(describing: try UpstreamJSON.decodedByFoundation(T.self, from: input))
        } catch {
            decoded = "error: \(error.reason)"
        }
        require(
            String(describing: scanned) == decoded,
            "\(T.self) from \(excerpt(input)): the byte reader read \(scanned), JSONDecoder \(decoded)")
    }

    func readJob(_ input: [UInt8], cloud: Cloud) {
        requireReadersAgree(input)
        let job: SystemJob
        do {
            job = try cloud.dialect.readJob(input)
        } catch {
            return requireProblem(.upstreamMalformed(cloud: cloud, reason: error.reason))
        }

        requireJSON(CanonicalJSON.job(job), "the canonical job")
        requireAzureRoundTrip([job], from: cloud)
    }

    func readList(_ input: [UInt8], cloud: Cloud) {
        requireReadersAgree(input)
        let page: UpstreamJobPage
        do {
            page = try cloud.dialect.readList(input)
        } catch {
            return requireProblem(.upstreamMalformed(cloud: cloud, reason: error.reason))
        }

        requireJSON(CanonicalJSON.list(page.jobs, limit: 20, next: page.next, total: page.total), "the canonical list")
        requireAzureRoundTrip(page.jobs, from: cloud)
        orderEveryWay(page.jobs)

        // The Azure surface's list reads back with the paging it was written with.
        let count = page.total ?? page.jobs.count
        let written = AzureDialect.writeList(page.jobs, count: count, next: page.next)
        if let again = try? AzureDialect.readList(written) {
            require(
                again.next == page.next && again.total == count && again.jobs.map(\.id) == page.jobs.map(\.id),
                "the list \(excerpt(input)) reads differently once the Azure surface writes it")
        }
    }

    func readSandbox(_ input: [UInt8]) {
        requireReadersAgree(input)
        do {
            let sandbox = try SandboxManagementDialect.readSandbox(input)
            require(
                sandbox.name.map { !$0.isEmpty } ?? false, "a sandbox without a name was read from \(excerpt(input))")
        } catch {
            requireProblem(.upstreamMalformed(cloud: .aws, reason: error.reason))
        }
    }

    func readUpstreamError(_ input: [UInt8]) {
        guard input.count >= 2 else { return }
        let status = Int(input[0]) << 8 | Int(input[1])
        let body = Array(input.dropFirst(2))

        let detail = UpstreamErrorReader.read(
            status: status, headers: HTTPHeaders([("x-request-id", "fuzz-upstream")]), body: body)
        require(detail.status == status, "the status \(status) was read as \(detail.status)")
        require(
            (detail.message?.unicodeScalars.count ?? 0) <= UpstreamErrorReader.jsonMessageLimit,
            "a message longer than the limit was read from \(excerpt(body))")

        for error in [
            GatewayError.upstreamRefused(cloud: .azure, detail), .upstreamFailed(cloud: .aws, detail),
            .upstreamUnavailable(cloud: .azure, detail, retryAfter: 5),
            .sandboxLookupRefused(cloud: .aws, sandbox: "prod", detail),
        ] {
            requireProblem(error)
        }
    }

    func readConfiguration(_ input: [UInt8]) {
        do {
            let configuration = try GatewayConfiguration.parse(input)
            require(!configuration.organizations.isEmpty, "a configuration without organizations was accepted")
        } catch {
            require(!error.description.isEmpty, "a configuration was refused without saying why")
        }
    }

    func readAuditFile(_ input: [UInt8]) {
        let records = AuditTrail.records(in: input)
        _ = AuditTrail.orphans(in: records)

        for record in records {
            let line = record.json
            require(!line.contains(10), "an audit record was written over more than one line: \(excerpt(line))")
            guard let again = AuditRecord(json: line) else {
                fatalError("the audit line \(excerpt(line)) the gateway wrote does not read back")
            }
            // Times are written to the millisecond, so only a record read from the gateway's own line reads back equal.
            require(AuditRecord(json: again.json) == again, "the audit line \(excerpt(line)) reads back differently")
        }
    }

    func readCreateBody(_ input: [UInt8]) {
        let newline = input.firstIndex(of: 10) ?? input.endIndex
        let contentType = String(decoding: input[..<newline], as: UTF8.self)
        let body = Array(input[min(newline + 1, input.endIndex)...])

        let deletion: DeleteRequest
        do {
            deletion = try Gateway.readDeleteRequest(createRequest(contentType: contentType, body: body))
        } catch {
            return requireProblem(error)
        }

        // What the gateway forwards says what the caller asked, on either cloud.
        for cloud in Cloud.allCases {
            let written = cloud.dialect.writeCreateBody(deletion)
            let again = try? Gateway.readDeleteRequest(createRequest(contentType: "application/json", body: written))
            require(again == deletion, "the \(cloud) create body \(excerpt(written)) does not say \(deletion)")
        }
    }

    func readCursor(_ text: String) {
        if let walk = ListCursor(encoded: text) {
            require(GatewayLimits.pageSizes.contains(walk.limit), "a walk cursor with limit \(walk.limit) was accepted")
            require(ListCursor(encoded: walk.encoded) == walk, "the walk cursor \(text) reads differently once written")
        }
        if let position = ListPosition(encoded: text) {
            require(
                ListPosition(encoded: position.encoded) == position, "the cursor \(text) reads differently once written"
            )
        }
    }

    func readHeaders(_ input: [UInt8]) {
        var headers = HTTPHeaders()
        for line in String(decoding: input, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            headers.add(String(parts[0]), parts.count > 1 ? String(parts[1].drop { $0 == " " }) : "")
        }

        let trace = TraceContext(headers)
        require(TraceContext.isWellFormed(trace.traceparent), "the traceparent \(trace.traceparent) is malformed")
        require(trace.traceId.utf8.count == 32, "the trace id of \(trace.traceparent) is not 32 digits")
        // What is passed upstream reads as the same context.
        var passedOn = HTTPHeaders([("traceparent", trace.traceparent)])
        if let state = trace.tracestate {
            passedOn.add("tracestate", state)
        }
        require(TraceContext(passedOn) == trace, "the trace context \(trace) reads differently once passed on")

        // Odd values are kept (JSON escaping makes them safe in a record), but never empty and never over 256 bytes.
        let requester = AuditRecord.Requester(headers)
        for value in [requester.apiKey, requester.subject, requester.clientId] {
            require(
                value.map { !$0.isEmpty && $0.utf8.count <= 256 } ?? true,
                "the requester keeps an empty or long value: \(requester)")
        }

        let requestId = Gateway.requestId(from: headers)
        require(!requestId.isEmpty && requestId.utf8.count <= 128, "the request id \(requestId) is unusable")
    }

    func readTime(_ input: [UInt8]) {
        let text = String(decoding: input, as: UTF8.self)
        _ = orderingTime(text)
        if let seconds = Int(text) {
            _ = try? UpstreamTime.fromEpoch(seconds)
        }

        guard let normal = try? UpstreamTime.normalise(text) else { return }
        require((try? UpstreamTime.normalise(normal)) == normal, "normalising \(text) twice changes it")
        guard let epoch = UpstreamTime.toEpoch(normal), let stamp = RFC3339Stamp(Array(normal.utf8)) else {
            fatalError("\(text) normalises to \(normal), which cannot be read back")
        }
        // A leap second has no epoch second of its own; every other time survives the trip through Azure's epoch.
        if stamp.second != 60 {
            let whole = String(normal.prefix(19)) + "Z"
            require(
                (try? UpstreamTime.fromEpoch(epoch)) == whole, "\(normal) is epoch \(epoch), which reads differently")
        }
    }

    // MARK: Helpers

    /// The Azure surface writes every job in Azure's dialect, whichever cloud it came from; Azure's reader must take it
    /// back as the same job (to the second, for AWS's sub-second times).
    func requireAzureRoundTrip(_ jobs: [SystemJob], from cloud: Cloud) {
        for job in jobs {
            let written = AzureDialect.writeJob(job)
            let again: SystemJob
            do {
                again = try AzureDialect.readJob(written)
            } catch {
                fatalError("the Azure surface wrote \(excerpt(written)), which Azure's reader refuses: \(error.reason)")
            }

            var same =
                again.id == job.id && again.orgId == job.orgId && again.datasetId == job.datasetId
                && again.batchId == job.batchId && again.status == job.status
                && finite(again.metrics) == finite(job.metrics)
            if cloud == .azure {
                same =
                    same && again.type == job.type && again.createdAt == job.createdAt
                    && again.updatedAt == job.updatedAt
            }
            require(same, "the Azure surface wrote \(job) as \(excerpt(written)), which reads as \(again)")
        }
    }

    /// Figures the writer can express: non-finite ones are written as nothing.
    func finite(_ metrics: JobMetrics?) -> JobMetrics? {
        let records = metrics?.recordsProcessed.flatMap { $0.isFinite ? $0 : nil }
        let seconds = metrics?.durationSeconds.flatMap { $0.isFinite ? $0 : nil }
        guard records != nil || seconds != nil else { return nil }
        return JobMetrics(recordsProcessed: records, durationSeconds: seconds)
    }

    /// The orders the gateway sorts pages in, and the cursor boundary after each.
    func orderEveryWay(_ jobs: [SystemJob]) {
        for field in [JobQuery.SortField.createdAt, .updatedAt] {
            for ascending in [false, true] {
                var query = JobQuery()
                query.sortField = field
                query.ascending = ascending
                let sorted = jobs.filter(query.matches).sorted(by: query.precedes)
                _ = ListCursor.Boundary.after(sorted, previous: nil) { orderingTime($0.createdAt) }
            }
        }
        _ = jobs.sorted(by: SystemJob.newestFirst)
    }

    func createRequest(contentType: String, body: [UInt8]) -> HTTPRequest {
        HTTPRequest(
            method: "POST", path: "/v1/system/jobs", headers: HTTPHeaders([("Content-Type", contentType)]), body: body)
    }

    func write(_ value: JSONValue, into writer: inout JSONWriter) {
        switch value {
        case .null: writer.null()
        case .bool(let flag): writer.bool(flag)
        case .number(let number): writer.number(number)
        case .string(let text): writer.string(text)
        case .array(let elements):
            writer.beginArray()
            for element in elements {
                write(element, into: &writer)
            }
            writer.endArray()
        case .object(let fields):
            writer.beginObject()
            for (key, field) in fields {
                writer.key(key)
                write(field, into: &writer)
            }
            writer.endObject()
        }
    }

    extension JSONValue {
        /// Whether every number in it is finite, which is what JSONWriter can write as a number.
        var isFinite: Bool {
            switch self {
            case .null, .bool, .string: true
            case .number(let number): number.isFinite
            case .array(let elements): elements.allSatisfy(\.isFinite)
            case .object(let fields): fields.values.allSatisfy(\.isFinite)
            }
        }
    }
#endif
