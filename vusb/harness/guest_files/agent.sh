#!/bin/sh
# vusb guest agent: runs the commands the host sends over a virtio serial port.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
PORT=
i=0
while [ -z "$PORT" ] && [ $i -lt 200 ]; do
  for d in /sys/class/virtio-ports/*; do
    n=; read n < "$d/name" 2>/dev/null
    if [ "$n" = "__PORTNAME__" ] && [ -e "/dev/${d##*/}" ]; then PORT=/dev/${d##*/}; fi
  done
  [ -n "$PORT" ] || sleep 0.05
  i=$((i+1))
done
if [ -z "$PORT" ]; then echo "vusb-agent: no virtio port __PORTNAME__" > /dev/console; sleep 5; exit 1; fi
W=/run/vusb/agent
mkdir -p "$W"
exec 2>>/run/vusb/agent.log
AGENT=$$
TIMED_OUT=0
trap 'TIMED_OUT=1' USR1
exec 3<>"$PORT"
cd /
echo "__MARK__ READY $$" >&3
while read -r kind id tmo slen ilen <&3; do
  case "$kind" in
  RUN)
    dd bs=65536 count="$slen" iflag=fullblock,count_bytes <&3 2>/dev/null | base64 -d > "$W/$id.sh"
    dd bs=65536 count="$ilen" iflag=fullblock,count_bytes <&3 2>/dev/null | base64 -d > "$W/$id.in"
    TIMED_OUT=0
    setsid sh "$W/$id.sh" < "$W/$id.in" > "$W/$id.out" 2> "$W/$id.err" &
    pid=$!
    watcher=
    if [ "$tmo" != 0 ]; then
      setsid sh -c 'sleep "$1"; : > "$4"; kill -9 -"$2" 2>/dev/null || kill -9 "$2" 2>/dev/null; kill -USR1 "$3"' vusb-watch "$tmo" "$pid" "$AGENT" "$W/$id.timeout" < /dev/null > /dev/null 2>&1 &
      watcher=$!
    fi
    wait "$pid"
    rc=$?
    # The watcher may not have made its own process group yet: then kill it by pid.
    if [ -n "$watcher" ]; then
      kill -9 -"$watcher" 2>/dev/null || kill -9 "$watcher" 2>/dev/null
      wait "$watcher" 2>/dev/null
    fi
    if [ -e "$W/$id.timeout" ]; then TIMED_OUT=1; fi
    {
      echo "__MARK__ BEGIN $id"
      base64 < "$W/$id.out"
      echo "__MARK__ STDERR $id"
      base64 < "$W/$id.err"
      echo "__MARK__ END $id $rc $TIMED_OUT"
    } >&3
    rm -f "$W/$id.sh" "$W/$id.in" "$W/$id.out" "$W/$id.err" "$W/$id.timeout"
    ;;
  PING)
    echo "__MARK__ PONG $id" >&3
    ;;
  QUIT)
    echo "__MARK__ BYE $id" >&3
    sync
    poweroff -f
    ;;
  esac
done
echo "vusb-agent: channel closed" > /dev/console
sleep 1
