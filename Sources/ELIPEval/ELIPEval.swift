// ELIPEval: evaluation and visualisation output (for now: the bitmap font and line charts).

