import Testing

@testable import ProfileJobsGateway

/// Inputs scripts/fuzz found to crash a reader, fed to the same reader so they stay fixed.
@Suite("Fuzzing: inputs that once crashed a reader")
struct FuzzRegressionTests {
    /// The most negative epochs overflowed while the seconds were split off, a trap that ended the whole gateway.
    @Test(arguments: [Int.min, Int.min + 7])
    func mostNegativeEpochsAreOutsideTheYears(seconds: Int) {
        #expect(throws: MalformedUpstreamBody.self) { try UpstreamTime.fromEpoch(seconds) }
    }

    /// The same overflow reached from an Azure answer: a malformed body, not a crash.
    @Test func azureJobWithTheMostNegativeEpochIsMalformed() {
        let body = Array(#"{"id": "j1", "createEpoch": -9223372036854775808}"#.utf8)

        #expect(
            throws: MalformedUpstreamBody(
                reason: "createEpoch: epoch -9223372036854775808 is outside the years 0000-9999")
        ) {
            try AzureDialect.readJob(body)
        }
    }
}
