#!/bin/busybox sh
# The lab's domU: prints "XENLAB-DOMU counter=N" once a second, so a restored
# or migrated guest can be seen to carry on where it stopped.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
echo "XENLAB-DOMU: up, $(nproc) vcpu(s)"
i=0
while :; do
	echo "XENLAB-DOMU counter=$i"
	i=$((i + 1))
	sleep 1
done
