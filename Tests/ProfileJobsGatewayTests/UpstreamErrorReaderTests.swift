import Foundation
import Testing

@testable import ProfileJobsGateway

private func read(_ status: Int, _ body: String, requestIdHeader: String? = nil) -> UpstreamErrorDetail {
    var headers = HTTPHeaders([("Content-Type", "application/json")])
    if let requestIdHeader {
        headers.add("X-Request-Id", requestIdHeader)
    }
    return UpstreamErrorReader.read(status: status, headers: headers, body: Array(body.utf8))
}

@Suite("Upstream error reader")
struct UpstreamErrorReaderTests {
    @Test(arguments: [
        (
            "azure-record-batch.400.json", 400,
            UpstreamErrorDetail(
                status: 400,
                code: "500",
                message: "Batch can only be specified for EE type 'a294e36d382649dab2cc6ad64a41b674'",
                requestId: "bc4eb29f-63a8-4653-9133-71238884bb81"
            )
        ),
        (
            "batch-not-found.400.json", 400,
            UpstreamErrorDetail(
                status: 400,
                code: "400",
                message: "Batch not found for profile dataset '5da688d2b6eb381a7a2b9f0c'",
                requestId: "LlTmA2d7kQ"
            )
        ),
        (
            "invalid-payload.400.json", 400,
            UpstreamErrorDetail(status: 400, code: "400", message: "Invalid delete request (Profile System Job)")
        ),
        (
            "load-balancer.502.html", 502,
            UpstreamErrorDetail(status: 502, message: "502 Bad Gateway")
        ),
        (
            "problem-with-report.404.json", 404,
            UpstreamErrorDetail(
                status: 404,
                code: "XDM-1010-404",
                message: "The requested resource could not be found.",
                type: "http://ns.adobe.com/aep/errors/XDM-1010-404"
            )
        ),
        (
            "record-batch.422.json", 422,
            UpstreamErrorDetail(
                status: 422,
                code: "UPAPI-036002-422",
                message: "Invalid system job payload.",
                requestId: "5YrVbqD3iN0bT2l9e8kWq1xZ",
                type: "https://ns.adobe.com/aep/errors/UPAPI-036002-422"
            )
        ),
        (
            "token-invalid.401.json", 401,
            UpstreamErrorDetail(status: 401, code: "401013", message: "Oauth token is not valid")
        ),
        (
            "token-missing.403.json", 403,
            UpstreamErrorDetail(status: 403, code: "403010", message: "Oauth token is missing.")
        ),
        (
            "unsupported-media-type.415.json", 415,
            UpstreamErrorDetail(
                status: 415,
                message: "HTTP 415 Unsupported Media Type",
                type: "http://ns.adobe.com/adobecloud/problem/unsupported-media-type"
            )
        ),
        (
            "ups-both-spellings.422.json", 422,
            UpstreamErrorDetail(
                status: 422,
                code: "UPLIB-101221-404",
                message: "Merge policy not found",
                type: "http://ns.adobe.com/aep/errors/UPLIB-101221-404"
            )
        ),
    ])
    func readsEveryDocumentedErrorFixture(fixture: String, status: Int, expected: UpstreamErrorDetail) throws {
        let body = try DialectFixture.bytes("errors/\(fixture)")

        #expect(UpstreamErrorReader.read(status: status, headers: HTTPHeaders(), body: body) == expected)
    }

    @Test func headerRequestIdIsTheFallback() {
        let detail = read(
            401, #"{"error_code": "401013", "message": "Oauth token is not valid"}"#, requestIdHeader: "hdr-1")

        #expect(detail.requestId == "hdr-1")
    }

    @Test func bodyRequestIdWinsOverTheHeader() {
        let detail = read(
            422, #"{"title": "Invalid.", "status": 422, "requestId": "body-1"}"#, requestIdHeader: "hdr-1")

        #expect(detail.requestId == "body-1")
    }

    @Test func emptyBodyHasNoMessage() {
        let detail = read(503, "", requestIdHeader: "hdr-2")

        #expect(detail == UpstreamErrorDetail(status: 503, requestId: "hdr-2"))
    }

    @Test func whitespaceOnlyBodyHasNoMessage() {
        #expect(read(500, " \r\n\t ") == UpstreamErrorDetail(status: 500))
    }

    @Test func truncatedJSONBecomesACleanedPrefix() {
        let detail = read(500, "{\"error_code\": \"401013\",\n  \"mess")

        #expect(detail.message == #"{"error_code": "401013", "mess"#)
        #expect(detail.code == nil)
    }

    @Test func plainTextLosesControlCharactersAndIsCut() throws {
        let text = "upstream\u{0}\u{7} broke:\t" + String(repeating: "x", count: 300)
        let detail = read(500, text)

        let message = try #require(detail.message)
        #expect(message.hasPrefix("upstream broke: xxx"))
        #expect(message.count == 200)
        #expect(!message.unicodeScalars.contains { $0.properties.generalCategory == .control })
    }

    @Test func invalidUTF8IsDropped() {
        let body: [UInt8] = Array("bad ".utf8) + [0xFF, 0xFE] + Array("bytes".utf8)
        let detail = UpstreamErrorReader.read(status: 502, headers: HTTPHeaders(), body: body)

        #expect(detail.message == "bad bytes")
    }

    @Test func jsonThatIsNotAnObjectIsReadAsText() {
        #expect(read(500, #"["oops"]"#).message == #"["oops"]"#)
        #expect(read(500, #""oops""#).message == #""oops""#)
    }

    @Test func objectWithoutKnownFieldsHasNoMessage() {
        #expect(read(500, #"{"unexpected": {"deep": true}}"#) == UpstreamErrorDetail(status: 500))
    }

    @Test func htmlWithoutTitleGivesItsFirstText() {
        let page = "<html><body>\n<h1>Service\n   Unavailable</h1><p>Try &amp; retry</p></body></html>"

        #expect(read(503, page).message == "Service Unavailable Try & retry")
    }

    @Test func htmlTitleIsFoundInAnyCaseAndCut() {
        let title = String(repeating: "Gateway Timeout ", count: 20)
        let page = "<!DOCTYPE html>\n<HTML><HEAD><TITLE lang=\"en\">\n\(title)</TITLE></HEAD><BODY>x</BODY></HTML>"

        // The 200th character is a space, and a message never ends in one.
        #expect(read(504, page).message == String(title.prefix(199)))
    }

    @Test func htmlWithEmptyTitleFallsBackToText() {
        #expect(
            read(502, "<html><head><title> </title></head><body>Bad gateway</body></html>").message == "Bad gateway")
    }

    @Test func numericCodesBecomeText() {
        let detail = read(400, #"{"errors": {"400": [{"code": 1001, "message": "No."}]}}"#)

        #expect(detail.code == "1001")
        #expect(detail.message == "No.")
    }

    @Test func errorsEntryUnderTheAnsweredStatusIsPreferred() {
        let body = #"{"errors": {"400": [{"code": "a"}], "409": [{"code": "b"}], "500": [{"code": "c"}]}}"#

        #expect(read(409, body).code == "b")
    }

    @Test func errorsEntryUnderTheBodysStatusComesNext() {
        let body = #"{"status": 500, "errors": {"400": [{"code": "a"}], "500": [{"code": "c"}]}}"#

        #expect(read(502, body).code == "c")
    }

    @Test func errorsEntryUnderTheLowestKeyIsTheLastResort() {
        let body = #"{"errors": {"500": [{"code": "c"}], "400": [{"code": "a", "message": "A"}]}}"#

        #expect(read(502, body).code == "a")
        #expect(read(502, body).message == "A")
    }

    @Test func errorsAsAnArrayAreReadToo() {
        let detail = read(400, #"{"errors": [{"code": "E1", "message": "first"}, {"code": "E2"}]}"#)

        #expect(detail.code == "E1")
        #expect(detail.message == "first")
    }

    @Test func problemDetailFallsBackToTitle() {
        let detail = read(404, #"{"type": "https://example.com/not-found", "title": "Not here", "status": 404}"#)

        #expect(detail.message == "Not here")
        #expect(detail.code == nil)
        #expect(detail.type == "https://example.com/not-found")
    }

    @Test func reportedStatusIsTheHTTPStatusNotTheBodys() {
        let detail = read(400, #"{"status": 422, "statusCode": 422, "title": "x"}"#)

        #expect(detail.status == 400)
    }

    @Test(arguments: [
        ("https://ns.adobe.com/aep/errors/UPAPI-036002-422", "UPAPI-036002-422" as String?),
        ("http://ns.adobe.com/aep/errors/XDM-1010-404", "XDM-1010-404"),
        ("http://ns.adobe.com/adobecloud/problem/unsupported-media-type", nil),
        ("https://ns.adobe.com/aep/errors/UPAPI-036002", nil),
        ("https://ns.adobe.com/aep/errors/upapi-036002-422", nil),
        ("https://ns.adobe.com/aep/errors/", nil),
        ("about:blank", nil),
    ])
    func problemTypeCodes(type: String, code: String?) {
        #expect(ErrorBody.problemCode(type) == code)
    }
}

@Suite("Sandbox Management dialect")
struct SandboxManagementDialectTests {
    @Test func serviceTokensSeeTheSandboxId() throws {
        let sandbox = try SandboxManagementDialect.readSandbox(
            DialectFixture.bytes("sandbox/lookup-service-token.json"))

        #expect(sandbox == SandboxRef(name: "prod", id: "8129954b-fa83-43ba-a995-4bfa8373ba2b"))
    }

    @Test func userTokensSeeNoId() throws {
        let sandbox = try SandboxManagementDialect.readSandbox(DialectFixture.bytes("sandbox/lookup-user-token.json"))

        #expect(sandbox == SandboxRef(name: "prod", id: nil))
    }

    @Test(arguments: [
        (#"{"title": "Production", "id": "x"}"#, "name: missing"),
        (#"{"name": "prod", "id": 5}"#, "id: unexpected type"),
        (#"[{"name": "prod"}]"#, "expected a sandbox object, got an array"),
        ("<html><title>401</title></html>", "not JSON (looks like HTML)"),
        (#"{"name": "pr"#, "invalid JSON"),
        ("", "empty body"),
    ])
    func unreadableSandboxesAreMalformed(body: String, reason: String) {
        do {
            let sandbox = try SandboxManagementDialect.readSandbox(Array(body.utf8))
            Issue.record("read \(sandbox) from a malformed body")
        } catch {
            #expect(error.reason == reason)
        }
    }
}
