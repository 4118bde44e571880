/// Turns the upstreams' time stamps into the canonical RFC 3339 UTC form.
enum UpstreamTime {
    /// Azure's whole seconds since 1970 as `2019-05-28T06:36:44Z`.
    static func fromEpoch(_ seconds: Int) throws(MalformedUpstreamBody) -> String {
        let minutes = seconds.floorDivided(by: 60)
        // From the remainder: `minutes * 60` overflows for the most negative epochs an upstream can send.
        let second = (seconds % 60 + 60) % 60
        guard let stamp = CivilMinute(minutesSinceEpoch: minutes) else {
            throw MalformedUpstreamBody(reason: "epoch \(seconds) is outside the years 0000-9999")
        }
        return stamp.text(second: second, fraction: [])
    }

    /// The inverse of `fromEpoch`, for writing the Azure dialect: whole seconds since 1970 of an RFC 3339 time, any
    /// fraction truncated (towards the earlier second); nil when the text is not RFC 3339.
    static func toEpoch(_ text: String) -> Int? {
        guard let stamp = RFC3339Stamp(Array(text.utf8)) else { return nil }
        return (stamp.minute.minutesSinceEpoch - stamp.offsetMinutes) * 60 + stamp.second
    }

    /// AWS's RFC 3339 strings in UTC, keeping exactly the sub-second digits the upstream gave.
    ///
    /// An offset is applied to the minutes only (offsets are whole minutes), so the seconds, a leap second
    /// included, and the fraction digits pass through untouched. `t` and `z` are accepted in lower case.
    static func normalise(_ text: String) throws(MalformedUpstreamBody) -> String {
        guard let stamp = RFC3339Stamp(Array(text.utf8)) else {
            throw MalformedUpstreamBody(reason: "time \"\(text.prefix(40))\" is not RFC 3339")
        }

        var minute = stamp.minute
        if stamp.offsetMinutes != 0 {
            guard let shifted = CivilMinute(minutesSinceEpoch: minute.minutesSinceEpoch - stamp.offsetMinutes)
            else {
                throw MalformedUpstreamBody(reason: "time \"\(text.prefix(40))\" is outside the years 0000-9999")
            }
            minute = shifted
        }
        return minute.text(second: stamp.second, fraction: stamp.fraction)
    }
}

/// A calendar minute in the proleptic Gregorian calendar, the unit time-zone offsets move.
struct CivilMinute: Equatable {
    var year: Int
    var month: Int
    var day: Int
    var hour: Int
    var minute: Int

    init?(year: Int, month: Int, day: Int, hour: Int, minute: Int) {
        guard (0...9999).contains(year), (1...12).contains(month), (0...23).contains(hour),
            (0...59).contains(minute), (1...CivilMinute.daysIn(month: month, year: year)).contains(day)
        else { return nil }

        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
    }

    /// Howard Hinnant's civil-from-days, on minutes.
    init?(minutesSinceEpoch: Int) {
        let days = minutesSinceEpoch.floorDivided(by: 1440)
        let minuteOfDay = minutesSinceEpoch - days * 1440

        let shifted = days + 719_468
        let era = shifted.floorDivided(by: 146_097)
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)

        self.init(year: year, month: month, day: day, hour: minuteOfDay / 60, minute: minuteOfDay % 60)
    }

    /// Howard Hinnant's days-from-civil, on minutes.
    var minutesSinceEpoch: Int {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = shiftedYear.floorDivided(by: 400)
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return days * 1440 + hour * 60 + minute
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
    func text(second: Int, fraction: [UInt8]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(21 + fraction.count)
        appendDigits(year, count: 4, to: &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(month, count: 2, to: &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(day, count: 2, to: &bytes)
        bytes.append(UInt8(ascii: "T"))
        appendDigits(hour, count: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(minute, count: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(second, count: 2, to: &bytes)
        if !fraction.isEmpty {
            bytes.append(UInt8(ascii: "."))
            bytes.append(contentsOf: fraction)
        }
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }

    private func appendDigits(_ value: Int, count: Int, to bytes: inout [UInt8]) {
        var divisor = 1
        for _ in 1..<count {
            divisor *= 10
        }
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }
}

/// An RFC 3339 `date-time` taken apart: `2024-12-22T19:44:50.250006+02:00`.
struct RFC3339Stamp {
    var minute: CivilMinute
    var second: Int
    /// The digits after the decimal point, exactly as written.
    var fraction: [UInt8]
    /// East of UTC is positive; UTC is `minute` minus this.
    var offsetMinutes: Int

    init?(_ bytes: [UInt8]) {
        var reader = DigitReader(bytes: bytes)

        guard let year = reader.digits(4), reader.skip("-"), let month = reader.digits(2), reader.skip("-"),
            let day = reader.digits(2), reader.skip("T") || reader.skip("t"),
            let hour = reader.digits(2), reader.skip(":"), let minute = reader.digits(2), reader.skip(":"),
            let second = reader.digits(2), second <= 60,
            let civil = CivilMinute(year: year, month: month, day: day, hour: hour, minute: minute)
        else { return nil }

        var fraction: [UInt8] = []
        if reader.skip(".") {
            fraction = reader.digitRun()
            guard !fraction.isEmpty else { return nil }
        }

        let offset: Int
        if reader.skip("Z") || reader.skip("z") {
            offset = 0
        } else if let sign = reader.sign(), let offsetHour = reader.digits(2), offsetHour <= 23, reader.skip(":"),
            let offsetMinute = reader.digits(2), offsetMinute <= 59
        {
            offset = sign * (offsetHour * 60 + offsetMinute)
        } else {
            return nil
        }

        guard reader.atEnd else { return nil }

        self.minute = civil
        self.second = second
        self.fraction = fraction
        self.offsetMinutes = offset
    }
}

/// A cursor over ASCII bytes that reads fixed-width numbers and literal characters.
private struct DigitReader {
    let bytes: [UInt8]
    var index = 0

    var atEnd: Bool { index == bytes.count }

    mutating func digits(_ count: Int) -> Int? {
        guard index + count <= bytes.count else { return nil }
        var value = 0
        for byte in bytes[index..<index + count] {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        index += count
        return value
    }

    mutating func digitRun() -> [UInt8] {
        let start = index
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            index += 1
        }
        return Array(bytes[start..<index])
    }

    mutating func skip(_ character: Unicode.Scalar) -> Bool {
        guard index < bytes.count, bytes[index] == UInt8(ascii: character) else { return false }
        index += 1
        return true
    }

    mutating func sign() -> Int? {
        if skip("+") { return 1 }
        if skip("-") { return -1 }
        return nil
    }
}

fileprivate extension Int {
    /// Division rounding towards negative infinity, which calendar arithmetic needs before 1970.
    func floorDivided(by divisor: Int) -> Int {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}
