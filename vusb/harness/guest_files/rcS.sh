#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run/vusb /dev/input
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
status=/run/vusb/init-status
: > $status
while read -r m; do
  [ -n "$m" ] || continue
  insmod "$m" 2>>/run/vusb/insmod.err || echo "insmod-failed $m" >> $status
done < /etc/vusb/modules
ip link set lo up
if ip link set eth0 up && ip addr add __GUEST__/24 dev eth0 && ip route add default via __HOST__
then :; else echo "network-failed" >> $status; fi
hostname vusb-guest
echo "127.0.0.1 localhost" > /etc/hosts
dmesg -n __LOGLEVEL__
echo "init-done" >> $status
