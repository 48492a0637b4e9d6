// ELIPData: tokenizer, caption cleaning, image codecs, LMDB dataset shards and the training loader.

