import FoundationEssentials
import Glibc
import ProfileJobsGateway
import UpstreamSimulators

let usage = """
    Usage:
      profile-jobs-gateway demo [--port N] [--host ADDRESS] [--aws-list-shape array|paged] [--audit-file PATH]
          Starts simulated Azure and AWS platforms and the gateway in front of them (port 8080 by default).
          --aws-list-shape picks which documented AWS list answer the simulated AWS platform gives.
          --audit-file sets where deletions are recorded (~/.local/state/profile-jobs-gateway/demo-audit.jsonl
          by default).
      profile-jobs-gateway serve --config FILE
          Runs the gateway against the upstreams the configuration file names.
      profile-jobs-gateway check-config --config FILE
          Reads the configuration file as serve does; exits 0 when it is valid, 2 with the reason when not.
      profile-jobs-gateway healthcheck [--config FILE] [--host ADDRESS] [--port N] [--path /healthz]
          Asks a running gateway's /healthz (at the configuration's listen address, else 127.0.0.1:8080); exits 0
          when it answers 200 and 1 otherwise, for container health checks.
      profile-jobs-gateway simulate [--host ADDRESS] [--azure-port N] [--aws-port N] [--aws-list-shape array|paged]
          Starts only the simulated Azure and AWS platforms (free ports unless given) and prints their addresses
          as one JSON line, for soak and benchmark runs that put a gateway of their own in front.
    SIGHUP reopens the audit file (after logrotate moved it) and, for serve, reloads the configuration file: routing,
    sandboxes and timeouts change for new calls, a file that is not valid is refused and the running one stays.
    SIGINT or SIGTERM stops, letting calls finish.
    """

/// Blocks the stop and reopen signals on every thread, so the main thread can wait for them with sigwait.
func blockSignals() -> sigset_t {
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGINT)
    sigaddset(&signals, SIGTERM)
    sigaddset(&signals, SIGHUP)
    pthread_sigmask(SIG_BLOCK, &signals, nil)
    return signals
}

/// Waits for SIGINT or SIGTERM; each SIGHUP on the way reopens the audit file, then runs `onHangUp`.
func waitForStopSignal(_ signals: sigset_t, audit: AuditTrail, logger: Logger, onHangUp: () -> Void = {}) {
    var signals = signals
    while true {
        var received: Int32 = 0
        sigwait(&signals, &received)
        guard received == SIGHUP else { return }
        do {
            if try audit.reopen() {
                logger.info("audit file reopened")
            } else {
                logger.info("audit file still at its path; kept open")
            }
        } catch {
            logger.error("audit file not reopened", [("error", .string(error.description))])
        }
        onHangUp()
    }
}

/// Opens the trail, naming the file in the error, and tells the operator about deletions left without outcome.
func openAudit(_ configuration: AuditConfiguration, metrics: GatewayMetrics, logger: Logger) -> AuditTrail {
    let audit: AuditTrail
    do {
        audit = try AuditTrail(
            configuration: configuration, logger: logger,
            onWrite: { sink, succeeded in metrics.auditWrite(sink: sink, succeeded: succeeded) })
    } catch {
        fail("The audit trail could not be opened: \(error)")
    }
    if !audit.recoveredOrphans.isEmpty {
        logger.warning(
            "deletions with unknown outcome found in the audit trail",
            [("count", .int(audit.recoveredOrphans.count)), ("audit.file", .string(configuration.filePath))])
    }
    return audit
}

/// Writes to standard output unbuffered, so the demo's guide shows at once even when piped.
func say(_ text: String, to descriptor: Int32 = 1) {
    let line = Array((text + "\n").utf8)
    _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
}

/// Why a configuration file could not be used, in words for the operator.
struct ConfigurationProblem: Error {
    var message: String
}

/// Reads and checks a configuration file; the file's bytes are gone by the time a caller ends the process over it.
func readConfiguration(at path: String) -> Result<GatewayConfiguration, ConfigurationProblem> {
    guard let contents = FileManager.default.contents(atPath: path) else {
        return .failure(ConfigurationProblem(message: "Cannot read the configuration file '\(path)'."))
    }
    do {
        return .success(try GatewayConfiguration.parse(Array(contents)))
    } catch {
        return .failure(ConfigurationProblem(message: "The configuration '\(path)' is not valid: \(error)"))
    }
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

/// The demo's trail lives in the user's own state directory, not a shared temporary one where another user could
/// plant a symlink; it stays across runs, so a demo killed mid-deletion reports it at the next start.
func defaultDemoAuditFile() -> String {
    let environment = ProcessInfo.processInfo.environment
    let state =
        environment["XDG_STATE_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        ?? environment["HOME"].map { $0 + "/.local/state" }
        ?? FileManager.default.temporaryDirectory.appendingPathComponent("profile-jobs-gateway-\(getuid())").path
    return state + "/profile-jobs-gateway/demo-audit.jsonl"
}

func runDemo(_ arguments: [String]) {
    let signals = blockSignals()
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

    let auditFile = option("--audit-file", in: arguments) ?? defaultDemoAuditFile()

    let logger = Logger(label: "gateway")
    let demo: DemoEnvironment
    do {
        demo = try DemoEnvironment(
            host: host, gatewayPort: port, awsOptions: awsOptions, auditFile: auditFile, logger: logger)
    } catch let error as AuditWriteError {
        fail("The demo could not open its audit trail: \(error). Choose another file with --audit-file.")
    } catch {
        fail("The demo could not start: \(error). Is port \(port) free? Try --port.")
    }
    say(
        DemoGuide.text(
            host: host, port: demo.gatewayPort, azurePort: demo.azurePort, awsPort: demo.awsPort,
            auditFile: auditFile))
    if !demo.audit.recoveredOrphans.isEmpty {
        say(
            "The audit trail held \(demo.audit.recoveredOrphans.count) deletion(s) whose outcome is unknown; see the log."
        )
    }

    waitForStopSignal(signals, audit: demo.audit, logger: logger)
    let grace = GatewayServer.drainGrace(demo.configuration)
    say("Stopping: calls in flight may finish for up to \(grace.components.seconds) s.")
    demo.stop(grace: grace)
}

func port(_ name: String, in arguments: [String]) -> UInt16 {
    guard let text = option(name, in: arguments) else { return 0 }
    guard let value = UInt16(text), value > 0 else { fail("\(name) must be a number from 1 to 65535") }
    return value
}

func runSimulate(_ arguments: [String]) {
    let signals = blockSignals()
    let host = option("--host", in: arguments) ?? "127.0.0.1"
    var awsOptions = SimulatorOptions()
    if let text = option("--aws-list-shape", in: arguments) {
        guard let shape = AWSListShape(rawValue: text) else { fail("--aws-list-shape must be array or paged") }
        awsOptions.awsListShape = shape
    }

    let platforms: SimulatedPlatforms
    do {
        platforms = try SimulatedPlatforms(
            host: host, azurePort: port("--azure-port", in: arguments), awsPort: port("--aws-port", in: arguments),
            awsOptions: awsOptions)
    } catch {
        fail("The simulators could not start: \(error)")
    }
    say(
        #"{"azure": "\#(platforms.azureURL)", "aws": "\#(platforms.awsURL)", "#
            + #""organizations": {"azure": "\#(DemoEnvironment.azureOrg)", "aws": "\#(DemoEnvironment.awsOrg)"}}"#)

    var waiting = signals
    var received: Int32 = 0
    repeat {
        sigwait(&waiting, &received)
    } while received == SIGHUP
    platforms.stop()
}

/// The configuration file named by `--config`, or the end of the process with the reason.
func configuration(for command: String, _ arguments: [String]) -> (path: String, GatewayConfiguration) {
    guard let path = option("--config", in: arguments) else { fail("\(command) needs --config FILE\n\n\(usage)") }
    switch readConfiguration(at: path) {
    case .success(let configuration): return (path, configuration)
    case .failure(let problem): fail(problem.message)
    }
}

/// Also says how long a stop may take, which a service manager's stop timeout must exceed.
func runCheckConfig(_ arguments: [String]) {
    let (path, configuration) = configuration(for: "check-config", arguments)
    let delay = configuration.shutdownReadinessDelaySeconds
    let drain = Double(GatewayServer.drainGrace(configuration).components.seconds)
    let summary =
        "The configuration '\(path)' is valid: \(configuration.organizations.count) organization(s), listening on "
        + "\(configuration.host) port \(configuration.port), audit file \(configuration.audit.filePath)."
    let stop =
        "A stop takes up to \(seconds(delay + drain)) s (readiness delay \(seconds(delay)) s, drain up to "
        + "\(seconds(drain)) s)."
    say(summary + " " + stop)
}

/// Whole seconds without a fraction, others as they are.
func seconds(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
}

/// Exits 0 when the gateway answers 200, 1 otherwise (the exit codes container health checks read).
func runHealthCheck(_ arguments: [String]) -> Never {
    var host = "127.0.0.1"
    var listening: UInt16 = 8080
    if let path = option("--config", in: arguments) {
        // Container engines read exit codes other than 0 and 1 as their own, so a bad file is "unhealthy" too.
        switch readConfiguration(at: path) {
        case .success(let configuration):
            host = HealthProbe.probeHost(forListening: configuration.host)
            listening = configuration.port
        case .failure(let problem):
            say("unhealthy: \(problem.message)", to: 2)
            exit(1)
        }
    }
    host = option("--host", in: arguments) ?? host
    if option("--port", in: arguments) != nil {
        listening = port("--port", in: arguments)
    }
    let path = option("--path", in: arguments) ?? "/healthz"
    do {
        let status = try HealthProbe.status(host: host, port: listening, path: path)
        guard status == 200 else {
            say("unhealthy: \(path) at \(host) port \(listening) answered \(status)", to: 2)
            exit(1)
        }
        exit(0)
    } catch {
        say("unhealthy: \(error)", to: 2)
        exit(1)
    }
}

func runServe(_ arguments: [String]) {
    let signals = blockSignals()
    let (path, configuration) = configuration(for: "serve", arguments)

    let logger = Logger(label: "gateway")
    var transportConfiguration = CurlTransport.Configuration()
    transportConfiguration.caBundlePath = configuration.caBundlePath
    // Every call in flight to an upstream may hold a connection; keeping them all spares a new connection (and a
    // socket in TIME_WAIT) per call under load.
    transportConfiguration.maxIdleConnections = max(
        transportConfiguration.maxIdleConnections, configuration.upstreamPolicy.maxInFlight)
    // One loop per core carries connections, handlers and upstream calls alike.
    let loops: [EventLoop]
    let transport: CurlTransport
    do {
        loops = try EventLoop.start(count: max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1))
        transport = try CurlTransport(configuration: transportConfiguration, eventLoops: loops)
    } catch {
        fail("The upstream client could not start: \(error)")
    }
    let metrics = GatewayMetrics()
    let audit = openAudit(configuration.audit, metrics: metrics, logger: logger)
    let gateway = Gateway(
        configuration: configuration, transport: transport, audit: audit, metrics: metrics, logger: logger)
    let server = GatewayServer.make(configuration: configuration, gateway: gateway, eventLoops: loops)
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
            ("audit.file", .string(configuration.audit.filePath)),
        ])

    waitForStopSignal(signals, audit: audit, logger: logger) {
        gateway.reloadConfiguration(from: path)
    }
    gateway.beginShutdown()
    // A reload may have changed the delay and the timeouts the drain waits for.
    let readinessDelay = gateway.configuration.shutdownReadinessDelaySeconds
    logger.info("not ready; stopping", [("readiness.delay.seconds", .double(readinessDelay))])
    usleep(UInt32(readinessDelay * 1_000_000))
    let grace = gateway.drainGrace
    logger.info("draining", [("grace.seconds", .int(Int(grace.components.seconds)))])
    server.stop(grace: grace)
    transport.shutdown()
    for loop in loops {
        loop.stop()
    }
    audit.close()
    logger.info("stopped")
}

let arguments = Array(CommandLine.arguments.dropFirst())
// `demo --help` must not start a demo.
if arguments.contains("--help") || arguments.contains("-h") {
    say(usage)
    exit(0)
}
switch arguments.first {
case "demo": runDemo(Array(arguments.dropFirst()))
case "serve": runServe(Array(arguments.dropFirst()))
case "simulate": runSimulate(Array(arguments.dropFirst()))
case "check-config": runCheckConfig(Array(arguments.dropFirst()))
case "healthcheck": runHealthCheck(Array(arguments.dropFirst()))
case "-h", "--help", "help": say(usage)
default: fail(usage)
}
