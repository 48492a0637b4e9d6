// ELIPShards: LMDB, dataset building and inspection, the training shard loader, the synthetic corpus.

