/* The shared-memory gradient exchange against its ceilings (issue 17): on one buffer of COUNT
 * floats (default: the wide MLP's arena, 784-2048x3-10, 10 020 874 values), with every rank in
 * lockstep, the mean ms per call of
 *   - memcpy: one copy of the buffer (the memory system's floor for anything that moves it);
 *   - allreduce: MPI_Allreduce, in place, in pieces of 2^20 values as the trainer calls it
 *     (pick Open MPI's algorithm with --mca coll_tuned_use_dynamic_rules 1
 *     --mca coll_tuned_allreduce_algorithm N);
 *   - shm: what Sources/CortadoTrain/SharedMemoryExchange.swift does: copy into this rank's
 *     segment of an MPI-3 shared window, barrier, sum this rank's slice over every segment in
 *     rank order, barrier, copy every slice back, barrier.
 * Prints one JSON line from rank 0 (best of REPEATS means over ITERS calls).
 *
 * build: mpicc -O3 -march=native Benchmarks/shm_exchange_ceiling.c -o shm_exchange_ceiling
 * run:   mpirun -np 2 --bind-to core ./shm_exchange_ceiling [COUNT] [ITERS] [REPEATS] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static long lo(long n, int r, int s) { return n * r / s; }

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long count = argc > 1 ? atol(argv[1]) : 10020874;
    int iters = argc > 2 ? atoi(argv[2]) : 20, repeats = argc > 3 ? atoi(argv[3]) : 5;
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    int lr, ls;
    MPI_Comm_rank(node, &lr);
    MPI_Comm_size(node, &ls);
    float *g = malloc(count * sizeof(float)), *copy = malloc(count * sizeof(float)), *base;
    for (long i = 0; i < count; i++) g[i] = 1e-3f * (float)(i % 1000 + rank);
    MPI_Win win;
    MPI_Win_allocate_shared(count * sizeof(float), sizeof(float), MPI_INFO_NULL, node, &base, &win);
    float **seg = malloc(ls * sizeof(float *));
    for (int p = 0; p < ls; p++) {
        MPI_Aint bytes;
        int unit;
        MPI_Win_shared_query(win, p, &bytes, &unit, &seg[p]);
    }
    MPI_Win_lock_all(MPI_MODE_NOCHECK, win);
    double best[3] = {1e9, 1e9, 1e9};
    for (int r = 0; r < repeats; r++) {
        for (int m = 0; m < 3; m++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now();
            for (int it = 0; it < iters; it++) {
                if (m == 0) {
                    memcpy(copy, g, count * sizeof(float));
                } else if (m == 1) {
                    for (long off = 0; off < count; off += 1 << 20) {
                        int n = count - off < (1 << 20) ? (int)(count - off) : 1 << 20;
                        MPI_Allreduce(MPI_IN_PLACE, g + off, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                    }
                } else {
                    memcpy(seg[lr], g, count * sizeof(float));
                    MPI_Win_sync(win);
                    MPI_Barrier(node);
                    MPI_Win_sync(win);
                    long a = lo(count, lr, ls), b = lo(count, lr + 1, ls);
                    for (long i = a; i < b; i++) {
                        float s = seg[0][i];
                        for (int p = 1; p < ls; p++) s += seg[p][i];
                        g[i] = s;
                    }
                    memcpy(seg[lr] + a, g + a, (b - a) * sizeof(float));
                    MPI_Win_sync(win);
                    MPI_Barrier(node);
                    MPI_Win_sync(win);
                    for (int p = 0; p < ls; p++)
                        if (p != lr) memcpy(g + lo(count, p, ls), seg[p] + lo(count, p, ls),
                                            (lo(count, p + 1, ls) - lo(count, p, ls)) * sizeof(float));
                    MPI_Barrier(node);
                }
                /* keep values bounded across iterations */
                if (m != 0) g[0] = 1e-3f;
            }
            double t = (now() - t0) / iters;
            MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            if (t < best[m]) best[m] = t;
        }
    }
    if (rank == 0) {
        double mb = count * 4.0 / 1e6;
        printf("{\"ranks\": %d, \"count\": %ld, \"mb\": %.1f, \"memcpy_ms\": %.2f, \"allreduce_ms\": %.2f, "
               "\"shm_ms\": %.2f, \"allreduce_gbs\": %.2f, \"shm_gbs\": %.2f}\n",
               size, count, mb, best[0] * 1e3, best[1] * 1e3, best[2] * 1e3, mb / 1e3 / best[1],
               mb / 1e3 / best[2]);
    }
    MPI_Win_unlock_all(win);
    MPI_Win_free(&win);
    MPI_Finalize();
    return 0;
}
