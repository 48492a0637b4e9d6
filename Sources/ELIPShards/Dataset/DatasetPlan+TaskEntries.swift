import ELIPText
import Foundation

/// The fine-tuning task formats' entries (SNLI-VE, retrieval, VQA): each joins the record of its
/// image, so an image is stored once however many entries name it (NLVR2: DatasetPlan+NLVR2.swift).
extension DatasetPlan {
    /// The string field `field` of a task entry, or nil after rejecting the entry (missing, not a
    /// string, invalid UTF-8, or no words left after `cleaning`). `trim`: strip surrounding
    /// whitespace from the stored text (sentences and captions; VQA keeps the question as given).
    mutating func taskText(_ entry: JSONValue, field: String, index: Int, source s: Int, item: String, trim: Bool = true,
                           notAStringHint: String = "", cleaning: (String) -> String) -> String? {
        let text: String
        switch entry[field] {
        case let .string(t)?: text = trim ? t.trimmingCharacters(in: .whitespacesAndNewlines) : t
        case .invalidUTF8String?:
            reject(s, item, .captionNotUTF8, "entry \(index): \(field) is not valid UTF-8 (or holds a lone UTF-16 surrogate escape)")
            return nil
        case nil, .null?:
            reject(s, item, .missingCaption, "entry \(index) has no \"\(field)\" field")
            return nil
        default:
            reject(s, item, .badAnnotation, "entry \(index): \(field) is not a string\(notAStringHint)")
            return nil
        }
        guard !cleaning(text).isEmpty else {
            reject(s, item, .emptyCaption, "entry \(index): no \(field) words left after cleaning")
            return nil
        }
        return text
    }

    /// One SNLI-VE entry: the sentence and its label join the record of its image (`<id>.jpg`,
    /// stored once). Every entry stays a training sample of its own, as in ve_dataset.py (a
    /// repeated sentence is not merged away).
    mutating func addVEEntry(_ entry: JSONValue, image: String, index: Int, source s: Int, base: String,
                                     root: String?, allowAbsolute: Bool, seen: inout [String: Int]) {
        guard let sentence = taskText(entry, field: "sentence", index: index, source: s, item: image, cleaning: { preCaption($0) }) else { return }
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
    mutating func addRetrievalEntry(_ entry: JSONValue, image: String, index: Int, source s: Int, base: String,
                                            root: String?, allowAbsolute: Bool, seen: inout [String: Int]) {
        guard let caption = taskText(entry, field: "caption", index: index, source: s, item: image,
                                     notAStringHint: " (retrieval training files hold one caption per entry)", cleaning: { preCaption($0) }) else { return }
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
    mutating func addTaskSample(caption: String, label: Int, image: String, key: String, confined: Bool,
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
    mutating func addVQAEntry(_ entry: JSONValue, image: String, index: Int, source s: Int, base: String,
                                      root: String?, allowAbsolute: Bool, seen: inout [String: Int]) {
        guard let question = taskText(entry, field: "question", index: index, source: s, item: image, trim: false,
                                      cleaning: { preQuestion($0).trimmingCharacters(in: .whitespaces) }) else { return }
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
}
