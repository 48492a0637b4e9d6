import ELIPTensor

/// What the model needs from the process group (implemented over MPI by the trainer): gathering
/// features from every rank in rank order and summing gradients. Kept as a protocol so the model
/// does not depend on MPI.
public protocol FeatureExchange: AnyObject {
    var rank: Int { get }
    var worldSize: Int { get }
    /// Every rank's `local` (equal counts), concatenated in rank order.
    func allGather(_ local: [Float]) throws -> [Float]
    /// Element-wise sum over ranks.
    func allReduceSum(_ values: [Float]) throws -> [Float]
}

extension Tensor {
    /// Rows of every rank, concatenated in rank order: [B, ...] -> [W * B, ...]. With gradient:
    /// backward sums the gathered gradient over ranks and keeps this rank's rows, so each rank's
    /// features receive the gradients of every rank's loss (the step of W ranks x batch B then
    /// equals one rank with batch W * B).
    public func allGatherRows(_ exchange: FeatureExchange) throws -> Tensor {
        let gathered = try exchange.allGather(toArray())
        let out = try Tensor(gathered, shape: [shape[0] * exchange.worldSize] + shape.dropFirst())
        let rank = exchange.rank, local = count
        return Autograd.customOp(output: out, inputs: [self]) { g in
            let summed = try exchange.allReduceSum(g.toArray())
            return [try Tensor(Array(summed[(rank * local)..<((rank + 1) * local)]), shape: self.shape)]
        }
    }
}
