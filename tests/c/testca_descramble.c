/* Test helper for tests/ecm_routing.rs: descrambles the output of capbox's
 * testca scrambler with Debian's libdvbcsa, using the scrambler's key log,
 * so the scrambled stream is checked by an implementation capbox did not
 * write.
 *
 * Usage: testca_descramble <key log> < scrambled.ts > clear.ts
 * Key log lines (after '#' comments):
 *   service period even|odd cw(16 hex) first_packet last_packet pid,pid,...
 * A scrambled packet (transport_scrambling_control 10/11) at output index i
 * on PID p takes the word of the line whose range holds i and whose PIDs
 * hold p; its parity bits must equal the line's parity (exit 6 if not, 7 if
 * no line matches). Its payload after the adaptation field is decrypted
 * with dvbcsa_decrypt and the bits cleared. Other packets are copied. */
#include <dvbcsa/dvbcsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
  int odd;
  unsigned char cw[8];
  long first, last;
  int pids[16], npids;
  struct dvbcsa_key_s *key;
};

int main(int argc, char **argv) {
  if (argc != 2) return 1;
  FILE *f = fopen(argv[1], "r");
  if (!f) return 2;
  struct entry *e = NULL;
  int n = 0, cap = 0;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      e = realloc(e, (size_t)cap * sizeof *e);
      if (!e) return 2;
    }
    struct entry *x = &e[n];
    unsigned svc, period;
    char par[8], cw[17], pids[256];
    if (sscanf(line, "%u %u %7s %16s %ld %ld %255s", &svc, &period, par, cw, &x->first,
               &x->last, pids) != 7)
      return 3;
    x->odd = !strcmp(par, "odd");
    for (int i = 0; i < 8; i++) {
      unsigned b;
      if (sscanf(cw + 2 * i, "%2x", &b) != 1) return 3;
      x->cw[i] = (unsigned char)b;
    }
    x->npids = 0;
    for (char *t = strtok(pids, ","); t && x->npids < 16; t = strtok(NULL, ","))
      x->pids[x->npids++] = atoi(t);
    x->key = dvbcsa_key_alloc();
    dvbcsa_key_set(x->cw, x->key);
    n++;
  }
  fclose(f);
  unsigned char p[188];
  for (long i = 0; fread(p, 1, 188, stdin) == 188; i++) {
    int sc = p[3] >> 6, pid = ((p[1] & 0x1f) << 8) | p[2];
    if (p[0] == 0x47 && sc >= 2) {
      struct entry *m = NULL;
      for (int k = 0; k < n && !m; k++) {
        if (i < e[k].first || i > e[k].last) continue;
        for (int j = 0; j < e[k].npids; j++)
          if (e[k].pids[j] == pid) m = &e[k];
      }
      if (!m) {
        fprintf(stderr, "packet %ld pid %d: no key log line\n", i, pid);
        return 7;
      }
      if (m->odd != (sc == 3)) {
        fprintf(stderr, "packet %ld pid %d: parity differs from the key log\n", i, pid);
        return 6;
      }
      int off = 4;
      if (p[3] & 0x20) off = 5 + p[4];
      if ((p[3] & 0x10) && off < 188) dvbcsa_decrypt(m->key, p + off, 188 - off);
      p[3] &= 0x3f;
    }
    if (fwrite(p, 1, 188, stdout) != 188) return 4;
  }
  return 0;
}
