import Foundation

/// Writes the bytes `torch.save` writes, without PyTorch, for the checkpoint reader's tests.
///
/// Verified against PyTorch's sources (read with the search tools, pytorch/pytorch main):
/// - torch/serialization.py `_save`: the object is pickled with protocol DEFAULT_PROTOCOL = 2 and a
///   `persistent_id` that turns each storage into ('storage', torch.<T>Storage, key, location,
///   numel) with key = str(len(id_map)) per distinct storage ("0", "1", ...), numel in elements;
///   records `data.pkl`, then `byteorder` ("little"), then `data/<key>` for the keys sorted as
///   strings, each storage's raw bytes (`storage.nbytes()`).
/// - The legacy `_legacy_save`: pickles MAGIC_NUMBER 0x1950a86a20f9469cfc6c, PROTOCOL_VERSION
///   1001, sys_info {protocol_version, little_endian, type_sizes{short,int,long}}, the object (6-entry
///   persistent ids, view_metadata None), the sorted keys, then per storage `_write_file`: an
///   8-byte element count and the bytes.
/// - torch/_tensor.py `__reduce_ex__` (via `_reduce_ex_internal`): a plain CPU tensor reduces to
///   torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), stride, requires_grad,
///   OrderedDict()) — a metadata 7th argument only when the tensor has Python metadata.
/// - caffe2/serialize/inline_container.cc (PyTorchStreamWriter, miniz): records are stored
///   uncompressed under "<archive name>/", each record's data aligned to 64 bytes by an extra
///   field "FB" + 2-byte length + 'Z' padding, and a `version` record written at the end.
/// - Python's pickle (protocol 2): str as BINUNICODE, ints as BININT1/BININT2/BININT/LONG1, float
///   BINFLOAT, dicts EMPTY_DICT + MARK ... SETITEMS (SETITEM for one item), tuples of 1-3 as
///   TUPLE1-3 else MARK ... TUPLE, classes/functions as GLOBAL "module\nname\n", every str, tuple,
///   dict, global and reduced object memoized with BINPUT (LONG_BINPUT from index 256) and met again
///   as BINGET; OrderedDict pickles as GLOBAL, EMPTY_TUPLE, REDUCE, its items by SETITEMS and its
///   instance __dict__ (a state_dict's `_metadata`) by BUILD.
public struct TorchSaveGenerator {
    public init() {}

    /// A tensor: a strided view of a storage.
    public struct Tensor {
        public var storage: Storage
        public var offset: Int
        public var size: [Int]
        public var stride: [Int]
        public var requiresGrad = false
        /// Same identity = the same Python tensor object (pickled once, then BINGET).
        public var identity: String? = nil
        public init(storage: Storage, offset: Int, size: [Int], stride: [Int], requiresGrad: Bool = false, identity: String? = nil) {
            (self.storage, self.offset, self.size, self.stride, self.requiresGrad, self.identity) = (storage, offset, size, stride, requiresGrad, identity)
        }
    }

    /// A storage: its Python type name (FloatStorage, HalfStorage, ...), raw bytes, element size.
    public final class Storage {
        public let typeName: String
        public let bytes: [UInt8]
        public let elementSize: Int
        public init(_ typeName: String, bytes: [UInt8], elementSize: Int) { (self.typeName, self.bytes, self.elementSize) = (typeName, bytes, elementSize) }
    }

    public indirect enum Object {
        case none, bool(Bool), int(Int64), float(Double), str(String)
        case list([Object]), tuple([Object])
        case dict([(String, Object)])
        /// An OrderedDict; `metadata` adds the `_metadata` attribute state_dict() sets.
        case orderedDict([(String, Object)], metadata: Bool)
        case tensor(Tensor)
        /// A global pickled as is (to test the refusal of e.g. os.system); reduced with `args`.
        case reduce(module: String, name: String, args: [Object])
    }

    // MARK: pickling (protocol 2, as Python's pickle.Pickler writes it)

    public private(set) var out: [UInt8] = []
    private var memo: [String: Int] = [:]
    private var memoCount = 0
    /// Storages in first-use order with their keys; `legacy` adds view metadata to persistent ids.
    public private(set) var storages: [(key: String, storage: Storage)] = []
    public var legacy = false

    private mutating func memoize(_ identity: String?) {
        if let identity { memo[identity] = memoCount }
        if memoCount < 256 { out += [0x71, UInt8(memoCount)] } else { out += [0x72] + le32(UInt32(memoCount)) }
        memoCount += 1
    }

    private mutating func fromMemo(_ identity: String) -> Bool {
        guard let i = memo[identity] else { return false }
        if i < 256 { out += [0x68, UInt8(i)] } else { out += [0x6A] + le32(UInt32(i)) }
        return true
    }

    func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    /// `interned`: Python reuses the same str object (literals, id_map keys), so it is memoized by value.
    mutating func str(_ s: String, interned: Bool = false) {
        if interned, fromMemo("str:" + s) { return }
        let b = Array(s.utf8)
        out += [0x58] + le32(UInt32(b.count)) + b
        memoize(interned ? "str:" + s : nil)
    }

    mutating func int(_ v: Int64) {
        if v >= 0 && v <= 0xFF { out += [0x4B, UInt8(v)] }
        else if v >= 0 && v <= 0xFFFF { out += [0x4D, UInt8(v & 0xFF), UInt8(v >> 8)] }
        else if v >= Int64(Int32.min) && v <= Int64(Int32.max) { out += [0x4A] + le32(UInt32(bitPattern: Int32(v))) }
        else { out += [0x8A] + longBytes(v) }
    }

    /// pickle.encode_long: minimal little-endian two's complement.
    func longBytes(_ v: Int64) -> [UInt8] {
        var b = le64(UInt64(bitPattern: v))
        while b.count > 1 {
            let last = b[b.count - 1], prev = b[b.count - 2]
            if (last == 0 && prev & 0x80 == 0) || (last == 0xFF && prev & 0x80 != 0) { b.removeLast() } else { break }
        }
        return [UInt8(b.count)] + b
    }

    mutating func global(_ module: String, _ name: String) {
        if fromMemo("global:\(module).\(name)") { return }
        out += [0x63] + Array("\(module)\n\(name)\n".utf8)
        memoize("global:\(module).\(name)")
    }

    mutating func tuple(_ items: [Object]) {
        if items.isEmpty { out.append(0x29); return }
        if items.count <= 3 {
            for i in items { save(i) }
            out.append([0x85, 0x86, 0x87][items.count - 1])
        } else {
            out.append(0x28)
            for i in items { save(i) }
            out.append(0x74)
        }
        memoize(nil)
    }

    mutating func setItems(_ items: [(String, Object)]) {
        if items.count == 1 { str(items[0].0); save(items[0].1); out.append(0x73); return }
        for start in stride(from: 0, to: items.count, by: 1000) {
            out.append(0x28)
            for (k, v) in items[start..<min(items.count, start + 1000)] { str(k); save(v) }
            out.append(0x75)
        }
    }

    mutating func save(_ o: Object) {
        switch o {
        case .none: out.append(0x4E)
        case .bool(let b): out.append(b ? 0x88 : 0x89)
        case .int(let v): int(v)
        case .float(let f): out.append(0x47); out += le64(f.bitPattern).reversed()
        case .str(let s): str(s)
        case .tuple(let items): tuple(items)
        case .list(let items):
            out.append(0x5D); memoize(nil)
            if items.count == 1 { save(items[0]); out.append(0x61) }
            else if !items.isEmpty { out.append(0x28); for i in items { save(i) }; out.append(0x65) }
        case .dict(let items):
            out.append(0x7D); memoize(nil)
            if !items.isEmpty { setItems(items) }
        case .orderedDict(let items, let metadata):
            global("collections", "OrderedDict"); out.append(0x29); out.append(0x52); memoize(nil)
            if !items.isEmpty { setItems(items) }
            if metadata {
                // state = {'_metadata': OrderedDict([('', {'version': 1})])}, then BUILD
                save(.dict([("_metadata", .orderedDict([("", .dict([("version", .int(1))]))], metadata: false))]))
                out.append(0x62)
            }
        case .tensor(let t):
            if let id = t.identity, fromMemo("tensor:" + id) { return }
            global("torch._utils", "_rebuild_tensor_v2")
            out.append(0x28)
            persistent(t.storage)
            int(Int64(t.offset))
            tuple(t.size.map { .int(Int64($0)) })
            tuple(t.stride.map { .int(Int64($0)) })
            out.append(t.requiresGrad ? 0x88 : 0x89)
            save(.orderedDict([], metadata: false))
            out.append(0x74); memoize(nil)
            out.append(0x52)
            memoize(t.identity.map { "tensor:" + $0 })
        case .reduce(let module, let name, let args):
            global(module, name); tuple(args); out.append(0x52); memoize(nil)
        }
    }

    private mutating func persistent(_ s: Storage) {
        let key: String
        if let k = storages.first(where: { $0.storage === s })?.key { key = k } else { key = String(storages.count); storages.append((key, s)) }
        out.append(0x28)
        str("storage", interned: true)
        global("torch", s.typeName)
        str(key, interned: true)
        str("cpu", interned: true)
        int(Int64(s.bytes.count / s.elementSize))
        if legacy { out.append(0x4E) }  // view_metadata None
        out.append(0x74); memoize(nil)
        out.append(0x51)  // BINPERSID
    }

    /// One complete pickle of `o`.
    public mutating func pickle(_ o: Object) -> [UInt8] {
        out = [0x80, 0x02]
        memo = [:]; memoCount = 0
        save(o)
        out.append(0x2E)
        return out
    }

    // MARK: files

    /// torch.save's zip: data.pkl, byteorder, data/<key> sorted, version.
    public static func zipCheckpoint(_ o: Object, archive: String = "archive", zip64: Bool = false) -> [UInt8] {
        var g = TorchSaveGenerator()
        let pkl = g.pickle(o)
        var records: [(String, [UInt8])] = [("data.pkl", pkl), ("byteorder", Array("little".utf8))]
        for (key, s) in g.storages.sorted(by: { $0.key < $1.key }) { records.append(("data/" + key, s.bytes)) }
        records.append(("version", Array("3\n".utf8)))
        return storedZip(records.map { (archive + "/" + $0.0, $0.1) }, zip64: zip64)
    }

    /// The legacy (pre-1.6) stream.
    public static func legacyCheckpoint(_ o: Object) -> [UInt8] {
        var g = TorchSaveGenerator()
        g.legacy = true
        var file: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]
        file += g.pickle(.int(1001))
        file += g.pickle(.dict([("protocol_version", .int(1001)), ("little_endian", .bool(true)),
                                ("type_sizes", .dict([("short", .int(2)), ("int", .int(4)), ("long", .int(8))]))]))
        file += g.pickle(o)
        let keys = g.storages.map(\.key).sorted()
        file += g.pickle(.list(keys.map { .str($0) }))
        for key in keys {
            let s = g.storages.first(where: { $0.key == key })!.storage
            file += g.le64(UInt64(s.bytes.count / s.elementSize)) + s.bytes
        }
        return file
    }

    /// A zip of stored records as miniz writes them for PyTorch (64-byte aligned data).
    /// `zip64`: every size and offset goes through zip64 fields (as miniz writes a file past 4 GiB).
    public static func storedZip(_ records: [(String, [UInt8])], zip64: Bool = false) -> [UInt8] {
        func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        var file: [UInt8] = [], central: [UInt8] = []
        for (name, data) in records {
            let nameBytes = Array(name.utf8)
            let offset = file.count
            let start = offset + 30 + nameBytes.count + 4
            let padding = (64 - start % 64) % 64
            let extra = Array("FB".utf8) + le16(padding) + [UInt8](repeating: UInt8(ascii: "Z"), count: padding)
            let crc = Int(crc32(data))
            file += le32(0x0403_4B50) + le16(0) + le16(0) + le16(0) + le16(0) + le16(0x21) + le32(crc) + le32(data.count) + le32(data.count)
                + le16(nameBytes.count) + le16(extra.count) + nameBytes + extra + data
            func le64(_ v: Int) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
            let big = 0xFFFF_FFFF
            let extra64 = zip64 ? le16(1) + le16(24) + le64(data.count) + le64(data.count) + le64(offset) : []
            central += le32(0x0201_4B50) + le16(45) + le16(45) + le16(0) + le16(0) + le16(0) + le16(0x21) + le32(crc)
                + le32(zip64 ? big : data.count) + le32(zip64 ? big : data.count) + le16(nameBytes.count) + le16(extra64.count) + le16(0) + le16(0)
                + le16(0) + le32(0) + le32(zip64 ? big : offset) + nameBytes + extra64
        }
        let cdOffset = file.count
        file += central
        if zip64 {
            func le64(_ v: Int) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
            let record = file.count
            file += le32(0x0606_4B50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0) + le64(records.count) + le64(records.count)
                + le64(central.count) + le64(cdOffset)
            file += le32(0x0706_4B50) + le32(0) + le64(record) + le32(1)
            file += le32(0x0605_4B50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF) + le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(0)
        } else {
            file += le32(0x0605_4B50) + le16(0) + le16(0) + le16(records.count) + le16(records.count) + le32(central.count) + le32(cdOffset) + le16(0)
        }
        return file
    }

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func crc32(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        crcTable.withUnsafeBufferPointer { t in
            data.withUnsafeBufferPointer { d in for b in d { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) } }
        }
        return c ^ 0xFFFF_FFFF
    }
}
