/*
 * SI section generator for capbox's table decoder tests, written with
 * VideoLAN's biTStream headers (Debian libbitstream-dev), so the bytes under
 * test come from an independent implementation of EN 300 468 / 13818-1.
 *
 * Usage: si_gen OUTDIR
 *   writes OUTDIR/<name>.sec (one raw section each) and prints on stdout a
 *   manifest "key value" of every field it set, in decimal (times as Unix
 *   seconds; text as the UTF-8 the DVB string must decode to).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bitstream/mpeg/psi.h>
#include <bitstream/dvb/si.h>
#include <bitstream/dvb/si/datetime.h>

static const char *outdir;

static void write_section(const char *name, const uint8_t *s)
{
    char path[4096];
    size_t len = psi_get_length(s) + PSI_HEADER_SIZE;
    snprintf(path, sizeof(path), "%s/%s.sec", outdir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

#define L(s) (const uint8_t *)(s), (uint8_t)(sizeof(s) - 1)

/* ---------------------------------------------------------------- NIT */
static void gen_nit(void)
{
    uint8_t *nit = psi_allocate();
    nit_init(nit, true);
    nit_set_nid(nit, 0x3001);
    psi_set_version(nit, 5);
    psi_set_current(nit);
    psi_set_section(nit, 0);
    psi_set_lastsection(nit, 0);

    /* network descriptors: network_name in ISO 8859-15 (selector 0x0B) */
    uint8_t *d = nit + NIT_HEADER_SIZE;
    desc40_init(d);
    desc40_set_networkname(d, L("\x0B" "CapNet T\xE9l\xE9 \xA4"));
    uint16_t ndl = DESC_HEADER_SIZE + desc_get_length(d);
    nit_set_desclength(nit, ndl);
    printf("nit.network_id 12289\nnit.version 5\nnit.network_name CapNet Télé €\n");

    uint8_t *h2 = nit_get_header2(nit);
    nith_init(h2);
    uint8_t *ts = h2 + NIT_HEADER2_SIZE;

    /* TS 1: terrestrial 474 MHz, 8 MHz, 64-QAM, 2/3, 1/4, 8k */
    nitn_init(ts);
    nitn_set_tsid(ts, 4);
    nitn_set_onid(ts, 0x233A);
    d = ts + NIT_TS_SIZE;
    desc5a_init(d);
    desc5a_set_frequency(d, 47400000);
    desc5a_set_bandwidth(d, 0);
    desc5a_set_priority(d, true);
    desc5a_set_timeslicing(d, true);
    desc5a_set_mpefec(d, true);
    desc5a_set_constellation(d, 2);
    desc5a_set_hierarchy(d, 0);
    desc5a_set_coderatehp(d, 1);
    desc5a_set_coderatelp(d, 0);
    desc5a_set_guard(d, 3);
    desc5a_set_transmission(d, 1);
    desc5a_set_otherfrequency(d, 0);
    nitn_set_desclength(ts, DESC_HEADER_SIZE + desc_get_length(d));
    printf("nit.ts0.tsid 4\nnit.ts0.onid 9018\nnit.ts0.terr_freq 474000000\n"
           "nit.ts0.terr_constellation 2\nnit.ts0.terr_code_rate_hp 1\n"
           "nit.ts0.terr_guard 3\nnit.ts0.terr_mode 1\n");
    uint16_t tsl = NIT_TS_SIZE + nitn_get_desclength(ts);

    /* TS 2: cable 346 MHz, 64-QAM, 6.9 Msym/s, FEC inner none */
    ts = h2 + NIT_HEADER2_SIZE + tsl;
    nitn_init(ts);
    nitn_set_tsid(ts, 5);
    nitn_set_onid(ts, 0x233A);
    d = ts + NIT_TS_SIZE;
    desc44_init(d);
    desc44_set_frequency_bcd(d, 0x03460000);
    desc44_set_fecouter(d, 2);
    desc44_set_modulation(d, 3);
    desc44_set_symbolrate_bcd(d, 0x0069000);
    desc44_set_fecinner(d, 0xF);
    nitn_set_desclength(ts, DESC_HEADER_SIZE + desc_get_length(d));
    printf("nit.ts1.tsid 5\nnit.ts1.onid 9018\nnit.ts1.cable_freq 346000000\n"
           "nit.ts1.cable_modulation 3\nnit.ts1.cable_symbol_rate 6900000\n"
           "nit.ts1.cable_fec_outer 2\nnit.ts1.cable_fec_inner 15\n");
    tsl += NIT_TS_SIZE + nitn_get_desclength(ts);

    nith_set_tslength(h2, tsl);
    nit_set_length(nit, ndl + NIT_HEADER2_SIZE + tsl);
    psi_set_crc(nit);
    if (!nit_validate(nit)) {
        fprintf(stderr, "nit invalid\n");
        exit(1);
    }
    write_section("nit", nit);
    free(nit);
}

/* ---------------------------------------------------------------- SDT */
static uint16_t add_service(uint8_t *sdt, uint16_t off, uint16_t sid, uint8_t type,
                            const uint8_t *prov, uint8_t plen,
                            const uint8_t *name, uint8_t nlen,
                            bool sched, bool pf, uint8_t running, bool ca)
{
    uint8_t *n = sdt + SDT_HEADER_SIZE + off;
    sdtn_init(n);
    sdtn_set_sid(n, sid);
    if (sched) sdtn_set_eitschedule(n);
    if (pf) sdtn_set_eitpresent(n);
    sdtn_set_running(n, running);
    if (ca) sdtn_set_ca(n);
    uint8_t *d = n + SDT_SERVICE_SIZE;
    desc48_init(d);
    desc48_set_type(d, type);
    desc48_set_provider(d, prov, plen);
    desc48_set_service(d, name, nlen);
    desc48_set_length(d);
    sdtn_set_desclength(n, DESC_HEADER_SIZE + desc_get_length(d));
    return off + SDT_SERVICE_SIZE + sdtn_get_desclength(n);
}

static void gen_sdt(void)
{
    uint8_t *sdt = psi_allocate();
    sdt_init(sdt, true);
    sdt_set_tsid(sdt, 4);
    sdt_set_onid(sdt, 0x233A);
    psi_set_version(sdt, 7);
    psi_set_current(sdt);
    psi_set_section(sdt, 0);
    psi_set_lastsection(sdt, 0);
    uint16_t off = 0;
    off = add_service(sdt, off, 0x0880, 0x02, L("LinuxTV.org"), L("Beethoven"),
                      false, true, 4, false);
    /* 6937 diacritic in the provider, ISO 8859-15 in the name */
    off = add_service(sdt, off, 0x0881, 0x19, L("Gr\xC8un Media"),
                      L("\x0B" "Cha\xEEne \xA4 HD"), true, true, 1, true);
    sdt_set_length(sdt, off);
    psi_set_crc(sdt);
    if (!sdt_validate(sdt)) {
        fprintf(stderr, "sdt invalid\n");
        exit(1);
    }
    printf("sdt.tsid 4\nsdt.onid 9018\nsdt.version 7\n"
           "sdt.s0.sid 2176\nsdt.s0.type 2\nsdt.s0.provider LinuxTV.org\nsdt.s0.name Beethoven\n"
           "sdt.s0.sched 0\nsdt.s0.pf 1\nsdt.s0.running 4\nsdt.s0.ca 0\n"
           "sdt.s1.sid 2177\nsdt.s1.type 25\nsdt.s1.provider Grün Media\nsdt.s1.name Chaîne € HD\n"
           "sdt.s1.sched 1\nsdt.s1.pf 1\nsdt.s1.running 1\nsdt.s1.ca 1\n");
    write_section("sdt", sdt);
    free(sdt);
}

/* ---------------------------------------------------------------- EIT */
struct ev {
    uint16_t id;
    time_t start;
    unsigned duration;
    uint8_t running;
    bool ca;
    const char *lang;
    const uint8_t *name;
    uint8_t name_len;
    const uint8_t *text;
    uint8_t text_len;
    const char *name_utf8;
    const char *text_utf8;
    uint8_t content; /* level1 << 4 | level2, 0 = none */
    bool extended;
};

/* Returns bytes of the event written at `n`. */
static uint16_t write_event(uint8_t *n, const struct ev *e)
{
    eitn_init(n);
    eitn_set_event_id(n, e->id);
    eitn_set_start_time(n, dvb_time_encode_UTC(e->start));
    eitn_set_duration_bcd(n, dvb_time_encode_duration(e->duration));
    eitn_set_running(n, e->running);
    if (e->ca) eitn_set_ca(n);
    uint8_t *d = n + EIT_EVENT_SIZE;
    uint16_t dl = 0;
    desc4d_init(d);
    desc4d_set_lang(d, (const uint8_t *)e->lang);
    desc4d_set_event_name(d, e->name, e->name_len);
    desc4d_set_text(d, e->text, e->text_len);
    desc4d_set_length(d);
    dl += DESC_HEADER_SIZE + desc_get_length(d);
    if (e->content) {
        d = n + EIT_EVENT_SIZE + dl;
        desc54_init(d);
        desc_set_length(d, 2);
        uint8_t *c = desc54_get_content(d, 0);
        desc54n_set_content_l1(c, e->content >> 4);
        desc54n_set_content_l2(c, e->content & 0xF);
        desc54n_set_user(c, 0x42);
        dl += DESC_HEADER_SIZE + desc_get_length(d);
    }
    if (e->extended) {
        /* Two extended_event descriptors, text split mid-word. */
        /* The split falls inside the UTF-8 of the second "é": the parts
         * only decode once joined. */
        static uint8_t t0[] = "\x15" "Un film d'aventures en \xC3\xA9t\xC3";
        static uint8_t t1[] = "\x15" "\xA9, tourn\xC3\xA9 en Provence.";
        static uint8_t desc_s[] = "R\xC2" "ealisateur"; /* table 00 */
        static uint8_t item_s[] = "Jean Dupont";
        d = n + EIT_EVENT_SIZE + dl;
        desc4e_init(d);
        desc4e_set_desc_number(d, 0);
        desc4e_set_last_desc_number(d, 1);
        desc4e_set_lang(d, (const uint8_t *)"fra");
        uint8_t *it = d + DESC4E_HEADER_SIZE + 1;
        desc4en_set_item_description(it, desc_s, sizeof(desc_s) - 1);
        desc4en_set_item_text(it, item_s, sizeof(item_s) - 1);
        desc4e_set_items_length(d, 2 + sizeof(desc_s) - 1 + sizeof(item_s) - 1);
        desc4e_set_text(d, t0, sizeof(t0) - 1);
        desc4e_set_length(d);
        dl += DESC_HEADER_SIZE + desc_get_length(d);
        d = n + EIT_EVENT_SIZE + dl;
        desc4e_init(d);
        desc4e_set_desc_number(d, 1);
        desc4e_set_last_desc_number(d, 1);
        desc4e_set_lang(d, (const uint8_t *)"fra");
        desc4e_set_items_length(d, 0);
        desc4e_set_text(d, t1, sizeof(t1) - 1);
        desc4e_set_length(d);
        dl += DESC_HEADER_SIZE + desc_get_length(d);
    }
    eitn_set_desclength(n, dl);
    return EIT_EVENT_SIZE + dl;
}

static void print_event(const char *p, const struct ev *e)
{
    printf("%s.id %u\n%s.start %lld\n%s.duration %u\n%s.running %u\n%s.ca %u\n"
           "%s.lang %s\n%s.name %s\n%s.text %s\n%s.content %u\n",
           p, e->id, p, (long long)e->start, p, e->duration, p, e->running, p, e->ca,
           p, e->lang, p, e->name_utf8, p, e->text_utf8, p, e->content);
    if (e->extended)
        printf("%s.extended Réalisateur: Jean Dupont\\nUn film d'aventures en été, "
               "tourné en Provence.\n", p);
}

static void gen_eit(const char *name, uint8_t table_id, uint8_t sn, uint8_t last,
                    uint8_t seg_last, const struct ev *evs, int n_ev)
{
    uint8_t *eit = psi_private_allocate();
    eit_init(eit, true);
    psi_set_tableid(eit, table_id);
    eit_set_sid(eit, 0x0880);
    psi_set_version(eit, 3);
    psi_set_current(eit);
    psi_set_section(eit, sn);
    psi_set_lastsection(eit, last);
    eit_set_tsid(eit, 4);
    eit_set_onid(eit, 0x233A);
    eit_set_segment_last_sec_number(eit, seg_last);
    eit_set_last_table_id(eit, table_id);
    uint16_t off = 0;
    for (int i = 0; i < n_ev; i++) {
        char p[64];
        off += write_event(eit + EIT_HEADER_SIZE + off, &evs[i]);
        snprintf(p, sizeof(p), "%s.e%d", name, i);
        print_event(p, &evs[i]);
    }
    eit_set_length(eit, off);
    psi_set_crc(eit);
    if (!eit_validate(eit)) {
        fprintf(stderr, "%s invalid\n", name);
        exit(1);
    }
    printf("%s.table_id %u\n%s.sid 2176\n%s.tsid 4\n%s.onid 9018\n%s.version 3\n"
           "%s.section %u\n%s.last %u\n%s.seg_last %u\n%s.events %d\n",
           name, table_id, name, name, name, name, name, sn, name, last, name, seg_last,
           name, n_ev);
    write_section(name, eit);
    free(eit);
}

static void gen_eits(void)
{
    struct ev present = {0x1001, 1700000000, 5400, 4, false, "fra",
                         L("Le journal t\xC2" "el\xC2" "e"), L(""),
                         "Le journal télé", "Infos région\\net monde", 0x20, false};
    /* Table 00 text with emphasis on/off (0x86/0x87) and CR/LF (0x8A). */
    present.text = (const uint8_t *)"Infos \x86r\xC2" "egion\x87\x8A" "et monde";
    present.text_len = (uint8_t)strlen((const char *)present.text);
    struct ev following = {0x1002, 1700005400, 1800, 1, true, "eng",
                           L("\x15" "Weather \xE2\x98\x80"), L(""),
                           "Weather ☀", "", 0, false};
    gen_eit("eit_pf0", 0x4E, 0, 1, 1, &present, 1);
    gen_eit("eit_pf1", 0x4E, 1, 1, 1, &following, 1);

    struct ev s0[3] = {
        {0x2001, 1700010000, 3600, 1, false, "deu", L("Tagesschau"), L("Nachrichten"),
         "Tagesschau", "Nachrichten", 0x20, false},
        {0x2002, 1700013600, 7200, 1, false, "fra", L("Le film"), L("Drame"),
         "Le film", "Drame", 0x10, true},
        {0x2003, 1700020800, 900, 0, false, "pol", L("\x10\x00\x02" "\xA3\xF3" "d\xBC"),
         L("\x11\x04\x1F\x04\x40\x04\x38"), "Łódź", "При", 0x40, false},
    };
    struct ev s1[2] = {
        {0x2004, 1700021700, 86399, 1, false, "ell", L("\x03\xC5\xD1\xD4"), L("abc"),
         "ΕΡΤ", "abc", 0x93, false},
        {0x2005, 1700108099, 60, 1, false, "rus", L("\x01\xBF\xD5\xE0\xD2\xEB\xD9"), L(""),
         "Первый", "", 0xF0, false},
    };
    gen_eit("eit_s0", 0x50, 0, 1, 1, s0, 3);
    gen_eit("eit_s1", 0x50, 1, 1, 1, s1, 2);
}

/* ---------------------------------------------------------------- TDT/TOT */
static void gen_time(void)
{
    uint8_t tdt[TDT_HEADER_SIZE];
    tdt_init(tdt);
    tdt_set_utc(tdt, dvb_time_encode_UTC(1700000123));
    if (!tdt_validate(tdt)) {
        fprintf(stderr, "tdt invalid\n");
        exit(1);
    }
    write_section("tdt", tdt);
    printf("tdt.utc 1700000123\n");

    uint8_t *tot = psi_allocate();
    tot_init(tot);
    tot_set_utc(tot, dvb_time_encode_UTC(1711846799));
    uint8_t *d = tot + TOT_HEADER_SIZE;
    desc58_init(d);
    desc_set_length(d, 2 * DESC58_LTO_SIZE);
    uint8_t *n = desc58_get_lto(d, 0);
    desc58n_set_country_code(n, (const uint8_t *)"FRA");
    desc58n_set_country_region_id(n, 0);
    desc58n_set_lto_polarity(n, 0);
    desc58n_set_lt_offset(n, 0x0100);
    desc58n_set_time_of_change(n, dvb_time_encode_UTC(1711846800));
    desc58n_set_next_offset(n, 0x0200);
    n = desc58_get_lto(d, 1);
    desc58n_set_country_code(n, (const uint8_t *)"CAN");
    desc58n_set_country_region_id(n, 3);
    desc58n_set_lto_polarity(n, 1);
    desc58n_set_lt_offset(n, 0x0330);
    desc58n_set_time_of_change(n, dvb_time_encode_UTC(1710054000));
    desc58n_set_next_offset(n, 0x0230);
    uint16_t dl = DESC_HEADER_SIZE + desc_get_length(d);
    tot_set_desclength(tot, dl);
    tot_set_length(tot, dl);
    psi_set_crc(tot);
    if (!tot_validate(tot)) {
        fprintf(stderr, "tot invalid\n");
        exit(1);
    }
    write_section("tot", tot);
    printf("tot.utc 1711846799\ntot.n 2\n"
           "tot.l0.country FRA\ntot.l0.region 0\ntot.l0.offset 60\ntot.l0.change 1711846800\ntot.l0.next 120\n"
           "tot.l1.country CAN\ntot.l1.region 3\ntot.l1.offset -210\ntot.l1.change 1710054000\ntot.l1.next -150\n");
    free(tot);
}

/* ---------------------------------------------------------------- CAT */
static void gen_cat(void)
{
    uint8_t *cat = psi_allocate();
    cat_init(cat);
    psi_set_version(cat, 2);
    psi_set_current(cat);
    uint8_t *d = cat + CAT_HEADER_SIZE;
    desc09_init(d);
    desc09_set_sysid(d, 0x1800);
    desc09_set_pid(d, 0x150);
    uint16_t dl = DESC_HEADER_SIZE + desc_get_length(d);
    d = cat + CAT_HEADER_SIZE + dl;
    desc09_init(d);
    desc09_set_sysid(d, 0x0500);
    desc09_set_pid(d, 0x020);
    dl += DESC_HEADER_SIZE + desc_get_length(d);
    cat_set_length(cat, dl);
    psi_set_crc(cat);
    if (!cat_validate(cat)) {
        fprintf(stderr, "cat invalid\n");
        exit(1);
    }
    write_section("cat", cat);
    printf("cat.version 2\ncat.emm0 1280 32\ncat.emm1 6144 336\n");
    free(cat);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    gen_nit();
    gen_sdt();
    gen_eits();
    gen_time();
    gen_cat();
    return 0;
}
