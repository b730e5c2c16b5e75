// The host agents (dem-ac, dem-dm): the kernel NVMe-oF host, what to connect, what changed.
