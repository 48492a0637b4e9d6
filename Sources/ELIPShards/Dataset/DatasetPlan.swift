import ELIPText
import Foundation

/// The deterministic list of items a build will store, produced by scanning every input without
/// decoding any image. Every rank of a distributed build computes the same plan (same inputs in
/// the same order), so item i goes to shard i % N everywhere.
///
/// Order: annotation files in the order given, entries in file order; then tar archives (each
/// argument expanded: a directory's `*.tar` sorted by name, a glob's matches sorted), members in
/// archive order.
///
/// Checks made here (cheap, no image I/O): entry schema, captions (empty, whitespace-only, or
/// empty after ALBEF's pre_caption; non-UTF-8), absolute paths without permission, `..` escaping
/// the image root, duplicates, tar structure (truncated archives, groups without image or text).
/// Checks that need the image file (missing, unreadable, symlink escapes, decoding) happen in the
/// builder, on the rank that owns the item's shard.
///
/// Duplicates: an annotation entry for an image path already seen adds its new captions to the
/// first record (ALBEF's COCO and VG files list one entry per caption); an entry that adds no new
/// caption is rejected as `duplicate`. In tar shards a repeated key is a duplicate (first kept).
public struct DatasetPlan: Sendable {
    public enum Location: Sendable, Equatable {
        /// A file path (absolute, normalised). `confined`: must resolve (symlinks included) inside
        /// the image root.
        case file(path: String, confined: Bool)
        /// A tar member's data.
        case tarMember(archive: Int, offset: Int, size: Int)
    }

    public struct Item: Sendable, Equatable {
        public var source: Int
        /// The image path as written in the annotation, or the tar key.
        public var item: String
        public var sourceID: String
        public var captions: [String]
        public var location: Location
        /// One class label per caption (task annotations), or empty.
        public var labels: [Int] = []
        /// VQA: the image's questions (`captions` holds their texts), or empty.
        public var questions: [VQARecord.Question] = []
    }

    /// What an annotation file's entries hold.
    public enum AnnotationFormat: String, Sendable, CaseIterable {
        /// Pre-training: `{"image": path, "caption": str or [str]}`; entries of one image merge.
        case captions
        /// SNLI-VE (ve_dataset.py): `{"image": Flickr30K id without ".jpg", "sentence": str,
        /// "label": "entailment" | "neutral" | "contradiction"}`; the entries of one image form one
        /// record (image stored once) holding every sentence with its label 2 / 1 / 0.
        case ve
        /// NLVR2 (nlvr_dataset.py): `{"images": [left, right], "sentence": str, "label": "True" |
        /// "False"}`; every distinct image becomes one record without captions, every entry a
        /// pair (`pairs`) referencing its two images (DatasetPlan+NLVR2.swift).
        case nlvr2
        /// Retrieval training (caption_dataset.py re_train_dataset): `{"image": path, "caption":
        /// str, "image_id": any}`, one entry per caption; the entries of one image form one record
        /// holding every caption with its label = the image index (`image_id` numbered in order of
        /// first appearance over all files, as the official `img_ids` dict).
        case retrieval
        /// VQA (vqa_dataset.py): `{"question_id", "question", "answer", "image", "dataset"}`,
        /// "vqa" with the human answers (a list), "vg" with one answer string; one record per
        /// image holding all its questions (VQARecord).
        case vqa

        /// Task formats are training samples per caption (the loader yields each caption once per
        /// epoch); `captions` is pre-training (one random caption of a record per sample).
        public var isTask: Bool { self != .captions }
        /// Its records hold the training samples as captions (each with its label or answers):
        /// the manifest lists how many per record. NLVR2's image records hold none (its samples
        /// are the pairs).
        public var samplesAreCaptions: Bool { isTask && self != .nlvr2 }
    }

    /// SNLI-VE's label strings and class ids (ve_dataset.py).
    public static let veLabels = ["entailment": 2, "neutral": 1, "contradiction": 0]

    public struct Source: Sendable, Equatable {
        public var path: String
        public var kind: String
        public var entries = 0
        public var rejected = 0
        public var mergedEntries = 0
        public var error: String?
        /// Entries in the unreadable part of the source: counted (annotation entries before the
        /// damage, none of which is used) or estimated (a tar's unread bytes at the average size
        /// of the groups read before the damage).
        public var lostEntries = 0
        public var lostEntriesEstimated = false
        /// Nothing of the source could be used (unreadable, empty, malformed, damaged at its start).
        public var wholeSourceLost = false
    }

    public var items: [Item] = []
    public var format = AnnotationFormat.captions
    public var sources: [Source] = []
    /// Rejects found while scanning (the same on every rank).
    public var rejects: [RejectRecord] = []
    public var droppedCaptions = 0
    /// NLVR2 pairs (format nlvr2): the items are their images.
    public var pairs: [PlannedPair] = []
    /// Tar archive paths, indexed by `Location.tarMember.archive`.
    public var archives: [String] = []
    /// The image root with symlinks resolved (confinement checks compare against it).
    public var imageRootResolved: String?
    /// Item index by file identity (device, inode): a symlink or hard link to an image already
    /// planned is the same image, not a new record.
    var itemByFileIdentity: [String: Int] = [:]
    /// Retrieval: the index of each `image_id` (its JSON text) in order of first appearance.
    var retrievalImageIndex: [String: Int] = [:]
    /// VQA: where each question id was first given.
    var vqaQuestionIDs: [Int: String] = [:]

    /// Scans the inputs. Throws only for unusable arguments (e.g. a missing image root); bad
    /// inputs become rejects and source errors.
    public static func scan(annotationFiles: [String], tarInputs: [String], imageRoot: String?,
                            allowAbsolutePaths: Bool, format: AnnotationFormat = .captions) throws -> DatasetPlan {
        var plan = DatasetPlan()
        plan.format = format
        if format != .captions && !tarInputs.isEmpty {
            throw DatasetError.invalidArgument("--format \(format.rawValue) reads annotation files only, not tar shards")
        }
        var rootAbs: String? = nil
        if let root = imageRoot {
            let abs = absolute(root)
            guard FileOps.isDirectory(abs) else { throw DatasetError.invalidArgument("image root \(root) is not a directory") }
            guard let real = realPath(abs) else { throw DatasetError.invalidArgument("cannot resolve the image root \(root)") }
            rootAbs = normalizeAbsolute(abs)
            plan.imageRootResolved = real
        } else if !annotationFiles.isEmpty {
            throw DatasetError.invalidArgument("--image-root is required with --annotations")
        }
        var seenPaths: [String: Int] = [:]
        for file in annotationFiles {
            plan.scanAnnotations(file, root: rootAbs, allowAbsolute: allowAbsolutePaths, seen: &seenPaths)
        }
        var seenArchives = Set<String>()
        for input in tarInputs {
            let (paths, error) = expandTarInput(input)
            if let error {
                plan.sources.append(Source(path: input, kind: "tar", error: error, wholeSourceLost: true))
                plan.rejects.append(RejectRecord(source: input, item: "", reason: .unreadableSource, detail: error))
                continue
            }
            for p in paths {
                let key = realPath(absolute(p)) ?? absolute(p)
                if seenArchives.contains(key) { continue }    // the same archive listed twice
                seenArchives.insert(key)
                plan.scanTar(p)
            }
        }
        return plan
    }

    // MARK: annotations

    mutating func reject(_ source: Int, _ item: String, _ reason: RejectReason, _ detail: String) {
        rejects.append(RejectRecord(source: sources[source].path, item: item, reason: reason, detail: detail))
        sources[source].rejected += 1
    }

    private mutating func scanAnnotations(_ file: String, root: String?, allowAbsolute: Bool, seen: inout [String: Int]) {
        let s = sources.count
        sources.append(Source(path: file, kind: "annotations"))
        let bytes: [UInt8]
        do { bytes = try FileOps.readFile(file) } catch {
            sources[s].error = "\(error)"
            sources[s].wholeSourceLost = true
            rejects.append(RejectRecord(source: file, item: "", reason: .unreadableSource, detail: "\(error)"))
            return
        }
        // Pass 1: syntax only, so that a malformed file contributes nothing (it counts as failed).
        // The entries complete before the damage are counted: that is what the file held at least.
        var complete = 0
        do {
            try JSONReader.forEachElement(ofTopLevelArrayIn: bytes) { _, _ in complete += 1 }
        } catch {
            let what: String
            if let e = error as? JSONSyntaxError {
                what = DatasetError.malformedJSON(file: file, offset: e.offset, line: e.line, column: e.column, message: e.message).description
            } else {
                what = "\(error)"
            }
            let lost = "; the whole file is unused: at least \(complete) entries (those complete before the damage) are lost"
            sources[s].error = what + lost
            sources[s].lostEntries = complete
            sources[s].wholeSourceLost = true
            rejects.append(RejectRecord(source: file, item: "", reason: .malformedJSON, detail: "\((error as? JSONSyntaxError)?.description ?? what)\(lost)"))
            return
        }
        let base = (file as NSString).lastPathComponent
        try? JSONReader.forEachElement(ofTopLevelArrayIn: bytes) { index, entry in
            self.addAnnotationEntry(entry, index: index, source: s, base: base, root: root,
                                    allowAbsolute: allowAbsolute, seen: &seen)
        }
    }

    private mutating func addAnnotationEntry(_ entry: JSONValue, index: Int, source s: Int, base: String, root: String?,
                                             allowAbsolute: Bool, seen: inout [String: Int]) {
        sources[s].entries += 1
        if format == .nlvr2 {
            return addNLVREntry(entry, index: index, source: s, base: base, root: root, allowAbsolute: allowAbsolute, seen: &seen)
        }
        let label: String
        if case let .string(img)? = entry["image"] { label = img } else { label = "#\(index)" }
        guard case .object = entry else {
            return reject(s, label, .badAnnotation, "entry \(index) is not an object")
        }
        guard case let .string(image)? = entry["image"] else {
            return reject(s, label, .badAnnotation, "entry \(index) has no string \"image\" field")
        }
        guard !image.isEmpty, !image.utf8.contains(0) else {
            return reject(s, label, .badAnnotation, "entry \(index) has an empty or NUL-containing image path")
        }
        if format == .ve {
            return addVEEntry(entry, image: image, index: index, source: s, base: base, root: root, allowAbsolute: allowAbsolute, seen: &seen)
        }
        if format == .retrieval {
            return addRetrievalEntry(entry, image: image, index: index, source: s, base: base, root: root, allowAbsolute: allowAbsolute, seen: &seen)
        }
        if format == .vqa {
            return addVQAEntry(entry, image: image, index: index, source: s, base: base, root: root,
                               allowAbsolute: allowAbsolute, seen: &seen)
        }
        let rawCaptions: [JSONValue]
        switch entry["caption"] {
        case let .array(a)?: rawCaptions = a
        case let c? where c != .null: rawCaptions = [c]
        default: return reject(s, label, .badAnnotation, "entry \(index) has no \"caption\" field")
        }
        var captions: [String] = []
        var notUTF8 = 0, empty = 0, wrongType = 0
        for c in rawCaptions {
            switch c {
            case let .string(t):
                let trimmed = t.trimmingCharacters(in: .whitespacesAndNewlines)
                if preCaption(trimmed).isEmpty { empty += 1 } else if !captions.contains(trimmed) { captions.append(trimmed) }
            case .invalidUTF8String: notUTF8 += 1
            default: wrongType += 1
            }
        }
        if captions.isEmpty {
            if notUTF8 > 0 {
                return reject(s, label, .captionNotUTF8, "entry \(index): caption is not valid UTF-8 (or holds a lone UTF-16 surrogate escape)")
            }
            if wrongType > 0 && empty == 0 { return reject(s, label, .badAnnotation, "entry \(index): caption is not a string or list of strings") }
            return reject(s, label, .emptyCaption, "entry \(index): no caption with words left after cleaning")
        }
        guard let (key, confined) = resolve(image, label: label, source: s, root: root, allowAbsolute: allowAbsolute) else { return }
        let identity = Self.fileIdentity(key)
        if let first = seen[key] ?? identity.flatMap({ itemByFileIdentity[$0] }) {
            let new = captions.filter { !items[first].captions.contains($0) }
            if new.isEmpty {
                let via = seen[key] == nil ? " (the same file through a link: \(items[first].item))" : ""
                return reject(s, label, .duplicate, "same image and captions as \(items[first].sourceID)\(via)")
            }
            items[first].captions += new
            sources[s].mergedEntries += 1
            droppedCaptions += empty + notUTF8 + wrongType
            return
        }
        droppedCaptions += empty + notUTF8 + wrongType
        seen[key] = items.count
        if let identity { itemByFileIdentity[identity] = items.count }
        items.append(Item(source: s, item: image, sourceID: "\(base):\(index)", captions: captions,
                          location: .file(path: key, confined: confined)))
    }

    /// The image path, resolved lexically (symlinks are checked when the file is read); nil
    /// after rejecting the entry.
    mutating func resolve(_ image: String, label: String, source s: Int, root: String?, allowAbsolute: Bool) -> (String, Bool)? {
        if image.hasPrefix("/") {
            guard allowAbsolute else {
                reject(s, label, .absolutePath, "absolute paths need --allow-absolute-paths")
                return nil
            }
            return (Self.normalizeAbsolute(image), false)
        }
        guard let root else {
            reject(s, label, .badAnnotation, "relative path without an image root")
            return nil
        }
        guard let rel = Self.normalizeRelative(image) else {
            reject(s, label, .pathEscapesRoot, "'..' leaves the image root")
            return nil
        }
        return (root == "/" ? "/" + rel : root + "/" + rel, true)
    }
}
