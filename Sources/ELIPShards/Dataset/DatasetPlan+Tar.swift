import ELIPText
import Foundation

/// WebDataset tar inputs: members grouped by key into image + caption items.
extension DatasetPlan {

    static let imageExtensions: Set<String> = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]

    struct Group {
        var key: String
        var image: TarMember?
        var text: TarMember?
    }

    mutating func scanTar(_ path: String) {
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
}
