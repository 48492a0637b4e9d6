import Foundation
import Safetensors

/// The `albef-load-*` reference case (shared/reference/README.md): the official task scripts'
/// checkpoint loading on a tiny pre-training state dict. Recognised by `load_args.json` and
/// `load.safetensors`; every size comes from the files (resolutions from load_args.json, grids
/// from the `interp.<g0>to<g1>` names, widths from the tensors).
///
/// Outputs (names of load.safetensors): the inputs as given (`pretrain.*`, `interp.*.in`);
/// `interp.<g0>to<g1>.out` = interpolate_pos_embed of `.in` to a g1 x g1 grid; for each script,
/// `<script>.visual_encoder[_m].pos_embed` = what the task model holds after loading (the text-
/// assignment model at `res_from`, the others at `res_to`; NLVR2 loads the TA model's state).
/// Each `keymap.<script>.json` present is also re-derived from its key lists and compared.
public enum CheckpointLoadCase {
    static let argsFile = "load_args.json", tensorsFile = "load.safetensors"

    public static func isCase(_ dir: String) -> Bool {
        [argsFile, tensorsFile].allSatisfy { FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent($0)) }
    }

    /// The file holding the case's expected tensors.
    public static func expectedPath(_ dir: String) -> String { (dir as NSString).appendingPathComponent(tensorsFile) }

    struct Args {
        var resFrom: Int, resTo: Int, patch: Int
    }

    static func readArgs(_ dir: String) throws -> Args {
        let path = (dir as NSString).appendingPathComponent(argsFile)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        struct Raw: Decodable {
            var res_from: Int, res_to: Int, patch: Int?
        }
        let raw: Raw
        do { raw = try JSONDecoder().decode(Raw.self, from: data) } catch {
            throw CheckpointError(file: path, message: "expected a JSON object with integers res_from, res_to (and optionally patch): \(error)")
        }
        let a = Args(resFrom: raw.res_from, resTo: raw.res_to, patch: raw.patch ?? 16)
        for (key, v) in [("res_from", a.resFrom), ("res_to", a.resTo), ("patch", a.patch)] where !(1...65536).contains(v) {
            throw CheckpointError(file: path, message: "\(key) must be in 1...65536, got \(v)")
        }
        for (key, res) in [("res_from", a.resFrom), ("res_to", a.resTo)] where res % a.patch != 0 {
            throw CheckpointError(file: path, message: "\(key) \(res) is not a multiple of the patch size \(a.patch)")
        }
        return a
    }

    /// Runs every part of the case.
    public static func run(_ dir: String) throws -> ReferenceStep.Output {
        let args = try readArgs(dir)
        let file = try SafetensorsFile(path: expectedPath(dir))
        var out = ReferenceStep.Output()
        out.writesEveryOutput = true
        for group in ["inputs", "interpolation", "loaded pos_embed"] { out.absoluteTolerance[group] = 1e-5 }
        func add(_ name: String, _ shape: [Int], _ values: [Float], group: String) {
            out.floats[name] = (shape, values)
            out.groups[name] = group
        }

        // interpolate_pos_embed alone, on the grids the names give.
        let interpName = try NSRegularExpression(pattern: #"^interp\.(\d+)to(\d+)\.in$"#)
        for e in file.entries {
            if e.name.hasPrefix("pretrain.") { add(e.name, e.shape, try file.floats(e.name), group: "inputs") }
            let range = NSRange(e.name.startIndex..., in: e.name)
            guard let m = interpName.firstMatch(in: e.name, range: range) else { continue }
            let field = { (i: Int) in Int(e.name[Range(m.range(at: i), in: e.name)!]) }
            guard let g0 = field(1), let g1 = field(2), (1...4096).contains(g0), (1...4096).contains(g1) else {
                throw CheckpointError(file: file.path, message: "\(e.name): grid sizes must be integers in 1...4096")
            }
            guard e.shape.count == 3, e.shape[0] == 1, e.shape[1] == 1 + g0 * g0 else {
                throw CheckpointError(file: file.path, message: "\(e.name): shape \(e.shape), expected [1, \(1 + g0 * g0), D] for a \(g0)x\(g0) grid")
            }
            let values = try file.floats(e.name)
            add(e.name, e.shape, values, group: "inputs")
            let resized: [Float]
            do { resized = try PretrainedImport.resizePositionEmbedding(values, shape: e.shape, toTokens: 1 + g1 * g1) } catch let error as CheckpointError {
                throw CheckpointError(file: file.path, message: "\(e.name): \(error.message)")
            }
            add("interp.\(g0)to\(g1).out", [1, 1 + g1 * g1, e.shape[2]], resized, group: "interpolation")
        }

        // The scripts on the pre-training position tables.
        var pretrain: [String: (shape: [Int], values: [Float])] = [:]
        for e in file.entries where e.name.hasPrefix("pretrain.") {
            pretrain[String(e.name.dropFirst("pretrain.".count))] = (e.shape, try file.floats(e.name))
        }
        guard let online = pretrain["visual_encoder.pos_embed"] else {
            throw CheckpointError(file: file.path, message: "pretrain.visual_encoder.pos_embed missing")
        }
        let width = online.shape.last ?? 0
        func tokens(_ res: Int) -> Int { let g = res / args.patch; return 1 + g * g }
        func load(_ script: ALBEFTaskCheckpoint.Script, from source: [String: (shape: [Int], values: [Float])],
                  resolution: Int, momentum: Bool) throws -> [String: (shape: [Int], values: [Float])] {
            let modelKeys = ["visual_encoder.pos_embed"] + (momentum ? ["visual_encoder_m.pos_embed"] : [])
            let modelShape = [1, tokens(resolution), width]
            let resized = try ALBEFTaskCheckpoint.resizedPositionTables(
                script, checkpoint: file.path, shape: { source[$0]?.shape },
                floats: { source[$0]!.values }, modelShape: { modelKeys.contains($0) ? modelShape : nil })
            let plan = try ALBEFTaskCheckpoint.plan(script, sourceKeys: Array(source.keys), modelKeys: modelKeys) { key in
                guard let r = resized[key] else { return false }
                return r.shape != source[key]?.shape
            }
            var loaded: [String: (shape: [Int], values: [Float])] = [:]
            for (target, src) in plan.copied.merging(plan.resized, uniquingKeysWith: { a, _ in a }) {
                let t = resized[src] ?? source[src]!
                guard t.shape == modelShape else {
                    throw CheckpointError(file: file.path, message: "\(script.rawValue): size mismatch for \(target): \(t.shape) loaded, \(modelShape) in the model")
                }
                loaded[target] = t
                add("\(script.rawValue).\(target)", t.shape, t.values, group: "loaded pos_embed")
            }
            return loaded
        }
        for script in [ALBEFTaskCheckpoint.Script.retrieval, .vqa, .ve] {
            _ = try load(script, from: pretrain, resolution: args.resTo, momentum: true)
        }
        // NLVR2: the text-assignment model (pre-training resolution, no momentum model), then
        // the NLVR2 model from its state.
        let textAssignment = try load(.nlvrTextAssignment, from: pretrain, resolution: args.resFrom, momentum: false)
        _ = try load(.nlvr, from: textAssignment, resolution: args.resTo, momentum: true)

        out.extraResults.append(try KeymapCheck.run(dir))
        return out
    }
}
