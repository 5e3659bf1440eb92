/* Benchmark helper for examples/bench_csa.rs: a libdvbcsa (Debian's, or
 * another build put first by LD_LIBRARY_PATH) on 184-byte payloads, one
 * round. Prints "lib PATH" (the shared object that really ran, by dladdr),
 * "bs MB/s" (dvbcsa_bs_decrypt, full batches of dvbcsa_bs_batch_size()) and
 * "single MB/s" (dvbcsa_decrypt per packet).
 * Usage: csa_bench SECONDS_PER_MEASURE */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <dvbcsa/dvbcsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: see bench_csa.rs */
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  unsigned char cw[8] = {0x12, 0x34, 0x56, 0x9c, 0x78, 0x9a, 0xbc, 0xce};
  unsigned int bs = dvbcsa_bs_batch_size();
  unsigned char *data = malloc(bs * 184);
  for (unsigned int i = 0; i < bs * 184; i++) data[i] = (unsigned char)(i * 131 + 7);
  struct dvbcsa_bs_batch_s *b = calloc(bs + 1, sizeof *b);
  for (unsigned int i = 0; i < bs; i++) { b[i].data = data + i * 184; b[i].len = 184; }
  struct dvbcsa_bs_key_s *bk = dvbcsa_bs_key_alloc();
  dvbcsa_bs_key_set(cw, bk);
  double t0 = now(), t;
  unsigned long n = 0;
  do {
    for (int k = 0; k < 16; k++) dvbcsa_bs_decrypt(bk, b, 184);
    n += 16UL * bs;
  } while ((t = now()) - t0 < secs);
  double bs_mbs = n * 184.0 / (t - t0) / 1e6;
  struct dvbcsa_key_s *key = dvbcsa_key_alloc();
  dvbcsa_key_set(cw, key);
  t0 = now();
  n = 0;
  do {
    for (unsigned int i = 0; i < bs; i++) dvbcsa_decrypt(key, data + i * 184, 184);
    n += bs;
  } while ((t = now()) - t0 < secs);
  double single_mbs = n * 184.0 / (t - t0) / 1e6;
  Dl_info info;
  if (dladdr((void *)dvbcsa_bs_decrypt, &info) && info.dli_fname)
    printf("lib %s\n", info.dli_fname);
  printf("batch_size %u\nbs %.1f\nsingle %.1f\n", bs, bs_mbs, single_mbs);
  return 0;
}
