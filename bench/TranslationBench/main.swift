import FoundationEssentials
import ProfileJobsGateway

#if canImport(Glibc)
    import Glibc
#endif

/// The documented single-job answers of each cloud, as the upstream sends them for GET /system/jobs/{id}.
let documents: [(name: String, cloud: Cloud, body: [UInt8])] = [
    (
        "azure get", .azure,
        Array(
            """
            {
              "id": "9c2018e2-cd04-46a4-b38e-89ef7b1fcdf4",
              "imsOrgId": "{ORG_ID}",
              "batchId": "8d075b5a178e48389126b9289dcfd0ac",
              "jobType": "DELETE",
              "status": "COMPLETED",
              "metrics": "{\\"recordsProcessed\\":5,\\"timeTakenInSec\\":1}",
              "createEpoch": 1559026134,
              "updateEpoch": 1559026137
            }
            """.utf8)
    ),
    (
        "aws get", .aws,
        Array(
            """
            {
              "requestId": "9c2018e2-cd04-46a4-b38e-89ef7b1fcdf4",
              "requestType": "DELETE_EE_BATCH",
              "imsOrgId": "{ORG_ID}",
              "sandbox": {
                "sandboxName": "prod",
                "sandboxId": "8129954b-fa83-43ba-a995-4bfa8373ba2b"
              },
              "status": "SUCCESS",
              "properties": {
                "batchId": "01JFSYFDFW9JAAEKHX672JMPSB",
                "datasetId": "66a92c5910df2d1767de13f3"
              },
              "createdAt": "2024-12-22T19:44:50.250006Z",
              "updatedAt": "2024-12-22T19:52:13.380706Z"
            }
            """.utf8)
    ),
]

/// Seconds on the monotonic clock, which no clock adjustment can move during a measurement.
func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// One translation as the gateway does it for a GET: read the upstream's dialect, write the canonical job.
@inline(never)
func translate(_ body: [UInt8], cloud: Cloud) -> Int {
    guard let job = try? cloud.dialect.readJob(body) else { return -1 }
    return CanonicalJSON.job(job).count
}

let arguments = CommandLine.arguments.dropFirst()
/// Callgrind runs want a fixed, small count (instructions per document are then total / count); a timing wants more.
let iterations = arguments.first.flatMap { Int($0) } ?? 100_000

var checksum = 0
for document in documents {
    guard translate(document.body, cloud: document.cloud) > 0 else {
        print("\(document.name): the document does not translate")
        exit(1)
    }
    // Warm-up, so caches and lazily made tables are not counted.
    for _ in 0..<min(iterations, 1_000) {
        checksum &+= translate(document.body, cloud: document.cloud)
    }

    let start = now()
    for _ in 0..<iterations {
        checksum &+= translate(document.body, cloud: document.cloud)
    }
    let microseconds = (now() - start) * 1e6 / Double(iterations)
    let perDocument = (microseconds * 100).rounded() / 100
    print("\(document.name): \(document.body.count) bytes, \(perDocument) us/doc over \(iterations) documents")
}
print("checksum \(checksum)")
