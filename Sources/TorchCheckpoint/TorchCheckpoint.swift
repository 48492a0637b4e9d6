/// A checkpoint written by `torch.save`, read without PyTorch and without executing anything.
///
/// Two layouts (torch/serialization.py): the zip format (default since PyTorch 1.6) — records
/// `<archive>/data.pkl` (the object, pickle protocol 2, storages as persistent ids
/// ('storage', torch.<T>Storage, key, location, numel)), `<archive>/byteorder`,
/// `<archive>/data/<key>` (each storage's raw bytes) and `<archive>/version`; and the legacy
/// format (before 1.6): five pickles back to back — magic number, protocol version 1001, system
/// info, the object (persistent ids with a sixth entry, view metadata), the sorted storage keys —
/// followed by each storage as an 8-byte element count and its raw bytes.
public final class TorchCheckpoint {
    public enum Format: String, Sendable { case zip, legacy }

    public let path: String
    public let format: Format
    let root: PickleValue
    /// Raw bytes of every storage by key (views into the mapped file).
    let storageBytes: [String: UnsafeRawBufferPointer]
    private let file: MappedFile  // keeps the mapping alive

    static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]  // 0x1950a86a20f9469cfc6c
    static let legacyProtocolVersion: Int64 = 1001

    public init(path: String) throws {
        file = try MappedFile(path: path)
        self.path = path
        let bytes = file.bytes
        if StoredZip.looksLikeZip(bytes) {
            format = .zip
            (root, storageBytes) = try Self.readZip(bytes, path: path)
        } else if Self.looksLikeLegacy(bytes) {
            format = .legacy
            (root, storageBytes) = try Self.readLegacy(bytes, path: path)
        } else {
            throw TorchCheckpointError(path, "not a PyTorch checkpoint: starts with neither a zip header (torch.save since 1.6) nor torch.save's legacy magic number (a plain pickle is not read, it could run code); the tar format of PyTorch < 0.4 is not supported")
        }
    }

    /// True when the bytes start with torch.save's legacy magic number pickle: PROTO 2-5, an
    /// optional FRAME, then LONG1 of the 10-byte magic. (Checking the magic itself, not just a
    /// PROTO byte, keeps a safetensors file whose header length starts 0x80 0x01 from matching.)
    static func looksLikeLegacy(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 2, bytes[0] == 0x80, (2...5).contains(bytes[1]) else { return false }
        var p = 2
        if bytes.count > p, bytes[p] == 0x95 { p += 9 }
        let expected: [UInt8] = [0x8A, 0x0A] + legacyMagic
        guard bytes.count >= p + expected.count else { return false }
        return (0..<expected.count).allSatisfy { bytes[p + $0] == expected[$0] }
    }

    // MARK: zip

    private static func readZip(_ bytes: UnsafeRawBufferPointer, path: String) throws -> (PickleValue, [String: UnsafeRawBufferPointer]) {
        let zip = try StoredZip(bytes, path: path)
        // All records share one top-level folder (the archive name, e.g. "archive" or the file's stem).
        guard let first = zip.entries.first, let slash = first.name.firstIndex(of: "/") else {
            throw TorchCheckpointError(path, "zip holds no <archive>/data.pkl record: not a torch.save checkpoint")
        }
        let prefix = String(first.name[...slash])
        guard let pickle = zip[prefix + "data.pkl"] else {
            throw TorchCheckpointError(path, "zip holds no \(prefix)data.pkl record: not a torch.save checkpoint (a TorchScript archive has code/ and constants.pkl instead)")
        }
        if let order = zip[prefix + "byteorder"] {
            let text = String(decoding: try zip.data(order), as: UTF8.self)
            guard text == "little" else {
                throw TorchCheckpointError(path, "byteorder record says \"\(text)\"; only little-endian checkpoints are supported")
            }
        }
        var refs: [String: TorchStorageRef] = [:]
        var unpickler = RestrictedUnpickler(bytes: try zip.data(pickle), label: "\(path) (\(prefix)data.pkl)") { pid in
            let ref = try storageRef(pid, legacy: false, known: &refs)
            return .storage(ref)
        }
        let (root, end) = try unpickler.load()
        guard end == pickle.size else {
            throw TorchCheckpointError(path, "\(prefix)data.pkl has \(pickle.size - end) bytes after its STOP opcode (damaged)")
        }
        var storages: [String: UnsafeRawBufferPointer] = [:]
        for (key, ref) in refs {
            guard let record = zip[prefix + "data/" + key] else {
                throw TorchCheckpointError(path, "storage \(key) is used by the pickle but the zip has no record \(prefix)data/\(key)")
            }
            let data = try zip.data(record)
            let needed = ref.elementCount.multipliedReportingOverflow(by: ref.dtype.byteSize)
            guard !needed.overflow, data.count == needed.partialValue else {
                throw TorchCheckpointError(path, "storage \(key): record \(prefix)data/\(key) has \(data.count) bytes but the pickle declares \(ref.elementCount) \(ref.dtype.rawValue) elements")
            }
            storages[key] = data
        }
        return (root, storages)
    }

    // MARK: legacy

    private static func readLegacy(_ bytes: UnsafeRawBufferPointer, path: String) throws -> (PickleValue, [String: UnsafeRawBufferPointer]) {
        var refs: [String: TorchStorageRef] = [:]
        func next(_ start: Int, _ what: String, persistent: Bool = false) throws -> (PickleValue, Int) {
            var unpickler = RestrictedUnpickler(bytes: bytes, start: start, label: "\(path) (legacy format, \(what))") { pid in
                guard persistent else { throw PickleProblem("a persistent id outside the object pickle") }
                return .storage(try storageRef(pid, legacy: true, known: &refs))
            }
            return try unpickler.load()
        }
        let (magic, afterMagic) = try next(0, "magic number")
        guard case .bigInt(let m) = magic, m == legacyMagic else {
            throw TorchCheckpointError(path, "starts with a pickle that is not torch.save's magic number: not a PyTorch checkpoint (a plain pickle is not read, it could run code)")
        }
        let (version, afterVersion) = try next(afterMagic, "protocol version")
        guard case .int(let v) = version, v == legacyProtocolVersion else {
            throw TorchCheckpointError(path, "legacy protocol version is not \(legacyProtocolVersion)")
        }
        let (sysInfo, afterInfo) = try next(afterVersion, "system info")
        guard case .dict(let info) = sysInfo, case .bool(let little)? = info["little_endian"] else {
            throw TorchCheckpointError(path, "legacy system info is not a dict with little_endian")
        }
        guard little else { throw TorchCheckpointError(path, "saved on a big-endian machine; only little-endian checkpoints are supported") }
        let (root, afterObject) = try next(afterInfo, "object", persistent: true)
        let (keyList, afterKeys) = try next(afterObject, "storage keys")
        guard case .list(let keys) = keyList else { throw TorchCheckpointError(path, "legacy storage key list is a \(keyList.typeName)") }
        var storages: [String: UnsafeRawBufferPointer] = [:]
        var position = afterKeys
        for item in keys.items {
            guard case .string(let key) = item, let ref = refs[key] else {
                throw TorchCheckpointError(path, "legacy storage key \(item.keyString ?? item.typeName) is not used by the object (its element size is unknown)")
            }
            guard bytes.count - position >= 8 else {
                throw TorchCheckpointError(path, "storage \(key): file ends at byte \(bytes.count) before its element count (truncated)")
            }
            let count = bytes.loadUnaligned(fromByteOffset: position, as: Int64.self).littleEndian
            position += 8
            let needed = Int(clamping: count).multipliedReportingOverflow(by: ref.dtype.byteSize)
            guard count >= 0, !needed.overflow, needed.partialValue <= bytes.count - position else {
                throw TorchCheckpointError(path, "storage \(key): \(count) elements of \(ref.dtype.rawValue) at byte \(position) run past the end of the file of \(bytes.count) bytes (truncated)")
            }
            guard Int(count) == ref.elementCount else {
                throw TorchCheckpointError(path, "storage \(key): \(count) elements stored but the pickle declares \(ref.elementCount)")
            }
            storages[key] = UnsafeRawBufferPointer(rebasing: bytes[position..<(position + needed.partialValue)])
            position += needed.partialValue
        }
        for key in refs.keys where storages[key] == nil {
            throw TorchCheckpointError(path, "storage \(key) is used by the object but not stored")
        }
        return (root, storages)
    }

    // MARK: persistent ids

    /// ('storage', torch.<T>Storage, key, location, numel) — legacy adds view metadata (None).
    private static func storageRef(_ pid: PickleValue, legacy: Bool, known: inout [String: TorchStorageRef]) throws -> TorchStorageRef {
        guard case .tuple(let t) = pid, t.count == (legacy ? 6 : 5), case .string("storage") = t[0] else {
            throw PickleProblem("persistent id is not ('storage', type, key, location, numel\(legacy ? ", view" : ""))")
        }
        guard case .global(.storageType(let dtype)) = t[1] else {
            throw PickleProblem("persistent id names a \(t[1].typeName), not a torch storage type")
        }
        guard case .string(let key) = t[2], case .string(let location) = t[3], case .int(let numel) = t[4],
              numel >= 0, numel <= Int64(Int.max / 8) else {
            throw PickleProblem("persistent id has a bad key, location or element count")
        }
        if legacy, case .none = t[5] {} else if legacy {
            throw PickleProblem("storage \(key) is a legacy storage view (PyTorch < 1.6 view of another storage), which is not supported; load and re-save it with torch.save in PyTorch >= 1.6")
        }
        if let existing = known[key] {
            // torch.save refuses to save views of one storage with different types.
            guard existing.dtype == dtype, existing.elementCount == Int(numel) else {
                throw PickleProblem("storage \(key) is declared as \(existing.dtype.rawValue)[\(existing.elementCount)] and as \(dtype.rawValue)[\(numel)]")
            }
            return existing
        }
        let ref = TorchStorageRef(key: key, dtype: dtype, elementCount: Int(numel), location: location)
        known[key] = ref
        return ref
    }
}
