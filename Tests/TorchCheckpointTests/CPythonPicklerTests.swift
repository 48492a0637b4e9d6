import Foundation
import Safetensors
import TorchCheckpoint
import XCTest

/// A cross-check independent of our own generator: CPython's pickle module (which torch.save uses,
/// protocol 2) writes data.pkl for stand-in torch globals, Python's zipfile writes the archive, and
/// the reader must give back every value. Skips when python3 is absent.
final class CPythonPicklerTests: XCTestCase {
    static let script = #"""
    sys, types, pickle, zipfile, struct, io, collections, array = map(__import__, ['sys', 'types', 'pickle', 'zipfile', 'struct', 'io', 'collections', 'array'])
    torch = types.ModuleType('torch'); utils = types.ModuleType('torch._utils')
    sys.modules['torch'] = torch; sys.modules['torch._utils'] = utils
    def _rebuild_tensor_v2(*a): pass
    def _rebuild_parameter(*a): pass
    for f in (_rebuild_tensor_v2, _rebuild_parameter): f.__module__ = 'torch._utils'; setattr(utils, f.__name__, f)
    class FloatStorage: pass
    class HalfStorage: pass
    for c in (FloatStorage, HalfStorage): c.__module__ = 'torch'; setattr(torch, c.__name__, c)
    class Storage:
        def __init__(self, typ, data, esize): self.typ, self.data, self.esize = typ, data, esize
    class Tensor:
        def __init__(self, st, off, size, stride): self.st, self.off, self.size, self.stride = st, off, size, stride
        def __reduce_ex__(self, proto):
            return (_rebuild_tensor_v2, (self.st, self.off, tuple(self.size), tuple(self.stride), False, collections.OrderedDict()))
    class Param:
        def __init__(self, t): self.t = t
        def __reduce_ex__(self, proto): return (_rebuild_parameter, (self.t, True, collections.OrderedDict()))
    a = Storage(FloatStorage, array.array('f', [i * 0.25 for i in range(12)]).tobytes(), 4)
    h = Storage(HalfStorage, struct.pack('<3H', 0x3C00, 0xC100, 0x7BFF), 2)
    sd = collections.OrderedDict()
    shared = Tensor(a, 0, [3, 4], [4, 1])
    sd['w'] = shared
    sd['tied'] = shared
    sd['wt'] = Tensor(a, 0, [4, 3], [1, 4])
    sd['view'] = Tensor(a, 5, [2, 2], [4, 1])
    sd['p'] = Param(Tensor(a, 0, [12], [1]))
    sd['h'] = Tensor(h, 0, [3], [1])
    sd._metadata = collections.OrderedDict([('', {'version': 1})])
    obj = {'model': sd, 'epoch': 3, 'config': {'lr': 1e-4, 'betas': (0.9, 0.999), 'flag': True, 'none': None, 'big': 1 << 40, 'neg': -70000}}
    ids, storages = {}, {}
    class P(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                key = ids.setdefault(id(o), str(len(ids)))
                storages[key] = o
                return ('storage', o.typ, key, 'cpu', len(o.data) // o.esize)
            return None
    buf = io.BytesIO(); P(buf, protocol=int(sys.argv[2])).dump(obj)
    with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED) as z:
        z.writestr('archive/data.pkl', buf.getvalue())
        z.writestr('archive/byteorder', 'little')
        for k in sorted(storages): z.writestr('archive/data/' + k, storages[k].data)
        z.writestr('archive/version', '3\n')
    """#

    /// Protocol 2 is torch.save's default; 4 (torch.save(..., pickle_protocol=4)) adds FRAME,
    /// SHORT_BINUNICODE, MEMOIZE and STACK_GLOBAL.
    func testReadsWhatCPythonsPicklerWrites() throws {
        for proto in ["2", "4", "5"] { try check(protocol: proto) }
    }

    func check(protocol proto: String) throws {
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("python3 not found; the cross-check against CPython's pickler needs it")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-cpython-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let pth = dir.appendingPathComponent("ckpt.pth").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", Self.script, pth, proto]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let converted = try TorchCheckpoint(path: pth).convert()
        let st = try SafetensorsFile(bytes: try converted.writer().serialized())
        let a = (0..<12).map { Float($0) * 0.25 }
        XCTAssertEqual(try st.floats("w"), a)
        XCTAssertEqual(try st.floats("tied"), a)
        XCTAssertEqual(try st.floats("wt"), (0..<4).flatMap { i in (0..<3).map { j in a[i + 4 * j] } })
        XCTAssertEqual(try st.floats("view"), [a[5], a[6], a[9], a[10]])
        XCTAssertEqual(try st.floats("p"), a)
        XCTAssertEqual(try st.floats("h"), [1, -2.5, 65504])
        XCTAssertEqual(st.metadata["epoch"], "3")
        XCTAssertEqual(st.metadata["config"], #"{"lr":0.0001,"betas":[0.9,0.999],"flag":true,"none":null,"big":1099511627776,"neg":-70000}"#)
    }
}
