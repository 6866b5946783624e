#!/bin/sh
# Training throughput (samples/s, forward+backward+update, batch 64) of the
# MLP and the CNN: pure-Go build, -tags openblas build, and PyTorch on CPU,
# in one run with the same thread count. Usage: bench/throughput.sh [threads]
# Needs: libopenblas-dev (openblas build), python3-torch + libopenblas0-pthread.
set -e
threads=${1:-1}
count=${COUNT:-5}
export GOMAXPROCS=$threads OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
cd "$(dirname "$0")/.."
echo "== go, pure-Go gonum BLAS, GOMAXPROCS=$threads"
go test -run '^$' -bench TrainStep -benchtime 2s -count "$count" ./model | grep -E '^Benchmark'
echo "== go, -tags openblas, OPENBLAS_NUM_THREADS=$threads"
go test -tags openblas -run '^$' -bench TrainStep -benchtime 2s -count "$count" ./model | grep -E '^Benchmark'
echo "== pytorch"
/usr/bin/python3 bench/torch_throughput.py --threads "$threads" --runs "$count" --seconds 2
