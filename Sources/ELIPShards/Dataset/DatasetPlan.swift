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

    /// One SNLI-VE entry: the sentence and its label join the record of its image (`<id>.jpg`,
    /// stored once). Every entry stays a training sample of its own, as in ve_dataset.py (a
    /// repeated sentence is not merged away).
    private mutating func addVEEntry(_ entry: JSONValue, image: String, index: Int, source s: Int, base: String,
                                     root: String?, allowAbsolute: Bool, seen: inout [String: Int]) {
        let sentence: String
        switch entry["sentence"] {
        case let .string(t)?: sentence = t.trimmingCharacters(in: .whitespacesAndNewlines)
        case .invalidUTF8String?: return reject(s, image, .captionNotUTF8, "entry \(index): sentence is not valid UTF-8 (or holds a lone UTF-16 surrogate escape)")
        case nil, .null?: return reject(s, image, .missingCaption, "entry \(index) has no \"sentence\" field")
        default: return reject(s, image, .badAnnotation, "entry \(index): sentence is not a string")
        }
        guard !preCaption(sentence).isEmpty else {
            return reject(s, image, .emptyCaption, "entry \(index): no sentence words left after cleaning")
        }
        guard case let .string(name)? = entry["label"] else {
            return reject(s, image, .badLabel, "entry \(index) has no string \"label\" field (entailment, neutral or contradiction)")
        }
        guard let classID = Self.veLabels[name] else {
            return reject(s, image, .badLabel, "entry \(index): label '\(name)' is not entailment, neutral or contradiction")
        }
        // ve_dataset.py: os.path.join(image_root, '%s.jpg' % ann['image']).
        guard let (key, confined) = resolve(image + ".jpg", label: image, source: s, root: root, allowAbsolute: allowAbsolute) else { return }
        addTaskSample(caption: sentence, label: classID, image: image, key: key, confined: confined, sourceID: "\(base):\(index)", source: s, seen: &seen)
    }

    /// One retrieval training entry (re_train_dataset): the caption joins the record of its image
    /// (stored once) with the image index of its `image_id` as label. Every entry stays a sample.
    private mutating func addRetrievalEntry(_ entry: JSONValue, image: String, index: Int, source s: Int, base: String,
                                            root: String?, allowAbsolute: Bool, seen: inout [String: Int]) {
        let caption: String
        switch entry["caption"] {
        case let .string(t)?: caption = t.trimmingCharacters(in: .whitespacesAndNewlines)
        case .invalidUTF8String?: return reject(s, image, .captionNotUTF8, "entry \(index): caption is not valid UTF-8 (or holds a lone UTF-16 surrogate escape)")
        case nil, .null?: return reject(s, image, .missingCaption, "entry \(index) has no \"caption\" field")
        default: return reject(s, image, .badAnnotation, "entry \(index): caption is not a string (retrieval training files hold one caption per entry)")
        }
        guard !preCaption(caption).isEmpty else {
            return reject(s, image, .emptyCaption, "entry \(index): no caption words left after cleaning")
        }
        // The official dict key is the JSON value itself: 7 and "7" are two images.
        let idKey: String
        switch entry["image_id"] {
        case let .string(t)?: idKey = "s" + t
        case let .number(v)?: idKey = "n\(v)"
        case .invalidUTF8String?: return reject(s, image, .badAnnotation, "entry \(index): image_id is not valid UTF-8")
        case nil, .null?: return reject(s, image, .badAnnotation, "entry \(index) has no \"image_id\" field (retrieval training needs it: captions of one image are each other's positives)")
        default: return reject(s, image, .badAnnotation, "entry \(index): image_id is not a string or a number")
        }
        guard let (key, confined) = resolve(image, label: image, source: s, root: root, allowAbsolute: allowAbsolute) else { return }
        let imageIndex: Int
        if let known = retrievalImageIndex[idKey] { imageIndex = known } else {
            guard retrievalImageIndex.count < Int(Int32.max) else {
                return reject(s, image, .badAnnotation, "entry \(index): more than \(Int32.max) distinct image ids")
            }
            imageIndex = retrievalImageIndex.count
            retrievalImageIndex[idKey] = imageIndex
        }
        addTaskSample(caption: caption, label: imageIndex, image: image, key: key, confined: confined, sourceID: "\(base):\(index)", source: s, seen: &seen)
    }

    /// A task sample (caption + label) into the record of its image file: the first entry of an
    /// image makes the record, later ones (the same path, or the same file through a link) add to it.
    private mutating func addTaskSample(caption: String, label: Int, image: String, key: String, confined: Bool,
                                        sourceID: String, source s: Int, seen: inout [String: Int]) {
        let identity = Self.fileIdentity(key)
        if let first = seen[key] ?? identity.flatMap({ itemByFileIdentity[$0] }) {
            items[first].captions.append(caption)
            items[first].labels.append(label)
            sources[s].mergedEntries += 1
            return
        }
        seen[key] = items.count
        if let identity { itemByFileIdentity[identity] = items.count }
        items.append(Item(source: s, item: image, sourceID: sourceID, captions: [caption],
                          location: .file(path: key, confined: confined), labels: [label]))
    }

    /// One VQA question: checked, its answers weighted as vqa_dataset.py does, and added to the
    /// record of its image (the first entry of an image makes the record; later questions about
    /// the same file join it). A question id seen before is a duplicate.
    private mutating func addVQAEntry(_ entry: JSONValue, image: String, index: Int, source s: Int, base: String,
                                      root: String?, allowAbsolute: Bool, seen: inout [String: Int]) {
        let question: String
        switch entry["question"] {
        case let .string(t)?: question = t
        case .invalidUTF8String?: return reject(s, image, .captionNotUTF8, "entry \(index): question is not valid UTF-8 (or holds a lone UTF-16 surrogate escape)")
        case nil, .null?: return reject(s, image, .missingCaption, "entry \(index) has no \"question\" field")
        default: return reject(s, image, .badAnnotation, "entry \(index): question is not a string")
        }
        guard !preQuestion(question).trimmingCharacters(in: .whitespaces).isEmpty else {
            return reject(s, image, .emptyCaption, "entry \(index): no question words left after cleaning")
        }
        let id: Int
        switch entry["question_id"] {
        case let .number(n)?:
            guard let v = Int(exactly: n) else {
                return reject(s, image, .badAnnotation, "entry \(index): question_id \(n) is not an integer")
            }
            id = v
        case nil, .null?: return reject(s, image, .badAnnotation, "entry \(index) has no integer \"question_id\"")
        default: return reject(s, image, .badAnnotation, "entry \(index): question_id is not a number")
        }
        guard case let .string(dataset)? = entry["dataset"], dataset == "vqa" || dataset == "vg" else {
            return reject(s, image, .badAnnotation, "entry \(index) (question \(id)): \"dataset\" must be \"vqa\" or \"vg\"")
        }
        var given: [String] = []
        switch (dataset, entry["answer"]) {
        case let ("vqa", .array(list)?):
            for a in list {
                guard case let .string(t) = a else {
                    return reject(s, image, .badLabel, "entry \(index) (question \(id)): every answer must be a string")
                }
                given.append(t)
            }
        case let ("vg", .string(t)?): given = [t]
        case (_, nil), (_, .null?):
            return reject(s, image, .badLabel, "entry \(index) (question \(id)) has no \"answer\" (a test question? evaluate test splits with `elip eval-vqa --checkpoint`)")
        default:
            return reject(s, image, .badLabel, "entry \(index) (question \(id)): \"answer\" must be a list of strings (dataset vqa) or a string (dataset vg)")
        }
        guard !given.isEmpty, given.allSatisfy({ !$0.trimmingCharacters(in: .whitespaces).isEmpty }) else {
            return reject(s, image, .badLabel, "entry \(index) (question \(id)): no answer, or an empty one")
        }
        let answers = vqaTrainingAnswers(given, visualGenome: dataset == "vg", eos: "").map { VQARecord.Answer($0.answer, weight: $0.weight) }
        guard let (key, confined) = resolve(image, label: image, source: s, root: root, allowAbsolute: allowAbsolute) else { return }
        if let first = vqaQuestionIDs[id] {
            return reject(s, image, .duplicate, "entry \(index): question_id \(id) was already given by \(first)")
        }
        vqaQuestionIDs[id] = "\(base):\(index)"
        let q = VQARecord.Question(id: id, text: question, answers: answers)
        let identity = Self.fileIdentity(key)
        if let first = seen[key] ?? identity.flatMap({ itemByFileIdentity[$0] }) {
            items[first].questions.append(q)
            items[first].captions.append(question)
            sources[s].mergedEntries += 1
            return
        }
        seen[key] = items.count
        if let identity { itemByFileIdentity[identity] = items.count }
        items.append(Item(source: s, item: image, sourceID: "\(base):\(index)", captions: [question],
                          location: .file(path: key, confined: confined), questions: [q]))
    }

    // MARK: tar shards

    static let imageExtensions: Set<String> = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]

    private struct Group {
        var key: String
        var image: TarMember?
        var text: TarMember?
    }

    private mutating func scanTar(_ path: String) {
        let s = sources.count
        sources.append(Source(path: path, kind: "tar"))
        let reader: TarReader
        do { reader = try TarReader(path: path) } catch {
            sources[s].error = "\(error)"
            sources[s].wholeSourceLost = true
            rejects.append(RejectRecord(source: path, item: "", reason: .unreadableSource, detail: "\(error)"))
            return
        }
        guard reader.fileSize > 0 else {
            let why = "empty archive (0 bytes): nothing can be read from it"
            sources[s].error = why
            sources[s].wholeSourceLost = true
            rejects.append(RejectRecord(source: path, item: "", reason: .badTar, detail: why))
            return
        }
        let archive = archives.count
        archives.append(path)
        let base = (path as NSString).lastPathComponent
        var seenKeys = Set<String>()
        var group: Group? = nil
        var readUpTo = 0     // end of the last member read in full
        func finish(_ g: Group) {
            sources[s].entries += 1
            if seenKeys.contains(g.key) { return reject(s, g.key, .duplicate, "key appears earlier in the archive") }
            seenKeys.insert(g.key)
            guard let image = g.image else { return reject(s, g.key, .missingImage, "no image member for this key") }
            guard let text = g.text else { return reject(s, g.key, .missingCaption, "no .txt member for this key") }
            guard text.size <= 1 << 20 else { return reject(s, g.key, .badAnnotation, "caption file of \(text.size) bytes") }
            let bytes: [UInt8]
            do { bytes = try reader.read(text) } catch { return reject(s, g.key, .unreadable, "\(error)") }
            guard let caption = String(validating: bytes, as: UTF8.self) else {
                return reject(s, g.key, .captionNotUTF8, "\(text.name) is not valid UTF-8")
            }
            let trimmed = caption.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !preCaption(trimmed).isEmpty else {
                return reject(s, g.key, .emptyCaption, "\(text.name) has no words after cleaning")
            }
            items.append(Item(source: s, item: g.key, sourceID: "\(base):\(g.key)", captions: [trimmed],
                              location: .tarMember(archive: archive, offset: image.dataOffset, size: image.size)))
        }
        while true {
            let member: TarMember?
            do { member = try reader.next() } catch {
                let reason: RejectReason
                if case .truncated = error as? TarError { reason = .truncatedTar } else { reason = .badTar }
                // Members listed before the damage were read in full: a complete group is kept.
                if let g = group {
                    if g.image != nil && g.text != nil {
                        finish(g)
                    } else {
                        sources[s].entries += 1
                        reject(s, g.key, reason, "archive is unreadable from this member on")
                    }
                }
                // What the unread rest could have held: its bytes at the average group size so far.
                let groups = sources[s].entries
                let unread = max(0, reader.fileSize - readUpTo)
                var lost = ""
                if groups > 0 && readUpTo > 0 {
                    let estimate = Int((Double(unread) * Double(groups) / Double(readUpTo)).rounded(.up))
                    sources[s].lostEntries = estimate
                    sources[s].lostEntriesEstimated = true
                    lost = "; about \(estimate) samples lost in the \(unread) unread bytes (at the \(readUpTo / groups)-byte average of the \(groups) read)"
                } else {
                    sources[s].wholeSourceLost = true
                    lost = "; nothing could be read from it (\(unread) bytes unread)"
                }
                sources[s].error = "\(error)\(lost)"
                rejects.append(RejectRecord(source: path, item: "", reason: reason, detail: "\(error)\(lost)"))
                return
            }
            guard let m = member else { break }
            readUpTo = m.dataOffset + ((m.size + 511) / 512) * 512
            guard m.kind == .file else { continue }
            let (key, ext) = Self.splitKey(m.name)
            if group?.key != key {
                if let g = group { finish(g) }
                group = Group(key: key)
            }
            if Self.imageExtensions.contains(ext) {
                if group?.image == nil { group?.image = m }
            } else if ext == "txt" {
                if group?.text == nil { group?.text = m }
            }
        }
        if let g = group { finish(g) }
        if sources[s].entries == 0 {
            let why = "archive holds no samples (\(reader.fileSize) bytes, no file members)"
            sources[s].error = why
            sources[s].wholeSourceLost = true
            rejects.append(RejectRecord(source: path, item: "", reason: .badTar, detail: why))
        }
    }

    /// WebDataset's key/extension split: the key is the path up to the first '.' of the file name.
    static func splitKey(_ name: String) -> (key: String, ext: String) {
        let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
        guard let dot = name[slash...].firstIndex(of: ".") else { return (name, "") }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]).lowercased())
    }

    static func expandTarInput(_ input: String) -> ([String], String?) {
        if FileOps.isDirectory(input) {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: input) else {
                return ([], "cannot list directory \(input)")
            }
            let tars = names.filter { $0.hasSuffix(".tar") }.sorted()
            if tars.isEmpty { return ([], "no *.tar files in \(input)") }
            return (tars.map { (input as NSString).appendingPathComponent($0) }, nil)
        }
        if input.contains(where: { "*?[".contains($0) }) {
            var g = glob_t()
            defer { globfree(&g) }
            let rc = glob(input, 0, nil, &g)
            guard rc == 0 else { return ([], "no file matches \(input)") }
            var out: [String] = []
            for i in 0..<Int(g.gl_pathc) {
                if let p = g.gl_pathv[i] { out.append(String(cString: p)) }
            }
            return (out.sorted(), nil)
        }
        guard FileManager.default.fileExists(atPath: input) else { return ([], "\(input) does not exist") }
        return ([input], nil)
    }

    // MARK: paths

    static func absolute(_ p: String) -> String {
        p.hasPrefix("/") ? p : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(p)
    }

    /// Lexically normalised relative path ("." and empty components dropped, ".." applied), or
    /// nil if ".." climbs above the start.
    static func normalizeRelative(_ p: String) -> String? {
        var parts: [Substring] = []
        for c in p.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." {
                if parts.isEmpty { return nil }
                parts.removeLast()
            } else {
                parts.append(c)
            }
        }
        return parts.joined(separator: "/")
    }

    /// Lexically normalised absolute path ("/.." stays at "/").
    static func normalizeAbsolute(_ p: String) -> String {
        var parts: [Substring] = []
        for c in p.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() } } else { parts.append(c) }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// "device:inode" of the file `path` leads to (links followed), or nil when it cannot be
    /// stat'ed (missing files are rejected when the builder reads them).
    static func fileIdentity(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return "\(st.st_dev):\(st.st_ino)"
    }

    /// realpath(3), or nil (errno set) when the path cannot be resolved.
    static func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }
}
