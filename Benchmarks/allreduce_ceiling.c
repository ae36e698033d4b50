/* The machine's allreduce ceiling for issue 8's benchmark: MPI_Allreduce (sum, in place) of
 * COUNT floats with every rank calling it in lockstep, so no rank waits for a slower one. It is
 * what one step's gradient exchange costs at best; the trainer's figure adds the wait for the
 * slower rank. Prints one JSON line from rank 0: the median and best of REPEATS timings, each
 * the mean over ITERS calls.
 *
 * build: mpicc -O2 Benchmarks/allreduce_ceiling.c -o allreduce_ceiling
 * run:   mpirun -np 2 --bind-to core ./allreduce_ceiling [COUNT] [ITERS] [REPEATS] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int ascending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int count = argc > 1 ? atoi(argv[1]) : 235151, iters = argc > 2 ? atoi(argv[2]) : 500;
    int repeats = argc > 3 ? atoi(argv[3]) : 7;
    if (count <= 0 || iters <= 0 || repeats <= 0 || repeats > 100) {
        if (rank == 0) fprintf(stderr, "allreduce_ceiling: COUNT, ITERS and REPEATS (<= 100) must be positive\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    float *g = malloc((size_t)count * sizeof(float));
    for (int i = 0; i < count; i++) g[i] = 1e-3f * (float)(i % 1000);
    double t[100];
    for (int r = 0; r < repeats; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now();
        for (int i = 0; i < iters; i++) MPI_Allreduce(MPI_IN_PLACE, g, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        t[r] = (now() - t0) / iters;
    }
    qsort(t, repeats, sizeof(double), ascending);
    if (rank == 0)
        printf("{\"ranks\": %d, \"floats\": %d, \"bytes\": %zu, \"median_ms\": %.4f, \"best_ms\": %.4f}\n", size, count,
               (size_t)count * sizeof(float), t[repeats / 2] * 1e3, t[0] * 1e3);
    free(g);
    MPI_Finalize();
    return 0;
}
