#!/bin/sh
# Make the slates capbox plays when every source of a channel is down
# (Debian: ffmpeg with libx264/libx265, fonts-dejavu-core).
#
#   slates/make-slates.sh                      -> slates/<video>-<audio>.ts (committed)
#   slates/make-slates.sh --one OUT VIDEO AUDIO "TEXT"
#                                              -> one slate with the operator's text,
#                                                 in any format (what `capbox slate`
#                                                 runs; VIDEO may be a full spec
#                                                 CODEC-WxH{i|p}RATE such as
#                                                 h264-1920x1080i29.97)
#
# A slate is a 2 s single-program TS that loops seamlessly: a still picture
# with the message and silence, in one of the formats a DVB channel
# commonly has, so that a downstream transcoder sees no format change when
# capbox splices it in (a change of codec, size, scan or frame rate makes it
# reinitialise). VIDEO is one of
#   mpeg2-576i25  MPEG-2 720x576 interlaced 25 fps (SD DVB-S/T)
#   h264-576i25   H.264 720x576 interlaced 25 fps
#   h264-720p50   H.264 1280x720 progressive 50 fps
#   h264-1080i25  H.264 1920x1080 interlaced 25 fps (HD DVB-S2/T2)
#   hevc-1080p50  HEVC 1920x1080 progressive 50 fps (DVB-T2 HEVC)
# and AUDIO one of mp2 (MPEG-1 Layer II 192k), aac (AAC-LC ADTS 128k),
# ac3 (AC-3 192k), all 48 kHz stereo. One GOP per second, so a decoder
# joining mid-slate waits at most 1 s. PIDs: PMT 0x1000, video 0x100,
# audio 0x101 (capbox maps them to the channel's own PIDs). The output is
# a pure function of this script and the encoder versions (bitexact,
# single-threaded).
set -eu

FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
HERE=$(cd "$(dirname "$0")" && pwd)
command -v ffmpeg >/dev/null || { echo "ffmpeg missing (apt-get install ffmpeg)" >&2; exit 1; }
[ -r "$FONT" ] || { echo "$FONT missing (apt-get install fonts-dejavu-core)" >&2; exit 1; }

# make OUT VIDEO AUDIO TEXT
make() {
    out=$1 video=$2 audio=$3 text=$4
    # The shipped names stand for full specs CODEC-WxH{i|p}RATE.
    case "$video" in
    mpeg2-576i25) video=mpeg2-720x576i25 ;;
    h264-576i25) video=h264-720x576i25 ;;
    h264-720p50) video=h264-1280x720p50 ;;
    h264-1080i25) video=h264-1920x1080i25 ;;
    hevc-1080p50) video=hevc-1920x1080p50 ;;
    esac
    codec=${video%%-*} spec=${video#*-}
    size=${spec%%[ip]*} rest=${spec#"$size"}
    scan=$(printf '%s' "$rest" | cut -c1) rate=$(printf '%s' "$rest" | cut -c2-)
    case "$size" in *x*) ;; *) echo "bad video spec $2 (CODEC-WxH{i|p}RATE, e.g. h264-1920x1080i29.97)" >&2; exit 2 ;; esac
    case "$scan" in i|p) ;; *) echo "bad scan in $2: i or p" >&2; exit 2 ;; esac
    case "$rate" in
    23.976|23.98) rate=24000/1001 gop=24 ;;
    29.97) rate=30000/1001 gop=30 ;;
    59.94) rate=60000/1001 gop=60 ;;
    ''|*[!0-9]*) echo "bad frame rate in $2 (25, 29.97, 50, …)" >&2; exit 2 ;;
    *) gop=$rate ;;
    esac
    il=""
    [ "$scan" = i ] && il="-flags +ilme+ildct"
    case "$codec" in
    mpeg2) venc="-c:v mpeg2video -q:v 3 -g $gop -bf 2 $il" ; [ "$scan" = i ] && venc="$venc -top 1" ;;
    h264) venc="-c:v libx264 -preset medium -crf 23 -g $gop -keyint_min $gop -sc_threshold 0 -bf 2 -threads 1 $il"
        [ "$scan" = i ] && venc="$venc -x264-params tff=1" ;;
    hevc) venc="-c:v libx265 -preset medium -crf 26 -x265-params keyint=$gop:min-keyint=$gop:scenecut=0:pools=1:frame-threads=1:log-level=error" ;;
    *) echo "unknown video codec $codec (mpeg2, h264, hevc)" >&2; exit 2 ;;
    esac
    # SD is 16:9 anamorphic in DVB today.
    [ "$size" = 720x576 ] || [ "$size" = 720x480 ] && venc="$venc -aspect 16:9"
    case "$audio" in
    mp2) aenc="-c:a mp2 -b:a 192k" ;;
    aac) aenc="-c:a aac -b:a 128k" ;;
    ac3) aenc="-c:a ac3 -b:a 192k" ;;
    *) echo "unknown audio codec $audio" >&2; exit 2 ;;
    esac
    # The largest font that fits the text in 90 % of the width (DejaVu Sans
    # Bold is ≈ 0.62 em per character), at most a twelfth of the height.
    w=${size%x*} h=${size#*x}
    fs=$(awk -v w="$w" -v h="$h" -v n="${#text}" 'BEGIN { f = 0.9 * w / (0.62 * n); if (f > h / 12) f = h / 12; printf "%d", f }')
    # ffmpeg's drawtext wants ':' and '\'' escaped inside text=.
    esc=$(printf '%s' "$text" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/:/\\\\:/g" -e "s/'/\\\\'/g")
    # shellcheck disable=SC2086
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i "color=c=0x202833:size=$size:rate=$rate,format=yuv420p,drawtext=fontfile=$FONT:text='$esc':fontcolor=white:fontsize=$fs:x=(w-tw)/2:y=(h-th)/2" \
        -f lavfi -i "anullsrc=channel_layout=stereo:sample_rate=48000" \
        -map 0:v -map 1:a -t 2 -pix_fmt yuv420p $venc $aenc \
        -streamid 0:0x100 -streamid 1:0x101 -mpegts_pmt_start_pid 0x1000 \
        -metadata service_name="capbox slate" -metadata service_provider=capbox \
        -flags +bitexact -fflags +bitexact -muxrate 0 \
        "$out"
}

if [ "${1:-}" = "--one" ]; then
    [ $# -eq 5 ] || { echo "usage: $0 --one OUT VIDEO AUDIO TEXT" >&2; exit 2; }
    make "$2" "$3" "$4" "$5"
    exit 0
fi

for v in mpeg2-576i25 h264-576i25 h264-720p50 h264-1080i25 hevc-1080p50; do
    for a in mp2 aac ac3; do
        make "$HERE/$v-$a.ts" "$v" "$a" "This channel is temporarily unavailable"
        echo "$v-$a.ts $(stat -c %s "$HERE/$v-$a.ts") bytes"
    done
done
