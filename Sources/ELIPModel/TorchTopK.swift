import ELIPTensor

/// The order in which PyTorch's CPU `topk(k, largest=True, sorted=True)` returns indices when
/// values tie (aten TopKImpl.h): pairs (value, index) compared by value only, then
/// `std::partial_sort` when k * 64 <= n, else `std::nth_element(k - 1)` followed by `std::sort`
/// of the first k - 1 — libstdc++'s unstable algorithms, re-enacted step by step here. Ties are
/// routine in VQA's `rank_answer` (answers sharing a first token have equal probabilities), and
/// which of them enter the k candidates, and in what order, is part of the official result.
public enum TorchTopK {
    typealias Element = (value: Float, index: Int)

    /// Indices of the k largest `values`, in PyTorch's CPU order (NaN counts as largest).
    public static func largest(_ values: [Float], k: Int) throws -> [Int] {
        guard k >= 0, k <= values.count else {
            throw TensorError.invalidArgument(op: "topk", reason: "k \(k) outside 0...\(values.count)")
        }
        guard k > 0 else { return [] }
        var q: [Element] = values.enumerated().map { ($0.element, $0.offset) }
        let n = q.count
        if k * 64 <= n {
            heapSelect(&q, 0, k, n)
            sortHeap(&q, 0, k)
        } else {
            nthElement(&q, 0, k - 1, n)
            sort(&q, 0, k - 1)
        }
        return q[0..<k].map(\.index)
    }

    /// The comparator of TopKImpl.h for largest=True.
    static func before(_ x: Element, _ y: Element) -> Bool {
        (x.value.isNaN && !y.value.isNaN) || x.value > y.value
    }

    /// floor(log2(n)) (libstdc++ `__lg`).
    static func lg(_ n: Int) -> Int { Int.bitWidth - 1 - n.leadingZeroBitCount }

    // std::nth_element = __introselect.
    static func nthElement(_ q: inout [Element], _ first0: Int, _ nth: Int, _ last0: Int) {
        guard first0 != last0, nth != last0 else { return }
        var first = first0, last = last0, depth = lg(last - first) * 2
        while last - first > 3 {
            if depth == 0 {
                heapSelect(&q, first, nth + 1, last)
                q.swapAt(first, nth)
                return
            }
            depth -= 1
            let cut = partitionPivot(&q, first, last)
            if cut <= nth { first = cut } else { last = cut }
        }
        insertionSort(&q, first, last)
    }

    // std::sort = __introsort_loop (threshold 16) + __final_insertion_sort.
    static func sort(_ q: inout [Element], _ first: Int, _ last: Int) {
        guard first != last else { return }
        introsortLoop(&q, first, last, lg(last - first) * 2)
        if last - first > 16 {
            insertionSort(&q, first, first + 16)
            for i in (first + 16)..<last { unguardedLinearInsert(&q, i) }
        } else {
            insertionSort(&q, first, last)
        }
    }

    static func introsortLoop(_ q: inout [Element], _ first: Int, _ last0: Int, _ depth0: Int) {
        var last = last0, depth = depth0
        while last - first > 16 {
            if depth == 0 {
                heapSelect(&q, first, last, last)
                sortHeap(&q, first, last)
                return
            }
            depth -= 1
            let cut = partitionPivot(&q, first, last)
            introsortLoop(&q, cut, last, depth)
            last = cut
        }
    }

    static func partitionPivot(_ q: inout [Element], _ first: Int, _ last: Int) -> Int {
        let mid = first + (last - first) / 2
        moveMedianToFirst(&q, first, first + 1, mid, last - 1)
        // __unguarded_partition(first + 1, last, pivot = first)
        var lo = first + 1, hi = last
        while true {
            while before(q[lo], q[first]) { lo += 1 }
            hi -= 1
            while before(q[first], q[hi]) { hi -= 1 }
            if !(lo < hi) { return lo }
            q.swapAt(lo, hi)
            lo += 1
        }
    }

    static func moveMedianToFirst(_ q: inout [Element], _ result: Int, _ a: Int, _ b: Int, _ c: Int) {
        if before(q[a], q[b]) {
            if before(q[b], q[c]) { q.swapAt(result, b) } else if before(q[a], q[c]) { q.swapAt(result, c) } else { q.swapAt(result, a) }
        } else if before(q[a], q[c]) {
            q.swapAt(result, a)
        } else if before(q[b], q[c]) {
            q.swapAt(result, c)
        } else {
            q.swapAt(result, b)
        }
    }

    static func insertionSort(_ q: inout [Element], _ first: Int, _ last: Int) {
        guard first != last else { return }
        var i = first + 1
        while i < last {
            if before(q[i], q[first]) {
                let v = q[i]
                var j = i
                while j > first { q[j] = q[j - 1]; j -= 1 }
                q[first] = v
            } else {
                unguardedLinearInsert(&q, i)
            }
            i += 1
        }
    }

    static func unguardedLinearInsert(_ q: inout [Element], _ last0: Int) {
        let v = q[last0]
        var last = last0, next = last0 - 1
        while before(v, q[next]) {
            q[last] = q[next]
            last = next
            next -= 1
        }
        q[last] = v
    }

    // Heaps (__make_heap, __adjust_heap, __push_heap, __pop_heap, __heap_select, __sort_heap).
    static func heapSelect(_ q: inout [Element], _ first: Int, _ middle: Int, _ last: Int) {
        makeHeap(&q, first, middle)
        var i = middle
        while i < last {
            if before(q[i], q[first]) { popHeap(&q, first, middle, i) }
            i += 1
        }
    }

    static func sortHeap(_ q: inout [Element], _ first: Int, _ last0: Int) {
        var last = last0
        while last - first > 1 {
            last -= 1
            popHeap(&q, first, last, last)
        }
    }

    static func makeHeap(_ q: inout [Element], _ first: Int, _ last: Int) {
        let len = last - first
        guard len >= 2 else { return }
        var parent = (len - 2) / 2
        while true {
            adjustHeap(&q, first, parent, len, q[first + parent])
            if parent == 0 { return }
            parent -= 1
        }
    }

    static func popHeap(_ q: inout [Element], _ first: Int, _ last: Int, _ result: Int) {
        let v = q[result]
        q[result] = q[first]
        adjustHeap(&q, first, 0, last - first, v)
    }

    static func adjustHeap(_ q: inout [Element], _ first: Int, _ hole0: Int, _ len: Int, _ value: Element) {
        let top = hole0
        var hole = hole0, child = hole0
        while child < (len - 1) / 2 {
            child = 2 * (child + 1)
            if before(q[first + child], q[first + child - 1]) { child -= 1 }
            q[first + hole] = q[first + child]
            hole = child
        }
        if len & 1 == 0, child == (len - 2) / 2 {
            child = 2 * (child + 1)
            q[first + hole] = q[first + child - 1]
            hole = child - 1
        }
        // __push_heap
        var parent = (hole - 1) / 2
        while hole > top, before(q[first + parent], value) {
            q[first + hole] = q[first + parent]
            hole = parent
            parent = (hole - 1) / 2
        }
        q[first + hole] = value
    }
}
