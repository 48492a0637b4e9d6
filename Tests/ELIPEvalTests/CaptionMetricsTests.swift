@testable import ELIPEval
import Foundation
import XCTest

/// ../shared/reference/caption (made by pycocoevalcap 1.2 with the real Java PTBTokenizer).
/// Tests that need it skip with a message when it is absent, as in a user's fresh clone.
enum CaptionReference {
    static func path(_ name: String) throws -> String {
        var root = ProcessInfo.processInfo.environment["ELIP_SHARED"]
        if root == nil {
            // <repo>/Tests/ELIPEvalTests/CaptionMetricsTests.swift -> <repo>/../shared
            let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            root = repo.deletingLastPathComponent().appendingPathComponent("shared").path
        }
        let p = ((root ?? "") as NSString).appendingPathComponent("reference/caption/\(name)")
        guard FileManager.default.fileExists(atPath: p) else {
            throw XCTSkip("needs ../shared/reference/caption/\(name) (reference data of pycocoevalcap); not present")
        }
        return p
    }

    static func json(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path(name))))
    }
}

final class PTBTokenizerTests: XCTestCase {
    private func check(_ caption: String, _ expected: String, line: UInt = #line) {
        XCTAssertEqual(PTBTokenizer.tokenize(caption), expected, "caption: \(caption.debugDescription)", line: line)
    }

    /// Every example of the specification (../shared/reference/README.md, caption section).
    func testTheSpecificationsExamples() {
        check("A kitchen (with white cabinets) and a stove.", "a kitchen -lrb- with white cabinets -rrb- and a stove")
        check("The dog isn't moving; it's asleep on the sofa.", "the dog is n't moving it 's asleep on the sofa")
        check("Wow!! A giraffe eating leaves from a tree...", "wow !! a giraffe eating leaves from a tree")
        check("A sign that says \"STOP\" on a street corner.", "a sign that says stop on a street corner")
        check("Children\u{2019}s kites", "children 's kites")
        check("The kids' kites", "the kids kites")
        check("Buses lined up; there are 3 of them at 12:30.", "buses lined up there are 3 of them at 12:30")
    }

    func testContractionsSplitBeforeTheClitic() {
        XCTAssertEqual(PTBTokenizer.ptbTokens("can't won't don't It's dog's"), ["ca", "n't", "wo", "n't", "do", "n't", "It", "'s", "dog", "'s"])
        check("They're here, we've come, you'll see, he'd go, I'm in.", "they 're here we 've come you 'll see he 'd go i 'm in")
        check("IT'S A DOG'S LIFE", "it 's a dog 's life")
        check("Don\u{2019}t", "do n't")  // U+2019 is an apostrophe
        // The clitic alone is one token; an inner apostrophe stays.
        check("'s o'clock", "'s o'clock")
        // Plural possessive: the apostrophe is split off, then dropped.
        check("The players' bags", "the players bags")
        XCTAssertEqual(PTBTokenizer.ptbTokens("kids'"), ["kids", "'"])
    }

    func testNumbersAndHyphensStayWhole() {
        check("1,000 people, 3.5 miles, at 12:30, 2 dogs and 10 cats.", "1,000 people 3.5 miles at 12:30 2 dogs and 10 cats")
        check("A black-and-white photo of a 10-year-old in a T-shirt.", "a black-and-white photo of a 10-year-old in a t-shirt")
        // A standalone dash is punctuation; so are ; and :.
        check("A dog - don't wake him -- he sleeps; really: asleep", "a dog do n't wake him he sleeps really asleep")
    }

    func testBracketsBecomeWordsAndQuotesAreDropped() {
        XCTAssertEqual(PTBTokenizer.ptbTokens("(a [b] {c})"), ["-LRB-", "a", "-LSB-", "b", "-RSB-", "-LCB-", "c", "-RCB-", "-RRB-"])
        // pycocoevalcap's filter compares after lower-casing: brackets survive as words.
        check("(a [b] {c})", "-lrb- a -lsb- b -rsb- -lcb- c -rcb- -rrb-")
        XCTAssertEqual(PTBTokenizer.ptbTokens("\"STOP\"."), ["``", "STOP", "''", "."])
        check("\u{201C}Hi\u{201D} she said.", "hi she said")
        check("A sign (\"ALL-WAY\") below.", "a sign -lrb- all-way -rrb- below")
    }

    func testRunsOfExclamationAndQuestionMarks() {
        check("Wow!!", "wow !!")
        check("Really?!", "really ?!")
        check("What? Yes! Fine.", "what yes fine")
        check("Wait... a tree.", "wait a tree")
        XCTAssertEqual(PTBTokenizer.ptbTokens("tree...!"), ["tree", "...", "!"])
    }

    func testCaseAccentsAndWhitespace() {
        check("A PLATE OF FOOD WITH BROCCOLI AND RICE.", "a plate of food with broccoli and rice")
        check("CAFÉ", "café")
        check("An outdoor café with crème brûlée.", "an outdoor café with crème brûlée")
        check("  A dog\trunning\non   the grass. ", "a dog running on the grass")
        check("\n", "")
    }

    func testPunctuationOnlyIsEmpty() {
        check("...", "")
        check(" . , ; : - -- ", "")
        XCTAssertEqual(PTBTokenizer.tokens("..."), [])
        // Runs of ! and ? are not in pycocoevalcap's list and survive.
        check("!!", "!!")
    }
}

final class CaptionScorerTests: XCTestCase {
    private func words(_ s: String) -> [String] { s.split(separator: " ").map(String.init) }

    func testBLEUOfAnIdenticalCandidateIsOneUpToTheSmoothing() {
        let s = BLEUScorer.statistics(candidate: words("a cat on a mat"), references: [words("a cat on a mat"), words("a dog")])
        XCTAssertEqual(s, BLEUStatistics(testLength: 5, referenceLength: 5, guess: [5, 4, 3, 2], correct: [5, 4, 3, 2]))
        let b = BLEUScorer.scores(s)
        for (k, v) in b.enumerated() {
            XCTAssertLessThan(v, 1)
            XCTAssertEqual(v, 1, accuracy: 1e-9, "Bleu_\(k + 1)")
        }
        // Equal lengths still pay a brevity penalty of ~1e-10: ratio = (5 + 1e-15) / (5 + 1e-9) < 1.
        let ratio = (5 + 1e-15) / (5 + 1e-9)
        XCTAssertEqual(b[0], ratio * exp(1 - 1 / ratio))
    }

    func testBLEUClipsCountsAndTakesTheShorterOfTwoClosestLengths() {
        // "the" 4 times, at most twice in one reference: 2 of 4 unigrams match.
        let s = BLEUScorer.statistics(candidate: words("the the the the"), references: [words("the cat the"), words("the mat")])
        XCTAssertEqual(s.correct, [2, 0, 0, 0])
        XCTAssertEqual(s.guess, [4, 3, 2, 1])
        // 4 words vs references of 3 and 5: the tie takes 3. 8 vs 9, 7, 10 (image 289343): 7.
        let tie = BLEUScorer.statistics(candidate: words("a b c d"), references: [words("a b c d e"), words("x y z")])
        XCTAssertEqual(tie.referenceLength, 3)
        let eight = BLEUScorer.statistics(candidate: Array(repeating: "w", count: 8),
                                          references: [9, 7, 10].map { Array(repeating: "w", count: $0) })
        XCTAssertEqual(eight.referenceLength, 7)
    }

    func testBLEUBrevityPenaltyAndSmoothing() {
        // 2 words against 3: BP = exp(1 - 3/2).
        let s = BLEUScorer.statistics(candidate: words("a cat"), references: [words("a cat sat")])
        let b = BLEUScorer.scores(s)
        XCTAssertEqual(b[0], exp(1 - 1.5), accuracy: 1e-9)
        XCTAssertEqual(b[1], exp(1 - 1.5), accuracy: 1e-9)
        // No trigram at all: the smoothing gives (1e-15 / 1e-9)^(1/3) x the rest, not 0.
        XCTAssertEqual(b[2], pow(1e-6, 1.0 / 3) * exp(1 - 1.5), accuracy: 1e-9)
        // An empty candidate scores exactly 0 (BP = exp(1 - ~1e15)).
        XCTAssertEqual(BLEUScorer.scores(BLEUScorer.statistics(candidate: [], references: [words("a cat")])), [0, 0, 0, 0])
    }

    func testCorpusBLEUSumsTheStatisticsBeforeDividing() {
        let a = BLEUStatistics(testLength: 3, referenceLength: 4, guess: [3, 2, 1, 0], correct: [3, 1, 0, 0])
        let b = BLEUStatistics(testLength: 5, referenceLength: 4, guess: [5, 4, 3, 2], correct: [4, 2, 1, 0])
        let sum = BLEUStatistics(testLength: 8, referenceLength: 8, guess: [8, 6, 4, 2], correct: [7, 3, 1, 0])
        XCTAssertEqual(BLEUScorer.corpusScores([a, b]), BLEUScorer.scores(sum))
        let ratio = (8 + 1e-15) / (8 + 1e-9)
        XCTAssertEqual(BLEUScorer.corpusScores([a, b])[0], (7 + 1e-15) / (8 + 1e-9) * exp(1 - 1 / ratio))
    }

    func testCIDErOfIdenticalCaptionsIsTen() {
        // Two images with disjoint words: every n-gram has df 1 and weight ln 2.
        let images = [CIDErScorer.Image(candidate: words("a cat on a mat"), references: [words("a cat on a mat")]),
                      CIDErScorer.Image(candidate: words("two dogs run fast"), references: [words("two dogs run fast")])]
        let r = CIDErScorer.scores(images)
        XCTAssertEqual(r.perImage[0], 10, accuracy: 1e-12)
        XCTAssertEqual(r.perImage[1], 10, accuracy: 1e-12)
        XCTAssertEqual(r.corpus, 10, accuracy: 1e-12)
        // One image: ln N = 0, every weight 0, the score 0 (no division by a zero norm).
        XCTAssertEqual(CIDErScorer.scores([images[0]]).corpus, 0)
        // A one-word caption has no bigram to compare: only the unigram order counts.
        let short = CIDErScorer.scores([CIDErScorer.Image(candidate: ["cat"], references: [["cat"]]), images[1]])
        XCTAssertEqual(short.perImage[0], 10.0 / 4, accuracy: 1e-12)
    }

    func testCIDErClipsRepeatedPhrasesAndPenalisesLength() {
        // "red car" said twice against "red car", the other image sharing no word.
        let images = [CIDErScorer.Image(candidate: words("red car red car"), references: [words("red car")]),
                      CIDErScorer.Image(candidate: words("blue boat"), references: [words("blue boat")])]
        let r = CIDErScorer.scores(images)
        // Unigrams: sum min(2w, w) w over red, car = 2w^2 over (sqrt 8 w)(sqrt 2 w): 1/2. Bigrams:
        // "red car" w^2 over (sqrt 5 w)(w): 1/sqrt 5. No 3- or 4-gram in the reference: 0.
        // Bigram positions 3 vs 1: penalty exp(-4 / 72).
        let expected = 10 * (0.5 + 1 / 5.0.squareRoot()) / 4 * exp(-4.0 / 72)
        XCTAssertEqual(r.perImage[0], expected, accuracy: 1e-12)
        XCTAssertEqual(r.perImage[1], 10 * 0.5 * exp(0), accuracy: 1e-12)  // two orders out of four
        XCTAssertEqual(r.corpus, (r.perImage[0] + r.perImage[1]) / 2, accuracy: 1e-15)
    }

    func testCIDErDocumentFrequencyIsOverEachImagesReferences() {
        // "a" is in every image's references: weight ln 2 - ln 2 = 0; "cat" once per image even
        // when two references of the image contain it.
        let images = [CIDErScorer.Image(candidate: ["a"], references: [["a", "cat"], ["cat"]]),
                      CIDErScorer.Image(candidate: ["dog"], references: [["a", "dog"]])]
        let scorer = CIDErScorer(referenceSets: images.map(\.references))
        let v = scorer.vector(["a", "cat", "cat", "unseen"])
        XCTAssertEqual(v.lookup[0]["a"], 0)
        XCTAssertEqual(v.lookup[0]["cat"] ?? .nan, 2 * log(2.0), accuracy: 1e-15)
        XCTAssertEqual(v.lookup[0]["unseen"] ?? .nan, log(2.0), accuracy: 1e-15)  // in no reference: ln N
        XCTAssertEqual(v.length, 3)
        // The candidate "a" has weight 0 only: norm 0, similarity 0.
        XCTAssertEqual(CIDErScorer.scores(images).perImage[0], 0)
        XCTAssertEqual(CIDErScorer.scores([CIDErScorer.Image(candidate: [], references: [["a"]]), images[1]]).perImage[0], 0)
    }
}

final class CaptionEvaluationTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-caption-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Every value of expected.json: corpus within 1e-6 relative, per image within 1e-6 relative
    /// + 1e-12 absolute (the smoothing constants make unmatched images ~1e-5, not 0).
    func testTheReferenceCaseMatchesPycocoevalcap() throws {
        // Loaded outside XCTUnwrap: a missing ../shared must surface as the skip, not a failure.
        let expectedJSON = try CaptionReference.json("expected.json")
        let expected = try XCTUnwrap(expectedJSON as? [String: Any])
        let m = try CaptionEvaluation.evaluate(annotationsFile: CaptionReference.path("annotations.json"),
                                               resultsFile: CaptionReference.path("results.json"))
        let corpus = ["Bleu_1": m.bleu[0], "Bleu_2": m.bleu[1], "Bleu_3": m.bleu[2], "Bleu_4": m.bleu[3], "CIDEr": m.cider]
        var worstCorpus = 0.0, worstImage = 0.0
        for (key, value) in corpus {
            let e = try XCTUnwrap(expected[key] as? Double, key)
            XCTAssertEqual(value, e, accuracy: 1e-6 * abs(e), key)
            worstCorpus = max(worstCorpus, abs(value - e) / abs(e))
        }
        let perImage = try XCTUnwrap(expected["per_image"] as? [String: [String: Double]])
        XCTAssertEqual(m.perImage.count, perImage.count)
        let ours = Dictionary(uniqueKeysWithValues: m.perImage.map { (String($0.imageID), $0) })
        for (id, values) in perImage {
            let s = try XCTUnwrap(ours[id], "image \(id)")
            for (key, e) in values {
                let value = try XCTUnwrap(key == "CIDEr" ? s.cider : key.hasPrefix("Bleu_") ? Int(key.dropFirst(5)).map { s.bleu[$0 - 1] } : nil,
                                          "unexpected key \(key)")
                XCTAssertEqual(value, e, accuracy: 1e-6 * abs(e) + 1e-12, "image \(id) \(key)")
                if e != 0 { worstImage = max(worstImage, abs(value - e) / abs(e)) }
            }
        }
        print("caption reference case: worst relative error corpus \(worstCorpus), per image \(worstImage)")
    }

    /// details.json (not compared by the bar): tokens of every caption and BLEU's counts, so a
    /// tokenizer difference shows as the caption it is in.
    func testTokensAndCountsMatchTheDetails() throws {
        let detailsJSON = try CaptionReference.json("details.json")
        let details = try XCTUnwrap(detailsJSON as? [String: Any])
        let images = try XCTUnwrap(details["images"] as? [[String: Any]])
        let m = try CaptionEvaluation.evaluate(annotationsFile: CaptionReference.path("annotations.json"),
                                               resultsFile: CaptionReference.path("results.json"))
        XCTAssertEqual(details["num_images"] as? Int, m.perImage.count)
        XCTAssertEqual(images.count, m.perImage.count)
        let ours = Dictionary(uniqueKeysWithValues: m.perImage.map { ($0.imageID, $0) })
        for d in images {
            let id = try XCTUnwrap(d["image_id"] as? Int)
            let s = try XCTUnwrap(ours[id], "image \(id)")
            let kind = d["kind"] as? String ?? "?"
            XCTAssertEqual(s.candidate, d["candidate_tokenized"] as? String, "image \(id) (\(kind)) candidate")
            XCTAssertEqual(s.references, d["refs_tokenized"] as? [String], "image \(id) (\(kind)) references")
            XCTAssertEqual(s.bleuStatistics.testLength, d["testlen"] as? Int, "image \(id)")
            XCTAssertEqual(s.bleuStatistics.referenceLength, d["reflen_closest"] as? Int, "image \(id)")
            XCTAssertEqual(s.bleuStatistics.guess, d["guess"] as? [Int], "image \(id)")
            XCTAssertEqual(s.bleuStatistics.correct, d["correct"] as? [Int], "image \(id)")
            for k in 1...3 {
                let e = try XCTUnwrap(d["Bleu_\(k)"] as? Double)
                XCTAssertEqual(s.bleu[k - 1], e, accuracy: 1e-6 * abs(e) + 1e-12, "image \(id) Bleu_\(k)")
            }
        }
        let corpus = try XCTUnwrap(details["corpus"] as? [String: Any])
        let stats = m.perImage.map(\.bleuStatistics)
        XCTAssertEqual(stats.map(\.testLength).reduce(0, +), corpus["testlen"] as? Int)
        XCTAssertEqual(stats.map(\.referenceLength).reduce(0, +), corpus["reflen"] as? Int)
    }

    /// The files the official code stops on (an AssertionError each), refused with the reason.
    func testTheRefusedReferenceFilesNameTheProblem() throws {
        let annotations = try CaptionReference.path("annotations.json")
        for (file, reason) in [("results_missing.json", "image 397133 has no result"),
                               ("results_extra.json", "a result for image 999999, which is not in the annotations"),
                               ("results_duplicate.json", "image 391895 has 2 results")] {
            let results = try CaptionReference.path(file)
            XCTAssertThrowsError(try CaptionEvaluation.evaluate(annotationsFile: annotations, resultsFile: results)) {
                let message = "\($0)"
                XCTAssertTrue($0 is CaptionEvaluationError, "\(type(of: $0))")
                XCTAssertTrue(message.hasPrefix(results + ": ") && message.contains(reason), message)
                XCTAssertFalse(message.contains("\n"), message)
            }
        }
    }

    private func write(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// The image selection: `images` in file order, an id listed twice once; annotations of other
    /// images are ignored; `\uXXXX` escapes read as the characters.
    func testWhichImagesAreEvaluated() throws {
        let annotations = try write("a.json", """
            {"images": [{"id": 2}, {"id": 1}, {"id": 2}],
             "annotations": [{"image_id": 1, "caption": "A cat on a mat."}, {"image_id": 7, "caption": "not evaluated"},
                             {"image_id": 2, "caption": "Two dogs run fast."}, {"image_id": 1, "caption": "A caf\\u00e9."}]}
            """)
        let results = try write("r.json", """
            [{"image_id": 1, "caption": "a cat on a mat", "score": 3}, {"image_id": 2.0, "caption": "TWO DOGS RUN FAST!"}]
            """)
        let m = try CaptionEvaluation.evaluate(annotationsFile: annotations, resultsFile: results)
        XCTAssertEqual(m.perImage.map(\.imageID), [2, 1])
        XCTAssertEqual(m.perImage[1].references, ["a cat on a mat", "a café"])
        XCTAssertEqual(m.perImage[0].candidate, "two dogs run fast")
        // Image 2: identical to its only reference, no n-gram shared with image 1: CIDEr 10.
        // Image 1 is identical to one of its two references only.
        XCTAssertEqual(m.perImage[0].cider, 10, accuracy: 1e-12)
        XCTAssertTrue(m.perImage[1].cider > 5 && m.perImage[1].cider < 10, "\(m.perImage[1].cider)")
        XCTAssertEqual(m.cider, (m.perImage[0].cider + m.perImage[1].cider) / 2, accuracy: 1e-15)
        let json = m.jsonObject()
        XCTAssertEqual(Set(json.keys), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr", "per_image"])
        let perImage = try XCTUnwrap(json["per_image"] as? [String: [String: Double]])
        XCTAssertEqual(Set(perImage.keys), ["1", "2"])
        XCTAssertEqual(perImage["2"]?["CIDEr"], m.perImage[0].cider)
        XCTAssertEqual(perImage["1"]?["Bleu_4"], m.perImage[1].bleu[3])
    }

    /// Unreadable or malformed input: one line naming the file and the problem, never a trap.
    func testMalformedFilesNameTheFileAndProblem() throws {
        let goodAnnotations = """
            {"images": [{"id": 1}], "annotations": [{"image_id": 1, "caption": "a cat"}]}
            """
        func refuses(annotations: String = goodAnnotations, results: String = "[{\"image_id\": 1, \"caption\": \"a cat\"}]",
                     _ reason: String, in which: String, line: UInt = #line) throws {
            let a = try write("ann.json", annotations), r = try write("res.json", results)
            XCTAssertThrowsError(try CaptionEvaluation.evaluate(annotationsFile: a, resultsFile: r), line: line) {
                let message = "\($0)"
                XCTAssertTrue(message.hasPrefix(dir.appendingPathComponent(which).path + ": ") && message.contains(reason),
                              message, line: line)
                XCTAssertFalse(message.contains("\n"), message, line: line)
            }
        }
        try refuses(annotations: "{\"images\": [", "not valid JSON", in: "ann.json")
        try refuses(annotations: "[]", "expected a JSON object", in: "ann.json")
        try refuses(annotations: "{\"images\": []}", "missing key \"annotations\"", in: "ann.json")
        try refuses(annotations: "{\"images\": {}, \"annotations\": []}", "\"images\" is not a list", in: "ann.json")
        try refuses(annotations: "{\"images\": [], \"annotations\": []}", "\"images\" is empty", in: "ann.json")
        try refuses(annotations: "{\"images\": [3], \"annotations\": []}", "images[0] is not an object", in: "ann.json")
        try refuses(annotations: "{\"images\": [{\"file_name\": \"x\"}], \"annotations\": []}", "images[0] has no \"id\"", in: "ann.json")
        try refuses(annotations: "{\"images\": [{\"id\": \"1\"}], \"annotations\": []}", "images[0]: \"id\" is not an integer",
                    in: "ann.json")
        try refuses(annotations: "{\"images\": [{\"id\": true}], \"annotations\": []}", "is not an integer (true)", in: "ann.json")
        try refuses(annotations: "{\"images\": [{\"id\": 1.5}], \"annotations\": []}", "is not an integer (1.5)", in: "ann.json")
        try refuses(annotations: "{\"images\": [{\"id\": 1}], \"annotations\": [{\"image_id\": 1, \"caption\": null}]}",
                    "annotations[0]: \"caption\" is not a string (null)", in: "ann.json")
        try refuses(annotations: "{\"images\": [{\"id\": 1}, {\"id\": 4}], \"annotations\": [{\"image_id\": 1, \"caption\": \"a\"}]}",
                    "image 4 has no reference caption", in: "ann.json")
        try refuses(results: "{\"image_id\": 1}", "expected a JSON list", in: "res.json")
        try refuses(results: "[{\"caption\": \"a cat\"}]", "entry 0 has no \"image_id\"", in: "res.json")
        try refuses(results: "[{\"image_id\": 1, \"caption\": [\"a cat\"]}]", "entry 0: \"caption\" is not a string (a list)",
                    in: "res.json")
        try refuses(results: "[{\"image_id\": 1, \"caption\": \"a\"}, {\"image_id\": 1, \"caption\": \"b\"}, {\"image_id\": 1, \"caption\": \"c\"}]",
                    "image 1 has 3 results", in: "res.json")
        try refuses(results: "[]", "image 1 has no result", in: "res.json")
        try refuses(results: "[{\"image_id\": 5, \"caption\": \"a\"}, {\"image_id\": 6, \"caption\": \"b\"}]",
                    "a result for image 5, which is not in the annotations (and 1 more such result)", in: "res.json")
        let a = try write("ann.json", goodAnnotations)
        let absent = dir.appendingPathComponent("absent.json").path
        XCTAssertThrowsError(try CaptionEvaluation.evaluate(annotationsFile: a, resultsFile: absent)) {
            XCTAssertEqual("\($0)", "\(absent): cannot read the file (it does not exist)")
        }
    }
}
