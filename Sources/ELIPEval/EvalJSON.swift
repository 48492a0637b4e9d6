import Foundation

/// A JSON input of an evaluation that cannot be used: one line naming the file and the problem.
public struct EvalJSONError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reading the JSON files of the official evaluations (COCO captions, VQA) with errors that name
/// the file, the record and the key.
public enum EvalJSON {
    /// The parsed file (any top-level value).
    public static func read(_ path: String) throws -> Any {
        guard let data = EvalFile.contents(path) else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw EvalJSONError("\(path): cannot read the file" + (exists ? (EvalFile.reason(path) == "not a regular file" ? " (not a regular file)" : "") : " (it does not exist)"))
        }
        do { return try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
            throw EvalJSONError("\(path): not valid JSON (\(oneLine(error)))")
        }
    }

    /// `root` as an object, else an error saying the file should be `what`.
    public static func object(_ root: Any, _ path: String, what: String) throws -> [String: Any] {
        guard let o = root as? [String: Any] else { throw EvalJSONError("\(path): expected a JSON object (\(what)), got \(describe(root))") }
        return o
    }

    private static func oneLine(_ error: Error) -> String {
        let ns = error as NSError
        let detail = (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
        return detail.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    public static func list(_ object: [String: Any], _ key: String, in path: String) throws -> [Any] {
        guard let value = object[key] else { throw EvalJSONError("\(path): missing key \"\(key)\"") }
        guard let items = value as? [Any] else { throw EvalJSONError("\(path): \"\(key)\" is not a list") }
        return items
    }

    static func field(_ entry: Any, _ key: String, in path: String, at place: String) throws -> Any {
        guard let object = entry as? [String: Any] else { throw EvalJSONError("\(path): \(place) is not an object") }
        guard let value = object[key] else { throw EvalJSONError("\(path): \(place) has no \"\(key)\"") }
        return value
    }

    /// An integral JSON number (1.0 counts, as Python's dictionaries treat it like 1; true does not).
    public static func integer(_ entry: Any, _ key: String, in path: String, at place: String) throws -> Int {
        let value = try field(entry, key, in: path, at: place)
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c", let id = value as? Int else {
            throw EvalJSONError("\(path): \(place): \"\(key)\" is not an integer (\(describe(value)))")
        }
        return id
    }

    public static func string(_ entry: Any, _ key: String, in path: String, at place: String) throws -> String {
        let value = try field(entry, key, in: path, at: place)
        guard let s = value as? String else {
            throw EvalJSONError("\(path): \(place): \"\(key)\" is not a string (\(describe(value)))")
        }
        return s
    }

    /// A short rendering of a JSON value for an error message.
    static func describe(_ value: Any) -> String {
        switch value {
        case is NSNull: return "null"
        case let s as String: return "the string \"\(s.prefix(40))\"".replacingOccurrences(of: "\n", with: " ")
        case let n as NSNumber: return String(cString: n.objCType) == "c" ? (n.boolValue ? "true" : "false") : "\(n)"
        case is [Any]: return "a list"
        case is [String: Any]: return "an object"
        default: return "\(type(of: value))"
        }
    }
}
