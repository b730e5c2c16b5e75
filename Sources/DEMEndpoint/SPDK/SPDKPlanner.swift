import Crypto
import DEMCore

/// Plans the JSON-RPC calls that bring an SPDK target to a desired state: a pure function of
/// the desired state, the target as read and what dem-em owns. It makes what is missing, changes
/// what it owns, deletes what it owns and no longer wants, and never touches anything else.
///
/// Order: transports, NVMe controllers, bdevs, subsystems no longer wanted deleted, subsystems
/// made or changed (namespaces and hosts before listeners, so no host reaches a half-made
/// subsystem), discovery listeners, then bdevs and controllers no longer used.
public enum SPDKPlanner {
    /// Transports SPDK's NVMe-oF target has that dem's ports can name.
    static let transports: [String: String] = ["tcp": "TCP", "rdma": "RDMA"]

    public static func plan(
        desired: EndpointConfiguration,
        actual: SPDKState,
        owned: SPDKOwnership,
        adopt: Bool = false
    ) -> SPDKPlan {
        var plan = SPDKPlan()
        var owned = owned

        // Ports: the addresses they listen on (transports SPDK lacks are problems).
        var addresses: [Int: SPDKAddress] = [:]
        var wantedTransports: [String] = []
        for (index, port) in desired.ports.enumerated() {
            let type = port.transportType.lowercased()
            guard let transport = transports[type] else {
                plan.problems.append(
                    "PortIDs[\(index)].TRTYPE: port \(port.portID) is \(port.transportType); SPDK's NVMe-oF target serves tcp and rdma"
                )
                continue
            }
            if let tsas = port.securityType, tsas.lowercased() != "none" {
                plan.problems.append(
                    "PortIDs[\(index)].TSAS: port \(port.portID) asks for \(tsas); the spdk backend does not configure TLS, so the port is not served"
                )
                continue
            }
            addresses[port.portID] = SPDKAddress(port: port)
            if !wantedTransports.contains(transport) { wantedTransports.append(transport) }
        }
        for transport in wantedTransports where !actual.transports.contains(transport) {
            plan.drift.append(EndpointDrift(object: "transport \(transport)", expected: "present", actual: nil))
            plan.operations.append(
                SPDKOperation(
                    "nvmf_create_transport",
                    .members([("trtype", .string(transport))]),
                    object: "transport \(transport)"
                )
            )
        }

        // Hosts that need DH-HMAC-CHAP are not let in: this backend cannot make them prove it.
        let keyed = Set(desired.hostKeys.map(\.hostNQN))
        for (index, key) in desired.hostKeys.enumerated() {
            plan.problems.append(
                "HostKeys[\(index)].HOSTNQN: \(key.hostNQN) must authenticate with DH-HMAC-CHAP, which the spdk backend does not configure; it is not allowed in"
            )
        }

        // Devices: the bdevs the namespaces use.
        var devices: [String: SPDKDevice] = [:]
        var usable = Set<String>()
        let bdevs = Dictionary(actual.bdevs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let controllers = Set(actual.controllers.map(\.name))
        var attach: [String: String] = [:]
        for (i, subsystem) in desired.subsystems.enumerated() {
            for (j, namespace) in subsystem.namespaces.enumerated() where namespace.enabled {
                let field = "Subsystems[\(i)].NSIDs[\(j)].DevicePath"
                switch SPDKDevice.parse(namespace.devicePath) {
                case .failure(let why):
                    plan.problems.append("\(field): \(why)")
                case .success(let device):
                    if let other = devices[device.bdevName], other != device {
                        plan.problems.append(
                            "\(field): \(namespace.devicePath) names bdev \(device.bdevName) with another definition than an earlier namespace"
                        )
                        continue
                    }
                    devices[device.bdevName] = device
                }
            }
        }
        for (name, device) in devices.sorted(by: { $0.key < $1.key }) {
            if let existing = bdevs[name] {
                usable.insert(name)
                if case .malloc(_, let blocks, let size) = device,
                    existing.blocks != blocks || existing.blockSize != size
                {
                    plan.drift.append(
                        EndpointDrift(
                            object: "bdev \(name)",
                            attribute: "size",
                            expected: "\(blocks * size)",
                            actual: "\(existing.blocks * existing.blockSize)"
                        )
                    )
                    plan.notes.append(
                        "bdev \(name) has another size than asked; it is used as it is (deleting it would lose its data)"
                    )
                }
                if adopt, owned.bdevs[name] == nil, device.kind != "existing", device.kind != "nvme" {
                    plan.adopted.append(.bdev(name, kind: device.kind))
                    owned.insert(.bdev(name, kind: device.kind))
                }
                continue
            }
            let object = SPDKObject.bdev(name, kind: device.kind)
            switch device {
            case .existing:
                plan.drift.append(EndpointDrift(object: "bdev \(name)", expected: "present", actual: nil))
                plan.problems.append(
                    "bdev \(name): the target has no such bdev (a /spdk/bdev/ device is used, never made)"
                )
            case .malloc(let name, let blocks, let size):
                plan.drift.append(EndpointDrift(object: "bdev \(name)", expected: "present", actual: nil))
                plan.operations.append(
                    SPDKOperation(
                        "bdev_malloc_create",
                        .members([("num_blocks", .int(blocks)), ("block_size", .int(size)), ("name", .string(name))]),
                        object: object.description,
                        claim: object
                    )
                )
                usable.insert(name)
            case .null(let name, let blocks, let size):
                plan.drift.append(EndpointDrift(object: "bdev \(name)", expected: "present", actual: nil))
                plan.operations.append(
                    SPDKOperation(
                        "bdev_null_create",
                        .members([("name", .string(name)), ("num_blocks", .int(blocks)), ("block_size", .int(size))]),
                        object: object.description,
                        claim: object
                    )
                )
                usable.insert(name)
            case .aio(let name, let path):
                plan.drift.append(EndpointDrift(object: "bdev \(name)", expected: "present", actual: nil))
                // SPDK finds a block device's block size; a file has none to find.
                var params: [(String, JSONValue)] = [("filename", .string(path)), ("name", .string(name))]
                if !path.hasPrefix("/dev/") { params.append(("block_size", .int(SPDKDevice.blockSize))) }
                plan.operations.append(
                    SPDKOperation(
                        "bdev_aio_create",
                        .members(params),
                        object: "\(object.description) (\(path))",
                        claim: object
                    )
                )
                usable.insert(name)
            case .nvme(let controller, let address, _):
                usable.insert(name)
                if controllers.contains(controller) {
                    plan.drift.append(EndpointDrift(object: "bdev \(name)", expected: "present", actual: nil))
                    plan.problems.append("bdev \(name): NVMe controller \(controller) has no such namespace")
                } else if attach[controller] == nil {
                    attach[controller] = address
                    plan.drift.append(
                        EndpointDrift(object: "NVMe controller \(controller)", expected: "present", actual: nil)
                    )
                }
            }
        }
        let attachments = attach.sorted { $0.key < $1.key }.map { controller, address in
            SPDKOperation(
                "bdev_nvme_attach_controller",
                .members([("name", .string(controller)), ("trtype", .string("PCIe")), ("traddr", .string(address))]),
                object: "NVMe controller \(controller) (\(address))",
                claim: .controller(controller)
            )
        }
        plan.operations.insert(
            contentsOf: attachments,
            at: plan.operations.firstIndex { $0.method.hasPrefix("bdev_") } ?? plan.operations.endIndex
        )

        // Subsystems.
        let present = Dictionary(actual.storageSubsystems.map { ($0.nqn, $0) }, uniquingKeysWith: { a, _ in a })
        let wanted = Set(desired.subsystems.map(\.nqn))
        for nqn in owned.subsystems.sorted() where !wanted.contains(nqn) && present[nqn] != nil {
            plan.drift.append(EndpointDrift(object: "subsystem \(nqn)", expected: nil, actual: "present"))
            plan.operations.append(
                SPDKOperation(
                    "nvmf_delete_subsystem",
                    .members([("nqn", .string(nqn))]),
                    object: "subsystem \(nqn)",
                    release: .subsystem(nqn)
                )
            )
        }
        for subsystem in desired.subsystems {
            let nqn = subsystem.nqn
            let object = "subsystem \(nqn)"
            let hosts = subsystem.hosts.filter { !keyed.contains($0) }
            let listeners = subsystem.ports.compactMap { addresses[$0] }
            let namespaces = subsystem.namespaces.filter(\.enabled).compactMap {
                ns -> (EndpointNamespace, SPDKDevice)? in
                guard let device = try? SPDKDevice.parse(ns.devicePath).get(), usable.contains(device.bdevName) else {
                    return nil
                }
                return (ns, device)
            }
            let needs = ["subsystem:\(nqn)"]
            guard let current = present[nqn] else {
                plan.drift.append(EndpointDrift(object: object, expected: "present", actual: nil))
                var params: [(String, JSONValue)] = [("nqn", .string(nqn))]
                if let serial = subsystem.serial { params.append(("serial_number", .string(serial))) }
                if let model = subsystem.model { params.append(("model_number", .string(model))) }
                params.append(("allow_any_host", .bool(subsystem.allowAnyHost)))
                plan.operations.append(
                    SPDKOperation("nvmf_create_subsystem", .members(params), object: object, claim: .subsystem(nqn))
                )
                for (namespace, device) in namespaces {
                    plan.operations.append(addNamespace(nqn, namespace, device: device, needs: needs))
                }
                for host in hosts { plan.operations.append(addHost(nqn, host, needs: needs)) }
                for address in listeners { plan.operations.append(addListener(nqn, address, needs: needs)) }
                continue
            }
            if !owned.subsystems.contains(nqn) {
                if adopt {
                    plan.adopted.append(.subsystem(nqn))
                    owned.insert(.subsystem(nqn))
                } else {
                    plan.foreign.append(object)
                    plan.notes.append(
                        "\(object) exists and dem-em did not create it: left alone (start dem-em with --adopt to take it over)"
                    )
                    continue
                }
            }
            changes(subsystem, current, hosts: hosts, listeners: listeners, namespaces: namespaces, into: &plan)
        }

        // Discovery listeners: the discovery service answers on every port, as nvmet's does.
        let wantedListeners = Set(addresses.values)
        let discovery = Set(actual.discoveryListeners)
        for address in wantedListeners.sorted() where !discovery.contains(address) {
            plan.drift.append(EndpointDrift(object: "discovery listener \(address)", expected: "present", actual: nil))
            plan.operations.append(
                SPDKOperation(
                    "nvmf_subsystem_add_listener",
                    .members([("nqn", .string(SPDKState.discoveryNQN)), ("listen_address", address.json)]),
                    object: "discovery listener \(address)",
                    claim: .discoveryListener(address.description)
                )
            )
        }
        for address in discovery.sorted()
        where !wantedListeners.contains(address) && owned.discoveryListeners.contains(address.description) {
            plan.drift.append(EndpointDrift(object: "discovery listener \(address)", expected: nil, actual: "present"))
            plan.operations.append(
                SPDKOperation(
                    "nvmf_subsystem_remove_listener",
                    .members([("nqn", .string(SPDKState.discoveryNQN)), ("listen_address", address.json)]),
                    object: "discovery listener \(address)",
                    release: .discoveryListener(address.description)
                )
            )
        }

        // bdevs and controllers dem-em made and nothing wants any more.
        for (name, kind) in owned.bdevs.sorted(by: { $0.key < $1.key }) where devices[name] == nil && bdevs[name] != nil
        {
            plan.drift.append(EndpointDrift(object: "bdev \(name)", expected: nil, actual: "present"))
            let method = kind == "aio" ? "bdev_aio_delete" : kind == "null" ? "bdev_null_delete" : "bdev_malloc_delete"
            plan.operations.append(
                SPDKOperation(
                    method,
                    .members([("name", .string(name))]),
                    object: SPDKObject.bdev(name, kind: kind).description,
                    release: .bdev(name, kind: kind)
                )
            )
        }
        let usedControllers = Set(
            devices.values.compactMap { device -> String? in
                if case .nvme(let controller, _, _) = device { return controller }
                return nil
            }
        )
        for controller in owned.controllers.sorted()
        where !usedControllers.contains(controller) && controllers.contains(controller) {
            plan.drift.append(EndpointDrift(object: "NVMe controller \(controller)", expected: nil, actual: "present"))
            plan.operations.append(
                SPDKOperation(
                    "bdev_nvme_detach_controller",
                    .members([("name", .string(controller))]),
                    object: "NVMe controller \(controller)",
                    release: .controller(controller)
                )
            )
        }
        // Objects the desired state names that someone else made are foreign.
        return plan
    }

    /// The calls that bring an existing subsystem dem-em owns to the desired one.
    private static func changes(
        _ subsystem: EndpointSubsystem,
        _ current: SPDKSubsystem,
        hosts: [String],
        listeners: [SPDKAddress],
        namespaces: [(EndpointNamespace, SPDKDevice)],
        into plan: inout SPDKPlan
    ) {
        let nqn = subsystem.nqn
        let object = "subsystem \(nqn)"
        for (attribute, expected, actual) in [
            ("serial_number", subsystem.serial, current.serial), ("model_number", subsystem.model, current.model),
        ] {
            if let expected, expected != actual {
                plan.drift.append(
                    EndpointDrift(object: object, attribute: attribute, expected: expected, actual: actual)
                )
                plan.notes.append(
                    "\(object): \(attribute) is set when a subsystem is made; SPDK cannot change it (delete and add the subsystem to change it)"
                )
            }
        }
        // Namespaces: removed when gone or changed, added when missing.
        let wanted = Dictionary(namespaces.map { ($0.0.namespaceID, $0) }, uniquingKeysWith: { a, _ in a })
        var have = Set<Int>()
        for namespace in current.namespaces {
            if let (desired, device) = wanted[namespace.nsid],
                matches(namespace, desired, in: nqn, bdev: device.bdevName)
            {
                have.insert(namespace.nsid)
                continue
            }
            plan.drift.append(
                EndpointDrift(
                    object: "\(object) namespace \(namespace.nsid)",
                    expected: wanted[namespace.nsid].map { "bdev \($0.1.bdevName)" },
                    actual: "bdev \(namespace.bdev)"
                )
            )
            plan.operations.append(
                SPDKOperation(
                    "nvmf_subsystem_remove_ns",
                    .members([("nqn", .string(nqn)), ("nsid", .int(namespace.nsid))]),
                    object: "\(object) namespace \(namespace.nsid)"
                )
            )
        }
        for (namespace, device) in namespaces where !have.contains(namespace.namespaceID) {
            if !current.namespaces.contains(where: { $0.nsid == namespace.namespaceID }) {
                plan.drift.append(
                    EndpointDrift(
                        object: "\(object) namespace \(namespace.namespaceID)",
                        expected: "bdev \(device.bdevName)",
                        actual: nil
                    )
                )
            }
            plan.operations.append(addNamespace(nqn, namespace, device: device, needs: []))
        }
        // Hosts before allow_any_host is turned off; removed after it is turned on.
        let currentHosts = Set(current.hosts)
        for host in hosts where !currentHosts.contains(host) {
            plan.drift.append(EndpointDrift(object: "\(object) host \(host)", expected: "allowed", actual: nil))
            plan.operations.append(addHost(nqn, host, needs: []))
        }
        if current.allowAnyHost != subsystem.allowAnyHost {
            plan.drift.append(
                EndpointDrift(
                    object: object,
                    attribute: "allow_any_host",
                    expected: "\(subsystem.allowAnyHost)",
                    actual: "\(current.allowAnyHost)"
                )
            )
            plan.operations.append(
                SPDKOperation(
                    "nvmf_subsystem_allow_any_host",
                    .members([("nqn", .string(nqn)), ("allow_any_host", .bool(subsystem.allowAnyHost))]),
                    object: object
                )
            )
        }
        let wantedHosts = Set(hosts)
        for host in current.hosts where !wantedHosts.contains(host) {
            plan.drift.append(EndpointDrift(object: "\(object) host \(host)", expected: nil, actual: "allowed"))
            plan.operations.append(
                SPDKOperation(
                    "nvmf_subsystem_remove_host",
                    .members([("nqn", .string(nqn)), ("host", .string(host))]),
                    object: "\(object) host \(host)"
                )
            )
        }
        let currentListeners = Set(current.listeners)
        for address in listeners where !currentListeners.contains(address) {
            plan.drift.append(EndpointDrift(object: "\(object) listener \(address)", expected: "present", actual: nil))
            plan.operations.append(addListener(nqn, address, needs: []))
        }
        let wantedListeners = Set(listeners)
        for address in current.listeners where !wantedListeners.contains(address) {
            plan.drift.append(EndpointDrift(object: "\(object) listener \(address)", expected: nil, actual: "present"))
            plan.operations.append(
                SPDKOperation(
                    "nvmf_subsystem_remove_listener",
                    .members([("nqn", .string(nqn)), ("listen_address", address.json)]),
                    object: "\(object) listener \(address)"
                )
            )
        }
    }

    /// The namespace's UUID: the desired one, or one derived from the subsystem and NSID. SPDK
    /// would take the bdev's, which a RAM or AIO bdev draws anew each time it is made: after a
    /// restart of nvmf_tgt the host would find the identifiers changed and drop the namespace.
    static func uuid(of namespace: EndpointNamespace, in nqn: String) -> String {
        if let uuid = namespace.uuid { return uuid.lowercased() }
        var bytes = Array(SHA256.hash(data: Array("DEM namespace\0\(nqn)\0\(namespace.namespaceID)".utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x80  // version 8: name-based, own hash (RFC 9562)
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 9562 variant
        return uuidText(bytes)!
    }

    /// The namespace's NGUID: the desired one, or the UUID's 16 bytes (SPDK would take the
    /// bdev's UUID's, which changes as the bdev is made again).
    static func nguid(of namespace: EndpointNamespace, in nqn: String) -> String {
        (namespace.nguid ?? uuid(of: namespace, in: nqn)).filter { $0 != "-" }.uppercased()
    }

    private static func matches(
        _ actual: SPDKNamespace,
        _ desired: EndpointNamespace,
        in nqn: String,
        bdev: String
    ) -> Bool {
        guard actual.bdev == bdev else { return false }
        if uuid(of: desired, in: nqn) != actual.uuid { return false }
        if let nguid = actual.nguid, nguid.filter({ $0 != "-" }) != self.nguid(of: desired, in: nqn).lowercased() {
            return false
        }
        return true
    }

    private static func addNamespace(
        _ nqn: String,
        _ namespace: EndpointNamespace,
        device: SPDKDevice,
        needs: [String]
    ) -> SPDKOperation {
        let bdev = device.bdevName
        let members: [(String, JSONValue)] = [
            ("bdev_name", .string(bdev)), ("nsid", .int(namespace.namespaceID)),
            ("uuid", .string(uuid(of: namespace, in: nqn))), ("nguid", .string(nguid(of: namespace, in: nqn))),
        ]
        return SPDKOperation(
            "nvmf_subsystem_add_ns",
            .members([("nqn", .string(nqn)), ("namespace", .members(members))]),
            object: "subsystem \(nqn) namespace \(namespace.namespaceID) (bdev \(bdev))",
            needs: needs + [device.dependency]
        )
    }

    private static func addHost(_ nqn: String, _ host: String, needs: [String]) -> SPDKOperation {
        SPDKOperation(
            "nvmf_subsystem_add_host",
            .members([("nqn", .string(nqn)), ("host", .string(host))]),
            object: "subsystem \(nqn) host \(host)",
            needs: needs
        )
    }

    private static func addListener(_ nqn: String, _ address: SPDKAddress, needs: [String]) -> SPDKOperation {
        SPDKOperation(
            "nvmf_subsystem_add_listener",
            .members([("nqn", .string(nqn)), ("listen_address", address.json)]),
            object: "subsystem \(nqn) listener \(address)",
            needs: needs
        )
    }
}
