import Foundation
import Yams

/// A configuration value that cannot be used: the file, the key (a dotted path) and what is wrong.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let file: String
    /// Dotted key path (`train.max_steps`); nil for the file as a whole.
    public let key: String?
    public let message: String

    public init(file: String, key: String? = nil, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String { key.map { "\(file): \($0): \(message)" } ?? "\(file): \(message)" }
}

/// One mapping of a configuration file, read into typed values.
///
/// Every accessor names the key it reads, so the section knows its valid keys; `finish()` then
/// rejects any other key with the nearest valid one (`train.max_step: unknown key, did you mean
/// max_steps?`). Numbers are range-checked where they are read: NaN, infinities, fractions where
/// an integer is due and values outside the stated range are errors naming the key, never traps.
public final class ConfigSection {
    /// File (or other source) the values come from, for messages.
    public let file: String
    /// Dotted path of this section ("" at the top level).
    public let path: String
    private let values: [String: Any]
    private var known: Set<String> = []
    private var children: [ConfigSection] = []
    /// Keys accepted without effect (`IgnoredKeys`), found in this file.
    private let ignoredTable: IgnoredKeys

    public init(values: [String: Any], file: String, path: String = "", ignoring: IgnoredKeys = .none) {
        self.values = values
        self.file = file
        self.path = path
        ignoredTable = ignoring
    }

    /// Parses YAML (or JSON, a subset) whose top level is a mapping.
    public static func parse(_ text: String, source: String, ignoring: IgnoredKeys = .none) throws -> ConfigSection {
        // Size and alias expansion are bounded before the parser expands anything.
        try YAMLLimits.check(text, source: source)
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch {
            throw ConfigError(file: source, message: "YAML syntax error: \(error)")
        }
        guard let dict = node as? [String: Any] else {
            throw ConfigError(file: source, message: "the top level must be a mapping of keys to values")
        }
        return ConfigSection(values: dict, file: source, ignoring: ignoring)
    }

    /// Reads and parses a file.
    public static func load(_ path: String, ignoring: IgnoredKeys = .none) throws -> ConfigSection {
        try parse(YAMLLimits.readText(path), source: path, ignoring: ignoring)
    }

    /// Dotted name of `key` in this section.
    public func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// An error about `key` of this section.
    public func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, key: keyPath(key), message: message)
    }

    /// An error about this section as a whole.
    public func error(_ message: String) -> ConfigError {
        ConfigError(file: file, key: path.isEmpty ? nil : path, message: message)
    }

    /// True when `key` is present (and not null). Declares `key` valid.
    public func contains(_ key: String) -> Bool {
        known.insert(key)
        guard let v = values[key] else { return false }
        return !(v is NSNull)
    }

    /// Raw value of `key` (nil when absent or null). Declares `key` valid.
    func raw(_ key: String) -> Any? {
        known.insert(key)
        guard let v = values[key], !(v is NSNull) else { return nil }
        return v
    }

    // MARK: numbers

    /// A finite number, from a YAML int, float or numeric string (YAML 1.1 reads `1e-4` as a string).
    private func number(_ key: String, _ v: Any) throws -> Double {
        let x: Double
        if let i = v as? Int {
            x = Double(i)
        } else if let d = v as? Double {
            x = d
        } else if let s = v as? String, let d = Double(s.trimmingCharacters(in: .whitespaces)) {
            x = d
        } else {
            throw error(key, "must be a number, got \(Self.show(v))")
        }
        guard x.isFinite else { throw error(key, "must be a finite number, got \(Self.show(v))") }
        return x
    }

    /// An integer in `range` (an integral float such as 1e3 is accepted).
    private func integer(_ key: String, _ v: Any, in range: ClosedRange<Int>) throws -> Int {
        if let i = v as? Int {
            guard range.contains(i) else { throw error(key, "must be in \(Self.show(range)), got \(i)") }
            return i
        }
        let x = try number(key, v)
        guard x == x.rounded(), x >= Double(range.lowerBound), x <= Double(range.upperBound) else {
            throw error(key, x == x.rounded() ? "must be in \(Self.show(range)), got \(Self.show(v))"
                                              : "must be an integer in \(Self.show(range)), got \(Self.show(v))")
        }
        return Int(x)
    }

    /// `key` as an integer in `range`, or nil when absent.
    public func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        try raw(key).map { try integer(key, $0, in: range) }
    }

    /// `key` as an integer in `range`, or `fallback` when absent.
    public func int(_ key: String, default fallback: Int, in range: ClosedRange<Int>) throws -> Int {
        try int(key, in: range) ?? fallback
    }

    /// `key` as a finite number in `range`, or nil when absent.
    public func double(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = raw(key) else { return nil }
        let x = try number(key, v)
        guard range.contains(x) else { throw error(key, "must be in \(Self.show(range)), got \(Self.show(v))") }
        return x
    }

    /// `key` as a finite number in `range`, or `fallback` when absent.
    public func double(_ key: String, default fallback: Double, in range: ClosedRange<Double>) throws -> Double {
        try double(key, in: range) ?? fallback
    }

    /// `key` as a Float in `range`, or `fallback` when absent.
    public func float(_ key: String, default fallback: Float, in range: ClosedRange<Double>) throws -> Float {
        try double(key, in: range).map(Float.init) ?? fallback
    }

    /// `key` as a list of integers in `range` (nil when absent).
    public func ints(_ key: String, in range: ClosedRange<Int>) throws -> [Int]? {
        guard let v = raw(key) else { return nil }
        guard let list = v as? [Any] else { throw error(key, "must be a list of integers, got \(Self.show(v))") }
        return try list.enumerated().map { try integer("\(key)[\($0.offset)]", $0.element, in: range) }
    }

    /// `key` as a list of numbers in `range` (nil when absent).
    public func doubles(_ key: String, in range: ClosedRange<Double>) throws -> [Double]? {
        guard let v = raw(key) else { return nil }
        guard let list = v as? [Any] else { throw error(key, "must be a list of numbers, got \(Self.show(v))") }
        return try list.enumerated().map { item in
            let x = try number("\(key)[\(item.offset)]", item.element)
            guard range.contains(x) else {
                throw error("\(key)[\(item.offset)]", "must be in \(Self.show(range)), got \(Self.show(item.element))")
            }
            return x
        }
    }

    // MARK: other scalars

    /// `key` as true/false, or `fallback` when absent.
    public func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let v = raw(key) else { return fallback }
        guard let b = v as? Bool else { throw error(key, "must be true or false, got \(Self.show(v))") }
        return b
    }

    /// `key` as a string, or nil when absent.
    public func string(_ key: String) throws -> String? {
        guard let v = raw(key) else { return nil }
        guard let s = v as? String else { throw error(key, "must be a string, got \(Self.show(v))") }
        return s
    }

    /// `key` as one of `choices` (nil when absent); a wrong value names the valid ones.
    public func choice(_ key: String, _ choices: [String]) throws -> String? {
        guard let s = try string(key) else { return nil }
        guard choices.contains(s) else {
            let hint = Self.nearest(s, among: choices).map { " (did you mean \($0)?)" } ?? ""
            throw error(key, "must be \(Self.orList(choices)), not '\(s)'\(hint)")
        }
        return s
    }

    // MARK: nested sections

    /// The mapping under `key`: nil when absent or null; an error when it is not a mapping.
    public func section(_ key: String) throws -> ConfigSection? {
        guard let v = raw(key) else { return nil }
        guard let d = v as? [String: Any] else { throw error(key, "must be a mapping of keys to values, got \(Self.show(v))") }
        let child = ConfigSection(values: d, file: file, path: keyPath(key), ignoring: ignoredTable)
        children.append(child)
        return child
    }

    /// Whether `key` is absent, null, `false` (a way to switch a section off, as
    /// `img_prune: false`) or holds a value. Declares `key` valid.
    public enum Presence { case absent, null, off, value }

    public func presence(_ key: String) -> Presence {
        known.insert(key)
        guard let v = values[key] else { return .absent }
        if v is NSNull { return .null }
        if let b = v as? Bool, !b { return .off }
        return .value
    }

    /// The error for a required `key` that is absent: when an unknown key here is a likely typo
    /// of it, that typo is named instead.
    public func missing(_ key: String) -> ConfigError {
        known.insert(key)
        let typos = values.keys.filter { !known.contains($0) && Self.nearest($0, among: [key]) != nil }.sorted()
        if let typo = typos.first { return error(typo, "unknown key, did you mean \(key)?") }
        return error(key, "missing (required)")
    }

    // MARK: unknown keys

    /// Keys present here that no reader asked for and that are not accepted-and-ignored.
    public var unknownKeys: [String] {
        values.keys.filter { !known.contains($0) && !ignoredTable.contains(keyPath($0)) }.sorted()
    }

    /// Keys present here that are accepted and ignored on purpose (see `IgnoredKeys`).
    public var ignoredKeysPresent: [String] {
        let own = values.keys.filter { !known.contains($0) && ignoredTable.contains(keyPath($0)) }.map(keyPath)
        return (own + children.flatMap(\.ignoredKeysPresent)).sorted()
    }

    /// Throws for the first unknown key here or in any section read from here, with the nearest
    /// valid key of the same section when one is close.
    public func finish() throws {
        if let key = unknownKeys.first {
            let hint = Self.nearest(key, among: Array(known)).map { ", did you mean \($0)?" } ?? ""
            let others = unknownKeys.count > 1 ? " (also unknown: \(unknownKeys.dropFirst().joined(separator: ", ")))" : ""
            throw error(key, "unknown key\(hint)\(others)")
        }
        for c in children { try c.finish() }
    }

    // MARK: helpers

    /// The candidate closest to `word` by edit distance, when close enough to be a likely typo.
    public static func nearest(_ word: String, among candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }) else { return nil }
        let limit = max(2, min(word.count, best.0.count) / 3)
        return best.1 <= limit ? best.0 : nil
    }

    /// Levenshtein distance (insertions, deletions, substitutions; a swap of neighbours counts 1).
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: y.count + 1), count: x.count + 1)
        for i in 0...x.count { d[i][0] = i }
        for j in 0...y.count { d[0][j] = j }
        for i in 1...x.count {
            for j in 1...y.count {
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
                if i > 1, j > 1, x[i - 1] == y[j - 2], x[i - 2] == y[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
            }
        }
        return d[x.count][y.count]
    }

    static func show(_ v: Any) -> String {
        if let s = v as? String { return "'\(s)'" }
        if let d = v as? Double {
            if d.isNaN { return ".nan" }
            if d.isInfinite { return d > 0 ? ".inf" : "-.inf" }
        }
        return "\(v)"
    }

    static func show(_ r: ClosedRange<Int>) -> String { "[\(r.lowerBound), \(r.upperBound)]" }

    static func show(_ r: ClosedRange<Double>) -> String {
        func f(_ x: Double) -> String {
            if x == .greatestFiniteMagnitude { return "inf" }
            if x == -.greatestFiniteMagnitude { return "-inf" }
            return x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)"
        }
        return "[\(f(r.lowerBound)), \(f(r.upperBound))]"
    }

    static func orList(_ choices: [String]) -> String {
        choices.count <= 1 ? (choices.first ?? "") : choices.dropLast().joined(separator: ", ") + " or " + choices.last!
    }
}
