#!/bin/busybox sh
# /init of the initial RAM disk `cargo xtask fetch-linux` builds around Debian's busybox-static:
# it says how many CPUs the kernel brought up, then either gives the console a shell (kernel
# command line `tandem.shell`) or lists a few facts, and powers the partition off either way.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "tandem-init: $(nproc) CPUs online, uptime $(cut -d' ' -f1 /proc/uptime) s, Linux $(uname -r)"
case " $(cat /proc/cmdline) " in
*" tandem.shell "*)
    echo "tandem-init: a busybox shell on the console; 'poweroff -f' powers the partition off"
    setsid cttyhack sh
    ;;
*)
    echo "tandem-init: $(grep -c ^processor /proc/cpuinfo) processors in /proc/cpuinfo, $(grep MemTotal /proc/meminfo | tr -s ' ')"
    ;;
esac
echo "tandem-init: powering off"
poweroff -f
