"""anyrt's benchmark workloads (`bench.workloads`) and their runner (`bench.run`)."""
