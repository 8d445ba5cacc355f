# shardfit: one Makefile, out-of-tree build in build/.
#   make          build build/shardfit
#   make test     install what is missing, build, run every test
#   make run      install what is missing, build, get Fashion-MNIST, train on 2 ranks,
#                 draw the run's curves.png (CONFIG=configs/fashion-cnn.ini for
#                 the CNN; default configs/fashion-mlp.ini)
#   make bench    step speed of the MLPs and the CNN against PyTorch and the
#                 limit into build/bench.md, the CNN against PyTorch over more
#                 rounds into build/bench-cnn.md, loader throughput into
#                 build/bench.txt
#   make clean
#   make SANITIZE=1 ...   AddressSanitizer + UBSan build (in build-asan/)

PKGS      := ompi-c hdf5-openmpi openblas inih
TEST_PKGS := check
NP        ?= 2
CONFIG    ?= configs/fashion-mlp.ini

ifeq ($(SANITIZE),1)
BUILD    ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
else
BUILD    ?= build
SANFLAGS :=
endif

CC      ?= gcc
# Recursive '=' so pkg-config runs only when a compile needs it, after
# install-deps has had its chance.
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS    = $(shell pkg-config --libs $(PKGS))
TEST_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS))
TEST_LIBS   = $(shell pkg-config --libs $(TEST_PKGS))

CFLAGS  ?= -O3 -g
# -fno-math-errno: nothing reads errno after libm calls, and without it sqrtf
# cannot be vectorized (the Adam update spent 3x longer than SGD's).
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -fno-math-errno \
           -Iinclude -MMD -MP $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
LDLIBS  += -lz -lm

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test run bench clean deps fuzz
all: $(BUILD)/shardfit $(TEST_BIN)

deps:
	@scripts/install-deps.sh

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/libshardfit.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/shardfit: $(BUILD)/obj/main.o $(BUILD)/libshardfit.a
	$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS) $(LDLIBS)

# The step's floor for `make bench` (bench/limit.c).
$(BUILD)/bench_limit: bench/limit.c $(BUILD)/libshardfit.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) $< $(BUILD)/libshardfit.a -o $@ \
	    $(PKG_LIBS) $(LDLIBS)

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(TEST_CFLAGS) -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/tests/testutil.o $(BUILD)/libshardfit.a
	$(CC) $(LDFLAGS) $^ -o $@ $(TEST_LIBS) $(PKG_LIBS) $(LDLIBS)

# What the tests start for real: network-namespace hosts (iproute2, ping),
# a one-node Slurm cluster, h5py for comparing checkpoints, matplotlib for
# scripts/plot-curves, PyTorch for the round trip of tests/cli_torch.sh, and
# Fashion-MNIST for README's commands (tests/cli_readme.sh).
TEST_DEPS := iproute2 iputils-ping python3-h5py python3-numpy slurm-wlm munge dataset-fashion-mnist \
             python3-matplotlib python3-torch

test: deps
	@scripts/install-deps.sh $(TEST_DEPS)
	@$(MAKE) --no-print-directory all $(BUILD)/bench_limit
	@BUILD=$(BUILD) tests/run-all.sh

run: deps
	@scripts/install-deps.sh dataset-fashion-mnist python3-matplotlib
	@$(MAKE) --no-print-directory $(BUILD)/shardfit
	@BUILD=$(BUILD) NP=$(NP) CONFIG=$(CONFIG) scripts/run-fashion.sh

bench: deps
	@scripts/install-deps.sh dataset-fashion-mnist python3-h5py python3-numpy python3-torch
	@$(MAKE) --no-print-directory $(BUILD)/shardfit $(BUILD)/bench_limit
	@BUILD=$(BUILD) scripts/bench_step.py
	@BUILD=$(BUILD) scripts/bench-cnn.sh
	@BUILD=$(BUILD) scripts/bench.sh
	@BUILD=$(BUILD) scripts/bench-checkpoint.sh

# Fuzz every target for FUZZ_SECONDS each (libFuzzer, clang; see fuzz/README.md).
FUZZ_SECONDS ?= 300
fuzz: deps
	@scripts/fuzz.sh run $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/main.d $(TEST_BIN:=.d) $(BUILD)/tests/testutil.d
