/*
 * A week of EIT for capbox's EPG tests, written with VideoLAN's biTStream
 * headers (Debian libbitstream-dev): an independent writer of EN 300 468.
 *
 * Usage: eit_schedule OUTDIR T0
 *   T0: the schedule's first day, Unix seconds at 00:00 UTC.
 *   OUTDIR/good.sec: concatenated sections: for services 0x0880 and 0x0881,
 *     EIT p/f actual (present and following at T0 + 1 h) and schedule
 *     tables 0x50 (days 0-3) and 0x51 (days 4-7), one section per 3-hour
 *     segment, 30-minute events.
 *   OUTDIR/garbage.sec: version 9 of table 0x50 of service 0x0880 whose
 *     every event is invalid (undefined start, zero or 25-hour duration, a
 *     start 60 days ahead, an empty title, a title in a table capbox cannot
 *     map), CRC correct.
 *   stdout: one line per good schedule event:
 *     "ev SID START DURATION MIN_AGE CONTENT TITLE" (title in UTF-8, as it
 *     must decode).
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

static FILE *out;

static void put(uint8_t *s)
{
    psi_set_crc(s);
    if (!eit_validate(s)) {
        fprintf(stderr, "invalid EIT section\n");
        exit(1);
    }
    size_t len = psi_get_length(s) + PSI_HEADER_SIZE;
    if (fwrite(s, 1, len, out) != len) {
        perror("write");
        exit(1);
    }
}

/* Writes one event at n; returns its size. */
static uint16_t event(uint8_t *n, uint16_t id, uint64_t start_utc, unsigned dur,
                      const uint8_t *name, uint8_t name_len, const char *text,
                      uint8_t content, uint8_t rating)
{
    eitn_init(n);
    eitn_set_event_id(n, id);
    eitn_set_start_time(n, start_utc);
    eitn_set_duration_bcd(n, dvb_time_encode_duration(dur));
    eitn_set_running(n, 1);
    uint8_t *d = n + EIT_EVENT_SIZE;
    uint16_t dl = 0;
    desc4d_init(d);
    desc4d_set_lang(d, (const uint8_t *)"eng");
    desc4d_set_event_name(d, name, name_len);
    desc4d_set_text(d, (const uint8_t *)text, (uint8_t)strlen(text));
    desc4d_set_length(d);
    dl += DESC_HEADER_SIZE + desc_get_length(d);
    if (content) {
        d = n + EIT_EVENT_SIZE + dl;
        desc54_init(d);
        desc_set_length(d, 2);
        uint8_t *c = desc54_get_content(d, 0);
        desc54n_set_content_l1(c, content >> 4);
        desc54n_set_content_l2(c, content & 0xF);
        desc54n_set_user(c, 0);
        dl += DESC_HEADER_SIZE + desc_get_length(d);
    }
    if (rating) {
        d = n + EIT_EVENT_SIZE + dl;
        desc55_init(d);
        desc_set_length(d, DESC55_RATING_SIZE);
        uint8_t *r = desc55_get_rating(d, 0);
        desc55n_set_country_code(r, (const uint8_t *)"GBR");
        desc55n_set_rating(r, rating);
        dl += DESC_HEADER_SIZE + desc_get_length(d);
    }
    eitn_set_desclength(n, dl);
    return EIT_EVENT_SIZE + dl;
}

static uint8_t *section(uint8_t tid, uint16_t sid, uint8_t version, uint8_t sn,
                        uint8_t last, uint8_t seg_last, uint8_t last_tid)
{
    uint8_t *s = psi_private_allocate();
    eit_init(s, true);
    psi_set_tableid(s, tid);
    eit_set_sid(s, sid);
    psi_set_version(s, version);
    psi_set_current(s);
    psi_set_section(s, sn);
    psi_set_lastsection(s, last);
    eit_set_tsid(s, 4);
    eit_set_onid(s, 0x233A);
    eit_set_segment_last_sec_number(s, seg_last);
    eit_set_last_table_id(s, last_tid);
    return s;
}

/* The title of event i (table 00 bytes) and its UTF-8. */
static uint8_t title(unsigned i, uint8_t *b, char *utf8)
{
    if (i % 48 == 45) {
        strcpy((char *)b, "LATE NIGHT MOVIE");
        strcpy(utf8, "Late Night Movie");
    } else if (i % 10 == 3) {
        sprintf((char *)b, "T\xC2" "el\xC2" "e %u", i);
        sprintf(utf8, "Télé %u", i);
    } else {
        sprintf((char *)b, "Programme %u", i);
        sprintf(utf8, "Programme %u", i);
    }
    return (uint8_t)strlen((const char *)b);
}

static void schedule(uint16_t sid, time_t t0)
{
    for (int t = 0; t < 2; t++) {
        uint8_t tid = 0x50 + t;
        for (int seg = 0; seg < 32; seg++) {
            uint8_t *s = section(tid, sid, 1, seg * 8, 31 * 8, seg * 8, 0x51);
            uint16_t off = 0;
            for (int k = 0; k < 6; k++) {
                unsigned i = (t * 32 + seg) * 6 + k;
                time_t start = t0 + (time_t)i * 1800;
                uint8_t b[64];
                char utf8[64];
                uint8_t len = title(i, b, utf8);
                uint8_t content = (i % 4) ? 0x10 + (i % 4) : 0;
                uint8_t rating = (i % 5 == 0) ? 9 : 0;
                off += event(s + EIT_HEADER_SIZE + off, (uint16_t)i, dvb_time_encode_UTC(start),
                             1800, b, len, "Episode", content, rating);
                printf("ev %u %lld 1800 %u %u %s\n", sid, (long long)start,
                       rating ? rating + 3 : 0, content, utf8);
            }
            eit_set_length(s, off);
            put(s);
            free(s);
        }
    }
}

static void present_following(uint16_t sid, time_t t0)
{
    for (int sn = 0; sn < 2; sn++) {
        uint8_t *s = section(0x4E, sid, 1, sn, 1, 1, 0x4E);
        time_t start = t0 + 3600 + sn * 1800;
        uint8_t b[64];
        char utf8[64];
        unsigned i = 2 + sn; /* the schedule's events 2 and 3, same fields */
        uint8_t len = title(i, b, utf8);
        eit_set_length(s, event(s + EIT_HEADER_SIZE, (uint16_t)i, dvb_time_encode_UTC(start),
                                1800, b, len, "Episode", (i % 4) ? 0x10 + (i % 4) : 0,
                                (i % 5 == 0) ? 9 : 0));
        put(s);
        free(s);
    }
}

static void garbage(time_t t0)
{
    uint8_t *s = section(0x50, 0x0880, 9, 0, 0, 0, 0x50);
    uint16_t off = 0;
    uint8_t *e = s + EIT_HEADER_SIZE;
    off += event(e + off, 1, 0xFFFFFFFFFFULL, 1800, (const uint8_t *)"Undefined", 9, "", 0, 0);
    off += event(e + off, 2, dvb_time_encode_UTC(t0), 0, (const uint8_t *)"Zero", 4, "", 0, 0);
    off += event(e + off, 3, dvb_time_encode_UTC(t0 + 60), 25 * 3600,
                 (const uint8_t *)"Absurd", 6, "", 0, 0);
    off += event(e + off, 4, dvb_time_encode_UTC(t0 + 60 * 86400), 1800,
                 (const uint8_t *)"Far", 3, "", 0, 0);
    off += event(e + off, 5, dvb_time_encode_UTC(t0 + 120), 1800,
                 (const uint8_t *)"\x8A\x86\x87", 3, "", 0, 0);
    off += event(e + off, 6, dvb_time_encode_UTC(t0 + 240), 1800,
                 (const uint8_t *)"\x12\xB0\xA1\xB0\xA2\xB0\xA3", 7, "", 0, 0);
    eit_set_length(s, off);
    put(s);
    free(s);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: eit_schedule OUTDIR T0\n");
        return 2;
    }
    char path[4096];
    time_t t0 = (time_t)strtoll(argv[2], NULL, 10);
    snprintf(path, sizeof(path), "%s/good.sec", argv[1]);
    if (!(out = fopen(path, "wb"))) {
        perror(path);
        return 1;
    }
    present_following(0x0880, t0);
    present_following(0x0881, t0);
    schedule(0x0880, t0);
    schedule(0x0881, t0);
    fclose(out);
    snprintf(path, sizeof(path), "%s/garbage.sec", argv[1]);
    if (!(out = fopen(path, "wb"))) {
        perror(path);
        return 1;
    }
    garbage(t0);
    fclose(out);
    return 0;
}
