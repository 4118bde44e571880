import FoundationEssentials
import ProfileJobsGateway

/// Every refusal a simulated platform can give, each written in the shape the documentation shows for it.
///
/// Where the documentation gives a body (`Fixtures/errors/`), the shape is that body's; the `type` URIs of refusals
/// the documentation does not show (unknown sandbox, bad query, duplicate) are the simulator's own.
enum PlatformError: Error, Sendable, Equatable {
    /// Adobe's API gateway: no `Authorization` header.
    case tokenMissing
    /// Adobe's API gateway: not `Bearer <token>`, or a token the simulator treats as bad (starts with `invalid`).
    case tokenInvalid
    case apiKeyMissing
    case orgMissing
    /// No such path, job or sandbox; the text says which.
    case notFound(String)
    case methodNotAllowed(allowed: [String], detail: String?)
    case unsupportedMediaType
    case invalidPayload
    /// AWS deployments need `x-sandbox-id`; a name alone is not enough.
    case sandboxIdRequired
    case unknownSandbox(String)
    /// Azure's answer to a batch delete on a record dataset: 400 whose inner code says 500.
    case azureRecordBatch(datasetId: String)
    /// AWS's (and newer docs') answer to the same: 422 problem.
    case awsRecordBatch
    /// The dataset (or, for a batch named alone, the batch) the unknown batch was looked for in.
    case batchNotFound(String)
    case duplicate(DeleteTarget)
    /// A list query value Azure refuses, in Azure's error shape.
    case azureInvalidQuery(String)
    /// A list query value AWS refuses, in AWS's problem shape.
    case awsInvalidQuery(String)

    /// The answer, with a fresh request id (in the body where the shape has one, and as `x-request-id`) and the
    /// report stamped at `now`.
    func response(at now: Double) -> HTTPResponse {
        let requestId = UUID().uuidString.lowercased()
        var response = body(requestId: requestId, at: now)
        response.headers.set("x-request-id", requestId)
        return response
    }

    private func body(requestId: String, at now: Double) -> HTTPResponse {
        switch self {
        case .tokenMissing:
            return gateway(403, code: "403010", message: "Oauth token is missing.")
        case .tokenInvalid:
            return gateway(401, code: "401013", message: "Oauth token is not valid")
        case .apiKeyMissing:
            return gateway(403, code: "403000", message: "Api Key is required")
        case .orgMissing:
            return gateway(400, code: "400003", message: "Missing header: x-gw-ims-org-id")

        case .notFound(let detail):
            return problemWithReport(
                404, type: "http://ns.adobe.com/aep/errors/XDM-1010-404", title: "Resource not found", detail: detail,
                at: now)
        case .unknownSandbox(let detail):
            return problemWithReport(
                403, type: "http://ns.adobe.com/aep/errors/UPAPI-036403-403", title: "Sandbox not found",
                detail: "Sandbox \(detail) does not exist or is not accessible to this organization.", at: now)

        case .methodNotAllowed(let allowed, let detail):
            var response = mediaProblem(
                405, title: "HTTP 405 Method Not Allowed",
                type: "http://ns.adobe.com/adobecloud/problem/method-not-allowed",
                detail: detail)
            response.headers.add("Allow", allowed.joined(separator: ", "))
            return response
        case .unsupportedMediaType:
            return mediaProblem(
                415, title: "HTTP 415 Unsupported Media Type",
                type: "http://ns.adobe.com/adobecloud/problem/unsupported-media-type", detail: nil)

        case .invalidPayload:
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("code", "400")
            writer.field("message", "Invalid delete request (Profile System Job)")
            writer.endObject()
            return .json(400, writer.bytes)

        case .sandboxIdRequired:
            return upapiProblem(
                400, code: "UPAPI-036400-400", title: "Missing sandbox id.", requestId: requestId,
                detail: "The x-sandbox-id header is required on this deployment; x-sandbox-name is not enough.")
        case .awsRecordBatch:
            return upapiProblem(
                422, code: "UPAPI-036002-422", title: "Invalid system job payload.", requestId: requestId, detail: nil)
        case .duplicate(let target):
            return upapiProblem(
                422, code: "UPAPI-036003-422", title: "Delete request for \(target.label) already exists.",
                requestId: requestId, detail: nil)
        case .awsInvalidQuery(let detail):
            return upapiProblem(
                400, code: "UPAPI-036004-400", title: "Invalid query parameter.", requestId: requestId, detail: detail)

        case .azureRecordBatch(let datasetId):
            return serviceErrors(
                400, code: "500", message: "Batch can only be specified for EE type '\(datasetId)'",
                requestId: requestId)
        case .batchNotFound(let datasetId):
            return serviceErrors(
                400, code: "400", message: "Batch not found for profile dataset '\(datasetId)'", requestId: requestId)
        case .azureInvalidQuery(let message):
            return serviceErrors(400, code: "400", message: message, requestId: requestId)
        }
    }

    /// `{"error_code", "message"}`, as Adobe's API gateway answers before the service sees the call.
    private func gateway(_ status: Int, code: String, message: String) -> HTTPResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("error_code", code)
        writer.field("message", message)
        writer.endObject()
        return .json(status, writer.bytes)
    }

    /// `{"type", "title", "status", "report", "detail"}`, like `problem-with-report.404.json`.
    private func problemWithReport(_ status: Int, type: String, title: String, detail: String, at now: Double)
        -> HTTPResponse
    {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("type", type)
        writer.field("title", title)
        writer.field("status", status)
        writer.key("report")
        writer.beginObject()
        writer.field("registryRequestId", UUID().uuidString.lowercased())
        writer.field("timestamp", Timestamp.report(now))
        writer.field("detailed-message", detail)
        writer.key("sub-errors")
        writer.beginArray()
        writer.endArray()
        writer.endObject()
        writer.field("detail", detail)
        writer.endObject()
        return .json(status, writer.bytes)
    }

    /// `{"status", "title", "type"}`, like `unsupported-media-type.415.json`, with a `detail` when there is more to say.
    private func mediaProblem(_ status: Int, title: String, type: String, detail: String?) -> HTTPResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("status", status)
        writer.field("title", title)
        writer.field("type", type)
        if let detail {
            writer.field("detail", detail)
        }
        writer.endObject()
        return .json(status, writer.bytes)
    }

    /// `{"type", "title", "status", "requestId"}`, like `record-batch.422.json`, with a `detail` when useful.
    private func upapiProblem(_ status: Int, code: String, title: String, requestId: String, detail: String?)
        -> HTTPResponse
    {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("type", "https://ns.adobe.com/aep/errors/\(code)")
        writer.field("title", title)
        writer.field("status", status)
        writer.field("requestId", requestId)
        if let detail {
            writer.field("detail", detail)
        }
        writer.endObject()
        return .json(status, writer.bytes)
    }

    /// `{"requestId", "errors": {"<status>": [{"code", "message"}]}}`, like `batch-not-found.400.json`.
    private func serviceErrors(_ status: Int, code: String, message: String, requestId: String) -> HTTPResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("requestId", requestId)
        writer.key("errors")
        writer.beginObject()
        writer.key(String(status))
        writer.beginArray()
        writer.beginObject()
        writer.field("code", code)
        writer.field("message", message)
        writer.endObject()
        writer.endArray()
        writer.endObject()
        writer.endObject()
        return .json(status, writer.bytes)
    }
}
