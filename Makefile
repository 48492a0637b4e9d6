# elip: ELIP vision-language pre-training on CPU clusters.
SWIFT        ?= swift
BUILD_FLAGS  ?=
THREADS      ?= 2
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

.PHONY: setup build debug-build test bench bench-vs-pytorch demo finetune-demo compare clean

setup:
	@scripts/setup.sh

build: setup
	$(SWIFT) build -c release $(BUILD_FLAGS)

debug-build: setup
	$(SWIFT) build $(BUILD_FLAGS)

# Unit and end-to-end tests (tiny shapes), then the multi-process MPI tests.
test: setup
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	ELIP_THREADS=$(THREADS) BUILD_FLAGS="$(BUILD_FLAGS)" scripts/run-tests.sh

# Kernel numbers, then full base-size pre-training steps at batch 4 of every backbone (about 15
# minutes on 2 cores): ELIP-ALBEF with the paper's look-ahead pruning, no pruning and inline scoring
# side by side in one process; ELIP-BLIP and ELIP-METER (CLIP ViT-B/16@288, ViT-B/32@224; 50-token
# captions as METER's max_text_len) pruned and unpruned.
bench: build
	$$($(SWIFT) build -c release --show-bin-path)/elip bench ops --threads $(THREADS)
	$$($(SWIFT) build -c release --show-bin-path)/elip bench train-step --preset albef-base --batch 4 --steps 3 \
		--variants look_ahead,none,inline --threads $(THREADS)
	$$($(SWIFT) build -c release --show-bin-path)/elip bench train-step --preset blip-base --batch 4 --steps 3 \
		--variants look_ahead,none --threads $(THREADS)
	$$($(SWIFT) build -c release --show-bin-path)/elip bench train-step --preset meter-base --batch 4 --steps 3 \
		--text-length 50 --variants look_ahead,none --threads $(THREADS)
	$$($(SWIFT) build -c release --show-bin-path)/elip bench train-step --preset meter-base-clip32 --batch 4 --steps 3 \
		--text-length 50 --variants look_ahead,none --threads $(THREADS)

# One pre-training step of the official PyTorch code vs ours, alternating (README "Ours vs the
# official PyTorch code": venv with torch, guoyang9/ELIP checked out at OFFICIAL_ROOT).
PYTORCH_PYTHON ?= python3
OFFICIAL_ROOT  ?= ../official/ELIP
VS_BACKBONES   ?= albef,blip,meter16,meter32
bench-vs-pytorch: build
	$(PYTORCH_PYTHON) scripts/bench-vs-pytorch.py --official-root $(OFFICIAL_ROOT) --backbones $(VS_BACKBONES) \
		--elip $$($(SWIFT) build -c release --show-bin-path)/elip --threads $(THREADS) --steps 3 --warmup 1

# Synthetic corpus -> LMDB shards -> 2-rank pre-training (<= 10 min) -> zero-shot retrieval,
# pruning picture and training curves. Re-running reuses what exists (DEMO_OUT, DEMO_MINUTES).
demo: build
	scripts/demo.sh

finetune-demo: build
	scripts/finetune-demo.sh

# ELIP vs the unpruned baseline: same config, seed and steps (COMPARE_STEPS, default 1200).
compare: build
	scripts/compare.sh

clean:
	rm -rf .build
