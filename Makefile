# elip: ELIP vision-language pre-training on CPU clusters.
SWIFT        ?= swift
BUILD_FLAGS  ?=
THREADS      ?= 2
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

.PHONY: setup build debug-build test bench demo clean

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

bench: build
	$$($(SWIFT) build -c release --show-bin-path)/elip bench ops --threads $(THREADS)

demo:
	@echo "make demo is not available yet: it arrives with the retrieval-evaluation work (issue 6)."
	@echo "Until then: 'make test' runs the test suite and 'make bench' measures the kernels."
	@exit 2

clean:
	rm -rf .build
