/// WordPiece, as HuggingFace's `WordpieceTokenizer`: greedy longest-match-first from the start
/// of the word, later pieces prefixed with "##"; a word longer than `maxInputCharsPerWord`
/// scalars, or with no piece matching at some position, becomes a single unknown token.
///
/// Implemented with a trie instead of HF's "try every shorter substring" loop: walking the trie
/// from a position visits exactly the vocabulary pieces that start there, so the last one seen
/// is the longest match: same result, without quadratic hashing.
public struct WordPieceTokenizer: Sendable {
    public let vocabulary: Vocabulary
    public let unknownId: Int32
    public let maxInputCharsPerWord: Int
    private let trie: PieceTrie
    /// Trie node reached by the continuation prefix ("##"); nil if no token uses it.
    private let continuationRoot: Int32?

    public init(vocabulary: Vocabulary, unknownToken: String = "[UNK]",
                continuationPrefix: String = "##", maxInputCharsPerWord: Int = 100) throws {
        guard let unk = vocabulary.id(for: unknownToken) else {
            throw TokenizerError.missingSpecialToken(path: vocabulary.source, token: unknownToken)
        }
        self.vocabulary = vocabulary
        self.unknownId = unk
        self.maxInputCharsPerWord = maxInputCharsPerWord
        var trie = PieceTrie()
        for (id, token) in vocabulary.tokens.enumerated() {
            trie.insert(token.unicodeScalars, id: Int32(id))
        }
        self.continuationRoot = trie.walk(continuationPrefix.unicodeScalars, from: PieceTrie.root)
        self.trie = trie
    }

    /// Appends the piece ids of one word (as produced by `BasicTokenizer`).
    func appendIds(of word: ArraySlice<Unicode.Scalar>, to ids: inout [Int32]) {
        if word.count > maxInputCharsPerWord { ids.append(unknownId); return }
        let firstNew = ids.count
        var start = word.startIndex
        while start < word.endIndex {
            guard let root = start == word.startIndex ? PieceTrie.root : continuationRoot else {
                break
            }
            var node = root
            var best: (id: Int32, end: Int)?
            var i = start
            while i < word.endIndex, let next = trie.child(of: node, word[i]) {
                node = next
                i += 1
                if let id = trie.tokenId(at: node) { best = (id, i) }
            }
            guard let match = best else { break }
            ids.append(match.id)
            start = match.end
        }
        if start < word.endIndex {
            // No piece matched here: HF drops the partial pieces and emits one [UNK].
            ids.removeSubrange(firstNew...)
            ids.append(unknownId)
        }
    }

    /// The pieces of one word, as strings.
    public func tokenize(word: String) -> [String] {
        var ids: [Int32] = []
        appendIds(of: Array(word.unicodeScalars)[...], to: &ids)
        return ids.map { vocabulary.tokens[Int($0)] }
    }
}

/// A scalar trie over the vocabulary. Edges live in one open-addressing hash table keyed by
/// (node, scalar): compact for a 30k-token vocabulary with a large alphabet, and cheaper to probe
/// than `Dictionary` (whose SipHash dominated encoding time).
struct PieceTrie: Sendable {
    static let root: Int32 = 0
    private var tokenIds: [Int32] = [-1]  // per node; -1 = no token ends here
    private var keys: [UInt64]             // 0 = empty slot; `key` never returns 0
    private var values: [Int32]            // child node of the edge in the same slot
    private var edgeCount = 0
    private var mask: Int

    init() {
        keys = [UInt64](repeating: 0, count: 1024)
        values = [Int32](repeating: 0, count: 1024)
        mask = 1023
    }

    /// node << 21 | scalar, plus one so that (root, U+0000) is not the empty marker.
    @inline(__always)
    private static func key(_ node: Int32, _ s: Unicode.Scalar) -> UInt64 {
        (UInt64(UInt32(bitPattern: node)) << 21 | UInt64(s.value)) &+ 1  // scalars are < 2^21
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int {
        // Fibonacci hashing: spreads consecutive scalars and nodes over the table.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    @inline(__always)
    func child(of node: Int32, _ s: Unicode.Scalar) -> Int32? {
        let k = PieceTrie.key(node, s)
        var i = slot(k)
        while true {
            let found = keys[i]
            if found == k { return values[i] }
            if found == 0 { return nil }
            i = (i + 1) & mask
        }
    }

    @inline(__always)
    func tokenId(at node: Int32) -> Int32? {
        let id = tokenIds[Int(node)]
        return id >= 0 ? id : nil
    }

    func walk<S: Sequence>(_ scalars: S, from start: Int32) -> Int32? where S.Element == Unicode.Scalar {
        var node = start
        for s in scalars {
            guard let next = child(of: node, s) else { return nil }
            node = next
        }
        return node
    }

    mutating func insert<S: Sequence>(_ scalars: S, id: Int32) where S.Element == Unicode.Scalar {
        var node = PieceTrie.root
        for s in scalars {
            if let next = child(of: node, s) {
                node = next
            } else {
                let next = Int32(tokenIds.count)
                tokenIds.append(-1)
                addEdge(PieceTrie.key(node, s), next)
                node = next
            }
        }
        tokenIds[Int(node)] = id
    }

    private mutating func addEdge(_ key: UInt64, _ value: Int32) {
        if (edgeCount + 1) * 2 > keys.count { grow() }  // load factor <= 1/2
        var i = slot(key)
        while keys[i] != 0 { i = (i + 1) & mask }
        keys[i] = key
        values[i] = value
        edgeCount += 1
    }

    private mutating func grow() {
        let oldKeys = keys, oldValues = values
        keys = [UInt64](repeating: 0, count: oldKeys.count * 2)
        values = [Int32](repeating: 0, count: oldKeys.count * 2)
        mask = keys.count - 1
        edgeCount = 0
        for (k, v) in zip(oldKeys, oldValues) where k != 0 { addEdge(k, v) }
    }
}
