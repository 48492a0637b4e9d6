import ELIPDistributed
import ELIPModel
import ELIPTensor
import ELIPText
import Foundation

/// The images to caption, each with the COCO image id its result carries. Read from either
/// - a COCO captions file (`{"images": [{"id", "file_name"}], "annotations": [...]}`), the file
///   `elip eval-caption` scores against, or
/// - a BLIP/ALBEF annotation list (`[{"image": path, "image_id"?: int, ...}]`, repeated images
///   once): without `image_id`, the id is what BLIP's coco_karpathy_caption_eval derives, the
///   digits after the file name's last "_" (`COCO_val2014_000000391895.jpg` -> 391895).
public struct CaptionImageSet {
    public let annotationFile: String
    public let imageIds: [Int]
    /// Image paths as written, and resolved against the image root.
    public let imageNames: [String]
    public let imagePaths: [String]
    /// True when the images are a folder's files rather than an annotation's entries.
    public let fromFolder: Bool

    public init(annotationFile: String, imageIds: [Int], imageNames: [String], imagePaths: [String], fromFolder: Bool = false) {
        self.annotationFile = annotationFile
        self.imageIds = imageIds
        self.imageNames = imageNames
        self.imagePaths = imagePaths
        self.fromFolder = fromFolder
    }

    /// Every .jpg/.jpeg/.png file directly in `folder`, sorted by name. Ids by BLIP's rule when
    /// every name follows it (COCO files), otherwise 1, 2, ... in that order.
    public static func folder(_ folder: String) throws -> CaptionImageSet {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
            throw RetrievalError("\(folder): cannot list the folder (\(error.localizedDescription))")
        }
        let images = names.filter { ["jpg", "jpeg", "png"].contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
        guard !images.isEmpty else { throw RetrievalError("\(folder): no .jpg, .jpeg or .png files") }
        let blip = images.map(blipImageId)
        var ids = blip.compactMap { $0 }
        if ids.count != images.count || Set(ids).count != ids.count { ids = Array(1...images.count) }
        // A symlink in the folder may not lead out of it (as for annotation files' images).
        let root = try ImageRoot(folder)
        let paths = try images.map { try root.file($0, what: folder) }
        return CaptionImageSet(annotationFile: folder, imageIds: ids, imageNames: images, imagePaths: paths, fromFolder: true)
    }

    public static func load(annotation path: String, imageRoot: String) throws -> CaptionImageSet {
        guard let data = EvalFile.contents(path) else {
            throw RetrievalError("\(path): cannot read the annotation file (\(EvalFile.reason(path)))")
        }
        let node: Any
        do { node = try JSONSerialization.jsonObject(with: data) } catch {
            throw RetrievalError("\(path): not valid JSON (\(error.localizedDescription))")
        }
        var ids: [Int] = [], names: [String] = []
        var seenIds: [Int: String] = [:], seenNames = Set<String>()
        func add(_ id: Int, _ name: String, _ what: String) throws {
            if seenNames.contains(name) {
                guard seenIds[id] == name else { throw RetrievalError("\(path): \(what): image \(name) appears again with another image id \(id)") }
                return
            }
            if let other = seenIds[id] { throw RetrievalError("\(path): \(what): image id \(id) is also the id of \(other)") }
            seenIds[id] = name; seenNames.insert(name)
            ids.append(id); names.append(name)
        }
        if let coco = node as? [String: Any] {
            guard let images = coco["images"] as? [Any] else {
                throw RetrievalError("\(path): a JSON object must be a COCO captions file with an \"images\" list")
            }
            for (k, e) in images.enumerated() {
                guard let d = e as? [String: Any], let id = intValue(d["id"]) else {
                    throw RetrievalError("\(path): images[\(k)] has no integer \"id\"")
                }
                guard let name = d["file_name"] as? String, !name.isEmpty else {
                    throw RetrievalError("\(path): images[\(k)] (id \(id)) has no \"file_name\": the image cannot be found")
                }
                try add(id, name, "images[\(k)]")
            }
        } else if let entries = node as? [Any] {
            for (k, e) in entries.enumerated() {
                guard let d = e as? [String: Any], let name = d["image"] as? String, !name.isEmpty else {
                    throw RetrievalError("\(path): entry \(k) has no \"image\" string")
                }
                let id: Int
                if let given = d["image_id"] {
                    guard let v = intValue(given) else { throw RetrievalError("\(path): entry \(k) (\(name)): \"image_id\" is not an integer") }
                    id = v
                } else {
                    guard let v = blipImageId(name) else {
                        throw RetrievalError("\(path): entry \(k) (\(name)) has no \"image_id\" and its file name does not end in _<digits> (BLIP's rule); add \"image_id\"")
                    }
                    id = v
                }
                try add(id, name, "entry \(k)")
            }
        } else {
            throw RetrievalError("\(path): expected a COCO captions object or a list of {\"image\": ...} entries")
        }
        guard !names.isEmpty else { throw RetrievalError("\(path): no images") }
        let root = try ImageRoot(imageRoot)
        var entryOfFile: [String: String] = [:]
        let paths = try names.map { name -> String in
            let file = try root.file(name, what: path)
            // Two names for one file (a/../x.jpg and x.jpg, or a symlink) would caption it twice.
            if let other = entryOfFile[file], other != name {
                throw RetrievalError("\(path): images \(other) and \(name) are the same file \(file); list each image once")
            }
            entryOfFile[file] = name
            return file
        }
        return CaptionImageSet(annotationFile: path, imageIds: ids, imageNames: names, imagePaths: paths)
    }

    /// BLIP's id for a COCO file name: the digits after the last "_" of the name without extension.
    static func blipImageId(_ name: String) -> Int? {
        let stem = ((name as NSString).lastPathComponent as NSString).deletingPathExtension
        guard let digits = stem.split(separator: "_", omittingEmptySubsequences: false).last,
              !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return Int(digits)
    }

    private static func intValue(_ v: Any?) -> Int? {
        // JSON true/false arrive as NSNumber too; their objCType is "c".
        guard let n = v as? NSNumber, String(cString: n.objCType) != "c" else { return nil }
        let d = n.doubleValue
        guard d.isFinite, d == d.rounded(), abs(d) < 9e15 else { return nil }
        return Int(d)
    }
}

/// Writes captions with a `CaptionModel` (BLIP's evaluation: image resized to res x res, the
/// prompt's text removed from the decoded caption). Under MPI, batches b with b % W == rank are
/// captioned locally and shared; a batch holds the same images at any world size, so every rank
/// count writes the same captions as one process.
public struct CaptionGenerator {
    public struct Options {
        /// BLIP's captioning prompt; its characters are cut from the front of each decoded caption.
        public var prompt = "a picture of "
        public var decoding = CaptionDecoding()
        public var batchSize = 16
        public init() {}
    }

    let model: any CaptionModel
    let tokenizer: BertTokenizer
    let comm: Communicator
    public var progress: (String) -> Void = { _ in }

    public init(model: any CaptionModel, tokenizer: BertTokenizer, communicator: Communicator) {
        self.model = model
        self.tokenizer = tokenizer
        self.comm = communicator
    }

    /// One caption per image of `set`, in its order (the same on every rank).
    public func caption(_ set: CaptionImageSet, options: Options = Options()) throws -> [String] {
        let n = set.imagePaths.count, size = max(1, options.batchSize), res = model.modelConfig.imageRes
        let batches = (n + size - 1) / size
        let promptIds = tokenizer.tokenIds(options.prompt).map(Int.init)
        let promptScalars = options.prompt.unicodeScalars.count
        let eos = Int(tokenizer.specialIds.sep)
        var captions = [String](repeating: "", count: n)
        let start = Date()
        var done = 0
        for b in 0..<batches {
            let rows = (b * size)..<min(n, (b + 1) * size)
            // The owner's captions, or its error: a failing rank must not leave the others waiting.
            var local: BatchCaptions? = nil
            if b % comm.size == comm.rank {
                do {
                    var pixels: [Float] = []
                    pixels.reserveCapacity(rows.count * 3 * res * res)
                    for i in rows { try EvalImage.load(set.imagePaths[i], res: res, into: &pixels) }
                    let images = try Tensor(pixels, shape: [rows.count, 3, res, res])
                    let ids = try model.generateCaptions(images, promptIds: promptIds, eos: eos, options: options.decoding)
                    // BLIP: decode(skip_special_tokens) then caption[len(prompt):] (code points).
                    local = BatchCaptions(captions: ids.map { String(String.UnicodeScalarView(tokenizer.decode($0).unicodeScalars.dropFirst(promptScalars))) })
                } catch {
                    local = BatchCaptions(error: "\(error)")
                }
            }
            let batch: BatchCaptions = comm.size > 1 ? try comm.broadcastValue(local, root: b % comm.size) : local!
            if let error = batch.error { throw RetrievalError(comm.size > 1 ? "rank \(b % comm.size): \(error)" : error) }
            let shared = batch.captions ?? []
            guard shared.count == rows.count else {
                throw RetrievalError("internal: batch \(b) came back with \(shared.count) captions for \(rows.count) images")
            }
            for (i, c) in zip(rows, shared) { captions[i] = c }
            done += rows.count
            let seconds = Date().timeIntervalSince(start)
            progress(String(format: "caption: %d/%d images, %.2f images/s", done, n, Double(done) / max(seconds, 1e-9)))
        }
        return captions
    }

    struct BatchCaptions: Codable {
        var captions: [String]?
        var error: String?
    }

    /// COCO results format: `[{"image_id": id, "caption": text}]`, in the set's order; images
    /// from a folder also carry their `file_name` (the ids are not COCO's then).
    public static func resultsJSON(_ set: CaptionImageSet, captions: [String]) throws -> Data {
        let list: [[String: Any]] = captions.indices.map { i in
            var r: [String: Any] = ["image_id": set.imageIds[i], "caption": captions[i]]
            if set.fromFolder { r["file_name"] = set.imageNames[i] }
            return r
        }
        return try JSONSerialization.data(withJSONObject: list, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
