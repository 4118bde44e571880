import FoundationEssentials

/// Where the audit trail goes: always a local JSON-lines file, optionally also standard output and a syslog collector.
public struct AuditConfiguration: Sendable, Equatable {
    /// The JSON-lines trail; every record is synced here before the gateway acts on it.
    public var filePath: String
    /// Also print each record line to standard output, for platforms that collect container output.
    public var standardOutput: Bool = false
    /// Also ship each record to a syslog collector, so the trail survives the loss of this machine.
    public var syslog: SyslogConfiguration?

    public init(filePath: String, standardOutput: Bool = false, syslog: SyslogConfiguration? = nil) {
        self.filePath = filePath
        self.standardOutput = standardOutput
        self.syslog = syslog
    }
}

/// A remote syslog collector that receives each record as one RFC 5424 message.
public struct SyslogConfiguration: Sendable, Equatable {
    public enum Transport: String, Sendable {
        /// Octet-counted framing (RFC 6587) on one connection, reconnected when the collector goes away.
        case tcp
        /// One datagram per record; nothing tells when the collector is not there.
        case udp
    }

    public var transport: Transport
    /// An IPv4 or IPv6 literal or a hostname, resolved again on every reconnect.
    public var host: String
    public var port: UInt16
    /// 16 is local0; the collector routes on it.
    public var facility: Int = 16
    public var appName: String = "profile-jobs-gateway"

    public init(
        transport: Transport,
        host: String,
        port: UInt16,
        facility: Int = 16,
        appName: String = "profile-jobs-gateway"
    ) {
        self.transport = transport
        self.host = host
        self.port = port
        self.facility = facility
        self.appName = appName
    }
}

/// The trail could not take a record durably, so the gateway must not forward the deletion it describes.
public struct AuditWriteError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Which records an operator asks for; every given filter must match.
public struct AuditQuery: Sendable, Equatable {
    public var datasetId: String?
    public var batchId: String?
    public var jobId: String?
    public var orgId: String?
    /// Inclusive lower bound on the record's time.
    public var since: Date?
    /// Inclusive upper bound on the record's time.
    public var until: Date?
    /// The most records answered, newest first.
    public var limit: Int = 100

    public init(
        datasetId: String? = nil,
        batchId: String? = nil,
        jobId: String? = nil,
        orgId: String? = nil,
        since: Date? = nil,
        until: Date? = nil,
        limit: Int = 100
    ) {
        self.datasetId = datasetId
        self.batchId = batchId
        self.jobId = jobId
        self.orgId = orgId
        self.since = since
        self.until = until
        self.limit = limit
    }
}
