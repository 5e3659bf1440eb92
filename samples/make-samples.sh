#!/bin/sh
# Make capbox's test streams with ffmpeg (Debian: ffmpeg, fonts-dejavu-core).
#
#   samples/make-samples.sh                 -> samples/mux.ts (committed, ~3.5 MB)
#   samples/make-samples.sh --bench OUTDIR  -> OUTDIR/bench60.ts (~60 Mbit/s, not committed)
#
# mux.ts is a 20 s MPTS with three services (see samples/README.md). Its
# content is a pure function of this script and the ffmpeg/x264 versions:
# synthetic sources, burnt-in clock from the PTS (not wall time), single-
# threaded x264, bitexact muxing. Re-running overwrites the outputs.
set -eu

FONT=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf
HERE=$(cd "$(dirname "$0")" && pwd)

command -v ffmpeg >/dev/null || { echo "ffmpeg missing (apt-get install ffmpeg)" >&2; exit 1; }
[ -r "$FONT" ] || { echo "$FONT missing (apt-get install fonts-dejavu-core)" >&2; exit 1; }

# A visible clock (stream time h:m:s.ms) and a label, burnt into the picture.
clock() {
    echo "drawtext=fontfile=$FONT:text='$1  %{pts\\:hms}':x=20:y=h-th-20:fontsize=28:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=6"
}

make_mux() {
    out="$HERE/mux.ts"
    D=20
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=640x360:rate=25,$(clock 'Demo News')" \
        -f lavfi -i "smptebars=size=640x360:rate=25,$(clock 'Demo Sport')" \
        -f lavfi -i "mandelbrot=size=640x360:rate=25,$(clock 'Demo Music')" \
        -f lavfi -i "sine=frequency=440:sample_rate=48000" \
        -f lavfi -i "sine=frequency=660:sample_rate=48000" \
        -f lavfi -i "sine=frequency=880:sample_rate=48000" \
        -f lavfi -i "sine=frequency=330:sample_rate=48000" \
        -map 0:v -map 3:a \
        -map 1:v -map 4:a -map 5:a \
        -map 2:v -map 6:a \
        -t $D \
        -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -threads 1 \
        -b:v 280k -maxrate 300k -bufsize 600k -g 25 -keyint_min 25 -sc_threshold 0 -bf 2 \
        -c:a:0 aac -b:a:0 64k \
        -c:a:1 mp2 -b:a:1 64k \
        -c:a:2 aac -b:a:2 64k \
        -c:a:3 mp2 -b:a:3 64k \
        -ac 2 \
        -metadata:s:a:0 language=fra \
        -metadata:s:a:1 language=fra \
        -metadata:s:a:2 language=eng \
        -metadata:s:a:3 language=deu \
        -streamid 0:0x101 -streamid 1:0x102 \
        -streamid 2:0x201 -streamid 3:0x202 -streamid 4:0x203 \
        -streamid 5:0x301 -streamid 6:0x302 \
        -program "program_num=1:title=Demo News:st=0:st=1" \
        -program "program_num=2:title=Demo Sport:st=2:st=3:st=4" \
        -program "program_num=3:title=Demo Music:st=5:st=6" \
        -metadata:p:0 service_provider=capbox \
        -metadata:p:1 "service_provider=capbox sports" \
        -metadata:p:2 "service_provider=capbox radio" \
        -flags +bitexact -fflags +bitexact \
        -mpegts_transport_stream_id 0x0C0B -mpegts_original_network_id 0x20FA \
        -mpegts_pmt_start_pid 0x1000 -pcr_period 40 \
        -f mpegts "$out"
    ls -l "$out"
}

# ~60 Mbit/s of real payload: one SD MPEG-2 video at 7 Mbit/s CBR plus MP2
# audio, encoded once, then muxed eight times as eight services (copying is
# what keeps generation fast; the bytes of each program are identical but
# the PIDs, PMTs and services differ).
make_bench() {
    outdir=$1
    D=${BENCH_SECONDS:-40}
    mkdir -p "$outdir"
    es="$outdir/bench60-es.ts"
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=720x576:rate=25,noise=alls=12:allf=t,$(clock 'capbox bench')" \
        -f lavfi -i "sine=frequency=1000:sample_rate=48000" \
        -t "$D" -map 0:v -map 1:a \
        -c:v mpeg2video -b:v 7M -minrate 7M -maxrate 7M -bufsize 1835k -g 25 -bf 2 \
        -c:a mp2 -b:a 192k -ac 2 \
        -f mpegts "$es"
    set --
    progs=""
    i=0
    while [ $i -lt 8 ]; do
        v=$((2 * i)); a=$((2 * i + 1)); n=$((i + 1))
        set -- "$@" -map 0:v -map 0:a \
            -streamid "$v:$((0x100 * n + 1))" -streamid "$a:$((0x100 * n + 2))" \
            -metadata:s:a:$i language=eng \
            -program "program_num=$n:title=Bench $n:st=$v:st=$a"
        i=$n
    done
    ffmpeg -hide_banner -loglevel error -y -i "$es" "$@" -c copy \
        -mpegts_pmt_start_pid 0x1000 -f mpegts "$outdir/bench60.ts"
    rm -f "$es"
    ls -l "$outdir/bench60.ts"
}

if [ "${1:-}" = "--bench" ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 --bench OUTDIR" >&2; exit 2; }
    make_bench "$2"
else
    make_mux
fi
