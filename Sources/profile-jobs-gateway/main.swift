import FoundationEssentials
import Glibc
import ProfileJobsGateway
import UpstreamSimulators

let usage = """
    Usage:
      profile-jobs-gateway demo [--port N] [--host ADDRESS] [--aws-list-shape array|paged]
          Starts simulated Azure and AWS platforms and the gateway in front of them (port 8080 by default).
          --aws-list-shape picks which documented AWS list answer the simulated AWS platform gives.
      profile-jobs-gateway serve --config FILE
          Runs the gateway against the upstreams the configuration file names.
    """

/// Blocks the stop signals on every thread, so the main thread can wait for them with sigwait.
func blockStopSignals() -> sigset_t {
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGINT)
    sigaddset(&signals, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &signals, nil)
    return signals
}

func waitForStopSignal(_ signals: sigset_t) -> Int32 {
    var signals = signals
    var received: Int32 = 0
    sigwait(&signals, &received)
    return received
}

/// Writes to standard output unbuffered, so the demo's guide shows at once even when piped.
func say(_ text: String, to descriptor: Int32 = 1) {
    let line = Array((text + "\n").utf8)
    _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    say(message, to: 2)
    exit(2)
}

func option(_ name: String, in arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: name) else { return nil }
    guard index + 1 < arguments.count else { fail("\(name) needs a value\n\n\(usage)") }
    return arguments[index + 1]
}

func runDemo(_ arguments: [String]) {
    let signals = blockStopSignals()
    let host = option("--host", in: arguments) ?? "127.0.0.1"
    var port: UInt16 = 8080
    if let text = option("--port", in: arguments) {
        guard let value = UInt16(text), value > 0 else { fail("--port must be a number from 1 to 65535") }
        port = value
    }

    var awsOptions = SimulatorOptions()
    if let text = option("--aws-list-shape", in: arguments) {
        guard let shape = AWSListShape(rawValue: text) else { fail("--aws-list-shape must be array or paged") }
        awsOptions.awsListShape = shape
    }

    let demo: DemoEnvironment
    do {
        demo = try DemoEnvironment(host: host, gatewayPort: port, awsOptions: awsOptions)
    } catch {
        fail("The demo could not start: \(error). Is port \(port) free? Try --port.")
    }
    say(DemoGuide.text(host: host, port: demo.gatewayPort, azurePort: demo.azurePort, awsPort: demo.awsPort))

    _ = waitForStopSignal(signals)
    say("Stopping: calls in flight may finish for up to \(GatewayServer.drainGrace.components.seconds) s.")
    demo.stop(grace: GatewayServer.drainGrace)
}

func runServe(_ arguments: [String]) {
    let signals = blockStopSignals()
    guard let path = option("--config", in: arguments) else { fail("serve needs --config FILE\n\n\(usage)") }
    guard let contents = FileManager.default.contents(atPath: path) else {
        fail("Cannot read the configuration file '\(path)'.")
    }

    let configuration: GatewayConfiguration
    do {
        configuration = try GatewayConfiguration.parse(Array(contents))
    } catch {
        fail("The configuration '\(path)' is not valid: \(error)")
    }

    let logger = Logger(label: "gateway")
    var transportConfiguration = CurlTransport.Configuration()
    transportConfiguration.caBundlePath = configuration.caBundlePath
    let transport: CurlTransport
    do {
        transport = try CurlTransport(configuration: transportConfiguration)
    } catch {
        fail("The upstream client could not start: \(error)")
    }
    let gateway = Gateway(configuration: configuration, transport: transport, logger: logger)
    let server = GatewayServer.make(configuration: configuration, gateway: gateway)
    do {
        try server.start()
    } catch {
        fail("The gateway could not start: \(error)")
    }
    logger.info(
        "listening",
        [
            ("listen.host", .string(configuration.host)), ("listen.port", .int(Int(server.port))),
            ("organizations", .int(configuration.organizations.count)),
        ])

    _ = waitForStopSignal(signals)
    logger.info("draining", [("grace.seconds", .int(Int(GatewayServer.drainGrace.components.seconds)))])
    server.stop(grace: GatewayServer.drainGrace)
    transport.shutdown()
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "demo": runDemo(Array(arguments.dropFirst()))
case "serve": runServe(Array(arguments.dropFirst()))
case "-h", "--help", "help": say(usage)
default: fail(usage)
}
