#if FUZZING
    import Glibc

    /// libFuzzer calls this once per input; scripts/fuzz builds with `-sanitize=fuzzer`, which links libFuzzer in.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        guard let data, size > 0 else { return 0 }
        let input = Array(UnsafeBufferPointer(start: data, count: size))

        Reader.pick(input[0]).read(Array(input.dropFirst()))
        return 0
    }

    /// libFuzzer's driver, which its own `main` would run; SwiftPM points `main` at this target's entry point instead.
    @_silgen_name("LLVMFuzzerRunDriver")
    func runLibFuzzer(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt
#endif

@main
enum GatewayFuzz {
    static func main() {
        #if FUZZING
            var argc = CommandLine.argc
            var argv = CommandLine.unsafeArgv
            exit(runLibFuzzer(&argc, &argv, fuzzOneInput))
        #else
            // Without libFuzzer nothing would drive the readers, so the plain build is a stub that says how to fuzz.
            print("GatewayFuzz is a libFuzzer target: scripts/fuzz [SECONDS] builds and runs it.")
        #endif
    }
}
