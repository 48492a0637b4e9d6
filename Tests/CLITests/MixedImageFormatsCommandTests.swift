import Foundation
import ImageFormatFixtures
import XCTest

/// Issue 16 part 3: build-dataset decodes JPEG, PNG, GIF, WebP and BMP by default (stored as JPEG);
/// every broken or undecodable file is rejected with its reason; --only-jpeg restores the strict policy.
final class MixedImageFormatsCommandTests: XCTestCase {
    typealias F = FormatFixtures

    func testMixedFolderKeepsEveryGoodImageAndRejectsEveryBrokenOne() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let images = dir.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        let w = 24, h = 16
        var rgb: [UInt8] = [], rgba: [UInt8] = []
        for i in 0..<(w * h) {
            rgb += [UInt8(i % 256), UInt8((i * 7) % 256), 40]
            rgba += [UInt8(i % 256), 30, 200, i % 2 == 0 ? 255 : 60]
        }
        let gifIndices = (0..<(w * h)).map { UInt8($0 % 4) }
        let palette: [(UInt8, UInt8, UInt8)] = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
        let bmpRows: [[UInt8]] = (0..<h).map { y -> [UInt8] in (0..<w).flatMap { x -> [UInt8] in [UInt8(x * 10), UInt8(y * 10), 7] } }  // 72 bytes: 4-aligned
        let png = F.png(width: w, height: h, colorType: 6, bitDepth: 8, rows: (0..<h).map { Array(rgba[($0 * w * 4)..<(($0 + 1) * w * 4)]) })
        let gif = F.gif(width: w, height: h, palette: palette, frames: [((0, 0), (w, h), gifIndices)], interlace: true)
        let webp = F.webp(width: w, height: h, pixels: rgb, alpha: false)
        let good: [String: [UInt8]] = [
            "a.jpg": try F.jpeg(width: w, height: h),
            "b.png": png,
            "c.png": F.png(width: 8, height: 2, colorType: 3, bitDepth: 2, rows: [F.pack(Array(repeating: 1, count: 8), bits: 2), F.pack(Array(repeating: 2, count: 8), bits: 2)],
                           palette: palette, transparency: [0, 255, 255]),
            "d.png": F.png(width: 2, height: 1, colorType: 0, bitDepth: 16, rows: [[0x12, 0x34, 0xFF, 0xFF]]),
            "e.gif": gif,
            "f.webp": webp,
            "g.webp": F.webp(width: w, height: h, pixels: rgba, alpha: true),
            "h.bmp": F.bmp(width: w, height: h, bitsPerPixel: 24, pixelRows: bmpRows),
            "i.bmp": F.bmp(width: 4, height: 1, bitsPerPixel: 8, palette: palette, pixelRows: [[0, 1, 2, 3]]),
        ]
        let broken: [String: ([UInt8], String)] = [
            "x-truncated.png": (Array(png.prefix(png.count / 2)), "truncated_image"),
            "x-truncated.gif": (Array(gif.prefix(gif.count / 2)), "truncated_image"),
            "x-truncated.webp": (Array(webp.prefix(webp.count / 2)), "corrupt_image"),
            "x-rle.bmp": (F.bmp(width: 1, height: 1, bitsPerPixel: 8, compression: 1, palette: palette, pixelRows: [[0, 0, 0, 0]]), "unsupported_format"),
            "x-short.bmp": (Array(F.bmp(width: w, height: h, bitsPerPixel: 24, pixelRows: bmpRows).prefix(200)), "truncated_image"),
            "x-badindex.bmp": (F.bmp(width: 4, height: 1, bitsPerPixel: 8, palette: palette, pixelRows: [[0, 9, 0, 0]]), "corrupt_image"),
            "x.tif": ([0x49, 0x49, 0x2A, 0x00] + Array(repeating: 0, count: 40), "unsupported_format"),
            "x.txt.jpg": (Array("just some text".utf8), "not_an_image"),
            "x-empty.png": ([], "empty_file"),
        ]
        var entries: [[String: Any]] = []
        for (name, bytes) in good { try Data(bytes).write(to: images.appendingPathComponent(name)); entries.append(["image": "images/\(name)", "caption": "a picture \(name)"]) }
        for (name, b) in broken { try Data(b.0).write(to: images.appendingPathComponent(name)); entries.append(["image": "images/\(name)", "caption": "broken \(name)"]) }
        let annotations = dir.appendingPathComponent("ann.json").path
        try JSONSerialization.data(withJSONObject: entries).write(to: URL(fileURLWithPath: annotations))

        let out = dir.appendingPathComponent("shards").path
        let r = try CLI.run(["build-dataset", "--annotations", annotations, "--image-root", dir.path, "--out", out, "--shards", "1",
                             "--image-size", "16", "--workers", "2", "--max-reject-fraction", "1", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("built \(good.count) records in 1 shards"), r.stdout)
        let rejects = try String(contentsOfFile: out + "/rejects.jsonl", encoding: .utf8)
        XCTAssertEqual(rejects.split(separator: "\n").count, broken.count, rejects)
        for (name, b) in broken {
            XCTAssertTrue(rejects.contains("\"item\": \"images/\(name)\", \"reason\": \"\(b.1)\""), "\(name): \(rejects)")
        }
        for name in good.keys { XCTAssertFalse(rejects.contains("images/\(name)\""), "\(name) rejected: \(rejects)") }
        let verify = try CLI.run(["inspect-dataset", out, "--verify", "--out", dir.appendingPathComponent("sheet.png").path])
        XCTAssertTrue(verify.stdout.contains("verify: OK (\(good.count) records checked in 1 shards)"), verify.stdout + verify.stderr)

        // --only-jpeg: only a.jpg is kept; the other good images are unsupported, named with the flag.
        let strict = dir.appendingPathComponent("strict").path
        let s = try CLI.run(["build-dataset", "--annotations", annotations, "--image-root", dir.path, "--out", strict, "--shards", "1",
                             "--image-size", "16", "--workers", "2", "--max-reject-fraction", "1", "--quiet", "--only-jpeg"])
        XCTAssertEqual(s.status, 0, s.stdout + s.stderr)
        XCTAssertTrue(s.stdout.contains("built 1 records in 1 shards"), s.stdout)
        let strictRejects = try String(contentsOfFile: strict + "/rejects.jsonl", encoding: .utf8)
        for name in good.keys where name != "a.jpg" {
            XCTAssertTrue(strictRejects.contains("\"item\": \"images/\(name)\", \"reason\": \"unsupported_format\""), "\(name): \(strictRejects)")
        }
        XCTAssertTrue(strictRejects.contains("only JPEG is accepted with --only-jpeg"), strictRejects)
        let gone = try CLI.run(["build-dataset", "--annotations", annotations, "--image-root", dir.path, "--out", dir.appendingPathComponent("old").path, "--allow-png"])
        XCTAssertNotEqual(gone.status, 0)
    }
}
