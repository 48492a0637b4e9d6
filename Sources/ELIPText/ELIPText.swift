// ELIPText: WordPiece/BERT tokenizers, vocabulary, caption cleaning (pre_caption), Unicode helpers.

