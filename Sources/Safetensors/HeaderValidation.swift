extension SafetensorsFile {
    struct ParsedHeader {
        var entries: [SafetensorsEntry] = []
        var metadata: [String: String] = [:]
        var holes: [Range<Int>] = []
        var headerLength = 0
        var dataLength = 0
        var index: [String: Int] = [:]
    }

    /// Reads the length prefix and the JSON header of a whole file held in `file`, and checks every
    /// declared tensor against the data buffer. Throws `SafetensorsError` naming `path`.
    static func parse(_ file: UnsafeRawBufferPointer, path: String) throws -> ParsedHeader {
        var result = ParsedHeader()
        let declared = UInt64(littleEndian: file.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        if declared > UInt64(maxHeaderLength) {
            throw SafetensorsError(.headerTooLarge, path: path,
                                   "header length \(declared) exceeds the limit of \(maxHeaderLength) bytes (100 MB)")
        }
        let headerLength = Int(declared)
        if 8 + headerLength > file.count {
            throw SafetensorsError(.headerBeyondFile, path: path,
                                   "header length \(headerLength) extends beyond the end of the file (\(file.count) bytes)")
        }
        result.headerLength = headerLength
        result.dataLength = file.count - 8 - headerLength

        let root: HeaderJSON.Value
        do {
            root = try HeaderJSON.parse(UnsafeRawBufferPointer(rebasing: file[8..<(8 + headerLength)]))
        } catch let e as HeaderJSON.SyntaxError {
            throw SafetensorsError(.malformedJSON, path: path,
                                   "malformed JSON header at byte \(e.offset) of the header: \(e.message)")
        }
        guard case .object(let members) = root else {
            throw SafetensorsError(.wrongJSONType, path: path, "header must be a JSON object, found \(root.typeName)")
        }

        var seen = Set<String>()
        for member in members {
            guard seen.insert(member.key).inserted else {
                throw SafetensorsError(.duplicateName, path: path, tensor: member.key,
                                       "name declared twice in the header (second at header byte \(member.offset))")
            }
            if member.key == "__metadata__" {
                result.metadata = try parseMetadata(member.value, path: path)
                continue
            }
            let entry = try parseEntry(member.key, member.value, dataLength: result.dataLength, path: path)
            result.index[entry.name] = result.entries.count
            result.entries.append(entry)
        }
        result.holes = try checkLayout(result.entries, dataLength: result.dataLength, path: path)
        return result
    }

    private static func parseMetadata(_ value: HeaderJSON.Value, path: String) throws -> [String: String] {
        switch value {
        case .null:
            return [:]
        case .object(let members):
            var metadata: [String: String] = [:]
            for m in members {
                guard case .string(let s) = m.value else {
                    throw SafetensorsError(.wrongJSONType, path: path,
                                           "__metadata__ value for key '\(m.key)' must be a string, found \(m.value.typeName)")
                }
                guard metadata.updateValue(s, forKey: m.key) == nil else {
                    throw SafetensorsError(.duplicateName, path: path, "__metadata__ key '\(m.key)' declared twice")
                }
            }
            return metadata
        default:
            throw SafetensorsError(.wrongJSONType, path: path,
                                   "__metadata__ must be an object of strings, found \(value.typeName)")
        }
    }

    private static func parseEntry(_ name: String, _ value: HeaderJSON.Value, dataLength: Int,
                                   path: String) throws -> SafetensorsEntry {
        func fail(_ kind: SafetensorsError.Kind, _ detail: String) -> SafetensorsError {
            SafetensorsError(kind, path: path, tensor: name, detail)
        }
        guard case .object(let fields) = value else {
            throw fail(.wrongJSONType, "entry must be an object with dtype, shape and data_offsets, found \(value.typeName)")
        }
        var dtypeValue: HeaderJSON.Value?
        var shapeValue: HeaderJSON.Value?
        var offsetsValue: HeaderJSON.Value?
        var fieldNames = Set<String>()
        for f in fields {
            guard fieldNames.insert(f.key).inserted else { throw fail(.duplicateName, "field '\(f.key)' declared twice") }
            switch f.key {
            case "dtype": dtypeValue = f.value
            case "shape": shapeValue = f.value
            case "data_offsets": offsetsValue = f.value
            default: break  // unknown fields are ignored, as by the reference reader
            }
        }

        guard let dtypeValue else { throw fail(.wrongJSONType, "missing field 'dtype'") }
        guard case .string(let dtypeName) = dtypeValue else {
            throw fail(.wrongJSONType, "dtype must be a string, found \(dtypeValue.typeName)")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            let known = SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
            throw fail(.unknownDType, "unknown dtype '\(dtypeName)' (supported: \(known))")
        }

        guard let shapeValue else { throw fail(.wrongJSONType, "missing field 'shape'") }
        guard case .array(let dims) = shapeValue else {
            throw fail(.wrongJSONType, "shape must be an array of integers, found \(shapeValue.typeName)")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for d in dims {
            guard case .number(let n) = d else {
                throw fail(.wrongJSONType, "shape must be an array of integers, found \(d.typeName) in it")
            }
            guard let v = n.integer else {
                throw fail(.invalidShape, "shape dimension \(n.text) is not an integer that fits in 64 bits")
            }
            guard v >= 0 else { throw fail(.invalidShape, "shape \(dimsText(dims)) has a negative dimension \(v)") }
            shape.append(v)
        }
        var elementCount = 1
        for d in shape {
            let (p, overflow) = elementCount.multipliedReportingOverflow(by: d)
            if overflow { throw fail(.invalidShape, "shape \(shape) has more elements than fit in 64 bits") }
            elementCount = p
        }
        let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: dtype.byteSize)
        if overflow { throw fail(.invalidShape, "shape \(shape) of \(dtype) has more bytes than fit in 64 bits") }

        guard let offsetsValue else { throw fail(.wrongJSONType, "missing field 'data_offsets'") }
        guard case .array(let offsets) = offsetsValue else {
            throw fail(.wrongJSONType, "data_offsets must be an array [begin, end], found \(offsetsValue.typeName)")
        }
        guard offsets.count == 2 else {
            throw fail(.invalidOffsets, "data_offsets must be [begin, end], found \(offsets.count) elements")
        }
        var bounds: [Int] = []
        for o in offsets {
            guard case .number(let n) = o else {
                throw fail(.wrongJSONType, "data_offsets must hold two integers, found \(o.typeName) in it")
            }
            guard let v = n.integer, v >= 0 else {
                throw fail(.invalidOffsets, "data_offsets \(dimsText(offsets)) must be non-negative integers")
            }
            bounds.append(v)
        }
        let (begin, end) = (bounds[0], bounds[1])
        guard begin <= end else {
            throw fail(.invalidOffsets, "data_offsets [\(begin), \(end)] has begin > end")
        }
        guard end - begin == byteCount else {
            throw fail(.sizeMismatch,
                       "data_offsets [\(begin), \(end)] span \(end - begin) bytes but \(dtype) \(shape) needs \(byteCount) bytes")
        }
        guard end <= dataLength else {
            throw fail(.offsetsOutOfRange,
                       "data_offsets [\(begin), \(end)] extend beyond the data buffer (\(dataLength) bytes)")
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end,
                                elementCount: elementCount)
    }

    /// Rejects overlapping tensors and returns the unused ranges (holes) of the data buffer.
    private static func checkLayout(_ entries: [SafetensorsEntry], dataLength: Int,
                                    path: String) throws -> [Range<Int>] {
        // Zero-size tensors own no bytes: they can neither overlap nor close a hole.
        let order = entries.indices.filter { entries[$0].byteCount > 0 }.sorted {
            entries[$0].dataOffsets.lowerBound < entries[$1].dataOffsets.lowerBound
        }
        var holes: [Range<Int>] = []
        var cursor = 0
        var previous: Int?
        for i in order {
            let r = entries[i].dataOffsets
            if let p = previous, r.lowerBound < cursor {
                let other = entries[p]
                throw SafetensorsError(.overlap, path: path, tensor: entries[i].name,
                                       "data_offsets [\(r.lowerBound), \(r.upperBound)] overlap tensor '\(other.name)' at [\(other.dataOffsets.lowerBound), \(other.dataOffsets.upperBound)]")
            }
            if r.lowerBound > cursor { holes.append(cursor..<r.lowerBound) }
            cursor = r.upperBound
            previous = i
        }
        if cursor < dataLength { holes.append(cursor..<dataLength) }
        return holes
    }

    private static func dimsText(_ values: [HeaderJSON.Value]) -> String {
        "[" + values.map { v -> String in
            if case .number(let n) = v { return n.text }
            return v.typeName
        }.joined(separator: ", ") + "]"
    }
}
