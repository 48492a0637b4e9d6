import ELIPImage
@testable import ELIPShards
import Foundation
import XCTest

/// Small inputs for the dataset builder tests, generated into a temporary directory.
enum DatasetFixtures {
    static func temporaryDirectory(_ tag: String = "ds") throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("elip-\(tag)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    static func write(_ bytes: [UInt8], _ path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func write(_ text: String, _ path: String) throws { try write(Array(text.utf8), path) }

    /// A synthetic scene as JPEG (deterministic per index).
    static func sceneJPEG(_ index: Int, size: Int = 96, quality: Int = 92) throws -> [UInt8] {
        let s = SyntheticScenes.scene(index: index, seed: 77, size: size)
        return try JPEG.encode(bytes: s.pixels, width: size, height: size, format: .rgb, quality: quality)
    }

    /// A width x height gradient image as JPEG.
    static func gradientJPEG(width: Int, height: Int, format: JPEGInputPixelFormat = .rgb) throws -> [UInt8] {
        let bpp = format == .gray ? 1 : (format == .cmyk ? 4 : 3)
        var px = [UInt8](repeating: 0, count: width * height * bpp)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<bpp { px[(y * width + x) * bpp + c] = UInt8((x * 7 + y * 3 + c * 60) % 256) }
            }
        }
        return try JPEG.encode(bytes: px, width: width, height: height, format: format, quality: 90,
                               subsampling: format == .gray ? .gray : .s420)
    }

    /// Inserts an Exif APP1 segment with the given orientation right after SOI.
    static func withEXIFOrientation(_ jpeg: [UInt8], _ orientation: UInt16) -> [UInt8] {
        var tiff: [UInt8] = Array("II".utf8) + [0x2A, 0x00, 0x08, 0x00, 0x00, 0x00]
        tiff += [0x01, 0x00]                                  // one IFD entry
        tiff += [0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00]   // tag 0x0112, SHORT, count 1
        tiff += [UInt8(orientation & 0xFF), UInt8(orientation >> 8), 0x00, 0x00]
        tiff += [0x00, 0x00, 0x00, 0x00]                      // no next IFD
        let payload = Array("Exif".utf8) + [0, 0] + tiff
        let len = payload.count + 2
        return [0xFF, 0xD8, 0xFF, 0xE1, UInt8(len >> 8), UInt8(len & 0xFF)] + payload + Array(jpeg[2...])
    }

    /// A valid JPEG whose frame header declares width x height (a decompression bomb header).
    static func bombJPEG(width: Int, height: Int) throws -> [UInt8] {
        var b = try gradientJPEG(width: 16, height: 16)
        var i = 2
        while i + 9 < b.count {
            if b[i] == 0xFF && (b[i + 1] == 0xC0 || b[i + 1] == 0xC2) {
                b[i + 5] = UInt8(height >> 8); b[i + 6] = UInt8(height & 0xFF)
                b[i + 7] = UInt8(width >> 8); b[i + 8] = UInt8(width & 0xFF)
                return b
            }
            i += 1
        }
        throw DatasetError.invalidArgument("no SOF marker")
    }

    static func png(width: Int, height: Int) throws -> [UInt8] {
        try PNG.encode(try RGBImage(width: width, height: height, fill: RGB(10, 200, 30)))
    }

    /// Every record of a built dataset, by source id.
    static func records(in dir: String) throws -> [String: DatasetRecord] {
        let m = try DatasetManifest.load(fromDirectory: dir)
        var out: [String: DatasetRecord] = [:]
        for i in 0..<m.shardCount {
            let env = try LMDBEnvironment(path: m.shardPath(i, in: dir), readOnly: true)
            try env.read { txn in
                try txn.forEach { _, v in
                    let r = try DatasetRecord.decode(v)
                    out[r.sourceID] = r
                    return true
                }
            }
        }
        return out
    }

    /// Source ids per shard in key order.
    static func shardContents(in dir: String) throws -> [[String]] {
        let m = try DatasetManifest.load(fromDirectory: dir)
        return try (0..<m.shardCount).map { i in
            let env = try LMDBEnvironment(path: m.shardPath(i, in: dir), readOnly: true)
            var ids: [String] = []
            var expected: UInt64 = 0
            try env.read { txn in
                try txn.forEach { k, v in
                    XCTAssertEqual(LMDBKey.uint64(decoding: k), expected)
                    expected += 1
                    ids.append(try DatasetRecord.decode(v).sourceID)
                    return true
                }
            }
            return ids
        }
    }

    static func annotation(_ entries: [(image: String, caption: String)]) -> String {
        "[\n" + entries.map { "{\"image\": \(JSONText.quote($0.image)), \"caption\": \(JSONText.quote($0.caption))}" }
            .joined(separator: ",\n") + "\n]\n"
    }

    static func options(_ out: String, shards: Int, annotations: [String] = [], tars: [String] = [],
                        root: String? = nil, imageSize: Int = 48) -> DatasetBuildOptions {
        var o = DatasetBuildOptions(outputDirectory: out, shardCount: shards)
        o.annotationFiles = annotations
        o.tarInputs = tars
        o.imageRoot = root
        o.policy = ImagePolicy(shorterSide: imageSize, quality: 90)
        o.workers = 2
        o.showProgress = false
        o.batchSize = 4          // several transactions per shard even with tiny inputs
        return o
    }

    static func build(_ o: DatasetBuildOptions) throws -> DatasetBuildReport {
        try DatasetBuilder(options: o, log: { _ in }).build()
    }

    static func rejects(in dir: String) throws -> [RejectRecord] {
        let text = try String(contentsOfFile: (dir as NSString).appendingPathComponent("rejects.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(RejectRecord.self, from: Data($0.utf8)) }
    }
}

/// A test case whose `temporary(tag)` folders are removed after each test.
class TemporaryFoldersTestCase: XCTestCase {
    private var tempDirs: [String] = []

    override func tearDown() {
        for d in tempDirs { try? FileManager.default.removeItem(atPath: d) }
        tempDirs = []
        super.tearDown()
    }

    func temporary(_ tag: String) throws -> String {
        let d = try DatasetFixtures.temporaryDirectory(tag)
        tempDirs.append(d)
        return d
    }
}
