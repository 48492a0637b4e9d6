import Foundation

/// Compares `ALBEFTaskCheckpoint.plan` with the official scripts' key maps
/// (`keymap.<script>.json` of an albef-load case: `copied`, `interpolate_pos_embed`,
/// `not_loaded_keep_init`, `ignored_source_keys`, `load_state_dict_msg`). The checkpoint's keys
/// and the model's keys are read off the map itself, so the check is independent of the shapes.
public enum KeymapCheck {
    /// An official key map as recorded.
    public struct Keymap {
        public var copied: [String: String]
        public var interpolated: [String: String]
        public var keptAtInit: [String]
        public var ignoredSourceKeys: [String]?
        public var missingKeys: [String]?
        public var unexpectedKeys: [String]?

        /// The checkpoint's keys: every source the map names.
        public var sourceKeys: [String] { Array(Set(copied.values).union(interpolated.values).union(ignoredSourceKeys ?? [])) }
        /// The model's keys: every target the map names.
        public var modelKeys: [String] { Array(Set(copied.keys).union(interpolated.keys).union(keptAtInit)) }

        public init(path: String) throws {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw CheckpointError(file: path, message: "not a JSON object")
            }
            func map(_ key: String) throws -> [String: String] {
                guard let m = json[key] as? [String: Any] else { throw CheckpointError(file: path, message: "\(key): expected an object") }
                var out: [String: String] = [:]
                for (k, v) in m {
                    guard let s = v as? String else { throw CheckpointError(file: path, message: "\(key).\(k): expected a key name, got \(v)") }
                    out[k] = s
                }
                return out
            }
            func list(_ key: String, in object: [String: Any]? = nil) throws -> [String]? {
                guard let raw = (object ?? json)[key] else { return nil }
                guard let l = raw as? [String] else { throw CheckpointError(file: path, message: "\(key): expected a list of key names") }
                return l
            }
            copied = try map("copied")
            interpolated = try map("interpolate_pos_embed")
            guard let kept = try list("not_loaded_keep_init") else { throw CheckpointError(file: path, message: "not_loaded_keep_init missing") }
            keptAtInit = kept
            ignoredSourceKeys = try list("ignored_source_keys")
            let msg = json["load_state_dict_msg"] as? [String: Any]
            missingKeys = try msg.flatMap { try list("missing_keys", in: $0) }
            unexpectedKeys = try msg.flatMap { try list("unexpected_keys", in: $0) }
        }
    }

    /// Differences between `plan` and `map` (empty: equal).
    public static func differences(_ plan: ALBEFTaskCheckpoint.Plan, _ map: Keymap) -> [String] {
        var d: [String] = []
        func compare<T: Equatable>(_ what: String, _ mine: T, _ official: T) {
            if mine != official { d.append("\(what): \(mine) here, \(official) officially") }
        }
        for (k, v) in map.copied where plan.copied[k] != v { d.append("copied \(k): \(plan.copied[k] ?? "nothing") here, \(v) officially") }
        for k in plan.copied.keys where map.copied[k] == nil { d.append("copied \(k) here, not officially") }
        compare("interpolated", plan.resized, map.interpolated)
        compare("kept at init", Set(plan.keptAtInit), Set(map.keptAtInit))
        if let m = map.missingKeys { compare("missing keys", Set(plan.keptAtInit), Set(m)) }
        if let u = map.unexpectedKeys { compare("unexpected keys", Set(plan.unexpected), Set(u)) }
        if let i = map.ignoredSourceKeys { compare("ignored source keys", Set(plan.ignoredSourceKeys), Set(i)) }
        return d
    }

    /// The plan of `script` for the keys a recorded map names.
    public static func plan(_ script: ALBEFTaskCheckpoint.Script, for map: Keymap) throws -> ALBEFTaskCheckpoint.Plan {
        let interpolatedSources = Set(map.interpolated.values)
        return try ALBEFTaskCheckpoint.plan(script, sourceKeys: map.sourceKeys, modelKeys: map.modelKeys) { interpolatedSources.contains($0) }
    }

    /// The text-assignment stage then NLVR.py, as if the TA checkpoint were saved before any TA
    /// step: model key -> pre-training key (resized when either stage resized it).
    public static func composedNLVR(_ ta: ALBEFTaskCheckpoint.Plan, _ nlvr: ALBEFTaskCheckpoint.Plan) -> ALBEFTaskCheckpoint.Plan {
        var p = ALBEFTaskCheckpoint.Plan()
        for (target, mid) in nlvr.copied.merging(nlvr.resized, uniquingKeysWith: { a, _ in a }) {
            let stageResized = nlvr.resized[target] != nil || ta.resized[mid] != nil
            guard let source = ta.copied[mid] ?? ta.resized[mid] else { continue }
            if stageResized { p.resized[target] = source } else { p.copied[target] = source }
        }
        p.keptAtInit = nlvr.keptAtInit
        return p
    }

    /// Checks every `keymap.<script>.json` in `dir` (and `keymap.nlvr_from_pretrain.json`
    /// against the composition of the two NLVR2 stages).
    public static func run(_ dir: String) throws -> ReferenceStep.GroupResult {
        var problems: [String] = []
        var compared = 0
        var plans: [ALBEFTaskCheckpoint.Script: ALBEFTaskCheckpoint.Plan] = [:]
        func path(_ name: String) -> String { (dir as NSString).appendingPathComponent("keymap.\(name).json") }
        for script in ALBEFTaskCheckpoint.Script.allCases where FileManager.default.fileExists(atPath: path(script.rawValue)) {
            let map = try Keymap(path: path(script.rawValue))
            let p = try plan(script, for: map)
            plans[script] = p
            problems += differences(p, map).map { "\(script.rawValue): \($0)" }
            compared += 1
        }
        if FileManager.default.fileExists(atPath: path("nlvr_from_pretrain")), let ta = plans[.nlvrTextAssignment], let nlvr = plans[.nlvr] {
            let map = try Keymap(path: path("nlvr_from_pretrain"))
            problems += differences(composedNLVR(ta, nlvr), map).map { "nlvr_from_pretrain: \($0)" }
            compared += 1
        }
        let worst = problems.first.map { String($0.prefix(300)) } ?? (compared == 0 ? "no keymap.*.json" : "")
        return ReferenceStep.GroupResult(group: "keymaps", worstName: worst, worstError: Double(problems.count), tolerance: 0, compared: compared)
    }
}
