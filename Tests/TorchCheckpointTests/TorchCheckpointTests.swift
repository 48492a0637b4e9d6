import Foundation
import Safetensors
@testable import TorchCheckpoint
import TorchSaveFixtures
import XCTest

final class TorchCheckpointTests: XCTestCase {
    typealias G = TorchSaveGenerator

    // MARK: fixture

    static func floatBytes(_ v: [Float]) -> [UInt8] { v.flatMap { f in (0..<4).map { UInt8(truncatingIfNeeded: f.bitPattern >> (8 * $0)) } } }
    static func u16Bytes(_ v: [UInt16]) -> [UInt8] { v.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] } }
    static func u64Bytes(_ v: [UInt64]) -> [UInt8] { v.flatMap { x in (0..<8).map { UInt8(truncatingIfNeeded: x >> (8 * $0)) } } }

    static let base: [Float] = (0..<12).map { Float($0) * 0.5 - 1 }
    static let halfBits: [UInt16] = [0x3C00, 0xC100, 0x3555, 0x7BFF, 0x0001, 0x8000]
    static let halfValues: [Float] = [1, -2.5, 0.333251953125, 65504, 5.9604644775390625e-08, -0.0]
    static let bf16Bits: [UInt16] = [0x3F80, 0xC020, 0x3EAB, 0x4049]
    static let bf16Values: [Float] = [1, -2.5, 0.333984375, 3.140625]

    /// A checkpoint like ALBEF's: {'model': state_dict, 'epoch', 'config', 'optimizer'}.
    static func albefLike() -> G.Object {
        let a = G.Storage("FloatStorage", bytes: floatBytes(base), elementSize: 4)
        let h = G.Storage("HalfStorage", bytes: u16Bytes(halfBits), elementSize: 2)
        let b = G.Storage("BFloat16Storage", bytes: u16Bytes(bf16Bits), elementSize: 2)
        let d = G.Storage("DoubleStorage", bytes: u64Bytes([0.1, -3.0].map(\.bitPattern)), elementSize: 8)
        let l = G.Storage("LongStorage", bytes: u64Bytes([1, UInt64(bitPattern: -2), 1 << 40]), elementSize: 8)
        let o = G.Storage("FloatStorage", bytes: floatBytes([9, 9, 9, 9]), elementSize: 4)
        let weight = G.Tensor(storage: a, offset: 0, size: [3, 4], stride: [4, 1], requiresGrad: true, identity: "w")
        let model: [(String, G.Object)] = [
            ("enc.weight", .tensor(weight)),
            ("dec.weight", .tensor(weight)),  // the same tensor object: pickled once, then BINGET
            ("dec_detached.weight", .tensor(G.Tensor(storage: a, offset: 0, size: [3, 4], stride: [4, 1]))),  // state_dict's detach(): same storage
            ("view", .tensor(G.Tensor(storage: a, offset: 5, size: [2, 3], stride: [4, 1]))),
            ("transposed", .tensor(G.Tensor(storage: a, offset: 0, size: [4, 3], stride: [1, 4]))),
            ("half", .tensor(G.Tensor(storage: h, offset: 0, size: [2, 3], stride: [3, 1]))),
            ("bf", .tensor(G.Tensor(storage: b, offset: 0, size: [4], stride: [1]))),
            ("double", .tensor(G.Tensor(storage: d, offset: 0, size: [2], stride: [1]))),
            ("steps", .tensor(G.Tensor(storage: l, offset: 0, size: [1, 3], stride: [3, 1]))),
            ("scalar", .tensor(G.Tensor(storage: a, offset: 11, size: [], stride: []))),
        ]
        let config: G.Object = .dict([("lr", .float(1e-4)), ("layers", .list([.int(12), .int(6)])), ("name", .str("albef \"4M\"")),
                                      ("opt", .dict([("betas", .tuple([.float(0.9), .float(0.999)])), ("amsgrad", .bool(false)), ("none", .none),
                                                     ("big", .int(1 << 40)), ("neg", .int(-5)), ("w", .int(70000))]))])
        let optimizer: G.Object = .dict([("state", .dict([("0", .dict([("exp_avg", .tensor(G.Tensor(storage: o, offset: 0, size: [4], stride: [1])))]))])),
                                         ("param_groups", .list([.dict([("lr", .float(0.5))])]))])
        return .dict([("model", .orderedDict(model, metadata: true)), ("epoch", .int(7)), ("config", config), ("optimizer", optimizer)])
    }

    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("elip-torch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func write(_ bytes: [UInt8], _ name: String = "ckpt.pth") throws -> String {
        let url = folder.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    func converted(_ path: String, key: String? = nil) throws -> (ConvertedCheckpoint, SafetensorsFile) {
        let c = try TorchCheckpoint(path: path).convert(key: key)
        return (c, try SafetensorsFile(bytes: try c.writer().serialized()))
    }

    func assertThrows(_ expression: @autoclosure () throws -> Any, contains needle: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(needle), "expected '\(needle)' in: \(error)", file: file, line: line)
        }
    }

    func checkAlbefLike(_ st: SafetensorsFile, _ c: ConvertedCheckpoint) throws {
        let a = Self.base
        XCTAssertEqual(try st.floats("enc.weight"), a)
        XCTAssertEqual(try st.floats("dec.weight"), a)
        XCTAssertEqual(try st.floats("dec_detached.weight"), a)
        XCTAssertEqual(st["view"]?.shape, [2, 3])
        XCTAssertEqual(try st.floats("view"), [a[5], a[6], a[7], a[9], a[10], a[11]])
        XCTAssertEqual(st["transposed"]?.shape, [4, 3])
        XCTAssertEqual(try st.floats("transposed"), (0..<4).flatMap { i in (0..<3).map { j in a[i + 4 * j] } })
        XCTAssertEqual(st["half"]?.dtype, .f32)
        let half = try st.floats("half")
        XCTAssertEqual(half.map(\.bitPattern), Self.halfValues.map(\.bitPattern))  // bit-exact, -0.0 included
        XCTAssertEqual(try st.floats("bf"), Self.bf16Values)
        XCTAssertEqual(st["double"]?.dtype, .f32)
        XCTAssertEqual(try st.floats("double"), [Float(0.1), -3])
        XCTAssertEqual(st["steps"]?.dtype, .i64)
        XCTAssertEqual(st["steps"]?.shape, [1, 3])
        XCTAssertEqual(try st.int64s("steps"), [1, -2, 1 << 40])
        XCTAssertEqual(st["scalar"]?.shape, [])
        XCTAssertEqual(try st.floats("scalar"), [a[11]])
        XCTAssertEqual(st.entries.count, 10)
        XCTAssertEqual(st.metadata["epoch"], "7")
        XCTAssertEqual(st.metadata["config"],
                       #"{"lr":0.0001,"layers":[12,6],"name":"albef \"4M\"","opt":{"betas":[0.9,0.999],"amsgrad":false,"none":null,"big":1099511627776,"neg":-5,"w":70000}}"#)
        XCTAssertEqual(c.stateDictKey, "model")
        XCTAssertEqual(c.skipped, ["optimizer"])
    }

    // MARK: conversion

    func testZipCheckpointConvertsEveryValueEqual() throws {
        let path = try write(G.zipCheckpoint(Self.albefLike()))
        let checkpoint = try TorchCheckpoint(path: path)
        XCTAssertEqual(checkpoint.format, .zip)
        let (c, st) = try converted(path)
        try checkAlbefLike(st, c)
    }

    func testArchiveNameIsTakenFromTheFile() throws {
        // torch.save names the folder after the file (e.g. "ALBEF_4M/data.pkl").
        let path = try write(G.zipCheckpoint(Self.albefLike(), archive: "ALBEF_4M"))
        let (c, st) = try converted(path)
        try checkAlbefLike(st, c)
    }

    func testZip64CheckpointConvertsEveryValueEqual() throws {
        // Files past 4 GiB carry their sizes and offsets in zip64 fields; the same content here.
        let bytes = G.zipCheckpoint(Self.albefLike(), zip64: true)
        let (c, st) = try converted(try write(bytes))
        try checkAlbefLike(st, c)
        // A zip64 locator pointing outside the file is a clear error.
        var damaged = bytes
        let locator = bytes.count - 22 - 20
        damaged[locator + 8] = 0xFF; damaged[locator + 14] = 0x7F
        assertThrows(try TorchCheckpoint(path: write(damaged, "z64.pth")), contains: "zip64 end record")
    }

    func testLegacyCheckpointConvertsEveryValueEqual() throws {
        let path = try write(G.legacyCheckpoint(Self.albefLike()))
        XCTAssertEqual(try TorchCheckpoint(path: path).format, .legacy)
        let (c, st) = try converted(path)
        try checkAlbefLike(st, c)
    }

    func testTopLevelStateDictAndKeyOption() throws {
        let a = G.Storage("FloatStorage", bytes: Self.floatBytes([1, 2, 3]), elementSize: 4)
        let ema = G.Storage("FloatStorage", bytes: Self.floatBytes([4, 5, 6]), elementSize: 4)
        // A HuggingFace pytorch_model.bin: the state dict itself at the top.
        let top = try write(G.zipCheckpoint(.orderedDict([("bert.embeddings.LayerNorm.gamma", .tensor(.init(storage: a, offset: 0, size: [3], stride: [1])))], metadata: true)))
        let (c, st) = try converted(top)
        XCTAssertNil(c.stateDictKey)
        XCTAssertEqual(try st.floats("bert.embeddings.LayerNorm.gamma"), [1, 2, 3])
        // Two state dicts: --key chooses (default is 'model'); nested keys by dotted path.
        let two = try write(G.zipCheckpoint(.dict([("model", .dict([("w", .tensor(.init(storage: a, offset: 0, size: [3], stride: [1])))])),
                                                   ("ema", .dict([("inner", .dict([("w", .tensor(.init(storage: ema, offset: 0, size: [3], stride: [1])))]))]))])), "two.pth")
        XCTAssertEqual(try converted(two).1.floats("w"), [1, 2, 3])
        let (e, est) = try converted(two, key: "ema")
        XCTAssertEqual(e.skipped, ["model"])
        XCTAssertEqual(try est.floats("inner.w"), [4, 5, 6])
        XCTAssertEqual(try converted(two, key: "ema.inner").1.floats("w"), [4, 5, 6])
        assertThrows(try converted(two, key: "nope"), contains: "--key nope: no such entry; top-level keys: model, ema")
    }

    // MARK: refusals

    func testMaliciousGlobalsAreRefusedWithoutRunning() throws {
        let marker = folder.appendingPathComponent("pwned").path
        for (module, name) in [("os", "system"), ("builtins", "eval"), ("posix", "system"), ("torch", "load"), ("collections", "defaultdict")] {
            let evil: G.Object = .dict([("model", .reduce(module: module, name: name, args: [.str("touch \(marker)")]))])
            let path = try write(G.zipCheckpoint(evil), "\(name).pth")
            assertThrows(try TorchCheckpoint(path: path), contains: "refused global \(module).\(name)")
            let legacy = try write(G.legacyCheckpoint(evil), "\(name)-legacy.pth")
            assertThrows(try TorchCheckpoint(path: legacy), contains: "refused global \(module).\(name)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
    }

    func testReduceOfAStorageTypeAndUnknownOpcodesAreRefused() throws {
        let p = try write(G.zipCheckpoint(.dict([("model", .reduce(module: "torch", name: "FloatStorage", args: [.int(3)]))])))
        assertThrows(try TorchCheckpoint(path: p), contains: "REDUCE of torch.FloatStorage")
        // NEWOBJ (how a pickled class instance is built) is not an opcode a state dict needs.
        var g = G()
        var pkl = g.pickle(.dict([]))
        pkl.insert(contentsOf: [0x63] + Array("argparse\nNamespace\n".utf8), at: 2)
        assertThrows(try TorchCheckpoint(path: write(G.storedZip([("a/data.pkl", pkl)]), "ns.pth")), contains: "refused global argparse.Namespace")
        pkl = [0x80, 0x02, 0x29, 0x29, 0x81, 0x2E]
        assertThrows(try TorchCheckpoint(path: write(G.storedZip([("a/data.pkl", pkl)]), "newobj.pth")), contains: "NEWOBJ (0x81)")
        // A plain pickle that is not torch.save's legacy stream is not read at all.
        assertThrows(try TorchCheckpoint(path: write([0x80, 0x02, 0x4B, 0x01, 0x2E], "plain.pkl")), contains: "magic number")
        assertThrows(try TorchCheckpoint(path: write(Array("hello".utf8), "text.pth")), contains: "not a PyTorch checkpoint")
        let complex = G.Storage("ComplexFloatStorage", bytes: Array(repeating: 0, count: 8), elementSize: 8)
        assertThrows(try TorchCheckpoint(path: write(G.zipCheckpoint(.dict([("z", .tensor(.init(storage: complex, offset: 0, size: [1], stride: [1])))])), "c.pth")),
                     contains: "storage type torch.ComplexFloatStorage is not supported")
    }

    func testSafetensorsIsNotTakenForALegacyPickle() throws {
        // A safetensors header of 384 bytes starts 0x80 0x01, like a pickle's PROTO opcode.
        var writer = SafetensorsWriter(metadata: ["note": String(repeating: "x", count: 300)])
        try writer.add("w", floats: [1, 2], shape: [2])
        var bytes = try writer.serialized()
        let pad = 384 - (bytes.count - 8 - 8)  // aim the header length at 384
        writer.metadata["note"] = String(repeating: "x", count: 300 + pad)
        bytes = try writer.serialized()
        XCTAssertEqual(Array(bytes.prefix(2)), [0x80, 0x01])
        let path = try write(bytes, "model.safetensors")
        XCTAssertFalse(WeightFile.isTorchCheckpoint(path))
        XCTAssertEqual(try WeightFile.open(path).file.floats("w"), [1, 2])
        XCTAssertTrue(WeightFile.isTorchCheckpoint(try write(G.legacyCheckpoint(.dict([])), "legacy.pth")))
    }

    // MARK: damaged files

    func testEveryTruncationIsAClearError() throws {
        for bytes in [G.zipCheckpoint(Self.albefLike()), G.legacyCheckpoint(Self.albefLike())] {
            // Every 11th length, and every length in the last 120 bytes (zip directory, legacy storages).
            for length in 1..<bytes.count where length % 11 == 0 || length > bytes.count - 120 {
                let path = try write(Array(bytes[..<length]), "cut.pth")
                XCTAssertThrowsError(try TorchCheckpoint(path: path).convert(), "length \(length) of \(bytes.count)") { error in
                    XCTAssertTrue(error is TorchCheckpointError, "\(error)")
                }
            }
        }
    }

    func testFlippedByteInDataPklIsACRCError() throws {
        var bytes = G.zipCheckpoint(Self.albefLike())
        let start = 30 + "archive/data.pkl".count + 4
        let pklStart = start + (64 - start % 64) % 64
        bytes[pklStart + 40] ^= 0x10
        assertThrows(try TorchCheckpoint(path: write(bytes)), contains: "record archive/data.pkl is corrupted (CRC-32")
    }

    func testEveryFlippedPickleByteIsRefusedOrHarmless() throws {
        // With a matching CRC (a damaged file re-zipped), the unpickler itself must never trap.
        var g = G()
        let pkl = g.pickle(Self.albefLike())
        let storages = g.storages.sorted { $0.key < $1.key }.map { ("a/data/" + $0.key, $0.storage.bytes) }
        var refused = 0
        for i in stride(from: 2, to: pkl.count, by: 3) {
            for flip: UInt8 in [i % 2 == 0 ? 0x01 : 0x80] {
                var damaged = pkl
                damaged[i] ^= flip
                let path = try write(G.storedZip([("a/data.pkl", damaged)] + storages), "flip.pth")
                do { _ = try TorchCheckpoint(path: path).convert() } catch {
                    XCTAssertTrue(error is TorchCheckpointError, "\(error)")
                    refused += 1
                }
            }
        }
        XCTAssertGreaterThan(refused, pkl.count / 6)  // most flips are caught
    }

    func testStorageShorterThanTheTensorIsAnError() throws {
        let a = G.Storage("FloatStorage", bytes: Self.floatBytes(Array(repeating: 1, count: 12)), elementSize: 4)
        let p = try write(G.zipCheckpoint(.dict([("w", .tensor(.init(storage: a, offset: 2, size: [3, 4], stride: [4, 1])))])))
        assertThrows(try TorchCheckpoint(path: p).convert(), contains: "w: shape [3, 4], stride [4, 1] at offset 2 reaches element 13 of storage 0, which has only 12 elements")
        let q = try write(G.legacyCheckpoint(.dict([("w", .tensor(.init(storage: a, offset: 0, size: [4, 4], stride: [4, 1])))])), "l.pth")
        assertThrows(try TorchCheckpoint(path: q).convert(), contains: "reaches element 15 of storage 0")
        // The storage record itself shorter than the element count the pickle declares.
        var g = G()
        let pkl = g.pickle(.dict([("w", .tensor(.init(storage: a, offset: 0, size: [12], stride: [1])))]))
        let short = try write(G.storedZip([("a/data.pkl", pkl), ("a/data/0", Array(a.bytes[..<40]))]), "short.pth")
        assertThrows(try TorchCheckpoint(path: short), contains: "record a/data/0 has 40 bytes but the pickle declares 12 float32 elements")
        let missing = try write(G.storedZip([("a/data.pkl", pkl)]), "missing.pth")
        assertThrows(try TorchCheckpoint(path: missing), contains: "no record a/data/0")
    }

    func testCompressedRecordsAreRefused() throws {
        var bytes = G.zipCheckpoint(Self.albefLike())
        // Mark the first central-directory entry as deflated (method 8).
        let cd = Int(bytes[bytes.count - 6]) | Int(bytes[bytes.count - 5]) << 8 | Int(bytes[bytes.count - 4]) << 16
        bytes[cd + 10] = 8
        assertThrows(try TorchCheckpoint(path: write(bytes)), contains: "archive/data.pkl is compressed (method 8)")
    }

    func testCommandLineConversion() throws {
        var elip = Bundle(for: Self.self).bundleURL.deletingLastPathComponent().appendingPathComponent("elip")
        if !FileManager.default.fileExists(atPath: elip.path) {
            elip = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("elip")
        }
        guard FileManager.default.isExecutableFile(atPath: elip.path) else { throw XCTSkip("elip executable not built next to the tests") }
        let input = try write(G.zipCheckpoint(Self.albefLike()))
        let output = folder.appendingPathComponent("out.safetensors").path
        let p = Process()
        p.executableURL = elip
        p.arguments = ["convert-checkpoint", input, output]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("10 tensors (3 converted to float32), 2 metadata entries"), text)
        XCTAssertTrue(text.contains("not written (hold tensors outside the state dict): optimizer"), text)
        let st = try SafetensorsFile(path: output)
        try checkAlbefLike(st, try TorchCheckpoint(path: input).convert())
        XCTAssertEqual(st.metadata["elip.converted_from"], "ckpt.pth")
    }
}
