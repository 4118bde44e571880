/// The two ways the platform writes time: AWS job stamps and the `report.timestamp` of problem bodies.
enum Timestamp {
    /// RFC 3339 in UTC with exactly six fraction digits, as AWS writes `createdAt` (`2024-12-22T19:44:50.250006Z`).
    static func rfc3339Microseconds(_ seconds: Double) -> String {
        let micros = Int64((seconds * 1_000_000).rounded())
        let (whole, fraction) = floorDivision(micros, 1_000_000)
        let (date, time) = civil(whole)
        return "\(date)T\(time).\(padded(fraction, 6))Z"
    }

    /// `MM-dd-yyyy HH:mm:ss` in UTC, as the documented problem report writes it (`06-01-2021 04:11:06`).
    static func report(_ seconds: Double) -> String {
        let whole = Int64(seconds.rounded(.down))
        let (days, secondOfDay) = floorDivision(whole, 86_400)
        let (year, month, day) = civilDate(daysSince1970: days)
        return "\(padded(month, 2))-\(padded(day, 2))-\(padded(year, 4)) \(clock(secondOfDay))"
    }

    /// `yyyy-MM-dd` and `HH:mm:ss` for whole seconds since 1970.
    private static func civil(_ whole: Int64) -> (date: String, time: String) {
        let (days, secondOfDay) = floorDivision(whole, 86_400)
        let (year, month, day) = civilDate(daysSince1970: days)
        return ("\(padded(year, 4))-\(padded(month, 2))-\(padded(day, 2))", clock(secondOfDay))
    }

    private static func clock(_ secondOfDay: Int64) -> String {
        "\(padded(secondOfDay / 3600, 2)):\(padded(secondOfDay / 60 % 60, 2)):\(padded(secondOfDay % 60, 2))"
    }

    /// Proleptic Gregorian date of a day count, by Howard Hinnant's `civil_from_days`.
    private static func civilDate(daysSince1970 days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let remainder = ((value % divisor) + divisor) % divisor
        return ((value - remainder) / divisor, remainder)
    }

    private static func padded(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
