import ELIPConfig
import ELIPImage
import ELIPText
import Foundation
import ELIPObjectives
import ELIPPruning

/// A model's configuration as decoded from a config file: plain values, checked.
public protocol ModelConfig {
    /// Registry name of the model ("albef").
    var kind: String { get }
    /// Image side in pixels.
    var imageRes: Int { get set }
    /// Pruning schedule (nil: no pruning).
    var prune: PruneConfig? { get set }
    /// Patches of the original image (N0).
    var patchCount: Int { get }
    /// The base of the keep counts K_j = floor(base · ratio_j): N0 unless the official code
    /// hard-codes another (BLIP: (image_size // 16)², METER: (resolution_before // 32)²).
    var keepBase: Int { get }
    /// Ids of the tokenizer's special tokens ([PAD], [CLS], [MASK], ...).
    var specialTokens: SpecialTokens { get set }
    /// Rows of the word-embedding table.
    var vocabularySize: Int { get }
    /// Longest caption (tokens) the text encoder takes.
    var maxTextPositions: Int { get }
    /// How the model's captions are cleaned, framed, limited and padded (its official dataset's rules).
    var captionStyle: CaptionStyle { get }
    /// The RandAugment of its official pre-training transform.
    var trainingRandAugment: RandAugment { get }
    /// Whether captions are tokenised with RoBERTa's byte-level BPE (vocab.json + merges.txt)
    /// rather than WordPiece (vocab.txt).
    var usesByteLevelBPE: Bool { get }
    /// Tokens the model adds after the tokenizer's vocabulary (BLIP: [DEC], [ENC]).
    var addedTokenCount: Int { get }
    /// Columns of the contrastive feature queue (nil: the model keeps none). Each step writes
    /// every rank's batch into it, so it must hold at least that many.
    var featureQueueSize: Int? { get }
    /// Re-checks the values after a change (`imageRes`, say); `file` names the source in errors.
    func validate(file: String) throws
    /// A model with random weights laid out for this configuration.
    func makeModel() throws -> any TrainableModel
    /// One line for logs ("ALBEF, ViT 12x768 at 256 px, ...").
    var summary: String { get }
}

extension ModelConfig {
    public var keepBase: Int { patchCount }
    public var usesByteLevelBPE: Bool { false }
    public var addedTokenCount: Int { 0 }
    public var featureQueueSize: Int? { nil }
}

/// Where a config file's relative paths (e.g. `bert_config`) are looked up.
public struct ConfigLocation {
    /// Folders tried in order for a relative path (the config file's own folder first).
    public var searchFolders: [String]
    public init(searchFolders: [String]) { self.searchFolders = searchFolders }

    /// The file `path` (the value of `key` in `section`): as given, else in each search folder,
    /// else by its file name alone there; an error listing every place tried.
    public func resolve(_ path: String, key: String, in section: ConfigSection) throws -> String {
        var candidates = [path]
        if !path.hasPrefix("/") {
            let name = (path as NSString).lastPathComponent
            for d in searchFolders {
                candidates.append((d as NSString).appendingPathComponent(path))
                candidates.append((d as NSString).appendingPathComponent(name))
            }
        }
        var seen = Set<String>()
        candidates = candidates.filter { seen.insert($0).inserted }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw section.error(key, "\(path) not found (tried \(candidates.joined(separator: ", ")))")
        }
        return found
    }
}

/// One kind of model: its name, how its configuration is read, its built-in presets and how its
/// reference cases are replayed.
public struct ModelKind {
    public let name: String
    /// One line for `--help` and errors.
    public let about: String
    /// Reads the model's keys from a config file's top-level section (not yet validated: the
    /// caller rejects unknown keys first, then calls `validate`).
    public let readConfig: (ConfigSection, ConfigLocation) throws -> any ModelConfig
    /// Built-in full-size configurations by name (e.g. for `bench train-step --preset`).
    public let presets: [String: () -> any ModelConfig]
    /// Loads a reference case folder (official step recorded by PyTorch) for replay.
    public let referenceCase: (String) throws -> ReferenceCase
    /// True when a folder looks like one of this model's reference cases.
    public let isReferenceCase: (String) -> Bool
}

/// Every model this build knows. Adding a backbone: its file(s) plus one line here.
public enum ModelRegistry {
    public static let kinds: [ModelKind] = [
        ALBEFModel.kind,
        BLIPModel.kind,
        ALBEFVEModel.kind,
        ALBEFRetrievalModel.kind,
        ALBEFVQAModel.kind,
        ALBEFNLVRModel.kind,
        ALBEFNLVRTextAssignmentModel.kind,
        METERModel.kind,
    ]

    /// The model called `name`; otherwise an error listing the known ones.
    public static func kind(named name: String) throws -> ModelKind {
        guard let k = kinds.first(where: { $0.name == name }) else {
            throw ModelRegistryError("unknown model '\(name)' (known: \(kinds.map(\.name).joined(separator: ", ")))")
        }
        return k
    }

    /// The preset called `name` of any model.
    public static func preset(named name: String) throws -> any ModelConfig {
        for k in kinds { if let p = k.presets[name] { return p() } }
        let all = kinds.flatMap { $0.presets.keys }.sorted()
        throw ModelRegistryError("unknown preset '\(name)' (known: \(all.joined(separator: ", ")))")
    }

    /// The model whose reference case `dir` holds (by its files), or the one called `name`.
    public static func referenceKind(_ dir: String, name: String? = nil) throws -> ModelKind {
        if let name { return try kind(named: name) }
        guard let k = kinds.first(where: { $0.isReferenceCase(dir) }) else {
            throw ModelRegistryError("\(dir): not a reference case of any known model (known: \(kinds.map(\.name).joined(separator: ", "))); pass --model")
        }
        return k
    }

    /// The configuration in a config file's top-level section: `model:` picks the kind (default
    /// albef), which reads its keys.
    public static func readConfig(_ root: ConfigSection, location: ConfigLocation, defaultModel: String = "albef") throws -> any ModelConfig {
        let names = kinds.map(\.name)
        let name = try root.choice("model", names) ?? defaultModel
        return try kind(named: name).readConfig(root, location)
    }
}

public struct ModelRegistryError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}
