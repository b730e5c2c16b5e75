extension FabricNamespace {
    /// The device that backs it on the target: DevicePath, or nvme-dem's DeviceID/DeviceNSID
    /// (`/dev/nvme<D>n<N>`, and `/dev/nullb0` for DeviceID -1).
    public var resolvedDevicePath: String? {
        if let devicePath { return devicePath }
        guard let deviceID else { return nil }
        if deviceID < 0 { return "/dev/nullb0" }
        return "/dev/nvme\(deviceID)n\(deviceNamespaceID ?? 1)"
    }
}

extension Fabric {
    /// Target `alias`'s slice of the model as its dem-em applies it to the kernel target.
    ///
    /// The kernel knows no groups, so a subsystem's access list is what the discovery
    /// controller serves: a subsystem for any host stays open to any host unless the target is
    /// in a group, in which case it lists the group's hosts; a restricted one lists its hosts
    /// that pass the group rule. A subsystem nobody may use is created but exposed on no port,
    /// as nvme-dem did. Namespaces without a device are left out.
    public func endpointConfiguration(target alias: String) throws(ModelError) -> EndpointConfiguration {
        let target = try target(alias)
        var accessBySubsystem: [String: Set<String>?] = [:]
        for (subsystem, allowed) in subsystemAccess(of: target, rules: accessRules) {
            accessBySubsystem[subsystem.nqn] = .some(allowed)
        }
        var hosts = Set<String>()
        var subsystems: [EndpointSubsystem] = []
        for subsystem in target.subsystems {
            let namespaces = subsystem.namespaces.compactMap { namespace -> EndpointNamespace? in
                guard let path = namespace.resolvedDevicePath else { return nil }
                return EndpointNamespace(
                    namespaceID: namespace.namespaceID,
                    devicePath: path,
                    uuid: namespace.uuid,
                    nguid: namespace.nguid
                )
            }
            guard let access = accessBySubsystem[subsystem.nqn] else {
                // Nobody may use it.
                subsystems.append(
                    EndpointSubsystem(
                        nqn: subsystem.nqn,
                        allowAnyHost: false,
                        serial: subsystem.serial,
                        model: subsystem.model,
                        namespaces: namespaces
                    )
                )
                continue
            }
            let allowed = access.map { Array($0) } ?? []
            hosts.formUnion(allowed)
            subsystems.append(
                EndpointSubsystem(
                    nqn: subsystem.nqn,
                    allowAnyHost: access == nil,
                    serial: subsystem.serial,
                    model: subsystem.model,
                    namespaces: namespaces,
                    hosts: allowed,
                    ports: target.ports.map(\.portID)
                )
            )
        }
        return EndpointConfiguration(ports: target.ports, hosts: Array(hosts), subsystems: subsystems)
    }
}

extension ReportedDevice {
    /// Whether a DevicePath names a device dem-em makes itself (an SPDK RAM or null bdev,
    /// `/spdk/malloc/NAME/SIZE`, `/spdk/null/NAME/SIZE`), which no inventory reports beforehand.
    public static func isMadeByEndpoint(_ path: String) -> Bool {
        path.hasPrefix("/spdk/malloc/") || path.hasPrefix("/spdk/null/")
    }
}
