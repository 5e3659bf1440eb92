/*
 * A hostile SDT for capbox's hostile-input suite (tests/hostile/air_names.rs),
 * written with VideoLAN's biTStream headers (Debian libbitstream-dev) so the
 * section comes from an independent implementation of EN 300 468.
 *
 * Usage: sdt_names TSID ONID OUT.sec
 *   writes one SDT actual section (version 9) describing services 1, 2 and 3
 *   whose names and providers carry DVB line breaks (0x8A, and U+E08A in
 *   UTF-8), double quotes and other control codes: a broadcaster trying to
 *   add lines to capbox's playlist.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <bitstream/mpeg/psi.h>
#include <bitstream/dvb/si.h>

#define L(s) (const uint8_t *)(s), (uint8_t)(sizeof(s) - 1)

static uint16_t add_service(uint8_t *sdt, uint16_t off, uint16_t sid,
                            const uint8_t *prov, uint8_t plen,
                            const uint8_t *name, uint8_t nlen)
{
    uint8_t *n = sdt + SDT_HEADER_SIZE + off;
    sdtn_init(n);
    sdtn_set_sid(n, sid);
    sdtn_set_running(n, 4);
    uint8_t *d = n + SDT_SERVICE_SIZE;
    desc48_init(d);
    desc48_set_type(d, 0x01);
    desc48_set_provider(d, prov, plen);
    desc48_set_service(d, name, nlen);
    desc48_set_length(d);
    sdtn_set_desclength(n, DESC_HEADER_SIZE + desc_get_length(d));
    return off + SDT_SERVICE_SIZE + sdtn_get_desclength(n);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s TSID ONID OUT.sec\n", argv[0]);
        return 2;
    }
    uint8_t *sdt = psi_allocate();
    sdt_init(sdt, true);
    sdt_set_tsid(sdt, (uint16_t)strtoul(argv[1], NULL, 0));
    sdt_set_onid(sdt, (uint16_t)strtoul(argv[2], NULL, 0));
    psi_set_version(sdt, 9);
    psi_set_current(sdt);
    psi_set_section(sdt, 0);
    psi_set_lastsection(sdt, 0);
    uint16_t off = 0;
    /* Table 00: a CR/LF code (0x8A), then a fake playlist entry. */
    off = add_service(sdt, off, 1, L("Evil\x8A" "Corp \"Ltd\""),
                      L("News\x8A#EXTINF:-1 tvg-name=\"x\",Injected\x8Ahttp://evil.example/x.ts"));
    /* Quotes that would end tvg-name="...", a CR (0x0D) and emphasis codes. */
    off = add_service(sdt, off, 2, L("capbox\x0D\x0A" "sports"),
                      L("Sport \"HD\"\x86\x87 \x8A\x8A" "group-title=\"Adult\""));
    /* UTF-8 (selector 0x15) with the DVB CR/LF in the private use area
       (U+E08A), a right-to-left override and a line separator. */
    off = add_service(sdt, off, 3, L("\x15radio\xE2\x80\xA8provider"),
                      L("\x15Music\xEE\x82\x8A\"Radio\" \xE2\x80\xAE" "evil"));
    sdt_set_length(sdt, off);
    psi_set_crc(sdt);
    if (!sdt_validate(sdt)) {
        fprintf(stderr, "sdt invalid\n");
        return 1;
    }
    size_t len = psi_get_length(sdt) + PSI_HEADER_SIZE;
    FILE *f = fopen(argv[3], "wb");
    if (!f || fwrite(sdt, 1, len, f) != len) {
        perror(argv[3]);
        return 1;
    }
    fclose(f);
    free(sdt);
    return 0;
}
