import ELIPTensor
import Foundation
import Safetensors

/// How the official ALBEF fine-tuning scripts turn a checkpoint into a task model's weights (their
/// `if args.checkpoint:` blocks; SPEC-ALBEF-TASKS §6): which position tables go through
/// `interpolate_pos_embed`, how the keys are renamed, and what `load_state_dict(strict=False)`
/// then loads, ignores and leaves at the constructor's initialisation. Task models call `load`
/// with their state-dict layout; `plan` makes the same decisions on key names alone.
public enum ALBEFTaskCheckpoint {
    /// The loading block of one official script.
    public enum Script: String, CaseIterable, Sendable {
        /// Retrieval.py: pre-training checkpoint -> retrieval model (`bert.` dropped).
        case retrieval
        /// VQA.py: `bert.` dropped; text layers >= 6 also become answer-decoder layers 0.., the
        /// embeddings and MLM head become the decoder's.
        case vqa
        /// VE.py: `bert.` dropped.
        case ve
        /// salesforce/ALBEF Pretrain_nlvr.py (NLVR2 text-assignment stage): `bert.` dropped,
        /// each fusion layer N written to layers 2(N-6)+6 and 2(N-6)+7.
        case nlvrTextAssignment = "nlvr_ta"
        /// NLVR.py on a text-assignment checkpoint: no renaming; only the online ViT's position
        /// table is resized, and the momentum model keeps its initialisation.
        case nlvr
    }

    /// The first fusion layer as the scripts hard-code it (VQA.py's decoder split,
    /// Pretrain_nlvr.py's layer doubling), whatever the config's `fusion_layer`: the default of
    /// `scriptFusion` (VQA: `decoder_init_from_layer`; NLVR2: the config's fusion layer).
    public static let scriptFusionLayer = 6

    /// Checkpoint keys the script passes through `interpolate_pos_embed` before renaming.
    public static func resizedKeys(_ script: Script) -> [String] {
        switch script {
        case .retrieval, .vqa, .ve: return ["visual_encoder.pos_embed", "visual_encoder_m.pos_embed"]
        case .nlvrTextAssignment, .nlvr: return ["visual_encoder.pos_embed"]
        }
    }

    /// A Python dict's semantics (insertion order; re-assigning keeps the position).
    private struct OrderedMap {
        var order: [String] = []
        var values: [String: String] = [:]
        subscript(key: String) -> String? {
            get { values[key] }
            set {
                if let newValue {
                    if values.updateValue(newValue, forKey: key) == nil { order.append(key) }
                } else if values.removeValue(forKey: key) != nil {
                    order.removeAll { $0 == key }
                }
            }
        }
        var pairs: [(target: String, source: String)] { order.map { ($0, values[$0]!) } }
    }

    /// The layer number in dot-field `field` of `key` (the scripts' `int(key.split('.')[field])`).
    private static func layerNumber(_ key: String, field: Int, script: Script) throws -> Int {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count > field, let n = Int(parts[field]), n >= 0 else {
            throw CheckpointError(file: "checkpoint", message: "\(key): \(script.rawValue) renaming expects a layer number in dot-field \(field + 1) of a key containing 'layer'")
        }
        return n
    }

    private static func replacingField(_ key: String, field: Int, with value: Int) -> String {
        var parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        parts[field] = String(value)
        return parts.joined(separator: ".")
    }

    /// The renamed state dict's keys in the script's dict order, each with the checkpoint key
    /// whose tensor it holds.
    /// `scriptFusion`: the first fusion layer the script hard-codes (6): where VQA.py splits the
    /// text layers off into the answer decoder and where Pretrain_nlvr.py's layer doubling starts.
    /// A smaller model, such as the demo's 3-of-6-layer BERT, passes its own.
    public static func renamed(_ keys: [String], script: Script, scriptFusion: Int = scriptFusionLayer) throws -> [(target: String, source: String)] {
        var dict = OrderedMap()
        for k in keys { dict[k] = k }
        switch script {
        case .nlvr:
            break
        case .retrieval, .ve:
            for key in keys where key.contains("bert") {
                dict[key.replacingOccurrences(of: "bert.", with: "")] = dict[key]
                dict[key] = nil
            }
        case .vqa:
            for key in keys {
                if key.contains("bert") { dict[key.replacingOccurrences(of: "bert.", with: "")] = dict[key] }
                guard key.contains("text_encoder") else { continue }
                var encoderKey = key
                if key.contains("layer") {
                    let n = try layerNumber(key, field: 4, script: script)
                    if n < scriptFusion {
                        dict[key] = nil
                        continue
                    }
                    encoderKey = replacingField(key, field: 4, with: n - scriptFusion)
                }
                dict[encoderKey.replacingOccurrences(of: "text_encoder", with: "text_decoder")] = dict[key]
                dict[key] = nil
            }
        case .nlvrTextAssignment:
            for key in keys where key.contains("bert") {
                let newKey = key.replacingOccurrences(of: "bert.", with: "")
                if newKey.contains("layer"), case let n = try layerNumber(newKey, field: 3, script: script), n >= scriptFusion {
                    let first = (n - scriptFusion) * 2 + scriptFusion
                    dict[replacingField(newKey, field: 3, with: first)] = dict[key]
                    dict[replacingField(newKey, field: 3, with: first + 1)] = dict[key]
                } else {
                    dict[newKey] = dict[key]
                }
                dict[key] = nil
            }
        }
        return dict.pairs
    }

    /// What loading does, by key.
    public struct Plan: Equatable, Sendable {
        /// Model key -> checkpoint key, loaded unchanged.
        public var copied: [String: String] = [:]
        /// Model key -> checkpoint key, loaded after `interpolate_pos_embed` changed its grid.
        public var resized: [String: String] = [:]
        /// Model keys the renamed checkpoint does not set (PyTorch's missing_keys): they keep
        /// the constructor's initialisation. Sorted.
        public var keptAtInit: [String] = []
        /// Renamed keys the model lacks (PyTorch's unexpected_keys), in dict order.
        public var unexpected: [String] = []
        /// Checkpoint keys whose tensor reaches no model key. Sorted.
        public var ignoredSourceKeys: [String] = []
        public init() {}
    }

    /// The loading plan of `script` for a checkpoint with `sourceKeys` and a model whose
    /// state_dict has `modelKeys`; `gridChanges(key)` tells whether interpolate_pos_embed changes
    /// the table stored under that checkpoint key (equal grids are returned unchanged: a copy).
    public static func plan(_ script: Script, sourceKeys: [String], modelKeys: [String], scriptFusion: Int = scriptFusionLayer,
                            gridChanges: (String) -> Bool) throws -> Plan {
        let model = Set(modelKeys)
        var p = Plan()
        var used = Set<String>()
        let resizedSources = Set(resizedKeys(script))
        for (target, source) in try renamed(sourceKeys, script: script, scriptFusion: scriptFusion) {
            guard model.contains(target) else { p.unexpected.append(target); continue }
            used.insert(source)
            if resizedSources.contains(source) && gridChanges(source) { p.resized[target] = source } else { p.copied[target] = source }
        }
        p.keptAtInit = model.filter { p.copied[$0] == nil && p.resized[$0] == nil }.sorted()
        p.ignoredSourceKeys = Set(sourceKeys).subtracting(used).sorted()
        return p
    }

    /// interpolate_pos_embed as the script applies it: for each of `resizedKeys(script)` the
    /// model has (`modelShape`), the checkpoint's table resized to the model's grid (unchanged
    /// when the grids are equal). `checkpoint` names the source in errors.
    public static func resizedPositionTables(_ script: Script, checkpoint: String, shape: (String) -> [Int]?,
                                             floats: (String) throws -> [Float],
                                             modelShape: (String) -> [Int]?) throws -> [String: (shape: [Int], values: [Float])] {
        var out: [String: (shape: [Int], values: [Float])] = [:]
        for key in resizedKeys(script) {
            guard let model = modelShape(key) else { continue }
            guard let source = shape(key) else {
                throw CheckpointError(file: checkpoint, message: "\(key) missing: the \(script.rawValue) loading resizes it to the model's \(model)")
            }
            guard source.count == 3, model.count == 3, source[2] == model[2] else {
                throw CheckpointError(file: checkpoint, message: "\(key): shape \(source) in the checkpoint, the model's is \(model)")
            }
            do {
                out[key] = ([1, model[1], source[2]], try PretrainedImport.resizePositionEmbedding(floats(key), shape: source, toTokens: model[1]))
            } catch let error as CheckpointError {
                throw CheckpointError(file: checkpoint, message: "\(key): \(error.message)")
            }
        }
        return out
    }

    /// Every key of a layout's state dict: parameters and their tied names, buffers, counters,
    /// constants.
    public static func stateDictKeys(_ layout: StateDictLayout) -> [String] {
        var keys: [String] = []
        for a in layout.arenas {
            for e in a.arena.entries { keys += a.arena.names(of: e.name) }
        }
        keys += layout.buffers.map(\.name) + layout.counters.map(\.name) + layout.integerBuffers.map(\.name) + layout.constants.map(\.name)
        return keys
    }

    /// Loads `file` (a checkpoint's state dict in PyTorch names) into a task model's `layout` as
    /// `script` does: resizes the position tables to the model's grid, renames, copies every
    /// model key the renamed dict sets (a shape mismatch is an error, as in PyTorch), and leaves
    /// the others as they are. Returns the plan for logging.
    @discardableResult
    public static func load(_ script: Script, from file: SafetensorsFile, into layout: StateDictLayout, scriptFusion: Int = scriptFusionLayer) throws -> Plan {
        let modelKeys = stateDictKeys(layout)
        var modelTensors: [String: Tensor] = [:]
        for a in layout.arenas {
            for (e, t) in zip(a.arena.entries, a.arena.tensors) { for n in a.arena.names(of: e.name) { modelTensors[n] = t } }
        }
        for (name, t) in layout.buffers { modelTensors[name] = t }

        let resizedValues = try resizedPositionTables(script, checkpoint: file.path, shape: { file[$0]?.shape },
                                                      floats: { try file.floats($0) }, modelShape: { modelTensors[$0]?.shape })
        let p = try plan(script, sourceKeys: file.names, modelKeys: modelKeys, scriptFusion: scriptFusion) { key in
            guard let r = resizedValues[key] else { return false }
            return r.shape != file[key]?.shape
        }
        let sources: [String: String] = p.copied.merging(p.resized) { a, _ in a }
        for (target, source) in sources {
            if let tensor = modelTensors[target] {
                let shape: [Int] = resizedValues[source]?.shape ?? file[source]?.shape ?? []
                let count: Int = shape.reduce(1, *)
                let nonUnit: [Int] = shape.filter { $0 != 1 }
                // PyTorch refuses any size mismatch; a 0-d scalar stored as [1] here is the same tensor.
                guard count == tensor.count, nonUnit == tensor.shape.filter({ $0 != 1 }) else {
                    throw CheckpointError(file: file.path, message: "size mismatch for \(target) (from \(source)): \(shape) in the checkpoint, \(tensor.shape) in the model")
                }
                if let r = resizedValues[source] {
                    try tensor.assign(r.values)
                } else {
                    try tensor.withUnsafeMutableBufferPointer { try file.copyFloats(source, into: $0.baseAddress!, count: tensor.count) }
                }
            } else if let counter = layout.counters.first(where: { $0.name == target }) {
                guard let v = try file.int64s(source).first, v >= 0, v < Int64(counter.limit) else {
                    throw CheckpointError(file: file.path, message: "\(source) outside [0, \(counter.limit)) for \(target)")
                }
                counter.set(Int(v))
            } else if let buffer = layout.integerBuffers.first(where: { $0.name == target }) {
                try buffer.load(from: file, source: source)
            }
            // Constants (position_ids) are the same arange in every checkpoint.
        }
        try StateDict.requireFinite(layout, source: file.path)
        return p
    }
}
