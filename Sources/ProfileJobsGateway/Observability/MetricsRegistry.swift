import FoundationEssentials

/// Counters, gauges and histograms rendered in the Prometheus text exposition format, version 0.0.4.
///
/// Each family has its own lock, so recording contends only with recordings of the same family. A scrape copies a
/// family's series under its lock and formats them outside it.
final class MetricsRegistry: Sendable {
    /// Enough for every route, method, status class and cloud the gateway has, with room to spare.
    static let defaultSeriesLimit = 1000

    private let families = Locked<[String: any MetricFamily]>([:])

    init() {}

    func counter(_ name: String, help: String, labels: [String] = [], seriesLimit: Int = defaultSeriesLimit)
        -> CounterFamily
    {
        register(CounterFamily(name: name, help: help, labelNames: labels, seriesLimit: seriesLimit))
    }

    func gauge(_ name: String, help: String, labels: [String] = [], seriesLimit: Int = defaultSeriesLimit)
        -> GaugeFamily
    {
        register(GaugeFamily(name: name, help: help, labelNames: labels, seriesLimit: seriesLimit))
    }

    /// - Parameter buckets: the finite upper bounds, strictly increasing; `+Inf` is always added.
    func histogram(
        _ name: String,
        help: String,
        labels: [String] = [],
        buckets: [Double],
        seriesLimit: Int = defaultSeriesLimit
    ) -> HistogramFamily {
        register(
            HistogramFamily(name: name, help: help, labelNames: labels, bounds: buckets, seriesLimit: seriesLimit))
    }

    /// Every family sorted by name, each family's series sorted by label values: the same state renders the same.
    func render() -> [UInt8] {
        let ordered = families.withLock { families in
            families.sorted { $0.key < $1.key }.map(\.value)
        }

        var writer = ExpositionWriter()
        for family in ordered {
            family.render(into: &writer)
        }
        return writer.bytes
    }

    private func register<Family: MetricFamily>(_ family: Family) -> Family {
        families.withLock { families in
            precondition(families[family.name] == nil, "metric \(family.name) registered twice")
            families[family.name] = family
        }
        return family
    }
}

/// One named metric with all of its series.
protocol MetricFamily: AnyObject, Sendable {
    var name: String { get }
    func render(into writer: inout ExpositionWriter)
}

/// A value that only goes up, such as the number of requests answered.
final class CounterFamily: MetricFamily {
    let name: String
    let help: String
    private let series: Locked<SeriesTable<Double>>

    fileprivate init(name: String, help: String, labelNames: [String], seriesLimit: Int) {
        MetricNames.check(name: name, labelNames: labelNames)
        self.name = name
        self.help = help
        series = Locked(SeriesTable(labelNames: labelNames, limit: seriesLimit, initial: 0))
    }

    /// Adds `amount`; negative and NaN amounts are dropped, since a counter that went down reads as a restart.
    func increment(labels labelValues: [String] = [], by amount: Double = 1) {
        guard amount >= 0 else { return }
        series.withLock { $0.update(labelValues, initial: 0) { $0 += amount } }
    }

    /// The series' value, or nil when it was never recorded.
    func value(labels labelValues: [String] = []) -> Double? {
        series.withLock { $0.values[labelValues] }
    }

    func render(into writer: inout ExpositionWriter) {
        let (labelNames, values) = series.withLock { ($0.labelNames, $0.values) }

        writer.header(name: name, help: help, type: "counter")
        for (labelValues, value) in SeriesTable.sorted(values) {
            writer.sample(name: name, labelNames: labelNames, labelValues: labelValues, value: value)
        }
    }
}

/// A value that goes up and down, such as the number of requests in flight.
final class GaugeFamily: MetricFamily {
    let name: String
    let help: String
    private let series: Locked<SeriesTable<Double>>

    fileprivate init(name: String, help: String, labelNames: [String], seriesLimit: Int) {
        MetricNames.check(name: name, labelNames: labelNames)
        self.name = name
        self.help = help
        series = Locked(SeriesTable(labelNames: labelNames, limit: seriesLimit, initial: 0))
    }

    func set(_ value: Double, labels labelValues: [String] = []) {
        series.withLock { $0.update(labelValues, initial: 0) { $0 = value } }
    }

    func add(_ amount: Double, labels labelValues: [String] = []) {
        series.withLock { $0.update(labelValues, initial: 0) { $0 += amount } }
    }

    /// The series' value, or nil when it was never recorded.
    func value(labels labelValues: [String] = []) -> Double? {
        series.withLock { $0.values[labelValues] }
    }

    func render(into writer: inout ExpositionWriter) {
        let (labelNames, values) = series.withLock { ($0.labelNames, $0.values) }

        writer.header(name: name, help: help, type: "gauge")
        for (labelValues, value) in SeriesTable.sorted(values) {
            writer.sample(name: name, labelNames: labelNames, labelValues: labelValues, value: value)
        }
    }
}

/// Observations counted into buckets by upper bound, such as request durations.
final class HistogramFamily: MetricFamily {
    let name: String
    let help: String
    /// The finite upper bounds, strictly increasing.
    let bounds: [Double]
    private let series: Locked<SeriesTable<HistogramSeries>>

    fileprivate init(name: String, help: String, labelNames: [String], bounds: [Double], seriesLimit: Int) {
        MetricNames.check(name: name, labelNames: labelNames)
        precondition(!labelNames.contains("le"), "histogram \(name) cannot have a label named le")
        precondition(bounds.allSatisfy(\.isFinite), "histogram \(name) has a bucket bound that is not finite")
        precondition(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "histogram \(name) bounds not increasing")
        self.name = name
        self.help = help
        self.bounds = bounds
        series = Locked(
            SeriesTable(labelNames: labelNames, limit: seriesLimit, initial: HistogramSeries(bucketCount: bounds.count))
        )
    }

    /// Counts `value` into the first bucket whose bound is at least `value`; NaN is dropped, as it would make the sum
    /// NaN for good.
    func observe(_ value: Double, labels labelValues: [String] = []) {
        guard !value.isNaN else { return }

        // Found outside the lock; values above every bound land only in +Inf, which is the count.
        let bucket = bounds.firstIndex { value <= $0 }

        series.withLock { table in
            table.update(labelValues, initial: HistogramSeries(bucketCount: bounds.count)) { series in
                if let bucket { series.bucketCounts[bucket] += 1 }
                series.sum += value
                series.count += 1
            }
        }
    }

    /// The series' state, or nil when it was never recorded.
    func snapshot(labels labelValues: [String] = []) -> HistogramSeries? {
        series.withLock { $0.values[labelValues] }
    }

    func render(into writer: inout ExpositionWriter) {
        let (labelNames, values) = series.withLock { ($0.labelNames, $0.values) }
        let bucketName = name + "_bucket"
        let sumName = name + "_sum"
        let countName = name + "_count"
        let boundLabels = bounds.map(ExpositionWriter.format)

        writer.header(name: name, help: help, type: "histogram")
        for (labelValues, series) in SeriesTable.sorted(values) {
            // Stored per bucket; the format wants each bucket to include every bucket below it.
            var cumulative: UInt64 = 0
            for (bound, count) in zip(boundLabels, series.bucketCounts) {
                cumulative += count
                writer.sample(
                    name: bucketName, labelNames: labelNames, labelValues: labelValues, le: bound,
                    value: Double(cumulative))
            }
            writer.sample(
                name: bucketName, labelNames: labelNames, labelValues: labelValues, le: "+Inf",
                value: Double(series.count))
            writer.sample(name: sumName, labelNames: labelNames, labelValues: labelValues, value: series.sum)
            writer.sample(
                name: countName, labelNames: labelNames, labelValues: labelValues, value: Double(series.count))
        }
    }
}

/// One histogram series; `bucketCounts` are per bucket, not cumulative, so an observation touches one of them.
struct HistogramSeries: Sendable, Equatable {
    var bucketCounts: [UInt64]
    var sum: Double = 0
    var count: UInt64 = 0

    init(bucketCount: Int) {
        bucketCounts = Array(repeating: 0, count: bucketCount)
    }
}

/// The series of one family keyed by their label values, capped so that junk values cannot grow memory without end.
///
/// Past `limit` distinct label combinations, new combinations are recorded into one extra series whose label values
/// are all "other"; the ones already known keep their own series.
struct SeriesTable<Value: Sendable>: Sendable {
    static var overflowValue: String { "other" }

    let labelNames: [String]
    let limit: Int
    private(set) var values: [[String]: Value] = [:]

    init(labelNames: [String], limit: Int, initial: Value) {
        precondition(limit >= 1, "a family needs room for at least one series")
        self.labelNames = labelNames
        self.limit = limit

        // A family without labels has exactly one series; it is shown from the start, even at zero.
        if labelNames.isEmpty { values[[]] = initial }
    }

    mutating func update(_ labelValues: [String], initial: @autoclosure () -> Value, _ change: (inout Value) -> Void) {
        precondition(labelValues.count == labelNames.count, "expected label values for \(labelNames)")

        let key =
            values.count < limit || values[labelValues] != nil
            ? labelValues : Array(repeating: Self.overflowValue, count: labelNames.count)
        change(&values[key, default: initial()])
    }

    /// Series ordered by their label values, compared one label at a time.
    static func sorted(_ values: [[String]: Value]) -> [([String], Value)] {
        values.map { ($0.key, $0.value) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
    }
}

/// The rules of the format for metric and label names; a bad name is a programming error, caught at registration.
enum MetricNames {
    static func check(name: String, labelNames: [String]) {
        precondition(isValid(name, allowingColon: true), "invalid metric name \(name)")
        for label in labelNames {
            precondition(isValid(label, allowingColon: false), "invalid label name \(label) of \(name)")
            precondition(!label.hasPrefix("__"), "label names starting with __ are reserved: \(label) of \(name)")
        }
        precondition(Set(labelNames).count == labelNames.count, "repeated label name in \(name)")
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names, the same without colons for label names.
    static func isValid(_ name: String, allowingColon: Bool) -> Bool {
        guard let first = name.utf8.first else { return false }

        func isLetter(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || byte == UInt8(ascii: "_") || (allowingColon && byte == UInt8(ascii: ":"))
        }
        return isLetter(first)
            && name.utf8.allSatisfy { isLetter($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }
}

/// Builds exposition text straight into bytes.
struct ExpositionWriter {
    private(set) var bytes: [UInt8] = []

    init() {
        bytes.reserveCapacity(16 * 1024)
    }

    /// `# HELP` and `# TYPE`; in help text only backslash and newline are escaped.
    mutating func header(name: String, help: String, type: String) {
        append("# HELP ")
        append(name)
        append(" ")
        for byte in help.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): append("\\\\")
            case UInt8(ascii: "\n"): append("\\n")
            default: bytes.append(byte)
            }
        }
        append("\n# TYPE ")
        append(name)
        append(" ")
        append(type)
        append("\n")
    }

    /// One sample line: `name{label="value",...} value`, without braces when there are no labels.
    mutating func sample(
        name: String,
        labelNames: [String],
        labelValues: [String],
        le: String? = nil,
        value: Double
    ) {
        append(name)

        if !labelNames.isEmpty || le != nil {
            append("{")
            for (index, (label, labelValue)) in zip(labelNames, labelValues).enumerated() {
                if index > 0 { append(",") }
                append(label)
                append("=\"")
                appendEscapedLabelValue(labelValue)
                append("\"")
            }
            if let le {
                if !labelNames.isEmpty { append(",") }
                append("le=\"")
                append(le)
                append("\"")
            }
            append("}")
        }

        append(" ")
        append(Self.format(value))
        append("\n")
    }

    /// Whole numbers without a fraction, the rest as Swift's shortest round-trip form, which Go's parser reads.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == .infinity { return "+Inf" }
        if value == -.infinity { return "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return value.description
    }

    /// A label value may hold anything; backslash, double quote and newline are the characters the format escapes.
    private mutating func appendEscapedLabelValue(_ value: String) {
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): append("\\\\")
            case UInt8(ascii: "\""): append("\\\"")
            case UInt8(ascii: "\n"): append("\\n")
            default: bytes.append(byte)
            }
        }
    }

    private mutating func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }
}
