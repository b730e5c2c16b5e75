// dem-em: the endpoint manager on a storage target. It reports what the machine has
// (Inventory/), applies the desired state dem sends to the kernel target through configfs
// (Nvmet/), keeps that state in its data directory and serves both over its REST API.
