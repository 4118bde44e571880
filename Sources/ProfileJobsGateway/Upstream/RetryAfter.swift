import FoundationEssentials

/// An upstream's `Retry-After` as whole seconds from now, the one form the gateway waits on and passes to callers.
///
/// RFC 9110 allows a number of seconds or an HTTP-date (IMF-fixdate, and the obsolete RFC 850 and asctime forms a
/// recipient must still accept). Anything else is dropped rather than passed on: a caller cannot act on it.
enum RetryAfter {
    /// A day at most, so that a wild value cannot park a caller for ever.
    static let longest = 86_400

    /// - Parameter now: seconds since 1970, the clock an HTTP-date is read against.
    static func seconds(_ value: String?, now: Double) -> Int? {
        guard let value else { return nil }
        let text = value.drop(while: { $0 == " " || $0 == "\t" })
        guard !text.isEmpty else { return nil }

        if text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
            return Int(text.prefix(9)).map { min($0, longest) }
        }
        guard let date = httpDate(String(text)) else { return nil }
        return Int(max(0, min(Double(longest), (date - now).rounded(.up))))
    }

    /// Seconds since 1970 of an HTTP-date in any of its three forms, read by its parts: the weekday is ignored, the
    /// month is named, the time has colons, the day has one or two digits and the year two or four.
    static func httpDate(_ text: String) -> Double? {
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" })
        guard tokens.count == 5 || tokens.count == 6 else { return nil }

        var month: Int?
        var day: Int?
        var year: Int?
        var time: [Int]?
        for token in tokens.dropFirst() where token != "GMT" {
            if let index = months.firstIndex(of: String(token)) {
                month = index + 1
            } else if token.contains(":") {
                let parts = token.split(separator: ":").compactMap { Int($0) }
                guard parts.count == 3 else { return nil }
                time = parts
            } else if let number = Int(token), token.count <= 2, day == nil {
                day = number
            } else if let number = Int(token), token.count == 4 || token.count == 2 {
                year = token.count == 4 ? number : (number >= 70 ? 1900 + number : 2000 + number)
            } else {
                return nil
            }
        }

        guard let month, let day, let year, let time, (1...31).contains(day), (0...23).contains(time[0]),
            (0...59).contains(time[1]), (0...60).contains(time[2])
        else { return nil }
        let days = daysSince1970(year: year, month: month, day: day)
        return Double(days * 86_400 + time[0] * 3600 + time[1] * 60 + time[2])
    }

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Days from 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
    private static func daysSince1970(year: Int, month: Int, day: Int) -> Int {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
