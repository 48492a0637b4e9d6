import CKernels

/// Row-parallel drivers for the C kernels. Rows are split into `Threads.count` chunks with fixed
/// boundaries, so results do not depend on scheduling.
enum Kernels {
    /// Minimum elements per chunk before a loop is worth splitting across threads.
    static let grainElements = 1 << 14

    @inline(__always)
    static func rowGrain(_ cols: Int) -> Int { max(1, grainElements / max(cols, 1)) }

    /// Every row of y [rows, cols] set to `row`.
    static func broadcastRows(_ y: UnsafeMutablePointer<Float>, _ row: UnsafePointer<Float>, rows: Int, cols: Int) {
        Threads.parallelFor(rows, grain: rowGrain(cols)) { r in
            elip_broadcast_rows(y + r.lowerBound * cols, row, Int64(r.count), Int64(cols))
        }
    }

    /// db += column sums of dy [rows, cols]. Per-chunk partials, combined in chunk order.
    static func sumRowsInto(_ dy: UnsafePointer<Float>, _ db: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        let chunks = Threads.chunkCount(rows, grain: rowGrain(cols))
        if chunks == 1 { elip_sum_rows_into(dy, db, Int64(rows), Int64(cols)); return }
        let partial = Storage(count: chunks * cols, zeroed: true)
        let p = partial.pointer
        Threads.parallelFor(chunks) { cr in
            for c in cr {
                let r = Threads.chunkRange(c, of: chunks, n: rows)
                elip_sum_rows_into(dy + r.lowerBound * cols, p + c * cols, Int64(r.count), Int64(cols))
            }
        }
        for c in 0..<chunks { elip_axpy(1, p + c * cols, db, Int64(cols)) }
    }

    /// Element-wise map in parallel chunks.
    static func map(_ n: Int, _ body: (Int, Int) -> Void) {
        Threads.parallelFor(n, grain: grainElements) { r in body(r.lowerBound, r.count) }
    }

    /// Row-wise map in parallel chunks.
    static func mapRows(_ rows: Int, cols: Int, _ body: (Int, Int) -> Void) {
        Threads.parallelFor(rows, grain: rowGrain(cols)) { r in body(r.lowerBound, r.count) }
    }
}
