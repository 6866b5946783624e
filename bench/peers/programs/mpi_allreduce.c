/* MPI_Allreduce benchmark peer for ringtrain's bench: the same schedule as
 * ringtrain's workers (per size: warm-up rounds, then timed rounds, each a
 * barrier then one in-place float32 sum all-reduce), the same input
 * (element i of rank r is r+1 + i%5) and an exact check of the result.
 * Rank 0 takes part in the bench driver's READY/GO handshake on its
 * stdin/stdout and prints one JSON line: per size, the slowest rank's time of
 * every timed round and the CPU time of all ranks over the timed rounds.
 *
 * usage: mpi_allreduce WARMUP ITERS SIZE_BYTES...
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double cpu_seconds(void) {
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void fill(float *buf, long count, int rank) {
	for (long i = 0; i < count; i++) buf[i] = (float)(rank + 1 + i % 5);
}

int main(int argc, char **argv) {
	MPI_Init(&argc, &argv);
	int rank, n;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &n);
	if (argc < 4) {
		if (rank == 0) fprintf(stderr, "usage: %s WARMUP ITERS SIZE...\n", argv[0]);
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	int warmup = atoi(argv[1]), iters = atoi(argv[2]), nsizes = argc - 3;
	if (rank == 0) {
		char line[64];
		printf("READY\n");
		fflush(stdout);
		if (!fgets(line, sizeof line, stdin) || strncmp(line, "GO", 2) != 0) {
			fprintf(stderr, "mpi_allreduce: no GO on stdin\n");
			MPI_Abort(MPI_COMM_WORLD, 2);
		}
	}
	double *times = calloc((size_t)iters, sizeof(double));
	double *maxt = calloc((size_t)iters, sizeof(double));
	if (rank == 0) printf("{\"times_s\":[");
	char cpus[4096] = "";
	for (int s = 0; s < nsizes; s++) {
		long count = atol(argv[3 + s]) / 4;
		float *buf = malloc((size_t)count * sizeof(float) + 4);
		double c0 = 0;
		for (int r = 0; r < warmup + iters; r++) {
			if (r == warmup) c0 = cpu_seconds();
			fill(buf, count, rank);
			MPI_Barrier(MPI_COMM_WORLD);
			double t0 = MPI_Wtime();
			MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
			double dt = MPI_Wtime() - t0;
			if (r >= warmup) times[r - warmup] = dt;
		}
		double cpu = cpu_seconds() - c0, cpusum = 0;
		for (long i = 0; i < count; i++) {
			float want = (float)(n * (n + 1) / 2 + n * (i % 5));
			if (buf[i] != want) {
				fprintf(stderr, "rank %d: element %ld = %g, want %g\n", rank, i, buf[i], want);
				MPI_Abort(MPI_COMM_WORLD, 1);
			}
		}
		free(buf);
		MPI_Reduce(times, maxt, iters, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
		MPI_Reduce(&cpu, &cpusum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
		if (rank == 0) {
			printf("%s[", s ? "," : "");
			for (int i = 0; i < iters; i++) printf("%s%.9f", i ? "," : "", maxt[i]);
			printf("]");
			size_t l = strlen(cpus);
			snprintf(cpus + l, sizeof cpus - l, "%s%.6f", s ? "," : "", cpusum);
		}
	}
	if (rank == 0) {
		printf("],\"cpu_s\":[%s]}\n", cpus);
		fflush(stdout);
	}
	free(times);
	free(maxt);
	MPI_Finalize();
	return 0;
}
