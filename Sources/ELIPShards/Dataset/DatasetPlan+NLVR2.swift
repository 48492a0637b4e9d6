import ELIPText
import Foundation

/// One NLVR2 entry of the plan: the sentence, its label and the plan items of its two images.
public struct PlannedPair: Sendable, Equatable {
    public var source: Int
    /// "left-image | right-image" as written (the rejects' `item`).
    public var item: String
    public var sourceID: String
    public var sentence: String
    /// 1 "True", 0 "False".
    public var label: Int
    public var leftItem: Int
    public var rightItem: Int
}

extension DatasetPlan {
    /// NLVR2's label strings and class ids (nlvr_dataset.py: 1 if "True" else 0; anything but
    /// the two strings is rejected here instead of silently becoming 0).
    public static let nlvrLabels = ["True": 1, "False": 0]

    /// One NLVR2 entry -> a pair; each of its images becomes an item the first time its path (or
    /// the same file through a link) is seen, so an image is stored once however many pairs use
    /// it. The image item's source id is its path as first written; pair records check it.
    mutating func addNLVREntry(_ entry: JSONValue, index: Int, source s: Int, base: String, root: String?,
                               allowAbsolute: Bool, seen: inout [String: Int]) {
        guard case .object = entry else { return reject(s, "#\(index)", .badAnnotation, "entry \(index) is not an object") }
        guard case let .array(images)? = entry["images"], images.count == 2 else {
            return reject(s, "#\(index)", .badAnnotation, "entry \(index) has no \"images\" list of exactly two paths (left, right)")
        }
        var paths: [String] = []
        for (side, value) in zip(["left", "right"], images) {
            guard case let .string(p) = value, !p.isEmpty, !p.utf8.contains(0) else {
                return reject(s, "#\(index)", .badAnnotation, "entry \(index): the \(side) image is not a non-empty path string")
            }
            paths.append(p)
        }
        let label = paths.joined(separator: " | ")
        guard let sentence = taskText(entry, field: "sentence", index: index, source: s, item: label, cleaning: { preCaption($0) }) else { return }
        guard case let .string(name)? = entry["label"], let classID = Self.nlvrLabels[name] else {
            let given: String
            switch entry["label"] {
            case nil, .null?: given = "missing"
            case let .string(t)?: given = "'\(t)'"
            case let v?: given = "\(v) (not a string)"
            }
            return reject(s, label, .badLabel, "entry \(index): label \(given) is not \"True\" or \"False\"")
        }
        // Both paths are checked before either image is planned: a rejected pair adds no image.
        var keys: [(String, Bool)] = []
        for p in paths {
            guard let k = resolve(p, label: label, source: s, root: root, allowAbsolute: allowAbsolute) else { return }
            keys.append(k)
        }
        var itemIndices: [Int] = []
        for (p, (key, confined)) in zip(paths, keys) {
            let identity = Self.fileIdentity(key)
            if let known = seen[key] ?? identity.flatMap({ itemByFileIdentity[$0] }) {
                itemIndices.append(known)
                continue
            }
            seen[key] = items.count
            if let identity { itemByFileIdentity[identity] = items.count }
            itemIndices.append(items.count)
            items.append(Item(source: s, item: p, sourceID: p, captions: [], location: .file(path: key, confined: confined)))
        }
        pairs.append(PlannedPair(source: s, item: label, sourceID: "\(base):\(index)", sentence: sentence, label: classID,
                                 leftItem: itemIndices[0], rightItem: itemIndices[1]))
    }
}
