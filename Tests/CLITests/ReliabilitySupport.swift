import Foundation
import XCTest

/// Tiny ALBEF and BLIP configs written by the tests (with single keys overridden), trained runs
/// made from them, and a safetensors editor, for the reliability tests (issue 15).
enum Tiny {
    static var repo: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
    /// The synthetic corpus's 47-token vocabulary (in the repository, so no test skips for want of bert-base's).
    static var vocab: String { repo.appendingPathComponent("configs/synthetic-vocab.txt").path }

    static let albefBert = """
    {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 4, "intermediate_size": 32,
     "vocab_size": 30522, "max_position_embeddings": 32, "fusion_layer": 2, "encoder_width": 16}
    """
    static let blipMed = """
    {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 32,
     "vocab_size": 49, "max_position_embeddings": 32, "encoder_width": 16, "add_cross_attention": true}
    """

    enum Model: String, CaseIterable { case albef, blip }

    /// Top-level keys in order; a value is a scalar text or a flow mapping (ordered pairs).
    enum Value { case text(String), mapping([(String, String)]) }

    static func base(_ model: Model, folder: URL) -> [(String, Value)] {
        var keys: [(String, Value)]
        switch model {
        case .albef:
            keys = [("bert_config", .text(folder.appendingPathComponent("bert_tiny.json").path)),
                    ("image_res", .text("32")), ("vision_width", .text("16")), ("embed_dim", .text("8")),
                    ("mlm_probability", .text("0.15")), ("momentum", .text("0.995")),
                    ("vision", .mapping([("patch_size", "8"), ("embed_dim", "16"), ("depth", "4"), ("num_heads", "2"), ("mlp_ratio", "2")]))]
        case .blip:
            keys = [("model", .text("blip")), ("med_config", .text(folder.appendingPathComponent("med_tiny.json").path)),
                    ("image_size", .text("64")), ("embed_dim", .text("8")), ("max_length", .text("16")), ("momentum", .text("0.995")),
                    ("vision", .mapping([("patch_size", "16"), ("embed_dim", "16"), ("depth", "4"), ("num_heads", "2"), ("mlp_ratio", "2")]))]
        }
        let size = model == .albef ? "32" : "64"
        keys += [("batch_size", .text("4")), ("queue_size", .text("16")),
                 ("img_prune", .mapping([("begin_layer", "[1, 2]"), ("num_act_layers", "[1, 2]"), ("keep_ratio", "[0.75, 0.5]")])),
                 ("optimizer", .mapping([("opt", "adamW"), ("lr", "1e-3"), ("weight_decay", "0.02")])),
                 ("schedular", .mapping([("sched", "cosine"), ("lr", "1e-3"), ("epochs", "2"), ("min_lr", "1e-4"), ("warmup_lr", "1e-4"),
                                         ("warmup_epochs", "1"), ("warmup_step_size", "1")])),
                 ("train", .mapping([("max_steps", "2"), ("checkpoint_every", "2"), ("keep_checkpoints", "2"), ("log_every", "1"),
                                     ("seed", "1"), ("bucket_mb", "1")])),
                 ("data", .mapping([("synthetic", "{images: 8, size: \(size)}"), ("vocab", vocab)]))]
        return keys
    }

    /// The image-size key of the model (`RES` in overrides and expected messages).
    static func resolutionKey(_ model: Model) -> String { model == .albef ? "image_res" : "image_size" }

    /// Config text with `overrides` applied: "key: value" replaces or adds a top-level key,
    /// "section.key: value" replaces or adds a key of a section. `RES` stands for the model's
    /// image-size key.
    static func yaml(_ model: Model, folder: URL, overrides: [String] = []) -> String {
        var keys = base(model, folder: folder)
        for o in overrides {
            let o = o.replacingOccurrences(of: "RES", with: resolutionKey(model))
            let colon = o.firstIndex(of: ":")!
            let path = String(o[..<colon]), value = o[o.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            let parts = path.split(separator: ".", maxSplits: 1).map(String.init)
            if parts.count == 1 {
                if let i = keys.firstIndex(where: { $0.0 == path }) { keys[i].1 = .text(value) } else { keys.append((path, .text(value))) }
            } else if let i = keys.firstIndex(where: { $0.0 == parts[0] }), case .mapping(var pairs) = keys[i].1 {
                if let j = pairs.firstIndex(where: { $0.0 == parts[1] }) { pairs[j].1 = value } else { pairs.append((parts[1], value)) }
                keys[i].1 = .mapping(pairs)
            } else {
                keys.append((parts[0], .mapping([(parts[1], value)])))
            }
        }
        return keys.map { k, v in
            switch v {
            case .text(let t): return "\(k): \(t)"
            case .mapping(let pairs): return "\(k): {" + pairs.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}"
            }
        }.joined(separator: "\n") + "\n"
    }

    /// Writes the BERT/med JSON files next to where configs go, and a config; returns its path.
    @discardableResult
    static func writeConfig(_ model: Model, folder: URL, name: String = "tiny.yaml", overrides: [String] = [], extra: String = "") throws -> String {
        try albefBert.write(to: folder.appendingPathComponent("bert_tiny.json"), atomically: true, encoding: .utf8)
        try blipMed.write(to: folder.appendingPathComponent("med_tiny.json"), atomically: true, encoding: .utf8)
        let path = folder.appendingPathComponent(name).path
        try (yaml(model, folder: folder, overrides: overrides) + extra).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Trains the tiny model 2 steps into `folder/run-<model>`; returns the run folder and config.
    static func train(_ model: Model, folder: URL) throws -> (run: String, config: String) {
        let config = try writeConfig(model, folder: folder, name: "\(model.rawValue).yaml")
        let run = folder.appendingPathComponent("run-\(model.rawValue)").path
        let r = try CLI.run(["train", "--config", config, "--out", run, "--threads", "2"])
        XCTAssertEqual(r.status, 0, "training the tiny \(model) model failed: \(r.stdout)\(r.stderr)")
        return (run, config)
    }

    /// Three PNG images (coloured squares on grey) under `folder/images`, and an annotation file
    /// listing them (with masks for analyze-pruning); returns the annotation path.
    static func images(in folder: URL, entries extra: [[String: Any]] = []) throws -> String {
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("images"), withIntermediateDirectories: true)
        let colours: [(UInt8, UInt8, UInt8)] = [(220, 30, 30), (30, 170, 50), (40, 60, 220)]
        var entries: [[String: Any]] = []
        for (i, c) in colours.enumerated() {
            let inside: (Int, Int) -> Bool = { x, y in (8..<28).contains(x) && (8..<28).contains(y) }
            try TinyPNG.encode(width: 40, height: 40) { x, y in inside(x, y) ? c : (128, 128, 128) }
                .write(to: folder.appendingPathComponent("images/img_\(i + 1).png"))
            try TinyPNG.encode(width: 40, height: 40) { x, y in inside(x, y) ? (1, 1, 1) : (0, 0, 0) }
                .write(to: folder.appendingPathComponent("images/mask_\(i + 1).png"))
            entries.append(["image": "images/img_\(i + 1).png", "mask": "images/mask_\(i + 1).png",
                            "caption": ["a square in the middle", "a square"]])
        }
        let path = folder.appendingPathComponent("annotations.json").path
        try JSONSerialization.data(withJSONObject: entries + extra).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// Reads and rewrites safetensors files (F32 tensors only) without linking the library, so a
/// test can plant NaN in one tensor.
enum TinySafetensors {
    /// The header and the byte offset where the data starts.
    static func header(_ data: Data) throws -> ([String: Any], Int) {
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        return (json, 8 + n)
    }

    /// A copy of `source` at `destination` with value `index` of tensor `name` set to `value`.
    static func plant(_ value: Float, in name: String, at index: Int = 0, source: String, destination: String) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: source))
        let (h, start) = try header(data)
        let entry = try XCTUnwrap(h[name] as? [String: Any], "\(name) not in \(source)")
        XCTAssertEqual(entry["dtype"] as? String, "F32")
        let offset = start + ((entry["data_offsets"] as! [Int])[0]) + 4 * index
        withUnsafeBytes(of: value.bitPattern.littleEndian) { data.replaceSubrange(offset..<(offset + 4), with: $0) }
        try data.write(to: URL(fileURLWithPath: destination))
    }
}

extension TinySafetensors {
    struct Tensor { var name: String; var dtype: String; var shape: [Int]; var bytes: Data }

    /// Every tensor of a file, in file order.
    static func read(_ path: String) throws -> [Tensor] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let (h, start) = try header(data)
        return h.compactMap { name, v -> (Int, Tensor)? in
            guard name != "__metadata__", let e = v as? [String: Any], let o = e["data_offsets"] as? [Int] else { return nil }
            return (o[0], Tensor(name: name, dtype: e["dtype"] as! String, shape: e["shape"] as! [Int],
                                 bytes: data.subdata(in: (start + o[0])..<(start + o[1]))))
        }.sorted { $0.0 < $1.0 }.map(\.1)
    }

    static func write(_ tensors: [Tensor], to path: String) throws {
        var header: [String: Any] = [:], body = Data()
        for t in tensors {
            header[t.name] = ["dtype": t.dtype, "shape": t.shape, "data_offsets": [body.count, body.count + t.bytes.count]]
            body += t.bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        try (out + json + body).write(to: URL(fileURLWithPath: path))
    }
}
